// The admin API (admin/api.hpp) against a fake backend: every route, every error status, the
// parameter checks, the token, the overview's cache and missing parts, readiness and metrics.
// No actors and no sockets; the end-to-end wiring is in admin_e2e_test.
#define BOOST_TEST_MODULE admin_api_test
#include <boost/test/unit_test.hpp>

#include "admin_api_fixture.hpp"

#include <cstdlib>
#include <filesystem>
#include <set>

using namespace admin_api_test;

BOOST_FIXTURE_TEST_SUITE(admin_api, fixture)

BOOST_AUTO_TEST_CASE(health_page_and_unknown_routes) {
  auto h = call("GET", "/healthz");
  BOOST_TEST(h.status == 200);
  BOOST_TEST(data(h)["status"] == "alive");
  auto page = call("GET", "/");
  BOOST_TEST(page.status == 200);
  BOOST_TEST(page.content_type.rfind("text/html", 0) == 0u);
  BOOST_TEST(page.body == "<html>dash</html>");
  BOOST_TEST(error(call("GET", "/api/nothing"), 404) == "not_found");
  BOOST_TEST(error(call("GET", "/nothing"), 404) == "not_found");
  BOOST_TEST(error(call("PUT", "/api/nodes"), 405) == "method_not_allowed");
  BOOST_TEST(error(call("GET", "/api/nodes/a/disable"), 405) == "method_not_allowed");
  BOOST_TEST(error(call("POST", "/api/overview"), 405) == "method_not_allowed");
}

// Fuzzing finding 2 (issue 15): an error message quoting bytes that are not UTF-8 (a decoded
// path or parameter) threw while being encoded, and the request answered 500 with no body.
BOOST_AUTO_TEST_CASE(errors_quoting_invalid_utf8_are_still_json) {
  BOOST_TEST(error(call("GET", "/\xff"), 404) == "not_found");
  BOOST_TEST(error(call("GET", "/api/nodes/\xff\xfe"), 404) != "");
  BOOST_TEST(error(call("GET", "/api/attempts?sync_state=\xff"), 400) == "bad_request");
  BOOST_TEST(error(call("\xff", "/api/nodes"), 405) == "method_not_allowed");
}

BOOST_AUTO_TEST_CASE(token_required_when_configured) {
  auto o = opts();
  o.token = "s3cret-token-0123456789";
  api with_token{b, o};
  http_request r;
  r.method = "GET";
  r.path = "/api/overview";
  auto code_of = [](const http_response& x) { return json::parse(x.body)["error"]["code"].get<std::string>(); };
  auto none = with_token.handle(r);
  BOOST_TEST(none.status == 401);
  BOOST_TEST(code_of(none) == "unauthorized");
  r.authorization = "Bearer wrong";
  auto wrong = with_token.handle(r);
  BOOST_TEST(wrong.status == 403);
  BOOST_TEST(code_of(wrong) == "forbidden");
  r.authorization = "Basic czNjcmV0";
  BOOST_TEST(with_token.handle(r).status == 403);
  r.authorization = "Bearer s3cret-token-012345678"; // a prefix of the token
  BOOST_TEST(with_token.handle(r).status == 403);
  r.authorization = "Bearer s3cret-token-0123456789";
  BOOST_TEST(with_token.handle(r).status == 200);
  r.authorization = "bearer s3cret-token-0123456789"; // the scheme is case-insensitive
  BOOST_TEST(with_token.handle(r).status == 200);
  // Metrics and readiness are behind the token too; liveness and the page are not.
  r.authorization.clear();
  r.path = "/metrics";
  BOOST_TEST(with_token.handle(r).status == 401);
  r.path = "/readyz";
  BOOST_TEST(with_token.handle(r).status == 401);
  r.path = "/healthz";
  BOOST_TEST(with_token.handle(r).status == 200);
  r.path = "/";
  BOOST_TEST(with_token.handle(r).status == 200);
  // A rotated token (SIGHUP): the old one is refused at once; none at all opens the API.
  r.path = "/api/overview";
  with_token.set_token("rotated-token-abcdefghijkl");
  r.authorization = "Bearer s3cret-token-0123456789";
  BOOST_TEST(with_token.handle(r).status == 403);
  r.authorization = "Bearer rotated-token-abcdefghijkl";
  BOOST_TEST(with_token.handle(r).status == 200);
  with_token.set_token("");
  r.authorization.clear();
  BOOST_TEST(with_token.handle(r).status == 200);
}

BOOST_AUTO_TEST_CASE(nodes_create_show_and_act) {
  auto created = call("POST", "/api/nodes", R"({"name":"alpha"})");
  BOOST_TEST(created.status == 201);
  auto d = data(created);
  BOOST_TEST(d["node"]["name"] == "alpha");
  BOOST_TEST(d["key"].get<std::string>().rfind("nck_", 0) == 0u);
  BOOST_TEST(error(call("POST", "/api/nodes", R"({"name":"alpha"})"), 409) == "conflict");
  BOOST_TEST(error(call("POST", "/api/nodes", R"({"name":"bad name"})"), 400) == "bad_request");
  BOOST_TEST(error(call("POST", "/api/nodes", R"({"name":""})"), 400) == "bad_request");
  BOOST_TEST(error(call("POST", "/api/nodes", "not json"), 400) == "bad_request");
  BOOST_TEST(error(call("POST", "/api/nodes", R"(["alpha"])"), 400) == "bad_request");
  BOOST_TEST(error(call("POST", "/api/nodes", R"({"name":7})"), 400) == "bad_request");
  BOOST_TEST(error(call("POST", "/api/nodes", R"({"name":"b","extra":1})"), 400) == "bad_request");

  b.live.push_back({b.nodes_by_name["alpha"].id, "alpha", 3, "", ""});
  b.tracker_now.requests.push_back({"r1", b.nodes_by_name["alpha"].id, 3, "reconnect", true, 2, 1500});
  auto list = data(call("GET", "/api/nodes"));
  BOOST_TEST_REQUIRE(list["nodes"].size() == 1u);
  BOOST_TEST(list["nodes"][0]["connected"] == true);
  BOOST_TEST(list["nodes"][0]["in_flight"] == 1);
  BOOST_TEST(list["nodes"][0]["connected_at"].is_null());
  BOOST_TEST(list["next"].is_null());
  BOOST_TEST(b.live_asked_among, "a page asks the registry about its own nodes, not the fleet");
  auto shown = data(call("GET", "/api/nodes/alpha"));
  BOOST_TEST(shown["node"]["name"] == "alpha");
  BOOST_TEST(error(call("GET", "/api/nodes/nope"), 404) == "not_found");

  auto disabled = data(call("POST", "/api/nodes/alpha/disable"));
  BOOST_TEST(disabled["node"]["status"] == "disabled");
  BOOST_TEST(disabled["closed_session"] == true);
  BOOST_TEST(b.closed == std::vector<std::string>{"alpha"});
  BOOST_TEST(data(call("POST", "/api/nodes/alpha/enable"))["node"]["status"] == "offline");
  BOOST_TEST(b.key_sets.empty());
  auto rotated = data(call("POST", "/api/nodes/alpha/rotate-key"));
  BOOST_TEST(b.key_sets == std::vector<std::string>{"alpha"});
  BOOST_TEST(rotated["key"].get<std::string>().rfind("nck_", 0) == 0u);
  BOOST_TEST(rotated["key"] != d["key"]);
  for (auto action : {"disable", "enable", "rotate-key"})
    BOOST_TEST(error(call("POST", std::string("/api/nodes/nope/") + action), 404) == "not_found");
  BOOST_TEST(error(call("POST", "/api/nodes/alpha/explode"), 404) == "not_found");
}

BOOST_AUTO_TEST_CASE(nodes_list_pages_by_name_and_filters_by_status) {
  for (auto n : {"delta", "alpha", "echo", "charlie", "bravo"})
    data(call("POST", "/api/nodes", json{{"name", n}}.dump()));
  data(call("POST", "/api/nodes/charlie/disable"));
  b.live.push_back({b.nodes_by_name["echo"].id, "echo", 1, "", ""});
  std::vector<std::string> seen;
  std::string after;
  int pages = 0;
  for (;;) {
    auto page = data(call("GET", "/api/nodes?limit=2" + (after.empty() ? "" : "&after=" + after)));
    ++pages;
    for (auto& n : page["nodes"]) {
      seen.push_back(n["name"]);
      BOOST_TEST(n["connected"] == (n["name"] == "echo"));
    }
    if (page["next"].is_null())
      break;
    BOOST_TEST(page["next"] == page["nodes"].back()["name"]);
    after = page["next"];
  }
  BOOST_TEST(pages == 3);
  BOOST_TEST(seen == (std::vector<std::string>{"alpha", "bravo", "charlie", "delta", "echo"}),
             boost::test_tools::per_element());
  auto disabled = data(call("GET", "/api/nodes?status=disabled"));
  BOOST_REQUIRE_EQUAL(disabled["nodes"].size(), 1u);
  BOOST_TEST(disabled["nodes"][0]["name"] == "charlie");
  BOOST_TEST(disabled["next"].is_null());
  BOOST_TEST(error(call("GET", "/api/nodes?status=asleep"), 400) == "bad_request");
  BOOST_TEST(error(call("GET", "/api/nodes?limit=0"), 400) == "bad_request");
  BOOST_TEST(error(call("GET", "/api/nodes?limit=1001"), 400) == "bad_request");
  BOOST_TEST(error(call("GET", "/api/nodes?after=bad%20name"), 400) == "bad_request");
  BOOST_TEST(error(call("GET", "/api/nodes?page=2"), 400) == "bad_request");
}

BOOST_AUTO_TEST_CASE(attempts_list_checks_and_pages) {
  for (int i = 0; i < 5; ++i)
    add_attempt("partial");
  auto page = data(call("GET", "/api/attempts?limit=2"));
  BOOST_TEST(page["attempts"].size() == 2u);
  BOOST_TEST_REQUIRE(page["next"].is_string());
  BOOST_TEST(page["attempts"][0]["meta"]["k"] == 1); // meta is an object, not text
  auto next = data(call("GET", "/api/attempts?limit=2&after=" + page["next"].get<std::string>()));
  BOOST_TEST(next["attempts"][0]["id"] > page["next"]);
  auto last = data(call("GET", "/api/attempts?limit=100"));
  BOOST_TEST(last["attempts"].size() == 5u);
  BOOST_TEST(last["next"].is_null());

  data(call("GET", "/api/attempts?sync_state=failed&state=succeeded"));
  BOOST_TEST(b.attempt_queries.back().sync_state == "failed");
  BOOST_TEST(b.attempt_queries.back().state == "succeeded");
  for (auto bad : {"limit=0", "limit=1001", "limit=x", "limit=-1", "sync_state=whole", "state=done", "after=not-a-uuid",
                   "colour=red", "limit=1&limit=2"})
    BOOST_TEST(error(call("GET", std::string("/api/attempts?") + bad), 400) == "bad_request", bad);
  auto unknown_state = json::parse(call("GET", "/api/attempts?sync_state=whole").body);
  BOOST_TEST(unknown_state["error"]["message"].get<std::string>().find("pending_backfill") != std::string::npos);
  BOOST_TEST(error(call("GET", "/api/attempts?node=ghost"), 404) == "not_found");
  call("POST", "/api/nodes", R"({"name":"alpha"})");
  data(call("GET", "/api/attempts?node=alpha"));
  BOOST_TEST(b.attempt_queries.back().node_id == b.nodes_by_name["alpha"].id);
}

BOOST_AUTO_TEST_CASE(reading_an_attempt) {
  auto a = add_attempt("partial", "node-a");
  auto read = data(call("GET", "/api/attempts/" + a.id));
  BOOST_TEST(read["attempt"]["id"] == a.id);
  BOOST_TEST(read["attempt"]["sync_state"] == "partial");
  BOOST_TEST(error(call("GET", "/api/attempts/" + new_uuid()), 404) == "not_found");
  BOOST_TEST(error(call("GET", "/api/attempts/junk"), 404) == "not_found");
}

BOOST_AUTO_TEST_CASE(backfill_maps_every_order_status) {
  auto a = add_attempt("partial");
  auto accepted = call("POST", "/api/attempts/" + a.id + "/backfill");
  BOOST_TEST(accepted.status == 202);
  BOOST_TEST(data(accepted)["job_id"] == "job-1");
  std::vector<std::pair<order_status, int>> cases = {
    {order_status::not_found, 404},   {order_status::offline, 409},         {order_status::busy, 409},
    {order_status::not_partial, 409}, {order_status::nothing_to_mark, 409}, {order_status::stopping, 503},
    {order_status::error, 503}};
  for (auto [status, http] : cases) {
    b.next_order = {status, "", 0, "why"};
    BOOST_TEST(call("POST", "/api/attempts/" + a.id + "/backfill").status == http, to_string(status));
  }
  BOOST_TEST(error(call("POST", "/api/attempts/junk/backfill"), 404) == "not_found");
}

BOOST_AUTO_TEST_CASE(requeue_only_failed_attempts) {
  auto f = add_attempt("failed");
  auto p = add_attempt("partial");
  auto ok = data(call("POST", "/api/attempts/" + f.id + "/requeue"));
  BOOST_TEST(ok["attempt"]["sync_state"] == "partial");
  BOOST_TEST(error(call("POST", "/api/attempts/" + p.id + "/requeue"), 409) == "conflict");
  BOOST_TEST(error(call("POST", "/api/attempts/" + new_uuid() + "/requeue"), 404) == "not_found");
}

namespace {

std::string upper(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

} // namespace

BOOST_AUTO_TEST_CASE(jobs_list_validates_filters_and_pages) {
  for (int i = 0; i < 3; ++i) {
    storage::job_record j;
    j.id = new_uuid();
    j.type = "backfill";
    j.status = "succeeded";
    j.created_at = "2026-01-0" + std::to_string(3 - i) + "T00:00:00.000Z";
    j.detail = "{\"trigger\":\"reconnect\"}";
    b.job_rows.push_back(j);
  }
  auto page = data(call("GET", "/api/jobs?limit=2&status=succeeded,failed&type=backfill"));
  BOOST_TEST(page["jobs"].size() == 2u);
  BOOST_TEST(page["jobs"][0]["detail"]["trigger"] == "reconnect");
  BOOST_TEST((b.job_queries.back().statuses == std::vector<std::string>{"succeeded", "failed"}));
  BOOST_TEST_REQUIRE(page["next"].is_string());
  data(call("GET", "/api/jobs?before=" + page["next"].get<std::string>()));
  BOOST_TEST(b.job_queries.back().before_id == b.job_rows[1].id);
  BOOST_TEST(b.job_queries.back().before_created_at == b.job_rows[1].created_at);
  auto bad = call("GET", "/api/jobs?status=done");
  BOOST_TEST(error(bad, 400) == "bad_request");
  BOOST_TEST(json::parse(bad.body)["error"]["message"].get<std::string>().find("abandoned") != std::string::npos);
  for (auto q : {"type=export", "status=", "before=yesterday", "limit=5000", "order=asc"})
    BOOST_TEST(error(call("GET", std::string("/api/jobs?") + q), 400) == "bad_request", q);
  BOOST_TEST(error(call("GET", "/api/jobs?node=ghost"), 404) == "not_found");
  // One job by id (nodecoordctl node check polls it): in either case, 404 for another or junk.
  auto one = data(call("GET", "/api/jobs/" + upper(b.job_rows[1].id)));
  BOOST_TEST(one["job"]["id"] == b.job_rows[1].id);
  BOOST_TEST(b.job_queries.back().id == b.job_rows[1].id);
  BOOST_TEST(b.job_queries.back().limit == 1);
  BOOST_TEST(error(call("GET", "/api/jobs/" + new_uuid()), 404) == "not_found");
  auto queries = b.job_queries.size();
  BOOST_TEST(error(call("GET", "/api/jobs/not-a-uuid"), 404) == "not_found");
  BOOST_TEST(b.job_queries.size() == queries); // junk never reaches the database
  BOOST_TEST(error(call("GET", "/api/jobs/" + b.job_rows[1].id + "?x=1"), 400) == "bad_request");
  BOOST_TEST(error(call("DELETE", "/api/jobs/" + b.job_rows[1].id), 405) == "method_not_allowed");
}

// An upper-case UUID is the same id: the backend only ever sees the lower-case form (the
// database and the tracker compare ids as text in that form; see admin_e2e_test for what went
// wrong on PostgreSQL before).
BOOST_AUTO_TEST_CASE(ids_reach_the_backend_in_lower_case_from_every_entry_point) {
  auto c = add_attempt("complete", "node-a");
  auto lower_answer = call("GET", "/api/attempts/" + c.id);
  auto upper_answer = call("GET", "/api/attempts/" + upper(c.id));
  BOOST_TEST(upper_answer.status == 200, upper_answer.body);
  BOOST_TEST(upper_answer.body == lower_answer.body);
  // Asking for a partial attempt names it by its lower-case id.
  auto p = add_attempt("partial", "node-a");
  b.live.push_back({"node-a", "a", 1, "", ""});
  BOOST_TEST(call("POST", "/api/attempts/" + upper(p.id) + "/backfill").status == 202);
  BOOST_TEST(b.backfills == std::vector<std::string>{p.id});
  auto f = add_attempt("failed");
  auto requeued = call("POST", "/api/attempts/" + upper(f.id) + "/requeue");
  BOOST_TEST(requeued.status == 200, requeued.body);
  BOOST_TEST(b.requeues == std::vector<std::string>{f.id});
  BOOST_TEST(data(requeued)["attempt"]["id"] == f.id);
  // Cursors: the attempt page's after, the job page's before.
  data(call("GET", "/api/attempts?after=" + upper(c.id)));
  BOOST_TEST(b.attempt_queries.back().after_id == c.id);
  auto job = new_uuid();
  data(call("GET", "/api/jobs?before=2026-01-02T00:00:00.000Z," + upper(job)));
  BOOST_TEST(b.job_queries.back().before_id == job);
  // Mixed case too.
  auto mixed = p.id;
  mixed[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(mixed[0])));
  mixed[35] = static_cast<char>(std::toupper(static_cast<unsigned char>(mixed[35])));
  BOOST_TEST(call("POST", "/api/attempts/" + mixed + "/backfill").status == 202);
  BOOST_TEST(b.backfills.back() == p.id);
}

// Junk, overflow, negative and empty values of every query parameter: 400 bad_request whose
// message names the parameter, never a 500 (or a 503 from a database that choked on it).
BOOST_AUTO_TEST_CASE(every_query_parameter_refuses_junk_overflow_negative_and_empty_with_400) {
  call("POST", "/api/nodes", R"({"name":"alpha"})");
  const std::string t0 = "2026-01-02T00:00:00.000Z";
  const std::string id = new_uuid();
  struct bad {
    std::string method, target, names;
  };
  std::vector<bad> cases = {
    {"GET", "/api/jobs?before=" + t0 + ",junk", "before"},
    {"GET", "/api/jobs?before=" + t0 + ",", "before"},
    {"GET", "/api/jobs?before=" + t0, "before"},
    {"GET", "/api/jobs?before=," + id, "before"},
    {"GET", "/api/jobs?before=", "before"},
    {"GET", "/api/jobs?before=2026-02-30T00:00:00.000Z," + id, "before"},
    {"GET", "/api/jobs?before=99999-01-01T00:00:00.000Z," + id, "before"},
    {"GET", "/api/jobs?before=" + t0 + "," + id + "x", "before"},
    {"GET", "/api/jobs?limit=", "limit"},
    {"GET", "/api/jobs?limit=-1", "limit"},
    {"GET", "/api/jobs?limit=0", "limit"},
    {"GET", "/api/jobs?limit=99999999999999999999", "limit"},
    {"GET", "/api/jobs?limit=1e3", "limit"},
    {"GET", "/api/jobs?limit=+5", "limit"},
    {"GET", "/api/jobs?status=", "status"},
    {"GET", "/api/jobs?status=failed,", "status"},
    {"GET", "/api/jobs?status=,failed", "status"},
    {"GET", "/api/jobs?status=failed,,succeeded", "status"},
    {"GET", "/api/jobs?type=", "type"},
    {"GET", "/api/jobs?type=backfill,", "type"},
    {"GET", "/api/jobs?node=", "node"},
    {"GET", "/api/jobs?node=a%20b", "node"},
    {"GET", "/api/jobs?node=" + std::string(300, 'a'), "node"},
    {"GET", "/api/attempts?after=", "after"},
    {"GET", "/api/attempts?after=junk", "after"},
    {"GET", "/api/attempts?after=" + id + "0", "after"},
    {"GET", "/api/attempts?limit=", "limit"},
    {"GET", "/api/attempts?limit=-5", "limit"},
    {"GET", "/api/attempts?limit=18446744073709551617", "limit"},
    {"GET", "/api/attempts?sync_state=", "sync_state"},
    {"GET", "/api/attempts?state=", "state"},
    {"GET", "/api/attempts?node=", "node"},
    {"GET", "/api/attempts?node=no%2Fslash", "node"},
    {"DELETE", "/api/jobs?older_than=", "older_than"},
    {"DELETE", "/api/jobs?older_than=-1d", "older_than"},
    {"DELETE", "/api/jobs?older_than=99999d", "older_than"},
    {"DELETE", "/api/jobs?older_than=99999999999999999999h", "older_than"},
    {"DELETE", "/api/jobs?older_than=9223372036854775807ms", "older_than"},
    {"DELETE", "/api/jobs?older_than=2562047788015h", "older_than"},
    {"DELETE", "/api/jobs?older_than=7d&status=", "status"},
    {"DELETE", "/api/jobs?older_than=7d&type=,", "type"},
    {"POST", "/api/bundle?dry_run=", "dry_run"},
    {"POST", "/api/bundle?dry_run=2", "dry_run"},
    {"POST", "/api/bundle?dry_run=-1", "dry_run"},
    {"GET", "/api/nodes?x=1", "x"},
    {"GET", "/api/nodes/alpha?verbose=1", "verbose"},
    {"GET", "/api/attempts/" + id + "?x=", "x"},
    {"POST", "/api/attempts/" + id + "/backfill?force=1", "force"},
  };
  for (auto& c : cases) {
    auto r = call(c.method, c.target);
    BOOST_TEST(r.status == 400, c.method << " " << c.target << ": " << r.status << " " << r.body);
    auto j = json::parse(r.body, nullptr, false);
    BOOST_TEST_REQUIRE(!j.is_discarded(), r.body);
    BOOST_TEST(j["ok"] == false);
    BOOST_TEST(j["error"]["code"] == "bad_request", c.target);
    auto message = j["error"]["message"].get<std::string>();
    BOOST_TEST(message.find(c.names) != std::string::npos, c.target << ": " << message);
  }
  BOOST_TEST(b.prunes.empty());
  // The largest values that are allowed still pass.
  data(call("DELETE", "/api/jobs?older_than=36500d"));
  data(call("GET", "/api/jobs?limit=1000&before=" + t0 + "," + id));
  BOOST_TEST(b.job_queries.back().before_created_at == t0);
  // A time in another spelling is the same instant, in the stored form.
  data(call("GET", "/api/jobs?before=2026-01-02T01:00:00+01:00," + id));
  data(call("GET", "/api/jobs?before=2026-01-02T00:00:00Z," + id));
  BOOST_TEST(b.job_queries.back().before_created_at == t0);
}

BOOST_AUTO_TEST_CASE(errors_cpp_httplib_answers_itself_get_the_envelope) {
  auto big = transport_error(413, 512ull * 1024 * 1024);
  BOOST_TEST(big.status == 413);
  BOOST_TEST(big.content_type == "application/json");
  auto j = json::parse(big.body);
  BOOST_TEST(j["ok"] == false);
  BOOST_TEST(j["error"]["code"] == "payload_too_large");
  auto message = j["error"]["message"].get<std::string>();
  BOOST_TEST(message.find("536870912 bytes") != std::string::npos, message);
  BOOST_TEST(message.find("512 MiB") != std::string::npos, message);
  BOOST_TEST(j["error"]["detail"]["limit_bytes"] == 536870912u);
  BOOST_TEST(json::parse(transport_error(413, 1000).body)["error"]["message"].get<std::string>().find("1000 bytes")
             != std::string::npos);
  for (int status : {400, 404, 414, 431, 500})
    BOOST_TEST(json::parse(transport_error(status, 1).body)["ok"] == false, status);
}

BOOST_AUTO_TEST_CASE(prune_needs_a_filter_and_never_touches_open_jobs) {
  BOOST_TEST(error(call("DELETE", "/api/jobs"), 400) == "bad_request");
  BOOST_TEST(b.prunes.empty());
  BOOST_TEST(error(call("DELETE", "/api/jobs?status=running"), 400) == "bad_request");
  BOOST_TEST(error(call("DELETE", "/api/jobs?status=succeeded,queued"), 400) == "bad_request");
  BOOST_TEST(error(call("DELETE", "/api/jobs?older_than=soon"), 400) == "bad_request");
  BOOST_TEST(error(call("DELETE", "/api/jobs?status=bogus"), 400) == "bad_request");
  BOOST_TEST(b.prunes.empty());

  // Explicit age: one prune with that cutoff.
  data(call("DELETE", "/api/jobs?older_than=2d&type=backfill"));
  BOOST_TEST_REQUIRE(b.prunes.size() == 1u);
  BOOST_TEST(b.prunes[0].types == std::vector<std::string>{"backfill"});
  BOOST_TEST(b.prunes[0].statuses.empty());
  BOOST_TEST(!b.prunes[0].older_than.empty());

  BOOST_TEST(b.prunes[0].failed_older_than.empty());

  // Default retention, in one operation (its ledger row in the same transaction): failed jobs are
  // kept longer (an earlier cutoff) than the other final ones.
  b.prunes.clear();
  auto d = data(call("DELETE", "/api/jobs?status=failed,succeeded,expired"));
  BOOST_TEST_REQUIRE(b.prunes.size() == 1u);
  BOOST_TEST((b.prunes[0].statuses == std::vector<std::string>{"failed", "succeeded", "expired"}));
  BOOST_TEST_REQUIRE(!b.prunes[0].failed_older_than.empty());
  BOOST_TEST(b.prunes[0].failed_older_than < b.prunes[0].older_than);
  BOOST_TEST(d["deleted"] == 3);
  BOOST_TEST(b.prunes[0].audit.action == "jobs.prune");
  // Only a type: no status named (storage never deletes queued or running jobs: admin_ops_test).
  b.prunes.clear();
  data(call("DELETE", "/api/jobs?type=reconcile"));
  BOOST_TEST_REQUIRE(b.prunes.size() == 1u);
  BOOST_TEST(b.prunes[0].types == std::vector<std::string>{"reconcile"});
  BOOST_TEST(b.prunes[0].statuses.empty());
  BOOST_TEST(!b.prunes[0].failed_older_than.empty());
}

BOOST_AUTO_TEST_CASE(overview_counts_every_state_caches_and_marks_missing_parts) {
  call("POST", "/api/nodes", R"({"name":"alpha"})");
  b.tracker_now.requests.push_back({"r1", "n", 1, "reconnect", true, 1, 42000});
  b.tracker_now.requests.push_back({"r2", "n", 1, "reconnect", false, 0, 0});
  auto d = data(call("GET", "/api/overview"));
  BOOST_TEST(d["version"] == "9.9.9");
  BOOST_TEST(d["nodes"]["offline"] == 1);
  BOOST_TEST(d["nodes"]["online"] == 0); // every status present
  BOOST_TEST(d["attempts"]["partial"] == 2);
  BOOST_TEST(d["attempts"]["pending_backfill"] == 0);
  BOOST_TEST(d["attempts"]["failed"] == 0);
  BOOST_TEST(d["jobs"][0]["status"] == "succeeded");
  BOOST_TEST(d["jobs"][0]["type"] == "backfill");
  BOOST_TEST(d["requests"]["in_flight"] == 2);
  BOOST_TEST(d["requests"]["oldest_age_seconds"] == 42);
  BOOST_TEST(d["database"]["size_bytes"] == 4096);
  BOOST_TEST(d["database"]["tables"]["jobs"] == 2048);
  BOOST_TEST(d["database"]["backend"] == "sqlite");
  BOOST_TEST(d["missing"].empty());
  BOOST_TEST(b.counts_calls == 1);

  // Cached: no second count within the cache period; a fresh one after it.
  now += 4s;
  data(call("GET", "/api/overview"));
  BOOST_TEST(b.counts_calls == 1);
  now += 2s;
  data(call("GET", "/api/overview"));
  BOOST_TEST(b.counts_calls == 2);

  // A part that does not answer is named, the rest is still there.
  b.tracker_down = true;
  auto partial = data(call("GET", "/api/overview"));
  BOOST_TEST(partial["missing"] == json::array({"tracker"}));
  BOOST_TEST(!partial.contains("requests"));
  BOOST_TEST(partial["nodes"]["offline"] == 1);
  b.tracker_down = false;
  b.storage_down = true;
  now += 10s;
  auto no_db = call("GET", "/api/overview");
  BOOST_TEST(no_db.status == 200);
  auto nd = data(no_db);
  BOOST_TEST(nd["missing"] == json::array({"counts", "storage"}));
  BOOST_TEST(nd["requests"]["in_flight"] == 2);
}

BOOST_AUTO_TEST_CASE(readiness_probes_the_database_at_most_once_a_second) {
  auto ok = call("GET", "/readyz");
  BOOST_TEST(ok.status == 200);
  BOOST_TEST(data(ok)["database"] == true);
  BOOST_TEST(b.ping_calls == 1);
  call("GET", "/readyz");
  BOOST_TEST(b.ping_calls == 1); // within the probe period: the last result
  b.ping_ok = false;
  now += 2s;
  auto down = call("GET", "/readyz");
  BOOST_TEST(error(down, 503) == "unavailable");
  BOOST_TEST(json::parse(down.body)["error"]["detail"]["database"] == false);
  BOOST_TEST(b.ping_calls == 2);
  b.ping_ok = true;
  b.storage_down = true;
  now += 2s;
  BOOST_TEST(error(call("GET", "/readyz"), 503) == "unavailable");
  b.storage_down = false;
  b.storage_now.available = false;
  b.storage_now.last_error = "connection refused";
  now += 2s;
  auto refused = call("GET", "/readyz");
  BOOST_TEST(json::parse(refused.body)["error"]["message"].get<std::string>().find("connection refused")
             != std::string::npos);
  b.storage_now.available = true;
  now += 2s;
  BOOST_TEST(call("GET", "/readyz").status == 200);
  a.set_listening(false);
  now += 2s;
  auto stopping = call("GET", "/readyz");
  BOOST_TEST(error(stopping, 503) == "unavailable");
  BOOST_TEST(json::parse(stopping.body)["error"]["detail"]["listening"] == false);
}

BOOST_AUTO_TEST_CASE(database_unavailable_is_503) {
  b.storage_down = true;
  BOOST_TEST(error(call("GET", "/api/nodes"), 503) == "unavailable");
  BOOST_TEST(error(call("POST", "/api/nodes", R"({"name":"x"})"), 503) == "unavailable");
  BOOST_TEST(error(call("GET", "/api/jobs"), 503) == "unavailable");
}

BOOST_AUTO_TEST_CASE(metrics_are_prometheus_text) {
  metrics::daemon().disconnects.inc("idle_timeout");
  metrics::daemon().frame(metrics::frame_kind::heartbeat);
  metrics::daemon().batch_size.observe(3);
  b.tracker_now.requested = 7;
  auto r = call("GET", "/metrics");
  BOOST_TEST(r.status == 200);
  BOOST_TEST(r.content_type.rfind("text/plain; version=0.0.4", 0) == 0u);
  for (auto needle :
       {"# TYPE nodecoord_sessions gauge", "nodecoord_disconnects_total{reason=\"idle_timeout\"} ",
        "nodecoord_frames_total{type=\"heartbeat\"} ", "nodecoord_backfill_requests_total{outcome=\"created\"} 7",
        "nodecoord_attempts{sync_state=\"partial\"} 2", "# TYPE nodecoord_storage_batch_size histogram",
        "nodecoord_storage_batch_size_bucket{le=\"5\"} ", "nodecoord_storage_batch_size_bucket{le=\"+Inf\"} ",
        "nodecoord_storage_commit_seconds_count ", "nodecoord_database_errors_total{kind=\"connection\"} 0",
        "nodecoord_database_up 1"})
    BOOST_TEST(r.body.find(needle) != std::string::npos, needle);
}

// Issue 19: the export is spooled in $TMPDIR (operators keep it off the database's disk, whose
// fsyncs it would delay), unlinked at once; a $TMPDIR it cannot write is named in the 503.
BOOST_AUTO_TEST_CASE(exports_spool_in_tmpdir_unlinked_and_name_a_tmpdir_they_cannot_use) {
  namespace fs = std::filesystem;
  const char* old = std::getenv("TMPDIR");
  const std::string saved = old ? old : "";
  auto dir = fs::temp_directory_path() / ("nc-export-test-" + new_uuid());
  fs::create_directories(dir);
  ::setenv("TMPDIR", dir.c_str(), 1);
  auto r = call("GET", "/api/bundle");
  BOOST_TEST(r.status == 200);
  BOOST_TEST(fs::is_empty(dir), "the spool file is unlinked as soon as it is open");
  std::string body;
  BOOST_TEST_REQUIRE(bool(r.stream));
  while (r.stream(body))
    ;
  BOOST_TEST(body == "{\"type\":\"manifest\"}\n");
  ::setenv("TMPDIR", (dir / "missing").c_str(), 1);
  auto e = call("GET", "/api/bundle");
  BOOST_TEST(error(e, 503) == "unavailable");
  BOOST_TEST(e.body.find((dir / "missing").string()) != std::string::npos, e.body);
  if (old)
    ::setenv("TMPDIR", saved.c_str(), 1);
  else
    ::unsetenv("TMPDIR");
  fs::remove_all(dir);
}

// --- the audit ledger (issue 20) ---------------------------------------------------------------

BOOST_AUTO_TEST_CASE(every_mutating_call_writes_one_audit_row_with_its_outcome) {
  struct step {
    std::string method, target, body;
    int status;
    std::string action, target_field, result, error_code; // error_code: start of the row's error
  };
  auto f = add_attempt("failed");
  auto p = add_attempt("partial");
  std::vector<step> steps{
    {"POST", "/api/nodes", R"({"name":"alpha"})", 201, "node.create", "alpha", "succeeded", ""},
    {"POST", "/api/nodes", R"({"name":"alpha"})", 409, "node.create", "alpha", "failed", "the name"},
    {"POST", "/api/nodes", R"({"nom":"x"})", 400, "node.create", "", "refused", "bad_request: "},
    {"POST", "/api/nodes/alpha/disable", "", 200, "node.disable", "alpha", "succeeded", ""},
    {"POST", "/api/nodes/ghost/disable", "", 404, "node.disable", "ghost", "failed", "no node named ghost"},
    {"POST", "/api/nodes/alpha/enable", "", 200, "node.enable", "alpha", "succeeded", ""},
    {"POST", "/api/nodes/alpha/rotate-key", "", 200, "node.rotate_key", "alpha", "succeeded", ""},
    {"POST", "/api/attempts/" + f.id + "/requeue", "", 200, "attempt.requeue", f.id, "succeeded", ""},
    {"POST", "/api/attempts/" + p.id + "/requeue", "", 409, "attempt.requeue", p.id, "failed", "the attempt is not"},
    {"POST", "/api/attempts/junk/requeue", "", 404, "attempt.requeue", "junk", "refused", "not_found: "},
    {"POST", "/api/attempts/" + p.id + "/backfill", "", 202, "attempt.backfill", p.id, "succeeded", ""},
    {"DELETE", "/api/jobs", "", 400, "jobs.prune", "", "refused", "bad_request: refusing to prune"},
    {"DELETE", "/api/jobs?status=failed", "", 200, "jobs.prune", "", "succeeded", ""},
    {"POST", "/api/overview", "", 405, "request", "POST /api/overview", "refused", "method_not_allowed: "},
    {"POST", "/api/nowhere", "", 404, "request", "POST /api/nowhere", "refused", "not_found: "},
  };
  for (auto& st : steps) {
    BOOST_TEST_CONTEXT(st.method << " " << st.target) {
      auto before = b.audit_rows.size();
      auto r = call(st.method, st.target, st.body);
      BOOST_TEST(r.status == st.status, r.body);
      BOOST_TEST_REQUIRE(b.audit_rows.size() == before + 1, "not exactly one row");
      auto& row = b.audit_rows.back();
      BOOST_TEST(row.actor == "local");
      BOOST_TEST(row.action == st.action);
      BOOST_TEST(row.target == st.target_field);
      BOOST_TEST(row.result == st.result);
      BOOST_TEST(row.error.rfind(st.error_code, 0) == 0u, row.error);
      if (st.result == "succeeded")
        BOOST_TEST(!row.counts.empty());
    }
  }
  // The prune's filter is what was asked; its counts what it did.
  auto& prune = b.audit_rows[b.audit_rows.size() - 3];
  BOOST_TEST(json::parse(prune.filter) == json({{"status", "failed"}}));
  BOOST_TEST(json::parse(prune.counts).at("jobs").is_number());
  // Reads write nothing.
  auto rows = b.audit_rows.size();
  for (auto target : {"/api/overview", "/api/nodes", "/api/jobs", "/api/audit", "/metrics"})
    call("GET", target);
  BOOST_TEST(b.audit_rows.size() == rows);
}

BOOST_AUTO_TEST_CASE(a_bulk_action_needs_a_filter_fits_its_budget_and_applies_only_its_plan) {
  auto plan = [&](const std::string& action, const std::string& body) {
    return call("POST", "/api/bulk/" + action + "/plan", body);
  };
  auto last_row = [&] { return b.audit_rows.back(); };
  // No filter: refused unless the call says "all".
  BOOST_TEST(error(plan("attempts.requeue", "{}"), 400) == "filter_required");
  BOOST_TEST(last_row().action == "attempts.requeue.plan");
  BOOST_TEST(last_row().result == "refused");
  BOOST_TEST(error(plan("attempts.requeue", R"({"filter":{}})"), 400) == "filter_required");
  BOOST_TEST(error(plan("attempts.requeue", R"({"all":false})"), 400) == "filter_required");
  BOOST_TEST(b.bulks.empty());
  // Filters an action does not take, values outside their sets, a sync state it never changes.
  for (auto* body :
       {R"({"filter":{"name_prefix":"r"}})", R"({"filter":{"sync_state":"complete"}})",
        R"({"filter":{"sync_state":"bogus"}})", R"({"filter":{"node":"a b"}})", R"({"filter":{"older_than":"soon"}})",
        R"({"filter":{"task_prefix":""}})", R"({"filter":{"task_prefix":7}})", R"({"filter":"x"})", R"({"all":"yes"})",
        R"([1])", R"({"filter":{"state":"failed"},"max_rows":0})", R"({"filter":{"state":"failed"},"token":"x"})",
        R"({"filter":{"state":"failed"},"max_rows":1000001})"})
    BOOST_TEST(error(plan("attempts.requeue", body), 400) == "bad_request", body);
  BOOST_TEST(error(plan("nodes.disable", R"({"filter":{"task_prefix":"x"}})"), 400) == "bad_request");
  BOOST_TEST(error(plan("nodes.explode", R"({"all":true})"), 404) == "not_found");
  BOOST_TEST(error(call("POST", "/api/bulk/nodes.disable/go", R"({"all":true})"), 404) == "not_found");
  BOOST_TEST(error(call("GET", "/api/bulk/nodes.disable/plan"), 405) == "method_not_allowed");
  BOOST_TEST(b.bulks.empty());

  // A plan: the count, the budget, a sample, the token; the filter as the apply must send it.
  auto rows = b.audit_rows.size();
  auto p = data(plan("attempts.requeue", R"({"filter":{"task_prefix":"build/","older_than":"7d"}})"));
  BOOST_TEST_REQUIRE(b.bulks.size() == 1u);
  BOOST_TEST(!b.bulks[0].apply);
  BOOST_TEST(b.bulks[0].limit == 10000);
  BOOST_TEST(b.bulks[0].filter.task_prefix == "build/");
  BOOST_TEST(p["matched"] == 3);
  BOOST_TEST(p["budget"] == json({{"limit", 10000}, {"used", 3}}));
  BOOST_TEST(p["token"] == "t0ken");
  BOOST_TEST(p["sample"][0] == json({{"id", "id-1"}, {"task_id", "label-1"}, {"sync_state", "failed"}}));
  auto cutoff = p["filter"]["older_than"].get<std::string>();
  BOOST_TEST(parse_time(cutoff).has_value(), cutoff); // the age, resolved once
  BOOST_TEST(b.bulks[0].filter.older_than == cutoff);
  BOOST_TEST_REQUIRE(b.audit_rows.size() == rows + 1);
  BOOST_TEST(last_row().result == "succeeded");
  BOOST_TEST(json::parse(last_row().counts) == json({{"matched", 3}}));
  BOOST_TEST(json::parse(last_row().filter)["task_prefix"] == "build/");

  // The call may raise its own budget up to the hard cap; over the budget is budget_exceeded with
  // the numbers, counted by storage from the rows, never declared by the client.
  data(plan("attempts.requeue", R"({"filter":{"state":"failed"},"max_rows":20})"));
  BOOST_TEST(b.bulks.back().limit == 20);
  b.bulk_answer.over_budget = true;
  b.bulk_answer.matched = 12000;
  auto over = call("POST", "/api/bulk/attempts.reset/plan", R"({"all":true})");
  BOOST_TEST(error(over, 400) == "budget_exceeded");
  BOOST_TEST(json::parse(over.body)["error"]["detail"] == json({{"limit", 10000}, {"requested", 12000}}));
  BOOST_TEST(last_row().result == "refused");
  BOOST_TEST(last_row().error.rfind("budget_exceeded", 0) == 0u, last_row().error);
  b.bulk_answer.over_budget = false;
  b.bulk_answer.matched = 3;

  // Apply: only with the token, only the planned set.
  auto apply = [&](const std::string& body) { return call("POST", "/api/bulk/attempts.requeue/apply", body); };
  BOOST_TEST(error(apply(R"({"filter":{"task_prefix":"build/"}})"), 400) == "bad_request");
  auto stale = apply(R"({"filter":{"task_prefix":"build/"},"token":"old"})");
  BOOST_TEST(error(stale, 409) == "plan_stale");
  BOOST_TEST(last_row().action == "attempts.requeue");
  BOOST_TEST(last_row().result == "refused");
  rows = b.audit_rows.size();
  auto done = data(apply(R"({"filter":{"task_prefix":"build/","older_than":")" + cutoff + R"("},"token":"t0ken"})"));
  BOOST_TEST(b.bulks.back().apply);
  BOOST_TEST(b.bulks.back().token == "t0ken");
  BOOST_TEST(b.bulks.back().filter.older_than == cutoff); // a time is taken as it is
  BOOST_TEST(done["counts"] == json({{"attempts", 3}}));
  BOOST_TEST_REQUIRE(b.audit_rows.size() == rows + 1); // the row carried by the change, no other
  BOOST_TEST(last_row().result == "succeeded");
  BOOST_TEST(b.bulks.back().audit.action == "attempts.requeue");

  // Disabling nodes closes the sessions of those connected.
  b.bulk_answer.node_ids = {"n-1", "n-2"};
  b.bulk_answer.node_names = {"alpha", "beta"};
  b.live = {{"n-2", "beta", 1, "", ""}, {"n-9", "other", 1, "", ""}};
  auto dis = data(call("POST", "/api/bulk/nodes.disable/apply", R"({"filter":{"name_prefix":"a"},"token":"t0ken"})"));
  BOOST_TEST(dis["closed_sessions"] == 1);
  BOOST_TEST(b.closed == std::vector<std::string>{"beta"});
  // A delete while a matched node holds attempts that are not complete: refused, with the count.
  b.bulk_answer.blocked = 2;
  auto blocked = call("POST", "/api/bulk/nodes.delete/plan", R"({"filter":{"node_status":"disabled"}})");
  BOOST_TEST(error(blocked, 409) == "attempts_not_complete");
  BOOST_TEST(json::parse(blocked.body)["error"]["detail"]["nodes"] == 2);

  // The configured budget.
  auto o = opts();
  o.max_rows_per_action = 50;
  o.max_rows_per_action_hard = 60;
  api small{b, o};
  b.bulk_answer.blocked = 0;
  BOOST_TEST(small.handle(request("POST", "/api/bulk/nodes.enable/plan", R"({"all":true})")).status == 200);
  BOOST_TEST(b.bulks.back().limit == 50);
  BOOST_TEST(small.handle(request("POST", "/api/bulk/nodes.enable/plan", R"({"all":true,"max_rows":61})")).status
             == 400);
}

// attempts.prune_logs: the bound is required (even with all), only complete attempts are its
// sync state, and the plan says how many stored lines it deletes.
BOOST_AUTO_TEST_CASE(pruning_logs_needs_a_bound_and_says_what_it_deletes) {
  auto plan = [&](const std::string& body) { return call("POST", "/api/bulk/attempts.prune_logs/plan", body); };
  BOOST_TEST(error(plan(R"({"all":true})"), 400) == "bad_request");
  BOOST_TEST(b.audit_rows.back().action == "attempts.prune_logs.plan");
  BOOST_TEST(b.audit_rows.back().result == "refused");
  BOOST_TEST(b.audit_rows.back().error.find("older_than") != std::string::npos, b.audit_rows.back().error);
  BOOST_TEST(error(plan(R"({"filter":{"node":"alpha"}})"), 400) == "bad_request");
  BOOST_TEST(error(plan(R"({"filter":{"older_than":"30d","sync_state":"failed"}})"), 400) == "bad_request");
  BOOST_TEST(b.bulks.empty());
  b.bulk_answer.log_lines = 1234;
  auto p = data(plan(R"({"filter":{"older_than":"30d","sync_state":"complete"}})"));
  BOOST_TEST_REQUIRE(b.bulks.size() == 1u);
  BOOST_TEST(b.bulks[0].action == "attempts.prune_logs");
  BOOST_TEST(b.bulks[0].filter.sync_state == "complete");
  BOOST_TEST(p["log_lines"] == 1234);
  BOOST_TEST(!p.contains("attempts"));
  auto done = data(
    call("POST", "/api/bulk/attempts.prune_logs/apply", json{{"filter", p["filter"]}, {"token", p["token"]}}.dump()));
  BOOST_TEST(b.bulks.back().apply);
  BOOST_TEST(b.audit_rows.back().action == "attempts.prune_logs");
  BOOST_TEST(b.audit_rows.back().result == "succeeded");
}

// requests.cancel: a bulk action on the tracker's requests in flight. The plan counts sent
// requests of connected nodes that the filter matches (never one still being marked), under the
// same budget; the apply cancels exactly that set, or answers plan_stale when the set changed
// since the plan or one of its requests ended before the tracker took it. The ledger row comes
// after the tracker's answer, with its counts.
BOOST_AUTO_TEST_CASE(cancelling_requests_in_flight_by_filter) {
  b.live = {{"n-a", "rack1-a", 3, "", ""}, {"n-b", "rack1-b", 1, "", ""}, {"n-c", "rack2-c", 1, "", ""}};
  b.tracker_now.requests = {
    {"r3", "n-a", 3, "reconcile", true, 4, 120000}, {"r1", "n-a", 3, "reconnect", true, 2, 5000},
    {"r2", "n-b", 1, "on_demand", true, 1, 600000}, {"r4", "n-c", 1, "reconcile", true, 7, 9000},
    {"r5", "n-b", 1, "reconcile", false, 0, 0},       // still being marked
    {"r6", "n-gone", 1, "reconcile", true, 1, 1000}}; // its session is not here
  auto plan = [&](const std::string& body) { return call("POST", "/api/bulk/requests.cancel/plan", body); };
  auto apply = [&](const std::string& body) { return call("POST", "/api/bulk/requests.cancel/apply", body); };
  BOOST_TEST(error(plan("{}"), 400) == "filter_required");
  for (auto* body : {R"({"filter":{"sync_state":"complete"}})", R"({"filter":{"task_prefix":"x"}})",
                     R"({"filter":{"node_status":"online"}})", R"({"filter":{"node":"a b"}})"})
    BOOST_TEST(error(plan(body), 400) == "bad_request", body);
  // Everything cancellable: sent requests of connected nodes, in id order.
  auto all = data(plan(R"({"all":true})"));
  BOOST_TEST(all["matched"] == 4);
  BOOST_TEST(all["attempts"] == 14);
  BOOST_TEST_REQUIRE(all["sample"].size() == 4u);
  BOOST_TEST(all["sample"][0]
             == json({{"id", "r1"}, {"node", "rack1-a"}, {"trigger", "reconnect"}, {"attempts", 2}, {"age_ms", 5000}}));
  BOOST_TEST(all["sample"][3]["id"] == "r4");
  BOOST_TEST(b.bulks.empty()); // storage is not asked
  // Filters: a node, a name prefix, an age (resolved to a time once, as for every action).
  BOOST_TEST(data(plan(R"({"filter":{"node":"rack1-b"}})"))["matched"] == 1);
  BOOST_TEST(data(plan(R"({"filter":{"name_prefix":"rack1-"}})"))["matched"] == 3);
  auto old = data(plan(R"({"filter":{"name_prefix":"rack1-","older_than":"1m"}})"));
  BOOST_TEST(old["matched"] == 2); // r2 (10 min), r3 (2 min)
  BOOST_TEST(parse_time(old["filter"]["older_than"].get<std::string>()).has_value());
  BOOST_TEST(b.audit_rows.back().action == "requests.cancel.plan");
  BOOST_TEST(json::parse(b.audit_rows.back().counts) == json({{"matched", 2}}));
  // The budget counts requests.
  auto over = plan(R"({"all":true,"max_rows":3})");
  BOOST_TEST(error(over, 400) == "budget_exceeded");
  BOOST_TEST(json::parse(over.body)["error"]["detail"] == json({{"limit", 3}, {"requested", 4}}));
  // A wrong token, or a set that changed: stale, the tracker is not asked.
  BOOST_TEST(error(apply(json{{"filter", old["filter"]}, {"token", "old"}}.dump()), 409) == "plan_stale");
  auto changed = b.tracker_now;
  b.tracker_now.requests.push_back({"r7", "n-b", 1, "reconcile", true, 1, 900000});
  BOOST_TEST(error(apply(json{{"filter", old["filter"]}, {"token", old["token"]}}.dump()), 409) == "plan_stale");
  BOOST_TEST(b.cancel_calls.empty());
  BOOST_TEST(b.audit_rows.back().action == "requests.cancel");
  BOOST_TEST(b.audit_rows.back().result == "refused");
  b.tracker_now = changed;
  // The planned set: the tracker cancels exactly those ids; one row, after, with its counts.
  auto rows = b.audit_rows.size();
  auto done = data(apply(json{{"filter", old["filter"]}, {"token", old["token"]}}.dump()));
  BOOST_TEST_REQUIRE(b.cancel_calls.size() == 1u);
  BOOST_TEST((b.cancel_calls[0] == std::vector<std::string>{"r2", "r3"}));
  BOOST_TEST(done["counts"] == json({{"requests", 2}, {"attempts", 5}}));
  BOOST_TEST_REQUIRE(b.audit_rows.size() == rows + 1);
  BOOST_TEST(b.audit_rows.back().result == "succeeded");
  BOOST_TEST(json::parse(b.audit_rows.back().counts) == json({{"requests", 2}, {"attempts", 5}}));
  // A request that ends between the API's read and the tracker's take: the tracker answers stale,
  // and so does the API.
  auto p = data(plan(R"({"filter":{"node":"rack2-c"}})"));
  b.cancel_stale = true;
  rows = b.audit_rows.size();
  BOOST_TEST(error(apply(json{{"filter", p["filter"]}, {"token", p["token"]}}.dump()), 409) == "plan_stale");
  BOOST_TEST(b.cancel_calls.size() == 2u);
  BOOST_TEST_REQUIRE(b.audit_rows.size() == rows + 1);
  BOOST_TEST(b.audit_rows.back().result == "refused");
  b.cancel_stale = false;
  b.tracker_down = true;
  BOOST_TEST(error(plan(R"({"all":true})"), 503) == "unavailable");
}

BOOST_AUTO_TEST_CASE(a_drain_waits_in_the_tracker_closes_with_drained_then_disables) {
  data(call("POST", "/api/nodes", R"({"name":"alpha"})"));
  auto id = b.nodes_by_name["alpha"].id;
  auto rows = b.audit_rows.size();
  auto d = data(call("POST", "/api/nodes/alpha/drain"));
  // In this order: the tracker (the default deadline), the drained close, then the disable.
  BOOST_TEST((b.drain_calls == std::vector<std::string>{"drain " + id + " 60000", "close_drained alpha"}),
             boost::test_tools::per_element());
  BOOST_TEST(b.nodes_by_name["alpha"].status == "disabled");
  BOOST_TEST(d["node"]["status"] == "disabled");
  BOOST_TEST(d["requests_finished"] == 2);
  BOOST_TEST(d["requests_reset"] == 1);
  BOOST_TEST(d["attempts_partial"] == 4);
  BOOST_TEST(d["closed_session"] == true);
  BOOST_TEST_REQUIRE(b.audit_rows.size() == rows + 1); // one row: the drain's, with its counts
  BOOST_TEST(b.audit_rows.back().action == "node.drain");
  BOOST_TEST(b.audit_rows.back().target == "alpha");
  BOOST_TEST(json::parse(b.audit_rows.back().counts)
             == json({{"requests_finished", 2}, {"requests_reset", 1}, {"attempts_partial", 4}}));
  b.drain_calls.clear();
  data(call("POST", "/api/nodes/alpha/drain?deadline=5s"));
  BOOST_TEST(b.drain_calls.at(0) == "drain " + id + " 5000");
  for (auto* bad : {"deadline=101s", "deadline=soon", "deadline=-1s", "other=1"})
    BOOST_TEST(error(call("POST", std::string("/api/nodes/alpha/drain?") + bad), 400) == "bad_request", bad);
  BOOST_TEST(error(call("POST", "/api/nodes/ghost/drain"), 404) == "not_found");
  BOOST_TEST(b.audit_rows.back().action == "node.drain");
  BOOST_TEST(error(call("GET", "/api/nodes/alpha/drain"), 405) == "method_not_allowed");
  b.tracker_down = true;
  BOOST_TEST(error(call("POST", "/api/nodes/alpha/drain"), 503) == "unavailable");
}

BOOST_AUTO_TEST_CASE(a_check_runs_only_from_the_config_and_is_a_job) {
  data(call("POST", "/api/nodes", R"({"name":"alpha"})"));
  auto id = b.nodes_by_name["alpha"].id;
  auto o = opts();
  o.checks = {{"disk", {"df", "-h", "/"}, std::chrono::milliseconds(2500), 4096}};
  api a{b, o};
  auto answer = [&](const std::string& method, const std::string& path) { return a.handle(request(method, path)); };
  auto listed = json::parse(answer("GET", "/api/checks").body)["data"]["checks"];
  BOOST_TEST(listed == json::parse(R"([{"name":"disk","argv":["df","-h","/"],"timeout_ms":2500,"output_max":4096}])"));

  // Sent: a running check job first, its id the request id; 202 with the job.
  auto rows = b.audit_rows.size();
  auto sent = answer("POST", "/api/nodes/alpha/checks/disk");
  BOOST_TEST(sent.status == 202, sent.body);
  auto d = json::parse(sent.body)["data"];
  BOOST_TEST_REQUIRE(b.jobs_inserted.size() == 1u);
  auto& job = b.jobs_inserted.back();
  BOOST_TEST(job.type == "check");
  BOOST_TEST(job.status == "running");
  BOOST_TEST(job.node_id == id);
  BOOST_TEST(d["job"]["id"] == job.id);
  BOOST_TEST(d["timeout_ms"] == 2500);
  BOOST_TEST_REQUIRE(b.checks_sent.size() == 1u);
  auto& c = b.checks_sent.back();
  BOOST_TEST(c.job_id == job.id);
  BOOST_TEST(c.node_id == id);
  BOOST_TEST((c.argv == std::vector<std::string>{"df", "-h", "/"}));
  BOOST_TEST(c.timeout_ms == 2500);
  BOOST_TEST(c.output_max == 4096);
  BOOST_TEST(b.jobs_updated.empty());
  BOOST_TEST_REQUIRE(b.audit_rows.size() == rows + 1);
  BOOST_TEST(b.audit_rows.back().action == "node.check");
  BOOST_TEST(b.audit_rows.back().target == "alpha");
  BOOST_TEST(json::parse(b.audit_rows.back().filter) == json({{"check", "disk"}}));

  // Not configured: 404 unknown_check, nothing sent, no job, a refused row.
  auto unknown = answer("POST", "/api/nodes/alpha/checks/rm");
  BOOST_TEST(unknown.status == 404);
  BOOST_TEST(json::parse(unknown.body)["error"]["code"] == "unknown_check");
  BOOST_TEST(json::parse(unknown.body)["error"]["message"].get<std::string>().find("configured: disk")
             != std::string::npos);
  BOOST_TEST(b.checks_sent.size() == 1u);
  BOOST_TEST(b.jobs_inserted.size() == 1u);
  BOOST_TEST(b.audit_rows.back().result == "refused");

  // The session could not take it: 409 with the session's code; the job is failed, not left running.
  b.next_check = {false, "checks_unsupported", "the node's agent does not take checks"};
  auto refused = answer("POST", "/api/nodes/alpha/checks/disk");
  BOOST_TEST(refused.status == 409);
  auto err = json::parse(refused.body)["error"];
  BOOST_TEST(err["code"] == "checks_unsupported");
  BOOST_TEST_REQUIRE(b.jobs_updated.size() == 1u);
  BOOST_TEST(b.jobs_updated.back().id == b.jobs_inserted.back().id);
  BOOST_TEST(err["detail"]["job_id"] == b.jobs_inserted.back().id);
  BOOST_TEST(b.jobs_updated.back().status == "failed");
  BOOST_TEST(b.jobs_updated.back().error == "checks_unsupported: the node's agent does not take checks");
  BOOST_TEST(b.audit_rows.back().result == "refused");

  BOOST_TEST(a.handle(request("POST", "/api/nodes/ghost/checks/disk")).status == 404);
  BOOST_TEST(a.handle(request("GET", "/api/nodes/alpha/checks/disk")).status == 405);
  BOOST_TEST(a.handle(request("POST", "/api/nodes/alpha/checks/disk?x=1")).status == 400);
  // Without [checks] nothing runs.
  BOOST_TEST(error(call("POST", "/api/nodes/alpha/checks/disk"), 404) == "unknown_check");
  BOOST_TEST(data(call("GET", "/api/checks"))["checks"] == json::array());
}

BOOST_AUTO_TEST_CASE(a_check_on_a_filtered_set_is_planned_then_sent_to_each_node) {
  auto o = opts();
  o.checks = {{"disk", {"df", "-h", "/"}, std::chrono::milliseconds(2500), 4096}};
  api a{b, o};
  auto post = [&](const std::string& path, const std::string& body) { return a.handle(request("POST", path, body)); };
  // The check is required, from the config; other actions take none.
  auto missing = post("/api/bulk/nodes.check/plan", R"({"all":true})");
  BOOST_TEST(missing.status == 400);
  BOOST_TEST(json::parse(missing.body)["error"]["message"].get<std::string>().find("needs the check")
             != std::string::npos);
  auto unknown = post("/api/bulk/nodes.check/plan", R"({"all":true,"check":"rm"})");
  BOOST_TEST(unknown.status == 404);
  BOOST_TEST(json::parse(unknown.body)["error"]["code"] == "unknown_check");
  BOOST_TEST(post("/api/bulk/nodes.disable/plan", R"({"all":true,"check":"disk"})").status == 400);
  BOOST_TEST(b.bulks.empty());

  b.bulk_answer.matched = 3;
  b.bulk_answer.token = "tok";
  b.bulk_answer.node_ids = {"id-a", "id-b", "id-c"};
  b.bulk_answer.node_names = {"alpha", "beta", "gamma"};
  auto plan = post("/api/bulk/nodes.check/plan", R"({"filter":{"name_prefix":"a"},"check":"disk"})");
  BOOST_TEST_REQUIRE(plan.status == 200, plan.body);
  auto p = json::parse(plan.body)["data"];
  BOOST_TEST(p["check"] == "disk");
  BOOST_TEST(p["filter"] == json({{"name_prefix", "a"}})); // the check is not a filter field
  BOOST_TEST(b.bulks.back().filter.check == "disk");
  BOOST_TEST(b.checks_sent.empty()); // a plan sends nothing

  // Applied: a job and a check for each node; one has no session, one an older agent.
  b.check_answers["id-b"] = {false, "node_not_connected", "no session"};
  b.check_answers["id-c"] = {false, "checks_unsupported", "older agent"};
  auto rows = b.audit_rows.size();
  auto applied = post("/api/bulk/nodes.check/apply", R"({"filter":{"name_prefix":"a"},"check":"disk","token":"tok"})");
  BOOST_TEST_REQUIRE(applied.status == 200, applied.body);
  auto d = json::parse(applied.body)["data"];
  BOOST_TEST(d["counts"] == json({{"nodes", 3}, {"sent", 1}, {"node_not_connected", 1}, {"checks_unsupported", 1}}));
  BOOST_TEST_REQUIRE(d["jobs"].size() == 3u);
  BOOST_TEST(d["jobs"][0]["node"] == "alpha");
  BOOST_TEST(d["jobs"][0]["sent"] == true);
  BOOST_TEST(d["jobs"][1]["error"] == "node_not_connected: no session");
  BOOST_TEST_REQUIRE(b.checks_sent.size() == 3u);
  for (size_t i = 0; i < 3; ++i) {
    BOOST_TEST(b.checks_sent[i].node_id == b.bulk_answer.node_ids[i]);
    BOOST_TEST(b.checks_sent[i].name == "disk");
    BOOST_TEST(b.jobs_inserted[i].id == d["jobs"][i]["job_id"].get<std::string>());
    BOOST_TEST(b.jobs_inserted[i].type == "check");
  }
  BOOST_TEST(b.jobs_updated.size() == 2u); // the two that did not go out: failed
  // The apply did not carry a ledger row to storage; its row, written after, has the outcome.
  BOOST_TEST(b.bulks.back().audit.action.empty());
  BOOST_TEST_REQUIRE(b.audit_rows.size() == rows + 1);
  BOOST_TEST(b.audit_rows.back().action == "nodes.check");
  BOOST_TEST(json::parse(b.audit_rows.back().counts) == d["counts"]);
  BOOST_TEST(json::parse(b.audit_rows.back().filter) == json({{"check", "disk"}, {"name_prefix", "a"}}));
  // A stale apply sends nothing.
  auto stale = post("/api/bulk/nodes.check/apply", R"({"filter":{"name_prefix":"a"},"check":"disk","token":"old"})");
  BOOST_TEST(stale.status == 409);
  BOOST_TEST(b.checks_sent.size() == 3u);
}

BOOST_AUTO_TEST_CASE(the_node_page_and_an_attempts_lines_for_the_dashboard) {
  data(call("POST", "/api/nodes", R"({"name":"alpha"})"));
  auto id = b.nodes_by_name["alpha"].id;
  b.tracker_now.requests.push_back({"r1", id, 1, "reconnect", true, 3, 4200});
  b.tracker_now.requests.push_back({"r2", "other-node", 1, "reconcile", true, 1, 10});
  auto n = data(call("GET", "/api/nodes/alpha"));
  BOOST_TEST(n["attempts"] == json({{"partial", 4}, {"pending_backfill", 0}, {"complete", 9}, {"failed", 0}}));
  BOOST_TEST_REQUIRE(n["requests"].size() == 1u); // this node's only
  BOOST_TEST(
    n["requests"][0]
    == json({{"request_id", "r1"}, {"trigger", "reconnect"}, {"sent", true}, {"attempts", 3}, {"age_ms", 4200}}));
  // Lines by seq, paged by the last seq.
  auto a = add_attempt("complete");
  auto page = data(call("GET", "/api/attempts/" + a.id + "/logs?limit=3"));
  BOOST_TEST_REQUIRE(page["lines"].size() == 3u);
  BOOST_TEST(page["lines"][0]
             == json({{"seq", 0}, {"ts", "2026-01-09T12:00:00.000Z"}, {"stream", "stdout"}, {"line", "line 0"}}));
  BOOST_TEST(page["next"] == 2);
  auto rest = data(call("GET", "/api/attempts/" + a.id + "/logs?limit=3&after=2"));
  BOOST_TEST(rest["lines"].size() == 2u);
  BOOST_TEST(rest["next"].is_null());
  BOOST_TEST(b.log_queries.back().after_seq == 2);
  BOOST_TEST(error(call("GET", "/api/attempts/" + a.id + "/logs?after=x"), 400) == "bad_request");
  BOOST_TEST(error(call("GET", "/api/attempts/" + a.id + "/logs?limit=0"), 400) == "bad_request");
  BOOST_TEST(error(call("GET", "/api/attempts/" + new_uuid() + "/logs"), 404) == "not_found");
  BOOST_TEST(error(call("GET", "/api/attempts/junk/logs"), 404) == "not_found");
  BOOST_TEST(error(call("POST", "/api/attempts/" + a.id + "/logs"), 405) == "method_not_allowed");
}

BOOST_AUTO_TEST_CASE(the_charts_history_turns_readings_into_rates) {
  BOOST_TEST(data(call("GET", "/api/history"))["points"].empty());
  auto at = [](int64_t s) { return history_sample{"t" + std::to_string(s), 1'000'000 + s * 1000, 0, 0, 0, 0}; };
  auto s0 = at(0), s1 = at(10), s2 = at(20), s3 = at(30), s4 = at(40);
  s0.connected = 3;
  s0.completed = 100, s0.answered = 10, s0.answered_ms = 1000;
  s1.connected = 4;
  s1.completed = 160, s1.answered = 14, s1.answered_ms = 1400 + 400; // 4 answered in 1,200 ms
  s2.connected = 4;
  s2.completed = -1, s2.answered = -1, s2.answered_ms = -1; // the tracker did not answer
  s3.connected = 2;
  s3.completed = 5, s3.answered = 1, s3.answered_ms = 50; // restarted: counters fell
  s4.connected = 2;
  s4.completed = 5, s4.answered = 1, s4.answered_ms = 50; // nothing happened
  for (auto* s : {&s0, &s1, &s2, &s3, &s4})
    a.record_history(*s);
  auto d = data(call("GET", "/api/history"));
  BOOST_TEST(d["every_seconds"] == 10);
  auto& p = d["points"];
  BOOST_TEST_REQUIRE(p.size() == 5u);
  BOOST_TEST(
    p[0]
    == json({{"at", "t0"}, {"connected", 3}, {"completed_per_minute", nullptr}, {"backfill_latency_ms", nullptr}}));
  BOOST_TEST(p[1]["completed_per_minute"] == 360.0); // 60 in 10 s
  BOOST_TEST(p[1]["backfill_latency_ms"] == 200.0);  // 800 ms over 4 answers
  BOOST_TEST(p[2]["completed_per_minute"].is_null());
  BOOST_TEST(p[3]["completed_per_minute"].is_null()); // not a negative rate
  BOOST_TEST(p[3]["backfill_latency_ms"].is_null());
  BOOST_TEST(p[4]["completed_per_minute"] == 0.0);
  BOOST_TEST(p[4]["backfill_latency_ms"].is_null()); // none answered: no latency, not 0
  BOOST_TEST(p[4]["connected"] == 2);
  // A window keeps the newest readings.
  BOOST_TEST(data(call("GET", "/api/history?window=15s"))["points"].size() == 2u);
  for (auto* bad : {"window=2h", "window=0s", "window=x", "since=1"})
    BOOST_TEST(error(call("GET", std::string("/api/history?") + bad), 400) == "bad_request", bad);
  // Only an hour is kept (360 readings).
  for (int i = 0; i < 400; ++i)
    a.record_history(at(100 + i * 10));
  BOOST_TEST(data(call("GET", "/api/history"))["points"].size() == 360u);
}

BOOST_AUTO_TEST_CASE(what_a_request_names_reaches_the_ledger_as_utf8) {
  // PostgreSQL refuses text that is not UTF-8: the row would be lost (found by fuzz_admin_request).
  BOOST_TEST(call("DELETE", "/api/jobs?status=\xa5").status == 400);
  BOOST_TEST(call("POST", "/api/nodes/\xa5x/disable").status == 404);
  BOOST_TEST(call("POST", "/api/\xff").status == 404);
  BOOST_TEST_REQUIRE(b.audit_rows.size() == 3u);
  // The filter is a JSON document the API builds: valid already. The plain text columns (target,
  // error) are made valid where every row is written, storage::append_audit
  // (storage_audit_test/the_ledger_pages_newest_first_and_filters).
  for (auto& row : b.audit_rows)
    BOOST_CHECK_NO_THROW((void)json(row.filter).dump());
  BOOST_TEST(json::parse(b.audit_rows[0].filter)["status"] == "\xef\xbf\xbd");
  BOOST_TEST(b.audit_rows[2].target == "POST /api/\xff");
}

BOOST_AUTO_TEST_CASE(the_audit_actor_names_the_token_without_revealing_it) {
  auto o = opts();
  o.token = "s3cret-token-0123456789";
  api with_token{b, o};
  auto r = request("POST", "/api/nodes", R"({"name":"beta"})", "Bearer s3cret-token-0123456789");
  BOOST_TEST(with_token.handle(r).status == 201);
  BOOST_TEST_REQUIRE(b.audit_rows.size() == 1u);
  BOOST_TEST(b.audit_rows[0].actor == "token:" + sha256_hex("s3cret-token-0123456789").substr(0, 8));
  // A caller without the token is refused before anything, and is not in the ledger (it would
  // let anyone on the network fill the database).
  r.authorization = "Bearer wrong";
  BOOST_TEST(with_token.handle(r).status == 403);
  BOOST_TEST(b.audit_rows.size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_call_the_database_did_not_answer_is_a_failed_row_or_none) {
  b.nodes_by_name["alpha"].name = "alpha";
  b.storage_down = true;
  BOOST_TEST(call("POST", "/api/nodes/alpha/disable").status == 503);
  BOOST_TEST(b.audit_rows.empty()); // the ledger is in the same database: nothing to write to
  b.storage_down = false;
  b.tracker_down = false;
  b.next_order = {order_status::error, "", 0, "the tracker did not answer"};
  auto a = add_attempt("partial");
  BOOST_TEST(call("POST", "/api/attempts/" + a.id + "/backfill").status == 503);
  BOOST_TEST_REQUIRE(b.audit_rows.size() == 1u);
  BOOST_TEST(b.audit_rows[0].result == "failed");
  BOOST_TEST(b.audit_rows[0].error.find("may still have been made") != std::string::npos, b.audit_rows[0].error);
}

BOOST_AUTO_TEST_CASE(the_audit_list_pages_newest_first_and_checks_its_filters) {
  for (int i = 0; i < 5; ++i)
    call("POST", "/api/nodes", R"({"name":"n)" + std::to_string(i) + R"("})");
  auto page = data(call("GET", "/api/audit?limit=3"));
  BOOST_TEST_REQUIRE(page["entries"].size() == 3u);
  BOOST_TEST(page["entries"][0]["id"] == 5);
  BOOST_TEST(page["entries"][0]["target"] == "n4");
  BOOST_TEST(page["entries"][0]["counts"] == json({{"nodes", 1}}));
  BOOST_TEST(page["entries"][0]["error"].is_null());
  BOOST_TEST(page["next"] == "3");
  auto rest = data(call("GET", "/api/audit?limit=3&before=3"));
  BOOST_TEST(rest["entries"].size() == 2u);
  BOOST_TEST(rest["entries"][0]["id"] == 2);
  BOOST_TEST(rest["next"].is_null());
  data(call("GET", "/api/audit?actor=local&action=node.create&result=succeeded&target=n1&since=2026-01-01T00:00:00Z"
                   "&until=2026-01-02T00:00:00Z"));
  BOOST_TEST_REQUIRE(!b.audit_queries.empty());
  auto& q = b.audit_queries.back();
  BOOST_TEST(q.actor == "local");
  BOOST_TEST(q.action == "node.create");
  BOOST_TEST(q.result == "succeeded");
  BOOST_TEST(q.target == "n1");
  BOOST_TEST(q.since == "2026-01-01T00:00:00.000Z");
  for (auto bad : {"/api/audit?result=maybe", "/api/audit?since=yesterday", "/api/audit?before=0",
                   "/api/audit?before=-3", "/api/audit?before=abc", "/api/audit?limit=0", "/api/audit?colour=red"})
    BOOST_TEST(error(call("GET", bad), 400) == "bad_request", bad);
  BOOST_TEST(error(call("DELETE", "/api/audit"), 405) == "method_not_allowed");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(prometheus_writer_escapes_and_accumulates) {
  metrics::text_writer w;
  w.sample("x", 1.5, {{"l", "a\"b\\c\nd"}});
  BOOST_TEST(w.text() == "x{l=\"a\\\"b\\\\c\\nd\"} 1.5\n");
  metrics::histogram h({1, 10});
  h.observe(0.5);
  h.observe(1);
  h.observe(5);
  h.observe(50);
  auto s = h.snapshot();
  BOOST_TEST((s.cumulative == std::vector<uint64_t>{2, 3, 4}));
  BOOST_TEST(s.count == 4u);
  BOOST_TEST(s.sum == 56.5);
}

BOOST_AUTO_TEST_CASE(node_names_and_ages) {
  BOOST_TEST(valid_node_name("build-01.eu_west"));
  BOOST_TEST(!valid_node_name(""));
  BOOST_TEST(!valid_node_name("a b"));
  BOOST_TEST(!valid_node_name(std::string(256, 'a')));
  BOOST_TEST(parse_age("7d").value() == std::chrono::hours(24 * 7));
  BOOST_TEST(parse_age("90m").value() == std::chrono::minutes(90));
  BOOST_TEST(!parse_age("d").has_value());
  BOOST_TEST(!parse_age("-1d").has_value());
  BOOST_TEST(!parse_age("soon").has_value());
}
