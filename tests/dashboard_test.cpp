// The dashboard (admin/dashboard.html) end to end: the real nodecoordd serves it at GET /, headless
// Chromium renders it against the live admin API, and every number the page marks with a
// data-count attribute equals the field of GET /api/overview it names; every node is a row.
//
// Chromium is Debian's (/usr/bin/chromium). Without it the test fails, it never skips.
// Bounds, not delays: Chromium's --virtual-time-budget runs the page's timers on virtual time, so
// the 3 s refresh loop costs no wall-clock time; --dump-dom prints the DOM when the budget is spent.
#define BOOST_TEST_MODULE dashboard_test
#include <boost/test/unit_test.hpp>

#include "common/ids.hpp"
#include "e2e_daemon.hpp"
#include "e2e_node.hpp"
#include "process.hpp"
#include "protocol/codec.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <soci/soci.h>

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace nodecoord::test;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

const std::string chromium_path = "/usr/bin/chromium";
constexpr auto chromium_bound = 120s; // one headless run: start, 10 s of virtual time, dump, exit
constexpr auto overview_bound = 15s;  // overview counts come from a cache refreshed every 5 s

/// Fails the test (never skips) when Chromium is not installed.
void require_chromium() {
  BOOST_TEST_REQUIRE(::access(chromium_path.c_str(), X_OK) == 0, "the dashboard test needs Debian's chromium at "
                                                                   << chromium_path
                                                                   << " (apt-get install chromium); not found");
}

/// GET `path` on the admin API: requires 200 and the envelope {"ok":true,"data":...}; the data.
json get_data(httplib::Client& cli, const std::string& path) {
  auto res = cli.Get(path.c_str());
  BOOST_TEST_REQUIRE(static_cast<bool>(res), "GET " << path << ": " << httplib::to_string(res.error()));
  BOOST_TEST_REQUIRE(res->status == 200, "GET " << path << ": HTTP " << res->status << "\n" << res->body);
  auto body = json::parse(res->body, nullptr, false);
  BOOST_TEST_REQUIRE((body.is_object() && body.value("ok", false) && body.contains("data")),
                     "GET " << path << ": not an ok envelope: " << res->body);
  return body["data"];
}

/// `headless chromium ... --dump-dom url` in its own profile and home; requires exit code 0; the DOM.
std::string dump_dom(const std::string& url) {
  require_chromium();
  temp_dir browser("nodecoord-chromium");
  environment env = clean_env();
  env["HOME"] = browser.path();
  env["XDG_CONFIG_HOME"] = browser.file("config");
  env["XDG_CACHE_HOME"] = browser.file("cache");
  child_process chromium(chromium_path,
                         {"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--user-data-dir=" + browser.file("profile"), "--virtual-time-budget=10000", "--dump-dom",
                          url},
                         env);
  int code = chromium.wait_exit(chromium_bound);
  BOOST_TEST_REQUIRE(code == 0, "chromium exited with " << code << "; stderr:\n" << chromium.stderr_tail());
  auto dom = chromium.stdout_text();
  BOOST_TEST_REQUIRE(!dom.empty(), "chromium printed no DOM; stderr:\n" << chromium.stderr_tail());
  return dom;
}

/// The rendered page: from <body to the first <script (the page's own code, which is not output).
std::string rendered_body(const std::string& dom) {
  auto from = dom.find("<body");
  BOOST_TEST_REQUIRE(from != std::string::npos, "no <body> in the DOM:\n" << dom.substr(0, 4000));
  auto to = dom.find("<script", from);
  return dom.substr(from, to == std::string::npos ? std::string::npos : to - from);
}

/// The start tag of <body>, e.g. `<body data-loaded="1">`.
std::string body_tag(const std::string& body) { return body.substr(0, body.find('>') + 1); }

std::string trim(std::string_view s) {
  const char* ws = " \t\r\n";
  auto b = s.find_first_not_of(ws);
  if (b == std::string_view::npos)
    return {};
  auto e = s.find_last_not_of(ws);
  return std::string(s.substr(b, e - b + 1));
}

/// Every element with a data-count attribute: (key, its text up to the next tag). Plain string
/// search; the attribute may be anywhere in the start tag.
std::vector<std::pair<std::string, std::string>> data_counts(const std::string& body) {
  std::vector<std::pair<std::string, std::string>> out;
  const std::string attr = "data-count=\"";
  for (auto at = body.find(attr); at != std::string::npos; at = body.find(attr, at + 1)) {
    auto key_from = at + attr.size();
    auto key_to = body.find('"', key_from);
    auto tag_end = key_to == std::string::npos ? std::string::npos : body.find('>', key_to);
    auto text_end = tag_end == std::string::npos ? std::string::npos : body.find('<', tag_end);
    BOOST_TEST_REQUIRE(text_end != std::string::npos, "a data-count element is cut off: " << body.substr(at, 200));
    out.emplace_back(body.substr(key_from, key_to - key_from), trim(body.substr(tag_end + 1, text_end - tag_end - 1)));
  }
  return out;
}

/// The overview value a data-count key names: a path of object members ("nodes.online",
/// "connected"), or "jobs.STATUS.TYPE": the count of that pair in the overview's jobs list (0 when
/// the list has none). nullopt when the overview has no such integer.
std::optional<int64_t> overview_value(const json& overview, const std::string& key) {
  if (key.rfind("jobs.", 0) == 0) {
    auto dot = key.find('.', 5);
    if (dot == std::string::npos)
      return std::nullopt;
    const std::string status = key.substr(5, dot - 5), type = key.substr(dot + 1);
    int64_t sum = 0;
    for (const auto& j : overview.at("jobs"))
      if (j.value("status", "") == status && j.value("type", "") == type)
        sum += j.at("count").get<int64_t>();
    return sum;
  }
  const json* v = &overview;
  std::size_t from = 0;
  for (;;) {
    auto dot = key.find('.', from);
    auto part = key.substr(from, dot == std::string::npos ? std::string::npos : dot - from);
    if (!v->is_object() || !v->contains(part))
      return std::nullopt;
    v = &v->at(part);
    if (dot == std::string::npos)
      break;
    from = dot + 1;
  }
  if (!v->is_number_integer())
    return std::nullopt;
  return v->get<int64_t>();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  BOOST_TEST_REQUIRE(in.good(), "cannot read " << path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

} // namespace

// The page as committed: self-contained (nothing fetched from elsewhere) and no API text
// inserted as markup.
BOOST_AUTO_TEST_CASE(dashboard_page_is_self_contained) {
  auto page = read_file(std::string(NODECOORD_SOURCE_DIR) + "/admin/dashboard.html");
  // The SVG namespace is a name, never fetched (the charts' createElementNS): the one allowed URL.
  const std::string svg_ns = "\"http://www.w3.org/2000/svg\"; // a namespace name, never fetched";
  auto ns = page.find(svg_ns);
  BOOST_TEST_REQUIRE(ns != std::string::npos);
  page.erase(ns, svg_ns.size());
  for (std::string_view bad : {"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "http://",
                               "https://", "<script src", "@import", "url("})
    BOOST_TEST(page.find(bad) == std::string::npos, "admin/dashboard.html contains '" << bad << "'");
}

// Every counter the page shows has its own value (1 to 12), so a counter shown in the place of
// another, or a constant, cannot pass (test-gaps 7). Sessions, the request in flight and the
// attempts they carry come from the protocol; the rest is seeded in the database.
BOOST_AUTO_TEST_CASE(dashboard_shows_the_numbers_of_the_api) {
  daemon_under_test d(with(base_settings(), {{"idle_timeout", "\"600s\""}}), "",
                      "[backfill]\nreconnect_rate = 1000\nrequest_timeout = \"1h\"\nreconcile_interval = \"1h\"\n");
  d.start();
  std::vector<node_info> nodes;
  for (int i = 0; i < 12; ++i)
    nodes.push_back(d.add_node("dash-n" + std::to_string(i)));
  auto& partial_node = nodes[0];
  auto& pending_node = nodes[1];
  auto attempts = [](node_client& c, const std::string& tag, int n) {
    for (int i = 0; i < n; ++i)
      c.send_line(nodecoord::protocol::encode_attempt(
        {nodecoord::new_uuid(), tag + "-" + std::to_string(i), "running", "", "", ""}));
    c.heartbeat_roundtrip(0); // committed
  };
  // 7 partial attempts of pending_node, stored in a first session; its second session's reconnect
  // trigger asks for all 7 (one request in flight, never answered).
  {
    auto first = connect_and_hello(d, pending_node);
    d.wait_reconnect_trigger(pending_node.id);
    attempts(first, "pending", 7);
  }
  d.wait_offline(pending_node.name, "socket_closed");
  auto pending = connect_and_hello(d, pending_node);
  BOOST_TEST_REQUIRE(next_request(pending)["attempt_ids"].size() == 7u);
  // 6 partial attempts of partial_node, sent after its reconnect trigger found nothing.
  auto partial = connect_and_hello(d, partial_node);
  d.wait_reconnect_trigger(partial_node.id);
  attempts(partial, "partial", 6);
  // 4 nodes disabled; one more online in the table than connected here (as with another instance).
  for (int i = 8; i < 12; ++i)
    d.disable_node(nodes[size_t(i)].name);
  {
    auto db = d.db();
    auto& sql = *db;
    sql << "UPDATE nodes SET status = 'online' WHERE name = :n", soci::use(nodes[2].name);
    auto add_attempts = [&](const std::string& sync_state, int n) {
      for (int i = 0; i < n; ++i) {
        auto id = nodecoord::new_uuid();
        sql << "INSERT INTO node_task_attempts (id, node_id, task_id, state, sync_state, created_at, updated_at) "
               "SELECT :id, id, :task, 'succeeded', :s, created_at, created_at FROM nodes WHERE name = :n",
          soci::use(id), soci::use(sync_state + "-" + std::to_string(i)), soci::use(sync_state),
          soci::use(nodes[3].name);
      }
    };
    add_attempts("complete", 8);
    add_attempts("failed", 9);
    auto add_jobs = [&](const std::string& type, const std::string& status, int n) {
      for (int i = 0; i < n; ++i) {
        auto id = nodecoord::new_uuid();
        sql << "INSERT INTO jobs (id, type, status, node_id, created_at) "
               "SELECT :id, :t, :s, id, created_at FROM nodes WHERE name = :n",
          soci::use(id), soci::use(type), soci::use(status), soci::use(nodes[4].name);
      }
    };
    add_jobs("backfill", "running", 9); // and the one in flight: 10
    add_jobs("reconcile", "succeeded", 11);
    add_jobs("backfill", "cancelled", 12);
  }

  httplib::Client cli("127.0.0.1", d.admin_port());
  cli.set_connection_timeout(5s);
  cli.set_read_timeout(15s);
  const std::vector<std::pair<std::string, int64_t>> want{{"requests.in_flight", 1},
                                                          {"connected", 2},
                                                          {"nodes.online", 3},
                                                          {"nodes.disabled", 4},
                                                          {"nodes.offline", 5},
                                                          {"attempts.partial", 6},
                                                          {"attempts.pending_backfill", 7},
                                                          {"attempts.complete", 8},
                                                          {"attempts.failed", 9},
                                                          {"jobs.running.backfill", 10},
                                                          {"jobs.succeeded.reconcile", 11},
                                                          {"jobs.cancelled.backfill", 12}};
  json overview;
  bool seen = eventually(
    [&] {
      overview = get_data(cli, "/api/overview");
      for (const auto& [key, value] : want)
        if (overview_value(overview, key) != std::optional<int64_t>(value))
          return false;
      return true;
    },
    overview_bound);
  BOOST_TEST_REQUIRE(seen, "GET /api/overview never showed the seeded counts: " << overview.dump());
  BOOST_TEST_REQUIRE(overview.at("missing").empty(), "parts missing from the overview: " << overview.dump());
  BOOST_TEST_REQUIRE(overview.at("jobs").size() == 3u, "only the seeded jobs: " << overview.dump());

  // GET / is the page itself, without a token.
  auto page = cli.Get("/");
  BOOST_TEST_REQUIRE(static_cast<bool>(page), "GET /: " << httplib::to_string(page.error()));
  BOOST_TEST_REQUIRE(page->status == 200, "GET /: HTTP " << page->status << "\n" << page->body.substr(0, 2000));
  BOOST_TEST(page->get_header_value("Content-Type").rfind("text/html", 0) == 0, page->get_header_value("Content-Type"));
  BOOST_TEST(page->body.find("data-count=\"nodes.online\"") != std::string::npos, "GET / is not the dashboard");

  const auto dom = dump_dom(d.admin_url() + "/");
  const auto body = rendered_body(dom);
  const auto dom_excerpt = body.substr(0, 12000);
  BOOST_TEST_REQUIRE(body_tag(body).find("data-loaded=\"1\"") != std::string::npos,
                     "the page never rendered a complete refresh; " << body_tag(body) << "\n"
                                                                    << dom_excerpt);

  // Every data-count number equals the overview field it names.
  const auto rendered = data_counts(body);
  std::set<std::string> keys;
  for (const auto& [key, text] : rendered) {
    keys.insert(key);
    auto value = overview_value(overview, key);
    BOOST_TEST_CONTEXT("data-count=\"" << key << "\"") {
      BOOST_TEST(value.has_value(), "the overview has no integer for this key: " << overview.dump());
      if (value)
        BOOST_TEST(text == std::to_string(*value));
    }
  }
  std::vector<std::string> expected{"nodes.online",      "nodes.offline",    "nodes.disabled",
                                    "connected",         "attempts.partial", "attempts.pending_backfill",
                                    "attempts.complete", "attempts.failed",  "requests.in_flight"};
  for (const auto& j : overview.at("jobs"))
    expected.push_back("jobs." + j.at("status").get<std::string>() + "." + j.at("type").get<std::string>());
  for (const auto& key : expected)
    BOOST_TEST(keys.count(key) == 1, "no data-count=\"" << key << "\" on the page");
  for (const auto& [key, value] : want)
    BOOST_TEST(keys.count(key) == 1, "the seeded counter " << key << " is not on the page");

  // Every node is a row with its status.
  for (size_t i = 0; i < nodes.size(); ++i) {
    const auto& n = nodes[i].name;
    auto status = i < 3 ? "online" : i < 8 ? "offline" : "disabled";
    auto at = body.find("data-node=\"" + n + "\"");
    BOOST_TEST_CONTEXT("node " << n) {
      BOOST_TEST_REQUIRE(at != std::string::npos, "no data-node row:\n" << dom_excerpt);
      auto row = body.substr(at, body.find("</tr>", at) - at);
      BOOST_TEST(row.find(std::string(">") + status + "<") != std::string::npos, row);
    }
  }

  d.stop();
}

namespace {

/// The text of the element whose start tag carries `attr="key"` (up to the next tag).
std::optional<std::string> text_of(const std::string& body, const std::string& attr, const std::string& key) {
  auto at = body.find(attr + "=\"" + key + "\"");
  if (at == std::string::npos)
    return std::nullopt;
  auto tag_end = body.find('>', at);
  auto text_end = body.find('<', tag_end);
  return trim(body.substr(tag_end + 1, text_end - tag_end - 1));
}

/// How many start tags carry `attr`.
size_t tags_with(const std::string& body, const std::string& attr) {
  size_t n = 0;
  for (auto at = body.find(" " + attr + "=\""); at != std::string::npos; at = body.find(" " + attr + "=\"", at + 1))
    ++n;
  return n;
}

} // namespace

// The node and attempt views (issue 20) and the audit panel, rendered by Chromium from the live
// API: every count, field and row equals what the API answers for it.
BOOST_AUTO_TEST_CASE(dashboard_node_and_attempt_pages_and_the_audit_ledger) {
  daemon_under_test d(base_settings(), "",
                      "[backfill]\nreconnect_rate = 1000\nrequest_timeout = \"1h\"\nreconcile_interval = \"1h\"\n");
  d.start();
  auto n = d.add_node("page-n");
  d.add_node("page-other");
  d.disable_node("page-other");
  std::string with_lines, pruned;
  {
    auto db = d.db();
    auto& sql = *db;
    auto add = [&](const std::string& task, const std::string& sync, int lines) {
      auto id = nodecoord::new_uuid();
      int max_seq = lines - 1;
      soci::indicator ind = lines ? soci::i_ok : soci::i_null;
      sql << "INSERT INTO node_task_attempts (id, node_id, task_id, state, sync_state, log_count, log_max_seq, "
             "created_at, updated_at) SELECT :id, id, :task, 'succeeded', :s, :c, :m, created_at, created_at "
             "FROM nodes WHERE name = 'page-n'",
        soci::use(id), soci::use(task), soci::use(sync), soci::use(lines), soci::use(max_seq, ind);
      for (int i = 0; i < lines; ++i) {
        auto text = "page line " + std::to_string(i) + " <b>&"; // SOCI binds by reference: a named value
        sql << "INSERT INTO attempt_logs (attempt_id, seq, ts, stream, line) VALUES (:a, :s, "
               "'2026-01-09T12:00:00.000Z', 'stdout', :l)",
          soci::use(id), soci::use(i), soci::use(text);
      }
      return id;
    };
    with_lines = add("task-lines", "complete", 150);
    // Pruned (attempts.prune_logs): 40 lines received, none stored.
    pruned = add("task-pruned", "complete", 0);
    sql << "UPDATE node_task_attempts SET log_count = 40, log_max_seq = 39, logs_pruned = 40, "
           "logs_pruned_through = 39 WHERE id = :id",
      soci::use(pruned);
    // A check that failed, and another node's (not on this page).
    for (auto* node : {"page-n", "page-other"}) {
      auto id = nodecoord::new_uuid();
      std::string name = node;
      std::string detail =
        R"({"check":"disk","status":"exited","exit_code":2,"output":"df says <b>&\n","truncated":false})";
      sql << "INSERT INTO jobs (id, type, status, node_id, detail, error, created_at, started_at, finished_at) "
             "SELECT :id, 'check', 'failed', id, :detail, 'exit code 2', created_at, created_at, created_at "
             "FROM nodes WHERE name = :n",
        soci::use(id), soci::use(detail), soci::use(name);
    }
    for (int i = 0; i < 2; ++i)
      add("task-partial-" + std::to_string(i), "partial", 0);
    for (int i = 0; i < 3; ++i)
      add("task-failed-" + std::to_string(i), "failed", 0);
  }
  httplib::Client cli("127.0.0.1", d.admin_port());
  cli.set_read_timeout(15s);
  auto node = get_data(cli, "/api/nodes/page-n");
  auto attempts = get_data(cli, "/api/attempts?limit=50&node=page-n");
  BOOST_TEST_REQUIRE(attempts["attempts"].size() == 7u);

  // The node view.
  auto body = rendered_body(dump_dom(d.admin_url() + "/#node/page-n"));
  BOOST_TEST_REQUIRE(body_tag(body).find("data-loaded=\"1\"") != std::string::npos, body.substr(0, 6000));
  BOOST_TEST(body_tag(body).find("data-view=\"node\"") != std::string::npos, body_tag(body));
  BOOST_TEST(text_of(body, "data-node-field", "status").value_or("(none)") == std::string(node["node"]["status"]));
  BOOST_TEST(text_of(body, "data-node-field", "connected").value_or("(none)") == std::string("no"));
  for (auto& [state, count] : node["attempts"].items())
    BOOST_TEST(text_of(body, "data-node-count", state).value_or("(none)")
                 == std::string(std::to_string(count.get<int64_t>())),
               state);
  BOOST_TEST(node["attempts"]["failed"] == 3);
  BOOST_TEST(tags_with(body, "data-attempt") == 7u);
  for (auto& a : attempts["attempts"])
    BOOST_TEST(body.find("data-attempt=\"" + a["id"].get<std::string>() + "\"") != std::string::npos);
  BOOST_TEST(body.find("href=\"#attempt/" + with_lines + "\"") != std::string::npos, "no link to the attempt");
  // Its checks: the one of this node, its output as text.
  BOOST_TEST(tags_with(body, "data-check") == 1u);
  BOOST_TEST(body.find("df says &lt;b&gt;&amp;") != std::string::npos, "a check's output is not shown as text");
  BOOST_TEST(body.find(">exit code 2<") != std::string::npos);

  // The attempt view: its fields and its first page of 100 lines, text as text.
  auto attempt = get_data(cli, "/api/attempts/" + with_lines)["attempt"];
  auto page = rendered_body(dump_dom(d.admin_url() + "/#attempt/" + with_lines));
  BOOST_TEST_REQUIRE(body_tag(page).find("data-loaded=\"1\"") != std::string::npos, page.substr(0, 6000));
  BOOST_TEST(body_tag(page).find("data-view=\"attempt\"") != std::string::npos);
  for (auto* f : {"task_id", "state", "sync_state", "log_count"}) {
    auto v = attempt[f].is_string() ? attempt[f].get<std::string>() : attempt[f].dump();
    BOOST_TEST(text_of(page, "data-attempt-field", f).value_or("(none)") == std::string(v), f);
  }
  BOOST_TEST(tags_with(page, "data-seq") == 100u);
  BOOST_TEST(page.find("page line 0 &lt;b&gt;&amp;") != std::string::npos, "a line is not shown as text");
  BOOST_TEST(page.find("page line 99 ") != std::string::npos);
  BOOST_TEST(page.find("page line 100 ") == std::string::npos); // the next page
  // A pruned attempt says so, in its fields and where its lines would be.
  auto pruned_page = rendered_body(dump_dom(d.admin_url() + "/#attempt/" + pruned));
  BOOST_TEST_REQUIRE(body_tag(pruned_page).find("data-loaded=\"1\"") != std::string::npos);
  BOOST_TEST(text_of(pruned_page, "data-attempt-field", "log_count").value_or("(none)") == std::string("40"));
  BOOST_TEST(text_of(pruned_page, "data-attempt-field", "logs_pruned").value_or("(none)")
             == std::string("40 (up to seq 39)"));
  BOOST_TEST(pruned_page.find("No lines stored: they were pruned.") != std::string::npos);

  // The overview's audit panel: the ledger's newest rows, in its order.
  auto ledger = get_data(cli, "/api/audit?limit=20")["entries"];
  BOOST_TEST_REQUIRE(ledger.size() == 3u); // two node.create, one node.disable
  auto overview = rendered_body(dump_dom(d.admin_url() + "/"));
  BOOST_TEST_REQUIRE(body_tag(overview).find("data-loaded=\"1\"") != std::string::npos);
  BOOST_TEST(tags_with(overview, "data-audit") == ledger.size());
  size_t last = 0;
  for (auto& e : ledger) {
    auto at = overview.find("data-audit=\"" + std::to_string(e["id"].get<int64_t>()) + "\"");
    BOOST_TEST_REQUIRE(at != std::string::npos, e.dump());
    BOOST_TEST(at > last, "not newest first");
    last = at;
    auto row = overview.substr(at, overview.find("</tr>", at) - at);
    BOOST_TEST(row.find(">" + e["action"].get<std::string>() + "<") != std::string::npos, row);
  }
  BOOST_TEST(overview.find("href=\"#node/page-n\"") != std::string::npos, "no link to the node page");

  // The charts: the readings the daemon kept (one at startup, then every 10 s), as lines.
  auto history = get_data(cli, "/api/history")["points"];
  BOOST_TEST_REQUIRE(!history.empty());
  auto attr_of = [&](const std::string& tag_key, const std::string& attr) -> std::optional<std::string> {
    auto at = overview.find(tag_key);
    if (at == std::string::npos)
      return std::nullopt;
    auto tag_end = overview.find('>', at);
    auto a = overview.find(attr + "=\"", at);
    if (a == std::string::npos || a > tag_end) {
      auto start = overview.rfind('<', at);
      a = overview.find(attr + "=\"", start);
      if (a == std::string::npos || a > tag_end)
        return std::nullopt;
    }
    a += attr.size() + 2;
    return overview.substr(a, overview.find('"', a) - a);
  };
  auto points = attr_of("data-chart=\"connected\"", "data-points");
  BOOST_TEST_REQUIRE(points.has_value(), "no connected chart");
  BOOST_TEST(std::stoul(*points) >= 1u);
  BOOST_TEST(std::stoul(*points) <= history.size()); // taken before this read
  BOOST_TEST(text_of(overview, "data-chart-last", "connected").value_or("(none)") == std::string("0"));
  BOOST_TEST(overview.find("<polyline") != std::string::npos, "no line drawn");
  d.stop();
}
