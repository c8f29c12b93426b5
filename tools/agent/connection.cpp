#include "tools/agent/connection.hpp"

#include "common/log.hpp"
#include "protocol/codec.hpp"
#include "tls/stream.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <random>
#include <sys/socket.h>
#include <unistd.h>

namespace nodecoord::agent {

using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

bool parse_endpoint(const std::string& s, std::string& host, uint16_t& port) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size())
    return false;
  host = s.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  auto p = s.substr(colon + 1);
  if (p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos)
    return false;
  auto v = std::stoul(p);
  if (v == 0 || v > 65535)
    return false;
  port = static_cast<uint16_t>(v);
  return !host.empty();
}

namespace {

// The coordinator's frames are small (a backfill_request names at most batch_size attempts).
constexpr size_t max_coordinator_frame = 16 * 1024 * 1024;
// Stop reading the store while this much is still unsent: the socket is the bottleneck.
constexpr size_t max_unsent = 1024 * 1024;

/// Non-blocking connect within `timeout`; -1 (with `why`) on failure.
int connect_to(const loop_options& o, std::string& why) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  auto port = std::to_string(o.port);
  if (int rc = getaddrinfo(o.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    why = std::string("cannot resolve ") + o.host + ": " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (auto* ai = res; ai && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      why = std::strerror(errno);
      close(fd);
      fd = -1;
      continue;
    }
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    if (poll(&p, 1, static_cast<int>(o.connect_timeout.count())) != 1) {
      why = "connect timed out";
    } else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
      why = std::strerror(err ? err : errno);
    } else {
      break;
    }
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd >= 0) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

/// Writes what the socket takes now; false if the connection is gone.
bool write_some(int fd, std::string& out) {
  while (!out.empty()) {
    auto n = send(fd, out.data(), out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      out.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return true;
    if (n < 0 && errno == EINTR)
      continue;
    return false;
  }
  return true;
}

int ms_until(steady::time_point t) {
  auto d = std::chrono::duration_cast<milliseconds>(t - steady::now()).count();
  return static_cast<int>(std::max<long long>(0, d));
}

/// Waits `d` unless `stop_fd` becomes readable first; true if stopped.
bool wait_or_stop(int stop_fd, milliseconds d) {
  pollfd p{stop_fd, POLLIN, 0};
  auto until = steady::now() + d;
  for (;;) {
    int rc = poll(&p, 1, ms_until(until));
    if (rc > 0)
      return true;
    if (rc == 0 || steady::now() >= until)
      return false;
  }
}

/// How one connection ended.
struct session_end {
  bool stop = false;    // the agent is stopping
  bool drained = false; // an operator drained the node: do not reconnect
  bool welcomed = false;
  bool long_backoff = false; // refused, disabled, superseded: retrying soon would not help
  bool superseded = false;
  steady::duration up{};
};

session_end run_session(coordinator_link& l, const loop_options& o, int stop_fd, int fd, tls::saved_session& resume) {
  session_end end;
  std::string out = l.start(); // plaintext frames for the coordinator
  std::string wire;            // bytes for the socket: `out`, encrypted when the link is TLS
  std::unique_ptr<tls::stream> tls;
  if (o.tls) {
    tls = std::make_unique<tls::stream>(o.tls, o.server_name.empty() ? o.host : o.server_name, resume);
    tls->start();
  }
  auto to_wire = [&] {
    if (!tls) {
      wire += out;
      out.clear();
      return;
    }
    if (!out.empty()) {
      tls->send(out); // held until the handshake is done
      out.clear();
    }
    tls->take_output(wire);
  };
  protocol::line_splitter splitter(max_coordinator_frame);
  auto started = steady::now();
  auto next_heartbeat = steady::time_point::max();
  auto next_poll = steady::time_point::max();
  bool open = true;
  std::string close_reason;
  auto last_heard = started;
  while (open) {
    auto now = steady::now();
    // A coordinator that vanished without a FIN (a cut cable, a dead VM) answers nothing: not
    // even heartbeat acks. TCP alone would notice only after many minutes. A live coordinator
    // whose acks wait for its database is not silent: it sends error{ack_delayed}.
    auto silence_bound = milliseconds(3 * l.heartbeat_interval_ms()) + o.connect_timeout;
    if (now - last_heard > silence_bound) {
      log::warn("no answer from the coordinator; reconnecting",
                {{"silent_ms", std::chrono::duration_cast<milliseconds>(now - last_heard).count()}});
      break;
    }
    if (l.welcomed()) {
      if (now >= next_heartbeat) {
        l.heartbeat(out);
        next_heartbeat = now + milliseconds(l.heartbeat_interval_ms());
      }
      if (now >= next_poll) {
        if (out.size() + wire.size() < max_unsent) {
          try {
            l.poll_store(out);
          } catch (const std::exception& e) {
            log::error("cannot read the agent store", {{"error", e.what()}});
          }
        } else {
          l.send_finished_checks(out); // small, and the coordinator waits for them
        }
        next_poll = now + o.poll_interval;
      }
    }
    to_wire();
    pollfd p[2] = {{fd, static_cast<short>(POLLIN | (wire.empty() ? 0 : POLLOUT)), 0}, {stop_fd, POLLIN, 0}};
    int timeout = l.welcomed() ? std::min({ms_until(next_heartbeat), ms_until(next_poll), 1000}) : 1000;
    if (poll(p, 2, timeout) < 0 && errno != EINTR)
      break;
    if (p[1].revents & POLLIN) {
      end.stop = true;
      if (l.welcomed()) {
        out += l.bye("agent stopping");
        to_wire();
        if (tls && tls->open()) {
          tls->shutdown();
          tls->take_output(wire);
        }
        auto until = steady::now() + o.bye_bound;
        while (!wire.empty() && steady::now() < until) {
          if (!write_some(fd, wire))
            break;
          pollfd w{fd, POLLOUT, 0};
          poll(&w, 1, ms_until(until));
        }
      }
      break;
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[65536];
      auto n = recv(fd, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        open = false;
      } else if (n > 0) {
        last_heard = steady::now();
        std::string_view data(buf, static_cast<size_t>(n));
        std::string plain;
        if (tls) {
          bool ok = tls->receive(data, plain);
          to_wire(); // handshake messages, or the alert that ends a failed stream
          if (!ok) {
            // A certificate the agent cannot trust, or a coordinator port without TLS: retrying
            // soon will not change it.
            log::error("TLS failed", {{"error", tls->error()},
                                      {"hint", "check --ca-file and --server-name, and that the coordinator's port has "
                                               "[server.tls]"}});
            end.long_backoff = true;
            write_some(fd, wire);
            break;
          }
          if (tls->current() == tls::stream::state::closed)
            open = false;
          data = plain;
        }
        auto st = splitter.feed(data, [&](std::string_view line) {
          link_event ev;
          try {
            ev = l.on_line(line, out);
          } catch (const std::exception& e) {
            log::error("cannot answer the coordinator", {{"error", e.what()}});
            return;
          }
          switch (ev.what) {
            case link_event::kind::welcome:
              log::info("connected", {{"node_id", l.node_id()}, {"heartbeat_ms", l.heartbeat_interval_ms()}});
              end.welcomed = true;
              next_heartbeat = steady::now() + milliseconds(l.heartbeat_interval_ms());
              next_poll = steady::now(); // catch up at once
              break;
            case link_event::kind::closing: close_reason = ev.detail; break;
            case link_event::kind::refused:
              log::error("coordinator refused the session", {{"code", ev.detail}, {"message", ev.message}});
              end.long_backoff = true;
              break;
            case link_event::kind::delayed:
              log::info("the coordinator delays acknowledgements (its database is slow or down); "
                        "everything unacknowledged is kept",
                        {{"message", ev.message}});
              break;
            case link_event::kind::none:
              if (!ev.detail.empty())
                log::warn("coordinator reported an error", {{"code", ev.detail}, {"message", ev.message}});
              break;
          }
        });
        if (st == protocol::line_splitter::status::too_large) {
          log::error("coordinator sent an over-long line; reconnecting");
          open = false;
        }
      }
    }
    to_wire();
    if (open && !wire.empty() && !write_some(fd, wire))
      open = false;
  }
  end.up = steady::now() - started;
  if (tls && end.welcomed) {
    if (auto s = tls->session())
      resume = std::move(s); // the next connection resumes it (a reconnect storm costs less)
  }
  if (close_reason == protocol::close_reason::superseded) {
    // The node has a newer session: this agent's other connection, another coordinator instance
    // that took the node over (DESIGN §9), or another agent with the same key.
    log::warn("session superseded: the node has a newer session (a reconnect, or another coordinator instance "
              "took it over); if no other agent of this node runs and this repeats, its key is shared",
              {{"node", l.node_id()}});
    end.long_backoff = true;
    end.superseded = true;
  } else if (close_reason == protocol::close_reason::drained) {
    log::warn("node drained by an operator: not reconnecting. Everything recorded stays in the store; "
              "start the agent again once the node is enabled (nodecoordctl node enable)");
    end.drained = true;
  } else if (close_reason == protocol::close_reason::disabled) {
    log::warn("node disabled by an operator");
    end.long_backoff = true;
  } else if (close_reason == protocol::close_reason::tls_required) {
    log::error("the coordinator requires TLS: connect with --tls (and --ca-file)");
    end.long_backoff = true;
  } else if (!close_reason.empty()) {
    log::info("coordinator closed the session", {{"reason", close_reason}});
  }
  return end;
}

} // namespace

int run_connection_loop(coordinator_link& l, const loop_options& opts, int stop_fd) {
  std::mt19937_64 rng{std::random_device{}()};
  int failures = 0; // consecutive connections that did not last stable_after
  auto list = opts.coordinators;
  if (list.empty())
    list.emplace_back(opts.host, opts.port);
  // A random start spreads a fleet over the instances; each has its own TLS session to resume.
  size_t at = std::uniform_int_distribution<size_t>(0, list.size() - 1)(rng);
  std::vector<tls::saved_session> resumes(list.size());
  loop_options o = opts;
  for (;;) {
    o.host = list[at].first;
    o.port = list[at].second;
    auto& resume = resumes[at];
    at = (at + 1) % list.size(); // the next one after this connection ends or fails
    std::string why;
    int fd = connect_to(o, why);
    session_end end;
    if (fd < 0) {
      log::warn("cannot connect to the coordinator", {{"host", o.host}, {"port", o.port}, {"error", why}});
    } else {
      end = run_session(l, o, stop_fd, fd, resume);
      close(fd);
      // With several coordinators, superseded mostly means the instance lost the node (its lease,
      // or a write refused by the epoch fence): another instance serves it now.
      if (end.superseded && list.size() > 1)
        end.long_backoff = false;
      if (end.stop || end.drained)
        return 0;
      if (end.welcomed)
        log::info("disconnected", {{"after_ms", std::chrono::duration_cast<milliseconds>(end.up).count()}});
    }
    if (end.welcomed && end.up >= o.stable_after)
      failures = 0;
    auto cap = o.backoff_max;
    if (!end.long_backoff) {
      auto grown = o.backoff_initial * (int64_t{1} << std::min(failures, 20));
      cap = std::min(o.backoff_max, grown);
    }
    ++failures;
    // Full jitter: the whole fleet spreads over [0, cap].
    auto delay = milliseconds(std::uniform_int_distribution<int64_t>(0, cap.count())(rng));
    log::debug("reconnecting", {{"in_ms", delay.count()}});
    if (wait_or_stop(stop_fd, delay))
      return 0;
  }
}

} // namespace nodecoord::agent
