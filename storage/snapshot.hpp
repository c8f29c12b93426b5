#pragma once
// Long reads and bundle imports on a connection of their own (issue 19): the database's size,
// bundle exports and imports run here, not in the storage actor, so a walk of millions of rows
// stalls no session's writes.
// - read_snapshot: one read-only transaction in one snapshot (PostgreSQL: REPEATABLE READ;
//   SQLite: a WAL read transaction), so everything the read returns is consistent with itself.
// - write_transaction: one read-write transaction, all or nothing. On PostgreSQL the sessions'
//   writes go on beside it (the counter triggers add to a shard per backend, so they share no
//   row with it); they wait only for a row it also writes. SQLite has one writer: BEGIN IMMEDIATE
//   takes its lock for the whole transaction, and the storage actor waits for it (up to the busy
//   timeout, then retries its batch), so an import there still pauses the sessions' writes.
#include "common/clock.hpp"
#include "storage/operations.hpp"
#include "storage/url.hpp"

#include <functional>
#include <stdexcept>

namespace nodecoord::storage {

/// Connects to `url`, runs `read` in one read-only snapshot transaction and disconnects. Throws
/// what the connection or `read` threw (nothing is written either way).
void read_snapshot(const storage_url& url, const clock_fn& clock, const std::function<void(op_context&)>& read);

/// The database could not run the transaction (connection lost, lock or serialization timeout,
/// disk full): nothing was written, and trying again later may succeed.
struct database_unavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Connects to `url`, runs `write` in one transaction, commits (or, with `rollback`, rolls back:
/// a dry run) and disconnects. A transient failure (deadlock, serialization, SQLite busy) runs
/// `write` again, up to `attempts` times in all. Throws database_unavailable for what is the
/// database's fault, else what `write` threw (a statement the data makes fail, a
/// std::runtime_error of the caller's): nothing is written either way.
void write_transaction(const storage_url& url, const clock_fn& clock, bool rollback,
                       const std::function<void(op_context&)>& write, int attempts = 3);

} // namespace nodecoord::storage
