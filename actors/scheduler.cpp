#include "actors/scheduler.hpp"
#include "common/states.hpp"

#include "backfill/pacer.hpp"
#include "common/ids.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"

#include <caf/actor_system.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <algorithm>
#include <deque>
#include <memory>
#include <random>
#include <unordered_map>
#include <vector>

namespace nodecoord {

namespace {

struct scheduler_state {
  static inline const char* name = "scheduler";

  scheduler_options opts;
  std::unordered_map<std::string, int64_t> connected; // node_id -> current epoch
  // New sessions wait here for the probe that says whether they have partial attempts at all.
  std::vector<std::pair<std::string, int64_t>> probe_waiting;
  bool probing = false;
  std::deque<std::pair<std::string, int64_t>> reconnect_queue;
  std::unique_ptr<backfill::pacer> pacer;
  bool pace_armed = false;
  scheduler_status counters;

  // After shutdown: nothing more is ordered, no pass starts or goes on.
  bool stopping = false;

  // The reconcile pass in progress, if any.
  bool reconciling = false;
  reconcile_report pass;
  size_t pass_outstanding = 0;
  std::vector<caf::typed_response_promise<reconcile_report>> pass_waiters;
};

using self_ptr = scheduler_actor::stateful_pointer<scheduler_state>;

void arm_pace(self_ptr self) {
  auto& st = self->state;
  if (st.pace_armed || st.reconnect_queue.empty())
    return;
  st.pace_armed = true;
  auto now = self->clock().now();
  auto at = st.pacer->next(now);
  self->delayed_send(self, at - now, pace_atom::value);
}

void log_order(const char* trigger, const std::string& node_id, const order_result& r) {
  if (r.status == order_status::requested)
    return; // the tracker logs requests
  log::debug("backfill not requested",
             {{"trigger", trigger}, {"node_id", node_id}, {"status", to_string(r.status)}, {"why", r.message}});
}

bool still_connected(const scheduler_state& st, const std::string& node_id, int64_t epoch) {
  auto c = st.connected.find(node_id);
  return c != st.connected.end() && c->second == epoch;
}

// Probe before pacing: one statement asks which of the waiting sessions' nodes have partial
// attempts, and only those are queued for a paced reconnect request; an idle fleet uses no slot.
// Sessions that arrive while a probe runs wait for the next one, so a connect storm is probed a
// few hundred nodes per statement and a lone reconnect at once.
void probe(self_ptr self) {
  auto& st = self->state;
  if (st.probing || st.stopping || st.probe_waiting.empty())
    return;
  std::vector<std::pair<std::string, int64_t>> batch;
  auto take = std::min<size_t>(st.probe_waiting.size(), std::max<uint32_t>(st.opts.page_size, 1));
  batch.assign(std::make_move_iterator(st.probe_waiting.begin()),
               std::make_move_iterator(st.probe_waiting.begin() + static_cast<std::ptrdiff_t>(take)));
  st.probe_waiting.erase(st.probe_waiting.begin(), st.probe_waiting.begin() + static_cast<std::ptrdiff_t>(take));
  std::vector<std::string> ids;
  for (auto& [id, epoch] : batch)
    if (still_connected(st, id, epoch))
      ids.push_back(id);
  if (ids.empty()) {
    probe(self);
    return;
  }
  st.probing = true;
  ++st.counters.reconnect_probes;
  ++metrics::daemon().reconnect_probes;
  auto queue = [=](const std::vector<std::string>& partial, bool all) {
    auto& cur = self->state;
    cur.probing = false;
    if (cur.stopping)
      return;
    for (auto& [id, epoch] : batch) {
      if (!still_connected(cur, id, epoch))
        continue;
      if (all || std::binary_search(partial.begin(), partial.end(), id))
        cur.reconnect_queue.emplace_back(id, epoch);
      else {
        ++cur.counters.reconnect_idle;
        ++metrics::daemon().reconnect_idle;
        log_order("reconnect", id, order_result{order_status::nothing_to_mark, "", 0, "no partial attempts (probe)"});
      }
    }
    arm_pace(self);
    probe(self);
  };
  self->request(st.opts.storage, caf::infinite, storage::nodes_partial_among{std::move(ids)})
    .then([=](const storage::nodes_partial_among::result_type& partial) { queue(partial, false); },
          [=](caf::error& e) {
            // Without an answer every session is queued, as if each had partial attempts: the
            // paced request finds out (and costs what it cost before the probe existed).
            log::warn("reconnect probe failed", {{"nodes", batch.size()}, {"error", to_string(e)}});
            queue({}, true);
          });
}

// --- reconcile -------------------------------------------------------------------------------

std::string pass_detail(const reconcile_report& r) {
  return "{\"pages\":" + std::to_string(r.pages) + ",\"nodes\":" + std::to_string(r.nodes)
         + ",\"requested\":" + std::to_string(r.requested) + ",\"attempts\":" + std::to_string(r.attempts)
         + ",\"busy\":" + std::to_string(r.busy) + "}";
}

/// Ends the pass in progress: its job gets its final status (`abandoned` when `stopped` by
/// shutdown, else succeeded / failed) and every waiter the report. The returned handle answers
/// once the job row is written.
auto finish_pass(self_ptr self, std::string error, bool stopped = false) {
  auto& st = self->state;
  st.pass.error = std::move(error);
  auto report = st.pass;
  st.reconciling = false;
  ++st.counters.reconcile_passes;
  auto waiters = std::move(st.pass_waiters);
  st.pass_waiters.clear();
  auto status = stopped ? job_status::abandoned : report.error.empty() ? job_status::succeeded : job_status::failed;
  if (report.error.empty())
    log::info("reconcile done", {{"job", report.job_id},
                                 {"nodes", report.nodes},
                                 {"requested", report.requested},
                                 {"attempts", report.attempts},
                                 {"busy", report.busy}});
  else
    log::warn(stopped ? "reconcile abandoned" : "reconcile failed", {{"job", report.job_id}, {"error", report.error}});
  for (auto& w : waiters)
    w.deliver(report);
  return self->request(st.opts.storage, caf::infinite,
                       storage::job_update{report.job_id, to_string(status), pass_detail(report), report.error});
}

void finish_pass_logged(self_ptr self, std::string error) {
  finish_pass(self, std::move(error))
    .then([](const storage::job_update::result_type&) {},
          [](caf::error& e) {
            log::warn("reconcile job not recorded", {{"error", to_string(e)}});
          });
}

void reconcile_page(self_ptr self, std::string after);

void page_done(self_ptr self, size_t page_len, std::string last) {
  if (self->state.stopping)
    return; // the pass was abandoned by shutdown
  if (page_len < self->state.opts.page_size)
    finish_pass_logged(self, "");
  else
    reconcile_page(self, std::move(last));
}

void reconcile_page(self_ptr self, std::string after) {
  auto& st = self->state;
  self
    ->request(st.opts.storage, caf::infinite,
              storage::nodes_with_partial{std::move(after), static_cast<int64_t>(st.opts.page_size)})
    .then(
      [=](const storage::nodes_with_partial::result_type& ids) {
        auto& cur = self->state;
        if (cur.stopping)
          return;
        ++cur.pass.pages;
        if (ids.empty()) {
          finish_pass_logged(self, "");
          return;
        }
        auto len = ids.size();
        auto last = ids.back();
        cur.pass_outstanding = 0;
        for (auto& id : ids) {
          auto c = cur.connected.find(id);
          if (c == cur.connected.end())
            continue; // online in the table but not here (another instance, or just gone)
          ++cur.pass.nodes;
          ++cur.pass_outstanding;
          self
            ->request(cur.opts.tracker, caf::infinite,
                      backfill_order{id, c->second, {}, cur.opts.batch_size, "reconcile"})
            .then(
              [=](const order_result& r) {
                auto& now_st = self->state;
                if (r.status == order_status::requested) {
                  ++now_st.pass.requested;
                  now_st.pass.attempts += static_cast<uint64_t>(r.attempts);
                } else if (r.status == order_status::busy) {
                  ++now_st.pass.busy;
                }
                log_order("reconcile", id, r);
                if (--now_st.pass_outstanding == 0)
                  page_done(self, len, last);
              },
              [=](caf::error& e) {
                log::warn("reconcile order failed", {{"node_id", id}, {"error", to_string(e)}});
                if (--self->state.pass_outstanding == 0)
                  page_done(self, len, last);
              });
        }
        // The next page is read only when this one's requests are placed: the pass paces itself.
        if (cur.pass_outstanding == 0)
          page_done(self, len, last);
      },
      [=](caf::error& e) {
        if (!self->state.stopping)
          finish_pass_logged(self, "storage: " + to_string(e));
      });
}

void start_pass(self_ptr self) {
  auto& st = self->state;
  if (st.reconciling || st.stopping)
    return;
  st.reconciling = true;
  st.pass = reconcile_report{};
  st.pass.job_id = new_uuid();
  // Overdue requests first, so their attempts can be asked for again in this pass.
  self->send(st.opts.tracker, expire_atom::value);
  storage::job_record job;
  job.id = st.pass.job_id;
  job.type = "reconcile";
  job.status = "running";
  self->request(st.opts.storage, caf::infinite, storage::job_insert{job})
    .then(
      [=](const storage::job_insert::result_type&) {
        if (!self->state.stopping)
          reconcile_page(self, "");
      },
      [=](caf::error& e) {
        if (!self->state.stopping)
          finish_pass_logged(self, "storage: " + to_string(e));
      });
}

scheduler_actor::behavior_type scheduler_impl(self_ptr self, scheduler_options opts) {
  auto& st = self->state;
  st.opts = std::move(opts);
  auto seed = st.opts.seed ? st.opts.seed : std::random_device{}();
  st.pacer = std::make_unique<backfill::pacer>(st.opts.reconnect_rate, seed);
  self->delayed_send(self, st.opts.reconcile_interval, tick_atom::value);
  return {
    [=](backfill_atom, const std::string& attempt_id) {
      auto rp = self->make_response_promise<order_result>();
      self->request(self->state.opts.storage, caf::infinite, storage::attempt_get{attempt_id})
        .then(
          [=](const storage::attempt_get::result_type& a) mutable {
            auto& cur = self->state;
            if (!a.found) {
              rp.deliver(order_result{order_status::not_found, "", 0, "no attempt " + attempt_id});
              return;
            }
            if (!is(a.attempt.sync_state, sync_state::partial)) {
              auto why = "the attempt is " + a.attempt.sync_state;
              if (!a.attempt.backfill_request_id.empty())
                why += " (request " + a.attempt.backfill_request_id + ")";
              rp.deliver(order_result{order_status::not_partial, a.attempt.backfill_request_id, 0, why});
              return;
            }
            auto c = cur.connected.find(a.attempt.node_id);
            if (c == cur.connected.end()) {
              rp.deliver(order_result{order_status::offline, "", 0, "the attempt's node is not connected"});
              return;
            }
            ++cur.counters.on_demand_requests;
            self
              ->request(cur.opts.tracker, caf::infinite,
                        backfill_order{a.attempt.node_id, c->second, {attempt_id}, 0, "on_demand"})
              .then([=](const order_result& r) mutable { rp.deliver(r); },
                    [=](caf::error& e) mutable {
                      rp.deliver(order_result{order_status::error, "", 0, to_string(e)});
                    });
          },
          [=](caf::error& e) mutable {
            rp.deliver(order_result{order_status::error, "", 0, to_string(e)});
          });
      return rp;
    },
    [=](reconcile_atom) {
      auto rp = self->make_response_promise<reconcile_report>();
      if (self->state.stopping) {
        reconcile_report r;
        r.error = "shutting down";
        rp.deliver(std::move(r));
        return rp;
      }
      self->state.pass_waiters.push_back(rp);
      start_pass(self);
      return rp;
    },
    [=](tick_atom) {
      if (self->state.stopping)
        return;
      self->delayed_send(self, self->state.opts.reconcile_interval, tick_atom::value);
      start_pass(self);
    },
    [=](shutdown_atom) -> caf::result<uint64_t> {
      auto& cur = self->state;
      if (cur.stopping)
        return uint64_t{0};
      cur.stopping = true;
      cur.reconnect_queue.clear();
      cur.probe_waiting.clear();
      if (!cur.reconciling)
        return uint64_t{0};
      // The pass's job row is final before storage drains: a clean stop leaves no job `running`
      // (startup recovery would report it abandoned, but only after a restart).
      auto rp = self->make_response_promise<uint64_t>();
      finish_pass(self, "shutting down", true)
        .then([=](const storage::job_update::result_type&) mutable { rp.deliver(uint64_t{1}); },
              [=](caf::error& e) mutable {
                log::warn("reconcile job not recorded", {{"error", to_string(e)}});
                rp.deliver(uint64_t{1});
              });
      return rp;
    },
    [=](node_up_atom, const session_ref& who, const caf::actor&) {
      auto& cur = self->state;
      auto& e = cur.connected[who.node_id];
      if (e > who.epoch)
        return;
      e = who.epoch;
      cur.probe_waiting.emplace_back(who.node_id, who.epoch);
      probe(self);
    },
    [=](node_down_atom, const session_ref& who, const std::string&) {
      auto& cur = self->state;
      auto c = cur.connected.find(who.node_id);
      if (c != cur.connected.end() && c->second == who.epoch)
        cur.connected.erase(c);
    },
    [=](pace_atom) {
      auto& cur = self->state;
      cur.pace_armed = false;
      if (cur.stopping)
        return;
      // Sessions that ended while queued are skipped without using a slot.
      while (!cur.reconnect_queue.empty()) {
        auto [node_id, epoch] = std::move(cur.reconnect_queue.front());
        cur.reconnect_queue.pop_front();
        if (!still_connected(cur, node_id, epoch))
          continue;
        ++cur.counters.reconnect_requests;
        ++metrics::daemon().reconnect_requests;
        self
          ->request(cur.opts.tracker, caf::infinite,
                    backfill_order{node_id, epoch, {}, cur.opts.batch_size, "reconnect"})
          .then([=](const order_result& r) { log_order("reconnect", node_id, r); },
                [=](caf::error& e) {
                  log::warn("reconnect order failed", {{"node_id", node_id}, {"error", to_string(e)}});
                });
        break;
      }
      arm_pace(self);
    },
    [=](caf::get_atom) {
      auto& cur = self->state;
      auto out = cur.counters;
      out.connected = cur.connected.size();
      out.reconnect_queue = cur.reconnect_queue.size();
      out.probe_waiting = cur.probe_waiting.size();
      return out;
    },
  };
}

} // namespace

scheduler_actor spawn_scheduler(caf::actor_system& sys, scheduler_options opts) {
  return sys.spawn(scheduler_impl, std::move(opts));
}

} // namespace nodecoord
