#include "actors/acceptor.hpp"

#include "common/log.hpp"
#include "common/metrics.hpp"
#include "tls/context.hpp"

#include <caf/actor_system.hpp>
#include <caf/io/broker.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/system_messages.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>

#include <optional>
#include <unordered_map>

namespace nodecoord {

namespace {

struct acceptor_state {
  static inline const char* name = "acceptor";
  acceptor_options opts;
  caf::io::accept_handle doorman;
  acceptor_stats stats;
  std::unordered_map<caf::actor_id, caf::actor> sessions;
  bool stopping = false;
  std::optional<caf::response_promise> stopped;
};

using self_ptr = caf::io::stateful_broker<acceptor_state>*;

void maybe_stopped(self_ptr self) {
  auto& st = self->state;
  if (st.stopping && st.sessions.empty() && st.stopped) {
    st.stopped->deliver(st.stats.accepted);
    st.stopped.reset();
    self->quit();
  }
}

caf::behavior acceptor_impl(self_ptr self, acceptor_options opts) {
  auto& st = self->state;
  st.opts = std::move(opts);
  if (!st.opts.session.handshakes)
    st.opts.session.handshakes = std::make_shared<std::atomic<int64_t>>(0);
  auto res = self->add_tcp_doorman(st.opts.port, st.opts.host.c_str(), true);
  if (!res) {
    log::error("cannot listen", {{"address", st.opts.host + ":" + std::to_string(st.opts.port)},
                                 {"error", self->system().render(res.error())}});
    self->quit(res.error());
    return {};
  }
  st.doorman = res->first;
  st.stats.port = res->second;
  auto tls_mode = [&]() -> std::string {
    auto t = st.opts.session.tls ? st.opts.session.tls->get() : tls::server_setting::value{};
    if (!t.ctx)
      return "off";
    return std::string(t.required ? "required" : "optional") + (t.ctx->verifies_clients() ? ",mutual" : "");
  };
  log::info("listening for nodes", {{"address", st.opts.host + ":" + std::to_string(st.stats.port)},
                                    {"max_connections", st.opts.max_connections},
                                    {"tls", tls_mode()}});
  self->set_down_handler([=](caf::down_msg& m) {
    auto& s = self->state;
    if (s.sessions.erase(m.source.id()) > 0)
      --s.stats.open;
    maybe_stopped(self);
  });
  return {
    [=](const caf::io::new_connection_msg& msg) {
      auto& s = self->state;
      if (s.stopping || s.stats.open >= s.opts.max_connections) {
        ++s.stats.refused;
        self->close(msg.handle); // at once: nothing is read from or written to it
        if (s.stats.refused == 1 || s.stats.refused % 1000 == 0)
          log::warn("connection refused: max_connections reached",
                    {{"max_connections", s.opts.max_connections}, {"refused_total", s.stats.refused}});
        return;
      }
      // Unauthenticated connections cost a lookup each and prove nothing: a bounded number at
      // once, so a flood of hellos cannot take the places of nodes that authenticate.
      if (s.opts.session.handshakes->load(std::memory_order_relaxed) >= int64_t{s.opts.max_handshakes}) {
        ++s.stats.refused_handshakes;
        metrics::daemon().connects.inc("handshakes_full");
        self->close(msg.handle);
        if (s.stats.refused_handshakes == 1 || s.stats.refused_handshakes % 1000 == 0)
          log::warn("connection refused: max_handshakes connections are authenticating",
                    {{"max_handshakes", s.opts.max_handshakes}, {"refused_total", s.stats.refused_handshakes}});
        return;
      }
      s.opts.session.handshakes->fetch_add(1, std::memory_order_relaxed);
      auto child = fork_session(self, msg.handle, s.opts.session);
      self->monitor(child);
      s.sessions.emplace(child.id(), child);
      ++s.stats.open;
      ++s.stats.accepted;
    },
    [=](const caf::io::acceptor_closed_msg&) {},
    [=](port_atom) { return self->state.stats.port; },
    [=](stats_atom) { return self->state.stats; },
    [=](shutdown_atom) -> caf::response_promise {
      auto& s = self->state;
      auto rp = self->make_response_promise();
      s.stopping = true;
      s.stopped = rp;
      self->close(s.doorman);
      // Sessions are monitored, not linked: each closes with close{shutdown} and reports.
      for (auto& [id, session] : s.sessions)
        self->send(session, caf::close_atom::value, std::string("shutdown"));
      maybe_stopped(self);
      return rp;
    },
  };
}

} // namespace

caf::actor spawn_acceptor(caf::actor_system& sys, acceptor_options opts) {
  return sys.middleman().spawn_broker(acceptor_impl, std::move(opts));
}

} // namespace nodecoord
