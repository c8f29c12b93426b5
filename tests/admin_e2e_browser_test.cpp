// Browser safety of the admin API end to end (issue 17): the real daemon refuses what a web page
// in a browser on its host could send (cross-site POST, form bodies, a rebinding page's Host),
// while nodecoordctl, the dashboard's own origin and names in admin.allowed_hosts keep working.
// The rules one by one are in admin_browser_test.
#include <boost/test/unit_test.hpp>

#include "admin_e2e_support.hpp"

using namespace admin_e2e;

namespace {

std::string code_of(const httplib::Result& r) {
  BOOST_TEST_REQUIRE(static_cast<bool>(r), "no answer: " << httplib::to_string(r.error()));
  auto j = json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.contains("error"))
    return "status " + std::to_string(r->status);
  return std::to_string(r->status) + " " + j["error"]["code"].get<std::string>();
}

} // namespace

BOOST_AUTO_TEST_CASE(a_browser_page_can_neither_change_nor_read_anything) {
  daemon_under_test d(base_settings(), "", "", {{"allowed_hosts", R"(["coord.example.org"])"}});
  auto alpha = d.add_node("alpha");
  httplib::Client cli("127.0.0.1", d.admin_port());
  cli.set_read_timeout(30, 0);
  const std::string port = std::to_string(d.admin_port());

  // Cross-site POSTs: a form (urlencoded, multipart, text/plain) and a fetch from another origin.
  BOOST_TEST(code_of(cli.Post("/api/nodes/alpha/rotate-key", "a=b", "application/x-www-form-urlencoded"))
             == "415 unsupported_media_type");
  BOOST_TEST(code_of(cli.Post("/api/nodes/alpha/disable", "{}", "text/plain")) == "415 unsupported_media_type");
  BOOST_TEST(
    code_of(cli.Post("/api/nodes", "--x\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbeta\r\n--x--\r\n",
                     "multipart/form-data; boundary=x"))
    == "415 unsupported_media_type");
  BOOST_TEST(code_of(cli.Post("/api/nodes/alpha/disable", {{"Origin", "http://evil.example"}}, "", "application/json"))
             == "403 forbidden_origin");
  BOOST_TEST(code_of(cli.Delete("/api/jobs?status=succeeded", {{"Origin", "null"}}, "", "application/json"))
             == "403 forbidden_origin");
  // DNS rebinding: the browser sends the attacker's name as Host; reads are refused too.
  BOOST_TEST(code_of(cli.Get("/api/nodes", {{"Host", "evil.example:" + port}})) == "403 forbidden_host");
  BOOST_TEST(code_of(cli.Get("/", {{"Host", "evil.example:" + port}})) == "403 forbidden_host");

  // Nothing changed: the node is not disabled and its key still authenticates.
  auto shown = d.ctl({"node", "show", "alpha"});
  BOOST_TEST(shown["node"]["status"] == "offline", shown.dump());
  BOOST_TEST(d.ctl({"node", "list"}).size() == 1u);
  auto c = connect_and_hello(d, alpha);
  c.heartbeat_roundtrip(1);

  // The API's own origin (the dashboard), a configured name, and nodecoordctl work.
  auto own = cli.Get("/api/nodes", {{"Origin", "http://127.0.0.1:" + port}});
  BOOST_TEST(code_of(own) == "status 200");
  auto named = cli.Get("/api/overview", {{"Host", "Coord.Example.Org:" + port}});
  BOOST_TEST(code_of(named) == "status 200");
  auto page = cli.Get("/", {{"Host", "localhost:" + port}});
  BOOST_TEST_REQUIRE(static_cast<bool>(page));
  BOOST_TEST(page->status == 200);
  auto pruned = d.ctl({"jobs", "prune", "--status", "succeeded"});
  BOOST_TEST(pruned.contains("deleted"), pruned.dump());
  auto disabled = cli.Post("/api/nodes/alpha/disable", {{"Origin", "http://127.0.0.1:" + port}}, "",
                           "application/json; charset=utf-8");
  BOOST_TEST(code_of(disabled) == "status 200");
  BOOST_TEST(d.ctl({"node", "show", "alpha"})["node"]["status"] == "disabled");
  d.stop();
}
