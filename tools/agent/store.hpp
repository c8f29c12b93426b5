#pragma once
// The agent's own store (a SQLite file): its attempts and their log lines, and, per attempt, how
// much of it the coordinator has confirmed receiving. Several processes use one file at once —
// `nodecoord-agent record …` / `run` write, `nodecoord-agent connect` reads and confirms — so
// every change is one short transaction (WAL, busy timeout).
//
// Log lines are numbered 0, 1, 2, … per attempt by the store itself (docs/protocol.md "Log
// sequence numbers"): an append reads the attempt's count and writes the next numbers in the
// same write transaction, so concurrent writers never reuse or skip a number.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace soci {
class session;
}

namespace nodecoord::agent {

struct attempt_row {
  std::string id;
  std::string task_id;
  std::string state; // queued | running | succeeded | failed | cancelled
  std::string started_at;
  std::string finished_at;
  std::string meta;              // JSON object text, or empty
  int64_t version = 0;           // +1 on every change of the fields above
  int64_t log_count = 0;         // lines 0 .. log_count-1 exist
  int64_t announced_version = 0; // the coordinator confirmed receiving this version
  int64_t delivered_logs = 0;    // ... and lines 0 .. delivered_logs-1
};

struct log_row {
  int64_t seq = 0;
  std::string ts;
  std::string stream; // stdout | stderr | system
  std::string line;
};

/// Something the caller got wrong (an unknown attempt, a bad state); the store is unchanged.
struct store_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

bool is_attempt_state(const std::string& s);
bool is_final_state(const std::string& s);
/// `s` with every invalid UTF-8 sequence replaced by U+FFFD (what the wire would carry anyway).
std::string valid_utf8(const std::string& s);

class store {
public:
  /// Opens (creating if needed) the store file.
  explicit store(const std::string& path);
  ~store();
  store(const store&) = delete;
  store& operator=(const store&) = delete;

  /// A new attempt (random UUID), state `running` unless given, started now. Returns its id.
  std::string start_attempt(const std::string& task_id, const std::string& state = "running",
                            const std::string& meta = {});
  /// Changes the state (and sets finished_at for a final state); `meta` replaces the stored one
  /// if not empty. Throws store_error for an unknown attempt or state.
  void set_state(const std::string& attempt_id, const std::string& state, const std::string& meta = {});
  /// Appends lines in one transaction, numbered after the existing ones. Returns the first seq.
  int64_t append_logs(const std::string& attempt_id, const std::string& stream, const std::vector<std::string>& lines);

  std::optional<attempt_row> attempt(const std::string& id);
  /// Lines with seq in [from, to), in order.
  std::vector<log_row> logs(const std::string& attempt_id, int64_t from, int64_t to);
  /// Attempts with something the coordinator has not confirmed (a newer version or more lines),
  /// oldest first, at most `limit`.
  std::vector<attempt_row> unconfirmed(size_t limit);
  /// The coordinator received `version` and lines below `logs` (never moves backwards).
  void confirm(const std::string& attempt_id, int64_t version, int64_t logs);
  /// The coordinator could not store the attempt's data: send all of it again.
  void unconfirm(const std::string& attempt_id);
  /// The coordinator refuses the attempt for good (another node owns its id): stop sending what
  /// it holds now, so it does not block the attempts behind it. A later change tries again.
  void give_up(const std::string& attempt_id);
  std::vector<attempt_row> all_attempts();

private:
  void open(const std::string& path);
  template <class F>
  void write(F&& f);
  std::unique_ptr<soci::session> sql_;
};

} // namespace nodecoord::agent
