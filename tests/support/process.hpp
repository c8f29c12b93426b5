#pragma once
// Test helpers for end-to-end tests of the daemon binary:
//   temp_dir       a fresh directory under $TMPDIR (or /tmp), removed with everything in it.
//   child_process  fork/exec (no shell) with extra or removed environment variables; stdout and
//                  stderr are read by a helper thread into strings, so a chatty child never
//                  blocks on a full pipe. Every wait is bounded; a child still running when the
//                  object goes away is killed with SIGKILL and reaped.
//   notify_socket  an AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET.
// The helpers fail the current Boost.Test test case (BOOST_FAIL / BOOST_REQUIRE) when a bound
// passes or a system call fails.
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace nodecoord::test {

/// A fresh, empty directory (mkdtemp), removed recursively by the destructor.
class temp_dir {
public:
  /// `short_path`: under /tmp instead of $TMPDIR when $TMPDIR is long (for socket paths,
  /// which must fit in 108 bytes).
  explicit temp_dir(std::string_view prefix = "nodecoord-test", bool short_path = false);
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::string& path() const { return path_; }
  /// path() + "/" + name
  std::string file(std::string_view name) const;
  /// Writes (replaces) the file `name` in this directory; returns its path.
  std::string write(std::string_view name, std::string_view content) const;

private:
  std::string path_;
};

/// Environment changes for a child: a value sets (or replaces) the variable, std::nullopt
/// removes it. Everything else is inherited from the test process.
using environment = std::map<std::string, std::optional<std::string>>;

class child_process {
public:
  /// Starts `program` with `args` (argv[1..]). Fails the test if the program cannot be executed.
  child_process(std::string program, std::vector<std::string> args, environment env = {});
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const { return pid_; }
  /// True until wait_exit() has reaped the child.
  bool reaped() const { return status_.has_value(); }

  /// kill(pid, signo); fails the test if the child was already reaped or kill() fails.
  void send_signal(int signo);

  /// Waits at most `bound` for the child to exit and returns its exit code; a child killed by a
  /// signal gives 128 + the signal number (as a shell reports it). If the child is still running
  /// after `bound`, it is killed with SIGKILL and reaped, and the test fails. Once this returns,
  /// stdout() and stderr() hold everything the child wrote. A second call returns the same code.
  int wait_exit(std::chrono::milliseconds bound);

  /// Everything read so far (snapshots; the child may still be writing).
  std::string stdout_text() const;
  std::string stderr_text() const;

  /// Waits at most `bound` until stderr contains `needle`; false if it did not (or the child
  /// closed stderr without writing it).
  bool wait_for_stderr(std::string_view needle, std::chrono::milliseconds bound);

  /// The last `max` bytes of stderr, for failure messages.
  std::string stderr_tail(std::size_t max = 4000) const;

private:
  void read_loop();
  void kill_and_reap();
  void stop_reader(std::chrono::milliseconds bound);

  std::string program_;
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  int wake_rd_ = -1; // tells the reader thread to stop even if a pipe never reaches EOF
  int wake_wr_ = -1;
  std::optional<int> status_; // waitpid() status once reaped

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string out_;
  std::string err_;
  bool reader_done_ = false;
  std::thread reader_;
};

/// A stand-in for systemd's notification socket: an AF_UNIX SOCK_DGRAM socket bound to
/// "<fresh temp dir>/notify" with SO_PASSCRED on, so every datagram carries its sender's pid.
class notify_socket {
public:
  struct datagram {
    std::string text;
    pid_t sender = 0; // from SCM_CREDENTIALS; 0 if none arrived
  };

  notify_socket();
  ~notify_socket();
  notify_socket(const notify_socket&) = delete;
  notify_socket& operator=(const notify_socket&) = delete;

  /// The socket's path, the value for NOTIFY_SOCKET.
  const std::string& path() const { return path_; }

  /// Waits at most `bound` for a datagram containing `needle` that arrived after the one the
  /// previous successful wait_for() matched (so consecutive calls check order: wait_for("A")
  /// then wait_for("B") means a B after an A). Returns false when the bound passes.
  bool wait_for(std::string_view needle, std::chrono::milliseconds bound);

  /// Reads every datagram already queued, without waiting.
  void drain();

  /// Every datagram received so far, in arrival order.
  const std::vector<datagram>& datagrams() const { return received_; }
  /// How many received datagrams contain `needle`.
  std::size_t count(std::string_view needle) const;
  /// All received datagrams, one per line with newlines shown as "\n", for failure messages.
  std::string describe() const;

private:
  /// Reads one datagram if one arrives within `timeout_ms` (0: do not wait). False if none.
  bool receive(int timeout_ms);

  temp_dir dir_;
  std::string path_;
  int fd_ = -1;
  std::vector<datagram> received_;
  std::size_t next_ = 0; // first datagram the next wait_for() looks at
};

} // namespace nodecoord::test
