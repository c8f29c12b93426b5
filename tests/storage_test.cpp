#define BOOST_TEST_MODULE storage_test
#include <boost/test/unit_test.hpp>

// Every storage operation on SQLite and on PostgreSQL (the same body, two backends): migrations,
// nodes, attempts and lines here; the state machine of DESIGN §3 in storage_backfill_test.cpp;
// jobs, group commit equivalence and exactly-once commits in storage_batch_test.cpp. One binary.

#include "storage_test_support.hpp"

#include <algorithm>

using namespace storage_test;

// --- migrations ------------------------------------------------------------------------------

NC_BOTH_BACKENDS(migrations_are_idempotent) {
  BOOST_TEST(count(t, "SELECT MAX(version) FROM schema_migrations") == latest_schema_version());
  add_node(t, "n1");
  // Re-running finds the current version and changes nothing.
  BOOST_TEST(t.db().migrate() == latest_schema_version());
  BOOST_TEST(t.db().migrate() == latest_schema_version());
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM schema_migrations") == latest_schema_version());
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM nodes") == 1);
}

// v5 loosens jobs.type to take 'check' (PostgreSQL: a new constraint; SQLite: the table's text in
// sqlite_master). The database is taken back to the v4 schema by hand, with a job in it, and
// migrated again: the old job stays, check jobs go in, unknown types are still refused, and the
// counters the triggers keep still count. v6 adds the pruned-log columns to attempts already
// there (0 and NULL: nothing pruned).
NC_BOTH_BACKENDS(v5_lets_jobs_be_checks_and_keeps_refusing_other_types) {
  bool pg = t.kind() == backend::postgresql;
  auto n = add_node(t, "alpha");
  auto attempt = new_uuid();
  BOOST_REQUIRE(t.run(attempt_upsert{n.id, attempt, "t", "running", "", "", ""}).status == write_status::ok);
  BOOST_REQUIRE(t.run(logs_insert{n.id, attempt, lines(0, 3)}).inserted == 3);
  t.exec_sql("ALTER TABLE node_task_attempts DROP COLUMN logs_pruned");
  t.exec_sql("ALTER TABLE node_task_attempts DROP COLUMN logs_pruned_through");
  auto insert = [&](const std::string& id, const std::string& type) {
    t.exec_sql("INSERT INTO jobs (id, type, status, created_at) VALUES ('" + id + "', '" + type
               + "', 'succeeded', '2026-01-09T12:00:00.000Z')");
  };
  auto refused = [&](const std::string& id, const std::string& type) {
    try {
      insert(id, type);
    } catch (const std::exception&) {
      return true;
    }
    return false;
  };
  if (pg) {
    t.exec_sql("ALTER TABLE jobs DROP CONSTRAINT jobs_type_check");
    t.exec_sql("ALTER TABLE jobs ADD CONSTRAINT jobs_type_check "
               "CHECK (type IN ('backfill', 'reconcile', 'bundle_export', 'bundle_import'))");
  } else {
    int64_t version = count(t, "PRAGMA schema_version");
    t.exec_sql("PRAGMA writable_schema = ON");
    t.exec_sql("UPDATE sqlite_master SET sql = replace(sql, ', ''check''))', '))') WHERE name = 'jobs'");
    t.exec_sql("PRAGMA schema_version = " + std::to_string(version + 1));
    t.exec_sql("PRAGMA writable_schema = OFF");
  }
  t.exec_sql("DELETE FROM schema_migrations WHERE version >= 5");
  insert("00000000-0000-4000-8000-000000000001", "backfill");
  BOOST_TEST_REQUIRE(refused("00000000-0000-4000-8000-000000000002", "check")); // truly back at v4
  BOOST_TEST(t.db().migrate() == 4);
  BOOST_TEST(count(t, "SELECT MAX(version) FROM schema_migrations") == latest_schema_version());
  BOOST_TEST(!refused("00000000-0000-4000-8000-000000000003", "check"));
  BOOST_TEST(refused("00000000-0000-4000-8000-000000000004", "nonsense"));
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM jobs") == 2);
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM jobs WHERE type = 'backfill'") == 1);
  BOOST_TEST(count(t, "SELECT COALESCE(SUM(jobs), 0) FROM job_counts WHERE type = 'check'") == 1);
  // v6: the attempt is read with nothing pruned, its lines and counters as they were.
  auto a = get(t, attempt);
  BOOST_TEST(a.logs_pruned == 0);
  BOOST_TEST(a.logs_pruned_through == -1);
  BOOST_TEST(a.log_count == 3);
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM node_task_attempts WHERE logs_pruned_through IS NULL") == 1);
  // Migrating again changes nothing (the edit would not find its text twice).
  BOOST_TEST(t.db().migrate() == latest_schema_version());
  if (!pg)
    BOOST_TEST(count(t, "SELECT COUNT(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'") == 1);
}

NC_BOTH_BACKENDS(newer_schema_is_refused) {
  t.exec_sql("INSERT INTO schema_migrations (version, description, applied_at) VALUES "
             "(999, 'from the future', '2030-01-01T00:00:00.000Z')");
  try {
    t.db().migrate();
    BOOST_FAIL("expected schema_too_new");
  } catch (const schema_too_new& e) {
    BOOST_TEST(std::string(e.what()).find("version 999") != std::string::npos);
    BOOST_TEST(std::string(e.what()).find("newer than this nodecoordd") != std::string::npos);
  }
}

// --- nodes -----------------------------------------------------------------------------------

NC_BOTH_BACKENDS(node_create_lookup_list) {
  auto a = add_node(t, "alpha");
  BOOST_TEST(is_uuid(a.id));
  BOOST_TEST(a.status == "offline");
  BOOST_TEST(a.session_epoch == 0);
  BOOST_TEST(a.created_at == "2026-01-09T12:00:00.000Z");
  BOOST_TEST(a.key_hash == sha256_hex("secret-alpha"));
  // A taken name or key id creates nothing.
  BOOST_TEST(!t.run(node_create{"alpha", "", "other", "h"}).created);
  BOOST_TEST(!t.run(node_create{"beta", "", "kid-alpha", "h"}).created);
  add_node(t, "beta");
  auto by_key = t.run(node_lookup_by_key{"kid-alpha"});
  BOOST_TEST(by_key.found);
  BOOST_TEST(by_key.node.id == a.id);
  BOOST_TEST(!t.run(node_lookup_by_key{"nope"}).found);
  BOOST_TEST(t.run(node_lookup_by_name{"beta"}).node.name == "beta");
  auto all = t.run(node_list{});
  BOOST_REQUIRE_EQUAL(all.size(), 2u);
  BOOST_TEST(all[0].name == "alpha");
  BOOST_TEST(all[1].name == "beta");
}

NC_BOTH_BACKENDS(nodes_are_paged_by_name_and_filtered_by_status) {
  // Names whose order does not follow their creation; every page starts where the last ended.
  std::vector<std::string> names;
  for (int i = 0; i < 25; ++i)
    names.push_back("n" + std::to_string((i * 7) % 25 + 100));
  for (auto& n : names)
    add_node(t, n);
  t.run(node_disable{"n105"});
  t.run(node_disable{"n117"});
  std::sort(names.begin(), names.end());
  std::vector<std::string> seen;
  std::string after;
  int pages = 0;
  for (;;) {
    auto page = t.run(node_list{after, "", 10});
    ++pages;
    for (auto& n : page)
      seen.push_back(n.name);
    if (page.size() < 10)
      break;
    after = page.back().name;
  }
  BOOST_TEST(pages == 3);
  BOOST_TEST(seen == names, boost::test_tools::per_element());
  auto disabled = t.run(node_list{"", "disabled", 10});
  BOOST_REQUIRE_EQUAL(disabled.size(), 2u);
  BOOST_TEST(disabled[0].name == "n105");
  BOOST_TEST(disabled[1].name == "n117");
  BOOST_TEST(t.run(node_list{"n105", "disabled", 10}).size() == 1u);
  BOOST_TEST(t.run(node_list{"", "offline", 100}).size() == 23u);
  BOOST_TEST(t.run(node_list{"", "online", 100}).empty());
  BOOST_TEST(t.run(node_list{"n124", "", 10}).empty());
}

NC_BOTH_BACKENDS(node_disable_enable_and_rotate_key) {
  auto a = add_node(t, "alpha");
  auto d = t.run(node_disable{"alpha"});
  BOOST_TEST(d.found);
  BOOST_TEST(d.node.status == "disabled");
  BOOST_TEST(d.node.disabled_at == "2026-01-09T12:00:00.000Z");
  BOOST_TEST(!t.run(node_disable{"nobody"}).found);
  // A disabled node cannot start a session.
  BOOST_TEST(!t.run(node_begin_session{a.id, 0}).ok);
  auto e = t.run(node_enable{"alpha"});
  BOOST_TEST(e.node.status == "offline");
  BOOST_TEST(e.node.disabled_at.empty());
  auto k = t.run(node_set_key{"alpha", "kid-new", "hash-new"});
  BOOST_TEST(k.found);
  BOOST_TEST(!t.run(node_lookup_by_key{"kid-alpha"}).found);
  BOOST_TEST(t.run(node_lookup_by_key{"kid-new"}).node.key_hash == "hash-new");
}

NC_BOTH_BACKENDS(session_epoch_cas_and_end_only_for_current_epoch) {
  auto a = add_node(t, "alpha");
  auto s1 = t.run(node_begin_session{a.id, 0});
  BOOST_TEST(s1.ok);
  BOOST_TEST(s1.epoch == 1);
  // A racing begin with the stale expectation loses and learns the current epoch.
  auto lost = t.run(node_begin_session{a.id, 0});
  BOOST_TEST(!lost.ok);
  BOOST_TEST(lost.epoch == 1);
  t.clock.advance(std::chrono::seconds(5));
  auto s2 = t.run(node_begin_session{a.id, 1, R"({"gpu": true})"}); // reconnected: supersedes epoch 1
  BOOST_TEST(s2.epoch == 2);
  auto n = t.run(node_lookup_by_name{"alpha"}).node;
  BOOST_TEST(n.capabilities.find("gpu") != std::string::npos); // the hello's capabilities are kept
  BOOST_TEST(n.status == "online");
  BOOST_TEST(n.connected_at == "2026-01-09T12:00:05.000Z");
  // The old session's cleanup arrives late: it must not touch the new session (reconnect clobber).
  BOOST_TEST(!t.run(node_end_session{a.id, 1, "socket_closed"}).applied);
  n = t.run(node_lookup_by_name{"alpha"}).node;
  BOOST_TEST(n.status == "online");
  BOOST_TEST(n.disconnect_reason.empty());
  t.clock.advance(std::chrono::seconds(5));
  BOOST_TEST(t.run(node_end_session{a.id, 2, "bye"}).applied);
  n = t.run(node_lookup_by_name{"alpha"}).node;
  BOOST_TEST(n.status == "offline");
  BOOST_TEST(n.disconnect_reason == "bye");
  BOOST_TEST(n.disconnected_at == "2026-01-09T12:00:10.000Z");
  // A disconnect does not refresh last_seen_at (lessons.md).
  BOOST_TEST(n.last_seen_at == "2026-01-09T12:00:05.000Z");
  // A hello without capabilities keeps the stored ones.
  BOOST_TEST(t.run(node_begin_session{a.id, 2}).ok);
  BOOST_TEST(t.run(node_lookup_by_name{"alpha"}).node.capabilities.find("gpu") != std::string::npos);
  BOOST_TEST(t.run(node_end_session{a.id, 3, "bye"}).applied);
}

NC_BOTH_BACKENDS(node_touch_is_batched_and_monotonic) {
  auto a = add_node(t, "alpha");
  auto b = add_node(t, "beta");
  auto r = t.run(node_touch{{{a.id, "2026-01-09T12:01:00.000Z"}, {b.id, "2026-01-09T12:02:00.000Z"}}});
  BOOST_TEST(r.updated == 2);
  // An older time never moves last_seen_at back.
  r = t.run(node_touch{{{a.id, "2026-01-09T12:00:30.000Z"}, {b.id, "2026-01-09T12:03:00.000Z"}}});
  BOOST_TEST(r.updated == 1);
  BOOST_TEST(t.run(node_lookup_by_name{"alpha"}).node.last_seen_at == "2026-01-09T12:01:00.000Z");
  BOOST_TEST(t.run(node_lookup_by_name{"beta"}).node.last_seen_at == "2026-01-09T12:03:00.000Z");
  BOOST_TEST(t.run(node_touch{}).updated == 0);
}

// --- attempts and logs -----------------------------------------------------------------------

NC_BOTH_BACKENDS(attempt_upsert_with_owner_check) {
  auto a = add_node(t, "alpha");
  auto b = add_node(t, "beta");
  auto id = new_uuid();
  auto r = t.run(attempt_upsert{a.id, id, "task-7", "running", "2026-01-09T11:00:00.000Z", "", R"({"exit": null})"});
  BOOST_TEST(r.created);
  auto at = get(t, id);
  BOOST_TEST(at.sync_state == "partial");
  BOOST_TEST(at.started_at == "2026-01-09T11:00:00.000Z");
  BOOST_TEST(at.finished_at.empty());
  // An update keeps what it leaves out and does not change sync_state.
  t.clock.advance(std::chrono::seconds(1));
  r = t.run(attempt_upsert{a.id, id, "task-7", "succeeded", "", "2026-01-09T11:05:00.000Z", ""});
  BOOST_TEST(!r.created);
  at = get(t, id);
  BOOST_TEST(at.state == "succeeded");
  BOOST_TEST(at.started_at == "2026-01-09T11:00:00.000Z");
  BOOST_TEST(at.finished_at == "2026-01-09T11:05:00.000Z");
  BOOST_TEST(at.meta.find("exit") != std::string::npos);
  BOOST_TEST(at.updated_at == "2026-01-09T12:00:01.000Z");
  // The same frame again (an agent re-sends its attempts with a backfill) writes nothing.
  t.clock.advance(std::chrono::seconds(1));
  r = t.run(attempt_upsert{a.id, id, "task-7", "succeeded", "", "2026-01-09T11:05:00.000Z", ""});
  BOOST_TEST(r.status == write_status::ok);
  BOOST_TEST(get(t, id).updated_at == "2026-01-09T12:00:01.000Z");
  r = t.run(attempt_upsert{a.id, id, "task-7", "succeeded", "2026-01-09T11:00:00.000Z", "", R"({"exit": null})"});
  BOOST_TEST(get(t, id).updated_at == "2026-01-09T12:00:01.000Z");
  // Another node may not write it.
  r = t.run(attempt_upsert{b.id, id, "task-x", "failed", "", "", ""});
  BOOST_TEST(r.status == write_status::forbidden);
  BOOST_TEST(get(t, id).state == "succeeded");
  BOOST_TEST(get(t, id).node_id == a.id);
}

NC_BOTH_BACKENDS(logs_insert_or_ignore_owner_and_reopen) {
  auto a = add_node(t, "alpha");
  auto b = add_node(t, "beta");
  BOOST_TEST(t.run(logs_insert{a.id, new_uuid(), lines(0, 1)}).status == write_status::unknown_attempt);
  auto id = add_attempt(t, a);
  BOOST_TEST(t.run(logs_insert{b.id, id, lines(0, 3)}).status == write_status::forbidden);
  auto r = t.run(logs_insert{a.id, id, lines(0, 3)});
  BOOST_TEST(r.inserted == 3);
  // Resending is harmless: nothing is inserted twice.
  r = t.run(logs_insert{a.id, id, lines(0, 5)});
  BOOST_TEST(r.inserted == 2);
  auto at = get(t, id);
  BOOST_TEST(at.log_count == 5);
  BOOST_TEST(at.log_max_seq == 4);
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM attempt_logs") == 5);
  auto got = t.run(logs_get{id, 1, 2});
  BOOST_REQUIRE_EQUAL(got.size(), 2u);
  BOOST_TEST(got[0].seq == 2);
  BOOST_TEST(got[1].line == "line 3");
  BOOST_TEST(got[0].ts == "2026-01-09T12:00:00.000Z");
  // Reopen: new lines for a complete attempt move it back to partial; old lines do not.
  t.exec_sql("UPDATE node_task_attempts SET sync_state = 'complete'");
  r = t.run(logs_insert{a.id, id, lines(3, 5)});
  BOOST_TEST(!r.reopened);
  BOOST_TEST(get(t, id).sync_state == "complete");
  r = t.run(logs_insert{a.id, id, lines(5, 6)});
  BOOST_TEST(r.reopened);
  BOOST_TEST(get(t, id).sync_state == "partial");
}

NC_BOTH_BACKENDS(logs_insert_large_frame_with_repeats_and_gaps) {
  // One frame spans several multi-row statements, repeats a line, and overlaps stored lines.
  auto a = add_node(t, "alpha");
  auto id = add_attempt(t, a);
  BOOST_TEST(t.run(logs_insert{a.id, id, lines(100, 120)}).inserted == 20);
  auto frame = lines(0, 450);
  frame.push_back(frame[7]);              // the same line twice in one frame
  frame.back().line = "a different text"; // the first copy wins: seq is the identity
  auto more = lines(460, 470);
  frame.insert(frame.begin(), more.begin(), more.end()); // out of order, with a gap 450..459
  auto r = t.run(logs_insert{a.id, id, frame});
  BOOST_TEST(r.inserted == 450 - 20 + 10);
  auto at = get(t, id);
  BOOST_TEST(at.log_count == 460);
  BOOST_TEST(at.log_max_seq == 469);
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM attempt_logs") == 460);
  BOOST_TEST(t.run(logs_get{id, 6, 1}).at(0).line == "line 7");
  // Only repeats: nothing inserted, counters unchanged.
  BOOST_TEST(t.run(logs_insert{a.id, id, lines(0, 300)}).inserted == 0);
  BOOST_TEST(get(t, id).log_count == 460);
  BOOST_TEST(get(t, id).log_max_seq == 469);
}

NC_BOTH_BACKENDS(nodes_end_sessions_batched_with_the_epoch_rule) {
  // More sessions than one statement takes, two reasons, a superseded session, a disabled node.
  std::vector<node_record> nodes;
  nodes_end_sessions op;
  for (int i = 0; i < 450; ++i) {
    nodes.push_back(add_node(t, "n" + std::to_string(i)));
    auto e = begin_session(t, nodes.back());
    op.sessions.push_back({nodes.back().id, e, i % 2 ? "socket_closed" : "bye"});
  }
  auto again = begin_session(t, nodes[3]); // reconnected: epoch 1 is stale now
  BOOST_TEST(again == 2);
  t.run(node_disable{"n4"});
  t.clock.advance(std::chrono::seconds(3));
  auto r = t.run(op);
  BOOST_TEST(r.applied == 449);
  BOOST_TEST(t.run(node_lookup_by_name{"n3"}).node.status == "online");
  BOOST_TEST(t.run(node_lookup_by_name{"n3"}).node.disconnect_reason.empty());
  auto n4 = t.run(node_lookup_by_name{"n4"}).node;
  BOOST_TEST(n4.status == "disabled");
  BOOST_TEST(n4.disconnect_reason == "bye");
  auto n5 = t.run(node_lookup_by_name{"n5"}).node;
  BOOST_TEST(n5.status == "offline");
  BOOST_TEST(n5.disconnect_reason == "socket_closed");
  BOOST_TEST(n5.disconnected_at == "2026-01-09T12:00:03.000Z");
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM nodes WHERE status = 'offline'") == 448);
  BOOST_TEST(t.run(nodes_end_sessions{}).applied == 0);
}

NC_BOTH_BACKENDS(the_reconnect_probe_names_only_listed_nodes_with_partial_attempts) {
  auto a = add_node(t, "alpha");
  auto b = add_node(t, "beta");
  auto c = add_node(t, "gamma");
  auto d = add_node(t, "delta");
  add_attempt(t, a);
  add_attempt(t, a);
  auto done = add_attempt(t, b);
  add_attempt(t, d); // partial, but not asked about
  t.exec_sql("UPDATE node_task_attempts SET sync_state = 'complete' WHERE id = '" + done + "'");
  auto got = t.run(nodes_partial_among{{c.id, b.id, a.id}});
  BOOST_TEST(got == (std::vector<std::string>{a.id}), boost::test_tools::per_element());
  BOOST_TEST(t.run(nodes_partial_among{}).empty());
  // More ids than one statement takes (SQLite's bound-parameter limit): chunked, all found.
  std::vector<std::string> many;
  for (int i = 0; i < 2500; ++i)
    many.push_back(new_uuid());
  many.push_back(d.id);
  many.push_back(a.id);
  auto wanted = std::vector<std::string>{a.id, d.id};
  std::sort(wanted.begin(), wanted.end());
  got = t.run(nodes_partial_among{many});
  BOOST_TEST(got == wanted, boost::test_tools::per_element());
}

NC_BOTH_BACKENDS(partial_attempts_oldest_first) {
  auto a = add_node(t, "alpha");
  auto b = add_node(t, "beta");
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(add_attempt(t, a));
    t.clock.advance(std::chrono::seconds(1));
  }
  add_attempt(t, b);
  t.exec_sql("UPDATE node_task_attempts SET sync_state = 'complete' WHERE id = '" + ids[1] + "'");
  auto got = t.run(attempts_partial_of_node{a.id, 2});
  BOOST_TEST(got == (std::vector<std::string>{ids[0], ids[2]}), boost::test_tools::per_element());
}
