#include "actors/storage.hpp"

#include "actors/errors.hpp"
#include "storage/op_queue.hpp"

#include "common/log.hpp"
#include "common/metrics.hpp"
#include "storage/grouped.hpp"
#include "storage/migrations.hpp"

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <type_traits>

namespace nodecoord {

namespace {

using queued_item = storage::op_queue::entry;

struct storage_state {
  static inline const char* name = "storage";

  storage_options opts;
  std::unique_ptr<storage::database> db;
  std::unique_ptr<storage::batch_executor> exec;
  // Operations whose batch was attempted but not settled (front of the line), then the rest.
  std::vector<storage::batch_item> inflight;
  storage::op_queue queue; // its ordering policy: storage/op_queue.hpp
  bool available = false;
  bool migrated = false;
  bool flush_pending = false;
  bool reconnect_pending = false;
  bool fatal = false;
  int schema_from = 0;
  std::string last_error;
  std::chrono::milliseconds backoff{0};
  uint64_t failed_attempts = 0;
  std::optional<caf::typed_response_promise<startup_report>> startup;
  std::minstd_rand rng{std::random_device{}()};

  size_t queued() const { return inflight.size() + queue.size(); }

  ~storage_state() {
    if (queued() > 0) // not through the exit handler (which answers them)
      log::error("storage stopped with operations not applied", {{"count", queued()}});
  }
};

using self_ptr = storage_actor::stateful_pointer<storage_state>;

void schedule_flush(self_ptr self) {
  auto& st = self->state;
  if (st.available && !st.flush_pending && st.queued() > 0) {
    st.flush_pending = true;
    self->send(self, flush_atom::value);
  }
}

using storage::queue_place;

void push(self_ptr self, queued_item item, queue_place where = queue_place::back) {
  self->state.queue.push(std::move(item), where);
  // Everything already in the mailbox arrives before this flush message: that is the batch.
  schedule_flush(self);
}

/// Queues an operation where its type says (storage/op_queue.hpp): in arrival order; a
/// handshake ahead of queued data, so a node is not kept waiting for its welcome behind a backlog
/// of other nodes' attempts and logs; a bundle in a transaction of its own.
template <class Op>
caf::typed_response_promise<typename Op::result_type> enqueue(self_ptr self, Op op) {
  using result = typename Op::result_type;
  auto rp = self->make_response_promise<result>();
  queued_item q;
  auto slot = storage::bind_item(q.item, std::move(op));
  q.item.deliver = [rp, slot]() mutable { rp.deliver(std::move(slot->result)); };
  q.item.fail = [rp](const std::string& msg) mutable { rp.deliver(make_error(storage_errc::refused, msg)); };
  q.item.abandon = [rp](const std::string& msg) mutable { rp.deliver(make_error(storage_errc::stopped, msg)); };
  q.touches_attempts = storage::touches_attempts<Op>();
  if constexpr (storage::own_transaction<Op>()) {
    self->state.queue.push_alone(std::move(q));
    schedule_flush(self);
  } else {
    push(self, std::move(q), storage::place_of<Op>());
  }
  return rp;
}

/// A reset in two halves: the attempts go back to `partial` ahead of queued operations that
/// cannot touch attempts or logs, in a transaction that commits at once; the jobs are finished
/// in arrival order. Nothing an operation sees about attempts or logs changes: the reset passes
/// only operations that never read or write them, and never an attempt operation (a response
/// received before the disconnect is still applied first, rule 5). A job stays `running` a little
/// longer than its rows stay pending; after a crash in between, startup recovery finishes it as
/// `abandoned`. The reply comes when both halves are done. In a disconnect storm this is what
/// lets the last row leave `pending_backfill` without waiting for 10,000 session ends and job
/// updates queued in front of it.
caf::typed_response_promise<storage::reset_requests::result_type> enqueue_reset(self_ptr self,
                                                                                storage::reset_requests op) {
  using result = storage::reset_requests::result_type;
  auto rp = self->make_response_promise<result>();
  struct shared {
    storage::reset_requests op;
    result out;
    std::string error; // the attempts half failed on its own
  };
  auto sh = std::make_shared<shared>(shared{std::move(op), {}, {}});
  queued_item attempts;
  attempts.item.run = [sh](storage::op_context& c) {
    sh->out.attempts_reset = sh->out.attempts_failed = 0; // a batch may run again after a failure
    storage::reset_request_attempts(c, sh->op, sh->out);
  };
  attempts.item.fail = [sh](const std::string& msg) { sh->error = msg; };
  attempts.commit_after = true;
  queued_item jobs;
  jobs.item.run = [sh](storage::op_context& c) { sh->out.jobs_finished = storage::finish_request_jobs(c, sh->op); };
  jobs.item.deliver = [rp, sh]() mutable {
    if (sh->error.empty())
      rp.deliver(sh->out);
    else
      rp.deliver(make_error(storage_errc::refused, sh->error)); // the tracker retries both
  };
  jobs.item.fail = [rp](const std::string& msg) mutable { rp.deliver(make_error(storage_errc::refused, msg)); };
  jobs.item.abandon = [rp](const std::string& msg) mutable { rp.deliver(make_error(storage_errc::stopped, msg)); };
  jobs.touches_attempts = false;
  push(self, std::move(attempts), queue_place::ahead);
  push(self, std::move(jobs));
  return rp;
}

void schedule_reconnect(self_ptr self) {
  auto& st = self->state;
  if (st.reconnect_pending)
    return;
  st.reconnect_pending = true;
  st.backoff = st.backoff.count() == 0 ? st.opts.reconnect_initial : std::min(st.backoff * 2, st.opts.reconnect_max);
  // Jitter in [backoff/2, backoff]: several instances do not retry in lockstep.
  auto half = st.backoff.count() / 2;
  auto delay =
    std::chrono::milliseconds(half + std::uniform_int_distribution<long long>(0, std::max<long long>(0, half))(st.rng));
  self->delayed_send(self, delay, reconnect_atom::value);
}

void mark_unavailable(self_ptr self, const std::string& why) {
  auto& st = self->state;
  ++st.failed_attempts;
  if (st.available || st.failed_attempts == 1)
    log::warn("database unavailable", {{"error", why}, {"queued", st.queued()}});
  else
    log::debug("database still unavailable", {{"error", why}, {"attempt", st.failed_attempts}});
  st.available = false;
  st.last_error = why;
  schedule_reconnect(self);
}

/// Answers every operation not applied as abandoned (request_receiver_down): the storage stops.
/// Not the operations' fault, so no session tells its node to drop what it sent; and no caller
/// (a session waiting to give its frames' budget back) waits forever.
void abandon_all(self_ptr self, const std::string& why) {
  auto& st = self->state;
  auto inflight = std::move(st.inflight);
  auto queue = st.queue.take_all();
  st.inflight.clear();
  for (auto& item : inflight)
    if (item.abandon)
      item.abandon(why);
  for (auto& q : queue)
    if (q.item.abandon)
      q.item.abandon(why);
}

/// A problem retrying cannot fix (a newer schema, a migration the database refuses).
void fail_fatally(self_ptr self, const std::string& why) {
  auto& st = self->state;
  if (st.fatal)
    return; // a failing item's own callback may land here again
  st.fatal = true;
  log::error("storage cannot start", {{"error", why}});
  st.last_error = why;
  if (st.startup) {
    st.startup->deliver(make_error(storage_errc::startup, why));
    st.startup.reset();
  }
  abandon_all(self, why);
  self->quit(make_error(storage_errc::startup, why));
}

void try_connect(self_ptr self) {
  auto& st = self->state;
  if (!st.db->connected()) {
    try {
      st.db->connect();
    } catch (...) {
      mark_unavailable(self, storage::current_exception_message());
      return;
    }
  }
  if (!st.migrated) {
    try {
      st.schema_from = st.db->migrate();
      st.migrated = true;
      if (st.schema_from != storage::latest_schema_version())
        log::info("database schema migrated", {{"from", st.schema_from}, {"to", storage::latest_schema_version()}});
    } catch (const storage::schema_too_new& e) {
      fail_fatally(self, e.what());
      return;
    } catch (...) {
      auto why = storage::current_exception_message();
      if (st.db->classify_current() == storage::error_kind::statement) {
        fail_fatally(self, "schema migration failed: " + why);
        return;
      }
      st.db->disconnect();
      mark_unavailable(self, why);
      return;
    }
  }
  if (!st.available && st.failed_attempts > 0)
    log::info("database available again", {{"queued", st.queued()}});
  st.available = true;
  st.failed_attempts = 0;
  st.backoff = std::chrono::milliseconds{0};
  schedule_flush(self);
}

void flush(self_ptr self) {
  auto& st = self->state;
  st.flush_pending = false;
  if (!st.available)
    return;
  if (!st.db->connected()) {
    try_connect(self);
    if (!st.available)
      return;
  }
  st.queue.take_batch(st.inflight, st.opts.batch_max);
  auto commits_before = st.exec->stats().transactions;
  auto rep = st.exec->execute(st.inflight);
  if (st.exec->stats().transactions != commits_before) {
    metrics::daemon().batch_size.observe(static_cast<double>(rep.done));
    metrics::daemon().commit_seconds.observe(st.exec->stats().last_commit_ms / 1000.0);
  }
  for (size_t i = 0; i < rep.done; ++i) {
    auto& item = st.inflight[i];
    if (!rep.errors[i].empty()) {
      log::error("storage operation failed", {{"error", rep.errors[i]}});
      if (item.fail)
        item.fail(rep.errors[i]);
    } else if (item.deliver) {
      item.deliver();
    }
  }
  st.inflight.erase(st.inflight.begin(), st.inflight.begin() + static_cast<long>(rep.done));
  if (rep.stop != storage::stop_reason::none) {
    mark_unavailable(self, rep.stop_message);
    return;
  }
  // One batch per message, so status queries and new operations interleave with a backlog.
  schedule_flush(self);
}

storage_actor::behavior_type storage_impl(self_ptr self, storage_options opts) {
  auto& st = self->state;
  st.opts = std::move(opts);
  st.opts.batch_max = std::max<uint32_t>(1, st.opts.batch_max);
  st.db = std::make_unique<storage::database>(st.opts.url, st.opts.clock);
  st.exec = std::make_unique<storage::batch_executor>(*st.db);
  st.exec->fault_hook = st.opts.fault_hook;
  st.exec->set_instance_id(st.opts.instance_id);
  self->set_exit_handler([=](caf::exit_msg& m) {
    if (self->state.queued() > 0) {
      log::error("storage stopped with operations not applied", {{"count", self->state.queued()}});
      abandon_all(self, "the storage stopped");
    }
    self->quit(m.reason);
  });
  return {
    [=](startup_atom) -> caf::typed_response_promise<startup_report> {
      auto rp = self->make_response_promise<startup_report>();
      auto& s = self->state;
      s.startup = rp;
      // Recovery goes first in line: nothing may run on a database with stale pending rows.
      auto report = std::make_shared<startup_report>();
      queued_item q;
      auto& item = q.item;
      item.run = [self, report](storage::op_context& c) {
        report->schema_from = self->state.schema_from;
        report->schema_to = storage::latest_schema_version();
        auto started = storage::execute(c, storage::instance_start{self->state.opts.version, self->state.opts.listen});
        report->incarnation = started.incarnation;
        report->recovery = started.recovery;
      };
      item.deliver = [self, report] {
        if (self->state.startup) {
          self->state.startup->deliver(*report);
          self->state.startup.reset();
        }
      };
      item.fail = [self](const std::string& why) { fail_fatally(self, "startup recovery failed: " + why); };
      push(self, std::move(q), queue_place::front);
      try_connect(self);
      return rp;
    },
    [=](drain_atom) -> caf::typed_response_promise<bool> {
      auto rp = self->make_response_promise<bool>();
      queued_item q;
      q.item.run = [](storage::op_context&) {};
      q.item.deliver = [rp]() mutable { rp.deliver(true); };
      q.item.fail = [rp](const std::string&) mutable { rp.deliver(false); };
      q.item.abandon = q.item.fail;
      push(self, std::move(q));
      return rp;
    },
    [=](status_atom) {
      auto& s = self->state;
      storage_status out;
      out.available = s.available;
      out.backend = std::string(storage::to_string(s.opts.url.kind));
      out.url = s.opts.url.redacted();
      out.last_error = s.last_error;
      out.schema_version = s.migrated ? storage::latest_schema_version() : 0;
      out.queued = s.queued();
      out.stats = s.exec->stats();
      return out;
    },
    [=](flush_atom) { flush(self); },
    [=](reconnect_atom) {
      self->state.reconnect_pending = false;
      try_connect(self);
    },
    [=](storage::node_create& op) { return enqueue(self, std::move(op)); },
    [=](storage::instance_renew& op) { return enqueue(self, std::move(op)); },
    [=](storage::instance_rejoin& op) { return enqueue(self, std::move(op)); },
    [=](storage::instance_list& op) { return enqueue(self, std::move(op)); },
    [=](storage::node_lookup_by_key& op) { return enqueue(self, std::move(op)); },
    [=](storage::node_lookup_by_name& op) { return enqueue(self, std::move(op)); },
    [=](storage::node_list& op) { return enqueue(self, std::move(op)); },
    [=](storage::node_disable& op) { return enqueue(self, std::move(op)); },
    [=](storage::node_enable& op) { return enqueue(self, std::move(op)); },
    [=](storage::node_set_key& op) { return enqueue(self, std::move(op)); },
    [=](storage::nodes_disabled_since& op) { return enqueue(self, std::move(op)); },
    [=](storage::node_begin_session& op) { return enqueue(self, std::move(op)); },
    [=](storage::node_end_session& op) { return enqueue(self, std::move(op)); },
    [=](storage::nodes_end_sessions& op) { return enqueue(self, std::move(op)); },
    [=](storage::node_touch& op) { return enqueue(self, std::move(op)); },
    [=](storage::attempt_upsert& op) { return enqueue(self, std::move(op)); },
    [=](storage::logs_insert& op) { return enqueue(self, std::move(op)); },
    [=](storage::attempt_get& op) { return enqueue(self, std::move(op)); },
    [=](storage::attempts_partial_of_node& op) { return enqueue(self, std::move(op)); },
    [=](storage::nodes_with_partial& op) { return enqueue(self, std::move(op)); },
    [=](storage::nodes_partial_among& op) { return enqueue(self, std::move(op)); },
    [=](storage::logs_get& op) { return enqueue(self, std::move(op)); },
    [=](storage::mark_pending& op) { return enqueue(self, std::move(op)); },
    [=](storage::apply_backfill& op) { return enqueue(self, std::move(op)); },
    [=](storage::reset_requests& op) { return enqueue_reset(self, std::move(op)); },
    [=](storage::attempt_requeue& op) { return enqueue(self, std::move(op)); },
    [=](storage::job_insert& op) { return enqueue(self, std::move(op)); },
    [=](storage::job_update& op) { return enqueue(self, std::move(op)); },
    [=](storage::job_query& op) { return enqueue(self, std::move(op)); },
    [=](storage::count_summary& op) { return enqueue(self, std::move(op)); },
    [=](storage::attempt_list& op) { return enqueue(self, std::move(op)); },
    [=](storage::jobs_prune& op) { return enqueue(self, std::move(op)); },
    [=](storage::database_size& op) { return enqueue(self, std::move(op)); },
    [=](storage::ping& op) { return enqueue(self, std::move(op)); },
    [=](storage::node_attempt_counts& op) { return enqueue(self, std::move(op)); },
    [=](storage::bulk_action& op) { return enqueue(self, std::move(op)); },
    [=](storage::audit_append& op) { return enqueue(self, std::move(op)); },
    [=](storage::audit_query& op) { return enqueue(self, std::move(op)); },
    [=](storage::bundle::export_file& op) { return enqueue(self, std::move(op)); },
    [=](storage::bundle::import_bundle& op) { return enqueue(self, std::move(op)); },
  };
}

} // namespace

storage_actor spawn_storage(caf::actor_system& sys, storage_options opts, bool detached) {
  if (detached)
    return sys.spawn<caf::detached>(storage_impl, std::move(opts));
  return sys.spawn(storage_impl, std::move(opts));
}

} // namespace nodecoord
