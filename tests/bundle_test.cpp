// Bundles (storage/bundle.hpp): export, parse and import on SQLite and on PostgreSQL, and from one
// backend to the other.
#define BOOST_TEST_MODULE bundle_test
#include <boost/test/unit_test.hpp>

#include "common/ids.hpp"
#include "storage/bundle.hpp"
#include "storage/dialect.hpp"
#include "storage/query.hpp"
#include "test_db.hpp"

#include <nlohmann/json.hpp>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

using namespace nodecoord;
using namespace nodecoord::storage;
using namespace std::chrono_literals;
using nodecoord::test::test_database;
namespace b = nodecoord::storage::bundle;

namespace nodecoord::storage::bundle {
inline std::ostream& operator<<(std::ostream& os, const import_bundle::result_type::kind& k) {
  return os << "{inserted " << k.inserted << ", skipped " << k.skipped << ", conflicting " << k.conflicting << "}";
}
inline std::ostream& operator<<(std::ostream& os, const import_bundle::result_type& r) {
  return os << "nodes " << r.nodes << " attempts " << r.attempts << " logs " << r.logs << " jobs " << r.jobs;
}
inline std::ostream& operator<<(std::ostream& os, const counts& c) {
  return os << "{" << c.nodes << ", " << c.attempts << ", " << c.logs << ", " << c.jobs << "}";
}
} // namespace nodecoord::storage::bundle

namespace {

const std::string exported_at = "2026-01-09T13:00:00.000Z";

struct source {
  node_record n1, n2, n3;
  std::vector<std::string> a1, a2, a3; // attempts of n1, n2, n3
  std::string pending_request, failed_request, queued_job, export_job;
  int64_t logs = 0;
};

node_record add_node(test_database& t, const std::string& name) {
  auto r = t.run(node_create{name, "", "kid-" + name, sha256_hex("secret-" + name)});
  BOOST_REQUIRE(r.created);
  return r.node;
}

std::string add_attempt(test_database& t, const node_record& n, int i) {
  auto id = new_uuid();
  const char* states[] = {"running", "succeeded", "failed", "cancelled", "queued"};
  auto r = t.run(attempt_upsert{n.id, id, "task-" + std::to_string(i), states[i % 5], "2026-01-09T11:00:00.000Z",
                                i % 2 ? "2026-01-09T11:30:00.250Z" : "",
                                i % 2 ? R"({"host":"h1","exit":0,"tags":["a","b"]})" : ""});
  BOOST_REQUIRE(r.created);
  return id;
}

int64_t add_lines(test_database& t, const node_record& n, const std::string& attempt, std::vector<log_entry> lines) {
  auto r = t.run(logs_insert{n.id, attempt, lines});
  BOOST_REQUIRE(r.status == write_status::ok);
  return r.inserted;
}

std::vector<log_entry> numbered_lines(int64_t from, int64_t to, const std::string& stream = "stdout") {
  std::vector<log_entry> out;
  for (auto s = from; s < to; ++s)
    out.push_back({s, "2026-01-09T12:00:00.000Z", stream, "line " + std::to_string(s)});
  return out;
}

/// Every kind of row and state the import treats specially.
source populate(test_database& t) {
  source s;
  s.n1 = add_node(t, "n1");
  s.n2 = add_node(t, "n2");
  s.n3 = add_node(t, "n3");
  t.clock.advance(1s);
  auto e1 = t.run(node_begin_session{s.n1.id, 0, R"({"os":"linux","cpu":4})"});
  auto e2 = t.run(node_begin_session{s.n2.id, 0, R"({"gpu":true})"});
  BOOST_REQUIRE(e1.ok && e2.ok);
  t.clock.advance(1s);
  for (int i = 0; i < 4; ++i)
    s.a1.push_back(add_attempt(t, s.n1, i));
  for (int i = 0; i < 3; ++i)
    s.a2.push_back(add_attempt(t, s.n2, i + 1));
  s.a3.push_back(add_attempt(t, s.n3, 7));
  t.clock.advance(1s);
  s.logs += add_lines(t, s.n1, s.a1[0], numbered_lines(0, 250));
  // Gaps, an empty line, quotes, backslashes, control characters and non-ASCII text.
  std::vector<log_entry> odd{{0, "2026-01-09T12:00:01.001Z", "stdout", ""},
                             {1, "2026-01-09T12:00:01.002Z", "stderr", "quote \" backslash \\ tab \t end"},
                             {2, "2026-01-09T12:00:01.003Z", "system", "caf\xc3\xa9 \xe2\x9c\x93 | pipe"},
                             {3, "2026-01-09T12:00:01.004Z", "stdout", "two\nlines"},
                             {7, "2026-01-09T12:00:01.008Z", "stdout", "after a gap"},
                             {9, "2026-01-09T12:00:01.010Z", "stderr", "{\"type\":\"manifest\"}"}};
  s.logs += add_lines(t, s.n1, s.a1[1], odd);
  s.logs += add_lines(t, s.n2, s.a2[0], numbered_lines(0, 20, "stderr"));
  s.logs += add_lines(t, s.n2, s.a2[1], numbered_lines(0, 5));
  s.logs += add_lines(t, s.n3, s.a3[0], numbered_lines(0, 3));
  t.clock.advance(1s);
  BOOST_REQUIRE(t.run(node_end_session{s.n1.id, e1.epoch, "closed by peer"}).applied);
  BOOST_REQUIRE(t.run(node_disable{"n3"}).found);
  // n2 stays online: a finished backfill (one complete, one reset), and one still pending.
  s.failed_request = new_uuid();
  BOOST_REQUIRE_EQUAL(t.run(mark_pending{s.failed_request, s.n2.id, e2.epoch, {s.a2[0], s.a2[1]}}).marked.size(), 2u);
  t.clock.advance(1s);
  auto applied =
    t.run(apply_backfill{s.failed_request, s.n2.id, {{s.a2[0], true, 20, ""}, {s.a2[1], false, 0, "disk"}}});
  BOOST_REQUIRE_EQUAL(applied.completed, 1);
  BOOST_REQUIRE_EQUAL(applied.reset, 1);
  s.pending_request = new_uuid();
  BOOST_REQUIRE_EQUAL(t.run(mark_pending{s.pending_request, s.n2.id, e2.epoch, {s.a2[2]}}).marked.size(), 1u);
  t.exec_sql("UPDATE node_task_attempts SET sync_state = 'failed', backfill_failures = 5 WHERE id = '" + s.a1[3] + "'");
  job_record q;
  q.id = s.queued_job = new_uuid();
  q.type = "reconcile";
  q.status = "queued";
  BOOST_REQUIRE(t.run(job_insert{q}).inserted);
  job_record x;
  x.id = s.export_job = new_uuid();
  x.type = "bundle_export";
  x.status = "failed";
  x.node_id = s.n1.id;
  x.attempt_count = 3;
  x.detail = R"({"lines":3,"bytes":12})";
  x.error = "boom";
  x.started_at = "2026-01-09T12:00:02.000Z";
  BOOST_REQUIRE(t.run(job_insert{x}).inserted);
  t.clock.advance(1s);
  return s;
}

/// A bundle read with the page operations, each page in its own transaction.
std::string export_paged(test_database& t, int64_t page) {
  std::string out = b::manifest_line(t.run(b::export_counts{}), exported_at) + "\n";
  auto pages = [&](auto op, auto next) {
    while (true) {
      auto rows = t.run(op);
      BOOST_REQUIRE_LE(rows.size(), static_cast<size_t>(page));
      for (auto& r : rows)
        out += b::line(r) + "\n";
      if (rows.size() < static_cast<size_t>(page))
        return;
      next(op, rows.back());
    }
  };
  auto by_id = [](auto& op, const auto& last) { op.after_id = last.id; };
  pages(b::read_nodes{"", page}, by_id);
  pages(b::read_attempts{"", page}, by_id);
  pages(b::read_logs{"", -1, page}, [](b::read_logs& op, const b::log_row& last) {
    op.after_attempt_id = last.attempt_id;
    op.after_seq = last.entry.seq;
  });
  pages(b::read_jobs{"", page}, by_id);
  return out;
}

/// A bundle written by write_all inside one transaction.
std::string export_all(test_database& t, int64_t page = 1000) {
  std::string out;
  batch_item item;
  item.run = [&](op_context& c) {
    b::write_all(
      c, exported_at, [&](const std::string& l) { out += l + "\n"; }, page);
  };
  auto errors = t.run_items(std::span<batch_item>(&item, 1));
  BOOST_REQUIRE_EQUAL(errors.at(0), "");
  return out;
}

std::shared_ptr<const b::parsed> parse_ok(const std::string& text) {
  auto r = b::parse(text);
  if (auto* e = std::get_if<b::parse_error>(&r))
    BOOST_FAIL("parse failed: " << e->message);
  return std::make_shared<const b::parsed>(std::get<b::parsed>(std::move(r)));
}

b::parse_error parse_fails(const std::string& text) {
  auto r = b::parse(text);
  auto* e = std::get_if<b::parse_error>(&r);
  BOOST_REQUIRE_MESSAGE(e, "parse accepted a bad bundle");
  return *e;
}

b::import_bundle::result_type import(test_database& t, const std::string& text, bool dry_run = false) {
  return t.run(b::import_bundle{parse_ok(text), dry_run});
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    out.push_back(l);
  return out;
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (auto& l : lines)
    out += l + "\n";
  return out;
}

/// The dump with the nodes' key_id and key_hash masked (an import gives fresh ones).
std::string masked_dump(test_database& t) {
  std::string out, section;
  for (auto& l : split_lines(t.dump())) {
    if (l.rfind("## ", 0) == 0) {
      section = l;
      out += l + "\n";
      continue;
    }
    if (section != "## nodes") {
      out += l + "\n";
      continue;
    }
    size_t field = 0, from = 0;
    std::string row;
    for (auto bar = l.find('|'); bar != std::string::npos; from = bar + 1, bar = l.find('|', from), ++field)
      row += (field == 2 || field == 3 ? std::string("*") : l.substr(from, bar - from)) + "|";
    out += row + "\n";
  }
  return out;
}

/// The part of dump() between "## <name>" and the next section.
std::string dump_section(const std::string& dump, const std::string& name) {
  auto from = dump.find("## " + name + "\n");
  BOOST_REQUIRE(from != std::string::npos);
  auto to = dump.find("## ", from + 3);
  return dump.substr(from, to == std::string::npos ? std::string::npos : to - from);
}

/// What the import writes, applied to the source: then source and target must be equal.
void transform_like_an_import(test_database& t) {
  auto& d = t.db().sql_dialect();
  t.exec_sql("UPDATE nodes SET status = 'offline' WHERE status = 'online'");
  t.exec_sql("UPDATE node_task_attempts SET sync_state = 'partial', backfill_request_id = NULL "
             "WHERE sync_state = 'pending_backfill'");
  query(t.db().session(), "UPDATE jobs SET error = COALESCE(error, 'imported while ' || status), finished_at = "
                          "COALESCE(finished_at, "
                            + d.ts_param("at")
                            + "), status = 'abandoned' "
                              "WHERE status IN ('queued', 'running')")
    .bind("at", exported_at)
    .exec();
}

/// Export texts compared line by line as JSON values (JSONB orders keys its own way).
void check_same_bundle(const std::string& a, const std::string& b_text) {
  auto la = split_lines(a), lb = split_lines(b_text);
  BOOST_REQUIRE_EQUAL(la.size(), lb.size());
  for (size_t i = 0; i < la.size(); ++i)
    BOOST_TEST(nlohmann::json::parse(la[i]) == nlohmann::json::parse(lb[i]), "line " << i + 1 << ":\n"
                                                                                     << la[i] << "\n"
                                                                                     << lb[i]);
}

b::counts counts_of(const source& s) {
  return {3, static_cast<int64_t>(s.a1.size() + s.a2.size() + s.a3.size()), s.logs, 4};
}

b::import_bundle::result_type::kind k(int64_t inserted, int64_t skipped, int64_t conflicting) {
  return {inserted, skipped, conflicting};
}

} // namespace

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
  BOOST_REQUIRE_EQUAL(lines.size(), 1 + 3 + 8 + s.logs + 4);
  BOOST_TEST(lines[0]
             == R"({"type":"manifest","format":"nodecoord-bundle","version":1,"created_at":")" + exported_at
                  + R"(","counts":{"nodes":3,"attempts":8,"logs":284,"jobs":4}})");
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
    BOOST_TEST(o.size() == 15u);
  }
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

NC_BOTH_BACKENDS(round_trip_into_an_empty_database_and_twice) {
  auto s = populate(t);
  auto text = export_all(t);
  auto n = counts_of(s);
  // Back into the database it came from: every row is there as exported.
  auto before = t.dump();
  auto again = import(t, text);
  BOOST_TEST(again.nodes == k(0, n.nodes, 0));
  BOOST_TEST(again.attempts == k(0, n.attempts, 0));
  BOOST_TEST(again.logs == k(0, n.logs, 0));
  BOOST_TEST(again.jobs == k(0, n.jobs, 0));
  BOOST_TEST(t.dump() == before);

  test_database dst(t.kind());
  auto r = import(dst, text);
  BOOST_TEST(r.nodes == k(n.nodes, 0, 0));
  BOOST_TEST(r.attempts == k(n.attempts, 0, 0));
  BOOST_TEST(r.logs == k(n.logs, 0, 0));
  BOOST_TEST(r.jobs == k(n.jobs, 0, 0));
  BOOST_TEST(dst.run(b::export_counts{}) == n);
  // Identical rows, apart from keys and what an import must change.
  transform_like_an_import(t);
  BOOST_TEST(masked_dump(dst) == masked_dump(t));
  BOOST_TEST(export_all(dst) == export_all(t)); // meta too, which dump() leaves out
  // The changes themselves.
  auto n2 = dst.run(node_lookup_by_name{"n2"});
  BOOST_TEST(n2.node.status == "offline");
  BOOST_TEST(n2.node.key_hash == "");
  BOOST_TEST(n2.node.key_id.size() == 16u);
  BOOST_TEST(dst.run(node_lookup_by_name{"n3"}).node.status == "disabled");
  BOOST_TEST(!dst.run(node_lookup_by_key{"kid-n1"}).found);
  std::set<std::string> keys;
  for (auto& node : dst.run(node_list{}))
    keys.insert(node.key_id);
  BOOST_TEST(keys.size() == 3u);
  auto pending = dst.run(attempt_get{s.a2[2]}).attempt;
  BOOST_TEST(pending.sync_state == "partial");
  BOOST_TEST(pending.backfill_request_id == "");
  auto job = dst.run(job_query{{}, {}, "", "", "", 100});
  std::map<std::string, job_record> jobs;
  for (auto& j : job)
    jobs[j.id] = j;
  BOOST_TEST(jobs.at(s.pending_request).status == "abandoned");
  BOOST_TEST(jobs.at(s.pending_request).error == "imported while running");
  BOOST_TEST(jobs.at(s.pending_request).finished_at == exported_at);
  BOOST_TEST(jobs.at(s.queued_job).status == "abandoned");
  BOOST_TEST(jobs.at(s.queued_job).error == "imported while queued");
  BOOST_TEST(jobs.at(s.failed_request).status == "failed");
  // Counters as the source kept them (the dump compares them too): gaps included.
  auto odd = dst.run(attempt_get{s.a1[1]}).attempt;
  BOOST_TEST(odd.log_count == 6);
  BOOST_TEST(odd.log_max_seq == 9);

  // Twice: everything skipped, nothing changes.
  auto dst_before = dst.dump();
  auto second = import(dst, text);
  BOOST_TEST(second.nodes == k(0, n.nodes, 0));
  BOOST_TEST(second.attempts == k(0, n.attempts, 0));
  BOOST_TEST(second.logs == k(0, n.logs, 0));
  BOOST_TEST(second.jobs == k(0, n.jobs, 0));
  BOOST_TEST(dst.dump() == dst_before);
}

NC_BOTH_BACKENDS(dry_run_changes_nothing_and_counts_exactly) {
  auto s = populate(t);
  auto text = export_all(t);
  test_database dst(t.kind());
  auto empty = dst.dump();
  auto dry = import(dst, text, true);
  BOOST_TEST(dst.dump() == empty);
  BOOST_TEST(dry.logs == k(s.logs, 0, 0));
  auto real = import(dst, text);
  BOOST_TEST(dry == real);
  BOOST_TEST(dst.dump() != empty);

  // A mixed case: some rows new, some there, some conflicting.
  t.clock.advance(1s);
  auto n4 = add_node(t, "n4");
  auto a4 = add_attempt(t, n4, 2);
  add_lines(t, n4, a4, numbered_lines(0, 30));
  add_lines(t, s.n1, s.a1[0], numbered_lines(250, 260)); // new lines of an attempt dst has
  dst.exec_sql("UPDATE jobs SET error = 'changed here' WHERE id = '" + s.export_job + "'");
  auto text2 = export_all(t);
  auto before = dst.dump();
  auto dry2 = import(dst, text2, true);
  BOOST_TEST(dst.dump() == before);
  auto real2 = import(dst, text2);
  BOOST_TEST(dry2 == real2);
  BOOST_TEST(real2.nodes == k(1, 3, 0));
  // The new lines changed a1[0]'s updated_at: conflicting, yet its new lines go in.
  BOOST_TEST(real2.attempts == k(1, 7, 1));
  BOOST_TEST(real2.logs == k(40, s.logs, 0));
  BOOST_TEST(real2.jobs == k(0, 3, 1));
  BOOST_TEST(dst.dump() != before);
}

NC_BOTH_BACKENDS(conflicting_rows_are_reported_and_never_overwritten) {
  auto s = populate(t);
  auto text = export_all(t);
  auto n = counts_of(s);
  test_database dst(t.kind());
  import(dst, text);
  // Rows changed in the target after the first import.
  dst.exec_sql("UPDATE node_task_attempts SET task_id = 'other' WHERE id = '" + s.a1[2] + "'");
  dst.exec_sql("UPDATE attempt_logs SET line = 'edited' WHERE attempt_id = '" + s.a2[0] + "' AND seq = 3");
  dst.exec_sql("UPDATE jobs SET attempt_count = 99 WHERE id = '" + s.export_job + "'");
  dst.exec_sql("UPDATE nodes SET session_epoch = 42 WHERE id = '" + s.n3.id + "'");
  auto before = dst.dump();
  auto r = import(dst, text);
  BOOST_TEST(r.nodes == k(0, n.nodes - 1, 1));
  BOOST_TEST(r.attempts == k(0, n.attempts - 1, 1));
  BOOST_TEST(r.logs == k(0, n.logs - 1, 1));
  BOOST_TEST(r.jobs == k(0, n.jobs - 1, 1));
  BOOST_TEST(dst.dump() == before);

  // A name taken by another node: that node, its attempts, their lines and its jobs conflict;
  // the rest is imported.
  test_database other(t.kind());
  auto mine = add_node(other, "n1");
  auto r2 = import(other, text);
  int64_t n1_logs = 250 + 6;
  BOOST_TEST(r2.nodes == k(2, 0, 1));
  BOOST_TEST(r2.attempts == k(n.attempts - 4, 0, 4));
  BOOST_TEST(r2.logs == k(n.logs - n1_logs, 0, n1_logs));
  BOOST_TEST(r2.jobs == k(n.jobs - 1, 0, 1)); // the export job names n1
  auto kept = other.run(node_lookup_by_name{"n1"});
  BOOST_TEST(kept.node.id == mine.id);
  BOOST_TEST(kept.node.key_id == "kid-n1");
  BOOST_TEST(!other.run(attempt_get{s.a1[0]}).found);
  BOOST_TEST(other.run(b::export_counts{}) == (b::counts{3, n.attempts - 4, n.logs - n1_logs, n.jobs - 1}));
}

NC_BOTH_BACKENDS(corrupted_bundles_are_rejected_with_their_line) {
  auto s = populate(t);
  auto good = split_lines(export_all(t));
  BOOST_REQUIRE_GT(good.size(), 20u);
  // Which line holds what (nodes, attempts, logs, jobs follow the manifest in that order).
  size_t first_attempt = 1 + 3, first_log = first_attempt + 8;
  auto with = [&](size_t index, const std::string& replacement) {
    auto v = good;
    v[index] = replacement;
    return join_lines(v);
  };
  auto edited = [&](size_t index, auto change) {
    auto o = nlohmann::ordered_json::parse(good[index]);
    change(o);
    return with(index, o.dump());
  };
  auto expect = [&](const std::string& text, size_t line, const std::string& part) {
    auto e = parse_fails(text);
    BOOST_TEST(e.line == line, part);
    BOOST_TEST(e.message.rfind("line " + std::to_string(line) + ": ", 0) == 0u, e.message);
    BOOST_TEST(e.message.find(part) != std::string::npos, e.message << " / expected: " << part);
  };
  // The good one parses, with or without the trailing newline, and with CRLF.
  parse_ok(join_lines(good));
  auto no_newline = join_lines(good);
  no_newline.pop_back();
  parse_ok(no_newline);
  std::string crlf;
  for (auto& l : good)
    crlf += l + "\r\n";
  BOOST_TEST(parse_ok(crlf)->logs.size() == static_cast<size_t>(s.logs));
  expect(with(4, "{\"type\":\"attempt\",\"id\":"), 5, "not valid JSON");
  expect(with(2, R"({"type":"widget","id":1})"), 3, "unknown type \"widget\"");
  // Issue 15 (fuzzing findings 1 and 3): a number too large for a double is not valid JSON, not
  // an escaping exception; nesting is limited as in frames (a 100,000-deep meta overflowed the
  // stack when it was serialized again); U+0000 anywhere is refused before any SQL.
  expect(with(4, R"({"type":"attempt","id":1e400})"), 5, "not valid JSON");
  expect(with(4, R"({"type":"attempt","meta":{"a":)" + std::string(100000, '[') + std::string(100000, ']') + "}}"), 5,
         "nested deeper than 32 levels");
  expect(with(4, R"({"type":"attempt","task_id":"t\u0000"})"), 5, "record.task_id: contains \\u0000");
  expect(with(2, R"([1,2])"), 3, "not a JSON object");
  expect(with(2, R"({"id":1})"), 3, "missing field \"type\"");
  expect(edited(0, [](auto& o) { o["version"] = 2; }), 1, "bundle version 2 is newer");
  expect(edited(0, [](auto& o) { o["version"] = 0; }), 1, "bundle version 0 is not supported");
  expect(edited(0, [](auto& o) { o["format"] = "other"; }), 1, "field \"format\"");
  expect(edited(0, [&](auto& o) { o["counts"]["logs"] = s.logs + 1; }), 1,
         "counts.logs is " + std::to_string(s.logs + 1) + " but the bundle has " + std::to_string(s.logs));
  expect(edited(0, [](auto& o) { o.erase("counts"); }), 1, "missing field \"counts\"");
  expect(with(0, good[1]), 1, "the first line must be the manifest");
  expect(with(5, good[0]), 6, "a second manifest");
  expect(edited(first_attempt + 2, [](auto& o) { o.erase("task_id"); }), first_attempt + 3,
         "attempt: missing field \"task_id\"");
  expect(edited(first_attempt, [](auto& o) { o["sync_state"] = "done"; }), first_attempt + 1,
         "attempt: field \"sync_state\" must be one of");
  expect(edited(first_attempt, [](auto& o) { o["meta"] = "text"; }), first_attempt + 1,
         "attempt: field \"meta\" must be a JSON object or null");
  expect(edited(first_attempt, [](auto& o) { o["node_id"] = "n1"; }), first_attempt + 1,
         "attempt: field \"node_id\" must be a UUID");
  expect(edited(first_attempt, [](auto& o) { o["backfill_failures"] = "1"; }), first_attempt + 1,
         "field \"backfill_failures\" must be an integer");
  expect(edited(first_log + 3, [](auto& o) { o["stream"] = "stdlog"; }), first_log + 4,
         "log: field \"stream\" must be one of stderr, stdout, system, not \"stdlog\"");
  expect(edited(first_log + 3, [](auto& o) { o["ts"] = "yesterday"; }), first_log + 4,
         "log: field \"ts\" must be an RFC 3339 time");
  expect(edited(first_log + 3, [](auto& o) { o["seq"] = -1; }), first_log + 4, "field \"seq\" must be between 0");
  expect(edited(first_log + 3, [](auto& o) { o["line"] = std::string("a\0b", 3); }), first_log + 4,
         "record.line: contains \\u0000");
  expect(edited(1, [](auto& o) { o["status"] = "gone"; }), 2, "node: field \"status\" must be one of");
  expect(edited(1, [](auto& o) { o["name"] = ""; }), 2, "node: field \"name\" must not be empty");
  expect(edited(good.size() - 1, [](auto& o) { o["job_type"] = "cleanup"; }), good.size(), "job: field \"job_type\"");
  // A key twice: the second line is named, with the first.
  {
    auto v = good;
    v.insert(v.begin() + first_log + 1, good[first_log]);
    auto o = nlohmann::ordered_json::parse(v[0]);
    o["counts"]["logs"] = s.logs + 1;
    v[0] = o.dump();
    expect(join_lines(v), first_log + 2, "appears twice (first on line " + std::to_string(first_log + 1) + ")");
  }
  // An empty line anywhere but at the end.
  {
    auto v = good;
    v.insert(v.begin() + 3, "");
    expect(join_lines(v), 4, "empty line");
  }
  expect("", 1, "empty bundle");

  // References the bundle does not satisfy are looked up in the database; missing ones fail the
  // whole import (and its dry run) with the line, and change nothing.
  test_database dst(t.kind());
  auto n5 = add_node(dst, "n5");
  auto before = dst.dump();
  auto missing_node = edited(first_attempt + 5, [](auto& o) { o["node_id"] = new_uuid(); });
  for (bool dry : {true, false}) {
    try {
      import(dst, missing_node, dry);
      BOOST_FAIL("a missing node was accepted");
    } catch (const std::runtime_error& e) {
      BOOST_TEST(std::string(e.what()).find("line " + std::to_string(first_attempt + 6) + ": attempt: node ")
                   != std::string::npos,
                 e.what());
      BOOST_TEST(std::string(e.what()).find("is neither in the bundle nor in the database") != std::string::npos);
    }
    BOOST_TEST(dst.dump() == before);
  }
  auto missing_attempt = edited(first_log + 7, [](auto& o) { o["attempt_id"] = new_uuid(); });
  BOOST_CHECK_EXCEPTION(import(dst, missing_attempt), std::runtime_error, [&](const std::runtime_error& e) {
    return std::string(e.what()).find("line " + std::to_string(first_log + 8) + ": log: attempt ") != std::string::npos;
  });
  auto missing_job_node = edited(good.size() - 2, [](auto& o) { o["node_id"] = new_uuid(); });
  BOOST_CHECK_EXCEPTION(import(dst, missing_job_node), std::runtime_error, [&](const std::runtime_error& e) {
    return std::string(e.what()).find("line " + std::to_string(good.size() - 1) + ": job: node ") != std::string::npos;
  });
  BOOST_TEST(dst.dump() == before);
  // A reference to a row that is only in the database is fine: n5's attempt alone.
  auto a5 = new_uuid();
  std::string lone = b::manifest_line({0, 1, 1, 0}, exported_at) + "\n{\"type\":\"attempt\",\"id\":\"" + a5
                     + "\",\"node_id\":\"" + n5.id
                     + "\",\"task_id\":\"t\",\"state\":\"running\",\"sync_state\":"
                       "\"partial\",\"backfill_request_id\":null,\"sync_requested_at\":null,\"last_full_sync_at\":null,"
                       "\"backfill_failures\":0,\"started_at\":null,\"finished_at\":null,\"meta\":null,\"created_at\":"
                       "\"2026-01-09T12:00:00Z\",\"updated_at\":\"2026-01-09T12:00:00+00:00\"}\n"
                     + R"({"type":"log","attempt_id":")" + a5
                     + R"(","seq":4,"ts":"2026-01-09T12:00:00.5Z","stream":"stdout","line":"x"})";
  auto r = import(dst, lone);
  BOOST_TEST(r.attempts == k(1, 0, 0));
  BOOST_TEST(r.logs == k(1, 0, 0));
  auto got = dst.run(attempt_get{a5}).attempt;
  BOOST_TEST(got.created_at == "2026-01-09T12:00:00.000Z");
  BOOST_TEST(got.log_count == 1);
  BOOST_TEST(got.log_max_seq == 4);
}

NC_BOTH_BACKENDS(imported_lines_keep_the_counters_like_the_live_insert) {
  // Two databases with the same node and attempt; lines reach one through logs_insert and the
  // other through bundles that name the attempt only by reference.
  auto n = add_node(t, "n1");
  auto a = new_uuid();
  BOOST_REQUIRE(t.run(attempt_upsert{n.id, a, "task", "running", "", "", ""}).created);
  test_database dst(t.kind());
  import(dst, export_all(t));
  auto bundle_of = [&](const std::vector<log_entry>& lines) {
    std::string text = b::manifest_line({0, 0, static_cast<int64_t>(lines.size()), 0}, exported_at) + "\n";
    for (auto& e : lines)
      text += b::line(b::log_row{a, e}) + "\n";
    return text;
  };
  auto check = [&](const std::vector<log_entry>& lines, int64_t inserted) {
    BOOST_TEST(add_lines(t, n, a, lines) == inserted);
    BOOST_TEST(import(dst, bundle_of(lines)).logs.inserted == inserted);
    auto live = t.run(attempt_get{a}).attempt;
    auto imp = dst.run(attempt_get{a}).attempt;
    BOOST_TEST(imp.log_count == live.log_count);
    BOOST_TEST(imp.log_max_seq == live.log_max_seq);
    BOOST_TEST(dump_section(dst.dump(), "attempt_logs") == dump_section(t.dump(), "attempt_logs"));
  };
  auto lines = numbered_lines(0, 5);
  auto late = numbered_lines(8, 10);
  lines.insert(lines.end(), late.begin(), late.end());
  check(lines, 7);
  check(numbered_lines(3, 8), 3); // 3 and 4 are there already
  check(numbered_lines(0, 2), 0);
  auto live = t.run(attempt_get{a}).attempt;
  BOOST_TEST(live.log_count == 10);
  BOOST_TEST(live.log_max_seq == 9);
}

// --- from one backend to the other -----------------------------------------------------------

namespace {

void across(storage::backend from, storage::backend to) {
  test_database src(from);
  auto s = populate(src);
  auto text = export_all(src);
  test_database dst(to);
  auto r = import(dst, text);
  auto n = counts_of(s);
  BOOST_TEST(r.nodes == k(n.nodes, 0, 0));
  BOOST_TEST(r.attempts == k(n.attempts, 0, 0));
  BOOST_TEST(r.logs == k(n.logs, 0, 0));
  BOOST_TEST(r.jobs == k(n.jobs, 0, 0));
  transform_like_an_import(src);
  // Tables without JSON documents compare as text; the others through the bundle (JSONB and
  // TEXT spell the same document differently).
  auto a = masked_dump(src), b_dump = masked_dump(dst);
  BOOST_TEST(dump_section(b_dump, "node_task_attempts") == dump_section(a, "node_task_attempts"));
  BOOST_TEST(dump_section(b_dump, "attempt_logs") == dump_section(a, "attempt_logs"));
  check_same_bundle(export_all(dst), export_all(src));
  // And back: idempotent across backends too.
  auto again = import(dst, text);
  BOOST_TEST(again.nodes == k(0, n.nodes, 0));
  BOOST_TEST(again.attempts == k(0, n.attempts, 0));
  BOOST_TEST(again.logs == k(0, n.logs, 0));
  BOOST_TEST(again.jobs == k(0, n.jobs, 0));
  auto back = import(src, export_all(dst));
  BOOST_TEST(back.nodes == k(0, n.nodes, 0));
  BOOST_TEST(back.attempts == k(0, n.attempts, 0));
  BOOST_TEST(back.logs == k(0, n.logs, 0));
  BOOST_TEST(back.jobs == k(0, n.jobs, 0));
}

} // namespace

BOOST_AUTO_TEST_CASE(sqlite_to_postgresql) { across(storage::backend::sqlite, storage::backend::postgresql); }

BOOST_AUTO_TEST_CASE(postgresql_to_sqlite) { across(storage::backend::postgresql, storage::backend::sqlite); }

// --- size ------------------------------------------------------------------------------------

NC_BOTH_BACKENDS(a_bundle_of_100k_lines_imports_in_batches) {
  // Written by hand (no source database): 1 node, 100 attempts of 1,000 lines each.
  const int attempts = 100, per_attempt = 1000;
  node_record n;
  n.id = new_uuid();
  n.name = "big";
  n.status = "offline";
  n.created_at = "2026-01-09T12:00:00.000Z";
  std::string text = b::manifest_line({1, attempts, attempts * per_attempt, 0}, exported_at) + "\n" + b::line(n) + "\n";
  std::vector<std::string> ids;
  for (int i = 0; i < attempts; ++i) {
    attempt_record a;
    a.id = new_uuid();
    a.node_id = n.id;
    a.task_id = "t" + std::to_string(i);
    a.state = "succeeded";
    a.sync_state = "complete";
    a.created_at = a.updated_at = "2026-01-09T12:00:00.000Z";
    text += b::line(a) + "\n";
    ids.push_back(a.id);
  }
  for (auto& id : ids)
    for (int s = 0; s < per_attempt; ++s)
      text += b::line(b::log_row{id, {s, "2026-01-09T12:00:00.000Z", "stdout", "line " + std::to_string(s)}}) + "\n";
  auto started = std::chrono::steady_clock::now();
  auto bundle = parse_ok(text);
  auto parsed_at = std::chrono::steady_clock::now();
  auto r = t.run(b::import_bundle{bundle, false});
  auto imported_at = std::chrono::steady_clock::now();
  auto again = t.run(b::import_bundle{bundle, false});
  auto skipped_at = std::chrono::steady_clock::now();
  auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  BOOST_TEST_MESSAGE("100k lines: parse " << ms(parsed_at - started) << " ms, import " << ms(imported_at - parsed_at)
                                          << " ms, again " << ms(skipped_at - imported_at) << " ms");
  BOOST_TEST(r.logs == k(attempts * per_attempt, 0, 0));
  BOOST_TEST(again.logs == k(0, attempts * per_attempt, 0));
  BOOST_TEST(again.attempts == k(0, attempts, 0));
  for (auto& id : {ids.front(), ids.back()}) {
    auto a = t.run(attempt_get{id}).attempt;
    BOOST_TEST(a.log_count == per_attempt);
    BOOST_TEST(a.log_max_seq == per_attempt - 1);
    BOOST_TEST(a.sync_state == "complete");
  }
}
