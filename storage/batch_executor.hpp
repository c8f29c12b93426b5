#pragma once
// Group commit (DESIGN §3 rule 5): applies queued operations in arrival order, many per
// transaction, and says which of them are settled. Batching is invisible: an operation that fails
// on its own (a statement error) is isolated by re-running the batch one operation per
// transaction, so the others still apply exactly as they would have one by one.
//
// Exactly once across a lost connection: every transaction also writes a token into
// storage_commits. If the connection dies while COMMIT is in flight, the outcome is unknown; after
// reconnecting, the token tells whether the batch committed (then the results computed inside it
// are delivered and nothing runs twice) or not (then it runs again).
#include "storage/database.hpp"
#include "storage/operations.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace nodecoord::storage {

/// An item's operation and result slot, for a group runner (storage/grouped.hpp).
struct group_member {
  virtual ~group_member() = default;
};

/// Runs adjacent operations of one kind together (set-based SQL). It must leave the database and
/// every member's result exactly as running the members one after another would.
using group_runner = void (*)(op_context&, std::span<group_member* const>);

struct batch_item {
  std::function<void(op_context&)> run;         // runs inside the transaction; stores its result
  std::function<void()> deliver;                // after commit: hand the stored result over
  std::function<void(const std::string&)> fail; // the operation failed on its own
  /// Adjacent items with the same non-null runner run together through it instead of `run`.
  group_runner group = nullptr;
  std::shared_ptr<group_member> member;
  /// Never applied because the storage stops for good (not the operation's fault); optional.
  std::function<void(const std::string&)> abandon;
};

enum class stop_reason { none, connection, transient };

struct batch_report {
  size_t done = 0;                 // items [0, done) are settled
  std::vector<std::string> errors; // errors[i] non-empty: item i failed on its own (i < done)
  stop_reason stop = stop_reason::none;
  std::string stop_message;
};

struct executor_stats {
  uint64_t transactions = 0;           // committed
  uint64_t read_only_transactions = 0; // of those, changed nothing (no token, nothing flushed)
  uint64_t items = 0;                  // settled successfully
  uint64_t item_errors = 0;            // settled with an error
  uint64_t isolations = 0;             // batches re-run one by one after a statement error
  uint64_t connection_errors = 0;
  uint64_t transient_errors = 0;
  uint64_t in_doubt_committed = 0; // lost COMMIT acknowledgements that had committed
  uint64_t in_doubt_rolled_back = 0;
  uint64_t groups = 0;        // runs of adjacent operations executed together
  uint64_t grouped_items = 0; // operations in those runs
  uint64_t last_batch_size = 0;
  uint64_t max_batch_size = 0;
  double last_commit_ms = 0;
};

/// Thrown by tests (through fault_hook) to simulate a connection lost at a chosen point.
struct simulated_connection_loss : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class batch_executor {
public:
  explicit batch_executor(database& db);

  /// Applies items in order. Requires db.connected(). On stop != none the caller reconnects
  /// (connection) or waits (transient) and calls again with the unsettled items, in order.
  batch_report execute(std::span<batch_item> items);

  const executor_stats& stats() const { return stats_; }
  const std::string& instance() const { return instance_; }
  /// This daemon's instance id (DESIGN §9), given to every operation (op_context::instance).
  void set_instance_id(std::string id) { instance_id_ = std::move(id); }
  const std::string& instance_id() const { return instance_id_; }

  /// Test hook, called right before and right after COMMIT; may throw simulated_connection_loss.
  enum class fault_point { before_commit, after_commit };
  std::function<void(fault_point)> fault_hook;

private:
  struct tx_result {
    stop_reason stop = stop_reason::none;
    bool statement_error = false;
    std::string message;
  };
  tx_result run_transaction(std::span<batch_item> items);
  /// Runs the items in order, adjacent items of one group runner together.
  void run_items(op_context& ctx, std::span<batch_item> items);
  /// Resolves a transaction whose COMMIT outcome was lost. Returns how many leading items it
  /// settled (0 if it had not committed); throws on database errors.
  size_t resolve_in_doubt();

  database& db_;
  std::string instance_; // this process's run, for storage_commits (not the instance id)
  std::string instance_id_;
  int64_t next_token_ = 0;
  struct in_doubt {
    int64_t token;
    size_t count;
  };
  std::optional<in_doubt> doubt_;
  executor_stats stats_;
};

} // namespace nodecoord::storage
