#include <boost/test/unit_test.hpp>

// The admin API end to end against bad input (issue 15), on both backends: ids in any case reach
// the right rows, bad parameters are a 400 and oversized bodies a 413, in the JSON envelope.

#include "admin_e2e_support.hpp"

using namespace admin_e2e;

// --- issue 15 part 5: ids in any case, bad parameters, oversized bodies (both backends) --------

namespace {

std::string upper(std::string s) {
  for (auto& ch : s)
    ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return s;
}

/// Answers a request with a failure for each of its attempts: they go back to partial.
void refuse_all(node_client& c, const json& req) {
  protocol::backfill_response resp;
  resp.request_id = req["request_id"].get<std::string>();
  for (auto& id : req["attempt_ids"])
    resp.results.push_back({id.get<std::string>(), false, 0, "disk gone"});
  c.send_line(protocol::encode_backfill_response(resp));
}

/// "sync_state | backfill_request_id | job status" of an attempt, read from the database: a
/// request the daemon made is pending with its job in the ledger; "stuck" would be pending with
/// no job ("NULL" as the job's status).
std::string backfill_view(daemon_under_test& d, const std::string& attempt) {
  auto rows = d.rows("SELECT a.sync_state, CAST(a.backfill_request_id AS TEXT), j.status FROM node_task_attempts a "
                     "LEFT JOIN jobs j ON j.id = a.backfill_request_id WHERE a.id = '"
                     + attempt + "'");
  return rows.empty() ? "(none)" : rows[0];
}

/// The daemon's request for `id` is live everywhere: the row is pending under `request`, the job
/// is running, the tracker holds it and the node got it. Then the node refuses it: partial again.
void requested_then_refused(daemon_under_test& d, node_client& c, const std::string& id, const std::string& request) {
  std::string view;
  BOOST_TEST(eventually([&] {
               view = backfill_view(d, id);
               return view == "pending_backfill | " + request + " | running";
             }),
             "attempt " << id << " is " << view << " (want pending_backfill | " << request << " | running)");
  auto in_flight = ok_data(http(d, "GET", "/api/overview"))["requests"]["in_flight"];
  BOOST_TEST(in_flight == 1, in_flight.dump());
  auto req = next_request(c);
  BOOST_TEST(req["request_id"] == request);
  BOOST_TEST(req["attempt_ids"] == json::array({id}));
  refuse_all(c, req);
  BOOST_TEST_REQUIRE(eventually([&] { return sync_state_of(d, id) == "partial"; }), backfill_view(d, id));
}

void ids_in_upper_case(daemon_under_test& d) {
  auto n = d.add_node("alpha");
  auto c = connect_and_hello(d, n);
  c.aside_types = {};
  // The reconnect trigger runs once after the welcome; with nothing stored it marks nothing.
  d.wait_reconnect_trigger(n.id);
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(new_uuid());
    c.send_line(protocol::encode_attempt({ids.back(), "task-" + std::to_string(i), "running", "", "", ""}));
  }
  c.heartbeat_roundtrip(1);
  BOOST_TEST_REQUIRE(
    eventually([&] { return d.count("SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'partial'") == 4; }));
  std::sort(ids.begin(), ids.end());
  const auto partial = ids[0], complete = ids[1], failed = ids[2];
  {
    auto s = d.db();
    *s << "UPDATE node_task_attempts SET sync_state = 'complete' WHERE id = '" + complete + "'";
    *s << "UPDATE node_task_attempts SET sync_state = 'failed', backfill_failures = 5 WHERE id = '" + failed + "'";
  }

  // Reading: the same answer in either case (an attempt that asks for nothing when read).
  auto lower_get = http(d, "GET", "/api/attempts/" + complete);
  auto upper_get = http(d, "GET", "/api/attempts/" + upper(complete));
  BOOST_TEST(lower_get.status == 200, lower_get.body);
  BOOST_TEST(upper_get.status == lower_get.status, upper_get.body);
  BOOST_TEST(upper_get.body == lower_get.body);
  auto unknown = new_uuid();
  BOOST_TEST(http(d, "GET", "/api/attempts/" + upper(unknown)).status == 404);

  // Reading a partial attempt (in upper case) is only a read: it asks the node for nothing, so
  // the on-demand request below is the first one (a live request would make it a conflict).
  auto read = ok_data(http(d, "GET", "/api/attempts/" + upper(partial)));
  BOOST_TEST(read["attempt"]["id"] == partial);
  BOOST_TEST(read["attempt"]["sync_state"] == "partial");
  BOOST_TEST(!read.contains("backfill"), read.dump());

  // On-demand backfill in upper case: 202 and a request that exists everywhere; asking again
  // while it is live is a conflict, as in lower case.
  auto posted = http(d, "POST", "/api/attempts/" + upper(partial) + "/backfill");
  BOOST_TEST_REQUIRE(posted.status == 202, posted.body);
  auto job_id = ok_data(posted)["job_id"].get<std::string>();
  auto again = http(d, "POST", "/api/attempts/" + upper(partial) + "/backfill");
  BOOST_TEST(again.status == 409, again.body);
  requested_then_refused(d, c, partial, job_id);
  // Once more in lower case: two backfill jobs for the cursors below.
  auto second = http(d, "POST", "/api/attempts/" + partial + "/backfill");
  BOOST_TEST_REQUIRE(second.status == 202, second.body);
  requested_then_refused(d, c, partial, ok_data(second)["job_id"].get<std::string>());
  BOOST_TEST(http(d, "POST", "/api/attempts/" + upper(unknown) + "/backfill").status == 404);
  BOOST_TEST(http(d, "POST", "/api/attempts/" + upper(complete) + "/backfill").status == 409);

  // Requeue in upper case.
  auto not_failed = http(d, "POST", "/api/attempts/" + upper(partial) + "/requeue");
  BOOST_TEST(not_failed.status == 409, not_failed.body);
  auto requeued = http(d, "POST", "/api/attempts/" + upper(failed) + "/requeue");
  BOOST_TEST_REQUIRE(requeued.status == 200, requeued.body);
  BOOST_TEST(ok_data(requeued)["attempt"]["id"] == failed);
  BOOST_TEST(sync_state_of(d, failed) == "partial");
  BOOST_TEST(http(d, "POST", "/api/attempts/" + upper(unknown) + "/requeue").status == 404);

  // Cursors in upper case page exactly as in lower case.
  auto after_lower = ok_data(http(d, "GET", "/api/attempts?after=" + ids[0]));
  auto after_upper = ok_data(http(d, "GET", "/api/attempts?after=" + upper(ids[0])));
  BOOST_TEST(after_lower["attempts"].size() == 3u);
  BOOST_TEST(after_upper == after_lower);
  auto page = ok_data(http(d, "GET", "/api/jobs?type=backfill&limit=1"));
  BOOST_TEST_REQUIRE(page["next"].is_string(), page.dump());
  auto cursor = page["next"].get<std::string>();
  auto before_lower = ok_data(http(d, "GET", "/api/jobs?type=backfill&before=" + cursor));
  auto comma = cursor.find(',');
  auto before_upper = ok_data(
    http(d, "GET", "/api/jobs?type=backfill&before=" + cursor.substr(0, comma + 1) + upper(cursor.substr(comma + 1))));
  BOOST_TEST(before_lower["jobs"].size() == 1u);
  BOOST_TEST(before_upper == before_lower);

  // Nothing is left half-requested.
  BOOST_TEST(d.count("SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'pending_backfill'") == 0);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM jobs WHERE status = 'running'") == 0);
  c.close();
  d.stop();
}

struct raw_answer {
  int status = 0;
  std::string headers;
  std::string body;
};

/// One raw HTTP exchange, so the request says exactly what the test wants (Content-Length
/// included); reads one answer (headers and its Content-Length of body).
raw_answer raw_exchange(uint16_t port, const std::string& head, const std::string& body) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  BOOST_TEST_REQUIRE(fd >= 0);
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } guard{fd};
  timeval tv{20, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_TEST_REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  auto out = head + "\r\n\r\n" + body;
  BOOST_TEST_REQUIRE(::send(fd, out.data(), out.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(out.size()));
  std::string in;
  char buf[4096];
  raw_answer a;
  for (;;) {
    auto split = in.find("\r\n\r\n");
    if (split != std::string::npos) {
      a.headers = in.substr(0, split);
      auto at = a.headers.find("Content-Length: ");
      size_t length = at == std::string::npos ? 0 : std::stoul(a.headers.substr(at + 16));
      if (in.size() >= split + 4 + length) {
        a.body = in.substr(split + 4, length);
        break;
      }
    }
    auto n = ::recv(fd, buf, sizeof buf, 0);
    BOOST_TEST_REQUIRE(n > 0, "the connection ended before a whole answer: " << in);
    in.append(buf, static_cast<size_t>(n));
  }
  BOOST_TEST_REQUIRE(a.headers.rfind("HTTP/1.1 ", 0) == 0, a.headers);
  a.status = std::stoi(a.headers.substr(9, 3));
  return a;
}

/// `d`'s configuration with `line` added to its [admin] table (before it starts).
void admin_setting(daemon_under_test& d, const std::string& line) {
  std::ifstream in(d.config());
  std::stringstream text;
  text << in.rdbuf();
  auto t = text.str();
  auto at = t.find("[admin]\n");
  BOOST_TEST_REQUIRE(at != std::string::npos);
  t.insert(at + 8, line + "\n");
  std::ofstream(d.config()) << t;
}

void bad_parameters_and_oversized_bodies(daemon_under_test& d) {
  admin_setting(d, "max_body_bytes = 4096");
  d.start();
  d.add_node("alpha");
  // A junk job id in the jobs cursor: 400 naming the parameter (it was a 500).
  const std::string t0 = "2026-01-09T12:00:00.000Z";
  const std::string id = new_uuid();
  struct bad {
    std::string method, target, name;
  };
  std::vector<bad> cases = {
    {"GET", "/api/jobs?before=" + t0 + ",junk", "before"},
    {"GET", "/api/jobs?before=" + t0 + ",", "before"},
    {"GET", "/api/jobs?before=" + t0 + "," + id + "'", "before"},
    {"GET", "/api/jobs?before=9999-99-99T00:00:00.000Z," + id, "before"},
    {"GET", "/api/jobs?limit=99999999999999999999", "limit"},
    {"GET", "/api/jobs?limit=-1", "limit"},
    {"GET", "/api/jobs?status=failed,", "status"},
    {"GET", "/api/jobs?node=", "node"},
    {"GET", "/api/attempts?after=", "after"},
    {"GET", "/api/attempts?after=junk", "after"},
    {"GET", "/api/attempts?node=", "node"},
    {"DELETE", "/api/jobs?older_than=9223372036854775807ms", "older_than"},
    {"DELETE", "/api/jobs?older_than=99999d", "older_than"},
    {"DELETE", "/api/jobs?older_than=-7d", "older_than"},
    {"POST", "/api/bundle?dry_run=", "dry_run"},
  };
  for (auto& c : cases) {
    auto a = http(d, c.method, c.target);
    BOOST_TEST(a.status == 400, c.method << " " << c.target << ": " << a.status << " " << a.body);
    BOOST_TEST_REQUIRE(!a.j.is_discarded(), c.target << ": not JSON: " << a.body);
    BOOST_TEST(a.j["ok"] == false, a.body);
    BOOST_TEST(a.j["error"]["code"] == "bad_request", a.body);
    BOOST_TEST((a.j["error"]["message"].is_string()
                && a.j["error"]["message"].get<std::string>().find(c.name) != std::string::npos),
               a.body);
  }
  // The daemon is fine afterwards: a well-formed cursor and a prune with a sane age work.
  BOOST_TEST(http(d, "GET", "/api/jobs?before=" + t0 + "," + id).status == 200);
  BOOST_TEST(http(d, "DELETE", "/api/jobs?older_than=36500d").status == 200);

  // A body over admin.max_body_bytes (4096 here): 413 in the envelope, the limit in its message.
  const uint64_t limit = 4096;
  auto bundle_of = [](size_t size) {
    std::string b = "{\"type\":\"manifest\"}\n";
    return b + std::string(size - b.size(), 'x');
  };
  for (auto path : {"/api/bundle?dry_run=1", "/api/nodes"}) {
    auto a = raw_exchange(d.admin_port(),
                          std::string("POST ") + path
                            + " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "Content-Type: application/x-ndjson\r\nContent-Length: "
                            + std::to_string(limit + 1),
                          bundle_of(limit + 1));
    BOOST_TEST(a.status == 413, path << ": " << a.headers << "\n" << a.body);
    BOOST_TEST(a.headers.find("Content-Type: application/json") != std::string::npos, a.headers);
    auto body = json::parse(a.body, nullptr, false);
    BOOST_TEST_REQUIRE(!body.is_discarded(), path << ": not JSON: '" << a.body << "'");
    BOOST_TEST(body["ok"] == false);
    BOOST_TEST(body["error"]["code"] == "payload_too_large", a.body);
    auto message = body["error"]["message"].get<std::string>();
    BOOST_TEST(message.find("limit of 4096 bytes") != std::string::npos, message);
    BOOST_TEST(body["error"]["detail"]["limit_bytes"] == limit, a.body);
  }
  // At the limit the body is read (and this one is not a bundle: 400 naming its line).
  auto at_limit =
    raw_exchange(d.admin_port(),
                 "POST /api/bundle?dry_run=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\n"
                 "Content-Length: "
                   + std::to_string(limit),
                 bundle_of(limit));
  BOOST_TEST(at_limit.status == 400, at_limit.headers << "\n" << at_limit.body);
  BOOST_TEST(at_limit.body.find("line ") != std::string::npos, at_limit.body);
  // nodecoordctl shows the message.
  temp_dir files("nodecoord-big");
  auto big = files.write("big.ndjson", bundle_of(limit + 100));
  auto refused = ctl_any({"--admin", d.admin_url(), "bundle", "import", big});
  BOOST_TEST(refused.code != 0);
  BOOST_TEST(refused.err.find("4096 bytes") != std::string::npos, refused.err);
  // The API's own errors keep their bodies (the error handler fills only empty ones).
  auto missing = http(d, "GET", "/api/nodes/ghost");
  BOOST_TEST(missing.status == 404);
  BOOST_TEST(missing.j["error"]["message"] == "no node named 'ghost'", missing.body);
  BOOST_TEST(http(d, "GET", "/api/nodes").status == 200);
  d.stop();
}

} // namespace

BOOST_AUTO_TEST_CASE(upper_case_ids_sqlite) {
  daemon_under_test d(base_settings(), "", backfill_toml);
  ids_in_upper_case(d);
}

BOOST_AUTO_TEST_CASE(upper_case_ids_postgresql) {
  test_database pg(storage::backend::postgresql);
  daemon_under_test d(base_settings(), pg.url(), backfill_toml);
  ids_in_upper_case(d);
}

BOOST_AUTO_TEST_CASE(bad_parameters_are_400_and_oversized_bodies_413_in_the_envelope_sqlite) {
  daemon_under_test d(base_settings(), "", backfill_toml);
  bad_parameters_and_oversized_bodies(d);
}

BOOST_AUTO_TEST_CASE(bad_parameters_are_400_and_oversized_bodies_413_in_the_envelope_postgresql) {
  test_database pg(storage::backend::postgresql);
  daemon_under_test d(base_settings(), pg.url(), backfill_toml);
  bad_parameters_and_oversized_bodies(d);
}
