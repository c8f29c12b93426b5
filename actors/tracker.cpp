#include "actors/tracker.hpp"

#include "actors/errors.hpp"
#include "common/states.hpp"

#include "backfill/request_book.hpp"
#include "common/ids.hpp"
#include "common/log.hpp"
#include "protocol/codec.hpp"

#include <caf/actor_system.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <map>
#include <optional>
#include <set>
#include <unordered_map>

namespace nodecoord {

namespace {

// How soon a reset that storage refused is tried again.
constexpr auto reset_retry = std::chrono::seconds(1);

struct tracker_state {
  static inline const char* name = "tracker";

  struct session {
    int64_t epoch = 0;
    caf::actor handle;
  };

  tracker_options opts;
  backfill::request_book book;
  std::unordered_map<std::string, session> sessions; // node_id -> its current session
  std::optional<backfill::time_point> timer_at;      // the pending expire timer
  // Resets storage refused: every pending row must get back to partial, so they are retried.
  std::vector<storage::reset_requests> unreset;
  // Resets not yet sent, by (job status, reason): a storm of session ends becomes one operation
  // per reason instead of one per node. Sent on settle_atom, and before any other storage
  // operation of the tracker, so storage still sees them in the order they happened.
  std::map<std::pair<std::string, std::string>, std::vector<std::string>> resets;
  bool stopping = false;
  tracker_status counters;
  // Nodes being drained (or drained, until their session ends): no new request goes to them.
  struct drain {
    std::vector<caf::typed_response_promise<drain_result>> waiting; // answered when none is in flight
    drain_result counts;
    std::optional<backfill::time_point> deadline;
  };
  std::unordered_map<std::string, drain> draining; // node_id ->
};

using self_ptr = tracker_actor::stateful_pointer<tracker_state>;

backfill::time_point now_of(self_ptr self) { return self->clock().now(); }

void arm_timer(self_ptr self, backfill::time_point at) {
  auto& st = self->state;
  if (st.timer_at && *st.timer_at <= at)
    return;
  st.timer_at = at;
  auto now = now_of(self);
  self->delayed_send(self, at > now ? at - now : caf::timespan{0}, expire_atom::value);
}

void arm_deadline_timer(self_ptr self) {
  if (auto next = self->state.book.next_deadline())
    arm_timer(self, *next);
}

void send_reset(self_ptr self, storage::reset_requests op) {
  auto count = op.request_ids.size();
  self->request(self->state.opts.storage, caf::infinite, op)
    .then(
      [=](const storage::reset_requests::result_type& r) {
        if (op.count_failure) {
          auto& c = self->state.counters;
          c.reset += static_cast<uint64_t>(r.attempts_reset);
          c.failed += static_cast<uint64_t>(r.attempts_failed);
        }
        log::info("backfill requests reset", {{"requests", count},
                                              {"attempts", r.attempts_reset},
                                              {"failed", r.attempts_failed},
                                              {"job_status", op.job_status},
                                              {"reason", op.reason}});
      },
      [=](caf::error& e) {
        // Rows stay pending_backfill until this succeeds: keep trying (lessons.md: nothing may
        // stay pending without a live request).
        log::error("backfill reset failed; will retry",
                   {{"requests", count}, {"reason", op.reason}, {"error", to_string(e)}});
        self->state.unreset.push_back(op);
        arm_timer(self, now_of(self) + reset_retry);
      });
}

/// Sends the gathered resets, one operation per (job status, reason).
void send_resets(self_ptr self) {
  auto gathered = std::move(self->state.resets);
  self->state.resets.clear();
  for (auto& [key, ids] : gathered) {
    storage::reset_requests op{std::move(ids), key.first, key.second};
    // Rule 3: a request that expires counts a failure for each attempt in it (a poison attempt
    // that makes its node time out ends `failed`); a session that ended counts nothing.
    op.count_failure = is(key.first, job_status::expired);
    op.max_failures = self->state.opts.max_failures;
    send_reset(self, std::move(op));
  }
}

/// Ends requests without an answer: their attempts go back to partial (coalesced, see `resets`).
void reset(self_ptr self, const std::vector<backfill::request>& requests, const std::string& job_status,
           const std::string& reason) {
  if (requests.empty())
    return;
  auto& st = self->state;
  if (st.resets.empty()) {
    // Handled after everything already in the mailbox, or after the window.
    if (st.opts.coalesce_window.count() > 0)
      self->delayed_send(self, st.opts.coalesce_window, settle_atom::value);
    else
      self->send(self, settle_atom::value);
  }
  auto& ids = st.resets[{job_status, reason}];
  for (auto& r : requests) {
    ids.push_back(r.id);
    log::debug(
      "backfill request ended",
      {{"node_id", r.node_id}, {"epoch", r.epoch}, {"request", r.id}, {"status", job_status}, {"reason", reason}});
  }
}

/// Counts requests of draining nodes that ended without an answer (expired, session ended, send
/// failed) as reset by the drain.
void count_drain_resets(self_ptr self, const std::vector<backfill::request>& ended) {
  for (auto& r : ended)
    if (auto d = self->state.draining.find(r.node_id); d != self->state.draining.end())
      ++d->second.counts.requests_reset;
}

/// Answers the drains whose node has nothing in flight any more; at a drain's deadline, resets
/// what is still in flight first.
void check_drains(self_ptr self) {
  auto& st = self->state;
  auto now = now_of(self);
  for (auto& [node_id, d] : st.draining) {
    if (d.waiting.empty())
      continue;
    std::vector<std::string> live;
    for (auto& [id, r] : st.book.all())
      if (r.node_id == node_id)
        live.push_back(id);
    if (!live.empty() && d.deadline && *d.deadline <= now) {
      std::vector<backfill::request> taken;
      for (auto& id : live)
        if (auto r = st.book.close(id))
          taken.push_back(std::move(*r));
      st.counters.cancelled += taken.size();
      d.counts.requests_reset += static_cast<int64_t>(taken.size());
      reset(self, taken, "cancelled", "node drained");
      // In storage before the drain's answer: what the caller reads next sees the attempts partial.
      send_resets(self);
      live.clear();
      log::info("drain deadline: requests reset", {{"node_id", node_id}, {"requests", taken.size()}});
    }
    if (!live.empty())
      continue;
    for (auto& rp : d.waiting)
      rp.deliver(d.counts);
    d.waiting.clear();
  }
}

/// Marks, then hands the request to the session. The answer goes out once that is done.
void place_order(self_ptr self, caf::typed_response_promise<order_result> rp, backfill_order order) {
  auto& st = self->state;
  if (st.stopping) {
    rp.deliver(order_result{order_status::stopping, "", 0, "the coordinator is shutting down"});
    return;
  }
  auto s = st.sessions.find(order.node_id);
  if (s == st.sessions.end() || (order.epoch != 0 && order.epoch != s->second.epoch)) {
    rp.deliver(order_result{order_status::offline, "", 0, "the node is not connected"});
    return;
  }
  if (st.draining.count(order.node_id)) {
    rp.deliver(order_result{order_status::offline, "", 0, "the node is being drained"});
    return;
  }
  auto epoch = s->second.epoch;
  if (st.book.inflight(order.node_id, epoch) >= st.opts.max_inflight_per_node) {
    rp.deliver(order_result{order_status::busy, "", 0, "max_inflight_per_node requests are in flight for this node"});
    return;
  }
  auto id = st.opts.new_request_id ? st.opts.new_request_id() : new_uuid();
  backfill::request r;
  r.id = id;
  r.node_id = order.node_id;
  r.epoch = epoch;
  r.trigger = order.trigger;
  if (!st.book.open(r)) {
    rp.deliver(order_result{order_status::error, "", 0, "request id collision"});
    return;
  }
  storage::mark_pending op{id, order.node_id, epoch, std::move(order.attempt_ids), order.limit, st.opts.max_failures};
  send_resets(self); // a reset that happened first is applied first (the mark may need its rows)
  self->request(st.opts.storage, caf::infinite, std::move(op))
    .then(
      [=](const storage::mark_pending::result_type& m) mutable {
        auto& cur = self->state;
        if (!cur.book.find(id)) {
          // The session ended while marking; its reset was queued after this mark.
          rp.deliver(order_result{order_status::offline, id, 0, "the session ended"});
          return;
        }
        if (m.marked.empty()) {
          cur.book.close(id);
          rp.deliver(order_result{order_status::nothing_to_mark, "", 0, "no partial attempt to request"});
          check_drains(self);
          return;
        }
        std::vector<std::string> ids;
        std::vector<std::pair<std::string, int64_t>> logs_after;
        for (auto& a : m.marked) {
          ids.push_back(a.attempt_id);
          if (a.logs_after >= 0)
            logs_after.emplace_back(a.attempt_id, a.logs_after);
        }
        auto line = protocol::encode_backfill_request(id, ids, logs_after);
        auto count = static_cast<int64_t>(ids.size());
        auto& req = *cur.book.find(id);
        auto node_id = req.node_id;
        auto req_epoch = req.epoch;
        auto trigger = req.trigger;
        cur.book.sent(id, std::move(ids), now_of(self), cur.opts.request_timeout);
        arm_deadline_timer(self);
        ++cur.counters.requested;
        // The session is known: a request lives only while its session does.
        caf::anon_send(cur.sessions.at(node_id).handle, backfill_atom::value,
                       backfill_delivery{session_ref{node_id, req_epoch}, id, line});
        log::info(
          "backfill requested",
          {{"node_id", node_id}, {"epoch", req_epoch}, {"request", id}, {"attempts", count}, {"trigger", trigger}});
        rp.deliver(order_result{order_status::requested, id, count, ""});
      },
      [=](caf::error& e) mutable {
        // The mark's transaction was rolled back: nothing is pending under this id.
        self->state.book.close(id);
        check_drains(self);
        log::error("backfill mark failed", {{"request", id}, {"error", to_string(e)}});
        rp.deliver(order_result{order_status::error, "", 0, "storage: " + to_string(e)});
      });
}

/// Answers once the response is applied (committed), so the session's heartbeat ack after it
/// means what it says (docs/protocol.md); false at once for a response that is not accepted.
caf::result<bool> handle_response(self_ptr self, const std::string& node_id, int64_t epoch,
                                  const std::string& request_id, std::vector<storage::backfill_item> items) {
  auto& st = self->state;
  backfill::request r;
  auto check = st.book.answer(request_id, node_id, epoch, &r);
  if (check != backfill::answer_check::accepted) {
    ++st.counters.refused;
    log::info("backfill response refused",
              {{"node_id", node_id}, {"epoch", epoch}, {"request", request_id}, {"why", backfill::to_string(check)}});
    return false;
  }
  st.counters.answered_ms +=
    static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(now_of(self) - r.sent_at).count());
  bool drained_node = false;
  if (auto d = st.draining.find(node_id); d != st.draining.end()) {
    ++d->second.counts.requests_finished;
    drained_node = true;
  }
  storage::apply_backfill op{request_id, node_id, std::move(items), st.opts.max_failures, epoch};
  send_resets(self);
  auto rp = self->make_response_promise<bool>();
  self->request(st.opts.storage, caf::infinite, std::move(op))
    .then(
      [=](const storage::apply_backfill::result_type& res) mutable {
        if (res.superseded) {
          // The node has a newer session (here or at another instance): nothing applied.
          // The request has left the book already, so its rows are reset here (no failure
          // counted: not the attempts' fault), or they would stay pending with no live request.
          log::warn("backfill response refused by the epoch fence",
                    {{"node_id", node_id}, {"epoch", epoch}, {"request", request_id}});
          ++self->state.counters.fenced;
          send_reset(self, storage::reset_requests{{request_id}, "cancelled", "superseded"});
          rp.deliver(make_error(storage_errc::superseded, "the node has a newer session"));
          return;
        }
        auto& c = self->state.counters;
        ++c.answered;
        c.completed += static_cast<uint64_t>(res.completed);
        c.reset += static_cast<uint64_t>(res.reset);
        c.failed += static_cast<uint64_t>(res.failed);
        log::info("backfill response applied", {{"node_id", node_id},
                                                {"epoch", epoch},
                                                {"request", request_id},
                                                {"completed", res.completed},
                                                {"reset", res.reset},
                                                {"failed", res.failed},
                                                {"stale", res.stale},
                                                {"job", res.job_status}});
        rp.deliver(true);
      },
      [=](caf::error& e) mutable {
        // The response could not be applied: its attempts must not stay pending. Not the node's
        // fault, so no failure is counted.
        log::error("backfill response not applied", {{"request", request_id}, {"error", to_string(e)}});
        send_reset(self, storage::reset_requests{{request_id}, "failed", "response not applied: " + to_string(e)});
        rp.deliver(std::move(e));
      });
  // After the apply is queued in storage: what the drain's caller reads next comes after it.
  if (drained_node)
    check_drains(self);
  return rp;
}

tracker_actor::behavior_type tracker_impl(self_ptr self, tracker_options opts) {
  self->state.opts = std::move(opts);
  // Stopping: gathered resets still go to storage (their settle message would come too late).
  self->set_exit_handler([=](caf::exit_msg& m) {
    send_resets(self);
    self->quit(m.reason);
  });
  return {
    [=](backfill_order& order) {
      auto rp = self->make_response_promise<order_result>();
      place_order(self, rp, std::move(order));
      return rp;
    },
    [=](response_atom, const session_ref& from, const std::string& request_id,
        std::vector<storage::backfill_item>& items) -> caf::result<bool> {
      return handle_response(self, from.node_id, from.epoch, request_id, std::move(items));
    },
    [=](sendfail_atom, const session_ref& to, const std::string& request_id) {
      const auto& node_id = to.node_id;
      const auto epoch = to.epoch;
      // lessons.md "mark then fail to send": a request the node never got is reset at once.
      auto& st = self->state;
      auto* r = st.book.find(request_id);
      if (!r || r->node_id != node_id || r->epoch != epoch)
        return;
      auto taken = st.book.close(request_id);
      ++st.counters.send_failures;
      reset(self, {*taken}, "cancelled", "send failed");
      count_drain_resets(self, {*taken});
      check_drains(self);
    },
    [=](node_up_atom, const session_ref& who, caf::actor session) {
      const auto& node_id = who.node_id;
      const auto epoch = who.epoch;
      auto& st = self->state;
      auto& s = st.sessions[node_id];
      if (s.epoch > epoch)
        return; // an older session's news
      s = {epoch, std::move(session)};
      // Requests of older sessions can no longer be answered (their responses are refused).
      auto older = st.book.take_older(node_id, epoch);
      st.counters.cancelled += older.size();
      reset(self, older, "cancelled", "superseded");
    },
    [=](node_down_atom, const session_ref& who, const std::string& reason) {
      const auto& node_id = who.node_id;
      const auto epoch = who.epoch;
      auto& st = self->state;
      auto taken = st.book.take_session(node_id, epoch);
      st.counters.cancelled += taken.size();
      reset(self, taken, "cancelled", "session ended: " + reason);
      count_drain_resets(self, taken);
      auto s = st.sessions.find(node_id);
      if (s != st.sessions.end() && s->second.epoch == epoch) {
        st.sessions.erase(s);
        // The drained session is gone: answer a drain still waiting, and forget the node (it
        // is disabled; a later session of it is a new start).
        check_drains(self);
        if (auto d = st.draining.find(node_id); d != st.draining.end()) {
          for (auto& rp : d->second.waiting)
            rp.deliver(d->second.counts);
          st.draining.erase(d);
        }
      }
    },
    [=](expire_atom) {
      auto& st = self->state;
      auto now = now_of(self);
      if (st.timer_at && *st.timer_at <= now)
        st.timer_at.reset();
      auto expired = st.book.take_expired(now);
      st.counters.expired += expired.size();
      reset(self, expired, "expired", "no response within request_timeout");
      count_drain_resets(self, expired);
      check_drains(self);
      for (auto& [node_id, d] : st.draining)
        if (!d.waiting.empty() && d.deadline)
          arm_timer(self, *d.deadline);
      auto retry = std::move(st.unreset);
      st.unreset.clear();
      for (auto& op : retry)
        send_reset(self, std::move(op));
      arm_deadline_timer(self);
    },
    [=](settle_atom) { send_resets(self); },
    [=](shutdown_atom) {
      auto& st = self->state;
      st.stopping = true;
      // Everything received so far was sent to storage before this reset, so a response that
      // arrived first is applied first.
      auto all = st.book.take_all();
      st.counters.cancelled += all.size();
      reset(self, all, "cancelled", "shutdown");
      send_resets(self);
      return static_cast<uint64_t>(all.size());
    },
    [=](node_drain_atom, const std::string& node_id, caf::timespan within) -> caf::result<drain_result> {
      auto& st = self->state;
      if (!st.sessions.count(node_id))
        return drain_result{}; // not connected here: nothing in flight, nothing to hold back
      auto& d = st.draining[node_id];
      auto rp = self->make_response_promise<drain_result>();
      d.waiting.push_back(rp);
      auto deadline = now_of(self) + within;
      if (!d.deadline || deadline < *d.deadline)
        d.deadline = deadline;
      arm_timer(self, *d.deadline);
      log::info(
        "draining node",
        {{"node_id", node_id}, {"deadline_ms", std::chrono::duration_cast<std::chrono::milliseconds>(within).count()}});
      check_drains(self);
      return rp;
    },
    [=](cancel_atom, const std::vector<std::string>& ids) {
      auto& st = self->state;
      auto taken = st.book.take_exactly(ids);
      if (!taken)
        return cancel_result{true, 0, 0};
      cancel_result out;
      out.requests = static_cast<int64_t>(taken->size());
      for (auto& r : *taken)
        out.attempts += static_cast<int64_t>(r.attempt_ids.size());
      st.counters.cancelled += taken->size();
      // Not the node's failure: nothing is counted against the attempts (rule 3 counts expiry).
      reset(self, *taken, "cancelled", "cancelled by an operator");
      // In storage before the answer: what the caller reads next sees the attempts partial.
      send_resets(self);
      count_drain_resets(self, *taken);
      check_drains(self);
      log::info("requests cancelled by an operator", {{"requests", out.requests}, {"attempts", out.attempts}});
      return out;
    },
    [=](caf::get_atom) {
      auto& st = self->state;
      tracker_status out = st.counters;
      auto now = now_of(self);
      for (auto& [id, r] : st.book.all()) {
        auto age = r.sent ? std::chrono::duration_cast<std::chrono::milliseconds>(now - r.sent_at).count() : 0;
        out.requests.push_back({id, r.node_id, r.epoch, r.trigger, r.sent, r.attempt_ids.size(), age});
      }
      return out;
    },
  };
}

} // namespace

tracker_actor spawn_tracker(caf::actor_system& sys, tracker_options opts) {
  return sys.spawn(tracker_impl, std::move(opts));
}

} // namespace nodecoord
