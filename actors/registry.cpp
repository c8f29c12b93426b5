#include "actors/registry.hpp"
#include "common/states.hpp"

#include "common/auth_limiter.hpp"

#include "common/api_key.hpp"
#include "common/log.hpp"
#include "protocol/codec.hpp"

#include <caf/actor_system.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <deque>
#include <functional>
#include <memory>
#include <unordered_map>

namespace nodecoord {

namespace {

struct registry_state {
  static inline const char* name = "registry";

  struct entry {
    caf::actor session;
    int64_t epoch = 0;
    std::string name;
    std::string connected_at;
    std::string peer;
  };

  registry_options opts;
  std::unordered_map<std::string, entry> nodes;            // node_id -> live session
  std::unordered_map<caf::actor_id, std::string> by_actor; // session actor -> node_id
  std::unordered_map<std::string, std::string> seen;       // node_id -> last frame time
  std::unique_ptr<auth_limiter> limiter;                   // failed hellos per address
  uint32_t lookups = 0;                                    // key lookups in storage now
  std::deque<std::function<void()>> waiting_lookups;       // hellos waiting for a lookup slot
  std::string disabled_since;                              // last poll time
  std::vector<caf::actor> subscribers;                     // node_up / node_down
  storage::nodes_end_sessions ended;                       // not yet sent (see settle_atom)

  template <class... Ts>
  void publish(const Ts&... xs) {
    for (auto& s : subscribers)
      caf::anon_send(s, xs...);
  }
};

using self_ptr = registry_actor::stateful_pointer<registry_state>;
using promise = caf::typed_response_promise<auth_result>;

auth_result auth_failed() {
  // One answer for every authentication problem, so a prober learns nothing.
  return {false, protocol::code::auth_failed, "authentication failed", "", 0};
}

bool rate_limited(self_ptr self, const std::string& peer) {
  return self->state.limiter->limited(peer, self->state.opts.clock());
}

void count_failure(self_ptr self, const auth_request& req, const char* why) {
  self->state.limiter->failed(req.peer, self->state.opts.clock());
  log::info("authentication failed", {{"node", req.node_name}, {"peer", req.peer}, {"why", why}});
}

/// Runs `lookup` now if fewer than max_lookups are in storage, else when one finishes.
void with_lookup_slot(self_ptr self, std::function<void()> lookup) {
  auto& st = self->state;
  if (st.lookups < st.opts.max_lookups) {
    ++st.lookups;
    lookup();
  } else {
    st.waiting_lookups.push_back(std::move(lookup));
  }
}

void lookup_done(self_ptr self) {
  auto& st = self->state;
  if (!st.waiting_lookups.empty()) {
    auto next = std::move(st.waiting_lookups.front());
    st.waiting_lookups.pop_front();
    next(); // takes over the slot
  } else {
    --st.lookups;
  }
}

void register_session(self_ptr self, const storage::node_record& node, int64_t epoch, const caf::actor& session,
                      const std::string& peer) {
  auto& st = self->state;
  auto it = st.nodes.find(node.id);
  if (it != st.nodes.end()) {
    // The newer hello wins; the older session is told so and its later cleanup is ignored
    // because its epoch is no longer current.
    log::info("session superseded", {{"node", node.name}, {"old_epoch", it->second.epoch}, {"epoch", epoch}});
    caf::anon_send(it->second.session, caf::close_atom::value, std::string(protocol::close_reason::superseded));
    st.by_actor.erase(it->second.session.id());
  }
  st.nodes[node.id] = {session, epoch, node.name, format_time(st.opts.clock()), peer};
  st.by_actor[session.id()] = node.id;
  self->monitor(session);
  log::info("node online", {{"node", node.name}, {"epoch", epoch}, {"peer", peer}});
}

void begin_session(self_ptr self, promise rp, storage::node_record node, int64_t expected, caf::actor session,
                   std::string peer, std::string caps, int tries) {
  self->request(self->state.opts.storage, caf::infinite, storage::node_begin_session{node.id, expected, caps})
    .then(
      [=](const storage::node_begin_session::result_type& r) mutable {
        if (r.ok) {
          register_session(self, node, r.epoch, session, peer);
          rp.deliver(auth_result{true, "", "", node.id, r.epoch});
          // After the answer: whatever node_up causes (a backfill_request) reaches the session
          // after it has written its welcome.
          self->state.publish(node_up_atom::value, session_ref{node.id, r.epoch}, session);
          return;
        }
        // Another hello of this node won the compare-and-set: take the next epoch. Each retry
        // means another hello succeeded, so this ends; the bound only guards against a runaway.
        // An unchanged epoch means the node was disabled meanwhile.
        if (tries > 0 && r.epoch != expected) {
          begin_session(self, rp, node, r.epoch, session, peer, caps, tries - 1);
          return;
        }
        log::info("session refused", {{"node", node.name}, {"why", "disabled or lost the epoch race"}});
        rp.deliver(auth_failed());
      },
      [=](caf::error& e) mutable {
        log::warn("session start failed", {{"node", node.name}, {"error", to_string(e)}});
        rp.deliver(auth_result{false, protocol::code::unavailable, "try again later", "", 0});
      });
}

void end_session(self_ptr self, const std::string& node_id, int64_t epoch, const std::string& reason) {
  auto& st = self->state;
  // Every ended session, current or superseded: its requests are keyed by epoch, so the tracker
  // can always drop them safely.
  st.publish(node_down_atom::value, session_ref{node_id, epoch}, reason);
  auto it = st.nodes.find(node_id);
  if (it == st.nodes.end() || it->second.epoch != epoch) {
    // A superseded session: the newer one owns the node's entry and row.
    log::debug("stale session ended", {{"node_id", node_id}, {"epoch", epoch}, {"reason", reason}});
    return;
  }
  log::info("node offline", {{"node", it->second.name}, {"epoch", epoch}, {"reason", reason}});
  st.by_actor.erase(it->second.session.id());
  st.nodes.erase(it);
  // A storm of session ends becomes one storage operation: the first end asks for a settle
  // message, handled after every end already in the mailbox (or after the window). The epoch rule keeps a
  // late write harmless if the node reconnected meanwhile.
  if (st.ended.sessions.empty()) {
    if (st.opts.coalesce_window.count() > 0)
      self->delayed_send(self, st.opts.coalesce_window, settle_atom::value);
    else
      self->send(self, settle_atom::value);
  }
  st.ended.sessions.push_back({node_id, epoch, reason});
}

void write_session_ends(self_ptr self) {
  auto& st = self->state;
  if (st.ended.sessions.empty())
    return;
  auto op = std::move(st.ended);
  st.ended = {};
  auto count = op.sessions.size();
  self->request(st.opts.storage, caf::infinite, std::move(op))
    .then([](const storage::nodes_end_sessions::result_type&) {},
          [count](caf::error& e) {
            log::error("could not record nodes offline", {{"sessions", count}, {"error", to_string(e)}});
          });
}

void flush_seen(self_ptr self) {
  auto& st = self->state;
  if (st.seen.empty())
    return;
  storage::node_touch op;
  op.nodes.reserve(st.seen.size());
  for (auto& [id, at] : st.seen)
    op.nodes.push_back({id, at});
  st.seen.clear();
  self->request(st.opts.storage, caf::infinite, std::move(op))
    .then([](const storage::node_touch::result_type&) {},
          [](caf::error& e) {
            log::warn("last_seen_at update failed", {{"error", to_string(e)}});
          });
}

/// Asks the session of the node named `name` to close with `reason`; false if it has none here.
bool close_named(self_ptr self, const std::string& name, const char* reason) {
  for (auto& [id, e] : self->state.nodes)
    if (e.name == name) {
      caf::anon_send(e.session, caf::close_atom::value, std::string(reason));
      return true;
    }
  return false;
}

/// Asks every live session to close with `reason`; answers how many were asked.
uint64_t close_every_session(self_ptr self, const std::string& reason) {
  for (auto& [id, e] : self->state.nodes)
    caf::anon_send(e.session, caf::close_atom::value, reason);
  return self->state.nodes.size();
}

registry_actor::behavior_type registry_impl(self_ptr self, registry_options opts) {
  auto& st = self->state;
  st.opts = std::move(opts);
  st.disabled_since = format_time(st.opts.clock());
  st.limiter = std::make_unique<auth_limiter>(st.opts.auth_failures_per_minute, st.opts.auth_limiter_capacity);
  // Stopping: the session ends already received still reach storage (the settle message queued
  // for them would come after this exit).
  self->set_exit_handler([=](caf::exit_msg& m) {
    write_session_ends(self);
    flush_seen(self);
    self->quit(m.reason);
  });
  self->set_down_handler([=](caf::down_msg& m) {
    // A session that died without saying so (or before it learned its epoch).
    auto& s = self->state;
    auto it = s.by_actor.find(m.source.id());
    if (it == s.by_actor.end())
      return;
    auto node_id = it->second;
    auto n = s.nodes.find(node_id);
    if (n != s.nodes.end())
      end_session(self, node_id, n->second.epoch, "closed");
  });
  self->delayed_send(self, st.opts.seen_flush, flush_atom::value);
  self->delayed_send(self, st.opts.disabled_poll, poll_atom::value);
  return {
    [=](hello_atom, auth_request& req, caf::actor session) -> promise {
      auto rp = self->make_response_promise<auth_result>();
      if (rate_limited(self, req.peer)) {
        log::debug("authentication rate-limited", {{"peer", req.peer}});
        rp.deliver(auth_failed());
        return rp;
      }
      auto key = parse_api_key(req.key);
      if (!key) {
        count_failure(self, req, "malformed key");
        rp.deliver(auth_failed());
        return rp;
      }
      with_lookup_slot(self, [=]() mutable {
        self->request(self->state.opts.storage, caf::infinite, storage::node_lookup_by_key{key->key_id})
          .then(
            [=](const storage::node_lookup_by_key::result_type& r) mutable {
              lookup_done(self);
              if (rate_limited(self, req.peer)) { // failures that were looked up meanwhile count
                rp.deliver(auth_failed());
                return;
              }
              const char* why = nullptr;
              if (!r.found)
                why = "unknown key id";
              else if (!api_secret_matches(key->secret, r.node.key_hash))
                why = "wrong key";
              else if (r.node.name != req.node_name)
                why = "key belongs to another node";
              else if (is(r.node.status, node_status::disabled))
                why = "node disabled";
              if (why) {
                count_failure(self, req, why);
                rp.deliver(auth_failed());
                return;
              }
              begin_session(self, rp, r.node, r.node.session_epoch, session, req.peer, req.capabilities, 1000);
            },
            [=](caf::error& e) mutable {
              lookup_done(self);
              log::warn("authentication lookup failed", {{"error", to_string(e)}});
              rp.deliver(auth_result{false, protocol::code::unavailable, "try again later", "", 0});
            });
      });
      return rp;
    },
    [=](ended_atom, const session_ref& who, const std::string& reason) {
      end_session(self, who.node_id, who.epoch, reason);
    },
    [=](seen_atom, const session_ref& who) {
      auto& s = self->state;
      auto it = s.nodes.find(who.node_id);
      if (it != s.nodes.end() && it->second.epoch == who.epoch)
        s.seen[who.node_id] = format_time(s.opts.clock());
    },
    [=](settle_atom) { write_session_ends(self); },
    [=](flush_atom) {
      flush_seen(self);
      self->delayed_send(self, self->state.opts.seen_flush, flush_atom::value);
    },
    [=](poll_atom) {
      auto since = self->state.disabled_since;
      // Overlapping windows: a node disabled during the query is seen by the next poll too.
      self->state.disabled_since = format_time(self->state.opts.clock() - std::chrono::seconds(1));
      self->request(self->state.opts.storage, caf::infinite, storage::nodes_disabled_since{since})
        .then(
          [=](const storage::nodes_disabled_since::result_type& ids) {
            for (auto& id : ids) {
              auto it = self->state.nodes.find(id);
              if (it != self->state.nodes.end())
                caf::anon_send(it->second.session, caf::close_atom::value,
                               std::string(protocol::close_reason::disabled));
            }
            self->delayed_send(self, self->state.opts.disabled_poll, poll_atom::value);
          },
          [=](caf::error&) { self->delayed_send(self, self->state.opts.disabled_poll, poll_atom::value); });
    },
    [=](disable_atom, const std::string& name) { return close_named(self, name, protocol::close_reason::disabled); },
    [=](node_drain_atom, const std::string& name) { return close_named(self, name, protocol::close_reason::drained); },
    [=](check_atom, check_dispatch& d) -> caf::result<check_dispatch_result> {
      auto it = self->state.nodes.find(d.node_id);
      if (it == self->state.nodes.end())
        return check_dispatch_result{false, "node_not_connected", "the node has no session with this coordinator"};
      auto rp = self->make_response_promise<check_dispatch_result>();
      self->request(it->second.session, caf::infinite, check_atom::value, std::move(d))
        .then([rp](check_dispatch_result& r) mutable { rp.deliver(std::move(r)); },
              [rp](caf::error&) mutable {
                // The session ended between the lookup and the request.
                rp.deliver(check_dispatch_result{false, "node_not_connected", "the node's session ended"});
              });
      return rp;
    },
    [=](shutdown_atom) {
      auto n = close_every_session(self, protocol::close_reason::shutdown);
      write_session_ends(self);
      flush_seen(self);
      return n;
    },
    // The sessions end as any closed session does (their ends reach the tracker and storage).
    [=](shutdown_atom, const std::string& reason) { return close_every_session(self, reason); },
    [=](subscribe_atom, caf::actor subscriber) { self->state.subscribers.push_back(std::move(subscriber)); },
    [=](caf::get_atom) {
      std::vector<connected_node> out;
      for (auto& [id, e] : self->state.nodes)
        out.push_back({id, e.name, e.epoch, e.connected_at, e.peer});
      return out;
    },
    [=](stats_atom) { return static_cast<uint64_t>(self->state.nodes.size()); },
    [=](caf::get_atom, const std::vector<std::string>& node_ids) {
      std::vector<connected_node> out;
      for (auto& id : node_ids)
        if (auto it = self->state.nodes.find(id); it != self->state.nodes.end())
          out.push_back({id, it->second.name, it->second.epoch, it->second.connected_at, it->second.peer});
      return out;
    },
  };
}

} // namespace

registry_actor spawn_registry(caf::actor_system& sys, registry_options opts) {
  return sys.spawn(registry_impl, std::move(opts));
}

} // namespace nodecoord
