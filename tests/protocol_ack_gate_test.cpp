#include <boost/test/unit_test.hpp>

// protocol::ack_gate: a heartbeat is acknowledged only after every frame before it is settled.

#include "protocol_test_support.hpp"

using namespace protocol_test;

// --- durable acknowledgement: the session's ack gate --------------------------------------------

BOOST_AUTO_TEST_SUITE(ack_gate)

using gate = nodecoord::protocol::ack_gate;
using std::chrono::seconds;
const gate::time_point t0{};

BOOST_AUTO_TEST_CASE(nothing_outstanding_is_acknowledged_at_once) {
  gate g;
  BOOST_TEST(g.heartbeat(1, t0));
  auto t = g.open();
  g.settle(t);
  BOOST_TEST(g.heartbeat(2, t0));
  BOOST_TEST(g.released().empty());
  BOOST_TEST(g.unsettled() == 0u);
  BOOST_TEST(g.held() == 0u);
}

BOOST_AUTO_TEST_CASE(a_heartbeat_waits_for_every_frame_before_it_and_none_after) {
  gate g;
  auto a = g.open();
  auto b = g.open();
  BOOST_TEST(!g.heartbeat(7, t0));
  auto c = g.open(); // after the heartbeat: it does not wait for this one
  BOOST_TEST(!g.heartbeat(8, t0));
  BOOST_TEST(g.unsettled() == 3u);
  g.settle(b); // out of order: a is still open
  BOOST_TEST(g.released().empty());
  g.settle(a);
  BOOST_TEST(g.released() == std::vector<int64_t>{7});
  BOOST_TEST(g.held() == 1u);
  g.settle(c);
  BOOST_TEST(g.released() == std::vector<int64_t>{8});
  g.settle(c); // repeated and unknown tickets change nothing
  g.settle(99);
  BOOST_TEST(g.unsettled() == 0u);
  BOOST_TEST(g.heartbeat(9, t0));
}

BOOST_AUTO_TEST_CASE(heartbeats_are_answered_in_arrival_order) {
  gate g;
  auto a = g.open();
  BOOST_TEST(!g.heartbeat(1, t0));
  // Nothing new opened, but heartbeat 1 is still held: 2 must wait behind it.
  BOOST_TEST(!g.heartbeat(2, t0));
  g.settle(a);
  BOOST_TEST(g.released() == (std::vector<int64_t>{1, 2}));
}

BOOST_AUTO_TEST_CASE(many_frames_settled_in_any_order) {
  gate g;
  std::vector<gate::ticket> tickets;
  std::vector<int64_t> expected;
  for (int i = 0; i < 5000; ++i) {
    tickets.push_back(g.open());
    if (i % 100 == 99) {
      BOOST_TEST(!g.heartbeat(i, t0));
      expected.push_back(i);
    }
  }
  // Settle from the back: nothing may be released until the very first frame is settled.
  std::vector<int64_t> got;
  for (size_t i = tickets.size(); i-- > 1;) {
    g.settle(tickets[i]);
    auto r = g.released();
    got.insert(got.end(), r.begin(), r.end());
  }
  BOOST_TEST(got.empty());
  BOOST_TEST(g.unsettled() == 1u);
  g.settle(tickets[0]);
  BOOST_TEST(g.released() == expected);
  BOOST_TEST(g.unsettled() == 0u);
}

BOOST_AUTO_TEST_CASE(the_delay_notice_comes_once_per_interval_while_an_ack_waits) {
  gate g;
  auto a = g.open();
  BOOST_TEST(!g.delay_notice_due(t0 + seconds(60), seconds(10)), "nothing held");
  BOOST_TEST(!g.heartbeat(1, t0));
  BOOST_TEST(!g.delay_notice_due(t0 + seconds(9), seconds(10)));
  BOOST_TEST(g.delay_notice_due(t0 + seconds(10), seconds(10)));
  BOOST_TEST(!g.delay_notice_due(t0 + seconds(15), seconds(10)));
  BOOST_TEST(g.delay_notice_due(t0 + seconds(20), seconds(10)));
  g.settle(a);
  BOOST_TEST(g.released() == std::vector<int64_t>{1});
  BOOST_TEST(!g.delay_notice_due(t0 + seconds(40), seconds(10)), "released: nothing to notice");
  auto b = g.open();
  BOOST_TEST(!g.heartbeat(2, t0 + seconds(41)));
  BOOST_TEST(!g.delay_notice_due(t0 + seconds(45), seconds(10)), "a new wait is timed from its heartbeat");
  BOOST_TEST(g.delay_notice_due(t0 + seconds(51), seconds(10)));
  g.settle(b);
}

BOOST_AUTO_TEST_SUITE_END()
