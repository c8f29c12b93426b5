#pragma once
// What the socket scenarios share (the load options from the common flags) and what the backfill
// and disconnect-storm scenarios share: counts over the bench's nodes, and the simulated nodes
// that seed, answer or ignore backfill requests.

#include "common/clock.hpp"
#include "protocol/codec.hpp"
#include "storage/batch_executor.hpp"
#include "storage/database.hpp"
#include "storage/operations.hpp"
#include "storage/query.hpp"
#include "tools/bench/db.hpp"
#include "tools/bench/load.hpp"
#include "tools/bench/scenarios.hpp"
#include "tools/bench/util.hpp"

#include <nlohmann/json.hpp>
#include <soci/soci.h>

#include <algorithm>
#include <set>
#include <span>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

namespace nodecoord::bench {

inline constexpr size_t in_chunk = 500;

load_options socket_options(const socket_args& s);

std::vector<std::string> names_of(const std::vector<node_key>& keys);

std::vector<std::string> node_ids(const std::vector<bench_node>& nodes);

/// SUM(expr) over the nodes' attempts (chunked IN lists), e.g. "COUNT(*)" or "SUM(log_count)".
int64_t sum_over_nodes(storage::database& db, const std::vector<bench_node>& nodes, const std::string& expr,
                       const std::string& table = "node_task_attempts", const std::string& where = "");

/// Nodes of the bench still online, backfill jobs of theirs still running.
int64_t online_nodes(storage::database& db, const std::vector<bench_node>& nodes);

std::string states_text(const std::map<std::string, int64_t>& counts);

int64_t get(const std::map<std::string, int64_t>& m, const std::string& k);

double secs(int64_t ns);

/// Serves `l` until `done()` holds or the deadline passes, checking every `step_ns`.
bool serve_until(load& l, int64_t deadline_ns, int64_t step_ns, const std::function<bool()>& done);

// --- the simulated nodes ---------------------------------------------------------------------

class bench_nodes : public session_hooks {
public:
  enum class mode { seed, answer, silent };

  bench_nodes(const attempt_table& ids, const backfill_args& a, mode m, size_t nodes)
    : ids_(ids), a_(a), mode_(m), welcome_at_(nodes, 0), first_request_seen_(nodes, false),
      ts_(format_time(system_now())) {
    for (size_t i = 0; i < ids_.size(); ++i)
      for (size_t j = 0; j < ids_[i].size(); ++j)
        owner_[ids_[i][j]] = {static_cast<uint32_t>(i), static_cast<uint32_t>(j)};
  }

  void on_welcome(load& l, uint32_t idx) override {
    welcome_at_[idx] = now_ns();
    if (mode_ != mode::seed)
      return;
    for (size_t j = 0; j < ids_[idx].size(); ++j) {
      send_attempt(l, idx, j);
      send_logs(l, idx, j, 0, static_cast<int64_t>(a_.sent_logs));
    }
  }

  bool on_frame(load& l, uint32_t idx, const std::string& type, const nlohmann::json& j) override {
    if (type != "backfill_request")
      return false;
    auto t = now_ns();
    ++requests;
    if (first_request_ns == 0)
      first_request_ns = t;
    last_request_ns = t;
    if (!first_request_seen_[idx]) {
      first_request_seen_[idx] = true;
      welcome_to_request_us.push_back(static_cast<double>(t - welcome_at_[idx]) / 1000.0);
    }
    auto rid = j.find("request_id");
    auto ids = j.find("attempt_ids");
    if (rid == j.end() || !rid->is_string() || ids == j.end() || !ids->is_array()) {
      ++malformed;
      return true;
    }
    const nlohmann::json* after = nullptr;
    if (auto la = j.find("logs_after"); la != j.end()) {
      if (!la->is_object()) {
        ++malformed;
        return true;
      }
      after = &*la;
    }
    auto request_id = rid->get<std::string>();
    request_ids.push_back(request_id);
    protocol::backfill_response resp;
    resp.request_id = request_id;
    for (auto& v : *ids) {
      if (!v.is_string()) {
        ++malformed;
        continue;
      }
      auto id = v.get<std::string>();
      ++attempts_requested;
      if (!requested_.insert(id).second)
        ++re_requested;
      if (mode_ != mode::answer)
        continue;
      auto o = owner_.find(id);
      if (o == owner_.end() || o->second.first != idx) {
        ++foreign;
        resp.results.push_back({id, false, 0, "not an attempt of this node"});
        continue;
      }
      // logs_after: the highest contiguous stored seq; phase 1 stored 0 .. sent_logs-1.
      int64_t from = 0;
      std::optional<int64_t> given;
      if (after) {
        if (auto s = after->find(id); s != after->end() && s->is_number_integer())
          given = s->get<int64_t>();
      }
      std::optional<int64_t> expected;
      if (a_.sent_logs > 0)
        expected = static_cast<int64_t>(a_.sent_logs) - 1;
      if (given != expected)
        ++logs_after_unexpected;
      if (given)
        from = *given + 1;
      if (a_.resend_attempts)
        send_attempt(l, idx, o->second.second);
      lines_resent += send_logs(l, idx, o->second.second, from, static_cast<int64_t>(a_.logs));
      resp.results.push_back({id, true, static_cast<int64_t>(a_.logs), ""});
    }
    if (mode_ == mode::seed) {
      ++ignored; // phase 1: the bye that follows ends the request
      return true;
    }
    if (mode_ == mode::silent)
      return true;
    l.send(idx, protocol::encode_backfill_response(resp));
    ++responses;
    turnaround_us.push_back(static_cast<double>(now_ns() - t) / 1000.0);
    return true;
  }

  // What happened (read by the scenario after the run).
  uint64_t requests = 0, responses = 0, attempts_requested = 0, re_requested = 0, foreign = 0, malformed = 0;
  uint64_t logs_after_unexpected = 0, lines_resent = 0, ignored = 0;
  int64_t first_request_ns = 0, last_request_ns = 0;
  std::vector<std::string> request_ids;
  std::vector<double> welcome_to_request_us;
  std::vector<double> turnaround_us;

private:
  void send_attempt(load& l, uint32_t idx, size_t j) {
    protocol::attempt at;
    at.attempt_id = ids_[idx][j];
    at.task_id = "bench-task-" + std::to_string(j);
    at.state = "succeeded";
    at.started_at = ts_;
    at.finished_at = ts_;
    l.send(idx, protocol::encode_attempt(at));
  }

  /// Lines [from, to) of attempt j, in frames of at most frame_lines. Returns lines sent.
  uint64_t send_logs(load& l, uint32_t idx, size_t j, int64_t from, int64_t to) {
    uint64_t sent = 0;
    auto& id = ids_[idx][j];
    auto per = static_cast<int64_t>(std::max<size_t>(a_.frame_lines, 1));
    for (int64_t first = from; first < to; first += per) {
      protocol::logs lg;
      lg.attempt_id = id;
      for (int64_t s = first; s < std::min(to, first + per); ++s)
        lg.entries.push_back({s, ts_, "stdout", bench_line(id, s, a_.line_bytes)});
      sent += lg.entries.size();
      l.send(idx, protocol::encode_logs(lg));
    }
    return sent;
  }

  const attempt_table& ids_;
  backfill_args a_;
  mode mode_;
  std::unordered_map<std::string, std::pair<uint32_t, uint32_t>> owner_; // attempt -> (node, index)
  std::unordered_set<std::string> requested_;
  std::vector<int64_t> welcome_at_;
  std::vector<bool> first_request_seen_;
  std::string ts_;
};

/// Per-job mark -> finish times from the jobs table (the daemon's clock, ms resolution).
struct job_figures {
  std::map<std::string, int64_t> by_status;
  std::vector<double> latency_us; // finished_at - created_at of finished jobs
  int64_t found = 0;
};

job_figures read_jobs(storage::database& db, const std::vector<std::string>& ids);

void poll_rows(report& r, const count_poller& p);

void check_database_is_ours(storage::database& db, const std::vector<bench_node>& nodes);

} // namespace nodecoord::bench
