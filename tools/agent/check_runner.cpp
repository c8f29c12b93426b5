#include "tools/agent/check_runner.hpp"

#include "protocol/codec.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace nodecoord::agent {

namespace {

using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// Closes its descriptor on every way out of run_check.
struct fd_guard {
  int fd = -1;
  fd_guard() = default;
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() { reset(); }
  void reset() {
    if (fd >= 0)
      close(fd);
    fd = -1;
  }
};

bool make_pipe(fd_guard& r, fd_guard& w) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0)
    return false;
  r.fd = p[0];
  w.fd = p[1];
  return true;
}

int ms_until(steady::time_point t) {
  auto d = std::chrono::ceil<milliseconds>(t - steady::now()).count(); // never a busy 0 before t
  return static_cast<int>(std::clamp<long long>(d, 0, 60'000));
}

/// The child has ended (it is left a zombie, so its pid and process group cannot be reused yet).
bool has_exited(pid_t pid) {
  siginfo_t info{};
  if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0)
    return errno != EINTR; // ECHILD: nothing left to wait for
  return info.si_pid == pid;
}

/// Reaps the child: its wait status, or -1 if there is none to be had.
int reap(pid_t pid) {
  int status = 0;
  for (;;) {
    if (waitpid(pid, &status, 0) == pid)
      return status;
    if (errno != EINTR)
      return -1;
  }
}

/// In the child: sends errno to the parent through `err_fd` and ends.
[[noreturn]] void child_failed(int err_fd) {
  int e = errno;
  [[maybe_unused]] auto n = write(err_fd, &e, sizeof e);
  _exit(127);
}

/// In the child, between fork and exec: async-signal-safe calls only. A failure is sent to the
/// parent as an errno through `err_fd` (closed by a successful exec).
[[noreturn]] void exec_child(char* const* argv, int out_fd, int err_fd) {
  if (setpgid(0, 0) != 0) // its own group: the timeout kills everything it started
    child_failed(err_fd);
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0
      || dup2(out_fd, STDERR_FILENO) < 0)
    child_failed(err_fd);
  // The agent ignores SIGPIPE, and an ignored signal stays ignored across exec: give the check
  // the defaults a shell would.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(SIGPIPE, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  execvp(argv[0], argv);
  child_failed(err_fd);
}

} // namespace

check_outcome run_check(const std::vector<std::string>& argv, milliseconds timeout, size_t output_max) {
  check_outcome r;
  r.status = protocol::check_status::failed_to_start;
  if (argv.empty() || argv[0].empty()) {
    r.error = "cannot run a check without a program";
    return r;
  }
  auto cannot_run = [&](int e) { r.error = "cannot run " + argv[0] + ": " + std::strerror(e); };
  std::vector<char*> args; // built before fork: the child may not allocate
  for (auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  fd_guard out_r, out_w, err_r, err_w;
  if (!make_pipe(out_r, out_w) || !make_pipe(err_r, err_w)) {
    cannot_run(errno);
    return r;
  }
  // A year at most: steady_clock's time_point would overflow with what a request may say.
  timeout = std::clamp<milliseconds>(timeout, milliseconds(0), std::chrono::hours(24 * 365));
  auto deadline = steady::now() + timeout;
  pid_t pid = fork();
  if (pid < 0) {
    cannot_run(errno);
    return r;
  }
  if (pid == 0)
    exec_child(args.data(), out_w.fd, err_w.fd);
  out_w.reset();
  err_w.reset();

  // The error pipe ends with the exec (CLOEXEC), or carries the errno of what failed before it.
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(err_r.fd, &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  err_r.reset();
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    reap(pid);
    cannot_run(child_errno);
    return r;
  }

  fcntl(out_r.fd, F_SETFL, fcntl(out_r.fd, F_GETFL) | O_NONBLOCK);
  bool timed_out = false;
  bool eof = false;
  char buf[65536];
  while (!eof) {
    pollfd p{out_r.fd, POLLIN, 0};
    int rc = poll(&p, 1, ms_until(deadline));
    if (rc < 0 && errno != EINTR)
      break;
    if (rc <= 0) {
      if (steady::now() >= deadline) {
        timed_out = true;
        break;
      }
      continue;
    }
    auto got = read(out_r.fd, buf, sizeof buf);
    if (got > 0) {
      // Past output_max the rest is read and dropped, so the program never waits on a full pipe.
      auto size = static_cast<size_t>(got);
      auto keep = std::min(size, output_max - std::min(output_max, r.output.size()));
      r.output.append(buf, keep);
      r.truncated = r.truncated || keep < size;
    } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
      eof = true;
    }
  }
  out_r.reset();
  // Output closed: the program may still run (it closed its stdout); wait for it up to the end.
  while (!timed_out && !has_exited(pid)) {
    auto left = deadline - steady::now();
    if (left <= steady::duration::zero())
      timed_out = true;
    else
      std::this_thread::sleep_for(std::min<steady::duration>(left, milliseconds(10)));
  }
  // Before the reap, while the group's id cannot be reused: what the program left running dies
  // with it, and at the timeout the program too (even if it left the group).
  kill(-pid, SIGKILL);
  if (timed_out)
    kill(pid, SIGKILL);
  int status = reap(pid);
  if (timed_out) {
    r.status = protocol::check_status::timed_out;
    r.error = "timed out after " + std::to_string(timeout.count()) + " ms";
    return r;
  }
  r.status = protocol::check_status::exited;
  if (status == -1)
    r.error = "its exit status is unknown";
  else if (WIFSIGNALED(status))
    r.exit_code = 128 + WTERMSIG(status);
  else
    r.exit_code = WEXITSTATUS(status);
  return r;
}

} // namespace nodecoord::agent
