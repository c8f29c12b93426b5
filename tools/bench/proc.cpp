#include "tools/bench/proc.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string_view>

namespace nodecoord::bench {

namespace {

std::string proc_path(int pid, const char* file) { return "/proc/" + std::to_string(pid) + "/" + file; }

/// The first number after "Key:" in /proc/PID/status.
std::optional<uint64_t> status_field(int pid, std::string_view key) {
  std::ifstream in(proc_path(pid, "status"));
  if (!in)
    return std::nullopt;
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > key.size() && line.compare(0, key.size(), key) == 0 && line[key.size()] == ':') {
      std::istringstream fields(line.substr(key.size() + 1));
      uint64_t v = 0;
      if (fields >> v)
        return v;
      return std::nullopt;
    }
  }
  return std::nullopt;
}

} // namespace

std::optional<uint64_t> read_rss_kib(int pid) { return status_field(pid, "VmRSS"); }

std::optional<uint64_t> read_threads(int pid) { return status_field(pid, "Threads"); }

std::optional<double> read_cpu_seconds(int pid) {
  std::ifstream in(proc_path(pid, "stat"));
  if (!in)
    return std::nullopt;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name (field 2) is in parentheses and may contain spaces: start after the last ')'.
  auto close = text.rfind(')');
  if (close == std::string::npos)
    return std::nullopt;
  std::istringstream fields(text.substr(close + 1));
  // After ')': field 3 (state) ... field 14 (utime), field 15 (stime).
  std::string skip;
  for (int i = 3; i <= 13; ++i)
    if (!(fields >> skip))
      return std::nullopt;
  unsigned long long utime = 0, stime = 0;
  if (!(fields >> utime >> stime))
    return std::nullopt;
  long ticks = sysconf(_SC_CLK_TCK);
  if (ticks <= 0)
    ticks = 100;
  return static_cast<double>(utime + stime) / static_cast<double>(ticks);
}

std::optional<uint64_t> read_nofile_limit(int pid) {
  std::ifstream in(proc_path(pid, "limits"));
  if (!in)
    return std::nullopt;
  std::string line;
  const std::string_view key = "Max open files";
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) != 0)
      continue;
    std::istringstream fields(line.substr(key.size()));
    std::string soft;
    if (!(fields >> soft))
      return std::nullopt;
    if (soft == "unlimited")
      return std::numeric_limits<uint64_t>::max();
    char* end = nullptr;
    auto v = std::strtoull(soft.c_str(), &end, 10);
    if (end == soft.c_str() || *end != '\0')
      return std::nullopt;
    return v;
  }
  return std::nullopt;
}

std::optional<uint64_t> count_open_fds(int pid) {
  std::error_code ec;
  std::filesystem::directory_iterator it(proc_path(pid, "fd"), ec);
  if (ec)
    return std::nullopt;
  uint64_t n = 0;
  for (auto end = std::filesystem::directory_iterator(); it != end; it.increment(ec)) {
    if (ec)
      return std::nullopt;
    ++n;
  }
  return n;
}

double self_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6; };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

} // namespace nodecoord::bench
