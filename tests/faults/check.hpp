#pragma once
// The round's verdict, read from the coordinator's database directly and from every agent's store:
// every attempt a store holds exists under its node, `complete`, with the store's task_id, state,
// times and meta (meta compared as parsed JSON), and exactly the store's lines (seq, ts, stream,
// text); no other attempt of these nodes exists; nothing is `pending_backfill`; and, once the
// daemon has stopped, no job is `queued` or `running`.
// No Boost.Test here: the test asserts on the report.
#include "storage/url.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace nodecoord::faults {

struct agent_ref {
  std::string node_name;
  std::string node_id;
  std::string store_path;
};

struct finding {
  std::string attempt_id; // or a job id for open jobs
  std::string detail;     // what differs, and the coordinator's row
};

struct check_report {
  // What the stores hold.
  int64_t attempts = 0;
  int64_t lines = 0;
  int64_t unconfirmed = 0; // store attempts whose agent still waits for a confirmation
  // What the coordinator holds for these nodes.
  int64_t db_attempts = 0;
  int64_t db_lines = 0; // sum of log_count
  int64_t db_complete = 0;
  int64_t db_partial = 0;
  int64_t db_failed = 0;
  bool lines_compared = false;
  bool jobs_checked = false;

  std::vector<finding> missing;        // in a store, not on the coordinator
  std::vector<finding> truncated;      // fewer lines than the store
  std::vector<finding> bad_lines;      // extra, duplicated or different lines
  std::vector<finding> wrong_fields;   // node, task_id, state, times, meta, log counter
  std::vector<finding> stuck;          // not `complete` (partial, pending_backfill, failed)
  std::vector<finding> pending;        // `pending_backfill` rows (any node)
  std::vector<finding> extra_attempts; // on the coordinator, in no store
  std::vector<finding> open_jobs;      // queued or running after the daemon stopped
  std::vector<finding> failed;         // sync_state `failed`, with the node's backfill history
  std::vector<finding> counters;       // the overview's counters differ from a scan (final check)

  bool clean() const;
  /// Counts per category, one line: "missing=0 truncated=0 ...".
  std::string counts() const;
  /// Every non-empty category with its first `first` findings.
  std::string describe(size_t first = 5) const;
  /// Changes when the coordinator or the agents' confirmations move (settle detection).
  std::string fingerprint() const;
};

/// Reads everything once. `lines`: compare every line (expensive); `jobs`: check open jobs
/// (only meaningful after the daemon stopped).
check_report check_round(const storage::storage_url& url, const std::vector<agent_ref>& agents, bool lines, bool jobs);

/// One line per finding list of `items`, at most `first` of them.
std::string list_findings(const std::vector<finding>& items, size_t first);

} // namespace nodecoord::faults
