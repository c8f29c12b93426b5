#pragma once

// Shared by the admin_e2e_test sources: the backfill settings, HTTP answers, nodecoordctl runs and
// a reader of /metrics.

#include "common/ids.hpp"
#include "e2e_daemon.hpp"
#include "e2e_node.hpp"
#include "node_client.hpp"
#include "protocol/codec.hpp"
#include "test_db.hpp"

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

using namespace nodecoord;
using namespace nodecoord::test;

namespace admin_e2e {

inline const std::string backfill_toml = "[backfill]\n"
                                         "reconnect_rate = 1000\n"
                                         "request_timeout = \"60s\"\n"
                                         "reconcile_interval = \"1h\"\n";

struct http_answer {
  int status = 0;
  std::string body;
  json j; // parsed body (discarded if not JSON)
};

/// One request to the daemon's admin API; fails the test if there is no answer at all.
inline http_answer http(daemon_under_test& d, const std::string& method, const std::string& path,
                        const std::string& body = "", const std::string& token = "") {
  httplib::Client cli("127.0.0.1", d.admin_port());
  cli.set_read_timeout(60, 0);
  httplib::Headers headers;
  if (!token.empty())
    headers.emplace("Authorization", "Bearer " + token);
  httplib::Result res{nullptr, httplib::Error::Unknown};
  if (method == "GET")
    res = cli.Get(path, headers);
  else if (method == "POST")
    res = cli.Post(path, headers, body, "application/json");
  else if (method == "DELETE")
    res = cli.Delete(path, headers, std::string{}, "application/json");
  BOOST_TEST_REQUIRE(static_cast<bool>(res),
                     method << " " << path << ": no answer (" << httplib::to_string(res.error()) << ")");
  http_answer a{res->status, res->body, json::parse(res->body, nullptr, false)};
  return a;
}

inline json ok_data(const http_answer& a) {
  BOOST_TEST_REQUIRE((!a.j.is_discarded() && a.j.value("ok", false)), "status " << a.status << ": " << a.body);
  return a.j["data"];
}

using ctl_result = program_result;

/// nodecoordctl with any exit code (d.ctl requires 0).
inline ctl_result ctl_any(const std::vector<std::string>& args, environment env = clean_env()) {
  child_process c(ctl_path, args, std::move(env));
  ctl_result r;
  r.code = c.wait_exit(ctl_bound);
  r.out = c.stdout_text();
  r.err = c.stderr_text();
  return r;
}

/// Answers a request with a failure for `id`: the attempt goes back to partial.
inline void refuse(node_client& c, const json& req, const std::string& id) {
  protocol::backfill_response resp;
  resp.request_id = req["request_id"].get<std::string>();
  resp.results.push_back({id, false, 0, "disk gone"});
  c.send_line(protocol::encode_backfill_response(resp));
}

inline std::string sync_state_of(daemon_under_test& d, const std::string& attempt) {
  auto rows = d.rows("SELECT sync_state FROM node_task_attempts WHERE id = '" + attempt + "'");
  return rows.empty() ? "(none)" : rows[0];
}

/// The value of one sample line of /metrics ("name{labels} value"), or -1.
inline double metric(const std::string& text, const std::string& sample) {
  auto at = text.find("\n" + sample + " ");
  if (at == std::string::npos)
    return -1;
  auto start = at + sample.size() + 2;
  return std::stod(text.substr(start, text.find('\n', start) - start));
}

} // namespace admin_e2e
