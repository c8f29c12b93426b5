#include "test_db.hpp"

#include <unistd.h>

#include "common/api_key.hpp"
#include "common/ids.hpp"
#include "storage/query.hpp"

#include <boost/test/unit_test.hpp>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>

#include <cstdlib>
#include <filesystem>

namespace nodecoord::test {

namespace {

std::string pg_connect_string(const std::string& url) {
  return storage::parse_storage_url(url, "", std::chrono::seconds(5)).connect_string;
}

} // namespace

std::string pg_base_url() {
  const char* u = std::getenv("NODECOORD_TEST_PG_URL");
  if (!u || !*u)
    BOOST_FAIL("NODECOORD_TEST_PG_URL is not set: PostgreSQL tests need a server "
               "(run them through scripts/run-tests.sh, which starts one)");
  return u;
}

test_database::test_database(storage::backend b, manual_clock c) : clock(std::move(c)), kind_(b) {
  if (b == storage::backend::sqlite) {
    // tmpfs when there is one: SQLite's fsync per commit costs nothing there.
    std::string tmpl =
      ::access("/dev/shm", W_OK) == 0 ? "/dev/shm/nodecoord-test.XXXXXX" : "/tmp/nodecoord-test.XXXXXX";
    dir_ = mkdtemp(tmpl.data());
    url_ = "sqlite://" + dir_ + "/test.db";
  } else {
    auto base = pg_base_url();
    schema_ = "t_" + random_hex(6);
    soci::session admin(soci::postgresql, pg_connect_string(base));
    admin << "CREATE SCHEMA " + schema_;
    url_ = base + (base.find('?') == std::string::npos ? "?" : "&") + "options=-c%20search_path%3D" + schema_;
  }
  db_ = std::make_unique<storage::database>(parsed_url(), clock.fn());
  db_->connect();
  db_->migrate();
  exec_ = std::make_unique<storage::batch_executor>(*db_);
}

test_database::~test_database() {
  exec_.reset();
  db_.reset();
  try {
    if (!dir_.empty())
      std::filesystem::remove_all(dir_);
    if (!schema_.empty()) {
      soci::session admin(soci::postgresql, pg_connect_string(pg_base_url()));
      admin << "SET client_min_messages = warning";
      admin << "DROP SCHEMA " + schema_ + " CASCADE";
    }
  } catch (const std::exception& e) {
    BOOST_TEST_MESSAGE("test database cleanup failed: " << e.what());
  }
}

storage::storage_url test_database::parsed_url() const {
  return storage::parse_storage_url(url_, "", std::chrono::seconds(5));
}

std::vector<std::string> test_database::run_items(std::span<storage::batch_item> items) {
  auto rep = exec_->execute(items);
  if (rep.stop != storage::stop_reason::none)
    throw std::runtime_error("batch stopped: " + rep.stop_message);
  BOOST_REQUIRE_EQUAL(rep.done, items.size());
  return rep.errors;
}

std::string test_database::dump() {
  const auto& d = db_->sql_dialect();
  struct table {
    const char* name;
    std::string columns;
    const char* order;
  };
  std::vector<table> tables{
    {"nodes",
     "id, name, key_id, key_hash, status, session_epoch, " + d.ts("connected_at") + ", " + d.ts("disconnected_at")
       + ", disconnect_reason, " + d.ts("last_seen_at") + ", " + d.ts("created_at") + ", " + d.ts("disabled_at") + ", "
       + d.json_text("capabilities") + ", owner_instance",
     "id"},
    {"node_task_attempts",
     "id, node_id, task_id, state, sync_state, backfill_request_id, " + d.ts("sync_requested_at") + ", "
       + d.ts("last_full_sync_at") + ", backfill_failures, log_count, log_max_seq, " + d.ts("started_at") + ", "
       + d.ts("finished_at") + ", " + d.ts("created_at") + ", " + d.ts("updated_at")
       + ", logs_pruned, logs_pruned_through",
     "id"},
    {"attempt_logs", "attempt_id, seq, " + d.ts("ts") + ", stream, line", "attempt_id, seq"},
    {"jobs",
     "id, type, status, node_id, attempt_count, " + d.json_text("detail") + ", error, " + d.ts("created_at") + ", "
       + d.ts("started_at") + ", " + d.ts("finished_at") + ", instance_id",
     "id"},
    {"instances",
     "id, incarnation, " + d.ts("started_at") + ", " + d.ts("heartbeat_at") + ", version, listen, "
       + d.ts("recovered_at") + ", recovered_by",
     "id"},
  };
  std::string out;
  for (auto& t : tables) {
    out += std::string("## ") + t.name + "\n";
    storage::query(db_->session(), "SELECT " + t.columns + " FROM " + t.name + " ORDER BY " + t.order)
      .each([&](const soci::row& r) {
        for (size_t i = 0; i < r.size(); ++i) {
          auto v = storage::col_str(r, i);
          // JSON text differs in spacing between JSONB and TEXT; normalise for comparison.
          if (std::string(t.name) == "jobs" && i == 5)
            std::erase(v, ' ');
          out += (r.get_indicator(i) == soci::i_null ? "NULL" : v) + "|";
        }
        out += "\n";
      });
  }
  return out;
}

void test_database::exec_sql(const std::string& sql) { db_->session() << sql; }

test_node add_test_node(test_database& t, const std::string& name) {
  auto k = generate_api_key();
  auto r = t.run(storage::node_create{name, "", k.key_id, k.key_hash});
  BOOST_REQUIRE_MESSAGE(r.created, "node " << name << " was not created");
  return {r.node.id, name, k.key};
}

} // namespace nodecoord::test
