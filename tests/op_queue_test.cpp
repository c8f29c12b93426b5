// The storage queue's ordering policy (storage/op_queue.hpp) on its own: arrival order, the
// handshakes' and the reset's exceptions, transactions of their own, and the traits the
// operation types declare.
#define BOOST_TEST_MODULE op_queue_test
#include <boost/test/unit_test.hpp>

#include "storage/bundle.hpp"
#include "storage/op_queue.hpp"
#include "storage/operations.hpp"

#include <string>
#include <vector>

using namespace nodecoord::storage;

namespace {

/// A queue whose entries are named, so an order reads as a string.
struct named_queue {
  op_queue q;
  std::vector<std::string> ran;

  void push(const std::string& name, queue_place where = queue_place::back, bool touches = true) {
    op_queue::entry e;
    e.item.deliver = [this, name] { ran.push_back(name); };
    e.touches_attempts = touches;
    q.push(std::move(e), where);
  }
  void push_alone(const std::string& name) {
    op_queue::entry e;
    e.item.deliver = [this, name] { ran.push_back(name); };
    q.push_alone(std::move(e));
  }
  /// The names of the next batch of at most `max`.
  std::string batch(size_t max = 100) {
    std::vector<batch_item> items;
    q.take_batch(items, max);
    ran.clear();
    for (auto& i : items)
      i.deliver();
    std::string out;
    for (auto& n : ran)
      out += (out.empty() ? "" : " ") + n;
    return out;
  }
};

} // namespace

BOOST_AUTO_TEST_CASE(operations_apply_in_arrival_order) {
  named_queue n;
  for (auto name : {"a", "b", "c", "d"})
    n.push(name);
  BOOST_TEST(n.batch(3) == "a b c");
  BOOST_TEST(n.batch(3) == "d");
  BOOST_TEST(n.batch() == "");
}

BOOST_AUTO_TEST_CASE(handshakes_go_ahead_of_data_in_their_own_order) {
  named_queue n;
  n.push("data1");
  n.push("hello1", queue_place::urgent);
  n.push("data2");
  n.push("hello2", queue_place::urgent);
  BOOST_TEST(n.q.urgent() == 2u);
  BOOST_TEST(n.batch(1) == "hello1");
  BOOST_TEST(n.q.urgent() == 1u);
  n.push("hello3", queue_place::urgent); // after hello2, still ahead of data
  BOOST_TEST(n.batch() == "hello2 hello3 data1 data2");
  BOOST_TEST(n.q.urgent() == 0u);
}

BOOST_AUTO_TEST_CASE(recovery_goes_before_the_handshakes) {
  named_queue n;
  n.push("hello1", queue_place::urgent);
  n.push("data1");
  n.push("recovery", queue_place::front);
  n.push("hello2", queue_place::urgent); // behind the first handshake, ahead of data
  BOOST_TEST(n.batch() == "recovery hello1 hello2 data1");
}

// A reset passes only operations that never touch attempts or logs, and never an attempt
// operation or a handshake.
BOOST_AUTO_TEST_CASE(a_reset_passes_only_what_does_not_touch_attempts) {
  named_queue n;
  n.push("hello", queue_place::urgent);
  n.push("end1", queue_place::back, false);
  n.push("logs");
  n.push("touch", queue_place::back, false);
  n.push("job", queue_place::back, false);
  n.push("reset", queue_place::ahead);
  BOOST_TEST(n.batch() == "hello end1 logs reset touch job");
  // With nothing but non-attempt operations queued, it goes right after the handshakes.
  n.push("end2", queue_place::back, false);
  n.push("hello2", queue_place::urgent);
  n.push("reset2", queue_place::ahead);
  BOOST_TEST(n.batch() == "hello2 reset2 end2");
  // And two resets keep their order (a reset touches attempts).
  n.push("end3", queue_place::back, false);
  n.push("reset3", queue_place::ahead);
  n.push("reset4", queue_place::ahead);
  BOOST_TEST(n.batch() == "reset3 reset4 end3");
}

BOOST_AUTO_TEST_CASE(an_operation_alone_gets_its_own_transaction) {
  named_queue n;
  n.push("a");
  n.push("b");
  n.push_alone("bundle");
  n.push("c");
  BOOST_TEST(n.batch() == "a b");
  BOOST_TEST(n.batch() == "bundle");
  BOOST_TEST(n.batch() == "c");
  n.push_alone("first"); // on an empty queue too
  n.push("d");
  BOOST_TEST(n.batch() == "first");
  BOOST_TEST(n.batch() == "d");
}

BOOST_AUTO_TEST_CASE(take_all_empties_in_order) {
  named_queue n;
  n.push("a");
  n.push("h", queue_place::urgent);
  auto all = n.q.take_all();
  BOOST_TEST(all.size() == 2u);
  BOOST_TEST(n.q.empty());
  BOOST_TEST(n.q.urgent() == 0u);
}

// What each operation type declares: the only places the policy is configured (checked when
// this file compiles).
static_assert(place_of<node_lookup_by_key>() == queue_place::urgent);
static_assert(place_of<node_begin_session>() == queue_place::urgent);
static_assert(place_of<attempt_upsert>() == queue_place::back);
static_assert(place_of<node_end_session>() == queue_place::back);
static_assert(!touches_attempts<node_touch>());
static_assert(!touches_attempts<node_end_session>());
static_assert(!touches_attempts<nodes_end_sessions>());
static_assert(!touches_attempts<job_insert>());
static_assert(!touches_attempts<job_update>());
static_assert(touches_attempts<attempt_upsert>());
static_assert(touches_attempts<logs_insert>());
static_assert(touches_attempts<apply_backfill>());
static_assert(touches_attempts<mark_pending>());
static_assert(touches_attempts<reset_requests>());
static_assert(touches_attempts<node_begin_session>()); // conservative: a reset never passes it
static_assert(own_transaction<bundle::export_file>());
static_assert(own_transaction<bundle::import_bundle>());
static_assert(!own_transaction<apply_backfill>());
