#include <boost/test/unit_test.hpp>

// Several instances on one database (DESIGN §9), through the real operations on both backends:
// the fence on every kind of write a session makes, per-instance recovery at startup, leases and
// the recovery of an instance whose lease expired, exactly once.

#include "storage_test_support.hpp"

using namespace storage_test;

namespace {

/// Runs the following operations as instance `id` (what op_context::instance carries).
void as_instance(test_database& t, const std::string& id) { t.executor().set_instance_id(id); }

std::string owner_of(test_database& t, const node_record& n) {
  std::string out = "(null)";
  query(t.db().session(), "SELECT owner_instance FROM nodes WHERE id = :id")
    .bind("id", n.id)
    .each([&](const soci::row& r) { out = col_str(r, 0); });
  return out;
}

std::string job_instance(test_database& t, const std::string& job) {
  std::string out = "(null)";
  query(t.db().session(), "SELECT instance_id FROM jobs WHERE id = :id").bind("id", job).each([&](const soci::row& r) {
    out = col_str(r, 0);
  });
  return out;
}

} // namespace

// A write made for a session that is no longer the node's current one fails its fence, whatever
// kind of write it is: nothing at all is written, and the answer says so.
NC_BOTH_BACKENDS(a_superseded_session_write_fails_its_fence_for_every_kind_of_write) {
  auto a = add_node(t, "alpha");
  auto old_epoch = begin_session(t, a);
  auto x = add_attempt(t, a), y = add_attempt(t, a);
  BOOST_REQUIRE_EQUAL(t.run(logs_insert{a.id, x, lines(0, 2), old_epoch}).inserted, 2);
  auto req = new_uuid();
  BOOST_REQUIRE_EQUAL(t.run(mark_pending{req, a.id, old_epoch, {x}}).marked.size(), 1u);
  auto new_epoch = begin_session(t, a); // the node connected again (here or to another instance)
  BOOST_REQUIRE(new_epoch > old_epoch);
  auto before = t.dump();

  auto upsert = t.run(attempt_upsert{a.id, x, "task-1", "succeeded", "", "", "", old_epoch});
  BOOST_TEST(upsert.status == write_status::superseded);
  auto created = t.run(attempt_upsert{a.id, new_uuid(), "task-2", "running", "", "", "", old_epoch});
  BOOST_TEST(created.status == write_status::superseded);
  BOOST_TEST(!created.created);
  auto logs = t.run(logs_insert{a.id, y, lines(0, 3), old_epoch});
  BOOST_TEST(logs.status == write_status::superseded);
  BOOST_TEST(logs.inserted == 0);
  auto applied = t.run(apply_backfill{req, a.id, {{x, true, 2, ""}}, 5, old_epoch});
  BOOST_TEST(applied.superseded);
  BOOST_TEST(applied.completed == 0);
  BOOST_TEST(applied.stale == 1);
  BOOST_TEST(applied.job_status.empty());
  BOOST_TEST(t.run(mark_pending{new_uuid(), a.id, old_epoch, {y}}).marked.empty());    // by ids
  BOOST_TEST(t.run(mark_pending{new_uuid(), a.id, old_epoch, {}, 10}).marked.empty()); // by limit
  BOOST_TEST(!t.run(node_end_session{a.id, old_epoch, "closed"}).applied);             // session end
  BOOST_TEST(t.run(nodes_end_sessions{{{a.id, old_epoch, "closed"}}}).applied == 0);   // a storm's
  // Nothing at all changed: no row, no line, no counter, no job.
  auto after = t.dump();
  BOOST_TEST((after == before), "before:\n" << before << "\nafter:\n" << after);

  // The same, batched in one transaction with the current session's writes: only those apply.
  std::vector<batch_item> items(4);
  auto s1 = bind_item(items[0], logs_insert{a.id, y, lines(0, 3), old_epoch});
  auto s2 = bind_item(items[1], logs_insert{a.id, y, lines(0, 1), new_epoch});
  auto s3 = bind_item(items[2], attempt_upsert{a.id, y, "task-1", "succeeded", "", "", "", old_epoch});
  auto s4 = bind_item(items[3], apply_backfill{req, a.id, {{x, true, 2, ""}}, 5, old_epoch});
  for (auto& e : t.run_items(items))
    BOOST_TEST(e.empty(), e);
  BOOST_TEST(s1->result.status == write_status::superseded);
  BOOST_TEST(s2->result.status == write_status::ok);
  BOOST_TEST(s2->result.inserted == 1);
  BOOST_TEST(s3->result.status == write_status::superseded);
  BOOST_TEST(s4->result.superseded);
  BOOST_TEST(get(t, y).log_count == 1);
  BOOST_TEST(get(t, y).state == "running");
  BOOST_TEST(get(t, x).sync_state == "pending_backfill");

  // The current session's writes go through the same fence.
  BOOST_TEST(t.run(attempt_upsert{a.id, x, "task-1", "succeeded", "", "", "", new_epoch}).status == write_status::ok);
  BOOST_TEST(t.run(mark_pending{new_uuid(), a.id, new_epoch, {y}}).marked.size() == 1u);
  BOOST_TEST(t.run(node_end_session{a.id, new_epoch, "closed"}).applied);
}

// Sessions and jobs record their instance; an instance's startup recovers only what it owned.
NC_BOTH_BACKENDS(startup_recovery_takes_only_what_the_instance_owned) {
  auto a = add_node(t, "alpha"), b = add_node(t, "beta");
  as_instance(t, "inst-a");
  BOOST_REQUIRE_EQUAL(t.run(instance_start{"test", "127.0.0.2:7400"}).incarnation, 1);
  auto ea = begin_session(t, a);
  auto xa = add_attempt(t, a);
  auto ra = new_uuid();
  BOOST_REQUIRE_EQUAL(t.run(mark_pending{ra, a.id, ea, {xa}}).marked.size(), 1u);
  as_instance(t, "inst-b");
  BOOST_REQUIRE_EQUAL(t.run(instance_start{"test", "127.0.0.3:7400"}).incarnation, 1);
  auto eb = begin_session(t, b);
  auto xb = add_attempt(t, b);
  auto rb = new_uuid();
  BOOST_REQUIRE_EQUAL(t.run(mark_pending{rb, b.id, eb, {}, 10}).marked.size(), 1u);
  BOOST_TEST(owner_of(t, a) == "inst-a");
  BOOST_TEST(owner_of(t, b) == "inst-b");
  BOOST_TEST(job_instance(t, ra) == "inst-a");
  BOOST_TEST(job_instance(t, rb) == "inst-b");

  // inst-a restarts: its own rows only.
  as_instance(t, "inst-a");
  auto restarted = t.run(instance_start{"test", "127.0.0.2:7400"});
  BOOST_TEST(restarted.incarnation == 2);
  BOOST_TEST(restarted.recovery.attempts_reset == 1);
  BOOST_TEST(restarted.recovery.jobs_abandoned == 1);
  BOOST_TEST(restarted.recovery.nodes_offlined == 1);
  BOOST_TEST(get(t, xa).sync_state == "partial");
  BOOST_TEST(job_status_of(t, ra) == "abandoned");
  auto na = t.run(node_lookup_by_name{"alpha"}).node;
  BOOST_TEST(na.status == "offline");
  BOOST_TEST(na.session_epoch == ea + 1); // a late write of the dead session fails its fence
  BOOST_TEST(t.run(logs_insert{a.id, xa, lines(0, 1), ea}).status == write_status::superseded);
  // inst-b's live session and request are untouched.
  BOOST_TEST(get(t, xb).sync_state == "pending_backfill");
  BOOST_TEST(job_status_of(t, rb) == "running");
  auto nb = t.run(node_lookup_by_name{"beta"}).node;
  BOOST_TEST(nb.status == "online");
  BOOST_TEST(nb.session_epoch == eb);
  // A pending row whose request has no open job at all is nobody's: any start releases it.
  auto orphan = add_attempt(t, b);
  t.exec_sql("UPDATE node_task_attempts SET sync_state = 'pending_backfill', backfill_request_id = '" + new_uuid()
             + "' WHERE id = '" + orphan + "'");
  BOOST_TEST(t.run(instance_start{"test", ""}).recovery.attempts_reset == 1);
  BOOST_TEST(get(t, orphan).sync_state == "partial");
  BOOST_TEST(get(t, xb).sync_state == "pending_backfill");
}

// An instance whose lease expired is recovered by the first live instance that renews, exactly
// once; the lost instance learns it at its next renewal, its writes fail their fence, and it
// takes a new incarnation.
NC_BOTH_BACKENDS(an_expired_lease_is_recovered_exactly_once) {
  auto a = add_node(t, "alpha");
  constexpr int64_t expiry = 15000;
  as_instance(t, "inst-a");
  auto inc_a = t.run(instance_start{"test", "a"}).incarnation;
  auto ea = begin_session(t, a);
  auto xa = add_attempt(t, a);
  auto ra = new_uuid();
  BOOST_REQUIRE_EQUAL(t.run(mark_pending{ra, a.id, ea, {xa}}).marked.size(), 1u);
  as_instance(t, "inst-b");
  auto inc_b = t.run(instance_start{"test", "b"}).incarnation;
  as_instance(t, "inst-c");
  auto inc_c = t.run(instance_start{"test", "c"}).incarnation;

  // Within the lease: nobody is recovered.
  t.clock.advance(std::chrono::milliseconds(expiry - 1000));
  as_instance(t, "inst-b");
  auto early = t.run(instance_renew{inc_b, expiry});
  BOOST_TEST(early.held);
  BOOST_TEST(early.recovered.empty());
  as_instance(t, "inst-c");
  BOOST_TEST(t.run(instance_renew{inc_c, expiry}).held);

  // inst-a stops renewing (paused); b and c keep renewing; the first to notice recovers it.
  t.clock.advance(std::chrono::milliseconds(2000));
  as_instance(t, "inst-b");
  auto first = t.run(instance_renew{inc_b, expiry});
  BOOST_TEST(first.held);
  BOOST_REQUIRE_EQUAL(first.recovered.size(), 1u);
  BOOST_TEST(first.recovered[0].id == "inst-a");
  BOOST_TEST(first.recovered[0].recovery.attempts_reset == 1);
  BOOST_TEST(first.recovered[0].recovery.jobs_abandoned == 1);
  BOOST_TEST(first.recovered[0].recovery.nodes_offlined == 1);
  as_instance(t, "inst-c");
  auto second = t.run(instance_renew{inc_c, expiry});
  BOOST_TEST(second.held);
  BOOST_TEST(second.recovered.empty()); // exactly once
  BOOST_TEST(get(t, xa).sync_state == "partial");
  BOOST_TEST(job_status_of(t, ra) == "abandoned");
  auto na = t.run(node_lookup_by_name{"alpha"}).node;
  BOOST_TEST(na.status == "offline");
  BOOST_TEST(na.disconnect_reason == "instance_lost");

  // The zombie wakes up: its session's writes fail their fence, its renewal fails and says who
  // took the lease.
  as_instance(t, "inst-a");
  BOOST_TEST(t.run(logs_insert{a.id, xa, lines(0, 2), ea}).status == write_status::superseded);
  BOOST_TEST(t.run(mark_pending{new_uuid(), a.id, ea, {xa}}).marked.empty());
  auto lost = t.run(instance_renew{inc_a, expiry});
  BOOST_TEST(!lost.held);
  BOOST_TEST(lost.recovered.empty());
  BOOST_TEST(lost.now.recovered_by == "inst-b");
  BOOST_TEST(lost.now.incarnation == inc_a + 1);
  // It rejoins with a new incarnation and serves again.
  auto rejoined = t.run(instance_rejoin{}).incarnation;
  BOOST_TEST(rejoined == inc_a + 2);
  BOOST_TEST(t.run(instance_renew{rejoined, expiry}).held);
  auto list = t.run(instance_list{});
  BOOST_REQUIRE_EQUAL(list.size(), 3u);
  BOOST_TEST(list[0].id == "inst-a");
  BOOST_TEST(list[0].recovered_by.empty());
  BOOST_TEST(list[1].listen == "b");
  BOOST_TEST(list[1].heartbeat_at == format_time(t.clock.fn()()));
}

// Two processes started with one instance id: the older one's renewal fails with nobody named as
// the recoverer (the daemon then stops: the operator gave two instances one id).
NC_BOTH_BACKENDS(a_twin_start_takes_the_lease_from_the_older_process) {
  as_instance(t, "inst-a");
  auto older = t.run(instance_start{"test", "a"}).incarnation;
  auto newer = t.run(instance_start{"test", "a"}).incarnation;
  BOOST_TEST(newer == older + 1);
  auto r = t.run(instance_renew{older, 15000});
  BOOST_TEST(!r.held);
  BOOST_TEST(r.now.recovered_by.empty());
  BOOST_TEST(r.now.incarnation == newer);
  BOOST_TEST(t.run(instance_renew{newer, 15000}).held);
}

// The periodic reconcile of an instance pages through the nodes it serves, not another's.
NC_BOTH_BACKENDS(reconcile_pages_only_the_instance_s_own_nodes) {
  auto a = add_node(t, "alpha"), b = add_node(t, "beta");
  as_instance(t, "inst-a");
  begin_session(t, a);
  add_attempt(t, a);
  as_instance(t, "inst-b");
  begin_session(t, b);
  add_attempt(t, b);
  BOOST_TEST(t.run(nodes_with_partial{"", 10}) == (std::vector<std::string>{b.id}), boost::test_tools::per_element());
  as_instance(t, "inst-a");
  BOOST_TEST(t.run(nodes_with_partial{"", 10}) == (std::vector<std::string>{a.id}), boost::test_tools::per_element());
  as_instance(t, ""); // no instance (one storage, tests): every online node
  BOOST_TEST(t.run(nodes_with_partial{"", 10}).size() == 2u);
}
