#include "tools/bench/db.hpp"

#include "common/api_key.hpp"
#include "common/clock.hpp"
#include "common/ids.hpp"
#include "storage/batch_executor.hpp"
#include "storage/operations.hpp"
#include "storage/query.hpp"
#include "tools/bench/load.hpp"
#include "tools/bench/util.hpp"

#include <cstdlib>

#include <soci/soci.h>

#include <algorithm>
#include <deque>
#include <map>
#include <span>

namespace nodecoord::bench {

namespace {

constexpr size_t in_chunk = 500; // bounded IN lists, as storage does

/// BEGIN (IMMEDIATE on SQLite: take the write lock up front, as the storage actor does).
void begin(storage::database& db) {
  db.session() << (db.url().kind == storage::backend::sqlite ? "BEGIN IMMEDIATE" : "BEGIN");
}

template <class F>
void in_transaction(storage::database& db, F&& f) {
  begin(db);
  try {
    f();
    db.session() << "COMMIT";
  } catch (...) {
    try {
      db.session() << "ROLLBACK";
    } catch (...) {
    }
    throw;
  }
}

std::vector<bench_node> lookup(storage::database& db, const std::vector<std::string>& names) {
  std::map<std::string, bench_node> found;
  for (auto& chunk : storage::chunks(names, in_chunk)) {
    storage::query(db.session(), "SELECT id, name, session_epoch FROM nodes WHERE name IN "
                                   + storage::query::in_list("n", chunk.size()))
      .bind_list("n", chunk)
      .each([&](const soci::row& r) {
        bench_node n{storage::col_str(r, 1), storage::col_str(r, 0), storage::col_int(r, 2)};
        found[n.name] = n;
      });
  }
  std::vector<bench_node> out;
  out.reserve(names.size());
  for (auto& name : names) {
    auto i = found.find(name);
    out.push_back(i == found.end() ? bench_node{name, "", 0} : i->second);
  }
  return out;
}

std::vector<std::string> ids_of(const std::vector<bench_node>& nodes) {
  std::vector<std::string> ids;
  ids.reserve(nodes.size());
  for (auto& n : nodes)
    ids.push_back(n.id);
  return ids;
}

} // namespace

std::vector<bench_node> ensure_nodes(storage::database& db, const std::string& prefix, size_t n) {
  std::vector<std::string> names;
  names.reserve(n);
  for (size_t i = 0; i < n; ++i)
    names.push_back(prefix + std::to_string(i));
  auto nodes = lookup(db, names);
  std::vector<storage::batch_item> items;
  for (auto& node : nodes) {
    if (!node.id.empty())
      continue;
    auto key = generate_api_key();
    items.push_back({[name = node.name, key](storage::op_context& c) {
                       auto made = storage::execute(c, storage::node_create{name, "", key.key_id, key.key_hash});
                       if (!made.created)
                         throw std::runtime_error("node " + name + " could not be created");
                     },
                     {},
                     {}});
  }
  if (!items.empty()) {
    storage::batch_executor exec(db);
    auto rep = exec.execute(std::span<storage::batch_item>(items));
    if (rep.stop != storage::stop_reason::none)
      throw std::runtime_error("database unavailable: " + rep.stop_message);
    for (auto& e : rep.errors)
      if (!e.empty())
        throw std::runtime_error("creating the bench nodes failed: " + e);
    nodes = lookup(db, names);
  }
  return nodes;
}

std::vector<bench_node> find_nodes(storage::database& db, const std::vector<std::string>& names) {
  auto nodes = lookup(db, names);
  for (auto& n : nodes)
    if (n.id.empty())
      throw usage_error("node " + n.name + " is not in the database (run 'provision' with this configuration)");
  return nodes;
}

void server_stats_reset(storage::database& db) {
  if (std::getenv("NODECOORD_BENCH_STATS"))
    db.session() << "SELECT bench_stats_reset()";
}

void server_stats_save(storage::database& db) {
  if (std::getenv("NODECOORD_BENCH_STATS"))
    db.session() << "SELECT bench_stats_save()";
}

cleared clear_nodes(storage::database& db, const std::vector<bench_node>& nodes) {
  cleared out;
  auto ids = ids_of(nodes);
  in_transaction(db, [&] {
    for (auto& chunk : storage::chunks(ids, in_chunk)) {
      auto list = storage::query::in_list("n", chunk.size());
      out.log_lines += storage::query(db.session(), "DELETE FROM attempt_logs WHERE attempt_id IN "
                                                    "(SELECT id FROM node_task_attempts WHERE node_id IN "
                                                      + list + ")")
                         .bind_list("n", chunk)
                         .exec();
      out.attempts += storage::query(db.session(), "DELETE FROM node_task_attempts WHERE node_id IN " + list)
                        .bind_list("n", chunk)
                        .exec();
      out.jobs +=
        storage::query(db.session(), "DELETE FROM jobs WHERE node_id IN " + list).bind_list("n", chunk).exec();
    }
  });
  return out;
}

attempt_table new_attempt_ids(size_t nodes, size_t per_node) {
  attempt_table t(nodes);
  for (auto& row : t) {
    row.reserve(per_node);
    for (size_t j = 0; j < per_node; ++j)
      row.push_back(new_uuid());
  }
  return t;
}

std::string bench_line(const std::string& attempt_id, int64_t seq, size_t bytes) {
  std::string s = "bench " + attempt_id + " line " + std::to_string(seq) + " ";
  if (s.size() < bytes)
    s.append(bytes - s.size(), 'x');
  return s;
}

int64_t seed_attempts(storage::database& db, const std::vector<bench_node>& nodes, const attempt_table& ids,
                      const seed_spec& spec) {
  auto& sql = db.session();
  auto now = format_time(db.now());
  int64_t rows = 0;
  in_transaction(db, [&] {
    row_inserter attempts(sql,
                          "node_task_attempts (id, node_id, task_id, state, sync_state, log_count, log_max_seq, "
                          "started_at, finished_at, created_at, updated_at)",
                          11, 90);
    row_inserter logs(sql, "attempt_logs (attempt_id, seq, ts, stream, line)", 5, 200);
    for (size_t i = 0; i < nodes.size(); ++i) {
      for (size_t j = 0; j < ids[i].size(); ++j) {
        auto& id = ids[i][j];
        auto n = static_cast<int64_t>(spec.logs);
        attempts.add({id, nodes[i].id, "bench-task-" + std::to_string(j), std::string("succeeded"),
                      std::string("partial"), n, n > 0 ? value(n - 1) : value(std::monostate{}), now, now, now, now});
        for (int64_t s = 0; s < n; ++s)
          logs.add({id, s, now, std::string("stdout"), bench_line(id, s, spec.line_bytes)});
      }
      // Attempts first: log rows reference them.
      if (logs.buffered() >= 4000 || attempts.buffered() >= 2000) {
        attempts.flush();
        logs.flush();
      }
    }
    attempts.flush();
    logs.flush();
    rows = attempts.written() + logs.written();
  });
  return rows;
}

std::map<std::string, int64_t> state_counts(storage::database& db, const std::vector<bench_node>& nodes) {
  std::map<std::string, int64_t> out;
  for (auto& chunk : storage::chunks(ids_of(nodes), in_chunk))
    storage::query(db.session(), "SELECT sync_state, COUNT(*) FROM node_task_attempts WHERE node_id IN "
                                   + storage::query::in_list("n", chunk.size()) + " GROUP BY sync_state")
      .bind_list("n", chunk)
      .each([&](const soci::row& r) { out[storage::col_str(r, 0)] += storage::col_int(r, 1); });
  return out;
}

int64_t query_int(soci::session& sql, const std::string& text) {
  int64_t v = 0;
  storage::query(sql, text).each([&](const soci::row& r) { v = storage::col_int(r, 0); });
  return v;
}

void settle_tables(storage::database& db) {
  if (db.url().kind != storage::backend::postgresql)
    return;
  db.session() << "VACUUM ANALYZE node_task_attempts, attempt_logs, jobs";
}

// --- row_inserter ------------------------------------------------------------------------------

row_inserter::row_inserter(soci::session& sql, std::string head, size_t columns, size_t rows_per_statement,
                           std::vector<std::string> casts)
  : sql_(sql), head_(std::move(head)), columns_(columns), per_statement_(std::max<size_t>(rows_per_statement, 1)),
    casts_(std::move(casts)), sqlite_(sql.get_backend_name() == "sqlite3") {}

void row_inserter::add(std::vector<value> row) {
  if (row.size() != columns_)
    throw std::logic_error("row_inserter: " + std::to_string(row.size()) + " values for " + std::to_string(columns_)
                           + " columns");
  rows_.push_back(std::move(row));
}

int64_t row_inserter::flush() {
  int64_t n = 0;
  for (size_t first = 0; first < rows_.size(); first += per_statement_) {
    size_t last = std::min(rows_.size(), first + per_statement_);
    std::string text = "INSERT INTO " + head_ + " VALUES ";
    for (size_t r = first; r < last; ++r) {
      text += r == first ? "(" : ", (";
      for (size_t c = 0; c < columns_; ++c) {
        // SQLite: anonymous parameters (a named one costs a linear scan of the names at parse time).
        auto name = sqlite_ ? std::string("?") : ":p" + std::to_string(r - first) + "_" + std::to_string(c);
        std::string expr = name;
        if (c < casts_.size() && !casts_[c].empty()) {
          expr = casts_[c];
          expr.replace(expr.find('?'), 1, name);
        }
        text += (c ? ", " : "") + expr;
      }
      text += ")";
    }
    // Bound by position: SQLite looks a named parameter up by a linear scan, so binding hundreds
    // of them by name costs more than the insert itself.
    std::deque<std::string> strings;
    std::deque<long long> ints;
    std::deque<soci::indicator> inds;
    soci::statement st(sql_);
    st.alloc();
    st.prepare(text, soci::details::st_one_time_query);
    for (size_t r = first; r < last; ++r)
      for (size_t c = 0; c < columns_; ++c) {
        auto& v = rows_[r][c];
        if (auto* sv = std::get_if<std::string>(&v)) {
          strings.push_back(*sv);
          inds.push_back(soci::i_ok);
          st.exchange(soci::use(strings.back(), inds.back()));
        } else if (auto* iv = std::get_if<int64_t>(&v)) {
          ints.push_back(*iv);
          inds.push_back(soci::i_ok);
          st.exchange(soci::use(ints.back(), inds.back()));
        } else {
          strings.emplace_back();
          inds.push_back(soci::i_null);
          st.exchange(soci::use(strings.back(), inds.back()));
        }
      }
    st.define_and_bind();
    st.execute(true);
    n += st.get_affected_rows();
  }
  rows_.clear();
  written_ += n;
  return n;
}

// --- count_poller ------------------------------------------------------------------------------

count_poller::count_poller(storage::storage_url url, std::string count_sql, int64_t interval_ns)
  : url_(std::move(url)), sql_text_(std::move(count_sql)), interval_ns_(interval_ns) {}

count_poller::~count_poller() { stop(); }

void count_poller::start() {
  db_ = std::make_unique<storage::database>(url_, system_now);
  db_->connect();
  query_int(db_->session(), sql_text_); // fails here, not in the thread, if the query is wrong
  stop_ = false;
  thread_ = std::thread([this] { run(); });
}

void count_poller::stop() {
  stop_ = true;
  if (thread_.joinable())
    thread_.join();
}

void count_poller::run() {
  try {
    long long v = 0;
    soci::indicator ind = soci::i_ok;
    soci::statement st = (db_->session().prepare << sql_text_, soci::into(v, ind));
    while (!stop_) {
      auto t0 = now_ns();
      st.execute(true);
      auto t1 = now_ns();
      {
        std::lock_guard lock(mu_);
        samples_.push_back({t0, t1, ind == soci::i_null ? 0 : static_cast<int64_t>(v)});
      }
      cv_.notify_all();
      auto next = t0 + interval_ns_;
      auto now = now_ns();
      if (next > now)
        sleep_ns(next - now);
    }
  } catch (const std::exception& e) {
    std::lock_guard lock(mu_);
    error_ = e.what();
  }
  cv_.notify_all();
}

std::optional<count_poller::sample> count_poller::latest() const {
  std::lock_guard lock(mu_);
  if (samples_.empty())
    return std::nullopt;
  return samples_.back();
}

std::optional<count_poller::sample> count_poller::wait_for(const std::function<bool(int64_t)>& pred, int64_t since_ns,
                                                           int64_t deadline_ns) {
  std::unique_lock lock(mu_);
  size_t next = 0;
  for (;;) {
    for (; next < samples_.size(); ++next)
      if (samples_[next].started_ns >= since_ns && pred(samples_[next].value))
        return samples_[next];
    if (!error_.empty() || now_ns() >= deadline_ns)
      return std::nullopt;
    cv_.wait_for(lock, std::chrono::milliseconds(20));
  }
}

std::vector<count_poller::sample> count_poller::samples() const {
  std::lock_guard lock(mu_);
  return samples_;
}

std::string count_poller::error() const {
  std::lock_guard lock(mu_);
  return error_;
}

} // namespace nodecoord::bench
