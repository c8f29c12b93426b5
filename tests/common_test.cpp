// Small pure pieces: time format, ids and hashing, log line format, storage URL parsing.
#define BOOST_TEST_MODULE common_test
#include <boost/test/unit_test.hpp>

#include "common/auth_limiter.hpp"
#include "common/clock.hpp"
#include "common/descriptors.hpp"
#include "common/ingest_budget.hpp"
#include "common/ids.hpp"
#include "common/log.hpp"
#include "storage/url.hpp"

#include <sys/resource.h>

#include <chrono>
#include <set>
#include <string>

using namespace nodecoord;

BOOST_AUTO_TEST_CASE(time_round_trips_and_accepts_postgres_form) {
  auto t = parse_time("2026-01-09T12:00:00.000Z");
  BOOST_REQUIRE(t);
  BOOST_TEST(format_time(*t) == "2026-01-09T12:00:00.000Z");
  BOOST_TEST(format_time(*parse_time("2026-01-09T12:00:00.5Z")) == "2026-01-09T12:00:00.500Z");
  BOOST_TEST(format_time(*parse_time("2026-01-09 13:30:00.123456+01:30")) == "2026-01-09T12:00:00.123Z");
  BOOST_TEST(format_time(*parse_time("2026-01-09T12:00:00+00")) == "2026-01-09T12:00:00.000Z");
  for (auto bad : {"", "2026-01-09", "2026-01-09T12:00:00", "2026-02-30T12:00:00Z", "2026-01-09T25:00:00Z",
                   "2026-01-09T12:00:00.Z", "2026-01-09T12:00:00Zjunk", "x026-01-09T12:00:00Z"})
    BOOST_TEST(!parse_time(bad), bad);
}

BOOST_AUTO_TEST_CASE(uuids_hashes_and_constant_time_compare) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    auto u = new_uuid();
    BOOST_TEST(is_uuid(u));
    BOOST_TEST(u[14] == '4');
    seen.insert(u);
  }
  BOOST_TEST(seen.size() == 1000u);
  BOOST_TEST(!is_uuid("not-a-uuid"));
  BOOST_TEST(!is_uuid("0000000000000000000000000000000000000"));
  BOOST_TEST(!is_uuid("00000000-0000-0000-0000-00000000000g"));
  BOOST_TEST(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  BOOST_TEST(random_hex(16).size() == 32u);
  BOOST_TEST(random_hex(16) != random_hex(16));
  BOOST_TEST(constant_time_equal("secret", "secret"));
  BOOST_TEST(!constant_time_equal("secret", "secreT"));
  BOOST_TEST(!constant_time_equal("secret", "secret2"));
}

BOOST_AUTO_TEST_CASE(log_lines_text_json_and_journal) {
  auto ts = "2026-01-09T12:00:00.000Z";
  BOOST_TEST(
    log::format_line(log::level::info, "storage ready", {{"backend", "sqlite"}, {"schema", 1}}, false, false, ts)
    == "2026-01-09T12:00:00.000Z info storage ready backend=sqlite schema=1");
  // Values with spaces or quotes are quoted and escaped.
  BOOST_TEST(log::format_line(log::level::warn, "x", {{"error", "a \"b\"\nc"}}, false, false, ts)
             == "2026-01-09T12:00:00.000Z warn x error=\"a \\\"b\\\"\\nc\"");
  BOOST_TEST(log::format_line(log::level::error, "x", {{"ok", true}}, false, true, ts) == "<3>x ok=true");
  BOOST_TEST(log::format_line(log::level::info, "m", {{"n", 2}, {"s", "v"}}, true, false, ts)
             == R"({"ts":"2026-01-09T12:00:00.000Z","level":"info","msg":"m","n":2,"s":"v"})");
  log::level l;
  BOOST_TEST(log::parse_level("warn", l));
  BOOST_TEST((l == log::level::warn));
  BOOST_TEST(!log::parse_level("loud", l));
}

BOOST_AUTO_TEST_CASE(storage_urls) {
  using storage::backend;
  auto rel = storage::parse_storage_url("sqlite://nodecoord.db", "/var/lib/nodecoord", std::chrono::seconds(5));
  BOOST_TEST((rel.kind == backend::sqlite));
  BOOST_TEST(rel.sqlite_path == "/var/lib/nodecoord/nodecoord.db");
  BOOST_TEST(rel.connect_string == "db=/var/lib/nodecoord/nodecoord.db timeout=5");
  BOOST_TEST(storage::parse_storage_url("sqlite:///abs/x.db", "/ignored", std::chrono::seconds(5)).sqlite_path
             == "/abs/x.db");
  BOOST_TEST(storage::parse_storage_url("sqlite::memory:", "", std::chrono::seconds(5)).connect_string
             == "db=:memory:");
  // Long reads on a connection of their own need a database that connection can see.
  BOOST_TEST(!storage::parse_storage_url("sqlite::memory:", "", std::chrono::seconds(5)).shared());
  BOOST_TEST(rel.shared());
  auto pg = storage::parse_storage_url("postgresql://u:s3cret@db.example:5433/nc?sslmode=disable", "",
                                       std::chrono::milliseconds(2500));
  BOOST_TEST((pg.kind == backend::postgresql));
  BOOST_TEST(pg.shared());
  BOOST_TEST(pg.connect_string.find("host='db.example'") != std::string::npos);
  BOOST_TEST(pg.connect_string.find("port='5433'") != std::string::npos);
  BOOST_TEST(pg.connect_string.find("dbname='nc'") != std::string::npos);
  BOOST_TEST(pg.connect_string.find("connect_timeout='3'") != std::string::npos);
  BOOST_TEST(pg.connect_string.find("application_name='nodecoordd'") != std::string::npos);
  BOOST_TEST(pg.redacted() == "postgresql://u:***@db.example:5433/nc?sslmode=disable");
  // Percent-encoded values are decoded by libpq and quoted for SOCI.
  auto opt = storage::parse_storage_url("postgresql://h/db?options=-c%20search_path%3Dx", "", std::chrono::seconds(1));
  BOOST_TEST(opt.connect_string.find("options='-c search_path=x'") != std::string::npos);
  for (auto bad : {"mysql://x", "sqlite://", "postgresql://", "postgresql://h/db?bogus_option=1", ""})
    BOOST_CHECK_THROW(storage::parse_storage_url(bad, "", std::chrono::seconds(1)), std::invalid_argument);
}

// --- the auth-failure limiter (issue 15) ----------------------------------------------------

BOOST_AUTO_TEST_CASE(auth_limiter_counts_ipv4_per_address_and_ipv6_per_64) {
  BOOST_TEST(auth_limiter::key_of("203.0.113.7") == "203.0.113.7");
  BOOST_TEST(auth_limiter::key_of("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64");
  BOOST_TEST(auth_limiter::key_of("[2001:db8:1:2:ffff:ffff:ffff:ffff]") == "2001:db8:1:2::/64");
  BOOST_TEST(auth_limiter::key_of("fe80::1%eth0") == "fe80::/64");
  BOOST_TEST(auth_limiter::key_of("::ffff:192.0.2.1") == "192.0.2.1");
  BOOST_TEST(auth_limiter::key_of("::1") == "::/64");
}

BOOST_AUTO_TEST_CASE(auth_limiter_limits_an_address_for_its_minute_only) {
  auth_limiter l(3, 100);
  auto t = sys_time{} + std::chrono::hours(1000);
  for (int i = 0; i < 3; ++i) {
    BOOST_TEST(!l.limited("198.51.100.1", t));
    l.failed("198.51.100.1", t);
  }
  BOOST_TEST(l.limited("198.51.100.1", t));
  BOOST_TEST(!l.limited("198.51.100.2", t), "another address is not limited");
  // Another host of the same /64 shares the limit; another /64 does not.
  for (int i = 0; i < 3; ++i)
    l.failed("2001:db8::" + std::to_string(i + 1), t);
  BOOST_TEST(l.limited("2001:db8::99", t));
  BOOST_TEST(!l.limited("2001:db8:0:1::1", t));
  BOOST_TEST(l.limited("198.51.100.1", t + std::chrono::seconds(59)));
  BOOST_TEST(!l.limited("198.51.100.1", t + std::chrono::seconds(60)), "a new minute");
}

// Before issue 15 the limiter cleared its whole table after 100,000 addresses: an attacker with
// many addresses reset everyone's limit, its own included.
BOOST_AUTO_TEST_CASE(auth_limiter_memory_is_bounded_and_cannot_be_flushed) {
  auth_limiter l(3, 50);
  auto t = sys_time{} + std::chrono::hours(1000);
  for (int i = 0; i < 3; ++i)
    l.failed("192.0.2.1", t);
  BOOST_TEST_REQUIRE(l.limited("192.0.2.1", t));
  for (int i = 0; i < 10000; ++i)
    l.failed("10." + std::to_string(i / 65536) + "." + std::to_string(i / 256 % 256) + "." + std::to_string(i % 256),
             t + std::chrono::milliseconds(i));
  BOOST_TEST(l.tracked() <= 50u);
  BOOST_TEST(l.limited("192.0.2.1", t + std::chrono::seconds(30)), "still limited after 10,000 other addresses");
  BOOST_TEST(l.overflowed() > 0u);
  // New addresses share the overflow window, which the flood used up: limited too.
  BOOST_TEST(l.limited("172.16.0.1", t + std::chrono::seconds(30)));
  // A minute later the table is swept and everything starts over.
  auto later = t + std::chrono::minutes(2);
  l.failed("172.16.0.1", later);
  BOOST_TEST(l.tracked() == 1u);
  BOOST_TEST(!l.limited("192.0.2.1", later));
  BOOST_TEST(!l.limited("172.16.0.1", later));
}

// --- the ingest budget (backpressure, issue 15) ---------------------------------------------

BOOST_AUTO_TEST_CASE(ingest_budget_is_over_at_either_limit_and_resumable_under_three_quarters) {
  ingest_budget b({1000, 10});
  BOOST_TEST(!b.over());
  for (int i = 0; i < 9; ++i)
    b.take(10);
  BOOST_TEST(!b.over());
  b.take(10);
  BOOST_TEST(b.over(), "10 frames");
  BOOST_TEST(!b.resumable());
  int woken = 0;
  b.wait([&] { ++woken; });
  b.wait([&] { ++woken; });
  BOOST_TEST(b.waiting() == 2u);
  std::vector<std::function<void()>> wake;
  wake = b.give(10);
  BOOST_TEST(wake.empty(), "9 frames are still over three quarters");
  wake = b.give(10); // 8 of 10: resumable
  BOOST_TEST(wake.size() == 2u);
  for (auto& w : wake)
    w();
  BOOST_TEST(woken == 2);
  BOOST_TEST(b.waiting() == 0u);
  b.wait([&] { ++woken; });
  BOOST_TEST(woken == 3, "under the mark: woken at once");
  b.take(990);
  BOOST_TEST(b.over(), "bytes");
  BOOST_TEST(b.bytes() == 1070u);
  BOOST_TEST(b.frames() == 9u);
}

BOOST_AUTO_TEST_CASE(a_session_gets_a_share_of_the_fleet_budget) {
  auto own = ingest_budget::per_session({256ull << 20, 100000});
  BOOST_TEST(own.max_bytes == 16ull << 20);
  BOOST_TEST(own.max_frames == 6250u);
  auto small = ingest_budget::per_session({1 << 20, 100});
  BOOST_TEST(small.max_bytes == 1u << 20, "never more than the fleet's");
  BOOST_TEST(small.max_frames == 100u);
}

BOOST_AUTO_TEST_CASE(the_descriptor_limit_is_raised_to_the_hard_one_and_sessions_fit_under_it) {
  BOOST_TEST(nodecoord::sessions_allowed(20000, 100000) == 20000u - nodecoord::descriptor_reserve);
  BOOST_TEST(nodecoord::sessions_allowed(65536, 10000) == 10000u, "max_connections caps it");
  BOOST_TEST(nodecoord::sessions_allowed(10, 10000) == 0u, "a limit below the reserve leaves no room");
  rlimit before{};
  BOOST_REQUIRE(getrlimit(RLIMIT_NOFILE, &before) == 0);
  auto lowered = before;
  if (before.rlim_max > 256) {
    lowered.rlim_cur = 256; // as a shell's default soft limit would be
    BOOST_REQUIRE(setrlimit(RLIMIT_NOFILE, &lowered) == 0);
  }
  auto got = nodecoord::raise_descriptor_limit(1u << 30);
  rlimit now{};
  BOOST_REQUIRE(getrlimit(RLIMIT_NOFILE, &now) == 0);
  BOOST_TEST(now.rlim_cur == before.rlim_max, "the soft limit is the hard one");
  BOOST_TEST(got.soft == uint64_t(now.rlim_cur));
  BOOST_TEST(got.hard == uint64_t(now.rlim_max));
  BOOST_TEST(got.soft_before == uint64_t(lowered.rlim_cur));
  BOOST_TEST(got.sessions == nodecoord::sessions_allowed(got.soft, 1u << 30));
}
