#pragma once
// Long reads for operators (bundle exports) must not take CPU from the sessions' writes.
#include <functional>

namespace nodecoord {

/// Runs `f` on a thread of its own whose nice value is `nice_increment` above the caller's (at
/// most 19), waits for it and rethrows what it threw. Only that thread is lowered: on Linux a
/// thread's nice value is its own, and the caller's is never touched (raising it back would need
/// CAP_SYS_NICE). If the nice value cannot be set, `f` runs at the caller's priority.
void run_at_low_priority(int nice_increment, const std::function<void()>& f);

/// The calling thread's nice value.
int thread_nice();

} // namespace nodecoord
