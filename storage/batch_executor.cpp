#include "storage/batch_executor.hpp"

#include "common/ids.hpp"
#include "storage/query.hpp"

#include <soci/soci.h>

#include <chrono>

namespace nodecoord::storage {

batch_executor::batch_executor(database& db) : db_(db), instance_(new_uuid()) {}

namespace {

int64_t single_int(soci::session& sql, const std::string& text) {
  int64_t v = 0;
  query(sql, text).each([&](const soci::row& r) { v = col_int(r, 0); });
  return v;
}

} // namespace

size_t batch_executor::resolve_in_doubt() {
  auto d = *doubt_;
  int64_t token = -1;
  query(db_.session(), "SELECT token FROM storage_commits WHERE instance = :i")
    .bind("i", instance_)
    .each([&](const soci::row& r) { token = col_int(r, 0); });
  doubt_.reset();
  if (token == d.token) {
    ++stats_.in_doubt_committed;
    ++stats_.transactions;
    return d.count;
  }
  ++stats_.in_doubt_rolled_back;
  return 0;
}

void batch_executor::run_items(op_context& ctx, std::span<batch_item> items) {
  std::vector<group_member*> members;
  for (size_t i = 0; i < items.size();) {
    auto runner = items[i].group;
    size_t end = i + 1;
    if (runner)
      while (end < items.size() && items[end].group == runner)
        ++end;
    if (end - i == 1) {
      items[i].run(ctx);
    } else {
      members.clear();
      for (size_t k = i; k < end; ++k)
        members.push_back(items[k].member.get());
      runner(ctx, members);
      ++stats_.groups;
      stats_.grouped_items += end - i;
    }
    i = end;
  }
}

batch_executor::tx_result batch_executor::run_transaction(std::span<batch_item> items) {
  auto& sql = db_.session();
  bool sqlite = db_.url().kind == backend::sqlite;
  auto token = ++next_token_;
  auto now = db_.now();
  op_context ctx{sql, db_.sql_dialect(), now, format_time(now), instance_id_};
  auto started = std::chrono::steady_clock::now();
  bool in_tx = false;
  bool wrote = true;
  try {
    // IMMEDIATE: take SQLite's write lock up front, so a reader-turned-writer never fails with
    // a stale snapshot when another process (nodecoordctl) wrote in between.
    sql << (sqlite ? "BEGIN IMMEDIATE" : "BEGIN");
    in_tx = true;
    int64_t changes_before = sqlite ? single_int(sql, "SELECT total_changes()") : 0;
    run_items(ctx, items);
    // A batch that changed nothing (reads, a mark that found nothing to mark) needs no token and
    // no durable commit: running it again after a lost acknowledgement is harmless, and its
    // COMMIT flushes nothing (on SQLite no WAL frame, on PostgreSQL no transaction id). Without
    // this, every idle reconnect-trigger probe cost an fsync.
    wrote = sqlite ? single_int(sql, "SELECT total_changes()") != changes_before
                   : single_int(sql, "SELECT CASE WHEN txid_current_if_assigned() IS NULL THEN 0 ELSE 1 END") != 0;
    if (wrote)
      query(sql, "INSERT INTO storage_commits (instance, token, committed_at) VALUES (:i, :t, :now) "
                 "ON CONFLICT (instance) DO UPDATE SET token = excluded.token, "
                 "committed_at = excluded.committed_at")
        .bind("i", instance_)
        .bind("t", token)
        .bind("now", ctx.now_text)
        .exec();
    if (fault_hook)
      fault_hook(fault_point::before_commit);
    if (wrote)
      doubt_ = in_doubt{token, items.size()};
    sql << "COMMIT";
    in_tx = false;
    if (fault_hook)
      fault_hook(fault_point::after_commit);
    doubt_.reset();
  } catch (...) {
    tx_result r;
    r.message = current_exception_message();
    error_kind kind;
    try {
      throw;
    } catch (const simulated_connection_loss&) {
      kind = error_kind::connection;
    } catch (...) {
      kind = db_.classify_current();
    }
    if (kind == error_kind::connection) {
      ++stats_.connection_errors;
      db_.disconnect(); // the server rolls back whatever was open
      r.stop = stop_reason::connection;
      return r;
    }
    doubt_.reset(); // the connection is alive, so COMMIT either failed visibly or never ran
    if (in_tx) {
      try {
        sql << "ROLLBACK";
      } catch (...) {
        ++stats_.connection_errors;
        db_.disconnect();
        r.stop = stop_reason::connection;
        return r;
      }
    }
    if (kind == error_kind::transient) {
      ++stats_.transient_errors;
      r.stop = stop_reason::transient;
    } else {
      r.statement_error = true;
    }
    return r;
  }
  ++stats_.transactions;
  if (!wrote)
    ++stats_.read_only_transactions;
  stats_.last_batch_size = items.size();
  stats_.max_batch_size = std::max<uint64_t>(stats_.max_batch_size, items.size());
  stats_.last_commit_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  return {};
}

batch_report batch_executor::execute(std::span<batch_item> items) {
  batch_report rep;
  rep.errors.resize(items.size());
  auto stop_with = [&](stop_reason why, std::string msg) {
    rep.stop = why;
    rep.stop_message = std::move(msg);
    return rep;
  };
  if (doubt_) {
    try {
      rep.done = resolve_in_doubt();
    } catch (...) {
      auto msg = current_exception_message();
      if (db_.classify_current() == error_kind::connection) {
        db_.disconnect();
        return stop_with(stop_reason::connection, msg);
      }
      return stop_with(stop_reason::transient, msg);
    }
    stats_.items += rep.done;
    if (rep.done > 0)
      return rep; // the caller delivers those and calls again for the rest
  }
  if (items.empty())
    return rep;
  auto all = run_transaction(items);
  if (all.stop != stop_reason::none)
    return stop_with(all.stop, all.message);
  if (!all.statement_error) {
    rep.done = items.size();
    stats_.items += items.size();
    return rep;
  }
  // Isolate the failing operation(s): one transaction each, in order.
  ++stats_.isolations;
  for (size_t i = 0; i < items.size(); ++i) {
    auto one = run_transaction(items.subspan(i, 1));
    if (one.stop != stop_reason::none)
      return stop_with(one.stop, one.message);
    if (one.statement_error) {
      rep.errors[i] = one.message;
      ++stats_.item_errors;
    } else {
      ++stats_.items;
    }
    rep.done = i + 1;
  }
  return rep;
}

} // namespace nodecoord::storage
