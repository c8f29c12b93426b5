#include "tools/bench/load.hpp"

#include "common/clock.hpp"
#include "common/ids.hpp"
#include "protocol/codec.hpp"

#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>
#include <stdexcept>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

namespace nodecoord::bench {

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

namespace {

constexpr size_t max_line = 1 << 20; // a coordinator frame longer than this is a protocol problem

std::string errno_text(int err) { return std::strerror(err); }

/// The integer after `"seq":` in a heartbeat_ack line, or -1.
int64_t find_seq(std::string_view line) {
  auto pos = line.find("\"seq\":");
  if (pos == std::string_view::npos)
    return -1;
  pos += 6;
  while (pos < line.size() && line[pos] == ' ')
    ++pos;
  int64_t v = -1;
  auto [ptr, ec] = std::from_chars(line.data() + pos, line.data() + line.size(), v);
  if (ec != std::errc())
    return -1;
  return v;
}

} // namespace

load::load(load_options opts) : opts_(std::move(opts)) {
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  if (ep_ < 0)
    throw std::runtime_error("epoll_create1: " + errno_text(errno));
  conns_.resize(opts_.keys.size());
  welcome_us_.reserve(conns_.size());
  base_ns_ = now_ns();
}

load::~load() {
  for (auto& c : conns_)
    if (c.fd >= 0)
      ::close(c.fd);
  if (ep_ >= 0)
    ::close(ep_);
}

void load::start_one() {
  auto idx = static_cast<uint32_t>(next_start_++);
  auto& c = conns_[idx];
  ++counters_.started;
  c.t_start = now_ns();
  if (first_connect_ == 0)
    first_connect_ = c.t_start;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ++counters_.connect_failed;
    problem("socket: " + errno_text(errno));
    c.st = state::done;
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (!opts_.sources.empty()) {
    // Without IP_BIND_ADDRESS_NO_PORT, bind() would pick the port before the destination is
    // known and each source address would run out after ~28k sockets, whatever their peers.
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_addr = opts_.sources[idx % opts_.sources.size()];
    src.sin_port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
      ++counters_.connect_failed;
      problem("bind: " + errno_text(errno));
      ::close(fd);
      c.st = state::done;
      return;
    }
  }
  c.fd = fd;
  const auto& target =
    opts_.coordinators.empty() ? opts_.coordinator : opts_.coordinators[idx % opts_.coordinators.size()];
  int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&target), sizeof target);
  if (rc != 0 && errno != EINPROGRESS) {
    ++counters_.connect_failed;
    problem("connect: " + errno_text(errno));
    ::close(fd);
    c.fd = -1;
    c.st = state::done;
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.u32 = idx;
  if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0)
    throw std::runtime_error("epoll_ctl: " + errno_text(errno));
  c.want_out = true;
  c.st = state::connecting;
  ++in_progress_;
  welcome_due_.push_back(idx);
}

void load::set_want_out(uint32_t idx, bool want) {
  auto& c = conns_[idx];
  if (c.want_out == want || c.fd < 0)
    return;
  epoll_event ev{};
  ev.events = EPOLLIN | (want ? EPOLLOUT : 0u);
  ev.data.u32 = idx;
  epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
  c.want_out = want;
}

void load::finish(uint32_t idx) {
  auto& c = conns_[idx];
  if (c.st == state::connecting || c.st == state::hello_sent)
    --in_progress_;
  if (c.st == state::active)
    --active_;
  if (!c.inflight.empty()) {
    // These can no longer be answered.
    counters_.lost_acks += c.inflight.size();
    outstanding_ -= c.inflight.size();
    c.inflight.clear();
  }
  if (c.fd >= 0) {
    ::close(c.fd); // also removes it from the epoll set
    c.fd = -1;
  }
  c.st = state::done;
  c.tls.reset();
  c.in.clear();
  c.in.shrink_to_fit();
  c.out.clear();
  c.out.shrink_to_fit();
}

void load::fail(uint32_t idx, const std::string& what) {
  problem(what);
  finish(idx);
}

void load::send_frame(uint32_t idx, const std::string& line) {
  auto& c = conns_[idx];
  if (c.fd < 0)
    return;
  if (!c.tls) {
    write_raw(idx, line);
    return;
  }
  if (!c.tls->send(line)) {
    ++counters_.io_errors;
    fail(idx, "tls: " + c.tls->error());
    return;
  }
  flush_tls(idx);
}

bool load::flush_tls(uint32_t idx) {
  auto& c = conns_[idx];
  if (c.tls->output_size() > 0) {
    std::string out;
    c.tls->take_output(out);
    write_raw(idx, out);
  }
  return conns_[idx].fd >= 0;
}

void load::write_raw(uint32_t idx, std::string_view bytes) {
  auto& c = conns_[idx];
  if (c.fd < 0)
    return;
  if (!c.out.empty()) {
    c.out += bytes;
    return;
  }
  ssize_t n = ::send(c.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      ++counters_.io_errors;
      fail(idx, "send: " + errno_text(errno));
      return;
    }
    n = 0;
  }
  if (static_cast<size_t>(n) < bytes.size()) {
    c.out.assign(bytes.substr(static_cast<size_t>(n)));
    set_want_out(idx, true);
  }
}

void load::flush_out(uint32_t idx) {
  auto& c = conns_[idx];
  while (!c.out.empty()) {
    ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return;
      ++counters_.io_errors;
      fail(idx, "send: " + errno_text(errno));
      return;
    }
    c.out.erase(0, static_cast<size_t>(n));
  }
  set_want_out(idx, false);
}

void load::on_connected(uint32_t idx) {
  auto& c = conns_[idx];
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
    err = errno;
  if (err != 0) {
    ++counters_.connect_failed;
    fail(idx, "connect: " + errno_text(err));
    return;
  }
  protocol::hello h;
  h.protocol = protocol::version;
  h.node = opts_.keys[idx].name;
  h.key = opts_.keys[idx].key;
  h.agent = opts_.agent;
  c.st = state::hello_sent;
  c.t_hello = now_ns();
  set_want_out(idx, false);
  if (opts_.tls) {
    // The hello waits in the stream until the handshake is done; welcome latency includes it.
    c.tls = std::make_unique<tls::stream>(opts_.tls, opts_.tls_server_name, opts_.tls_resume ? tls_session_ : nullptr);
    c.tls->start();
    if (!flush_tls(idx))
      return;
  }
  send_frame(idx, protocol::encode_hello(h));
}

void load::on_event(uint32_t idx, uint32_t events) {
  auto& c = conns_[idx];
  if (c.st == state::done || c.fd < 0)
    return;
  if (c.st == state::connecting) {
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
      on_connected(idx);
    return;
  }
  if ((events & EPOLLOUT) && !c.out.empty()) {
    flush_out(idx);
    if (c.st == state::done)
      return;
  }
  if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
    on_readable(idx);
}

void load::on_readable(uint32_t idx) {
  static char buf[65536];
  for (;;) {
    auto& c = conns_[idx];
    if (c.fd < 0)
      return;
    ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
    if (n > 0) {
      if (c.tls) {
        bool ok = c.tls->receive(std::string_view(buf, static_cast<size_t>(n)), c.in);
        if (!flush_tls(idx))
          return;
        if (!ok) {
          ++counters_.io_errors;
          fail(idx, "tls: " + conns_[idx].tls->error());
          return;
        }
      } else {
        c.in.append(buf, static_cast<size_t>(n));
      }
      size_t start = 0;
      for (;;) {
        auto nl = conns_[idx].in.find('\n', start);
        if (nl == std::string::npos)
          break;
        std::string_view line(conns_[idx].in.data() + start, nl - start);
        if (!line.empty() && line.back() == '\r')
          line.remove_suffix(1);
        start = nl + 1;
        if (!line.empty())
          on_line(idx, line);
        if (conns_[idx].st == state::done)
          return;
      }
      auto& cc = conns_[idx];
      cc.in.erase(0, start);
      if (cc.in.size() > max_line) {
        ++counters_.unexpected_frames;
        fail(idx, "coordinator frame too long");
        return;
      }
      if (static_cast<size_t>(n) < sizeof buf)
        return; // drained (level-triggered: anything that arrives later wakes us again)
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    if (n < 0 && errno == EINTR)
      continue;
    // End of stream or a reset.
    std::string why = n == 0 ? "closed" : "recv: " + errno_text(errno);
    switch (c.st) {
      case state::closing: finish(idx); return;
      case state::hello_sent:
        // An error frame (auth_refused) is counted when it arrives; a bare close is a failure too.
        if (c.last_close_reason.empty()) {
          ++counters_.auth_refused;
          fail(idx, "no welcome: connection " + why);
        } else {
          finish(idx);
        }
        return;
      case state::active:
        ++counters_.closed_by_peer;
        fail(idx, "session ended by coordinator: " + (c.last_close_reason.empty() ? why : c.last_close_reason));
        return;
      default:
        ++counters_.io_errors;
        fail(idx, why);
        return;
    }
  }
}

void load::on_line(uint32_t idx, std::string_view line) {
  auto& c = conns_[idx];
  // Fast path: the coordinator writes compact JSON, so the type is found verbatim.
  if (c.st == state::active && line.find("\"type\":\"heartbeat_ack\"") != std::string_view::npos) {
    auto seq = find_seq(line);
    if (seq < 0) {
      ++counters_.unexpected_frames;
      problem("heartbeat_ack without seq");
      return;
    }
    on_ack(idx, seq);
    return;
  }
  nlohmann::json j = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    ++counters_.unexpected_frames;
    problem("coordinator sent a line that is not a frame");
    return;
  }
  auto type = j["type"].get<std::string>();
  if (c.st == state::hello_sent) {
    if (type == "welcome") {
      auto now = now_ns();
      --in_progress_;
      ++active_;
      ++counters_.authenticated;
      c.st = state::active;
      last_welcome_ = now;
      if (c.tls) {
        ++counters_.tls_handshakes;
        counters_.tls_resumed += c.tls->resumed();
        if (opts_.tls_resume)
          if (auto s = c.tls->session())
            tls_session_ = std::move(s);
      }
      welcome_us_.push_back(static_cast<double>(now - c.t_hello) / 1000.0);
      c.interval_ns = opts_.heartbeat_interval_ns;
      if (c.interval_ns <= 0) {
        int64_t ms = j.value("heartbeat_interval_ms", int64_t{10000});
        c.interval_ns = std::max<int64_t>(ms, 1) * 1'000'000;
      }
      schedule_first_heartbeat(idx);
      if (opts_.hooks)
        opts_.hooks->on_welcome(*this, idx);
      return;
    }
    if (type == "error") {
      ++counters_.auth_refused;
      c.last_close_reason = j.value("code", std::string("error"));
      fail(idx, "hello refused: " + c.last_close_reason);
      return;
    }
    ++counters_.unexpected_frames;
    problem("before welcome: unexpected " + type);
    return;
  }
  if (type == "close") {
    c.last_close_reason = "close{" + j.value("reason", std::string()) + "}";
    return; // the coordinator closes the socket next; counted then
  }
  if (type == "error") {
    ++counters_.error_frames;
    problem("error frame: " + j.value("code", std::string()));
    return;
  }
  if (opts_.hooks && opts_.hooks->on_frame(*this, idx, type, j))
    return;
  if (!opts_.hooks && type == "backfill_request")
    return; // not a bench node's business; the coordinator expires it
  ++counters_.unexpected_frames;
  problem("unexpected frame: " + type);
}

void load::on_ack(uint32_t idx, int64_t seq) {
  auto& c = conns_[idx];
  auto now = now_ns();
  // Acks come in order on one connection: heartbeats before `seq` still waiting were skipped.
  while (!c.inflight.empty() && c.inflight.front().first < seq) {
    ++counters_.lost_acks;
    --outstanding_;
    problem("heartbeat_ack skipped a seq");
    c.inflight.pop_front();
  }
  if (c.inflight.empty() || c.inflight.front().first != seq) {
    ++counters_.late_acks; // its heartbeat already counted as lost (or an ack nobody asked for)
    return;
  }
  auto sent = c.inflight.front().second;
  c.inflight.pop_front();
  --outstanding_;
  ++counters_.acks;
  if (sent >= window_begin_ && sent < window_end_)
    ack_us_.push_back(static_cast<double>(now - sent) / 1000.0);
}

void load::schedule_first_heartbeat(uint32_t idx) {
  auto& c = conns_[idx];
  // Session i beats at base + i/N of the interval, then every interval: evenly spread, never in
  // lockstep, whatever order the welcomes arrived in.
  auto n = static_cast<int64_t>(conns_.size());
  int64_t phase = static_cast<int64_t>((static_cast<__int128>(idx) * c.interval_ns) / n);
  int64_t t = base_ns_ + phase;
  auto now = now_ns();
  if (t <= now)
    t += ((now - t) / c.interval_ns + 1) * c.interval_ns;
  timers_.push({t, idx});
}

void load::fire_timers(int64_t now) {
  while (!timers_.empty() && timers_.top().at <= now) {
    auto t = timers_.top();
    timers_.pop();
    auto& c = conns_[t.idx];
    if (!sending_ || c.st != state::active)
      continue;
    if (opts_.lines_per_heartbeat > 0)
      send_lines(t.idx);
    auto seq = c.seq++;
    auto sent = now_ns();
    c.inflight.emplace_back(seq, sent);
    ++outstanding_;
    ++counters_.heartbeats_sent;
    if (sent >= window_begin_ && sent < window_end_)
      ++counters_.heartbeats_in_window;
    acks_due_.push_back({sent + opts_.ack_timeout_ns, t.idx, seq});
    send_frame(t.idx, protocol::encode_heartbeat(seq));
    if (conns_[t.idx].st == state::active)
      timers_.push({t.at + conns_[t.idx].interval_ns, t.idx});
  }
}

void load::send_lines(uint32_t idx) {
  auto& c = conns_[idx];
  if (c.attempt_id.empty()) {
    c.attempt_id = new_uuid();
    send_frame(idx, protocol::encode_attempt({c.attempt_id, "bench-steady", "running", "", "", ""}));
  }
  protocol::logs frame{c.attempt_id, {}};
  auto ts = format_time(system_now());
  for (int64_t i = 0; i < opts_.lines_per_heartbeat; ++i, ++c.next_line)
    frame.entries.push_back(
      {c.next_line, ts, "stdout",
       "bench steady line " + std::to_string(c.next_line) + " of a session that streams while it heartbeats"});
  counters_.lines_sent += static_cast<uint64_t>(opts_.lines_per_heartbeat);
  send_frame(idx, protocol::encode_logs(frame));
}

void load::expire_acks(int64_t now) {
  while (!acks_due_.empty() && acks_due_.front().deadline <= now) {
    auto due = acks_due_.front();
    acks_due_.pop_front();
    auto& c = conns_[due.idx];
    while (!c.inflight.empty() && c.inflight.front().first <= due.seq) {
      ++counters_.lost_acks;
      --outstanding_;
      problem("heartbeat_ack not received within the ack timeout");
      c.inflight.pop_front();
    }
  }
}

void load::expire_welcomes(int64_t now) {
  while (!welcome_due_.empty()) {
    auto idx = welcome_due_.front();
    auto& c = conns_[idx];
    if (c.st != state::connecting && c.st != state::hello_sent) {
      welcome_due_.pop_front();
      continue;
    }
    if (c.t_start + opts_.welcome_timeout_ns > now)
      return;
    welcome_due_.pop_front();
    if (c.st == state::connecting) {
      ++counters_.connect_failed;
      fail(idx, "connect: timed out");
    } else {
      ++counters_.welcome_timeouts;
      fail(idx, "no welcome within the timeout");
    }
  }
}

int64_t load::next_wakeup(int64_t until_ns) const {
  int64_t t = until_ns;
  if (sending_ && !timers_.empty())
    t = std::min(t, timers_.top().at);
  if (!acks_due_.empty())
    t = std::min(t, acks_due_.front().deadline);
  if (!welcome_due_.empty())
    t = std::min(t, conns_[welcome_due_.front()].t_start + opts_.welcome_timeout_ns);
  return t;
}

void load::poll_once(int64_t until_ns) {
  static epoll_event events[1024];
  auto now = now_ns();
  int64_t wake = next_wakeup(until_ns);
  int timeout_ms = 0;
  if (wake > now)
    timeout_ms = static_cast<int>(
      std::min<int64_t>((wake - now + 999'999) / 1'000'000, std::max<int64_t>(opts_.max_wait_ns / 1'000'000, 1)));
  int n = epoll_wait(ep_, events, 1024, timeout_ms);
  if (n < 0) {
    if (errno == EINTR)
      return;
    throw std::runtime_error("epoll_wait: " + errno_text(errno));
  }
  for (int i = 0; i < n; ++i)
    on_event(events[i].data.u32, events[i].events);
  now = now_ns();
  fire_timers(now);
  expire_acks(now);
  expire_welcomes(now);
}

void load::open_all() {
  while (next_start_ < conns_.size() || in_progress_ > 0) {
    while (next_start_ < conns_.size() && in_progress_ < opts_.concurrency)
      start_one();
    if (in_progress_ == 0 && next_start_ >= conns_.size())
      break;
    poll_once(now_ns() + 100'000'000);
  }
}

void load::run_until(int64_t until_ns) {
  while (now_ns() < until_ns)
    poll_once(until_ns);
}

bool load::run_until(int64_t until_ns, const std::function<bool()>& done) {
  while (!done() && now_ns() < until_ns)
    poll_once(until_ns);
  return done();
}

size_t load::unsent_bytes() const {
  size_t n = 0;
  for (auto& c : conns_)
    n += c.out.size();
  return n;
}

void load::drop_all() {
  sending_ = false;
  for (uint32_t i = 0; i < conns_.size(); ++i) {
    auto& c = conns_[i];
    outstanding_ -= c.inflight.size();
    c.inflight.clear();
    if (c.fd >= 0 || c.st != state::done)
      finish(i);
  }
  acks_due_.clear();
}

void load::set_window(int64_t begin_ns, int64_t end_ns) {
  window_begin_ = begin_ns;
  window_end_ = end_ns;
}

void load::drain() {
  sending_ = false;
  auto deadline = now_ns() + opts_.ack_timeout_ns;
  while (outstanding_ > 0 && now_ns() < deadline)
    poll_once(deadline);
  expire_acks(std::numeric_limits<int64_t>::max());
}

void load::close_all(bool bye) {
  sending_ = false;
  const auto bye_line = protocol::encode_bye("benchmark done");
  for (uint32_t i = 0; i < conns_.size(); ++i) {
    auto& c = conns_[i];
    if (c.fd < 0)
      continue;
    if (bye && c.st == state::active) {
      c.st = state::closing;
      --active_;
      send_frame(i, bye_line);
    }
    if (conns_[i].fd >= 0)
      finish(i);
  }
}

} // namespace nodecoord::bench
