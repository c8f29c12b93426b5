#pragma once

// Shared by the config_test sources: loading text, expected errors with their positions, and
// temporary files.

#include "config/config.hpp"
#include "config/defaults.hpp"
#include "config/duration.hpp"
#include "config/reload.hpp"
#include "config/toml_guard.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

using namespace nodecoord::config;
using namespace std::chrono_literals;
using namespace std::literals;

namespace config_test {

inline const std::string example_path = NODECOORD_SOURCE_DIR "/config/nodecoord.example.toml";

inline std::string describe(const load_result& r) {
  std::string out;
  for (const auto& e : r.errors)
    out += "\n  " + e.to_string();
  return out.empty() ? " (no errors)" : out;
}

inline bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

inline void check_same(const daemon_config& a, const daemon_config& b) {
  BOOST_TEST(a.server.listen.host == b.server.listen.host);
  BOOST_TEST(a.server.listen.port == b.server.listen.port);
  BOOST_TEST(a.server.max_connections == b.server.max_connections);
  BOOST_TEST(a.server.max_handshakes == b.server.max_handshakes);
  BOOST_TEST(a.server.max_frame_bytes == b.server.max_frame_bytes);
  BOOST_TEST(a.server.max_outbound_bytes == b.server.max_outbound_bytes);
  BOOST_TEST(a.server.hello_timeout.count() == b.server.hello_timeout.count());
  BOOST_TEST(a.server.heartbeat_interval.count() == b.server.heartbeat_interval.count());
  BOOST_TEST(a.server.idle_timeout.count() == b.server.idle_timeout.count());
  BOOST_TEST(a.server.max_protocol_errors == b.server.max_protocol_errors);
  BOOST_TEST(a.server.shutdown_timeout.count() == b.server.shutdown_timeout.count());
  BOOST_TEST(a.server.tls.cert_file == b.server.tls.cert_file);
  BOOST_TEST(a.server.tls.key_file == b.server.tls.key_file);
  BOOST_TEST(a.server.tls.client_ca_file == b.server.tls.client_ca_file);
  BOOST_TEST(a.server.tls.min_version == b.server.tls.min_version);
  BOOST_TEST(a.server.tls.required == b.server.tls.required);
  BOOST_TEST(a.storage.url == b.storage.url);
  BOOST_TEST(a.storage.batch_max == b.storage.batch_max);
  BOOST_TEST(a.storage.max_queued_bytes == b.storage.max_queued_bytes);
  BOOST_TEST(a.storage.max_queued_frames == b.storage.max_queued_frames);
  BOOST_TEST(a.storage.connect_timeout.count() == b.storage.connect_timeout.count());
  BOOST_TEST(a.storage.reconnect_initial.count() == b.storage.reconnect_initial.count());
  BOOST_TEST(a.storage.reconnect_max.count() == b.storage.reconnect_max.count());
  BOOST_TEST(a.backfill.reconcile_interval.count() == b.backfill.reconcile_interval.count());
  BOOST_TEST(a.backfill.batch_size == b.backfill.batch_size);
  BOOST_TEST(a.backfill.request_timeout.count() == b.backfill.request_timeout.count());
  BOOST_TEST(a.backfill.max_failures == b.backfill.max_failures);
  BOOST_TEST(a.backfill.reconnect_rate == b.backfill.reconnect_rate);
  BOOST_TEST(a.backfill.max_inflight_per_node == b.backfill.max_inflight_per_node);
  BOOST_TEST(a.admin.listen.host == b.admin.listen.host);
  BOOST_TEST(a.admin.listen.port == b.admin.listen.port);
  BOOST_TEST(a.admin.token_file == b.admin.token_file);
  BOOST_TEST(a.admin.max_body_bytes == b.admin.max_body_bytes);
  BOOST_TEST(a.admin.max_rows_per_action == b.admin.max_rows_per_action);
  BOOST_TEST(a.admin.max_rows_per_action_hard == b.admin.max_rows_per_action_hard);
  BOOST_TEST(a.admin.allowed_hosts == b.admin.allowed_hosts, boost::test_tools::per_element());
  BOOST_TEST(a.admin.tls.cert_file == b.admin.tls.cert_file);
  BOOST_TEST(a.admin.tls.key_file == b.admin.tls.key_file);
  BOOST_TEST(a.admin.tls.client_ca_file == b.admin.tls.client_ca_file);
  BOOST_TEST(a.admin.tls.min_version == b.admin.tls.min_version);
  BOOST_TEST(to_string(a.log.level) == to_string(b.log.level));
  BOOST_TEST(to_string(a.log.format) == to_string(b.log.format));
  BOOST_TEST_REQUIRE(a.checks.size() == b.checks.size());
  for (size_t i = 0; i < a.checks.size(); ++i) {
    BOOST_TEST(a.checks[i].name == b.checks[i].name);
    BOOST_TEST(a.checks[i].argv == b.checks[i].argv, boost::test_tools::per_element());
    BOOST_TEST(a.checks[i].timeout.count() == b.checks[i].timeout.count());
    BOOST_TEST(a.checks[i].output_max == b.checks[i].output_max);
  }
}

/// One expected error: the file must produce exactly this one.
struct expected_error {
  std::string text;
  std::string key;
  uint32_t line;
  uint32_t column;
  std::string message; // a part of the message
};

inline void check_single_error(const expected_error& x) {
  BOOST_TEST_CONTEXT("input:\n" << x.text) {
    auto r = load_string(x.text, "t.toml");
    BOOST_TEST(r.errors.size() == 1u, "errors:" << describe(r));
    if (r.errors.size() != 1)
      return;
    const auto& e = r.errors.front();
    BOOST_TEST(e.file == "t.toml");
    BOOST_TEST(e.key == x.key);
    BOOST_TEST(e.line == x.line);
    BOOST_TEST(e.column == x.column);
    BOOST_TEST(contains(e.message, x.message), "message: " << e.message << "\nexpected to contain: " << x.message);
    BOOST_TEST(!r.ok());
  }
}

inline load_result load(std::string_view text) { return load_string(text, "t.toml"); }

/// A file in a fresh temporary directory, removed afterwards.
struct temp_file {
  std::string dir;
  std::string path;
  explicit temp_file(const std::string& content) {
    char templ[] = "/tmp/config_test.XXXXXX";
    const char* made = mkdtemp(templ);
    BOOST_TEST_REQUIRE(made != nullptr);
    dir = made;
    path = dir + "/nodecoord.toml";
    std::ofstream out(path);
    out << content;
  }
  ~temp_file() {
    std::remove(path.c_str());
    rmdir(dir.c_str());
  }
};

} // namespace config_test
