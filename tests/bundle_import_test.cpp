#include <boost/test/unit_test.hpp>

// Bundle import on both backends: round trips, dry runs, conflicts never overwritten, corrupted
// bundles refused with their line, counters, SQLite <-> PostgreSQL, 100k lines in batches.

#include "bundle_test_support.hpp"
#include "storage/snapshot.hpp"

#include <soci/postgresql/soci-postgresql.h>
#include <soci/sqlite3/soci-sqlite3.h>
#include <sqlite3.h>

#include <functional>

using namespace bundle_test;

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
  dst.exec_sql("UPDATE attempt_logs SET line = 'edited' WHERE attempt_id = '" + s.a2[0] + "' AND seq = 13");
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
  BOOST_TEST(other.run(b::export_counts{}) == (b::counts{3, n.attempts - 4, n.logs - n1_logs, n.jobs - 1, n.audit}));
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
  expect(edited(0, [](auto& o) { o["version"] = 3; }), 1, "bundle version 3 is newer");
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
  size_t last_job = good.size() - 1 - static_cast<size_t>(s.audit); // the ledger's lines come last
  expect(edited(last_job, [](auto& o) { o["job_type"] = "cleanup"; }), last_job + 1, "job: field \"job_type\"");
  expect(edited(last_job + 1, [](auto& o) { o["result"] = "maybe"; }), last_job + 2,
         "audit: field \"result\" must be one of failed, refused, succeeded, not \"maybe\"");
  expect(edited(last_job + 1, [](auto& o) { o["id"] = 0; }), last_job + 2, "audit: field \"id\" must be between 1");
  expect(edited(last_job + 1, [](auto& o) { o["actor"] = ""; }), last_job + 2,
         "audit: field \"actor\" must not be empty");
  expect(edited(last_job + 1, [](auto& o) { o["filter"] = "node=n1"; }), last_job + 2,
         "audit: field \"filter\" must be a JSON object or null");
  expect(edited(last_job + 1, [](auto& o) { o["id"] = 2; }), last_job + 3, "audit id 2 appears twice");
  expect(edited(first_attempt,
                [](auto& o) {
                  o["logs_pruned"] = 3;
                  o["logs_pruned_through"] = nullptr;
                }),
         first_attempt + 1, "field \"logs_pruned_through\" must be set exactly when logs_pruned is above 0");
  expect(edited(first_attempt, [](auto& o) { o.erase("logs_pruned"); }), first_attempt + 1,
         "attempt: missing field \"logs_pruned\"");
  expect(edited(0, [](auto& o) { o["counts"].erase("audit"); }), 1, "manifest: counts: missing field \"audit\"");
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
  auto missing_job_node = edited(last_job - 1, [](auto& o) { o["node_id"] = new_uuid(); });
  BOOST_CHECK_EXCEPTION(import(dst, missing_job_node), std::runtime_error, [&](const std::runtime_error& e) {
    return std::string(e.what()).find("line " + std::to_string(last_job) + ": job: node ") != std::string::npos;
  });
  BOOST_TEST(dst.dump() == before);
  // A reference to a row that is only in the database is fine: n5's attempt alone, in a
  // version 1 bundle (no ledger count, no pruned fields), which is still read.
  auto a5 = new_uuid();
  std::string lone = R"({"type":"manifest","format":"nodecoord-bundle","version":1,"created_at":")" + exported_at
                     + R"(","counts":{"nodes":0,"attempts":1,"logs":1,"jobs":0}})" + "\n{\"type\":\"attempt\",\"id\":\""
                     + a5 + "\",\"node_id\":\"" + n5.id
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

// --- on a connection of its own (the admin API's path) ---------------------------------------

namespace {

b::import_bundle::result_type import_on_own_connection(test_database& t, const std::string& text, bool dry_run,
                                                       const std::function<void()>& before_commit = {}) {
  b::import_bundle::result_type out;
  write_transaction(t.parsed_url(), t.clock.fn(), dry_run, [&](op_context& c) {
    out = execute(c, b::import_bundle{parse_ok(text), dry_run});
    if (before_commit)
      before_commit();
  });
  return out;
}

/// "equal", or what the counters and a scan say.
std::string counters_and_scan(test_database& t) {
  auto kept = t.run(count_summary{});
  auto scanned = t.run(count_summary{true});
  auto text = [](const count_summary::result_type& r) {
    std::ostringstream os;
    for (auto* part : {&r.nodes_by_status, &r.attempts_by_sync_state, &r.jobs_by_status_type})
      for (auto& [key, n] : *part)
        if (n != 0)
          os << key << "=" << n << " ";
    os << "lines=" << r.log_lines;
    return os.str();
  };
  return text(kept) == text(scanned) ? "equal" : "counters " + text(kept) + " but a scan " + text(scanned);
}

} // namespace

NC_BOTH_BACKENDS(an_import_on_its_own_connection_is_all_or_nothing) {
  test_database src(t.kind());
  auto s = populate(src);
  auto text = export_all(src);
  auto n = counts_of(s);
  auto empty = t.dump();

  // A dry run: exact counts, nothing written.
  auto dry = import_on_own_connection(t, text, true);
  BOOST_TEST(dry.logs == k(n.logs, 0, 0));
  BOOST_TEST(t.dump() == empty);

  // A bundle whose last line names an attempt that exists nowhere: every line before it (nodes,
  // attempts, lines) is valid, and none of them is stored.
  auto lines = split_lines(text);
  auto missing = new_uuid();
  auto bad_log = R"({"type":"log","attempt_id":")" + missing + R"(","seq":0,"ts":"2026-01-09T12:00:00.000Z",)"
                 + R"("stream":"stdout","line":"orphan"})";
  auto bad_lines = lines;
  auto manifest = nlohmann::json::parse(bad_lines[0]);
  manifest["counts"]["logs"] = manifest["counts"]["logs"].get<int64_t>() + 1;
  bad_lines[0] = manifest.dump();
  bad_lines.push_back(bad_log);
  try {
    import_on_own_connection(t, join_lines(bad_lines), false);
    BOOST_FAIL("an import naming a missing attempt was accepted");
  } catch (const database_unavailable& e) {
    BOOST_FAIL("the bundle's fault was reported as the database's: " << e.what());
  } catch (const std::runtime_error& e) {
    std::string what = e.what();
    BOOST_TEST(what.find("line " + std::to_string(bad_lines.size())) != std::string::npos, what);
    BOOST_TEST(what.find(missing) != std::string::npos, what);
  }
  BOOST_TEST(t.dump() == empty);
  // A failure after every row went in (here the caller's own) takes all of them back.
  BOOST_CHECK_EXCEPTION(import_on_own_connection(t, text, false, [] { throw std::logic_error("late failure"); }),
                        std::logic_error,
                        [](const std::logic_error& e) { return std::string(e.what()) == "late failure"; });
  BOOST_TEST(t.dump() == empty);

  // The real import. Before it commits, a writer on another connection (the storage actor's
  // part) adds a node, an attempt and lines, which the counter triggers count. PostgreSQL: the
  // writer neither waits for the import (lock_timeout turns a wait into a failure) nor sees it.
  // SQLite has one writer: the import holds the lock, so the other write comes after it.
  std::string during;
  auto r = import_on_own_connection(t, text, false, [&] {
    if (t.kind() != backend::postgresql)
      return;
    t.exec_sql("SET lock_timeout = '10s'");
    auto live = add_node(t, "live-during-import");
    auto a = add_attempt(t, live, 1);
    add_lines(t, live, a, numbered_lines(0, 5));
    during = std::to_string(t.run(b::export_counts{}).nodes);
  });
  BOOST_TEST(r.nodes == k(n.nodes, 0, 0));
  BOOST_TEST(r.attempts == k(n.attempts, 0, 0));
  BOOST_TEST(r.logs == k(n.logs, 0, 0));
  BOOST_TEST(r.jobs == k(n.jobs, 0, 0));
  if (t.kind() == backend::postgresql) {
    BOOST_TEST(during == "1", "the writer saw the uncommitted import (or not its own node)");
    BOOST_TEST(t.run(b::export_counts{}).nodes == n.nodes + 1);
  } else {
    BOOST_TEST(t.run(b::export_counts{}) == n);
  }
  BOOST_TEST(counters_and_scan(t) == "equal");
  // Everything the bundle holds is stored as the storage actor's import would store it.
  test_database via_actor_path(t.kind());
  import(via_actor_path, text);
  auto own = export_all(t), actor = export_all(via_actor_path);
  auto own_lines = split_lines(own), actor_lines = split_lines(actor);
  std::set<std::string> own_set(own_lines.begin() + 1, own_lines.end());
  for (size_t i = 1; i < actor_lines.size(); ++i)
    if (actor_lines[i].find("\"type\":\"node\"") == std::string::npos) // nodes get fresh key ids
      BOOST_TEST(own_set.count(actor_lines[i]) == 1u, "missing after the import: " << actor_lines[i]);
}

NC_BOTH_BACKENDS(an_import_on_its_own_connection_runs_again_after_a_transient_failure) {
  test_database src(t.kind());
  auto s = populate(src);
  auto text = export_all(src);
  auto n = counts_of(s);
  int runs = 0;
  b::import_bundle::result_type out;
  write_transaction(t.parsed_url(), t.clock.fn(), false, [&](op_context& c) {
    out = execute(c, b::import_bundle{parse_ok(text), false});
    if (++runs == 1) { // what a deadlock or a busy database looks like, after the rows went in
      if (t.kind() == backend::postgresql)
        throw soci::postgresql_soci_error("deadlock detected", "40P01");
      throw soci::sqlite3_soci_error("database is locked", SQLITE_BUSY);
    }
  });
  BOOST_TEST(runs == 2);
  BOOST_TEST(out.logs == k(n.logs, 0, 0), "the first run was not rolled back: " << out);
  BOOST_TEST(t.run(b::export_counts{}) == n);

  // A database that stays unavailable is the database's fault, not the bundle's.
  runs = 0;
  BOOST_CHECK_THROW(write_transaction(t.parsed_url(), t.clock.fn(), false,
                                      [&](op_context&) {
                                        ++runs;
                                        if (t.kind() == backend::postgresql)
                                          throw soci::postgresql_soci_error("could not serialize", "40001");
                                        throw soci::sqlite3_soci_error("database is locked", SQLITE_BUSY);
                                      }),
                    database_unavailable);
  BOOST_TEST(runs == 3);
  // And a statement the data makes fail is not run again.
  runs = 0;
  BOOST_CHECK_THROW(write_transaction(t.parsed_url(), t.clock.fn(), false,
                                      [&](op_context& c) {
                                        ++runs;
                                        c.sql << "INSERT INTO nodes (id) VALUES (NULL)";
                                      }),
                    soci::soci_error);
  BOOST_TEST(runs == 1);
  BOOST_TEST(t.run(b::export_counts{}) == n);
}

// The ledger travels in the bundle (format version 2) with its ids: into an empty database
// exactly as it was, a second time skipped, an id another row holds conflicting (never
// overwritten). Rows written after an import get larger ids on both backends (PostgreSQL's
// identity is moved past the imported ones).
NC_BOTH_BACKENDS(the_ledger_travels_with_its_ids) {
  auto s = populate(t);
  auto text = export_all(t);
  auto source_rows = t.run(audit_query{});
  BOOST_REQUIRE_EQUAL(source_rows.size(), 3u);

  test_database dst(t.kind());
  auto dry = import(dst, text, true);
  BOOST_TEST(dry.audit == k(3, 0, 0));
  BOOST_TEST(dst.run(audit_query{}).empty());
  auto r = import(dst, text);
  BOOST_TEST(r.audit == k(3, 0, 0));
  auto rows = dst.run(audit_query{});
  BOOST_REQUIRE_EQUAL(rows.size(), 3u);
  for (size_t i = 0; i < rows.size(); ++i) {
    BOOST_TEST(rows[i].id == source_rows[i].id);
    BOOST_TEST(rows[i].at == source_rows[i].at);
    BOOST_TEST(rows[i].entry.actor == source_rows[i].entry.actor);
    BOOST_TEST(rows[i].entry.action == source_rows[i].entry.action);
    BOOST_TEST(rows[i].entry.target == source_rows[i].entry.target);
    BOOST_TEST(nlohmann::json::parse(rows[i].entry.counts.empty() ? "null" : rows[i].entry.counts)
               == nlohmann::json::parse(source_rows[i].entry.counts.empty() ? "null" : source_rows[i].entry.counts));
    BOOST_TEST(rows[i].entry.result == source_rows[i].entry.result);
    BOOST_TEST(rows[i].entry.error == source_rows[i].entry.error);
  }
  // Its export is the source's export, ledger included.
  transform_like_an_import(t);
  check_same_bundle(export_all(dst), export_all(t));
  // A row written after the import gets the next id, not one of the imported ones.
  auto next = dst.run(audit_append{{"local", "node.enable", "n3", "", "", "succeeded", ""}});
  BOOST_TEST(next == 4);
  // Again: skipped; the row written since is not in the bundle and stays.
  auto again = import(dst, text);
  BOOST_TEST(again.audit == k(0, 3, 0));
  BOOST_TEST(dst.run(audit_query{}).size() == 4u);

  // A database whose id 1 is another row: that one conflicts and is left alone, 2 and 3 go in,
  // and the next row written goes after them.
  test_database other(t.kind());
  auto own = other.run(audit_append{{"local", "jobs.prune", "", "", R"({"jobs":0})", "succeeded", ""}});
  BOOST_REQUIRE_EQUAL(own, 1);
  auto mixed = import(other, text);
  BOOST_TEST(mixed.audit == k(2, 0, 1));
  auto kept = other.run(audit_query{});
  BOOST_REQUIRE_EQUAL(kept.size(), 3u);
  BOOST_TEST(kept.back().id == 1);
  BOOST_TEST(kept.back().entry.action == "jobs.prune");
  BOOST_TEST(other.run(audit_append{{"local", "node.enable", "n3", "", "", "succeeded", ""}}) == 4);
}

// Pruned lines in a bundle: an attempt keeps what was pruned (its counters count those lines, so
// a node's evidence still holds after a move), and a line at or below the stored pruned seq is
// skipped, not stored again.
NC_BOTH_BACKENDS(pruned_lines_stay_pruned_across_an_import) {
  auto s = populate(t);
  auto text = export_all(t);
  test_database dst(t.kind());
  import(dst, text);
  auto a = dst.run(attempt_get{s.a2[0]}).attempt;
  BOOST_TEST(a.logs_pruned == 10);
  BOOST_TEST(a.logs_pruned_through == 9);
  BOOST_TEST(a.log_count == 20);
  BOOST_TEST(a.log_max_seq == 19);
  int64_t stored = 0;
  query(dst.db().session(), "SELECT COUNT(*) FROM attempt_logs WHERE attempt_id = :a")
    .bind("a", s.a2[0])
    .each([&](const soci::row& row) { stored = col_int(row, 0); });
  BOOST_TEST(stored == 10);

  // A bundle that holds the pruned lines again (an older export): skipped, not stored.
  auto v = split_lines(text);
  auto manifest = nlohmann::ordered_json::parse(v[0]);
  manifest["counts"]["logs"] = s.logs + 3;
  v[0] = manifest.dump();
  for (int64_t seq = 0; seq < 3; ++seq)
    v.insert(v.begin() + 1 + 3 + 8, b::line(b::log_row{s.a2[0], {seq, "2026-01-09T12:00:00.000Z", "stdout", "old"}}));
  auto old = join_lines(v);
  auto before = dst.dump();
  auto r = import(dst, old);
  BOOST_TEST(r.logs == k(0, s.logs + 3, 0));
  BOOST_TEST(dst.dump() == before);
  // Into an empty database: the attempt arrives pruned, so its old lines are skipped there too.
  test_database fresh(t.kind());
  auto r2 = import(fresh, old);
  BOOST_TEST(r2.logs == k(s.logs, 3, 0));
  BOOST_TEST(fresh.run(attempt_get{s.a2[0]}).attempt.log_count == 20);
}
