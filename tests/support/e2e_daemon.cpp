#include "e2e_daemon.hpp"

namespace nodecoord::test {

const std::string daemon_path = NODECOORDD_PATH;
const std::string ctl_path = NODECOORDCTL_PATH;

daemon_under_test::daemon_under_test(const settings& server, const std::string& storage_url,
                                     const std::string& extra_toml, const settings& admin)
  : dir_("nodecoord-e2e") {
  std::string text = "[server]\n";
  for (auto& [k, v] : server)
    text += k + " = " + v + "\n";
  text += "[admin]\nlisten = \"127.0.0.1:0\"\n";
  for (auto& [k, v] : admin)
    text += k + " = " + v + "\n";
  text += "[log]\nlevel = \"debug\"\n";
  if (!storage_url.empty())
    text += "[storage]\nurl = \"" + storage_url + "\"\n";
  text += extra_toml;
  config_ = dir_.write("nodecoord.toml", text);
  url_ = storage::parse_storage_url(storage_url.empty() ? "sqlite://nodecoord.db" : storage_url, dir_.path(), 5s);
}

void daemon_under_test::start() {
  if (proc_ && !proc_->reaped())
    return;
  proc_ = std::make_unique<child_process>(
    daemon_path, std::vector<std::string>{"--config", config_, "--state-dir", dir_.path()}, clean_env());
  // "nodecoordd ready" is logged after "listening for nodes" and "admin listening", so both
  // lines are complete.
  BOOST_TEST_REQUIRE(proc_->wait_for_stderr("nodecoordd ready", startup_bound),
                     "the daemon did not become ready; stderr:\n"
                       << proc_->stderr_tail());
  auto err = proc_->stderr_text();
  port_ = port_from_log(err, "listening for nodes address=127.0.0.1:");
  admin_port_ = port_from_log(err, "admin listening address=127.0.0.1:");
}

void daemon_under_test::stop() {
  proc_->send_signal(SIGTERM);
  int code = proc_->wait_exit(exit_bound);
  // (A sanitizer build reports leaks and errors at exit with exit code 1: name them first.)
  BOOST_TEST(code == 0, "exit code " << code << "; sanitizer summary:" << lines_with(proc_->stderr_text(), "SUMMARY: ")
                                     << "\nstderr:\n"
                                     << proc_->stderr_tail());
}

json daemon_under_test::ctl(std::vector<std::string> args) {
  start();
  std::vector<std::string> argv{"--admin", admin_url(), "--json"};
  argv.insert(argv.end(), args.begin(), args.end());
  child_process c(ctl_path, argv, clean_env());
  int code = c.wait_exit(ctl_bound);
  BOOST_TEST_REQUIRE(code == 0, "nodecoordctl exited with " << code << "; stderr:\n" << c.stderr_text());
  auto out = json::parse(c.stdout_text(), nullptr, false);
  BOOST_TEST_REQUIRE(!out.is_discarded(), "nodecoordctl printed no JSON: " << c.stdout_text());
  return out;
}

node_info daemon_under_test::add_node(const std::string& name) {
  auto out = ctl({"node", "add", name});
  node_info n{name, out.at("node").at("id").get<std::string>(), out.at("key").get<std::string>()};
  BOOST_TEST_REQUIRE(is_uuid(n.id), out.dump());
  BOOST_TEST_REQUIRE(parse_api_key(n.key).has_value(), out.dump());
  return n;
}

std::unique_ptr<soci::session> daemon_under_test::db() const {
  if (url_.kind == storage::backend::sqlite)
    return std::make_unique<soci::session>(soci::sqlite3, url_.connect_string);
  return std::make_unique<soci::session>(soci::postgresql, url_.connect_string);
}

node_row daemon_under_test::node(const std::string& name) const {
  node_row r;
  auto s = db();
  // Times as text on either backend (PostgreSQL's are TIMESTAMPTZ).
  storage::query(*s, "SELECT CAST(id AS TEXT), status, session_epoch, CAST(connected_at AS TEXT), "
                     "CAST(disconnected_at AS TEXT), disconnect_reason, CAST(disabled_at AS TEXT) "
                     "FROM nodes WHERE name = :n")
    .bind("n", name)
    .each([&](const soci::row& row) {
      r.found = true;
      r.id = storage::col_str(row, 0);
      r.status = storage::col_str(row, 1);
      r.epoch = storage::col_int(row, 2);
      r.connected_at = storage::col_str(row, 3);
      r.disconnected_at = storage::col_str(row, 4);
      r.disconnect_reason = storage::col_str(row, 5);
      r.disabled_at = storage::col_str(row, 6);
    });
  return r;
}

int64_t daemon_under_test::count(const std::string& sql) const {
  int64_t n = -1;
  auto s = db();
  storage::query(*s, sql).each([&](const soci::row& row) { n = storage::col_int(row, 0); });
  return n;
}

std::vector<std::string> daemon_under_test::rows(const std::string& sql) const {
  std::vector<std::string> out;
  auto s = db();
  storage::query(*s, sql).each([&](const soci::row& row) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += i ? " | " : "";
      line += row.get_indicator(i) == soci::i_null ? "NULL" : storage::col_str(row, i);
    }
    out.push_back(std::move(line));
  });
  return out;
}

void daemon_under_test::wait_reconnect_trigger(const std::string& node_id) {
  BOOST_TEST_REQUIRE(
    proc_->wait_for_stderr("trigger=reconnect node_id=" + node_id + " status=nothing_to_mark", frame_bound),
    "the reconnect trigger did not run for " << node_id << "; stderr:\n"
                                             << proc_->stderr_tail());
}

node_row daemon_under_test::wait_offline(const std::string& name, const std::string& reason) {
  return wait_node(
    name, [&](const node_row& r) { return r.status == "offline" && r.disconnect_reason == reason; },
    ("offline with reason " + reason).c_str());
}

uint16_t daemon_under_test::port_from_log(const std::string& err, const std::string& needle) {
  auto at = err.find(needle);
  BOOST_TEST_REQUIRE(at != std::string::npos, "no '" << needle << "' in stderr:\n" << err);
  auto digits = at + needle.size();
  auto end = err.find_first_not_of("0123456789", digits);
  auto port = std::stoul(err.substr(digits, end - digits));
  BOOST_TEST_REQUIRE((port > 0 && port < 65536), "bad port in: " << err.substr(at, 80));
  return static_cast<uint16_t>(port);
}

environment clean_env() {
  return {
    {"NOTIFY_SOCKET", std::nullopt},   {"WATCHDOG_USEC", std::nullopt},  {"WATCHDOG_PID", std::nullopt},
    {"STATE_DIRECTORY", std::nullopt}, {"JOURNAL_STREAM", std::nullopt}, {"LISTEN_FDS", std::nullopt},
    {"LISTEN_PID", std::nullopt},      {"LISTEN_FDNAMES", std::nullopt},
  };
}

program_result run_with_stdin(const std::string& program, const std::vector<std::string>& args,
                              const std::string& input, std::chrono::milliseconds bound) {
  temp_dir in("stdin");
  auto file = in.write("stdin", input);
  std::vector<std::string> argv{"-c", "exec \"$0\" \"$@\" < " + file, program};
  argv.insert(argv.end(), args.begin(), args.end());
  child_process c("/bin/sh", argv, clean_env());
  program_result r;
  r.code = c.wait_exit(bound);
  r.out = c.stdout_text();
  r.err = c.stderr_text();
  return r;
}

bool is_wire_time(const nlohmann::json& v) {
  if (!v.is_string())
    return false;
  const std::string t = v.get<std::string>();
  const std::string_view shape = "dddd-dd-ddTdd:dd:dd.dddZ";
  if (t.size() != shape.size())
    return false;
  for (std::size_t i = 0; i < t.size(); ++i)
    if (shape[i] == 'd' ? !(t[i] >= '0' && t[i] <= '9') : t[i] != shape[i])
      return false;
  return true;
}

std::string lines_with(const std::string& text, std::string_view needle) {
  std::string out;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string::npos)
      end = text.size();
    std::string_view line(text.data() + start, end - start);
    if (line.find(needle) != std::string_view::npos)
      out += "\n  " + std::string(line);
    start = end + 1;
  }
  return out.empty() ? " (none)" : out;
}

std::ostream& operator<<(std::ostream& os, const node_row& r) {
  if (!r.found)
    return os << "(no such node)";
  return os << "{status=" << r.status << " epoch=" << r.epoch << " connected_at=" << r.connected_at
            << " disconnected_at=" << r.disconnected_at << " disconnect_reason=" << r.disconnect_reason
            << " disabled_at=" << r.disabled_at << "}";
}

settings base_settings() {
  return {
    {"listen", "\"127.0.0.1:0\""}, {"hello_timeout", "\"10s\""},   {"heartbeat_interval", "\"200ms\""},
    {"idle_timeout", "\"30s\""},   {"max_frame_bytes", "1048576"}, {"max_protocol_errors", "3"},
    {"max_connections", "100"},
  };
}

settings with(settings s, const settings& changes) {
  for (auto& [k, v] : changes)
    s[k] = v;
  return s;
}

} // namespace nodecoord::test
