#define BOOST_TEST_MODULE config_test
#include <boost/test/unit_test.hpp>

// The TOML configuration (config/config.hpp, docs/configuration.md): defaults, the example file,
// every key, every class of error with its position. Durations, endpoints and formatting are in
// config_values_test.cpp (one binary).

#include "config_test_support.hpp"

using namespace config_test;

// --- defaults and the example file -----------------------------------------------------------

BOOST_AUTO_TEST_CASE(default_config_matches_defaults_hpp) {
  auto c = default_config();
  BOOST_TEST(c.server.listen.host == "127.0.0.1");
  BOOST_TEST(c.server.listen.port == 7400);
  BOOST_TEST(c.server.max_connections == nodecoord::defaults::max_connections);
  BOOST_TEST(c.server.max_frame_bytes == 1024u * 1024u);
  BOOST_TEST(c.server.max_outbound_bytes == 4u * 1024u * 1024u);
  BOOST_TEST(c.server.hello_timeout.count() == 10'000);
  BOOST_TEST(c.server.heartbeat_interval.count() == 10'000);
  BOOST_TEST(c.server.idle_timeout.count() == 30'000);
  BOOST_TEST(c.server.max_protocol_errors == 10u);
  BOOST_TEST(c.server.shutdown_timeout.count() == 15'000);
  BOOST_TEST(!c.server.tls.enabled());
  BOOST_TEST(c.server.tls.min_version == "1.2");
  BOOST_TEST(c.server.tls.required);
  BOOST_TEST(c.admin.allowed_hosts.empty());
  BOOST_TEST(c.storage.url == "sqlite://nodecoord.db");
  BOOST_TEST(c.storage.batch_max == 1000u);
  BOOST_TEST(c.storage.connect_timeout.count() == 5'000);
  BOOST_TEST(c.storage.reconnect_initial.count() == 100);
  BOOST_TEST(c.storage.reconnect_max.count() == 10'000);
  BOOST_TEST(c.backfill.reconcile_interval.count() == 60'000);
  BOOST_TEST(c.backfill.batch_size == 100u);
  BOOST_TEST(c.backfill.request_timeout.count() == 120'000);
  BOOST_TEST(c.backfill.max_failures == 5u);
  BOOST_TEST(c.backfill.reconnect_rate == 50u);
  BOOST_TEST(c.backfill.max_inflight_per_node == 2u);
  BOOST_TEST(c.admin.listen.host == "127.0.0.1");
  BOOST_TEST(c.admin.listen.port == 7401);
  BOOST_TEST(c.admin.token_file == "");
  BOOST_TEST(c.admin.max_body_bytes == 536870912u);
  BOOST_TEST(c.admin.max_rows_per_action == 10000);
  BOOST_TEST(c.admin.max_rows_per_action_hard == 1000000);
  BOOST_TEST((c.log.level == log_level::info));
  BOOST_TEST((c.log.format == log_format::text));
}

BOOST_AUTO_TEST_CASE(example_file_parses_to_the_defaults) {
  auto r = load_file(example_path);
  BOOST_TEST(r.ok(), "errors:" << describe(r));
  check_same(r.config, default_config());
}

BOOST_AUTO_TEST_CASE(example_file_lists_every_key_uncommented) {
  std::ifstream in(example_path);
  BOOST_TEST_REQUIRE(in.good());
  const std::vector<std::pair<std::string, std::vector<std::string>>> schema = {
    {"server",
     {"listen", "max_connections", "max_handshakes", "max_frame_bytes", "max_outbound_bytes", "hello_timeout",
      "heartbeat_interval", "idle_timeout", "max_protocol_errors", "shutdown_timeout", "instance_id", "lease_interval",
      "lease_expiry"}},
    {"server.tls", {"cert_file", "key_file", "client_ca_file", "min_version", "required"}},
    {"storage",
     {"url", "batch_max", "max_queued_bytes", "max_queued_frames", "connect_timeout", "reconnect_initial",
      "reconnect_max"}},
    {"backfill",
     {"reconcile_interval", "batch_size", "request_timeout", "max_failures", "reconnect_rate",
      "max_inflight_per_node"}},
    {"admin",
     {"listen", "token_file", "max_body_bytes", "max_rows_per_action", "max_rows_per_action_hard", "allowed_hosts"}},
    {"admin.tls", {"cert_file", "key_file", "client_ca_file", "min_version"}},
    {"log", {"level", "format"}},
  };
  // table -> keys assigned (not in comments) in that table
  std::vector<std::pair<std::string, std::string>> assigned;
  std::string table;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#')
      continue;
    if (line[0] == '[') {
      table = line.substr(1, line.find(']') - 1);
      continue;
    }
    assigned.emplace_back(table, line.substr(0, line.find(" = ")));
  }
  size_t expected_count = 0;
  for (const auto& [t, keys] : schema) {
    for (const auto& k : keys) {
      ++expected_count;
      BOOST_TEST((std::find(assigned.begin(), assigned.end(), std::pair{t, k}) != assigned.end()),
                 "example file does not set " << t << "." << k);
    }
  }
  BOOST_TEST(assigned.size() == expected_count);
}

// Several instances (DESIGN §9): the lease must outlive a late renewal, the id must be a name.
BOOST_AUTO_TEST_CASE(instance_settings_are_checked) {
  auto ok = load("[server]\ninstance_id = \"coord-a.eu:1\"\nlease_interval = \"1s\"\nlease_expiry = \"2s\"\n");
  BOOST_TEST_REQUIRE(ok.ok(), (ok.errors.empty() ? std::string() : ok.errors[0].to_string()));
  BOOST_TEST(ok.config.server.instance_id == "coord-a.eu:1");
  BOOST_TEST(ok.config.server.lease_expiry.count() == 2000);
  auto d = load("");
  BOOST_TEST(d.config.server.instance_id.empty());
  BOOST_TEST(d.config.server.lease_interval.count() == 5000);
  BOOST_TEST(d.config.server.lease_expiry.count() == 15000);
  auto short_lease = load("[server]\nlease_interval = \"5s\"\nlease_expiry = \"9s\"\n");
  BOOST_TEST_REQUIRE(short_lease.errors.size() == 1u);
  BOOST_TEST(short_lease.errors[0].to_string().find("server.lease_expiry") != std::string::npos,
             short_lease.errors[0].to_string());
  BOOST_TEST(short_lease.errors[0].to_string().find("at least twice server.lease_interval") != std::string::npos);
  auto bad_id = load("[server]\ninstance_id = \"coord a\"\n");
  BOOST_TEST_REQUIRE(bad_id.errors.size() == 1u);
  BOOST_TEST(bad_id.errors[0].to_string().find("server.instance_id") != std::string::npos,
             bad_id.errors[0].to_string());
  BOOST_TEST(bad_id.errors[0].line == 2);
}

BOOST_AUTO_TEST_CASE(empty_file_gives_defaults) {
  for (std::string_view text : {""sv, "\n\n"sv, "# only a comment\n"sv, "[server]\n[storage]\n[log]\n"sv}) {
    BOOST_TEST_CONTEXT("input: " << text) {
      auto r = load(text);
      BOOST_TEST(r.ok(), "errors:" << describe(r));
      check_same(r.config, default_config());
    }
  }
}

BOOST_AUTO_TEST_CASE(every_key_is_read) {
  auto r = load(R"([server]
listen = "[::1]:9000"
max_connections = 20
max_frame_bytes = 2048
max_outbound_bytes = 4096
hello_timeout = "2s"
heartbeat_interval = "1m"
idle_timeout = "1m30s"
max_protocol_errors = 3
shutdown_timeout = "1h"

[server.tls]
cert_file = "/etc/nodecoord/tls/server.crt"
key_file = "/etc/nodecoord/tls/server.key"
client_ca_file = "/etc/nodecoord/tls/ca.crt"
min_version = "1.3"
required = false

[storage]
url = "postgresql://nc@db:5432/nc"
batch_max = 7
connect_timeout = "250ms"
reconnect_initial = "1s"
reconnect_max = "2m"

[backfill]
reconcile_interval = "5m"
batch_size = 11
request_timeout = "3m"
max_failures = 12
reconnect_rate = 13
max_inflight_per_node = 14

[admin]
listen = "0.0.0.0:9001"
token_file = "/etc/nodecoord/admin.token"
max_body_bytes = 2048
max_rows_per_action = 500
max_rows_per_action_hard = 900
allowed_hosts = ["Coord.Example.org", "10.0.0.1", "coord.example.org", "::1"]

[admin.tls]
cert_file = "/etc/nodecoord/tls/admin.crt"
key_file = "/etc/nodecoord/tls/admin.key"
client_ca_file = "/etc/nodecoord/tls/operators.crt"
min_version = "1.3"

[log]
level = "debug"
format = "json"
)");
  BOOST_TEST_REQUIRE(r.ok(), "errors:" << describe(r));
  const auto& c = r.config;
  BOOST_TEST(c.server.listen.host == "::1");
  BOOST_TEST(c.server.listen.port == 9000);
  BOOST_TEST(c.server.max_connections == 20u);
  BOOST_TEST(c.server.max_frame_bytes == 2048u);
  BOOST_TEST(c.server.max_outbound_bytes == 4096u);
  BOOST_TEST(c.server.hello_timeout.count() == 2'000);
  BOOST_TEST(c.server.heartbeat_interval.count() == 60'000);
  BOOST_TEST(c.server.idle_timeout.count() == 90'000);
  BOOST_TEST(c.server.max_protocol_errors == 3u);
  BOOST_TEST(c.server.shutdown_timeout.count() == 3'600'000);
  BOOST_TEST(c.server.tls.enabled());
  BOOST_TEST(c.server.tls.cert_file == "/etc/nodecoord/tls/server.crt");
  BOOST_TEST(c.server.tls.key_file == "/etc/nodecoord/tls/server.key");
  BOOST_TEST(c.server.tls.client_ca_file == "/etc/nodecoord/tls/ca.crt");
  BOOST_TEST(c.server.tls.min_version == "1.3");
  BOOST_TEST(!c.server.tls.required);
  BOOST_TEST(c.storage.url == "postgresql://nc@db:5432/nc");
  BOOST_TEST(c.storage.batch_max == 7u);
  BOOST_TEST(c.storage.connect_timeout.count() == 250);
  BOOST_TEST(c.storage.reconnect_initial.count() == 1'000);
  BOOST_TEST(c.storage.reconnect_max.count() == 120'000);
  BOOST_TEST(c.backfill.reconcile_interval.count() == 300'000);
  BOOST_TEST(c.backfill.batch_size == 11u);
  BOOST_TEST(c.backfill.request_timeout.count() == 180'000);
  BOOST_TEST(c.backfill.max_failures == 12u);
  BOOST_TEST(c.backfill.reconnect_rate == 13u);
  BOOST_TEST(c.backfill.max_inflight_per_node == 14u);
  BOOST_TEST(c.admin.listen.host == "0.0.0.0");
  BOOST_TEST(c.admin.listen.port == 9001);
  BOOST_TEST(c.admin.token_file == "/etc/nodecoord/admin.token");
  BOOST_TEST(c.admin.max_body_bytes == 2048u);
  BOOST_TEST(c.admin.max_rows_per_action == 500);
  BOOST_TEST(c.admin.max_rows_per_action_hard == 900);
  BOOST_TEST(c.admin.tls.cert_file == "/etc/nodecoord/tls/admin.crt");
  BOOST_TEST(c.admin.tls.key_file == "/etc/nodecoord/tls/admin.key");
  BOOST_TEST(c.admin.tls.client_ca_file == "/etc/nodecoord/tls/operators.crt");
  BOOST_TEST(c.admin.tls.min_version == "1.3");
  // Lower case, each name once.
  BOOST_TEST(c.admin.allowed_hosts == (std::vector<std::string>{"coord.example.org", "10.0.0.1", "::1"}),
             boost::test_tools::per_element());
  BOOST_TEST((c.log.level == log_level::debug));
  BOOST_TEST((c.log.format == log_format::json));
}

BOOST_AUTO_TEST_CASE(load_file_reads_a_real_file) {
  temp_file f("[server]\nmax_connections = 42\n\n[log]\nlevel = \"loud\"\n");
  auto r = load_file(f.path);
  BOOST_TEST_REQUIRE(r.errors.size() == 1u, "errors:" << describe(r));
  BOOST_TEST(r.config.server.max_connections == 42u);
  const auto& e = r.errors.front();
  BOOST_TEST(e.file == f.path);
  BOOST_TEST(e.line == 5u);
  BOOST_TEST(e.column == 9u);
  BOOST_TEST(e.key == "log.level");
  BOOST_TEST(e.to_string()
             == f.path
                  + ":5:9: log.level: invalid log level \"loud\"; expected one of trace, debug, info, warn, error");
}

// --- error classes ----------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(syntax_errors) {
  const std::vector<expected_error> cases = {
    // unterminated string: toml++ reports the line break, just after the last character
    {"[server]\nlisten = \"127.0.0.1:7400\nmax_connections = 5\n", "", 2, 25, "Error while parsing string"},
    // the same key twice
    {"[server]\nmax_connections = 5\nmax_connections = 6\n", "", 3, 19, "cannot redefine existing integer"},
    // an integer that does not fit in 64 bits
    {"[server]\nmax_frame_bytes = 99999999999999999999\n", "", 2, 39, "not representable in 64 bits"},
    // a key without a value
    {"[log]\nlevel =\n", "", 2, 8, "Error while parsing"},
  };
  for (const auto& c : cases)
    check_single_error(c);
  // A syntax error leaves every value at its default.
  auto r = load("[server]\nmax_connections = 5\n[log\n");
  BOOST_TEST(r.errors.size() == 1u);
  BOOST_TEST(r.config.server.max_connections == nodecoord::defaults::max_connections);
}

BOOST_AUTO_TEST_CASE(unknown_tables_and_keys) {
  const std::vector<expected_error> cases = {
    // a typo of a key: edit distance 1
    {"[server]\nlisten = \"127.0.0.1:7400\"\nmax_conections = 5\n", "server.max_conections", 3, 1,
     "unknown key 'max_conections' in [server] (did you mean 'max_connections'?)"},
    // transposed letters count as one edit
    {"[server]\n  lsiten = \"127.0.0.1:7400\"\n", "server.lsiten", 2, 3, "did you mean 'listen'?"},
    // edit distance 2
    {"[backfill]\nbatch_sz = 5\n", "backfill.batch_sz", 2, 1, "did you mean 'batch_size'?"},
    // in a table inside a table
    {"[server.tls]\ncert_fil = \"/c\"\n", "server.tls.cert_fil", 2, 1,
     "unknown key 'cert_fil' in [server.tls] (did you mean 'cert_file'?)"},
    // a typo of a table
    {"[servr]\nlisten = \"127.0.0.1:7400\"\n", "servr", 1, 2, "unknown key 'servr' (did you mean 'server'?)"},
    // nothing close: no suggestion
    {"[log]\ncolour = true\n", "log.colour", 2, 1, "unknown key 'colour' in [log]"},
    // the right key in the wrong table
    {"[backfill]\nbatch_max = 5\n", "backfill.batch_max", 2, 1, "(did you mean 'storage.batch_max'?)"},
    // a key outside any table
    {"listen = \"127.0.0.1:7400\"\n", "listen", 1, 1, "(did you mean 'server.listen' or 'admin.listen'?)"},
    // a sub-table nobody asked for
    {"[server.ssl]\ncert = \"x\"\n", "server.ssl", 1, 9, "unknown key 'ssl' in [server] (did you mean 'tls'?)"},
    // a dotted key
    {"[storage]\npool.size = 5\n", "storage.pool", 2, 1, "unknown key 'pool' in [storage]"},
  };
  for (const auto& c : cases)
    check_single_error(c);
  // No suggestion when nothing is within distance 2.
  auto r = load("[log]\ncolour = true\n");
  BOOST_TEST_REQUIRE(r.errors.size() == 1u);
  BOOST_TEST(!contains(r.errors[0].message, "did you mean"));
}

BOOST_AUTO_TEST_CASE(wrong_types) {
  const std::vector<expected_error> cases = {
    {"[server]\nhello_timeout = 10\n", "server.hello_timeout", 2, 17, "expected a string like \"10s\", got integer"},
    {"[storage]\nreconnect_max = 1.5\n", "storage.reconnect_max", 2, 17, "expected a string like \"10s\", got float"},
    {"[server]\nmax_connections = \"100\"\n", "server.max_connections", 2, 19, "expected an integer, got string"},
    {"[server]\nmax_frame_bytes = 1e6\n", "server.max_frame_bytes", 2, 19, "expected an integer, got float"},
    {"[server]\nlisten = 7400\n", "server.listen", 2, 10, "expected a string like \"127.0.0.1:7400\""},
    {"[storage]\nurl = true\n", "storage.url", 2, 7, "got boolean"},
    {"[admin]\ntoken_file = [\"a\"]\n", "admin.token_file", 2, 14, "expected a string, got array"},
    {"[log]\nlevel = 3\n", "log.level", 2, 9,
     "expected a string (one of trace, debug, info, warn, error), got integer"},
    {"[log]\nformat = { kind = \"json\" }\n", "log.format", 2, 10, "got table"},
    {"server = 5\n", "server", 1, 10, "expected a table ([server]), got integer"},
    {"[[server]]\nlisten = \"127.0.0.1:7400\"\n", "server", 1, 1, "write [server], not [[server]]"},
    {"[server.tls]\nrequired = \"yes\"\n", "server.tls.required", 2, 12, "expected true or false, got string"},
    // the admin port is HTTPS only once it has a certificate: no `required` there
    {"[admin.tls]\nrequired = false\n", "admin.tls.required", 2, 1, "unknown key 'required' in [admin.tls]"},
    {"[server]\ntls = 1\n", "server.tls", 2, 7, "expected a table ([server.tls]), got integer"},
    {"[admin]\nallowed_hosts = \"coord.example.org\"\n", "admin.allowed_hosts", 2, 17,
     "expected an array of host names like [\"coord.example.org\"], got string"},
    {"[admin]\nallowed_hosts = [\"a\", 7]\n", "admin.allowed_hosts[1]", 2, 23, "expected a string, got integer"},
  };
  for (const auto& c : cases)
    check_single_error(c);
}

BOOST_AUTO_TEST_CASE(out_of_range_values) {
  const std::vector<expected_error> cases = {
    {"[server]\nlisten = \"127.0.0.1:70000\"\n", "server.listen", 2, 10,
     "port must be between 0 and 65535 (got 70000)"},
    {"[admin]\nlisten = \"[::1]:65536\"\n", "admin.listen", 2, 10, "port must be between 0 and 65535"},
    {"[server]\nmax_connections = 0\n", "server.max_connections", 2, 19, "out of range: must be at least 1 (got 0)"},
    {"[admin]\nmax_body_bytes = 1023\n", "admin.max_body_bytes", 2, 18,
     "out of range: must be at least 1024 (got 1023)"},
    {"[server]\nmax_connections = 4294967296\n", "server.max_connections", 2, 19,
     "out of range: must be at most 4294967295 (got 4294967296)"},
    {"[server]\nmax_connections = -1\n", "server.max_connections", 2, 19, "must be at least 1 (got -1)"},
    {"[server]\nmax_frame_bytes = 1023\n", "server.max_frame_bytes", 2, 19, "must be at least 1024 (got 1023)"},
    {"[server]\nmax_frame_bytes = -1048576\n", "server.max_frame_bytes", 2, 19, "must be at least 1024"},
    {"[server]\nmax_protocol_errors = 0\n", "server.max_protocol_errors", 2, 23, "must be at least 1"},
    {"[server]\nhello_timeout = \"0s\"\n", "server.hello_timeout", 2, 17, "must be greater than 0 (got \"0s\")"},
    {"[server]\nidle_timeout = \"0ms\"\n", "server.idle_timeout", 2, 16, "must be greater than 0"},
    {"[server]\nshutdown_timeout = \"8761h\"\n", "server.shutdown_timeout", 2, 20, "must be at most 8760h"},
    {"[server]\nhello_timeout = \"-5s\"\n", "server.hello_timeout", 2, 17,
     "invalid duration \"-5s\": negative durations are not allowed"},
    {"[server]\nhello_timeout = \"10\"\n", "server.hello_timeout", 2, 17, "invalid duration \"10\": missing unit"},
    {"[storage]\nbatch_max = 0\n", "storage.batch_max", 2, 13, "must be at least 1 (got 0)"},
    {"[storage]\nconnect_timeout = \"0s\"\n", "storage.connect_timeout", 2, 19, "must be greater than 0"},
    {"[backfill]\nbatch_size = 0\n", "backfill.batch_size", 2, 14, "must be at least 1 (got 0)"},
    {"[backfill]\nmax_failures = 0\n", "backfill.max_failures", 2, 16, "must be at least 1 (got 0)"},
    {"[backfill]\nreconnect_rate = 0\n", "backfill.reconnect_rate", 2, 18, "must be at least 1 (got 0)"},
    {"[backfill]\nmax_inflight_per_node = 0\n", "backfill.max_inflight_per_node", 2, 25, "must be at least 1 (got 0)"},
    {"[backfill]\nrequest_timeout = \"0h\"\n", "backfill.request_timeout", 2, 19, "must be greater than 0"},
    {"[log]\nlevel = \"verbose\"\n", "log.level", 2, 9,
     "invalid log level \"verbose\"; expected one of trace, debug, info, warn, error"},
    {"[log]\nlevel = \"INFO\"\n", "log.level", 2, 9, "invalid log level \"INFO\""},
    {"[log]\nformat = \"xml\"\n", "log.format", 2, 10, "invalid log format \"xml\"; expected one of text, json"},
    {"[server.tls]\nmin_version = \"1.1\"\n", "server.tls.min_version", 2, 15,
     "invalid TLS version \"1.1\"; expected one of \"1.2\", \"1.3\""},
    // allowed_hosts holds names: no port, scheme or wildcard, valid DNS labels.
    {"[admin]\nallowed_hosts = [\"coord.example.org:7401\"]\n", "admin.allowed_hosts[0]", 2, 18,
     "\"coord.example.org:7401\" may hold only letters, digits, '-' and '.' (no port, no scheme, no wildcard)"},
    {"[admin]\nallowed_hosts = [\"ok.example\", \"*.example.org\"]\n", "admin.allowed_hosts[1]", 2, 32, "no wildcard"},
    {"[admin]\nallowed_hosts = [\"http://x\"]\n", "admin.allowed_hosts[0]", 2, 18, "no scheme"},
    {"[admin]\nallowed_hosts = [\"a..b\"]\n", "admin.allowed_hosts[0]", 2, 18, "has an empty label"},
    {"[admin]\nallowed_hosts = [\"\"]\n", "admin.allowed_hosts[0]", 2, 18, "1 to 253 characters"},
    {"[admin]\nallowed_hosts = [\"x.\"]\n", "admin.allowed_hosts[0]", 2, 18, "ends with '.'"},
    {"[admin]\nallowed_hosts = [\"" + std::string(64, 'a') + ".example\"]\n", "admin.allowed_hosts[0]", 2, 18,
     "label longer than 63"},
  };
  for (const auto& c : cases)
    check_single_error(c);
}

BOOST_AUTO_TEST_CASE(integers_do_not_wrap) {
  // 2^32 + 5 would wrap to 5 in a uint32_t.
  auto r = load("[backfill]\nbatch_size = 4294967301\n");
  BOOST_TEST(r.errors.size() == 1u, "errors:" << describe(r));
  BOOST_TEST(r.config.backfill.batch_size == nodecoord::defaults::batch_size);
  // The largest TOML integer fits a uint64_t field.
  r = load("[server]\nmax_frame_bytes = 9223372036854775807\nmax_outbound_bytes = 9223372036854775807\n");
  BOOST_TEST(r.ok(), "errors:" << describe(r));
  BOOST_TEST(r.config.server.max_frame_bytes == 9223372036854775807u);
  // The largest uint32_t is accepted.
  r = load("[server]\nmax_connections = 4294967295\n");
  BOOST_TEST(r.ok(), "errors:" << describe(r));
  BOOST_TEST(r.config.server.max_connections == 4294967295u);
}

BOOST_AUTO_TEST_CASE(cross_field_checks) {
  const std::vector<expected_error> cases = {
    // reported at the key that must change, when the file sets it ...
    {"[server]\nmax_frame_bytes = 2048\nmax_outbound_bytes = 1024\n", "server.max_outbound_bytes", 3, 22,
     "must be at least server.max_frame_bytes = 2048 (got 1024)"},
    // ... else at the other key involved
    {"[server]\nmax_frame_bytes = 8388608\n", "server.max_frame_bytes", 2, 19,
     "must be at most server.max_outbound_bytes = 4194304 (got 8388608)"},
    {"[server]\nheartbeat_interval = \"10s\"\nidle_timeout = \"10s\"\n", "server.idle_timeout", 3, 16,
     "must be greater than server.heartbeat_interval = 10s (got 10s)"},
    {"[server]\nidle_timeout = \"5s\"\n", "server.idle_timeout", 2, 16,
     "must be greater than server.heartbeat_interval = 10s (got 5s)"},
    {"[server]\nheartbeat_interval = \"1m\"\n", "server.heartbeat_interval", 2, 22,
     "must be less than server.idle_timeout = 30s (got 1m)"},
    {"[storage]\nreconnect_initial = \"20s\"\n", "storage.reconnect_initial", 2, 21,
     "must not exceed storage.reconnect_max = 10s (got 20s)"},
    {"[storage]\nreconnect_max = \"50ms\"\n", "storage.reconnect_max", 2, 17,
     "must be at least storage.reconnect_initial = 100ms (got 50ms)"},
    {"[storage]\nreconnect_max = \"1s\"\nreconnect_initial = \"1m30s\"\n", "storage.reconnect_initial", 3, 21,
     "must not exceed storage.reconnect_max = 1s (got 1m30s)"},
    // a bulk action's budget within the hard cap
    {"[admin]\nmax_rows_per_action = 2000000\n", "admin.max_rows_per_action", 2, 23,
     "must not exceed admin.max_rows_per_action_hard = 1000000 (got 2000000)"},
    {"[admin]\nmax_rows_per_action_hard = 10\n", "admin.max_rows_per_action_hard", 2, 28,
     "must be at least admin.max_rows_per_action = 10000 (got 10)"},
    {"[admin]\nmax_rows_per_action = 0\n", "admin.max_rows_per_action", 2, 23, "must be at least 1 (got 0)"},
    // the admin API off loopback needs a token
    {"[admin]\nlisten = \"0.0.0.0:7401\"\n", "admin.listen", 2, 10,
     "is not a loopback address, so admin.token_file must be set"},
    {"[admin]\nlisten = \"[::]:7401\"\ntoken_file = \"\"\n", "admin.listen", 2, 10, "is not a loopback address"},
    // TLS: a certificate needs its key and the other way round; mutual TLS needs TLS.
    {"[server.tls]\ncert_file = \"/c.crt\"\n", "server.tls.cert_file", 2, 13,
     "is set, so server.tls.key_file must be set too"},
    {"[server.tls]\nkey_file = \"/c.key\"\n", "server.tls.key_file", 2, 12,
     "is set, so server.tls.cert_file must be set too"},
    {"[server.tls]\nclient_ca_file = \"/ca.crt\"\n", "server.tls.client_ca_file", 2, 18,
     "needs server.tls.cert_file and key_file"},
    {"[admin.tls]\ncert_file = \"/a.crt\"\n", "admin.tls.cert_file", 2, 13,
     "is set, so admin.tls.key_file must be set too"},
  };
  for (const auto& c : cases)
    check_single_error(c);
  // Equal values are fine where the rule allows them.
  for (std::string_view text :
       {"[server]\nmax_frame_bytes = 4096\nmax_outbound_bytes = 4096\n"sv,
        "[storage]\nreconnect_initial = \"10s\"\nreconnect_max = \"10s\"\n"sv,
        "[admin]\nlisten = \"0.0.0.0:7401\"\ntoken_file = \"/run/token\"\n"sv,
        "[admin]\nlisten = \"localhost:7401\"\n"sv, "[admin]\nlisten = \"[::1]:7401\"\n"sv,
        "[admin]\nlisten = \"127.1.2.3:7401\"\n"sv,
        "[server.tls]\ncert_file = \"/c.crt\"\nkey_file = \"/c.key\"\nclient_ca_file = \"/ca\"\n"sv}) {
    auto r = load(text);
    BOOST_TEST(r.ok(), "input: " << text << "errors:" << describe(r));
  }
  // A key that is already wrong on its own is not reported again by a cross-field rule.
  auto r = load("[server]\nheartbeat_interval = \"10\"\nidle_timeout = \"5s\"\n");
  BOOST_TEST_REQUIRE(r.errors.size() == 1u, "errors:" << describe(r));
  BOOST_TEST(r.errors[0].key == "server.heartbeat_interval");
}

BOOST_AUTO_TEST_CASE(storage_urls) {
  for (std::string_view url :
       {"sqlite://nodecoord.db"sv, "sqlite:///var/lib/nodecoord/nc.db"sv, "sqlite::memory:"sv,
        "postgresql://nc:secret@db.example.net:5432/nc?sslmode=require"sv, "postgres://localhost/nc"sv}) {
    auto r = load("[storage]\nurl = \"" + std::string{url} + "\"\n");
    BOOST_TEST(r.ok(), "url " << url << describe(r));
    BOOST_TEST(r.config.storage.url == url);
  }
  const std::vector<expected_error> cases = {
    {"[storage]\nurl = \"mysql://nc:hunter2@db/nc\"\n", "storage.url", 2, 7,
     "unsupported storage URL scheme \"mysql\""},
    {"[storage]\nurl = \"nodecoord.db\"\n", "storage.url", 2, 7, "expected \"sqlite://PATH\", \"sqlite::memory:\""},
    {"[storage]\nurl = \"sqlite://\"\n", "storage.url", 2, 7, "missing database path"},
    {"[storage]\nurl = \"sqlite:nodecoord.db\"\n", "storage.url", 2, 7, "unsupported storage URL"},
    {"[storage]\nurl = \"postgresq://u:pw@h/db\"\n", "storage.url", 2, 7,
     "unsupported storage URL scheme \"postgresq\""},
    {"[storage]\nurl = \"\"\n", "storage.url", 2, 7, "unsupported storage URL"},
  };
  for (const auto& c : cases)
    check_single_error(c);
  // A password in a mistyped URL is not echoed.
  auto r = load("[storage]\nurl = \"mysql://nc:hunter2@db/nc\"\n");
  BOOST_TEST_REQUIRE(r.errors.size() == 1u);
  BOOST_TEST(!contains(r.errors[0].message, "hunter2"));
}

BOOST_AUTO_TEST_CASE(unreadable_file) {
  const std::string missing = "/nonexistent-dir/nodecoord.toml";
  auto r = load_file(missing);
  BOOST_TEST_REQUIRE(r.errors.size() == 1u, "errors:" << describe(r));
  const auto& e = r.errors.front();
  BOOST_TEST(e.file == missing);
  BOOST_TEST(e.line == 0u);
  BOOST_TEST(e.column == 0u);
  BOOST_TEST(e.key == "");
  BOOST_TEST(contains(e.message, std::strerror(ENOENT)), e.message);
  BOOST_TEST(e.to_string() == missing + ": cannot read the configuration file: " + std::strerror(ENOENT));
  check_same(r.config, default_config());

  // A directory opens but cannot be read.
  temp_file f("");
  r = load_file(f.dir);
  BOOST_TEST_REQUIRE(r.errors.size() == 1u, "errors:" << describe(r));
  BOOST_TEST(r.errors[0].line == 0u);
  BOOST_TEST(contains(r.errors[0].message, std::strerror(EISDIR)), r.errors[0].message);

  // An endless file is refused instead of read forever.
  r = load_file("/dev/zero");
  BOOST_TEST_REQUIRE(r.errors.size() == 1u, "errors:" << describe(r));
  BOOST_TEST(r.errors[0].line == 0u);
  BOOST_TEST(contains(r.errors[0].message, std::strerror(EFBIG)), r.errors[0].message);
}

BOOST_AUTO_TEST_CASE(every_error_is_reported) {
  const std::string text = R"(# several mistakes
[server]
listen = "127.0.0.1:70000"
max_conections = 100
hello_timeout = 10
idle_timeout = "5s"

[storage]
url = "mysql://db"
batch_max = 0

[backfil]
batch_size = 5

[log]
level = "loud"
format = "json"
)";
  auto r = load(text);
  struct want {
    uint32_t line;
    uint32_t column;
    std::string key;
    std::string message;
  };
  const std::vector<want> expected = {
    {3, 10, "server.listen", "port must be between 0 and 65535"},
    {4, 1, "server.max_conections", "did you mean 'max_connections'?"},
    {5, 17, "server.hello_timeout", "expected a string like \"10s\", got integer"},
    {6, 16, "server.idle_timeout", "must be greater than server.heartbeat_interval"},
    {9, 7, "storage.url", "unsupported storage URL scheme"},
    {10, 13, "storage.batch_max", "must be at least 1"},
    {12, 2, "backfil", "did you mean 'backfill'?"},
    {16, 9, "log.level", "invalid log level \"loud\""},
  };
  BOOST_TEST_REQUIRE(r.errors.size() == expected.size(), "errors:" << describe(r));
  for (size_t i = 0; i < expected.size(); ++i) {
    BOOST_TEST_CONTEXT("error " << i << ": " << r.errors[i].to_string()) {
      BOOST_TEST(r.errors[i].file == "t.toml");
      BOOST_TEST(r.errors[i].line == expected[i].line);
      BOOST_TEST(r.errors[i].column == expected[i].column);
      BOOST_TEST(r.errors[i].key == expected[i].key);
      BOOST_TEST(contains(r.errors[i].message, expected[i].message));
    }
  }
  // Valid keys next to invalid ones still take effect; invalid ones keep their defaults.
  BOOST_TEST((r.config.log.format == log_format::json));
  BOOST_TEST((r.config.log.level == log_level::info));
  BOOST_TEST(r.config.server.listen.port == 7400);
  BOOST_TEST(r.config.storage.batch_max == nodecoord::defaults::batch_max);
}

// [checks.NAME] (issue 20): the only programs an operator may run on nodes.
BOOST_AUTO_TEST_CASE(checks_are_named_tables_with_an_argv) {
  auto r = load(R"([checks.disk]
argv = ["df", "-h", "/"]

[checks.uptime-1]
argv = ["uptime"]
timeout = "2s"
output_max = 0
)");
  BOOST_TEST_REQUIRE(r.ok(), "errors:" << describe(r));
  BOOST_TEST_REQUIRE(r.config.checks.size() == 2u);
  auto& disk = r.config.checks[0];
  BOOST_TEST(disk.name == "disk");
  BOOST_TEST((disk.argv == std::vector<std::string>{"df", "-h", "/"}));
  BOOST_TEST(disk.timeout.count() == 10000);
  BOOST_TEST(disk.output_max == 65536);
  auto& up = r.config.checks[1];
  BOOST_TEST(up.name == "uptime-1");
  BOOST_TEST(up.timeout.count() == 2000);
  BOOST_TEST(up.output_max == 0);
  BOOST_TEST(default_config().checks.empty());

  for (auto& x : std::vector<expected_error>{
         {"[checks.disk]\ntimeout = \"1s\"\n", "checks.disk.argv", 1, 1, "missing: a check names the program to run"},
         {"[checks.disk]\nargv = []\n", "checks.disk.argv", 2, 8, "expected a non-empty list of strings"},
         {"[checks.disk]\nargv = \"df -h\"\n", "checks.disk.argv", 2, 8, "expected a non-empty list of strings"},
         {"[checks.disk]\nargv = [\"df\", 1]\n", "checks.disk.argv[1]", 2, 15, "expected a string, got integer"},
         {"[checks.disk]\nargv = [\"\"]\n", "checks.disk.argv", 2, 8, "the program (the first element) must not be"},
         {"[checks.disk]\nargv = [\"df\"]\nshell = true\n", "checks.disk.shell", 3, 1, "unknown key 'shell'"},
         {"[checks.disk]\nargv = [\"df\"]\ntimeout = \"11m\"\n", "checks.disk.timeout", 1, 1, "from 1ms to 10m"},
         {"[checks.disk]\nargv = [\"df\"]\noutput_max = 600000\n", "checks.disk.output_max", 1, 1,
          "at most 524288 bytes"},
         {"[checks.disk]\nargv = [\"df\"]\noutput_max = -1\n", "checks.disk.output_max", 3, 14, "at least 0"},
         {"[checks.\"rm -rf\"]\nargv = [\"rm\"]\n", "checks.rm -rf", 1, 1, "invalid check name"},
         {"checks = 1\n", "checks", 1, 10, "expected a table of checks"},
       })
    check_single_error(x);
}

BOOST_AUTO_TEST_CASE(changed_checks_need_a_restart) {
  auto a = load("[checks.disk]\nargv = [\"df\"]\n").config;
  auto b = load("[checks.disk]\nargv = [\"df\", \"-h\"]\n").config;
  BOOST_TEST((restart_needed(a, a).empty()));
  BOOST_TEST((restart_needed(a, b) == std::vector<std::string>{"checks"}));
  BOOST_TEST((restart_needed(a, default_config()) == std::vector<std::string>{"checks"}));
}
