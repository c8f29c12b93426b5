// The tracker's bookkeeping and the reconnect pacer, directly (no actors, no database).
#define BOOST_TEST_MODULE backfill_book_test
#include <boost/test/unit_test.hpp>

#include "backfill/pacer.hpp"
#include "backfill/request_book.hpp"

#include <algorithm>

using namespace nodecoord::backfill;
using namespace std::chrono_literals;

namespace nodecoord::backfill {
inline std::ostream& operator<<(std::ostream& os, answer_check c) { return os << to_string(c); }
} // namespace nodecoord::backfill

namespace {

const time_point t0{std::chrono::hours(1000)};

request req(const std::string& id, const std::string& node, int64_t epoch) {
  request r;
  r.id = id;
  r.node_id = node;
  r.epoch = epoch;
  r.trigger = "reconnect";
  return r;
}

} // namespace

BOOST_AUTO_TEST_CASE(a_request_is_answerable_only_once_sent_and_only_by_its_session) {
  request_book b;
  BOOST_TEST(b.open(req("r1", "n1", 3)));
  BOOST_TEST(!b.open(req("r1", "n2", 1)), "ids are unique");
  BOOST_TEST(b.answer("r1", "n1", 3, nullptr) == answer_check::not_sent);
  BOOST_TEST(b.sent("r1", {"a", "b"}, t0, 10s));
  BOOST_TEST(!b.sent("r1", {"a"}, t0, 10s), "sent once");
  BOOST_TEST(b.answer("r9", "n1", 3, nullptr) == answer_check::unknown);
  BOOST_TEST(b.answer("r1", "n2", 3, nullptr) == answer_check::foreign);
  BOOST_TEST(b.answer("r1", "n1", 2, nullptr) == answer_check::stale_epoch);
  BOOST_TEST(b.answer("r1", "n1", 4, nullptr) == answer_check::stale_epoch);
  BOOST_TEST(b.size() == 1u, "refused answers leave the request live");
  request out;
  BOOST_TEST(b.answer("r1", "n1", 3, &out) == answer_check::accepted);
  BOOST_TEST(out.id == "r1");
  BOOST_TEST((out.attempt_ids == std::vector<std::string>{"a", "b"}));
  BOOST_TEST(b.answer("r1", "n1", 3, nullptr) == answer_check::unknown, "a duplicate is unknown");
  BOOST_TEST(b.size() == 0u);
  BOOST_TEST(!b.next_deadline().has_value(), "an answered request has no deadline left");
}

BOOST_AUTO_TEST_CASE(a_session_end_takes_only_that_session_s_requests) {
  request_book b;
  b.open(req("old", "n1", 1));
  b.open(req("new", "n1", 2));
  b.open(req("other", "n2", 1));
  b.sent("old", {"a"}, t0, 10s);
  BOOST_TEST(b.inflight("n1", 1) == 1u);
  BOOST_TEST(b.inflight("n1", 2) == 1u);
  auto taken = b.take_session("n1", 1);
  BOOST_TEST_REQUIRE(taken.size() == 1u);
  BOOST_TEST(taken[0].id == "old");
  BOOST_TEST(b.inflight("n1", 1) == 0u);
  BOOST_TEST(b.find("new") != nullptr);
  BOOST_TEST(b.find("other") != nullptr);
  BOOST_TEST(!b.next_deadline().has_value(), "the taken request's deadline is gone too");
  BOOST_TEST(b.take_session("n1", 1).empty(), "taking twice takes nothing");
}

BOOST_AUTO_TEST_CASE(a_newer_session_takes_the_older_sessions_requests) {
  request_book b;
  b.open(req("e1", "n1", 1));
  b.open(req("e2", "n1", 2));
  b.open(req("e3", "n1", 3));
  auto taken = b.take_older("n1", 3);
  std::vector<std::string> ids;
  for (auto& r : taken)
    ids.push_back(r.id);
  std::sort(ids.begin(), ids.end());
  BOOST_TEST((ids == std::vector<std::string>{"e1", "e2"}));
  BOOST_TEST(b.size() == 1u);
}

BOOST_AUTO_TEST_CASE(deadlines_expire_in_order_and_only_sent_requests) {
  request_book b;
  b.open(req("a", "n1", 1));
  b.open(req("b", "n2", 1));
  b.open(req("marking", "n3", 1));
  b.sent("a", {"x"}, t0, 10s);
  b.sent("b", {"y"}, t0 + 5s, 10s);
  BOOST_TEST((b.next_deadline() == t0 + 10s));
  BOOST_TEST(b.take_expired(t0 + 9s).empty());
  auto first = b.take_expired(t0 + 10s);
  BOOST_TEST_REQUIRE(first.size() == 1u);
  BOOST_TEST(first[0].id == "a");
  BOOST_TEST((b.next_deadline() == t0 + 15s));
  auto rest = b.take_expired(t0 + 1h);
  BOOST_TEST_REQUIRE(rest.size() == 1u);
  BOOST_TEST(rest[0].id == "b");
  BOOST_TEST(b.find("marking") != nullptr, "a request still being marked has no deadline yet");
  BOOST_TEST(b.take_all().size() == 1u);
  BOOST_TEST(b.size() == 0u);
}

BOOST_AUTO_TEST_CASE(closing_a_request_frees_its_slot) {
  request_book b;
  b.open(req("a", "n1", 1));
  b.open(req("b", "n1", 1));
  BOOST_TEST(b.inflight("n1", 1) == 2u);
  BOOST_TEST(b.close("a").has_value());
  BOOST_TEST(!b.close("a").has_value());
  BOOST_TEST(b.inflight("n1", 1) == 1u);
  BOOST_TEST(b.sent("b", {"x"}, t0, 1s));
  BOOST_TEST(b.close("b").has_value());
  BOOST_TEST(!b.next_deadline().has_value());
}

// An operator's cancel (bulk requests.cancel): exactly the planned requests, or none of them when
// one has ended or is still being marked; what it takes frees its slot and its deadline.
BOOST_AUTO_TEST_CASE(a_cancel_takes_exactly_the_named_requests_or_none) {
  request_book b;
  for (auto* id : {"a", "b", "c"})
    b.open(req(id, "n1", 1));
  BOOST_TEST(b.sent("a", {"x"}, t0, 10s));
  BOOST_TEST(b.sent("b", {"y", "z"}, t0 + 1s, 10s));
  // c is still being marked: a set naming it is not taken, and nothing else is either.
  BOOST_TEST(!b.take_exactly({"a", "c"}).has_value());
  BOOST_TEST(!b.take_exactly({"a", "gone"}).has_value());
  BOOST_TEST(b.size() == 3u);
  auto taken = b.take_exactly({"b", "a", "b"});
  BOOST_TEST_REQUIRE(taken.has_value());
  BOOST_TEST_REQUIRE(taken->size() == 2u);
  std::vector<std::string> ids{(*taken)[0].id, (*taken)[1].id};
  std::sort(ids.begin(), ids.end());
  BOOST_TEST((ids == std::vector<std::string>{"a", "b"}));
  BOOST_TEST(b.size() == 1u);
  BOOST_TEST(b.inflight("n1", 1) == 1u);
  BOOST_TEST(!b.next_deadline().has_value());                           // c is not sent: no deadline is left
  BOOST_TEST(b.answer("a", "n1", 1, nullptr) == answer_check::unknown); // a late answer is refused
  BOOST_TEST(b.take_exactly({}).has_value());                           // nothing named, nothing taken
}

BOOST_AUTO_TEST_CASE(the_pacer_never_exceeds_its_rate_in_any_window) {
  for (uint32_t rate : {1u, 7u, 50u, 1000u}) {
    pacer p(rate, 42);
    std::vector<time_point> starts;
    auto now = t0;
    for (int i = 0; i < 3000; ++i) {
      auto at = p.next(now);
      BOOST_TEST_REQUIRE((at >= now));
      starts.push_back(at);
      now = at; // the scheduler reserves the next start when the previous one fires
    }
    // Any window of 1 s holds at most rate + 2 starts...
    size_t j = 0;
    for (size_t i = 0; i < starts.size(); ++i) {
      while (starts[i] - starts[j] >= std::chrono::seconds(1))
        ++j;
      BOOST_TEST_REQUIRE(i - j + 1 <= size_t(rate) + 2, "rate " << rate);
    }
    // ...and the pacer does not fall behind: n starts take about n / rate seconds.
    auto span = std::chrono::duration<double>(starts.back() - starts.front()).count();
    BOOST_TEST(span <= 3000.0 / rate + 1.0 / rate, "rate " << rate);
    BOOST_TEST(span >= 2998.0 / rate - 1.0 / rate, "rate " << rate);
  }
}

BOOST_AUTO_TEST_CASE(the_pacer_spreads_starts_with_jitter) {
  pacer p(10, 7);
  std::vector<int64_t> offsets;
  for (int i = 0; i < 50; ++i) {
    auto at = p.next(t0);
    offsets.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(at - t0).count() % 100);
  }
  std::sort(offsets.begin(), offsets.end());
  BOOST_TEST(offsets.front() != offsets.back(), "every start at the same offset in its slot");
}
