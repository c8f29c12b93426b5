#pragma once
// Backpressure for ingestion (docs/operations.md, "Backpressure"): how many frames and bytes the
// sessions have handed to storage that are not committed yet, fleet-wide and per session. A
// session that pushes either count over its limit stops reading its socket (TCP then pushes back
// on the node) and asks to be woken; it reads again once the fleet is back under the resume mark
// (three quarters of each limit). Nothing is dropped: a frame already read is always handed on.
// No actor inside: sessions share one instance; the wake callbacks send them a message.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

namespace nodecoord {

class ingest_budget {
public:
  struct limits {
    uint64_t max_bytes;
    uint64_t max_frames;
  };

  explicit ingest_budget(limits fleet) : limits_(fleet) {}

  /// Counts a frame handed to storage.
  void take(uint64_t bytes);

  /// Counts a frame settled (committed or refused) and returns the wake callbacks to run, outside
  /// any lock, if this brought the fleet under the resume mark.
  std::vector<std::function<void()>> give(uint64_t bytes);

  /// Over a limit: a session should stop reading.
  bool over() const;
  /// Under the resume mark: a stopped session may read again.
  bool resumable() const;

  /// Runs `wake` once the fleet is under the resume mark (at once if it is now). A session keeps
  /// at most one of these outstanding.
  void wait(std::function<void()> wake);

  uint64_t bytes() const;
  uint64_t frames() const;
  size_t waiting() const;
  const limits& fleet() const { return limits_; }

  /// A session's own share of the fleet's limits: one node cannot take everything.
  static limits per_session(const limits& fleet);
  /// The marks, for the fleet's counts here and for a session's own against its share.
  static bool at_limit(const limits& l, uint64_t bytes, uint64_t frames);
  static bool under_resume_mark(const limits& l, uint64_t bytes, uint64_t frames);

private:
  bool resumable_locked() const;
  void publish() const; // to /metrics

  limits limits_;
  mutable std::mutex mu_;
  uint64_t bytes_ = 0;
  uint64_t frames_ = 0;
  std::vector<std::function<void()>> waiters_;
};

} // namespace nodecoord
