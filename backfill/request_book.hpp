#pragma once
// The tracker's bookkeeping (DESIGN §1 tracker): request_id -> {node, epoch, attempts, deadline},
// with no actor inside, so every rule is tested directly. The tracker actor is a thin shell
// around it: it asks storage to apply what this book decides.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace nodecoord::backfill {

using time_point = std::chrono::steady_clock::time_point;

/// One live backfill request.
struct request {
  std::string id;
  std::string node_id;
  int64_t epoch = 0;
  std::string trigger;                  // reconnect | reconcile | on_demand
  std::vector<std::string> attempt_ids; // the attempts actually marked (empty while marking)
  bool sent = false;                    // marked and handed to the session: the node may answer
  time_point sent_at{};
  time_point deadline{};
};

/// Why a response was refused (or not).
enum class answer_check : uint8_t {
  accepted,    // live, sent, of this node and epoch: apply it
  unknown,     // no such live request (never made, answered, expired, cancelled)
  foreign,     // live, but another node's
  stale_epoch, // live, this node's, but of another session
  not_sent,    // still being marked: the node cannot know this id yet
};

const char* to_string(answer_check);

class request_book {
public:
  /// Records a new request (not yet marked). It counts toward its session's in-flight limit.
  /// False if the id is taken.
  bool open(request r);

  /// The mark is done and the request goes to the node: its attempts and deadline. False if the
  /// request is gone (its session ended meanwhile).
  bool sent(const std::string& id, std::vector<std::string> attempt_ids, time_point now,
            std::chrono::nanoseconds timeout);

  /// Removes a request without effect (nothing was marked) or on a failed send; returns it.
  std::optional<request> close(const std::string& id);

  /// A backfill_response from (node, epoch): accepted only for a live, sent request of exactly
  /// that session, which is then removed and returned in `out`.
  answer_check answer(const std::string& id, const std::string& node_id, int64_t epoch, request* out);

  /// A session ended: takes every request of that node and epoch.
  std::vector<request> take_session(const std::string& node_id, int64_t epoch);

  /// A newer session of the node began: takes the requests of its older sessions (they can no
  /// longer be answered).
  std::vector<request> take_older(const std::string& node_id, int64_t epoch);

  /// Takes every sent request whose deadline is at or before `now`.
  std::vector<request> take_expired(time_point now);

  /// An operator's cancel: takes exactly these requests if every one of them is live and sent
  /// (a request still being marked is not the operator's yet: its attempts are not known), else
  /// nothing (the caller's set is stale). Duplicates count once.
  std::optional<std::vector<request>> take_exactly(const std::vector<std::string>& ids);

  /// Takes everything (shutdown).
  std::vector<request> take_all();

  /// Live requests of one session (marking or sent): the max_inflight_per_node limit.
  size_t inflight(const std::string& node_id, int64_t epoch) const;

  /// The earliest deadline, if any request is sent.
  std::optional<time_point> next_deadline() const;

  size_t size() const { return requests_.size(); }
  const request* find(const std::string& id) const;
  /// Every live request, by id.
  const std::unordered_map<std::string, request>& all() const { return requests_; }

private:
  request take(std::unordered_map<std::string, request>::iterator it);
  template <class Pred>
  std::vector<request> take_of_node(const std::string& node_id, Pred pred);

  std::unordered_map<std::string, request> requests_;
  std::unordered_map<std::string, std::set<std::string>> by_node_; // node_id -> request ids
  std::multimap<time_point, std::string> deadlines_;               // sent requests only
};

} // namespace nodecoord::backfill
