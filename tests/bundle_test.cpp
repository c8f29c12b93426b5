#define BOOST_TEST_MODULE bundle_test
#include <boost/test/unit_test.hpp>

// Bundles (storage/bundle.hpp, docs/admin-api.md): export on both backends, the export file and
// its retries, ids in any case. Import, corruption, moves between backends and size are in
// bundle_import_test.cpp (one binary).

#include "bundle_test_support.hpp"

using namespace bundle_test;

// --- export ----------------------------------------------------------------------------------

NC_BOTH_BACKENDS(export_writes_every_row_once_in_pages) {
  auto s = populate(t);
  BOOST_TEST(t.run(b::export_counts{}) == counts_of(s));
  auto text = export_paged(t, 1000);
  // Pages of any size, and one transaction, give the same text.
  BOOST_TEST(export_paged(t, 7) == text);
  BOOST_TEST(export_paged(t, 1) == text);
  BOOST_TEST(export_all(t, 3) == text);
  BOOST_TEST(export_all(t) == text);
  auto lines = split_lines(text);
  BOOST_REQUIRE_EQUAL(lines.size(), 1 + 3 + 8 + s.logs + 4 + s.audit);
  BOOST_TEST(lines[0]
             == R"({"type":"manifest","format":"nodecoord-bundle","version":2,"created_at":")" + exported_at
                  + R"(","counts":{"nodes":3,"attempts":8,"logs":274,"jobs":4,"audit":3}})");
  // Lines in the documented shape; no secret ever leaves.
  BOOST_TEST(text.find("key_id") == std::string::npos);
  BOOST_TEST(text.find("key_hash") == std::string::npos);
  BOOST_TEST(text.find(sha256_hex("secret-n1")) == std::string::npos);
  BOOST_TEST(text.find("\"log_count\"") == std::string::npos);
  auto node = nlohmann::json::parse(lines[1]);
  BOOST_TEST(node["type"] == "node");
  for (auto* f : {"id", "name", "status", "session_epoch", "connected_at", "disconnected_at", "disconnect_reason",
                  "last_seen_at", "capabilities", "created_at", "disabled_at"})
    BOOST_TEST(node.contains(f), f);
  BOOST_TEST(node.size() == 12u);
  // The first log line of the first attempt in id order, exactly.
  auto logs = t.run(b::read_logs{"", -1, 1});
  BOOST_REQUIRE_EQUAL(logs.size(), 1u);
  auto first_log = b::line(logs[0]);
  BOOST_TEST(std::count(lines.begin(), lines.end(), first_log) == 1);
  BOOST_TEST(nlohmann::json::parse(first_log).size() == 6u);
  // A job's own type is job_type; detail is an object; an empty error is null.
  auto jobs = t.run(b::read_jobs{"", 100});
  BOOST_REQUIRE_EQUAL(jobs.size(), 4u);
  for (auto& j : jobs) {
    auto o = nlohmann::json::parse(b::line(j));
    BOOST_TEST(o["type"] == "job");
    BOOST_TEST(o["job_type"] == j.type);
    if (j.id == s.export_job) {
      BOOST_TEST(o["detail"] == nlohmann::json::parse(R"({"lines":3,"bytes":12})"));
      BOOST_TEST(o["error"] == "boom");
    }
    if (j.id == s.queued_job) {
      BOOST_TEST(o["detail"].is_null());
      BOOST_TEST(o["error"].is_null());
      BOOST_TEST(o["node_id"].is_null());
      BOOST_TEST(o["finished_at"].is_null());
    }
  }
  // Attempts: meta an object, nulls for what is not set.
  for (auto& a : t.run(b::read_attempts{"", 100})) {
    auto o = nlohmann::json::parse(b::line(a));
    BOOST_TEST((a.meta.empty() ? o["meta"].is_null() : o["meta"].is_object()));
    BOOST_TEST((a.finished_at.empty() ? o["finished_at"].is_null() : o["finished_at"] == a.finished_at));
    BOOST_TEST(o.size() == 17u);
    if (a.id == s.a2[0]) {
      BOOST_TEST(o["logs_pruned"] == 10);
      BOOST_TEST(o["logs_pruned_through"] == 9);
    } else {
      BOOST_TEST(o["logs_pruned"] == 0);
      BOOST_TEST(o["logs_pruned_through"].is_null());
    }
  }
  // The ledger, last, oldest first, exactly.
  BOOST_TEST(nlohmann::json::parse(lines[lines.size() - 3])
             == nlohmann::json::parse(
               R"({"type":"audit","id":1,"at":"2026-01-09T12:00:06.000Z","instance_id":null,"actor":"token:0123abcd",)"
               R"("action":"attempts.requeue","target":null,"filter":{"node":"n1","all":false},)"
               R"("counts":{"attempts":2},"result":"succeeded","error":null})"));
  BOOST_TEST(nlohmann::json::parse(lines[lines.size() - 3]).size() == 11u); // every field, in this order:
  BOOST_TEST(lines[lines.size() - 3].rfind(R"({"type":"audit","id":1,"at":"2026-01-09T12:00:06.000Z",)", 0) == 0u);
  auto refused = nlohmann::json::parse(lines[lines.size() - 2]);
  BOOST_TEST(refused["result"] == "refused");
  BOOST_TEST(refused["error"] == "budget_exceeded: \"quoted\"");
  BOOST_TEST(refused["counts"].is_null());
  BOOST_TEST(nlohmann::json::parse(lines.back())["target"] == "n3");
  // Keyset paging of logs across attempts: strictly increasing, each line once.
  std::set<std::pair<std::string, int64_t>> seen;
  b::read_logs op{"", -1, 13};
  std::pair<std::string, int64_t> last{"", -1};
  while (true) {
    auto page = t.run(op);
    for (auto& l : page) {
      std::pair<std::string, int64_t> key{l.attempt_id, l.entry.seq};
      BOOST_TEST((last < key));
      BOOST_TEST(seen.insert(key).second);
      last = key;
    }
    if (page.size() < 13)
      break;
    op.after_attempt_id = page.back().attempt_id;
    op.after_seq = page.back().entry.seq;
  }
  BOOST_TEST(static_cast<int64_t>(seen.size()) == s.logs);
  // Cursors must be UUIDs (PostgreSQL would refuse them; SQLite alike).
  BOOST_CHECK_THROW(t.run(b::read_nodes{"n1", 10}), std::runtime_error);
  BOOST_CHECK_THROW(t.run(b::read_logs{"x", 0, 10}), std::runtime_error);
}

// --- import ----------------------------------------------------------------------------------

NC_BOTH_BACKENDS(export_file_spools_the_same_bundle_and_its_counts) {
  auto s = populate(t);
  std::shared_ptr<std::FILE> file(std::tmpfile(), [](std::FILE* f) { std::fclose(f); });
  BOOST_REQUIRE(file);
  auto counts = t.run(b::export_file{file, exported_at});
  BOOST_TEST(counts == counts_of(s));
  std::rewind(file.get());
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, file.get())) > 0)
    text.append(buf, n);
  // The file holds exactly what write_all emits, and it parses.
  BOOST_TEST(text == export_all(t));
  BOOST_TEST(std::holds_alternative<b::parsed>(b::parse(text)));
}

namespace {

std::string read_whole(std::FILE* f) {
  std::rewind(f);
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
    text.append(buf, n);
  return text;
}

} // namespace

// The storage actor runs a batch again after a lost connection or a transient error, with the
// same file. The second try starts the file over: when it writes less than the first (rows went
// away in between), nothing of the first try is left behind its last line.
NC_BOTH_BACKENDS(a_retried_export_file_starts_its_spool_over) {
  populate(t);
  std::shared_ptr<std::FILE> file(std::tmpfile(), [](std::FILE* f) { std::fclose(f); });
  BOOST_REQUIRE(file);
  b::export_file op{file, exported_at};
  b::counts written;
  std::vector<batch_item> items{{[&](op_context& c) { written = storage::execute(c, op); }}};
  t.executor().fault_hook = [](batch_executor::fault_point p) {
    if (p == batch_executor::fault_point::before_commit)
      throw simulated_connection_loss("connection lost before COMMIT");
  };
  auto rep = t.executor().execute(items);
  BOOST_TEST((rep.stop == stop_reason::connection));
  t.executor().fault_hook = nullptr;
  t.db().connect();
  auto first = read_whole(file.get());
  BOOST_TEST_REQUIRE(first.size() > 0u); // the first try wrote the whole bundle
  // Meanwhile most log lines are gone: the retry writes a shorter bundle.
  t.exec_sql("DELETE FROM attempt_logs WHERE seq > 2");
  std::fseek(file.get(), 0, SEEK_END); // wherever the first try left the position
  rep = t.executor().execute(items);
  BOOST_TEST_REQUIRE(rep.done == 1u);
  BOOST_TEST_REQUIRE(rep.errors.at(0) == "");
  auto second = read_whole(file.get());
  auto expected = export_all(t);
  BOOST_TEST(second.size() < first.size());
  BOOST_TEST(second.size() == expected.size());
  BOOST_TEST((second == expected), "the spool holds " << second.size() << " bytes, the bundle is " << expected.size());
  BOOST_TEST(std::holds_alternative<b::parsed>(b::parse(second)));
  BOOST_TEST(written.logs == t.run(b::export_counts{}).logs);
}

namespace {

/// `text` with every UUID in it spelt in upper case.
std::string upper_case_uuids(const std::string& text) {
  std::string out = text;
  for (size_t i = 0; i + 36 <= out.size(); ++i)
    if (is_uuid(std::string_view(out).substr(i, 36))) {
      for (size_t k = i; k < i + 36; ++k)
        out[k] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[k])));
      i += 35;
    }
  return out;
}

} // namespace

// Ids in a bundle are kept in one spelling, lower case, whatever case the file uses: SQLite
// compares text exactly, PostgreSQL reads UUIDs back in lower case, and the admin API, the
// tracker and the nodes all use the lower-case form.
NC_BOTH_BACKENDS(upper_case_ids_in_a_bundle_are_stored_in_lower_case) {
  auto s = populate(t);
  auto text = export_all(t);
  auto upper = upper_case_uuids(text);
  BOOST_TEST_REQUIRE(upper != text);
  BOOST_TEST_REQUIRE(upper.find(s.a1[0]) == std::string::npos);
  auto n = counts_of(s);
  // The same rows as the source: all skipped, none conflicting.
  auto again = import(t, upper);
  BOOST_TEST(again.nodes == k(0, n.nodes, 0));
  BOOST_TEST(again.attempts == k(0, n.attempts, 0));
  BOOST_TEST(again.logs == k(0, n.logs, 0));
  BOOST_TEST(again.jobs == k(0, n.jobs, 0));
  // Into an empty database: the rows of the lower-case bundle, references intact.
  test_database dst(t.kind());
  auto r = import(dst, upper);
  BOOST_TEST(r.nodes == k(n.nodes, 0, 0));
  BOOST_TEST(r.attempts == k(n.attempts, 0, 0));
  BOOST_TEST(r.logs == k(n.logs, 0, 0));
  BOOST_TEST(r.jobs == k(n.jobs, 0, 0));
  test_database lower(t.kind());
  import(lower, text);
  BOOST_TEST(masked_dump(dst) == masked_dump(lower));
  BOOST_TEST(export_all(dst) == export_all(lower));
  auto a = dst.run(attempt_get{s.a1[0]});
  BOOST_TEST_REQUIRE(a.found);
  BOOST_TEST(a.attempt.id == s.a1[0]);
  BOOST_TEST(a.attempt.node_id == s.n1.id);
  BOOST_TEST(a.attempt.log_count == 250);
}
