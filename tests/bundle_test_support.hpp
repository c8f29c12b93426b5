#pragma once

// Shared by the bundle_test sources: a source database with nodes, attempts, lines and jobs, and
// readers of what an export wrote and an import stored.

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
  return os << "nodes " << r.nodes << " attempts " << r.attempts << " logs " << r.logs << " jobs " << r.jobs
            << " audit " << r.audit;
}
inline std::ostream& operator<<(std::ostream& os, const counts& c) {
  return os << "{" << c.nodes << ", " << c.attempts << ", " << c.logs << ", " << c.jobs << ", " << c.audit << "}";
}
} // namespace nodecoord::storage::bundle

namespace bundle_test {

inline const std::string exported_at = "2026-01-09T13:00:00.000Z";

struct source {
  node_record n1, n2, n3;
  std::vector<std::string> a1, a2, a3; // attempts of n1, n2, n3
  std::string pending_request, failed_request, queued_job, export_job;
  int64_t logs = 0;
  int64_t audit = 0;
  int64_t pruned = 0; // lines of a2[0] pruned (seq 0..9; 10..19 stay)
};

inline node_record add_node(test_database& t, const std::string& name) {
  auto r = t.run(node_create{name, "", "kid-" + name, sha256_hex("secret-" + name)});
  BOOST_REQUIRE(r.created);
  return r.node;
}

inline std::string add_attempt(test_database& t, const node_record& n, int i) {
  auto id = new_uuid();
  const char* states[] = {"running", "succeeded", "failed", "cancelled", "queued"};
  auto r = t.run(attempt_upsert{n.id, id, "task-" + std::to_string(i), states[i % 5], "2026-01-09T11:00:00.000Z",
                                i % 2 ? "2026-01-09T11:30:00.250Z" : "",
                                i % 2 ? R"({"host":"h1","exit":0,"tags":["a","b"]})" : ""});
  BOOST_REQUIRE(r.created);
  return id;
}

inline int64_t add_lines(test_database& t, const node_record& n, const std::string& attempt,
                         std::vector<log_entry> lines) {
  auto r = t.run(logs_insert{n.id, attempt, lines});
  BOOST_REQUIRE(r.status == write_status::ok);
  return r.inserted;
}

inline std::vector<log_entry> numbered_lines(int64_t from, int64_t to, const std::string& stream = "stdout") {
  std::vector<log_entry> out;
  for (auto s = from; s < to; ++s)
    out.push_back({s, "2026-01-09T12:00:00.000Z", stream, "line " + std::to_string(s)});
  return out;
}

/// Every kind of row and state the import treats specially.
inline source populate(test_database& t) {
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
  // a2[0] (complete) with its first 10 lines pruned, as attempts.prune_logs leaves them.
  t.exec_sql("DELETE FROM attempt_logs WHERE seq < 10 AND attempt_id = '" + s.a2[0] + "'");
  t.exec_sql("UPDATE node_task_attempts SET logs_pruned = 10, logs_pruned_through = 9 WHERE id = '" + s.a2[0] + "'");
  s.pruned = 10;
  s.logs -= 10;
  // The ledger: a change with its filter and counts, a refusal with its error, a single action.
  audit_entry l1{"token:0123abcd",    "attempts.requeue", "", R"({"node":"n1","all":false})",
                 R"({"attempts":2})", "succeeded",        ""};
  audit_entry l2{"local", "nodes.delete", "", R"({"name_prefix":"n"})", "", "refused", "budget_exceeded: \"quoted\""};
  audit_entry l3{"local", "node.disable", "n3", "", R"({"nodes":1})", "succeeded", ""};
  for (auto* e : {&l1, &l2, &l3}) {
    t.clock.advance(1s);
    BOOST_REQUIRE(t.run(audit_append{*e}) > 0);
    ++s.audit;
  }
  t.clock.advance(1s);
  return s;
}

/// A bundle read with the page operations, each page in its own transaction.
inline std::string export_paged(test_database& t, int64_t page) {
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
  pages(b::read_audit{0, page}, by_id);
  return out;
}

/// A bundle written by write_all inside one transaction.
inline std::string export_all(test_database& t, int64_t page = 1000) {
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

inline std::shared_ptr<const b::parsed> parse_ok(const std::string& text) {
  auto r = b::parse(text);
  if (auto* e = std::get_if<b::parse_error>(&r))
    BOOST_FAIL("parse failed: " << e->message);
  return std::make_shared<const b::parsed>(std::get<b::parsed>(std::move(r)));
}

inline b::parse_error parse_fails(const std::string& text) {
  auto r = b::parse(text);
  auto* e = std::get_if<b::parse_error>(&r);
  BOOST_REQUIRE_MESSAGE(e, "parse accepted a bad bundle");
  return *e;
}

inline b::import_bundle::result_type import(test_database& t, const std::string& text, bool dry_run = false) {
  return t.run(b::import_bundle{parse_ok(text), dry_run});
}

inline std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    out.push_back(l);
  return out;
}

inline std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (auto& l : lines)
    out += l + "\n";
  return out;
}

/// The dump with the nodes' key_id and key_hash masked (an import gives fresh ones).
inline std::string masked_dump(test_database& t) {
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
inline std::string dump_section(const std::string& dump, const std::string& name) {
  auto from = dump.find("## " + name + "\n");
  BOOST_REQUIRE(from != std::string::npos);
  auto to = dump.find("## ", from + 3);
  return dump.substr(from, to == std::string::npos ? std::string::npos : to - from);
}

/// What the import writes, applied to the source: then source and target must be equal.
inline void transform_like_an_import(test_database& t) {
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
inline void check_same_bundle(const std::string& a, const std::string& b_text) {
  auto la = split_lines(a), lb = split_lines(b_text);
  BOOST_REQUIRE_EQUAL(la.size(), lb.size());
  for (size_t i = 0; i < la.size(); ++i)
    BOOST_TEST(nlohmann::json::parse(la[i]) == nlohmann::json::parse(lb[i]), "line " << i + 1 << ":\n"
                                                                                     << la[i] << "\n"
                                                                                     << lb[i]);
}

inline b::counts counts_of(const source& s) {
  return {3, static_cast<int64_t>(s.a1.size() + s.a2.size() + s.a3.size()), s.logs, 4, s.audit};
}

inline b::import_bundle::result_type::kind k(int64_t inserted, int64_t skipped, int64_t conflicting) {
  return {inserted, skipped, conflicting};
}

} // namespace bundle_test
