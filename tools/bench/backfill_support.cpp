#include "tools/bench/backfill_support.hpp"

namespace nodecoord::bench {

load_options socket_options(const socket_args& s) {
  load_options o;
  auto list = parse_coordinators(s.coordinator);
  o.coordinator = list.front();
  if (list.size() > 1)
    o.coordinators = list;
  o.keys = read_keys(s.keys_path, s.nodes, s.skip);
  if (s.concurrency == 0)
    throw usage_error("--concurrency must be at least 1");
  o.concurrency = s.concurrency;
  o.sources = choose_sources(s.sources, o.coordinator, s.nodes);
  o.welcome_timeout_ns = duration_ns(s.welcome_timeout, "--welcome-timeout");
  o.ack_timeout_ns = duration_ns(s.ack_timeout, "--ack-timeout");
  o.agent = "nodecoord-bench";
  o.max_wait_ns = 5'000'000; // check the poller's verdict at least every 5 ms
  if (s.tls) {
    std::string why;
    o.tls = tls::context::client({s.ca_file, s.cert_file, s.key_file}, why);
    if (!o.tls)
      throw usage_error("--tls: " + why);
    auto first = s.coordinator.substr(0, s.coordinator.find(','));
    o.tls_server_name = s.server_name.empty() ? first.substr(0, first.rfind(':')) : s.server_name;
    o.tls_resume = !s.no_resume;
  } else if (!s.ca_file.empty() || !s.cert_file.empty() || !s.key_file.empty() || !s.server_name.empty()) {
    throw usage_error("--ca-file, --server-name and --tls-*-file need --tls");
  }
  return o;
}

std::vector<std::string> names_of(const std::vector<node_key>& keys) {
  std::vector<std::string> out;
  out.reserve(keys.size());
  for (auto& k : keys)
    out.push_back(k.name);
  return out;
}

std::vector<std::string> node_ids(const std::vector<bench_node>& nodes) {
  std::vector<std::string> out;
  out.reserve(nodes.size());
  for (auto& n : nodes)
    out.push_back(n.id);
  return out;
}

int64_t sum_over_nodes(storage::database& db, const std::vector<bench_node>& nodes, const std::string& expr,
                       const std::string& table, const std::string& where) {
  int64_t total = 0;
  for (auto& chunk : storage::chunks(node_ids(nodes), in_chunk))
    storage::query(db.session(), "SELECT " + expr + " FROM " + table + " WHERE node_id IN "
                                   + storage::query::in_list("n", chunk.size())
                                   + (where.empty() ? "" : " AND " + where))
      .bind_list("n", chunk)
      .each([&](const soci::row& r) { total += storage::col_int(r, 0); });
  return total;
}

int64_t online_nodes(storage::database& db, const std::vector<bench_node>& nodes) {
  int64_t total = 0;
  for (auto& chunk : storage::chunks(node_ids(nodes), in_chunk))
    storage::query(db.session(), "SELECT COUNT(*) FROM nodes WHERE status = 'online' AND id IN "
                                   + storage::query::in_list("n", chunk.size()))
      .bind_list("n", chunk)
      .each([&](const soci::row& r) { total += storage::col_int(r, 0); });
  return total;
}

std::string states_text(const std::map<std::string, int64_t>& counts) {
  std::ostringstream s;
  bool first = true;
  for (auto& [state, n] : counts) {
    s << (first ? "" : ", ") << state << " " << n;
    first = false;
  }
  return first ? std::string("none") : s.str();
}

int64_t get(const std::map<std::string, int64_t>& m, const std::string& k) {
  auto i = m.find(k);
  return i == m.end() ? 0 : i->second;
}

double secs(int64_t ns) { return static_cast<double>(ns) / 1e9; }

bool serve_until(load& l, int64_t deadline_ns, int64_t step_ns, const std::function<bool()>& done) {
  while (!done()) {
    auto now = now_ns();
    if (now >= deadline_ns)
      return false;
    l.run_until(std::min(deadline_ns, now + step_ns));
  }
  return true;
}

job_figures read_jobs(storage::database& db, const std::vector<std::string>& ids) {
  job_figures out;
  const auto& dl = db.sql_dialect();
  for (auto& chunk : storage::chunks(ids, in_chunk))
    storage::query(db.session(), "SELECT status, " + dl.ts("created_at") + ", " + dl.ts("finished_at")
                                   + " FROM jobs WHERE id IN " + storage::query::in_list("j", chunk.size()))
      .bind_list("j", chunk)
      .each([&](const soci::row& r) {
        ++out.found;
        ++out.by_status[storage::col_str(r, 0)];
        auto c = parse_time(storage::col_str(r, 1));
        auto f = parse_time(storage::col_str(r, 2));
        if (c && f)
          out.latency_us.push_back(static_cast<double>((*f - *c).count()) * 1000.0);
      });
  return out;
}

void poll_rows(report& r, const count_poller& p) {
  auto samples = p.samples();
  std::vector<double> q;
  q.reserve(samples.size());
  for (auto& s : samples)
    q.push_back(static_cast<double>(s.finished_ns - s.started_ns) / 1000.0);
  std::sort(q.begin(), q.end());
  r.number("database poll interval", "poll_interval_ms", static_cast<double>(p.interval_ns()) / 1e6, 1, "ms");
  r.count("database polls", "polls", samples.size());
  r.number("database poll query p50", "poll_query_p50_ms", percentile(q, 50) / 1000.0, 2, "ms");
  r.number("database poll query max", "poll_query_max_ms", q.empty() ? 0.0 : q.back() / 1000.0, 2, "ms");
}

void check_database_is_ours(storage::database& db, const std::vector<bench_node>& nodes) {
  auto pending =
    query_int(db.session(), "SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'pending_backfill'");
  if (pending > 0)
    throw usage_error("the database holds " + std::to_string(pending)
                      + " pending_backfill attempts of other nodes (is another daemon or bench using it?); "
                        "the backfill scenarios poll whole-table counts and need a database without them");
  (void)nodes;
}

} // namespace nodecoord::bench
