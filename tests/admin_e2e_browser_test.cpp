// Browser safety of the admin API end to end (issue 17): the real daemon refuses what a web page
// in a browser on its host could send (cross-site POST, form bodies, a rebinding page's Host),
// while nodecoordctl, the dashboard's own origin and names in admin.allowed_hosts keep working.
// The rules one by one are in admin_browser_test.
#include <boost/test/unit_test.hpp>

#include "admin_e2e_support.hpp"
#include "test_certs.hpp"

using namespace admin_e2e;

namespace {

/// The output of a shell command (openssl), for the certificate a port serves.
std::string shell(const std::string& cmd) {
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[512];
    while (size_t n = fread(buf, 1, sizeof buf, p))
      out.append(buf, n);
    pclose(p);
  }
  return out;
}

std::string served_fingerprint(uint16_t port) {
  return shell("openssl s_client -connect 127.0.0.1:" + std::to_string(port)
               + " </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null");
}

std::string file_fingerprint(const std::string& crt) {
  return shell("openssl x509 -in '" + crt + "' -noout -fingerprint -sha256");
}

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

// Issue 17: the admin API over HTTPS ([admin.tls]) with nodecoordctl verifying it; a plain HTTP
// request to the HTTPS port gets nothing useful, a client without the CA is refused clearly.
BOOST_AUTO_TEST_CASE(the_admin_api_over_https_with_nodecoordctl) {
  const auto& certs = test::test_certs::get();
  daemon_under_test d(base_settings(), "",
                      "[admin.tls]\ncert_file = \"" + certs.crt("server") + "\"\nkey_file = \"" + certs.key("server")
                        + "\"\n");
  d.start();
  BOOST_TEST(d.process().stderr_text().find("admin listening") != std::string::npos);
  const std::string https = "https://127.0.0.1:" + std::to_string(d.admin_port());
  // nodecoordctl with the CA: provisions and reads over HTTPS.
  auto added = ctl_any({"--admin", https, "--ca-file", certs.crt("ca"), "--json", "node", "add", "alpha"});
  BOOST_TEST_REQUIRE(added.code == 0, added.err);
  BOOST_TEST(json::parse(added.out)["key"].get<std::string>().rfind("nck_", 0) == 0u);
  auto env = clean_env();
  env["NODECOORD_CA_FILE"] = certs.crt("ca");
  auto listed = ctl_any({"--admin", https, "node", "list"}, env);
  BOOST_TEST(listed.code == 0, listed.err);
  BOOST_TEST(listed.out.find("alpha") != std::string::npos, listed.out);
  // Without the CA (the system trust store does not know the test CA), or with another one.
  auto untrusted = ctl_any({"--admin", https, "status"});
  BOOST_TEST(untrusted.code == 1, untrusted.err);
  BOOST_TEST(untrusted.err.find("over TLS") != std::string::npos, untrusted.err);
  BOOST_TEST(untrusted.err.find("--ca-file") != std::string::npos, untrusted.err);
  auto other = ctl_any({"--admin", https, "--ca-file", certs.crt("other-ca"), "status"});
  BOOST_TEST(other.code == 1, other.err);
  // Plain HTTP to the HTTPS port: no answer from the API.
  auto plain = ctl_any({"--admin", "http://127.0.0.1:" + std::to_string(d.admin_port()), "status"});
  BOOST_TEST(plain.code != 0, plain.out);
  // The browser checks hold over HTTPS too: the API's own origin is https://HOST.
  httplib::Client cli(https);
  cli.set_ca_cert_path(certs.crt("ca").c_str());
  cli.enable_server_certificate_verification(true);
  auto own = cli.Post("/api/nodes/alpha/disable", {{"Origin", "https://127.0.0.1:" + std::to_string(d.admin_port())}},
                      "", "application/json");
  BOOST_TEST_REQUIRE(static_cast<bool>(own), httplib::to_string(own.error()));
  BOOST_TEST(own->status == 200, own->body);
  auto downgraded =
    cli.Post("/api/nodes/alpha/enable", {{"Origin", "http://127.0.0.1:" + std::to_string(d.admin_port())}}, "",
             "application/json");
  BOOST_TEST_REQUIRE(static_cast<bool>(downgraded));
  BOOST_TEST(downgraded->status == 403, downgraded->body);
  // SIGHUP with another certificate: new connections get it, without a restart.
  BOOST_TEST(served_fingerprint(d.admin_port()) == file_fingerprint(certs.crt("server")));
  {
    std::ifstream in(d.config());
    std::stringstream text;
    text << in.rdbuf();
    auto s = text.str();
    for (auto [from, to] :
         {std::pair{certs.crt("server"), certs.crt("server2")}, {certs.key("server"), certs.key("server2")}})
      s.replace(s.find(from), from.size(), to);
    std::ofstream(d.config()) << s;
  }
  d.process().send_signal(SIGHUP);
  BOOST_TEST(d.process().wait_for_stderr("table=admin.tls", 10s), d.process().stderr_tail());
  BOOST_TEST(served_fingerprint(d.admin_port()) == file_fingerprint(certs.crt("server2")));
  BOOST_TEST(!file_fingerprint(certs.crt("server2")).empty());
  BOOST_TEST(ctl_any({"--admin", https, "status"}, env).code == 0);
  d.stop();
}
