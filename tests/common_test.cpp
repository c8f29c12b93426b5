// Small pure pieces: time format, ids and hashing, log line format, storage URL parsing.
#define BOOST_TEST_MODULE common_test
#include <boost/test/unit_test.hpp>

#include "common/clock.hpp"
#include "common/ids.hpp"
#include "common/log.hpp"
#include "storage/url.hpp"

#include <set>

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
  BOOST_TEST(log::format_line(log::level::info, "storage ready", {{"backend", "sqlite"}, {"schema", 1}}, false, false, ts)
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
  BOOST_TEST(storage::parse_storage_url("sqlite:///abs/x.db", "/ignored", std::chrono::seconds(5)).sqlite_path == "/abs/x.db");
  BOOST_TEST(storage::parse_storage_url("sqlite::memory:", "", std::chrono::seconds(5)).connect_string == "db=:memory:");
  auto pg = storage::parse_storage_url("postgresql://u:s3cret@db.example:5433/nc?sslmode=disable", "", std::chrono::milliseconds(2500));
  BOOST_TEST((pg.kind == backend::postgresql));
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
