#pragma once
// What nodecoord-bench reads about the daemon under test from /proc/PID: resident memory, CPU
// time, thread count and the open-file limit. Every reader returns nullopt if the file cannot be
// read or parsed (the process is gone, or belongs to another user).
#include <cstdint>
#include <optional>
#include <string>

namespace nodecoord::bench {

/// VmRSS from /proc/PID/status, in KiB.
std::optional<uint64_t> read_rss_kib(int pid);

/// Threads from /proc/PID/status.
std::optional<uint64_t> read_threads(int pid);

/// utime + stime from /proc/PID/stat, in seconds.
std::optional<double> read_cpu_seconds(int pid);

/// The soft "Max open files" limit from /proc/PID/limits ("unlimited" is UINT64_MAX).
std::optional<uint64_t> read_nofile_limit(int pid);

/// Number of entries in /proc/PID/fd (open descriptors).
std::optional<uint64_t> count_open_fds(int pid);

/// CPU seconds (user + system) used by this process so far.
double self_cpu_seconds();

} // namespace nodecoord::bench
