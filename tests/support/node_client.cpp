#include "node_client.hpp"

#include "protocol/codec.hpp"

#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace nodecoord::test {

namespace {

using clock = std::chrono::steady_clock;

/// Milliseconds left until `deadline` for poll(), rounded up, at least 0.
int remaining_ms(clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left + 1, 0, 24 * 3600 * 1000));
}

std::string errno_text(int e) { return std::strerror(e); }

/// A line for failure messages: long lines are cut.
std::string shorten(std::string_view s, std::size_t max = 300) {
  if (s.size() <= max)
    return std::string(s);
  return std::string(s.substr(0, max)) + "...[" + std::to_string(s.size()) + " bytes]";
}

} // namespace

node_client::node_client(uint16_t port, std::chrono::milliseconds bound) : aside_types(default_aside), port_(port) {
  auto deadline = clock::now() + bound;
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  BOOST_REQUIRE_MESSAGE(fd_ >= 0, "socket(): " << errno_text(errno));
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (rc != 0 && errno != EINPROGRESS) {
    int e = errno;
    close();
    BOOST_FAIL("connect(127.0.0.1:" << port << "): " << errno_text(e));
  }
  if (rc != 0) {
    for (;;) {
      pollfd p{fd_, POLLOUT, 0};
      int n = ::poll(&p, 1, remaining_ms(deadline));
      if (n < 0 && errno == EINTR)
        continue;
      if (n == 0) {
        close();
        BOOST_FAIL("connect(127.0.0.1:" << port << ") did not complete within " << bound.count() << " ms");
      }
      break;
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      close();
      BOOST_FAIL("connect(127.0.0.1:" << port << "): " << errno_text(err));
    }
  }
}

node_client::~node_client() { close(); }

node_client::node_client(node_client&& other) noexcept
  : aside_types(std::move(other.aside_types)), fd_(other.fd_), port_(other.port_), in_(std::move(other.in_)),
    eof_(other.eof_), aside_(std::move(other.aside_)) {
  other.fd_ = -1;
}

node_client& node_client::operator=(node_client&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    port_ = other.port_;
    in_ = std::move(other.in_);
    eof_ = other.eof_;
    aside_types = std::move(other.aside_types);
    aside_ = std::move(other.aside_);
    other.fd_ = -1;
  }
  return *this;
}

void node_client::close() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

std::size_t node_client::send_until_closed(std::string_view bytes, std::chrono::milliseconds bound) {
  BOOST_REQUIRE_MESSAGE(fd_ >= 0, "send on a closed client");
  auto deadline = clock::now() + bound;
  std::size_t done = 0;
  while (done < bytes.size()) {
    auto n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
      return done;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
      BOOST_FAIL("send(): " << errno_text(errno));
    int left = remaining_ms(deadline);
    if (left == 0)
      BOOST_FAIL("could not send " << bytes.size() << " bytes within " << bound.count() << " ms (sent " << done << ")");
    pollfd p{fd_, POLLOUT, 0};
    ::poll(&p, 1, left);
    if (p.revents & (POLLERR | POLLHUP)) {
      // The peer reset the connection; the next send() reports it.
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == EPIPE || err == ECONNRESET || (p.revents & POLLHUP))
        return done;
    }
  }
  return done;
}

void node_client::send_raw(std::string_view bytes, std::chrono::milliseconds bound) {
  auto sent = send_until_closed(bytes, bound);
  BOOST_REQUIRE_MESSAGE(sent == bytes.size(), "the connection closed after " << sent << " of " << bytes.size()
                                                                             << " bytes of: " << shorten(bytes));
}

void node_client::send_line(std::string_view line, std::chrono::milliseconds bound) {
  if (!line.empty() && line.back() == '\n') {
    send_raw(line, bound);
    return;
  }
  std::string with_nl(line);
  with_nl += '\n';
  send_raw(with_nl, bound);
}

bool node_client::read_available() {
  if (eof_ || fd_ < 0)
    return false;
  char buf[65536];
  for (;;) {
    auto n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      in_.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) {
      eof_ = true;
      return false;
    }
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return true;
    if (errno == ECONNRESET) {
      eof_ = true;
      return false;
    }
    BOOST_FAIL("recv(): " << errno_text(errno));
  }
}

std::optional<std::string> node_client::take_line() {
  auto nl = in_.find('\n');
  if (nl == std::string::npos)
    return std::nullopt;
  std::string line = in_.substr(0, nl);
  in_.erase(0, nl + 1);
  if (!line.empty() && line.back() == '\r')
    line.pop_back();
  return line;
}

std::optional<nlohmann::json> node_client::take_frame() {
  for (;;) {
    auto line = take_line();
    if (!line)
      return std::nullopt;
    if (line->empty())
      continue; // blank lines are not frames
    auto j = nlohmann::json::parse(*line, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      BOOST_FAIL("the coordinator sent a line that is not a JSON object: " << shorten(*line));
    if (!j.contains("type") || !j["type"].is_string())
      BOOST_FAIL("the coordinator sent a frame without a string type: " << shorten(*line));
    if (aside_types.count(j["type"].get<std::string>())) {
      aside_.push_back(std::move(j));
      continue;
    }
    return j;
  }
}

std::optional<nlohmann::json> node_client::try_read_frame(std::chrono::milliseconds bound) {
  auto deadline = clock::now() + bound;
  for (;;) {
    if (auto f = take_frame())
      return f;
    if (eof_ || fd_ < 0)
      return std::nullopt;
    pollfd p{fd_, POLLIN, 0};
    int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n < 0 && errno != EINTR)
      BOOST_FAIL("poll(): " << errno_text(errno));
    if (n > 0)
      read_available();
    else if (n == 0 && remaining_ms(deadline) == 0)
      return take_frame();
  }
}

nlohmann::json node_client::read_frame(std::chrono::milliseconds bound) {
  auto f = try_read_frame(bound);
  if (!f) {
    if (eof_)
      BOOST_FAIL("the coordinator closed the connection without sending the expected frame"
                 << (in_.empty() ? std::string() : "; unterminated bytes: " + shorten(in_)));
    BOOST_FAIL("no frame from the coordinator within "
               << bound.count() << " ms" << (in_.empty() ? std::string() : "; partial line: " + shorten(in_)));
  }
  return *f;
}

bool node_client::wait_closed(std::chrono::milliseconds bound) {
  auto deadline = clock::now() + bound;
  while (!eof_) {
    BOOST_REQUIRE_MESSAGE(fd_ >= 0, "wait_closed on a client we closed ourselves");
    pollfd p{fd_, POLLIN, 0};
    int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n < 0 && errno != EINTR)
      BOOST_FAIL("poll(): " << errno_text(errno));
    if (n > 0)
      read_available();
    else if (n == 0 && remaining_ms(deadline) == 0)
      return eof_;
  }
  return true;
}

nlohmann::json node_client::hello(const std::string& node, const std::string& key, int64_t protocol,
                                  std::chrono::milliseconds bound) {
  protocol::hello h;
  h.protocol = protocol;
  h.node = node;
  h.key = key;
  h.agent = "sessions_e2e_test/1";
  send_raw(protocol::encode_hello(h), bound);
  return read_frame(bound);
}

void node_client::heartbeat_roundtrip(int64_t seq, std::chrono::milliseconds bound) {
  send_raw(protocol::encode_heartbeat(seq), bound);
  auto f = read_frame(bound);
  BOOST_REQUIRE_MESSAGE(f.value("type", "") == "heartbeat_ack", "expected heartbeat_ack, got " << f.dump());
  BOOST_REQUIRE_MESSAGE(f.contains("seq") && f["seq"].is_number_integer() && f["seq"].get<int64_t>() == seq,
                        "heartbeat_ack does not echo seq " << seq << ": " << f.dump());
  BOOST_REQUIRE_MESSAGE(f.contains("server_time") && f["server_time"].is_string(),
                        "heartbeat_ack without server_time: " << f.dump());
}

} // namespace nodecoord::test
