#include "tools/agent/run_command.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

namespace nodecoord::agent {

namespace {

pid_t child_pid = -1;

void forward_signal(int signo) {
  if (child_pid > 0)
    kill(child_pid, signo);
}

/// One output stream of the child, cut into lines.
struct stream_reader {
  int fd;
  std::string name;
  std::string partial;
  std::vector<std::string> lines;

  bool read_some() { // false at EOF
    char buf[65536];
    auto n = read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
      return true;
    if (n <= 0) {
      if (!partial.empty())
        lines.push_back(std::move(partial));
      partial.clear();
      return false;
    }
    partial.append(buf, static_cast<size_t>(n));
    size_t start = 0;
    for (auto nl = partial.find('\n'); nl != std::string::npos; nl = partial.find('\n', start)) {
      auto line = partial.substr(start, nl - start);
      if (!line.empty() && line.back() == '\r')
        line.pop_back();
      lines.push_back(std::move(line));
      start = nl + 1;
    }
    partial.erase(0, start);
    return true;
  }
};

} // namespace

int run_command(store& st, const std::string& task, const std::vector<std::string>& command) {
  auto id = st.start_attempt(task, "running");
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  std::vector<char*> argv;
  for (auto& a : command)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0)
    throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    execvp(argv[0], argv.data());
    dprintf(STDERR_FILENO, "nodecoord-agent: cannot run %s: %s\n", argv[0], std::strerror(errno));
    _exit(127);
  }
  child_pid = pid;
  struct sigaction sa {};
  sa.sa_handler = forward_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  close(out[1]);
  close(err[1]);
  stream_reader readers[2] = {{out[0], "stdout", {}, {}}, {err[0], "stderr", {}, {}}};
  bool open[2] = {true, true};
  // Lines reach the store at least every 200 ms, and every 100 lines.
  auto last_flush = std::chrono::steady_clock::now();
  auto flush = [&](bool force) {
    force = force || std::chrono::steady_clock::now() - last_flush >= std::chrono::milliseconds(200);
    for (auto& r : readers)
      if (!r.lines.empty() && (force || r.lines.size() >= 100)) {
        st.append_logs(id, r.name, r.lines);
        r.lines.clear();
      }
    if (force)
      last_flush = std::chrono::steady_clock::now();
  };
  while (open[0] || open[1]) {
    pollfd p[2] = {{open[0] ? out[0] : -1, POLLIN, 0}, {open[1] ? err[0] : -1, POLLIN, 0}};
    int rc = poll(p, 2, 200);
    if (rc < 0 && errno != EINTR)
      break;
    for (int i = 0; i < 2; ++i)
      if (open[i] && (p[i].revents & (POLLIN | POLLHUP | POLLERR)))
        open[i] = readers[i].read_some();
    flush(rc == 0); // a quiet moment: make what was read visible
  }
  flush(true);
  close(out[0]);
  close(err[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  child_pid = -1;
  int code;
  std::string how, meta;
  if (WIFSIGNALED(status)) {
    code = 128 + WTERMSIG(status);
    how = "killed by signal " + std::to_string(WTERMSIG(status));
    meta = "{\"signal\":" + std::to_string(WTERMSIG(status)) + "}";
  } else {
    code = WEXITSTATUS(status);
    how = "exit code " + std::to_string(code);
    meta = "{\"exit_code\":" + std::to_string(code) + "}";
  }
  st.append_logs(id, "system", {how});
  st.set_state(id, code == 0 ? "succeeded" : "failed", meta);
  return code;
}

} // namespace nodecoord::agent
