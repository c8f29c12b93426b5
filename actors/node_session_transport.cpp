#include "actors/node_session_state.hpp"

#include "common/log.hpp"
#include "common/metrics.hpp"

namespace nodecoord::session_detail {

/// Moves what the TLS stream has for the network (records, handshake messages, alerts) into the
/// socket's buffer.
void flush_tls(self_ptr self) {
  auto& st = self->state;
  if (!st.tls || st.tls->output_size() == 0)
    return;
  st.tls->take_output(self->wr_buf(st.hdl));
  self->flush(st.hdl);
}

/// Bytes for the node, encrypted when the link is TLS.
void put(self_ptr self, std::string_view bytes) {
  auto& st = self->state;
  if (st.tls) {
    st.tls->send(bytes);
    flush_tls(self);
    return;
  }
  auto& buf = self->wr_buf(st.hdl);
  buf.insert(buf.end(), bytes.begin(), bytes.end());
  self->flush(st.hdl);
}

/// Queues one encoded frame. A node that does not read fills its buffer: past
/// max_outbound_bytes it is disconnected (slow_consumer) rather than buffered forever.
bool write_line(self_ptr self, const std::string& line) {
  auto& st = self->state;
  if (st.ph == node_session_state::phase::closing)
    return false;
  if (self->wr_buf(st.hdl).size() + line.size() > st.opts.max_outbound_bytes) {
    terminate(self, "slow_consumer");
    return false;
  }
  put(self, line);
  return true;
}

/// Writes a last frame (error or close), then closes: the data is sent before the FIN.
void close_with(self_ptr self, const std::string& line, const std::string& reason) {
  auto& st = self->state;
  if (st.ph == node_session_state::phase::closing)
    return;
  put(self, line); // a small frame may exceed the bound once
  if (st.tls && st.tls->open()) {
    st.tls->shutdown(); // close_notify: the node can tell our close from a cut connection
    flush_tls(self);
  }
  terminate(self, reason);
}

/// Gives back this connection's place among the unauthenticated ones (once).
void leave_handshake(self_ptr self) {
  auto& st = self->state;
  if (st.in_handshake) {
    if (st.opts.handshakes)
      st.opts.handshakes->fetch_sub(1, std::memory_order_relaxed);
    metrics::daemon().handshakes.fetch_sub(1, std::memory_order_relaxed);
  }
  st.in_handshake = false;
}

void terminate(self_ptr self, const std::string& reason) {
  auto& st = self->state;
  if (st.ph == node_session_state::phase::closing)
    return;
  leave_handshake(self);
  bool was_active = st.ph == node_session_state::phase::active;
  st.ph = node_session_state::phase::closing;
  end_checks(self, reason);
  if (was_active) {
    self->send(st.opts.registry, ended_atom::value, session_ref{st.node_id, st.epoch}, reason);
    metrics::daemon().sessions.fetch_sub(1, std::memory_order_relaxed);
    metrics::daemon().disconnects.inc(reason);
  }
  log::debug("session closed", {{"node", st.node_name}, {"epoch", st.epoch}, {"peer", st.peer}, {"reason", reason}});
  self->close(st.hdl);
  if (st.paused) {
    st.paused = false;
    metrics::daemon().sessions_paused.fetch_sub(1, std::memory_order_relaxed);
  }
  // Frames handed on stay counted in the ingest budget until storage answers them, or a node
  // could reconnect in a loop and grow the storage queue past its bound: wait for the answers.
  if (st.unsettled_frames == 0)
    self->quit();
}

/// The first byte tells a TLS client (a handshake record) from a plain one ('{'). With a
/// certificate configured and TLS required, a plain client gets close{tls_required} in clear
/// text, the only thing it can read. False when the connection is being closed.
bool choose_transport(self_ptr self, unsigned char first) {
  auto& st = self->state;
  st.transport_known = true;
  tls::server_setting::value setting;
  if (st.opts.tls)
    setting = st.opts.tls->get();
  if (setting.ctx && tls::starts_tls(first)) {
    st.tls = std::make_unique<tls::stream>(setting.ctx);
    st.tls_verifies_clients = setting.ctx->verifies_clients();
    return true;
  }
  if (setting.ctx && setting.required) {
    metrics::daemon().connects.inc(protocol::close_reason::tls_required);
    close_with(self, protocol::encode_close(protocol::close_reason::tls_required),
               protocol::close_reason::tls_required);
    return false;
  }
  return true;
}

} // namespace nodecoord::session_detail
