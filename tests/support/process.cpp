#include "process.hpp"

#include <boost/test/unit_test.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>

extern char** environ;

namespace nodecoord::test {

namespace {

using clock = std::chrono::steady_clock;

std::string errno_text(int e) { return std::string(std::strerror(e)); }

void close_fd(int& fd) {
  if (fd >= 0) {
    ::close(fd);
    fd = -1;
  }
}

/// Milliseconds left until `deadline`, at least 0, for poll().
int remaining_ms(clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
  // Round up so that a wait never ends a little before the deadline and spins.
  return static_cast<int>(std::clamp<long long>(left + 1, 0, 24 * 3600 * 1000));
}

std::string describe_status(int status) {
  if (WIFEXITED(status))
    return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return std::string("killed by signal ") + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status))
           + ")";
  return "status " + std::to_string(status);
}

/// Base directory for temp directories: $TMPDIR unless it would make a socket path too long
/// for sockaddr_un (108 bytes), else /tmp.
std::string temp_base(bool for_socket) {
  std::error_code ec;
  auto base = std::filesystem::temp_directory_path(ec).string();
  if (ec || base.empty() || (for_socket && base.size() > 60))
    base = "/tmp";
  return base;
}

std::string make_temp_dir(std::string_view prefix, const std::string& base) {
  std::string templ = base + "/" + std::string(prefix) + ".XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data()))
    BOOST_FAIL("mkdtemp(" << templ << "): " << errno_text(errno));
  return std::string(buf.data());
}

} // namespace

// --- temp_dir ----------------------------------------------------------------------------

temp_dir::temp_dir(std::string_view prefix, bool short_path) : path_(make_temp_dir(prefix, temp_base(short_path))) {}

temp_dir::~temp_dir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string temp_dir::file(std::string_view name) const { return path_ + "/" + std::string(name); }

std::string temp_dir::write(std::string_view name, std::string_view content) const {
  auto p = file(name);
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    BOOST_FAIL("open(" << p << "): " << errno_text(errno));
  std::size_t done = 0;
  while (done < content.size()) {
    auto n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      BOOST_FAIL("write(" << p << "): " << errno_text(e));
    }
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  return p;
}

// --- child_process -----------------------------------------------------------------------

child_process::child_process(std::string program, std::vector<std::string> args, environment env)
  : program_(std::move(program)) {
  // Everything the child needs is prepared before fork(): between fork() and exec() only
  // async-signal-safe calls are allowed (other threads may hold malloc's locks).
  std::vector<std::string> argv_s;
  argv_s.push_back(program_);
  for (auto& a : args)
    argv_s.push_back(std::move(a));
  std::vector<char*> argv;
  for (auto& a : argv_s)
    argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_s;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry = *e;
    auto eq = entry.find('=');
    std::string name(entry.substr(0, eq));
    if (!env.contains(name))
      env_s.emplace_back(entry);
  }
  for (auto& [name, value] : env)
    if (value)
      env_s.push_back(name + "=" + *value);
  std::vector<char*> envp;
  for (auto& e : env_s)
    envp.push_back(e.data());
  envp.push_back(nullptr);

  int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, exec_pipe[2] = {-1, -1}, wake_pipe[2] = {-1, -1};
  auto close_all = [&] {
    for (int* p : {out_pipe, err_pipe, exec_pipe, wake_pipe})
      for (int i = 0; i < 2; ++i)
        close_fd(p[i]);
  };
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0 || ::pipe2(exec_pipe, O_CLOEXEC) != 0
      || ::pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    int e = errno;
    close_all();
    BOOST_FAIL("pipe2: " << errno_text(e));
  }
  pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    close_all();
    BOOST_FAIL("fork: " << errno_text(e));
  }
  if (pid == 0) {
    // Child. Die with the test process, so that an aborted test run leaves nothing behind.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
      ::_exit(127);
    // Start from a clean signal state: dispositions set to "ignore" and the mask survive exec.
    for (int s = 1; s < NSIG; ++s)
      if (s != SIGKILL && s != SIGSTOP)
        ::signal(s, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0 && devnull != 0) {
      ::dup2(devnull, 0);
      ::close(devnull);
    }
    if (::dup2(out_pipe[1], 1) < 0 || ::dup2(err_pipe[1], 2) < 0) {
      int e = errno;
      [[maybe_unused]] auto n = ::write(exec_pipe[1], &e, sizeof e);
      ::_exit(127);
    }
    ::execve(argv[0], argv.data(), envp.data());
    int e = errno;
    [[maybe_unused]] auto n = ::write(exec_pipe[1], &e, sizeof e);
    ::_exit(127);
  }

  // Parent.
  pid_ = pid;
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  ::close(exec_pipe[1]);
  out_fd_ = out_pipe[0];
  err_fd_ = err_pipe[0];
  wake_rd_ = wake_pipe[0];
  wake_wr_ = wake_pipe[1];

  // The exec pipe closes on a successful exec (O_CLOEXEC); otherwise the child sends errno.
  int exec_errno = 0;
  ssize_t n;
  do
    n = ::read(exec_pipe[0], &exec_errno, sizeof exec_errno);
  while (n < 0 && errno == EINTR);
  ::close(exec_pipe[0]);
  if (n > 0) {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    status_ = status;
    close_fd(out_fd_);
    close_fd(err_fd_);
    close_fd(wake_rd_);
    close_fd(wake_wr_);
    BOOST_FAIL("cannot execute " << program_ << ": " << errno_text(exec_errno));
  }

#ifdef SYS_pidfd_open
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
#endif
  reader_ = std::thread([this] { read_loop(); });
}

child_process::~child_process() {
  if (!status_)
    kill_and_reap();
  stop_reader(std::chrono::seconds(2));
  close_fd(pidfd_);
  close_fd(wake_rd_);
  close_fd(wake_wr_);
}

void child_process::read_loop() {
  pollfd fds[3] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}, {wake_rd_, POLLIN, 0}};
  char buf[65536];
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    int n = ::poll(fds, 3, -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (fds[2].revents)
      break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      auto got = ::read(fds[i].fd, buf, sizeof buf);
      if (got < 0 && (errno == EINTR || errno == EAGAIN))
        continue;
      if (got <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        continue;
      }
      {
        std::lock_guard lock(mu_);
        (i == 0 ? out_ : err_).append(buf, static_cast<std::size_t>(got));
      }
      cv_.notify_all();
    }
  }
  for (int i = 0; i < 2; ++i)
    if (fds[i].fd >= 0)
      ::close(fds[i].fd);
  {
    std::lock_guard lock(mu_);
    reader_done_ = true;
  }
  cv_.notify_all();
}

void child_process::stop_reader(std::chrono::milliseconds bound) {
  if (!reader_.joinable())
    return;
  {
    // After the child exited its pipes reach EOF, unless a grandchild still holds them.
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, bound, [this] { return reader_done_; });
  }
  char c = 'x';
  [[maybe_unused]] auto n = ::write(wake_wr_, &c, 1);
  reader_.join();
}

void child_process::kill_and_reap() {
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0) {
    if (errno != EINTR) {
      status = 0;
      break;
    }
  }
  status_ = status;
}

void child_process::send_signal(int signo) {
  BOOST_REQUIRE_MESSAGE(!status_, "cannot send signal " << signo << " to " << program_ << ": it already exited ("
                                                        << describe_status(*status_) << ")");
  BOOST_REQUIRE_MESSAGE(::kill(pid_, signo) == 0, "kill(" << pid_ << ", " << signo << "): " << errno_text(errno));
}

int child_process::wait_exit(std::chrono::milliseconds bound) {
  if (!status_) {
    auto deadline = clock::now() + bound;
    bool exited = false;
    int status = 0;
    for (;;) {
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited = true;
        break;
      }
      if (r < 0 && errno != EINTR)
        BOOST_FAIL("waitpid(" << pid_ << "): " << errno_text(errno));
      int left = remaining_ms(deadline);
      if (left == 0)
        break;
      if (pidfd_ >= 0) {
        // Readable once the process has exited.
        pollfd p{pidfd_, POLLIN, 0};
        ::poll(&p, 1, left);
      } else {
        // No pidfd (kernel < 5.3): look again in 10 ms.
        ::poll(nullptr, 0, std::min(left, 10));
      }
    }
    if (!exited) {
      kill_and_reap();
      stop_reader(std::chrono::seconds(2));
      BOOST_FAIL(program_ << " did not exit within " << bound.count() << " ms; killed it. stderr:\n" << stderr_tail());
    }
    status_ = status;
  }
  stop_reader(std::chrono::seconds(5));
  int st = *status_;
  if (WIFEXITED(st))
    return WEXITSTATUS(st);
  if (WIFSIGNALED(st))
    return 128 + WTERMSIG(st);
  return -1;
}

std::string child_process::stdout_text() const {
  std::lock_guard lock(mu_);
  return out_;
}

std::string child_process::stderr_text() const {
  std::lock_guard lock(mu_);
  return err_;
}

std::string child_process::stderr_tail(std::size_t max) const {
  std::lock_guard lock(mu_);
  return err_.size() <= max ? err_ : "[...]" + err_.substr(err_.size() - max);
}

bool child_process::wait_for_stderr(std::string_view needle, std::chrono::milliseconds bound) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, bound, [&] { return err_.find(needle) != std::string::npos || reader_done_; })
         && err_.find(needle) != std::string::npos;
}

// --- notify_socket -----------------------------------------------------------------------

notify_socket::notify_socket() : dir_("nodecoord-notify", true), path_(dir_.file("notify")) {
  sockaddr_un addr{};
  BOOST_REQUIRE_MESSAGE(path_.size() < sizeof addr.sun_path,
                        "notify socket path too long for AF_UNIX: " << path_ << " (set TMPDIR to a shorter directory)");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  BOOST_REQUIRE_MESSAGE(fd_ >= 0, "socket(AF_UNIX, SOCK_DGRAM): " << errno_text(errno));
  int one = 1;
  BOOST_REQUIRE_MESSAGE(::setsockopt(fd_, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0,
                        "setsockopt(SO_PASSCRED): " << errno_text(errno));
  BOOST_REQUIRE_MESSAGE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0,
                        "bind(" << path_ << "): " << errno_text(errno));
}

notify_socket::~notify_socket() { close_fd(fd_); }

bool notify_socket::receive(int timeout_ms) {
  pollfd p{fd_, POLLIN, 0};
  int n = ::poll(&p, 1, timeout_ms);
  if (n <= 0)
    return false; // timeout, or EINTR: the caller recomputes the time left
  char buf[65536];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int) * 32)];
  iovec iov{buf, sizeof buf};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  auto got = ::recvmsg(fd_, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (got < 0)
    return false;
  datagram d;
  d.text.assign(buf, static_cast<std::size_t>(got));
  for (auto* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET)
      continue;
    if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(ucred))) {
      ucred cred{};
      std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
      d.sender = cred.pid;
    } else if (c->cmsg_type == SCM_RIGHTS) {
      // Not expected from nodecoordd; do not leak them.
      std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        if (fd >= 0)
          ::close(fd);
      }
    }
  }
  received_.push_back(std::move(d));
  return true;
}

bool notify_socket::wait_for(std::string_view needle, std::chrono::milliseconds bound) {
  auto deadline = clock::now() + bound;
  std::size_t scanned = next_;
  for (;;) {
    for (; scanned < received_.size(); ++scanned) {
      if (received_[scanned].text.find(needle) != std::string::npos) {
        next_ = scanned + 1;
        return true;
      }
    }
    int left = remaining_ms(deadline);
    if (!receive(left) && left == 0) {
      // One last look at anything already queued.
      drain();
      for (; scanned < received_.size(); ++scanned)
        if (received_[scanned].text.find(needle) != std::string::npos) {
          next_ = scanned + 1;
          return true;
        }
      return false;
    }
  }
}

void notify_socket::drain() {
  while (receive(0)) {
  }
}

std::size_t notify_socket::count(std::string_view needle) const {
  return static_cast<std::size_t>(std::count_if(
    received_.begin(), received_.end(), [&](const datagram& d) { return d.text.find(needle) != std::string::npos; }));
}

std::string notify_socket::describe() const {
  if (received_.empty())
    return "(no datagrams)";
  std::string out;
  for (const auto& d : received_) {
    out += "\n  [pid " + std::to_string(d.sender) + "] ";
    for (char c : d.text)
      out += c == '\n' ? std::string("\\n") : std::string(1, c);
  }
  return out;
}

} // namespace nodecoord::test
