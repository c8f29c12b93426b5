#include "common/descriptors.hpp"

#include <sys/resource.h>

#include <algorithm>

namespace nodecoord {

uint64_t sessions_allowed(uint64_t soft, uint64_t max_connections) {
  auto room = soft > descriptor_reserve ? soft - descriptor_reserve : 0;
  return std::min(room, max_connections);
}

descriptor_limits raise_descriptor_limit(uint64_t max_connections) {
  descriptor_limits out;
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) != 0)
    return out;
  out.soft_before = nofile.rlim_cur;
  if (nofile.rlim_cur < nofile.rlim_max) {
    auto raised = nofile;
    raised.rlim_cur = nofile.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
      nofile = raised;
  }
  out.soft = nofile.rlim_cur == RLIM_INFINITY ? UINT64_MAX : nofile.rlim_cur;
  out.hard = nofile.rlim_max == RLIM_INFINITY ? UINT64_MAX : nofile.rlim_max;
  out.sessions = sessions_allowed(out.soft, max_connections);
  return out;
}

} // namespace nodecoord
