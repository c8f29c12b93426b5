// Browser safety of the admin API (issue 17, admin/browser_guard.hpp): a page in a browser on the
// coordinator's host can neither change anything (cross-site POST, form bodies) nor read anything
// (DNS rebinding), with or without a token; and reading has no side effects.
#include <boost/test/unit_test.hpp>

#include "admin_api_fixture.hpp"

using namespace admin_api_test;

namespace {

browser_policy policy() {
  browser_policy p;
  p.listen_host = "10.1.2.3";
  p.allowed_hosts = {"coord.example.org"};
  return p;
}

} // namespace

BOOST_AUTO_TEST_SUITE(admin_browser)

BOOST_AUTO_TEST_CASE(host_of_takes_the_name_without_port_in_lower_case) {
  BOOST_TEST(host_of("Coord.Example.ORG:7401") == "coord.example.org");
  BOOST_TEST(host_of("coord.example.org") == "coord.example.org");
  BOOST_TEST(host_of("coord.example.org.:80") == "coord.example.org");
  BOOST_TEST(host_of("[::1]:7401") == "::1");
  BOOST_TEST(host_of("127.0.0.1") == "127.0.0.1");
  BOOST_TEST(host_of(" localhost:1 ") == "localhost");
  // Malformed: an unclosed or non-address bracket, a port that is not a number, two colons.
  for (const char* bad : {"[::1", "[evil.example]:80", "a:b", "a:1:2", "a:", ":80", "a:1234567", ""})
    BOOST_TEST(host_of(bad).empty(), bad);
}

BOOST_AUTO_TEST_CASE(only_addresses_localhost_and_configured_names_are_hosts_of_the_api) {
  auto p = policy();
  for (const char* ok : {"127.0.0.1:7401", "10.1.2.3:7401", "192.0.2.7", "[::1]:7401", "[2001:db8::1]",
                         "localhost:7401", "LOCALHOST", "coord.example.org:7401", "COORD.EXAMPLE.ORG"})
    BOOST_TEST(host_allowed(p, ok), ok);
  // A rebinding page's own name, look-alikes and names that merely contain an allowed one.
  for (const char* bad : {"evil.example:7401", "coord.example.org.evil.example", "evil-coord.example.org",
                          "localhost.evil.example", "127.0.0.1.evil.example", "foo.localhost", "[::1", "x:y", ""})
    BOOST_TEST(!host_allowed(p, bad), bad);
  // The listen host counts when it is a name too.
  p.listen_host = "Coord.Internal";
  BOOST_TEST(host_allowed(p, "coord.internal:7401"));
}

BOOST_FIXTURE_TEST_CASE(a_rebinding_page_reads_nothing_even_before_the_token_check, fixture) {
  auto o = opts();
  o.browser = policy();
  o.token = "s3cret-token-0123456789";
  api guarded{b, o};
  for (const char* path : {"/api/nodes", "/api/overview", "/metrics", "/", "/healthz"}) {
    auto r = request("GET", path, "", "Bearer s3cret-token-0123456789");
    r.host = "evil.example:7401";
    BOOST_TEST(error(guarded.handle(r), 403) == "forbidden_host", path);
    r.host = "127.0.0.1:7401";
    BOOST_TEST(guarded.handle(r).status == 200, path);
  }
  // Without a token configured, the same.
  o.token.clear();
  api open{b, o};
  auto r = request("GET", "/api/nodes");
  r.host = "evil.example";
  BOOST_TEST(error(open.handle(r), 403) == "forbidden_host");
}

BOOST_FIXTURE_TEST_CASE(a_cross_origin_request_changes_nothing, fixture) {
  auto o = opts();
  o.browser = policy();
  api guarded{b, o};
  BOOST_TEST(call("POST", "/api/nodes", R"({"name":"alpha"})").status == 201);
  auto disable = request("POST", "/api/nodes/alpha/disable");
  disable.host = "127.0.0.1:7401";
  for (const char* origin : {"http://evil.example", "null", "http://127.0.0.1:7402", "https://127.0.0.1:7401",
                             "http://127.0.0.1:7401.evil.example"}) {
    disable.origin = origin;
    BOOST_TEST(error(guarded.handle(disable), 403) == "forbidden_origin", origin);
  }
  // An Origin with no Host to compare it with is not ours either.
  disable.host.clear();
  disable.origin = "http://127.0.0.1:7401";
  BOOST_TEST(error(guarded.handle(disable), 403) == "forbidden_origin");
  BOOST_TEST(b.nodes_by_name["alpha"].status == "offline");
  // A cross-origin read is refused the same way.
  auto read = request("GET", "/api/nodes");
  read.host = "127.0.0.1:7401";
  read.origin = "http://evil.example";
  BOOST_TEST(error(guarded.handle(read), 403) == "forbidden_origin");
  // The dashboard's own origin (the browser sends SCHEME://HOST, case as typed) is fine.
  disable.host = "Coord.example.org:7401";
  disable.origin = "http://coord.example.org:7401";
  BOOST_TEST(guarded.handle(disable).status == 200);
  BOOST_TEST(b.nodes_by_name["alpha"].status == "disabled");
}

BOOST_FIXTURE_TEST_CASE(mutations_need_a_json_content_type, fixture) {
  auto o = opts();
  o.browser = policy();
  api guarded{b, o};
  BOOST_TEST(call("POST", "/api/nodes", R"({"name":"alpha"})").status == 201);
  // What a cross-site form (or fetch without a preflight) can send, and no type at all.
  for (const char* type : {"application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain",
                           "text/plain; charset=utf-8", ""}) {
    auto create = request("POST", "/api/nodes", R"({"name":"beta"})");
    create.content_type = type;
    BOOST_TEST(error(guarded.handle(create), 415) == "unsupported_media_type", type);
    auto rotate = request("POST", "/api/nodes/alpha/rotate-key");
    rotate.content_type = type;
    BOOST_TEST(error(guarded.handle(rotate), 415) == "unsupported_media_type", type);
    auto prune = request("DELETE", "/api/jobs?status=succeeded");
    prune.content_type = type;
    BOOST_TEST(error(guarded.handle(prune), 415) == "unsupported_media_type", type);
  }
  BOOST_TEST(b.nodes_by_name.count("beta") == 0u);
  BOOST_TEST(b.key_sets.empty());
  BOOST_TEST(b.prunes.empty());
  // JSON with parameters and in any case; JSON Lines for a bundle.
  auto create = request("POST", "/api/nodes", R"({"name":"beta"})");
  create.content_type = "Application/JSON; charset=utf-8";
  BOOST_TEST(guarded.handle(create).status == 201);
  auto import = request("POST", "/api/bundle?dry_run=1", "");
  import.content_type = "application/x-ndjson";
  BOOST_TEST(guarded.handle(import).status != 415);
  // Reads need no content type.
  auto read = request("GET", "/api/nodes");
  BOOST_TEST(guarded.handle(read).status == 200);
}

// GET /api/attempts/ID used to ask the node for a partial attempt: a page could make a browser
// start backfills by reading. Now only POST .../backfill does.
BOOST_FIXTURE_TEST_CASE(reading_a_partial_attempt_asks_nothing, fixture) {
  auto a = add_attempt("partial", "node-a");
  b.live.push_back({"node-a", "a", 1, "", ""});
  auto read = data(call("GET", "/api/attempts/" + a.id));
  BOOST_TEST(read["attempt"]["id"] == a.id);
  BOOST_TEST(read["attempt"]["sync_state"] == "partial");
  BOOST_TEST(!read.contains("backfill"));
  BOOST_TEST(b.backfills.empty());
  BOOST_TEST(call("POST", "/api/attempts/" + a.id + "/backfill").status == 202);
  BOOST_TEST(b.backfills == std::vector<std::string>{a.id});
}

BOOST_AUTO_TEST_SUITE_END()
