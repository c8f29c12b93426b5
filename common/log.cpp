#include "common/log.hpp"

#include "common/clock.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>

namespace nodecoord::log {

namespace {

std::atomic<level> g_level{level::info};
std::atomic<bool> g_json{false};
std::atomic<bool> g_journal{false};
std::shared_ptr<spdlog::logger> g_logger;

const char* name(level l) {
  switch (l) {
    case level::trace: return "trace";
    case level::debug: return "debug";
    case level::info: return "info";
    case level::warn: return "warn";
    case level::error: return "error";
    case level::off: return "off";
  }
  return "?";
}

int syslog_priority(level l) {
  switch (l) {
    case level::trace:
    case level::debug: return 7;
    case level::info: return 6;
    case level::warn: return 4;
    default: return 3;
  }
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

bool needs_quotes(std::string_view v) {
  if (v.empty())
    return true;
  for (unsigned char c : v)
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f)
      return true;
  return false;
}

bool stderr_is_journal() {
  // systemd sets JOURNAL_STREAM=dev:ino for the stream it connected to stdout/stderr.
  const char* js = std::getenv("JOURNAL_STREAM");
  if (!js)
    return false;
  struct stat st {};
  if (fstat(2, &st) != 0)
    return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2)
    return false;
  return dev == static_cast<unsigned long long>(st.st_dev) && ino == static_cast<unsigned long long>(st.st_ino);
}

} // namespace

field::field(std::string_view k, double v) : key(k), quoted(false) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  value = buf;
}

std::string format_line(level lvl, std::string_view msg, fields fs, bool json, bool journal,
                        std::string_view timestamp) {
  std::string out;
  out.reserve(64 + msg.size() + fs.size() * 24);
  if (json) {
    out += "{\"ts\":";
    append_json_string(out, timestamp);
    out += ",\"level\":\"";
    out += name(lvl);
    out += "\",\"msg\":";
    append_json_string(out, msg);
    for (auto& f : fs) {
      out += ',';
      append_json_string(out, f.key);
      out += ':';
      if (f.quoted)
        append_json_string(out, f.value);
      else
        out += f.value;
    }
    out += '}';
    return out;
  }
  if (journal) {
    out += '<';
    out += static_cast<char>('0' + syslog_priority(lvl));
    out += '>';
  } else {
    out += timestamp;
    out += ' ';
    out += name(lvl);
    out += ' ';
  }
  out += msg;
  for (auto& f : fs) {
    out += ' ';
    out += f.key;
    out += '=';
    if (f.quoted && needs_quotes(f.value))
      append_json_string(out, f.value);
    else
      out += f.value;
  }
  return out;
}

void init(level lvl, bool json) {
  g_level = lvl;
  g_json = json;
  g_journal = !json && stderr_is_journal();
  if (!g_logger) {
    g_logger = spdlog::stderr_logger_mt("nodecoord");
    g_logger->set_pattern("%v"); // we format the whole line ourselves
    g_logger->set_level(spdlog::level::trace);
    g_logger->flush_on(spdlog::level::trace);
  }
}

void set_level(level lvl) { g_level = lvl; }

level current_level() { return g_level; }

bool enabled(level lvl) { return lvl >= g_level.load(std::memory_order_relaxed); }

bool parse_level(std::string_view s, level& out) {
  for (auto l : {level::trace, level::debug, level::info, level::warn, level::error})
    if (s == name(l)) {
      out = l;
      return true;
    }
  return false;
}

void write(level lvl, std::string_view msg, fields fs) {
  auto line = format_line(lvl, msg, fs, g_json, g_journal, format_time(system_now()));
  if (g_logger)
    g_logger->info(line);
  else
    std::fprintf(stderr, "%s\n", line.c_str());
}

} // namespace nodecoord::log
