#include "faults/recorder.hpp"

#include "tools/agent/store.hpp"

#include <chrono>
#include <vector>

namespace nodecoord::faults {

namespace {

using steady = std::chrono::steady_clock;

struct open_attempt {
  std::string id;
  std::string state;                // queued | running
  steady::time_point quiet_until{}; // a long step without output (a compile, a download)
};

/// A log line: mostly ASCII text of varied length, sometimes empty, non-ASCII UTF-8, JSON
/// specials (quotes, backslashes, tabs) or long.
std::string random_line(std::mt19937_64& rng, int64_t n) {
  auto pick = [&](int k) { return static_cast<int>(std::uniform_int_distribution<int>(0, k - 1)(rng)); };
  switch (pick(20)) {
    case 0: return "";
    case 1: return "d\xc3\xa9j\xc3\xa0 vu \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e " + std::to_string(n);
    case 2: return "\xf0\x9f\x9a\x80 launch " + std::to_string(n) + " \xf0\x9f\x94\xa5";
    case 3: return "path \"C:\\\\build\\\\" + std::to_string(n) + "\"\tstatus\t{\"ok\":true}";
    case 4: return std::string(static_cast<size_t>(200 + pick(1800)), static_cast<char>('a' + pick(26)));
    default: break;
  }
  static const char* words[] = {"compiling",    "linking", "test",     "passed", "warning:", "error:", "ok",
                                "src/main.cpp", "[ 42%]",  "Building", "CXX",    "object",   "done",   "retry"};
  std::string s = "#" + std::to_string(n);
  for (int w = pick(12); w >= 0; --w)
    s += std::string(" ") + words[pick(static_cast<int>(std::size(words)))];
  return s;
}

std::string exit_meta(int code, std::mt19937_64& rng) {
  return "{\"exit_code\":" + std::to_string(code) + ",\"host\":\"h-" + std::to_string(rng() % 97) + "\"}";
}

} // namespace

recorder::recorder(recorder_options o) : opts_(std::move(o)) {
  thread_ = std::thread([this] { loop(); });
}

recorder::~recorder() {
  abort_ = true;
  thread_.join();
}

std::string recorder::error() const {
  std::lock_guard lock(mu_);
  return error_;
}

void recorder::loop() {
  std::mt19937_64 rng(opts_.seed);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::vector<open_attempt> open;
  int64_t task_no = 0;
  int64_t line_no = 0;
  try {
    agent::store st(opts_.store_path);
    int target_open = uniform(1, 4);
    auto finish_one = [&](size_t i) {
      static const char* finals[] = {"succeeded", "failed", "cancelled"};
      int f = uniform(0, 9) < 6 ? 0 : uniform(1, 2); // mostly successes
      int code = f == 0 ? 0 : uniform(1, 255);
      if (open[i].state == "running" && uniform(0, 1))
        st.append_logs(open[i].id, "system", {"exit code " + std::to_string(code)});
      st.set_state(open[i].id, finals[f], exit_meta(code, rng));
      open.erase(open.begin() + static_cast<long>(i));
    };
    while (!abort_) {
      if (finish_) {
        while (!open.empty())
          finish_one(open.size() - 1);
        break;
      }
      if (static_cast<int>(open.size()) < target_open) {
        // A task gets a second attempt now and then: same task id, another attempt id.
        auto task = opts_.tag + "-task-" + std::to_string(uniform(0, 4) == 0 && task_no > 0 ? task_no - 1 : task_no++);
        bool queued = uniform(0, 2) == 0;
        auto meta = uniform(0, 1) ? std::string("{\"runner\":\"") + opts_.tag + "\",\"try\":1}" : std::string();
        open.push_back({st.start_attempt(task, queued ? "queued" : "running", meta), queued ? "queued" : "running"});
        ++attempts_;
        if (uniform(0, 3) == 0)
          target_open = uniform(1, 4);
      } else {
        auto now = steady::now();
        std::vector<size_t> awake;
        for (size_t k = 0; k < open.size(); ++k)
          if (open[k].quiet_until <= now)
            awake.push_back(k);
        if (awake.empty()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(uniform(10, 200))); // the schedule itself
          continue;
        }
        auto i = awake[static_cast<size_t>(uniform(0, static_cast<int>(awake.size()) - 1))];
        auto& a = open[i];
        int r = uniform(0, 99);
        if (a.state == "queued") {
          if (r < 70) {
            st.set_state(a.id, "running");
            a.state = "running";
          } else if (r < 75) {
            finish_one(i); // cancelled (or failed) before it ran
          }
        } else if (r < 65) {
          // A burst: 1..burst_max lines in 1–3 runs of one stream each (one transaction per run).
          int total = uniform(1, opts_.burst_max);
          int runs = uniform(1, 3);
          for (int run = 1; run <= runs && total > 0; ++run) {
            int n = run == runs ? total : uniform(1, total);
            static const char* streams[] = {"stdout", "stdout", "stderr", "system"};
            std::vector<std::string> lines;
            lines.reserve(static_cast<size_t>(n));
            for (int k = 0; k < n; ++k)
              lines.push_back(random_line(rng, line_no++));
            st.append_logs(a.id, streams[uniform(0, 3)], lines);
            lines_ += n;
            total -= n;
          }
          if (uniform(0, 9) == 0) // then nothing for a while: the coordinator may complete it meanwhile
            a.quiet_until = steady::now() + std::chrono::milliseconds(uniform(1000, 6000));
        } else if (r < 73) {
          st.set_state(a.id, "running", "{\"progress\":" + std::to_string(uniform(1, 99)) + ",\"try\":1}");
        } else {
          finish_one(i);
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(uniform(10, 200))); // the schedule itself
    }
  } catch (const std::exception& e) {
    std::lock_guard lock(mu_);
    error_ = opts_.tag + ": " + e.what();
  }
  done_ = true;
}

} // namespace nodecoord::faults
