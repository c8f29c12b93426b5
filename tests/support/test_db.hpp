#pragma once
// Isolated databases for tests, on either backend. SQLite: a file in a fresh temp directory.
// PostgreSQL: a fresh schema in the database named by NODECOORD_TEST_PG_URL (set by
// scripts/run-tests.sh), so test binaries can run in parallel. A missing NODECOORD_TEST_PG_URL is a
// test failure, never a skip.
#include "common/clock.hpp"
#include "storage/batch_executor.hpp"
#include "storage/database.hpp"
#include "storage/operations.hpp"

#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>

namespace nodecoord::storage {
// Boost.Test prints values of failed checks.
inline std::ostream& operator<<(std::ostream& os, write_status s) { return os << to_string(s); }
inline std::ostream& operator<<(std::ostream& os, backfill_outcome o) { return os << to_string(o); }
} // namespace nodecoord::storage

namespace nodecoord::test {

/// A clock the test moves by hand.
struct manual_clock {
  std::shared_ptr<sys_time> t = std::make_shared<sys_time>(*parse_time("2026-01-09T12:00:00.000Z"));
  clock_fn fn() const {
    auto p = t;
    return [p] { return *p; };
  }
  void advance(std::chrono::milliseconds d) const { *t += d; }
};

/// NODECOORD_TEST_PG_URL; fails the current test if it is not set.
std::string pg_base_url();

class test_database {
public:
  explicit test_database(storage::backend b, manual_clock clock = {});
  ~test_database();
  test_database(const test_database&) = delete;

  storage::backend kind() const { return kind_; }
  /// A storage.url for this database (another connection, an actor, the daemon).
  const std::string& url() const { return url_; }
  storage::storage_url parsed_url() const;
  storage::database& db() { return *db_; }
  storage::batch_executor& executor() { return *exec_; }
  manual_clock clock;

  /// Runs one operation in its own transaction; throws if it failed.
  template <class Op>
  typename Op::result_type run(const Op& op) {
    typename Op::result_type result{};
    storage::batch_item item;
    item.run = [&](storage::op_context& c) { result = storage::execute(c, op); };
    auto errors = run_items(std::span<storage::batch_item>(&item, 1));
    if (!errors.at(0).empty())
      throw std::runtime_error("operation failed: " + errors[0]);
    return result;
  }
  /// Runs items as one batch (several transactions only if one fails on its own); throws if the
  /// batch stopped (connection or transient error). Returns the per-item errors.
  std::vector<std::string> run_items(std::span<storage::batch_item> items);

  /// Every row of every table in primary-key order, as text (for equality checks).
  std::string dump();

  /// Executes raw SQL on this database (test setup).
  void exec_sql(const std::string& sql);

private:
  storage::backend kind_;
  std::string url_;
  std::string dir_;    // sqlite: temp directory
  std::string schema_; // postgresql: test schema
  std::unique_ptr<storage::database> db_;
  std::unique_ptr<storage::batch_executor> exec_;
};

/// A node created directly in the database, with the full API key a hello presents.
struct test_node {
  std::string id, name, key;
};

/// Creates node `name` with a fresh API key (fails the test if the name is taken).
test_node add_test_node(test_database& t, const std::string& name);

} // namespace nodecoord::test

/// Defines one test body and registers it twice: NAME_sqlite and NAME_postgresql.
#define NC_BOTH_BACKENDS(name)                                                                                         \
  static void name##_body(::nodecoord::test::test_database& t);                                                        \
  BOOST_AUTO_TEST_CASE(name##_sqlite) {                                                                                \
    ::nodecoord::test::test_database t(::nodecoord::storage::backend::sqlite);                                         \
    name##_body(t);                                                                                                    \
  }                                                                                                                    \
  BOOST_AUTO_TEST_CASE(name##_postgresql) {                                                                            \
    ::nodecoord::test::test_database t(::nodecoord::storage::backend::postgresql);                                     \
    name##_body(t);                                                                                                    \
  }                                                                                                                    \
  static void name##_body([[maybe_unused]] ::nodecoord::test::test_database& t)
