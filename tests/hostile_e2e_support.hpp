#pragma once

// Shared by the hostile_e2e_test sources: RSS of a process, a PostgreSQL outage, a node that
// writes as fast as it can, raw connections.

#include "common/ids.hpp"
#include "e2e_daemon.hpp"
#include "e2e_node.hpp"
#include "node_client.hpp"
#include "protocol/codec.hpp"
#include "test_db.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

using namespace nodecoord;
using namespace nodecoord::test;
using steady = std::chrono::steady_clock;

namespace hostile_e2e {

/// VmRSS of `pid` in KiB (-1 if unreadable).
inline long rss_kib(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stol(line.substr(6));
  return -1;
}

/// The largest value in a /proc/sys file of numbers (tcp_rmem: "min default
/// max").
inline uint64_t proc_max(const std::string& path) {
  std::ifstream f(path);
  uint64_t v = 0, best = 0;
  while (f >> v)
    best = std::max(best, v);
  return best;
}

inline rlim_t raise_nofile() {
  rlimit lim{};
  BOOST_REQUIRE(getrlimit(RLIMIT_NOFILE, &lim) == 0);
  lim.rlim_cur = lim.rlim_max;
  BOOST_REQUIRE(setrlimit(RLIMIT_NOFILE, &lim) == 0);
  return lim.rlim_cur;
}

/// A non-blocking connect to 127.0.0.1:`port` from `source` (any address of
/// 127/8 works on lo). The fd, or -errno.
inline int connect_from(const char* source, uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int one = 1;
  // The local port is chosen by connect() (per destination), not by bind():
  // 10,000 short connections from one source address do not run out of ports.
  ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &a.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    int e = errno;
    ::close(fd);
    return -e;
  }
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
    int e = errno;
    ::close(fd);
    return -e;
  }
  return fd;
}

/// Stops the shared test PostgreSQL server (NODECOORD_TEST_PG_STOP/START) and
/// starts it again, also when the test fails in between.
struct pg_outage {
  const char* stop_cmd = std::getenv("NODECOORD_TEST_PG_STOP");
  const char* start_cmd = std::getenv("NODECOORD_TEST_PG_START");
  bool down = false;
  pg_outage() {
    BOOST_REQUIRE_MESSAGE(stop_cmd && start_cmd, "NODECOORD_TEST_PG_STOP/START are not set "
                                                 "(source tests/pg_test_server.sh and run pg_test_start)");
  }
  void stop() {
    BOOST_REQUIRE_EQUAL(std::system(stop_cmd), 0);
    down = true;
  }
  void start() {
    BOOST_REQUIRE_EQUAL(std::system(start_cmd), 0);
    down = false;
  }
  ~pg_outage() {
    if (down) [[maybe_unused]]
      int rc = std::system(start_cmd);
  }
};

/// A node that streams attempt + logs frames as fast as its socket takes them
/// (non-blocking), with a heartbeat every 20 frames, and reads everything the
/// daemon sends.
struct fast_writer {
  node_client& c;
  bool generate = true;
  std::string out; // the frame being sent
  std::size_t off = 0;
  std::map<std::string, int64_t> lines; // attempt -> lines put on the wire
  std::string attempt;
  int64_t next_seq = 0, frames = 0, hb_next = 0, hb_acked = -1;
  uint64_t sent = 0; // bytes send() accepted
  int ack_delayed = 0;
  std::vector<std::string> problems; // errors other than ack_delayed, close frames

  void next_frame() {
    if (attempt.empty() || next_seq >= 20 * 64) {
      attempt = new_uuid();
      next_seq = 0;
      out += protocol::encode_attempt({attempt, "flood", "running", "", "", ""});
      lines[attempt] = 0;
    }
    protocol::logs l{attempt, {}};
    for (int i = 0; i < 64; ++i, ++next_seq)
      l.entries.push_back({next_seq, "2026-01-09T12:00:00.000Z", "stdout",
                           "line " + std::to_string(next_seq) + " " + std::string(100, 'x')});
    out += protocol::encode_logs(l);
    lines[attempt] += 64;
    if (++frames % 20 == 0)
      out += protocol::encode_heartbeat(hb_next++);
  }
  int64_t heartbeat() {
    out += protocol::encode_heartbeat(hb_next);
    return hb_next++;
  }
  bool pending() const { return off < out.size() || generate; }
  /// Sends what the socket takes now, at most `budget` bytes.
  void pump(std::size_t budget = 1 << 20) {
    for (std::size_t done = 0; done < budget;) {
      if (off == out.size()) {
        out.clear();
        off = 0;
        if (!generate)
          return;
        next_frame();
      }
      auto n = ::send(c.fd(), out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += std::size_t(n);
        sent += std::size_t(n);
        done += std::size_t(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return;
      } else if (!(n < 0 && errno == EINTR)) {
        BOOST_FAIL("the writer's send() failed: " << std::strerror(errno));
      }
    }
  }
  void read() {
    c.read_available();
    while (auto f = c.take_frame()) {
      auto type = f->value("type", "");
      if (type == "heartbeat_ack")
        hb_acked = std::max(hb_acked, f->value("seq", int64_t{-1}));
      else if (type == "error" && f->value("code", "") == "ack_delayed")
        ++ack_delayed;
      else
        problems.push_back(f->dump());
    }
  }
};

} // namespace hostile_e2e
