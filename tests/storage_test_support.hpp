#pragma once

// Shared by the storage_test sources: nodes, sessions, attempts and lines made through the real
// operations, and small readers of rows.

#include "common/ids.hpp"
#include "storage/grouped.hpp"
#include "storage/migrations.hpp"
#include "storage/query.hpp"
#include "test_db.hpp"

#include <soci/soci.h>

#include <algorithm>
#include <functional>
#include <map>
#include <random>

using namespace nodecoord;
using namespace nodecoord::storage;
using nodecoord::test::test_database;

namespace storage_test {

inline node_record add_node(test_database& t, const std::string& name) {
  auto r = t.run(node_create{name, "", "kid-" + name, sha256_hex("secret-" + name)});
  BOOST_REQUIRE(r.created);
  return r.node;
}

inline int64_t begin_session(test_database& t, const node_record& n) {
  auto cur = t.run(node_lookup_by_name{n.name});
  auto r = t.run(node_begin_session{n.id, cur.node.session_epoch});
  BOOST_REQUIRE(r.ok);
  return r.epoch;
}

inline std::string add_attempt(test_database& t, const node_record& n, const std::string& id = new_uuid()) {
  auto r = t.run(attempt_upsert{n.id, id, "task-1", "running", "", "", ""});
  BOOST_REQUIRE(r.status == write_status::ok);
  return id;
}

inline std::vector<log_entry> lines(int64_t from, int64_t to) { // [from, to)
  std::vector<log_entry> out;
  for (auto s = from; s < to; ++s)
    out.push_back({s, "2026-01-09T12:00:00.000Z", "stdout", "line " + std::to_string(s)});
  return out;
}

inline attempt_record get(test_database& t, const std::string& id) {
  auto r = t.run(attempt_get{id});
  BOOST_REQUIRE(r.found);
  return r.attempt;
}

inline std::string job_status_of(test_database& t, const std::string& id) {
  std::string s;
  query(t.db().session(), "SELECT status FROM jobs WHERE id = :id").bind("id", id).each([&](const soci::row& r) {
    s = col_str(r, 0);
  });
  return s;
}

inline int64_t count(test_database& t, const std::string& sql) {
  int64_t n = -1;
  query(t.db().session(), sql).each([&](const soci::row& r) { n = col_int(r, 0); });
  return n;
}

/// Completes `id` through a one-attempt backfill (mark, then an ok with `log_count` lines).
inline void complete(test_database& t, const node_record& n, int64_t epoch, const std::string& id,
                     int64_t log_count = 0) {
  auto req = new_uuid();
  BOOST_REQUIRE_EQUAL(t.run(mark_pending{req, n.id, epoch, {id}}).marked.size(), 1u);
  BOOST_REQUIRE_EQUAL(t.run(apply_backfill{req, n.id, {{id, true, log_count, ""}}, 5}).completed, 1);
  BOOST_REQUIRE_EQUAL(get(t, id).sync_state, "complete");
}

} // namespace storage_test
