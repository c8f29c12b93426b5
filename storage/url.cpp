#include "storage/url.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <memory>
#include <stdexcept>

namespace nodecoord::storage {

std::string_view to_string(backend b) { return b == backend::sqlite ? "sqlite" : "postgresql"; }

namespace {

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

std::string quote_sqlite_param(const std::string& path) {
  // SOCI's sqlite3 connection string is "key=value ..."; quote paths with spaces.
  if (path.find_first_of(" \t'\"") == std::string::npos)
    return path;
  std::string out = "\"";
  for (char c : path) {
    if (c == '"' || c == '\\')
      out += '\\';
    out += c;
  }
  return out + "\"";
}

} // namespace

std::string storage_url::redacted() const {
  if (kind == backend::sqlite) // show where the file really is
    return sqlite_path == ":memory:" ? original : "sqlite://" + sqlite_path;
  // postgresql://user:secret@host/db -> postgresql://user:***@host/db
  auto scheme_end = original.find("://");
  auto at = original.find('@', scheme_end == std::string::npos ? 0 : scheme_end + 3);
  if (scheme_end == std::string::npos || at == std::string::npos)
    return original;
  auto colon = original.find(':', scheme_end + 3);
  if (colon == std::string::npos || colon > at)
    return original;
  return original.substr(0, colon + 1) + "***" + original.substr(at);
}

storage_url parse_storage_url(std::string_view url, const std::string& state_dir,
                              std::chrono::milliseconds connect_timeout) {
  storage_url out;
  out.original = std::string{url};
  auto timeout_s = std::max<long long>(1, (connect_timeout.count() + 999) / 1000);
  if (url == "sqlite::memory:") {
    out.kind = backend::sqlite;
    out.sqlite_path = ":memory:";
    out.connect_string = "db=:memory:";
    return out;
  }
  if (starts_with(url, "sqlite://")) {
    out.kind = backend::sqlite;
    std::string path{url.substr(9)};
    if (path.empty())
      throw std::invalid_argument(
        "storage.url: sqlite:// needs a file path, e.g. sqlite:///var/lib/nodecoord/nodecoord.db");
    if (path.front() != '/' && !state_dir.empty())
      path = state_dir + (state_dir.back() == '/' ? "" : "/") + path;
    out.sqlite_path = path;
    // timeout: seconds SQLite waits on a lock held by another process (e.g. a backup).
    out.connect_string = "db=" + quote_sqlite_param(path) + " timeout=" + std::to_string(timeout_s);
    return out;
  }
  if (starts_with(url, "postgresql://") || starts_with(url, "postgres://")) {
    out.kind = backend::postgresql;
    auto rest = url.substr(url.find("://") + 3);
    if (rest.empty() || rest.front() == '?')
      throw std::invalid_argument("storage.url: postgresql:// needs at least a host or database");
    // libpq parses the URI (percent-decoding included); SOCI's PostgreSQL backend splits its
    // connection string on spaces itself, so hand it libpq's keyword='value' form instead.
    char* err = nullptr;
    std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)> opts(PQconninfoParse(std::string{url}.c_str(), &err),
                                                                      &PQconninfoFree);
    if (!opts) {
      std::string why = err ? err : "out of memory";
      PQfreemem(err);
      while (!why.empty() && why.back() == '\n')
        why.pop_back();
      throw std::invalid_argument("storage.url: " + why);
    }
    std::string s;
    bool has_timeout = false, has_app = false;
    for (auto* o = opts.get(); o->keyword; ++o) {
      if (!o->val)
        continue;
      std::string key = o->keyword;
      has_timeout |= key == "connect_timeout";
      has_app |= key == "application_name";
      std::string v;
      for (const char* p = o->val; *p; ++p) {
        if (*p == '\'' || *p == '\\')
          v += '\\';
        v += *p;
      }
      s += (s.empty() ? "" : " ") + key + "='" + v + "'";
    }
    if (!has_timeout)
      s += " connect_timeout='" + std::to_string(timeout_s) + "'";
    if (!has_app)
      s += " application_name='nodecoordd'";
    out.connect_string = s;
    return out;
  }
  throw std::invalid_argument("storage.url: unsupported scheme in '" + std::string{url}
                              + "' (expected sqlite://PATH, sqlite::memory: or postgresql://...)");
}

} // namespace nodecoord::storage
