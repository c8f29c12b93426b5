#include "common/low_priority.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <thread>

namespace nodecoord {

int thread_nice() {
  errno = 0;
  int n = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  return errno == 0 ? n : 0;
}

void run_at_low_priority(int nice_increment, const std::function<void()>& f) {
  int nice = std::min(thread_nice() + std::max(nice_increment, 0), 19);
  std::exception_ptr error;
  std::thread worker([&] {
    setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), nice); // failing leaves the caller's
    try {
      f();
    } catch (...) {
      error = std::current_exception();
    }
  });
  worker.join();
  if (error)
    std::rethrow_exception(error);
}

} // namespace nodecoord
