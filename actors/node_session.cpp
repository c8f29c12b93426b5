#include "actors/node_session.hpp"
#include "actors/node_session_state.hpp"

#include "actors/errors.hpp"

#include "common/checks.hpp"
#include "common/ingest_budget.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "protocol/ack_gate.hpp"
#include "protocol/codec.hpp"
#include "tls/stream.hpp"

#include <caf/io/broker.hpp>
#include <caf/io/receive_policy.hpp>
#include <caf/io/system_messages.hpp>
#include <caf/stateful_actor.hpp>

#include <algorithm>
#include <deque>

namespace nodecoord {

namespace {

using namespace session_detail;

using hello_timeout_atom = caf::atom_constant<caf::atom("hellotmo")>;
using resume_atom = caf::atom_constant<caf::atom("resume")>;
using paused_atom = caf::atom_constant<caf::atom("paused")>;
using rearm_atom = caf::atom_constant<caf::atom("rearm")>;
using check_due_atom = caf::atom_constant<caf::atom("checkdue")>;

// A check's answer may take this long beyond its timeout (the agent's kill, reap and send).
constexpr int64_t check_grace_ms = 5000;

void protocol_error(self_ptr self, const std::string& code, const std::string& message, const std::string& ref) {
  auto& st = self->state;
  ++st.protocol_errors;
  metrics::daemon().protocol_errors.inc(code);
  write_line(self, protocol::encode_error(code, message, ref));
  if (st.protocol_errors >= st.opts.max_protocol_errors && st.ph != node_session_state::phase::closing)
    close_with(self, protocol::encode_close(protocol::close_reason::protocol_errors),
               protocol::close_reason::protocol_errors);
}

// Timers are sent anonymously: a pending delayed message with the session as its sender kept a
// closed session alive until the timer fired (up to idle_timeout per connection).
void arm_idle_timer(self_ptr self, caf::actor_clock::duration_type after) {
  self->state.idle_timer = true;
  caf::delayed_anon_send(caf::actor_cast<caf::actor>(self), after, idle_atom::value);
}

void handle_active(self_ptr self, protocol::node_message&& msg, uint64_t bytes);
void maybe_pause(self_ptr self);

void handle_line(self_ptr self, std::string_view line) {
  auto& st = self->state;
  using phase = node_session_state::phase;
  switch (st.ph) {
    case phase::closing: return;
    case phase::authenticating:
      // Pipelined frames: keep them (bounded, like the hello) until the registry answered.
      st.early_bytes += line.size();
      if (st.early_bytes > st.opts.max_hello_bytes) {
        close_with(self, protocol::encode_error(protocol::code::hello_required, "wait for welcome before sending more"),
                   "early_frames");
        return;
      }
      st.early.emplace_back(line);
      return;
    case phase::active: {
      st.last_frame = self->clock().now();
      // last_seen_at comes from frames only. The registry writes it every seen_flush, so
      // reporting more often buys nothing and costs a message per heartbeat.
      if (st.last_frame - st.last_seen_report >= st.opts.seen_report) {
        st.last_seen_report = st.last_frame;
        self->send(st.opts.registry, seen_atom::value, session_ref{st.node_id, st.epoch});
      }
      auto decoded = protocol::decode(line);
      if (auto* err = std::get_if<protocol::decode_error>(&decoded)) {
        metrics::daemon().frame(metrics::frame_kind::invalid);
        protocol_error(self, err->code, err->message, err->ref);
        return;
      }
      handle_active(self, std::move(std::get<protocol::node_message>(decoded)), line.size());
      maybe_pause(self);
      return;
    }
    case phase::awaiting_hello: break;
  }
  auto decoded = protocol::decode(line);
  auto* msg = std::get_if<protocol::node_message>(&decoded);
  auto* h = msg ? std::get_if<protocol::hello>(msg) : nullptr;
  metrics::daemon().frame(h ? metrics::frame_kind::hello : metrics::frame_kind::invalid);
  if (!h) {
    metrics::daemon().connects.inc("hello_required");
    auto why = msg ? std::string("the first frame must be hello, got ") + protocol::type_of(*msg)
                   : "the first frame must be a valid hello: " + std::get<protocol::decode_error>(decoded).message;
    close_with(self, protocol::encode_error(protocol::code::hello_required, why), "hello_required");
    return;
  }
  if (h->protocol != protocol::version) {
    metrics::daemon().connects.inc("unsupported_protocol");
    close_with(self,
               protocol::encode_error(protocol::code::unsupported_protocol,
                                      "this coordinator speaks protocol 1, not " + std::to_string(h->protocol)),
               "unsupported_protocol");
    return;
  }
  // Mutual TLS: the certificate must name the node, in addition to its key (a stolen key alone
  // is not enough).
  if (st.tls_verifies_clients && !st.tls->peer_certificate_names(h->node)) {
    metrics::daemon().connects.inc("certificate_mismatch");
    log::warn("hello refused: the client certificate does not name the node", {{"node", h->node}, {"peer", st.peer}});
    close_with(self,
               protocol::encode_error(protocol::code::auth_failed,
                                      "the client certificate does not name node '" + h->node + "'"),
               "certificate_mismatch");
    return;
  }
  st.ph = phase::authenticating;
  st.node_name = h->node;
  st.takes_checks = std::find(h->features.begin(), h->features.end(), protocol::feature::checks) != h->features.end();
  self
    ->request(st.opts.registry, caf::infinite, hello_atom::value,
              auth_request{h->node, h->key, st.peer, h->capabilities}, caf::actor_cast<caf::actor>(self))
    .then(
      [=](const auth_result& r) {
        auto& s = self->state;
        if (s.ph != phase::authenticating)
          return;
        if (!r.ok) {
          metrics::daemon().connects.inc(r.code);
          close_with(self, protocol::encode_error(r.code, r.message), r.code);
          return;
        }
        metrics::daemon().connects.inc("ok");
        metrics::daemon().sessions.fetch_add(1, std::memory_order_relaxed);
        leave_handshake(self);
        s.splitter.set_max(s.opts.max_frame_bytes);
        s.ph = phase::active;
        s.node_id = r.node_id;
        s.epoch = r.epoch;
        s.last_frame = self->clock().now();
        s.last_seen_report = s.last_frame;
        write_line(self, protocol::encode_welcome(r.node_id, r.epoch, s.opts.heartbeat_interval.count(),
                                                  format_time(s.opts.clock())));
        arm_idle_timer(self, s.opts.idle_timeout);
        auto early = std::move(s.early);
        s.early.clear();
        s.early_bytes = 0;
        for (auto& l : early)
          handle_line(self, l);
      },
      [=](caf::error& e) {
        metrics::daemon().connects.inc("unavailable");
        close_with(self, protocol::encode_error(protocol::code::unavailable, "try again later"), to_string(e));
      });
}

// --- backpressure ----------------------------------------------------------------------------

/// CAF 0.17 loses a trigger that follows a halt too closely: halt() only queues the removal of
/// the read event (applied when the multiplexer's loop iteration ends, which then also clears
/// the stream's reader), and trigger() does nothing while that reader is still set. A session
/// paused and resumed within one iteration (its settles arrive in the same batch as the data
/// that paused it) would then never read again, and be closed as idle. So after each resume it
/// triggers again, at growing intervals, until a read shows that reading works: a trigger
/// while reading is a no-op. The last check comes before the idle timeout could close it.
void rearm_reading(self_ptr self) {
  auto& st = self->state;
  st.read_since_resume = false;
  auto gen = ++st.resumes;
  auto me = caf::actor_cast<caf::actor>(self);
  for (auto after : {caf::actor_clock::duration_type{std::chrono::milliseconds(5)},
                     caf::actor_clock::duration_type{std::chrono::milliseconds(100)},
                     caf::actor_clock::duration_type{st.opts.heartbeat_interval}})
    caf::delayed_anon_send(me, after, rearm_atom::value, gen);
}

void send_paused_notice(self_ptr self);

/// Reads again if this session and the fleet are back under their resume marks; if only the
/// fleet is not, waits to be woken (resume_atom) by whichever session's settle gets it there.
void maybe_resume(self_ptr self) {
  auto& st = self->state;
  if (!st.paused || st.ph == node_session_state::phase::closing)
    return;
  if (!ingest_budget::under_resume_mark(st.own, st.unsettled_bytes, st.unsettled_frames))
    return; // our own settles will call again
  if (st.opts.ingest && !st.opts.ingest->resumable()) {
    if (!st.waiting) {
      st.waiting = true;
      caf::actor_addr addr = self->address(); // weak: a closed session is not kept alive
      st.opts.ingest->wait([addr] {
        if (auto a = caf::actor_cast<caf::actor>(addr))
          caf::anon_send(a, resume_atom::value);
      });
    }
    return;
  }
  st.paused = false;
  st.last_frame = self->clock().now(); // a paused session was not idle
  metrics::daemon().sessions_paused.fetch_sub(1, std::memory_order_relaxed);
  self->trigger(st.hdl);
  rearm_reading(self);
}

/// Stops reading the socket while this session or the fleet has too much handed on and not
/// settled: the kernel's buffer fills and TCP pushes back on the node. Nothing read is dropped.
void maybe_pause(self_ptr self) {
  auto& st = self->state;
  if (st.paused || st.ph == node_session_state::phase::closing)
    return;
  if (st.unsettled_frames == 0)
    return; // nothing of ours waits: heartbeats of an idle session are never held back
  bool own_full = ingest_budget::at_limit(st.own, st.unsettled_bytes, st.unsettled_frames);
  if (!own_full && !(st.opts.ingest && st.opts.ingest->over()))
    return;
  st.paused = true;
  metrics::daemon().sessions_paused.fetch_add(1, std::memory_order_relaxed);
  metrics::daemon().session_pauses.fetch_add(1, std::memory_order_relaxed);
  self->halt(st.hdl);
  // The node hears from us while we do not read, so it does not take us for a dead link.
  if (!st.paused_timer) {
    st.paused_timer = true;
    caf::delayed_anon_send(caf::actor_cast<caf::actor>(self), st.opts.heartbeat_interval, paused_atom::value);
  }
  maybe_resume(self); // registers the wake if only the fleet is over
}

/// The answer of a frame handed on has been handled (its error frame, if any, is written): the
/// heartbeats that waited only for it are acknowledged now, after that error.
void settle(self_ptr self, protocol::ack_gate::ticket t, uint64_t bytes) {
  auto& st = self->state;
  st.acks.settle(t);
  for (auto seq : st.acks.released())
    write_line(self, protocol::encode_heartbeat_ack(seq, format_time(st.opts.clock())));
  st.unsettled_bytes -= bytes;
  --st.unsettled_frames;
  if (st.opts.ingest)
    for (auto& wake : st.opts.ingest->give(bytes))
      wake();
  if (st.ph == node_session_state::phase::closing) {
    if (st.unsettled_frames == 0)
      self->quit(); // the connection is gone; this was the last answer it waited for
    return;
  }
  maybe_resume(self);
}

/// A frame is handed on (to storage, or to the tracker and then storage): count it.
protocol::ack_gate::ticket hand_on(self_ptr self, uint64_t bytes) {
  auto& st = self->state;
  st.unsettled_bytes += bytes;
  ++st.unsettled_frames;
  if (st.opts.ingest)
    st.opts.ingest->take(bytes);
  return st.acks.open();
}

void heartbeat(self_ptr self, int64_t seq) {
  auto& st = self->state;
  auto now = self->clock().now();
  if (st.acks.heartbeat(seq, now)) {
    write_line(self, protocol::encode_heartbeat_ack(seq, format_time(st.opts.clock())));
  } else if (st.acks.delay_notice_due(now, st.opts.heartbeat_interval)) {
    // The database is slow or down. Say so, so the node does not take the silence for a dead
    // connection and reconnect (which would help nothing); not a protocol error of the node.
    metrics::daemon().acks_delayed.fetch_add(1, std::memory_order_relaxed);
    write_line(self, protocol::encode_error(protocol::code::ack_delayed,
                                            "acknowledgements wait for the database: "
                                              + std::to_string(st.acks.unsettled()) + " frames not committed yet",
                                            "heartbeat"));
  }
}

void send_paused_notice(self_ptr self) {
  auto& st = self->state;
  metrics::daemon().acks_delayed.fetch_add(1, std::memory_order_relaxed);
  write_line(self, protocol::encode_error(protocol::code::ack_delayed,
                                          "not reading while " + std::to_string(st.unsettled_frames)
                                            + " frames wait for the database",
                                          "heartbeat"));
}

/// The epoch fence refused a write (DESIGN §9): the node has a newer session, here or at another
/// instance. Nothing of the frame was stored and nothing after it will be acknowledged.
void fenced(self_ptr self) {
  metrics::daemon().fenced_writes.fetch_add(1, std::memory_order_relaxed);
  if (self->state.ph == node_session_state::phase::closing)
    return; // closed at the first refusal; the frames queued behind it are refused too
  log::info("write refused by the epoch fence; closing the session",
            {{"node_id", self->state.node_id}, {"epoch", self->state.epoch}});
  auto reason = std::string(protocol::close_reason::superseded);
  close_with(self, protocol::encode_close(reason), reason);
}

void reply_write_status(self_ptr self, storage::write_status s, const std::string& attempt_id) {
  if (s == storage::write_status::superseded)
    fenced(self);
  else if (s == storage::write_status::forbidden)
    protocol_error(self, protocol::code::forbidden, "attempt " + attempt_id + " belongs to another node", attempt_id);
  else if (s == storage::write_status::unknown_attempt)
    protocol_error(self, protocol::code::unknown_attempt, "send the attempt frame of " + attempt_id + " first",
                   attempt_id);
}

void storage_failed(self_ptr self, const caf::error& e, const std::string& ref) {
  // This operation's own statement failed (storage logs it), the others of its batch applied.
  // Resending the same values would fail the same way, forever: refuse it once.
  if (is(e, storage_errc::refused)) {
    protocol_error(self, protocol::code::refused, "not stored, the database refused it: " + storage_message(e), ref);
    return;
  }
  // The storage actor is gone (the daemon stops): not stored, the node resends it elsewhere.
  write_line(self, protocol::encode_error(protocol::code::unavailable, "not stored: " + to_string(e), ref));
}

/// Hands a data frame (attempt_upsert or logs_insert) to storage; its answer settles its ticket.
template <class Op>
void store_frame(self_ptr self, Op op, uint64_t bytes) {
  auto id = op.attempt_id;
  auto t = hand_on(self, bytes);
  self->request(self->state.opts.storage, caf::infinite, std::move(op))
    .then(
      [=](const typename Op::result_type& r) {
        reply_write_status(self, r.status, id);
        settle(self, t, bytes);
      },
      [=](caf::error& e) {
        storage_failed(self, e, id);
        settle(self, t, bytes);
      });
}

template <class T>
constexpr metrics::frame_kind kind_of() {
  using metrics::frame_kind;
  if constexpr (std::is_same_v<T, protocol::hello>)
    return frame_kind::hello;
  else if constexpr (std::is_same_v<T, protocol::heartbeat>)
    return frame_kind::heartbeat;
  else if constexpr (std::is_same_v<T, protocol::attempt>)
    return frame_kind::attempt;
  else if constexpr (std::is_same_v<T, protocol::logs>)
    return frame_kind::logs;
  else if constexpr (std::is_same_v<T, protocol::backfill_response>)
    return frame_kind::backfill_response;
  else if constexpr (std::is_same_v<T, protocol::check_result>)
    return frame_kind::check_result;
  else
    return frame_kind::bye;
}

/// Writes a check's outcome to its job: succeeded only for exit code 0; the output is cut to
/// what the check allows, whatever the agent sent.
void finish_check(self_ptr self, const std::string& job_id, const node_session_state::pending_check& pending,
                  const protocol::check_result& r) {
  storage::job_update op;
  op.id = job_id;
  bool exited = r.status == protocol::check_status::exited;
  op.status = exited && r.exit_code == 0 ? "succeeded" : "failed";
  auto output = r.output;
  bool cut = output.size() > static_cast<size_t>(pending.output_max);
  if (cut)
    output.resize(static_cast<size_t>(pending.output_max));
  op.detail = check_detail(pending.name, r.status, exited ? r.exit_code : -1, output, r.truncated || cut);
  if (r.status == protocol::check_status::exited && r.exit_code != 0)
    op.error = "exit code " + std::to_string(r.exit_code);
  else if (r.status == protocol::check_status::timed_out)
    op.error = "timed out on the node after " + std::to_string(pending.timeout_ms) + " ms";
  else if (r.status == protocol::check_status::refused)
    op.error = "refused by the agent: " + r.error;
  else if (r.status == protocol::check_status::failed_to_start)
    op.error = "could not start on the node: " + r.error;
  log::info("check finished", {{"node", self->state.node_name},
                               {"check", pending.name},
                               {"job", job_id},
                               {"status", r.status},
                               {"exit_code", r.exit_code}});
  auto node = self->state.node_name;
  self->request(self->state.opts.storage, caf::infinite, std::move(op))
    .then([](const storage::job_update::result_type&) {},
          [node, job_id](caf::error& e) {
            log::warn("a check's result was not stored", {{"node", node}, {"job", job_id}, {"error", to_string(e)}});
          });
}

void handle_active(self_ptr self, protocol::node_message&& msg, uint64_t bytes) {
  auto& st = self->state;
  std::visit(
    [&](auto&& m) {
      using T = std::decay_t<decltype(m)>;
      metrics::daemon().frame(kind_of<T>());
      if constexpr (std::is_same_v<T, protocol::hello>) {
        protocol_error(self, protocol::code::bad_frame, "already authenticated", "hello");
      } else if constexpr (std::is_same_v<T, protocol::heartbeat>) {
        heartbeat(self, m.seq);
      } else if constexpr (std::is_same_v<T, protocol::attempt>) {
        store_frame(self,
                    storage::attempt_upsert{st.node_id, m.attempt_id, m.task_id, m.state, m.started_at, m.finished_at,
                                            m.meta, st.epoch},
                    bytes);
      } else if constexpr (std::is_same_v<T, protocol::logs>) {
        storage::logs_insert op{st.node_id, m.attempt_id, {}, st.epoch};
        op.entries.reserve(m.entries.size());
        for (auto& e : m.entries)
          op.entries.push_back({e.seq, std::move(e.ts), std::move(e.stream), std::move(e.line)});
        store_frame(self, std::move(op), bytes);
      } else if constexpr (std::is_same_v<T, protocol::backfill_response>) {
        auto request_id = m.request_id;
        if (!st.opts.tracker) {
          write_line(self,
                     protocol::encode_error(protocol::code::unknown_request, "no such request in flight", request_id));
          return;
        }
        std::vector<storage::backfill_item> items;
        items.reserve(m.results.size());
        for (auto& r : m.results)
          items.push_back({std::move(r.attempt_id), r.ok, r.log_count, std::move(r.error)});
        // The data frames before this one are already queued at storage, so the evidence check
        // sees them (the tracker's apply reaches storage after them). The tracker answers once
        // the response is applied (committed), so a heartbeat after it waits for that too.
        auto t = hand_on(self, bytes);
        self
          ->request(st.opts.tracker, caf::infinite, response_atom::value, session_ref{st.node_id, st.epoch}, request_id,
                    std::move(items))
          .then(
            [=](bool known) {
              if (!known)
                write_line(self, protocol::encode_error(protocol::code::unknown_request,
                                                        "no such request in flight for this session", request_id));
              settle(self, t, bytes);
            },
            [=](caf::error& e) {
              if (is(e, storage_errc::superseded))
                fenced(self);
              else
                write_line(self, protocol::encode_error(protocol::code::unavailable, "not applied: " + to_string(e),
                                                        request_id));
              settle(self, t, bytes);
            });
      } else if constexpr (std::is_same_v<T, protocol::check_result>) {
        auto it = st.checks.find(m.request_id);
        if (it == st.checks.end()) {
          // Answered late (after its timeout) or never asked: its job already says so.
          write_line(self, protocol::encode_error(protocol::code::unknown_request,
                                                  "no such check in flight for this session", m.request_id));
          return;
        }
        auto pending = std::move(it->second);
        st.checks.erase(it);
        finish_check(self, m.request_id, pending, m);
      } else if constexpr (std::is_same_v<T, protocol::bye>) {
        terminate(self, "bye");
      }
    },
    std::move(msg));
}

caf::behavior node_session_impl(self_ptr self, caf::io::connection_handle hdl, session_options opts) {
  auto& st = self->state;
  st.opts = std::move(opts);
  st.hdl = hdl;
  st.peer = self->remote_addr(hdl);
  metrics::daemon().connections.fetch_add(1, std::memory_order_relaxed);
  metrics::daemon().handshakes.fetch_add(1, std::memory_order_relaxed);
  // Before authentication a connection may hold only a hello's worth (docs/protocol.md, limits).
  st.splitter = protocol::line_splitter{std::min(st.opts.max_hello_bytes, st.opts.max_frame_bytes)};
  st.own = st.opts.ingest ? ingest_budget::per_session(st.opts.ingest->fleet())
                          : ingest_budget::limits{UINT64_MAX, UINT64_MAX};
  // CAF allocates this receive buffer per connection and keeps it at its largest: small until a
  // read fills it, so idle sessions stay cheap (issue 19: RSS per idle session). Frames longer
  // than a read are assembled by the line splitter.
  self->configure_read(hdl, caf::io::receive_policy::at_most(defaults::read_idle_bytes));
  caf::delayed_anon_send(caf::actor_cast<caf::actor>(self), st.opts.hello_timeout, hello_timeout_atom::value);
  return {
    [=](const caf::io::new_data_msg& msg) {
      auto& s = self->state;
      if (s.ph == node_session_state::phase::closing)
        return;
      s.read_since_resume = true;
      if (!s.read_grown && msg.buf.size() >= defaults::read_idle_bytes) {
        s.read_grown = true; // more was waiting: this node sends more than heartbeats
        self->configure_read(msg.handle, caf::io::receive_policy::at_most(defaults::read_busy_bytes));
      }
      std::string_view data(msg.buf.data(), msg.buf.size());
      if (!s.transport_known && !data.empty() && !choose_transport(self, static_cast<unsigned char>(data[0])))
        return;
      std::string plain;
      if (s.tls) {
        bool ok = s.tls->receive(data, plain);
        flush_tls(self); // handshake messages, or the alert that ends a failed stream
        if (!ok) {
          metrics::daemon().tls_failures.fetch_add(1, std::memory_order_relaxed);
          log::info("TLS failed", {{"node", s.node_name}, {"peer", s.peer}, {"error", s.tls->error()}});
          terminate(self, "tls_error");
          return;
        }
        data = plain;
      }
      auto status = s.splitter.feed(data, [&](std::string_view line) { handle_line(self, line); });
      if (status == protocol::line_splitter::status::too_large && s.ph != node_session_state::phase::closing)
        close_with(
          self,
          protocol::encode_error(protocol::code::frame_too_large,
                                 "a frame is longer than " + std::to_string(s.splitter.max()) + " bytes"
                                   + (s.ph == node_session_state::phase::active ? "" : " before authentication")),
          protocol::code::frame_too_large);
    },
    [=](const caf::io::connection_closed_msg&) { terminate(self, "socket_closed"); },
    // (A TLS close_notify from the node is followed by its FIN: connection_closed_msg.)
    [=](caf::close_atom, const std::string& reason) { close_with(self, protocol::encode_close(reason), reason); },
    [=](backfill_atom, const backfill_delivery& d) {
      // A request this session cannot deliver is reset at once (lessons.md: mark then fail to send).
      auto& s = self->state;
      bool mine = s.ph == node_session_state::phase::active && d.to == session_ref{s.node_id, s.epoch};
      if ((!mine || !write_line(self, d.frame)) && s.opts.tracker)
        self->send(s.opts.tracker, sendfail_atom::value, d.to, d.request_id);
    },
    [=](check_atom, check_dispatch& d) -> check_dispatch_result {
      auto& s = self->state;
      if (s.ph != node_session_state::phase::active || s.node_id != d.node_id)
        return {false, "node_not_connected", "the node's session is ending"};
      if (!s.takes_checks)
        return {false, "checks_unsupported",
                "the node's agent does not take checks (its hello did not name the 'checks' feature)"};
      protocol::check_request req{d.job_id, d.name, d.argv, d.timeout_ms, d.output_max};
      if (!write_line(self, protocol::encode_check_request(req)))
        return {false, "node_not_connected", "the node's session ended while the check was sent"};
      s.checks[d.job_id] = {d.name, d.output_max, d.timeout_ms};
      caf::delayed_anon_send(caf::actor_cast<caf::actor>(self),
                             std::chrono::milliseconds(d.timeout_ms + check_grace_ms), check_due_atom::value, d.job_id);
      return {true, "", ""};
    },
    [=](check_due_atom, const std::string& job_id) {
      auto& s = self->state;
      auto it = s.checks.find(job_id);
      if (it == s.checks.end())
        return; // answered
      auto pending = std::move(it->second);
      s.checks.erase(it);
      storage::job_update op{job_id, "failed", check_detail(pending.name, "no_answer", -1, "", false),
                             "no answer from the node within " + std::to_string(pending.timeout_ms + check_grace_ms)
                               + " ms"};
      caf::anon_send(s.opts.storage, std::move(op));
    },
    [=](hello_timeout_atom) {
      // A deadline for the whole handshake: a hello still being checked when it passes (the
      // database is slow, or a flood is queued ahead) is answered unavailable; the node retries.
      auto ph = self->state.ph;
      if (ph == node_session_state::phase::awaiting_hello)
        close_with(self, protocol::encode_error(protocol::code::hello_required, "no hello within the hello timeout"),
                   "hello_timeout");
      else if (ph == node_session_state::phase::authenticating)
        close_with(self, protocol::encode_error(protocol::code::unavailable, "try again later"), "handshake_timeout");
    },
    [=](rearm_atom, uint64_t gen) {
      auto& s = self->state;
      if (gen != s.resumes || s.paused || s.read_since_resume || s.ph == node_session_state::phase::closing)
        return; // a newer resume, paused again, reading works, or gone
      metrics::daemon().read_rearms.fetch_add(1, std::memory_order_relaxed);
      self->trigger(s.hdl);
    },
    [=](resume_atom) {
      self->state.waiting = false;
      maybe_resume(self);
    },
    [=](paused_atom) {
      auto& s = self->state;
      s.paused_timer = false;
      if (!s.paused || s.ph == node_session_state::phase::closing)
        return;
      s.paused_timer = true;
      send_paused_notice(self);
      caf::delayed_anon_send(caf::actor_cast<caf::actor>(self), s.opts.heartbeat_interval, paused_atom::value);
    },
    [=](idle_atom) {
      auto& s = self->state;
      if (s.ph != node_session_state::phase::active)
        return;
      if (s.paused)
        s.last_frame = self->clock().now(); // not idle: we are not reading
      auto idle = self->clock().now() - s.last_frame;
      if (idle >= s.opts.idle_timeout)
        close_with(self, protocol::encode_close(protocol::close_reason::idle_timeout),
                   protocol::close_reason::idle_timeout);
      else
        arm_idle_timer(self, s.opts.idle_timeout - idle); // one timer per session, not one per frame
    },
  };
}

} // namespace

namespace session_detail {

void end_checks(self_ptr self, const std::string& reason) {
  auto& st = self->state;
  for (auto& [job_id, pending] : st.checks)
    caf::anon_send(st.opts.storage,
                   storage::job_update{job_id, "failed", check_detail(pending.name, "no_answer", -1, "", false),
                                       "the node's session ended before it answered (" + reason + ")"});
  st.checks.clear();
}

} // namespace session_detail

caf::actor fork_session(caf::io::broker* acceptor, caf::io::connection_handle hdl, session_options opts) {
  return acceptor->fork(node_session_impl, hdl, std::move(opts));
}

} // namespace nodecoord
