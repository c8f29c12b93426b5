#include <boost/test/unit_test.hpp>

// The configuration's value types: durations, endpoints, error and log-level formatting, and
// where the state directory comes from.

#include "config_test_support.hpp"

using namespace config_test;

// --- durations --------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(duration_parsing_valid) {
  const std::vector<std::pair<std::string, int64_t>> cases = {
    {"250ms", 250},
    {"10s", 10'000},
    {"5m", 300'000},
    {"1h", 3'600'000},
    {"1m30s", 90'000},
    {"1h1m1s1ms", 3'661'001},
    {"2h30m", 9'000'000},
    {"1s500ms", 1'500},
    {"0s", 0},
    {"0ms", 0},
    {"007s", 7'000},
    {"90s", 90'000},
    {"9223372036854775807ms", INT64_MAX},
  };
  for (const auto& [text, millis] : cases) {
    std::string why = "untouched";
    auto d = parse_duration(text, &why);
    BOOST_TEST_CONTEXT("input: \"" << text << "\"") {
      BOOST_TEST_REQUIRE(d.has_value(), "why: " << why);
      BOOST_TEST(d->count() == millis);
    }
  }
}

BOOST_AUTO_TEST_CASE(duration_parsing_invalid) {
  const std::vector<std::pair<std::string, std::string>> cases = {
    {"", "empty duration"},
    {"-5s", "negative durations are not allowed"},
    {"+5s", "a sign is not allowed"},
    {"10", "missing unit after 10"},
    {"1m30", "missing unit after 30"},
    {"10d", "unknown unit \"d\""},
    {"10S", "unknown unit \"S\""},
    {"10sec", "unknown unit \"sec\""},
    {"10us", "unknown unit \"us\""},
    {"10 s", "whitespace is not allowed"},
    {" 10s", "whitespace is not allowed"},
    {"10s ", "whitespace is not allowed"},
    {"1.5s", "fractional values are not allowed"},
    {"s", "expected a number"},
    {"10s%", "unexpected character '%'"},
    {"30s1m", "units must appear from largest to smallest"},
    {"1s1s", "units must appear from largest to smallest"},
    {"9223372036854775808ms", "duration too large"},
    {"2562047788016h", "duration too large"},
    {"99999999999999999999999s", "duration too large"},
    {"9223372036854775s1000ms", "duration too large"},
  };
  for (const auto& [text, reason] : cases) {
    BOOST_TEST_CONTEXT("input: \"" << text << "\"") {
      std::string why;
      auto d = parse_duration(text, &why);
      BOOST_TEST(!d.has_value());
      BOOST_TEST(contains(why, reason), "why: " << why);
      BOOST_TEST(!parse_duration(text).has_value()); // `why` is optional
    }
  }
}

BOOST_AUTO_TEST_CASE(duration_formatting) {
  const std::vector<std::pair<int64_t, std::string>> cases = {
    {1'500, "1500ms"},     {60'000, "1m"},           {90'000, "1m30s"},   {0, "0s"},
    {250, "250ms"},        {10'000, "10s"},          {3'600'000, "1h"},   {5'400'000, "1h30m"},
    {3'661'000, "1h1m1s"}, {3'661'001, "3661001ms"}, {86'400'000, "24h"}, {-10'000, "-10s"},
  };
  for (const auto& [millis, text] : cases)
    BOOST_TEST(format_duration(std::chrono::milliseconds{millis}) == text, "for " << millis << "ms");
  // Round trip.
  for (int64_t millis : {int64_t{1}, int64_t{999}, int64_t{1'000}, int64_t{61'000}, int64_t{3'599'999},
                         int64_t{7'200'000}, int64_t{INT64_MAX}}) {
    auto back = parse_duration(format_duration(std::chrono::milliseconds{millis}));
    BOOST_TEST_REQUIRE(back.has_value(), "for " << millis << "ms");
    BOOST_TEST(back->count() == millis);
  }
}

// --- endpoints --------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(endpoint_parsing_valid) {
  struct valid {
    std::string text;
    std::string host;
    uint16_t port;
    std::string printed;
  };
  const std::vector<valid> cases = {
    {"127.0.0.1:7400", "127.0.0.1", 7400, "127.0.0.1:7400"},
    {"127.0.0.1:0", "127.0.0.1", 0, "127.0.0.1:0"}, // any free port
    {"0.0.0.0:1", "0.0.0.0", 1, "0.0.0.0:1"},
    {"localhost:65535", "localhost", 65535, "localhost:65535"},
    {"node-1.example.net:8080", "node-1.example.net", 8080, "node-1.example.net:8080"},
    {"[::1]:7400", "::1", 7400, "[::1]:7400"},
    {"[::]:7400", "::", 7400, "[::]:7400"},
    {"[2001:db8::17]:443", "2001:db8::17", 443, "[2001:db8::17]:443"},
    {"[fe80::1%eth0]:7400", "fe80::1%eth0", 7400, "[fe80::1%eth0]:7400"},
    {"127.0.0.1:07400", "127.0.0.1", 7400, "127.0.0.1:7400"},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT("listen = \"" << c.text << "\"") {
      auto r = load("[server]\nlisten = \"" + c.text + "\"\n");
      BOOST_TEST_REQUIRE(r.ok(), "errors:" << describe(r));
      BOOST_TEST(r.config.server.listen.host == c.host);
      BOOST_TEST(r.config.server.listen.port == c.port);
      BOOST_TEST(r.config.server.listen.to_string() == c.printed);
    }
  }
  BOOST_TEST(default_config().server.listen.to_string() == "127.0.0.1:7400");
  BOOST_TEST(default_config().admin.listen.to_string() == "127.0.0.1:7401");
}

BOOST_AUTO_TEST_CASE(endpoint_parsing_invalid) {
  const std::vector<std::pair<std::string, std::string>> cases = {
    {"", "empty address"},
    {"::1:7400", "IPv6 addresses must be written in brackets"},
    {"127.0.0.1", "missing port"},
    {":7400", "missing host"},
    {"127.0.0.1:", "the port must be a number"},
    {"127.0.0.1:http", "the port must be a number"},
    {"127.0.0.1:-1", "the port must be a number"},
    {"127.0.0.1:65536", "port must be between 0 and 65535 (got 65536)"},
    {"127.0.0.1:99999999999999999999999", "port must be between 0 and 65535"},
    {"[::1]7400", "missing port after ']'"},
    {"[::1]", "missing port after ']'"},
    {"[::1:7400", "missing ']'"},
    {"[]:7400", "missing host"},
    {"[zz::1]:7400", "is not an IPv6 address"},
    {"[127.0.0.1]:7400", "is not an IPv6 address"},
    {"256.0.0.1:7400", "is not an IPv4 address"},
    {"*:7400", "is not a host name or IP address"},
    {"my host:7400", "is not a host name or IP address"},
  };
  for (const auto& [text, reason] : cases) {
    check_single_error({"[server]\nlisten = \"" + text + "\"\n", "server.listen", 2, 10, reason});
    check_single_error({"[admin]\nlisten = \"" + text + "\"\n", "admin.listen", 2, 10, reason});
  }
}

// --- formatting -------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(config_error_to_string) {
  BOOST_TEST((config_error{"/etc/nc.toml", 3, 7, "server.listen", "bad"}.to_string())
             == "/etc/nc.toml:3:7: server.listen: bad");
  BOOST_TEST((config_error{"/etc/nc.toml", 3, 7, "", "syntax"}.to_string()) == "/etc/nc.toml:3:7: syntax");
  BOOST_TEST((config_error{"/etc/nc.toml", 0, 0, "", "cannot read"}.to_string()) == "/etc/nc.toml: cannot read");
  BOOST_TEST((config_error{"/etc/nc.toml", 0, 0, "log.level", "bad"}.to_string()) == "/etc/nc.toml: log.level: bad");
  BOOST_TEST((config_error{"/etc/nc.toml", 4, 0, "log.level", "bad"}.to_string()) == "/etc/nc.toml:4: log.level: bad");
  BOOST_TEST((config_error{"", 4, 2, "log.level", "bad"}.to_string()) == "4:2: log.level: bad");
  BOOST_TEST((config_error{"", 0, 0, "", "bad"}.to_string()) == "bad");
  // From a real load.
  auto r = load_string("[server]\nhello_timeout = 10\n", "/etc/nodecoord/nodecoord.toml");
  BOOST_TEST_REQUIRE(r.errors.size() == 1u);
  BOOST_TEST(
    r.errors[0].to_string()
    == "/etc/nodecoord/nodecoord.toml:2:17: server.hello_timeout: expected a string like \"10s\", got integer");
  r = load_string("[server\n", "x.toml");
  BOOST_TEST_REQUIRE(r.errors.size() == 1u);
  BOOST_TEST(r.errors[0].to_string().rfind("x.toml:1:8: ", 0) == 0u, r.errors[0].to_string());
}

BOOST_AUTO_TEST_CASE(log_names) {
  const std::vector<std::pair<std::string, log_level>> levels = {
    {"trace", log_level::trace}, {"debug", log_level::debug}, {"info", log_level::info},
    {"warn", log_level::warn},   {"error", log_level::error},
  };
  for (const auto& [name, level] : levels) {
    BOOST_TEST(to_string(level) == name);
    auto r = load("[log]\nlevel = \"" + name + "\"\n");
    BOOST_TEST_REQUIRE(r.ok(), describe(r));
    BOOST_TEST((r.config.log.level == level), name);
  }
  BOOST_TEST(to_string(log_format::text) == "text");
  BOOST_TEST(to_string(log_format::json) == "json");
  auto r = load("[log]\nformat = \"json\"\n");
  BOOST_TEST_REQUIRE(r.ok(), describe(r));
  BOOST_TEST((r.config.log.format == log_format::json));
}

BOOST_AUTO_TEST_CASE(state_dir_flag_then_systemd_then_working_directory) {
  using nodecoord::config::resolve_state_dir;
  ::setenv("STATE_DIRECTORY", "/var/lib/nodecoord:/var/lib/other", 1);
  BOOST_TEST(resolve_state_dir("/srv/state") == "/srv/state");
  BOOST_TEST(resolve_state_dir("") == "/var/lib/nodecoord"); // the first of several
  ::unsetenv("STATE_DIRECTORY");
  BOOST_TEST(resolve_state_dir("").empty());
}

// SIGHUP applies [log] and admin.token_file at once; every other change is named as needing a
// restart, in file order (actors/supervisor.cpp logs them).
BOOST_AUTO_TEST_CASE(reload_names_every_change_that_needs_a_restart) {
  auto load = [](const std::string& toml) {
    auto r = load_string(toml, "reload.toml");
    BOOST_TEST_REQUIRE(r.ok(), toml);
    return r.config;
  };
  auto base = load("");
  BOOST_TEST(restart_needed(base, base).empty());
  auto changed = [&](const std::string& toml) { return restart_needed(base, load(toml)); };
  using v = std::vector<std::string>;
  BOOST_TEST(changed("[log]\nlevel = \"debug\"\nformat = \"json\"\n").empty());
  BOOST_TEST(changed("[admin]\ntoken_file = \"/etc/nodecoord/admin.token\"\nlisten = \"127.0.0.1:9999\"\n")
               == v{"admin.listen"},
             boost::test_tools::per_element());
  BOOST_TEST(
    changed("[server]\nlisten = \"127.0.0.1:7001\"\nmax_connections = 7\nmax_handshakes = 9\n"
            "idle_timeout = \"99s\"\nshutdown_timeout = \"3s\"\n")
      == (v{"server.listen", "server.max_connections", "server.max_handshakes", "server", "server.shutdown_timeout"}),
    boost::test_tools::per_element());
  BOOST_TEST(
    changed("[storage]\nurl = \"sqlite:///x.db\"\nbatch_max = 10\nmax_queued_bytes = 1048576\n"
            "max_queued_frames = 100\nreconnect_max = \"9s\"\n")
      == (v{"storage.url", "storage.batch_max", "storage.max_queued_bytes", "storage.max_queued_frames", "storage"}),
    boost::test_tools::per_element());
  BOOST_TEST(changed("[backfill]\nmax_failures = 9\n") == v{"backfill"}, boost::test_tools::per_element());
  BOOST_TEST(changed("[admin]\nmax_rows_per_action = 5\n") == v{"admin.max_rows_per_action"});
  BOOST_TEST(changed("[admin]\nmax_rows_per_action_hard = 20000\n") == v{"admin.max_rows_per_action_hard"});
  BOOST_TEST(changed("[admin]\nmax_body_bytes = 1048576\n") == v{"admin.max_body_bytes"},
             boost::test_tools::per_element());
  BOOST_TEST(changed("[admin]\nallowed_hosts = [\"coord.example.org\"]\n") == v{"admin.allowed_hosts"},
             boost::test_tools::per_element());
  // TLS files can change at run time; the admin port cannot switch between HTTP and HTTPS.
  BOOST_TEST(changed("[server.tls]\ncert_file = \"/a\"\nkey_file = \"/b\"\n").empty());
  BOOST_TEST(changed("[admin.tls]\ncert_file = \"/a\"\nkey_file = \"/b\"\n") == v{"admin.tls.cert_file"},
             boost::test_tools::per_element());
}

// Fuzzing finding 7 (docs/reliability.md): toml++ 3.3.0 has undefined behaviour for some code
// points where it looks for whitespace. The guard blanks them in comments and refuses them
// anywhere else with their position, before toml++ sees them.
BOOST_AUTO_TEST_CASE(code_points_toml_cannot_read_safely_are_refused_outside_comments) {
  // Exactly the unreachable branch of toml++'s generated function, at every range's edges.
  for (char32_t c : {0xA1, 0x499, 0x2C5E, 0x2FFF, 0x3001, 0x3057, 0xFB26, 0xFEFE})
    BOOST_TEST(toml_unsafe_code_point(c), std::hex << static_cast<uint32_t>(c));
  for (char32_t c : {0x41, 0xA0, 0x49A, 0x2C5D, 0x3000, 0x3058, 0x4E2D, 0xFB25, 0xFEFF, 0x1F600})
    BOOST_TEST(!toml_unsafe_code_point(c), std::hex << static_cast<uint32_t>(c));

  auto refused_at = [](const std::string& text, uint32_t line, uint32_t column, const std::string& code) {
    auto r = load_string(text, "guard.toml");
    BOOST_TEST_REQUIRE(r.errors.size() == 1u, text);
    BOOST_TEST(r.errors[0].line == line, text);
    BOOST_TEST(r.errors[0].column == column, text);
    BOOST_TEST(r.errors[0].message.find("the character " + code + " is only allowed in comments") != std::string::npos,
               r.errors[0].to_string());
  };
  refused_at("\xef\xb9\xbf[server]\n", 1, 1, "U+FE7F");                               // the fuzzer's reproducer
  refused_at("[storage]\nurl = \"sqlite:///tmp/caf\xc3\xa9.db\"\n", 2, 25, "U+00E9"); // in a string
  refused_at("[server]\nmax_connections = 5 \xc2\xa1\n", 2, 21, "U+00A1");            // after a value
  refused_at("a = \"# not a comment \xc2\xa1\"\n", 1, 22, "U+00A1");
  refused_at("a = '''\nx\n  \xe3\x80\x81'''\n", 3, 3, "U+3001"); // multi-line literal
  refused_at("a = \"\\\" \xc2\xa1\"\n", 1, 9, "U+00A1");         // an escaped quote does not end the string

  // In comments they are fine (blanked before parsing), whatever quotes the comment holds.
  auto ok = load_string("# caf\xc3\xa9 \"quoted\xc2\xa1 ' \xef\xb9\xbf\n[server]\nmax_connections = 5 # \xc3\xa9\n",
                        "guard.toml");
  BOOST_TEST_REQUIRE(ok.ok(), (ok.errors.empty() ? "" : ok.errors[0].to_string()));
  BOOST_TEST(ok.config.server.max_connections == 5u);
  // Other non-ASCII text in strings reaches the configuration unchanged.
  auto cjk = load_string("[storage]\nurl = \"sqlite:///tmp/\xe4\xb8\xad.db\"\n", "guard.toml");
  BOOST_TEST_REQUIRE(cjk.ok(), (cjk.errors.empty() ? "" : cjk.errors[0].to_string()));
  BOOST_TEST(cjk.config.storage.url == "sqlite:///tmp/\xe4\xb8\xad.db");
}
