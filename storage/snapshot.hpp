#pragma once
// Long reads on a connection of their own (issue 19): the database's size and bundle exports run
// here, not in the storage actor, so a walk of millions of rows stalls no session's writes. One
// transaction, read only, in one snapshot (PostgreSQL: REPEATABLE READ; SQLite: a WAL read
// transaction), so everything the read returns is consistent with itself.
#include "common/clock.hpp"
#include "storage/operations.hpp"
#include "storage/url.hpp"

#include <functional>

namespace nodecoord::storage {

/// Connects to `url`, runs `read` in one read-only snapshot transaction and disconnects. Throws
/// what the connection or `read` threw (nothing is written either way).
void read_snapshot(const storage_url& url, const clock_fn& clock, const std::function<void(op_context&)>& read);

} // namespace nodecoord::storage
