#include "faults/relay.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <csignal>
#include <stdexcept>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace nodecoord::faults {

namespace {

using steady = std::chrono::steady_clock;

constexpr size_t buffer_cap = 1 << 20;                    // per direction: then the source is not read
constexpr auto cut_flush_bound = std::chrono::seconds(1); // the prefix of a cut reaches its side

void set_nonblocking(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// One direction of a connection: bytes read from `from`, waiting to be written to `to`.
struct flow {
  std::string buf;
  bool eof = false;  // `from` sent FIN
  bool shut = false; // FIN passed on to `to`
  char last = '\n';  // last byte read: a connection starts between frames
};

/// The seq of a heartbeat or heartbeat_ack frame, -1 if the line is none ("seq":N in any position).
int64_t seq_of(std::string_view line) {
  auto at = line.find("\"seq\":");
  if (at == std::string_view::npos)
    return -1;
  int64_t n = 0;
  bool any = false;
  for (auto i = at + 6; i < line.size() && line[i] >= '0' && line[i] <= '9'; ++i, any = true)
    n = n * 10 + (line[i] - '0');
  return any ? n : -1;
}

/// Watches whole frames going by (for timed kills): which heartbeat followed data frames, and
/// whether an ack answers it.
struct frame_watch {
  std::string partial[2]; // an unfinished line per direction
  bool data_sent = false; // agent data frames since the last heartbeat
  int64_t awaited = -1;   // the first heartbeat sent after data, not yet acknowledged

  /// Feeds a chunk; true when it completes an ack of a heartbeat that followed data.
  bool feed(int dir, std::string_view chunk) {
    bool hit = false;
    auto& part = partial[dir];
    size_t start = 0;
    for (auto nl = chunk.find('\n'); nl != std::string_view::npos; nl = chunk.find('\n', start)) {
      std::string_view line;
      if (part.empty()) {
        line = chunk.substr(start, nl - start);
      } else {
        part.append(chunk.substr(start, nl - start));
        line = part;
      }
      hit |= on_line(dir, line);
      part.clear();
      start = nl + 1;
    }
    part.append(chunk.substr(start));
    return hit;
  }

  bool on_line(int dir, std::string_view line) {
    if (dir == 0) {
      if (line.find("\"type\":\"logs\"") != std::string_view::npos
          || line.find("\"type\":\"attempt\"") != std::string_view::npos) {
        data_sent = true;
      } else if (line.find("\"type\":\"heartbeat\"") != std::string_view::npos) {
        if (data_sent && awaited < 0)
          awaited = seq_of(line);
        data_sent = false;
      }
      return false;
    }
    if (awaited < 0 || line.find("\"type\":\"heartbeat_ack\"") == std::string_view::npos)
      return false;
    if (seq_of(line) < awaited)
      return false;
    awaited = -1;
    return true;
  }
};

struct conn {
  int fd[2] = {-1, -1}; // [0] agent, [1] daemon
  flow f[2];            // [0] agent -> daemon, [1] daemon -> agent
  frame_watch watch;
  int cutting = -1; // a cut happened in this direction: flush it, then close
  steady::time_point cut_at{};
  bool dead = false;
};

/// Prefix length for a cut of `chunk` that ends inside a line, or -1 if there is none.
long cut_point(std::string_view chunk, char last, std::mt19937_64& rng) {
  std::vector<long> at;
  if (last != '\n')
    at.push_back(0);
  for (size_t p = 1; p < chunk.size(); ++p)
    if (chunk[p - 1] != '\n')
      at.push_back(static_cast<long>(p));
  if (at.empty())
    return -1;
  return at[std::uniform_int_distribution<size_t>(0, at.size() - 1)(rng)];
}

} // namespace

fault_relay::fault_relay(std::shared_ptr<std::atomic<uint16_t>> target, uint64_t seed,
                         std::shared_ptr<ack_trigger> trigger)
  : target_(std::move(target)), trigger_(std::move(trigger)), rng_(seed) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(listen_fd_, 64) != 0)
    throw std::runtime_error("relay: cannot listen on 127.0.0.1:0");
  socklen_t len = sizeof a;
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  thread_ = std::thread([this] { loop(); });
}

fault_relay::~fault_relay() {
  stop_ = true;
  thread_.join();
  close(listen_fd_);
}

void fault_relay::loop() {
  std::vector<conn> conns;
  int armed = -1; // direction of the next cut, -1: none
  auto next_cut = steady::time_point::max();
  int64_t rate_seen = 0;
  auto schedule_cut = [&](int64_t rate_x1000) {
    if (rate_x1000 <= 0) {
      next_cut = steady::time_point::max();
      armed = -1;
      return;
    }
    // Uniform in [0.5, 1.5] × the mean interval.
    double mean_ms = 60000.0 * 1000.0 / static_cast<double>(rate_x1000);
    auto ms = std::uniform_real_distribution<double>(0.5 * mean_ms, 1.5 * mean_ms)(rng_);
    next_cut = steady::now() + std::chrono::milliseconds(static_cast<int64_t>(ms));
  };
  auto close_conn = [](conn& c) {
    for (int fd : c.fd) {
      shutdown(fd, SHUT_RDWR);
      close(fd);
    }
    c.dead = true;
  };

  while (!stop_) {
    if (auto rate = cut_rate_x1000_.load(); rate != rate_seen) {
      rate_seen = rate;
      armed = -1;
      schedule_cut(rate);
    }
    if (armed < 0 && steady::now() >= next_cut) {
      armed = static_cast<int>(rng_() & 1);
      schedule_cut(rate_seen);
    }

    std::vector<pollfd> p{{listen_fd_, POLLIN, 0}};
    for (auto& c : conns)
      for (int side = 0; side < 2; ++side) {
        short ev = 0;
        flow& in = c.f[side];      // read from this side
        flow& out = c.f[1 - side]; // written to this side
        if (c.cutting < 0 && !in.eof && in.buf.size() < buffer_cap)
          ev |= POLLIN;
        if (!out.buf.empty())
          ev |= POLLOUT;
        p.push_back({c.fd[side], ev, 0});
      }
    if (poll(p.data(), p.size(), 20) < 0 && errno != EINTR)
      break;

    for (size_t i = 0; i < conns.size(); ++i) {
      auto& c = conns[i];
      for (int side = 0; side < 2 && !c.dead; ++side) {
        auto& pf = p[1 + 2 * i + static_cast<size_t>(side)];
        flow& in = c.f[side];
        flow& out = c.f[1 - side];
        if (pf.revents & POLLERR) {
          close_conn(c);
          break;
        }
        if ((pf.revents & POLLHUP) && !(pf.events & POLLIN) && c.cutting < 0) {
          close_conn(c);
          break;
        }
        if ((pf.events & POLLIN) && (pf.revents & (POLLIN | POLLHUP))) {
          char buf[65536];
          auto n = recv(c.fd[side], buf, sizeof buf, 0);
          if (n == 0) {
            in.eof = true;
          } else if (n < 0) {
            if (errno != EAGAIN && errno != EINTR) {
              close_conn(c);
              break;
            }
          } else {
            std::string_view chunk(buf, static_cast<size_t>(n));
            long keep = armed == side ? cut_point(chunk, in.last, rng_) : -1;
            if (keep >= 0) {
              in.buf.append(chunk.substr(0, static_cast<size_t>(keep)));
              out.buf.clear(); // the other way dies with the connection
              c.cutting = side;
              c.cut_at = steady::now();
              ++cuts_[side];
              armed = -1;
            } else {
              in.buf.append(chunk);
              in.last = chunk.back();
              if (trigger_ && c.watch.feed(side, chunk) && side == 1 && trigger_->armed.exchange(false)) {
                // The agent gets its ack, then the daemon dies before it can commit.
                while (!in.buf.empty()) {
                  auto sent = send(c.fd[0], in.buf.data(), in.buf.size(), MSG_NOSIGNAL);
                  if (sent <= 0)
                    break;
                  bytes_[1] += sent;
                  in.buf.erase(0, static_cast<size_t>(sent));
                }
                kill(trigger_->pid.load(), SIGKILL);
                trigger_->fired_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count();
                trigger_->fired = true;
              }
            }
          }
        }
        if ((pf.revents & POLLOUT) && !out.buf.empty()) {
          auto n = send(c.fd[side], out.buf.data(), out.buf.size(), MSG_NOSIGNAL);
          if (n > 0) {
            bytes_[1 - side] += n;
            out.buf.erase(0, static_cast<size_t>(n));
          } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            close_conn(c);
            break;
          }
        }
      }
      if (c.dead)
        continue;
      if (c.cutting >= 0) {
        if (c.f[c.cutting].buf.empty() || steady::now() - c.cut_at > cut_flush_bound)
          close_conn(c);
        continue;
      }
      // A FIN passes once what came before it did.
      for (int dir = 0; dir < 2; ++dir) {
        flow& f = c.f[dir];
        if (f.eof && f.buf.empty() && !f.shut) {
          shutdown(c.fd[1 - dir], SHUT_WR);
          f.shut = true;
        }
      }
      if (c.f[0].shut && c.f[1].shut)
        close_conn(c);
    }
    std::erase_if(conns, [](const conn& c) { return c.dead; });

    if (p[0].revents & POLLIN) {
      for (;;) {
        int a = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (a < 0)
          break;
        uint16_t port = target_->load();
        int d = port ? socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) : -1;
        sockaddr_in t{};
        t.sin_family = AF_INET;
        t.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        t.sin_port = htons(port);
        if (d >= 0 && connect(d, reinterpret_cast<sockaddr*>(&t), sizeof t) == 0) {
          set_nonblocking(a);
          set_nonblocking(d);
          conn c;
          c.fd[0] = a;
          c.fd[1] = d;
          conns.push_back(std::move(c));
          ++connections_;
        } else {
          ++refused_;
          if (d >= 0)
            close(d);
          close(a);
        }
      }
    }
  }
  for (auto& c : conns)
    if (!c.dead)
      close_conn(c);
}

} // namespace nodecoord::faults
