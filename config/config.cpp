#include "config/config.hpp"

#include "config/defaults.hpp"
#include "config/duration.hpp"
#include "config/endpoint.hpp"
#include "config/toml_guard.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>

namespace nodecoord::config {

namespace {

using namespace std::chrono_literals;

// Longer durations are refused: timers are computed in nanoseconds on the steady clock, and no
// setting of nodecoordd makes sense beyond a year.
constexpr duration max_duration = std::chrono::hours{24 * 365};

constexpr std::string_view endpoint_example = "\"127.0.0.1:7400\" or \"[::1]:7400\"";

std::string quote(std::string_view s) { return "\"" + std::string{s} + "\""; }

std::string_view type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::table: return "table";
    case toml::node_type::array: return "array";
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    case toml::node_type::none: break;
  }
  return "nothing";
}

// --- enums -------------------------------------------------------------------------------------

constexpr std::array<std::pair<std::string_view, log_level>, 5> log_levels{{
  {"trace", log_level::trace},
  {"debug", log_level::debug},
  {"info", log_level::info},
  {"warn", log_level::warn},
  {"error", log_level::error},
}};

constexpr std::array<std::pair<std::string_view, log_format>, 2> log_formats{{
  {"text", log_format::text},
  {"json", log_format::json},
}};

template <class Enum, size_t N>
std::optional<Enum> lookup(const std::array<std::pair<std::string_view, Enum>, N>& table, std::string_view name) {
  for (const auto& [text, value] : table)
    if (text == name)
      return value;
  return std::nullopt;
}

template <class Enum, size_t N>
std::string names_of(const std::array<std::pair<std::string_view, Enum>, N>& table) {
  std::string out;
  for (const auto& entry : table) {
    if (!out.empty())
      out += ", ";
    out += entry.first;
  }
  return out;
}

// --- suggestions -------------------------------------------------------------------------------

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions), case-insensitive.
size_t edit_distance(std::string_view a, std::string_view b) {
  auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i)
    d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j)
    d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1]))
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// --- the schema and the loader -----------------------------------------------------------------

class loader;

struct key_spec {
  std::string_view name;
  // Reads and checks one value; returns false after reporting an error (the field keeps its default).
  std::function<bool(loader&, const toml::node&, const std::string& dotted)> read;
};

struct table_spec {
  std::string_view name;
  std::vector<key_spec> keys;
};

class loader {
public:
  loader(std::string file, daemon_config& cfg) : file_(std::move(file)), cfg_(cfg) {}

  std::vector<config_error> run(const toml::table& root) {
    const auto schema = make_schema();
    for (auto&& [tkey, tnode] : root) {
      const std::string tname{tkey.str()};
      if (tname == "checks") {
        read_checks(tnode);
        continue;
      }
      auto spec = std::find_if(schema.begin(), schema.end(), [&](const table_spec& s) { return s.name == tname; });
      if (spec == schema.end()) {
        unknown_key(tkey, tnode, schema, nullptr);
        continue;
      }
      const toml::table* tbl = tnode.as_table();
      if (!tbl) {
        error(tnode.source(), tname,
              "expected a table ([" + tname + "]), got " + std::string{type_name(tnode.type())}
                + (tnode.is_array_of_tables() ? " of tables; write [" + tname + "], not [[" + tname + "]]" : ""));
        continue;
      }
      for (auto&& [vkey, vnode] : *tbl) {
        std::string dotted = tname + "." + std::string{vkey.str()};
        // A copy: clang before 16 cannot capture a structured binding in a lambda.
        std::string_view vname = vkey.str();
        auto field =
          std::find_if(spec->keys.begin(), spec->keys.end(), [&](const key_spec& k) { return k.name == vname; });
        if (field == spec->keys.end()) {
          unknown_key(vkey, vnode, schema, &*spec);
          continue;
        }
        seen_[dotted] = seen{vnode.source(), true};
        if (!field->read(*this, vnode, dotted))
          seen_[dotted].ok = false;
      }
    }
    cross_checks();
    std::stable_sort(errors_.begin(), errors_.end(), [](const config_error& a, const config_error& b) {
      return a.line != b.line ? a.line < b.line : a.column < b.column;
    });
    return std::move(errors_);
  }

  // --- value readers (used by the schema) ---

  template <class T>
  bool integer(const toml::node& n, const std::string& key, T& out, int64_t min) {
    const auto* v = n.as_integer();
    if (!v)
      return type_error(n, key, "an integer");
    int64_t value = v->get();
    constexpr uint64_t type_max = std::numeric_limits<T>::max();
    const int64_t max = type_max > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
                          ? std::numeric_limits<int64_t>::max()
                          : static_cast<int64_t>(type_max);
    if (value < min)
      return error(n.source(), key,
                   "out of range: must be at least " + std::to_string(min) + " (got " + std::to_string(value) + ")");
    if (value > max)
      return error(n.source(), key,
                   "out of range: must be at most " + std::to_string(max) + " (got " + std::to_string(value) + ")");
    out = static_cast<T>(value);
    return true;
  }

  bool time(const toml::node& n, const std::string& key, duration& out) {
    const auto* v = n.as_string();
    if (!v)
      return type_error(n, key, "a string like \"10s\"");
    std::string why;
    auto d = parse_duration(v->get(), &why);
    if (!d)
      return error(n.source(), key, "invalid duration " + quote(v->get()) + ": " + why);
    if (*d <= duration::zero())
      return error(n.source(), key, "out of range: must be greater than 0 (got " + quote(v->get()) + ")");
    if (*d > max_duration)
      return error(n.source(), key,
                   "out of range: must be at most " + format_duration(max_duration) + " (got " + quote(v->get()) + ")");
    out = *d;
    return true;
  }

  bool address(const toml::node& n, const std::string& key, endpoint& out) {
    const auto* v = n.as_string();
    if (!v)
      return type_error(n, key, "a string like " + std::string{endpoint_example});
    std::string why;
    auto ep = parse_endpoint(v->get(), why);
    if (!ep)
      return error(n.source(), key, why);
    out = std::move(*ep);
    return true;
  }

  bool host_list(const toml::node& n, const std::string& key, std::vector<std::string>& out) {
    const auto* arr = n.as_array();
    if (!arr)
      return type_error(n, key, "an array of host names like [\"coord.example.org\"]");
    std::vector<std::string> names;
    bool ok = true;
    for (size_t i = 0; i < arr->size(); ++i) {
      const auto& item = *arr->get(i);
      const auto* v = item.as_string();
      std::string why;
      if (!v) {
        ok = type_error(item, key + "[" + std::to_string(i) + "]", "a string");
        continue;
      }
      if (!valid_host_name(v->get(), why)) {
        ok = error(item.source(), key + "[" + std::to_string(i) + "]", quote(v->get()) + " " + why);
        continue;
      }
      std::string name = v->get();
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
      if (std::find(names.begin(), names.end(), name) == names.end())
        names.push_back(std::move(name));
    }
    if (ok)
      out = std::move(names);
    return ok;
  }

  bool boolean(const toml::node& n, const std::string& key, bool& out) {
    const auto* v = n.as_boolean();
    if (!v)
      return type_error(n, key, "true or false");
    out = v->get();
    return true;
  }

  bool one_of(const toml::node& n, const std::string& key, const std::vector<std::string>& allowed,
              std::string_view what, std::string& out) {
    std::string list;
    for (auto& a : allowed)
      list += (list.empty() ? "" : ", ") + quote(a);
    const auto* v = n.as_string();
    if (!v)
      return type_error(n, key, "a string (one of " + list + ")");
    if (std::find(allowed.begin(), allowed.end(), v->get()) == allowed.end())
      return error(n.source(), key,
                   "invalid " + std::string{what} + " " + quote(v->get()) + "; expected one of " + list);
    out = v->get();
    return true;
  }

  /// A table inside a table ([server.tls]): its keys read like a table's, unknown ones refused.
  bool subtable(const toml::node& n, const std::string& key, std::vector<key_spec> keys) {
    const auto* tbl = n.as_table();
    if (!tbl)
      return type_error(n, key, "a table ([" + key + "])");
    const std::vector<table_spec> specs{{key, std::move(keys)}};
    bool ok = true;
    for (auto&& [vkey, vnode] : *tbl) {
      std::string dotted = key + "." + std::string{vkey.str()};
      std::string_view vname = vkey.str();
      const auto& fields = specs.front().keys;
      auto field = std::find_if(fields.begin(), fields.end(), [&](const key_spec& f) { return f.name == vname; });
      if (field == fields.end()) {
        unknown_key(vkey, vnode, specs, &specs.front());
        ok = false;
        continue;
      }
      seen_[dotted] = seen{vnode.source(), true};
      if (!field->read(*this, vnode, dotted)) {
        seen_[dotted].ok = false;
        ok = false;
      }
    }
    return ok;
  }

  /// [checks.NAME] tables: argv (required), timeout, output_max.
  void read_checks(const toml::node& n) {
    const auto* tbl = n.as_table();
    if (!tbl) {
      type_error(n, "checks", "a table of checks ([checks.NAME])");
      return;
    }
    for (auto&& [ckey, cnode] : *tbl) {
      check_definition d;
      d.name = std::string{ckey.str()};
      d.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(defaults::check_timeout);
      d.output_max = defaults::check_output_max;
      std::string key = "checks." + d.name;
      if (!valid_check_name(d.name)) {
        error(cnode.source(), key, "invalid check name: 1 to 64 letters, digits and - _ .");
        continue;
      }
      duration timeout{d.timeout};
      using L = loader;
      using N = toml::node;
      using K = std::string;
      bool ok =
        subtable(cnode, key,
                 {
                   {"argv", [&d](L& l, const N& v, const K& k) { return l.argv(v, k, d.argv); }},
                   {"timeout", [&timeout](L& l, const N& v, const K& k) { return l.time(v, k, timeout); }},
                   {"output_max", [&d](L& l, const N& v, const K& k) { return l.integer(v, k, d.output_max, 0); }},
                 });
      if (!ok)
        continue;
      d.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
      if (d.argv.empty()) {
        error(cnode.source(), key + ".argv", "missing: a check names the program to run, e.g. argv = [\"df\", \"-h\"]");
        continue;
      }
      if (d.timeout <= std::chrono::milliseconds(0) || d.timeout > defaults::check_timeout_max) {
        error(cnode.source(), key + ".timeout",
              "out of range: from 1ms to " + format_duration(defaults::check_timeout_max) + " (got "
                + format_duration(timeout) + ")");
        continue;
      }
      if (d.output_max > defaults::check_output_max_hard) {
        error(cnode.source(), key + ".output_max",
              "out of range: at most " + std::to_string(defaults::check_output_max_hard)
                + " bytes (one frame carries it)" + " (got " + std::to_string(d.output_max) + ")");
        continue;
      }
      cfg_.checks.push_back(std::move(d));
    }
  }

  /// A program and its arguments: a non-empty list of strings, the first not empty.
  bool argv(const toml::node& n, const std::string& key, std::vector<std::string>& out) {
    const auto* arr = n.as_array();
    if (!arr || arr->empty())
      return type_error(n, key, "a non-empty list of strings such as [\"df\", \"-h\", \"/\"]");
    std::vector<std::string> v;
    for (size_t i = 0; i < arr->size(); ++i) {
      const auto* s = (*arr)[i].as_string();
      if (!s)
        return type_error((*arr)[i], key + "[" + std::to_string(i) + "]", "a string");
      v.push_back(s->get());
    }
    if (v.front().empty())
      return error(n.source(), key, "the program (the first element) must not be empty");
    out = std::move(v);
    return true;
  }

  bool text(const toml::node& n, const std::string& key, std::string& out) {
    const auto* v = n.as_string();
    if (!v)
      return type_error(n, key, "a string");
    out = v->get();
    return true;
  }

  bool storage_url(const toml::node& n, const std::string& key, std::string& out) {
    const auto* v = n.as_string();
    if (!v)
      return type_error(n, key, "a string like \"sqlite://nodecoord.db\"");
    const std::string& url = v->get();
    const std::string expected =
      "expected \"sqlite://PATH\", \"sqlite::memory:\", \"postgresql://...\" or \"postgres://...\"";
    auto starts = [&](std::string_view prefix) { return url.compare(0, prefix.size(), prefix) == 0; };
    if (url == "sqlite::memory:" || starts("postgresql://") || starts("postgres://")) {
      out = url;
      return true;
    }
    if (starts("sqlite://")) {
      if (url.size() == std::string_view{"sqlite://"}.size())
        return error(n.source(), key, "missing database path after \"sqlite://\"; " + expected);
      out = url;
      return true;
    }
    // The URL itself is not echoed: a mistyped PostgreSQL URL may carry a password.
    auto scheme_end = url.find("://");
    if (scheme_end != std::string::npos && scheme_end > 0 && scheme_end <= 32)
      return error(n.source(), key,
                   "unsupported storage URL scheme " + quote(url.substr(0, scheme_end)) + "; " + expected);
    return error(n.source(), key, "unsupported storage URL; " + expected);
  }

  template <class Enum, size_t N>
  bool choice(const toml::node& n, const std::string& key,
              const std::array<std::pair<std::string_view, Enum>, N>& table, std::string_view what, Enum& out) {
    const auto* v = n.as_string();
    if (!v)
      return type_error(n, key, "a string (one of " + names_of(table) + ")");
    auto value = lookup(table, v->get());
    if (!value)
      return error(n.source(), key,
                   "invalid " + std::string{what} + " " + quote(v->get()) + "; expected one of " + names_of(table));
    out = *value;
    return true;
  }

private:
  struct seen {
    toml::source_region where;
    bool ok = true;
  };

  /// The keys of a [*.tls] table; `required` only where plain and TLS share a port.
  static std::vector<key_spec> tls_keys(tls_config& t, bool with_required) {
    using L = loader;
    using N = toml::node;
    using K = std::string;
    std::vector<key_spec> keys{
      {"cert_file", [&t](L& l, const N& n, const K& k) { return l.text(n, k, t.cert_file); }},
      {"key_file", [&t](L& l, const N& n, const K& k) { return l.text(n, k, t.key_file); }},
      {"client_ca_file", [&t](L& l, const N& n, const K& k) { return l.text(n, k, t.client_ca_file); }},
      {"min_version",
       [&t](L& l, const N& n, const K& k) {
         return l.one_of(n, k, {"1.2", "1.3"}, "TLS version", t.min_version);
       }},
    };
    if (with_required)
      keys.push_back({"required", [&t](L& l, const N& n, const K& k) { return l.boolean(n, k, t.required); }});
    return keys;
  }

  std::vector<table_spec> make_schema() {
    auto& c = cfg_;
    using L = loader;
    using N = toml::node;
    using K = std::string;
    return {
      {"server",
       {
         {"listen", [&c](L& l, const N& n, const K& k) { return l.address(n, k, c.server.listen); }},
         {"max_connections",
          [&c](L& l, const N& n, const K& k) { return l.integer(n, k, c.server.max_connections, 1); }},
         {"max_handshakes", [&c](L& l, const N& n, const K& k) { return l.integer(n, k, c.server.max_handshakes, 1); }},
         {"max_frame_bytes",
          [&c](L& l, const N& n, const K& k) { return l.integer(n, k, c.server.max_frame_bytes, 1024); }},
         {"max_outbound_bytes",
          [&c](L& l, const N& n, const K& k) { return l.integer(n, k, c.server.max_outbound_bytes, 1024); }},
         {"hello_timeout", [&c](L& l, const N& n, const K& k) { return l.time(n, k, c.server.hello_timeout); }},
         {"heartbeat_interval",
          [&c](L& l, const N& n, const K& k) { return l.time(n, k, c.server.heartbeat_interval); }},
         {"idle_timeout", [&c](L& l, const N& n, const K& k) { return l.time(n, k, c.server.idle_timeout); }},
         {"max_protocol_errors",
          [&c](L& l, const N& n, const K& k) { return l.integer(n, k, c.server.max_protocol_errors, 1); }},
         {"shutdown_timeout", [&c](L& l, const N& n, const K& k) { return l.time(n, k, c.server.shutdown_timeout); }},
         {"instance_id", [&c](L& l, const N& n, const K& k) { return l.text(n, k, c.server.instance_id); }},
         {"lease_interval", [&c](L& l, const N& n, const K& k) { return l.time(n, k, c.server.lease_interval); }},
         {"lease_expiry", [&c](L& l, const N& n, const K& k) { return l.time(n, k, c.server.lease_expiry); }},
         {"tls", [&c](L& l, const N& n, const K& k) { return l.subtable(n, k, tls_keys(c.server.tls, true)); }},
       }},
      {"storage",
       {
         {"url", [&c](L& l, const N& n, const K& k) { return l.storage_url(n, k, c.storage.url); }},
         {"batch_max", [&c](L& l, const N& n, const K& k) { return l.integer(n, k, c.storage.batch_max, 1); }},
         {"max_queued_bytes",
          [&c](L& l, const N& n, const K& k) { return l.integer(n, k, c.storage.max_queued_bytes, 1024); }},
         {"max_queued_frames",
          [&c](L& l, const N& n, const K& k) { return l.integer(n, k, c.storage.max_queued_frames, 1); }},
         {"connect_timeout", [&c](L& l, const N& n, const K& k) { return l.time(n, k, c.storage.connect_timeout); }},
         {"reconnect_initial",
          [&c](L& l, const N& n, const K& k) { return l.time(n, k, c.storage.reconnect_initial); }},
         {"reconnect_max", [&c](L& l, const N& n, const K& k) { return l.time(n, k, c.storage.reconnect_max); }},
       }},
      {"backfill",
       {
         {"reconcile_interval",
          [&c](L& l, const N& n, const K& k) { return l.time(n, k, c.backfill.reconcile_interval); }},
         {"batch_size", [&c](L& l, const N& n, const K& k) { return l.integer(n, k, c.backfill.batch_size, 1); }},
         {"request_timeout", [&c](L& l, const N& n, const K& k) { return l.time(n, k, c.backfill.request_timeout); }},
         {"max_failures", [&c](L& l, const N& n, const K& k) { return l.integer(n, k, c.backfill.max_failures, 1); }},
         {"reconnect_rate",
          [&c](L& l, const N& n, const K& k) { return l.integer(n, k, c.backfill.reconnect_rate, 1); }},
         {"max_inflight_per_node",
          [&c](L& l, const N& n, const K& k) { return l.integer(n, k, c.backfill.max_inflight_per_node, 1); }},
       }},
      {"admin",
       {
         {"listen", [&c](L& l, const N& n, const K& k) { return l.address(n, k, c.admin.listen); }},
         {"token_file", [&c](L& l, const N& n, const K& k) { return l.text(n, k, c.admin.token_file); }},
         {"max_body_bytes",
          [&c](L& l, const N& n, const K& k) { return l.integer(n, k, c.admin.max_body_bytes, 1024); }},
         {"max_rows_per_action",
          [&c](L& l, const N& n, const K& k) { return l.integer(n, k, c.admin.max_rows_per_action, 1); }},
         {"max_rows_per_action_hard",
          [&c](L& l, const N& n, const K& k) { return l.integer(n, k, c.admin.max_rows_per_action_hard, 1); }},
         {"allowed_hosts", [&c](L& l, const N& n, const K& k) { return l.host_list(n, k, c.admin.allowed_hosts); }},
         {"tls", [&c](L& l, const N& n, const K& k) { return l.subtable(n, k, tls_keys(c.admin.tls, false)); }},
       }},
      {"log",
       {
         {"level", [&c](L& l, const N& n, const K& k) { return l.choice(n, k, log_levels, "log level", c.log.level); }},
         {"format",
          [&c](L& l, const N& n, const K& k) { return l.choice(n, k, log_formats, "log format", c.log.format); }},
       }},
    };
  }

  bool error(const toml::source_region& where, std::string key, std::string message) {
    errors_.push_back(config_error{file_, where.begin.line, where.begin.column, std::move(key), std::move(message)});
    return false;
  }

  bool type_error(const toml::node& n, const std::string& key, const std::string& expected) {
    return error(n.source(), key, "expected " + expected + ", got " + std::string{type_name(n.type())});
  }

  /// An unknown key: in `table`, or at the top level when `table` is null.
  void unknown_key(const toml::key& k, const toml::node& value, const std::vector<table_spec>& schema,
                   const table_spec* table) {
    const std::string name{k.str()};
    std::string dotted = table ? std::string{table->name} + "." + name : name;
    std::vector<std::string> candidates;
    if (table) {
      for (const auto& field : table->keys)
        candidates.emplace_back(field.name);
    } else {
      for (const auto& spec : schema)
        candidates.emplace_back(spec.name);
    }
    // A near miss in the same table ...
    std::vector<std::string> suggestions;
    size_t best = 3;
    for (const auto& candidate : candidates) {
      size_t d = edit_distance(name, candidate);
      if (d < best) {
        best = d;
        suggestions = {candidate};
      }
    }
    // ... or the right key in the wrong table.
    if (suggestions.empty()) {
      for (const auto& spec : schema) {
        if (&spec == table)
          continue;
        for (const auto& field : spec.keys)
          if (field.name == name)
            suggestions.push_back(std::string{spec.name} + "." + name);
      }
    }
    std::string message = "unknown key '" + name + "'";
    if (table)
      message += " in [" + std::string{table->name} + "]";
    if (!suggestions.empty()) {
      message += " (did you mean ";
      for (size_t i = 0; i < suggestions.size(); ++i)
        message += (i == 0 ? "" : " or ") + ("'" + suggestions[i] + "'");
      message += "?)";
    }
    toml::source_region where = k.source();
    if (where.begin.line == 0)
      where = value.source();
    error(where, std::move(dotted), std::move(message));
  }

  /// A rule between two keys. Reported at `primary` when the file sets it, else at `other`; nothing
  /// when either key already had an error of its own.
  void relation(bool holds, const std::string& primary, const std::string& primary_message, const std::string& other,
                const std::string& other_message) {
    if (holds)
      return;
    auto p = seen_.find(primary);
    auto o = seen_.find(other);
    if ((p != seen_.end() && !p->second.ok) || (o != seen_.end() && !o->second.ok))
      return;
    if (p != seen_.end())
      error(p->second.where, primary, primary_message);
    else if (o != seen_.end())
      error(o->second.where, other, other_message);
    else
      error(toml::source_region{}, primary, primary_message); // only if the defaults themselves conflict
  }

  void tls_checks(const tls_config& t, const std::string& p) {
    relation(t.cert_file.empty() == t.key_file.empty(), p + (t.cert_file.empty() ? "key_file" : "cert_file"),
             "is set, so " + p + (t.cert_file.empty() ? "cert_file" : "key_file") + " must be set too",
             p + (t.cert_file.empty() ? "cert_file" : "key_file"),
             "must be set because " + p + (t.cert_file.empty() ? "key_file" : "cert_file") + " is");
    relation(t.client_ca_file.empty() || t.enabled(), p + "client_ca_file",
             "needs " + p + "cert_file and key_file (mutual TLS is TLS first)", p + "cert_file",
             "must be set because " + p + "client_ca_file is");
  }

  void cross_checks() {
    const auto& s = cfg_.server;
    relation(s.max_outbound_bytes >= s.max_frame_bytes, "server.max_outbound_bytes",
             "out of range: must be at least server.max_frame_bytes = " + std::to_string(s.max_frame_bytes) + " (got "
               + std::to_string(s.max_outbound_bytes) + ")",
             "server.max_frame_bytes",
             "out of range: must be at most server.max_outbound_bytes = " + std::to_string(s.max_outbound_bytes)
               + " (got " + std::to_string(s.max_frame_bytes) + ")");
    relation(s.idle_timeout > s.heartbeat_interval, "server.idle_timeout",
             "out of range: must be greater than server.heartbeat_interval = " + format_duration(s.heartbeat_interval)
               + " (got " + format_duration(s.idle_timeout) + ")",
             "server.heartbeat_interval",
             "out of range: must be less than server.idle_timeout = " + format_duration(s.idle_timeout) + " (got "
               + format_duration(s.heartbeat_interval) + ")");
    relation(s.lease_expiry >= 2 * s.lease_interval, "server.lease_expiry",
             "out of range: must be at least twice server.lease_interval = " + format_duration(s.lease_interval)
               + " (got " + format_duration(s.lease_expiry) + "), or one late renewal loses the lease",
             "server.lease_interval",
             "out of range: must be at most half of server.lease_expiry = " + format_duration(s.lease_expiry) + " (got "
               + format_duration(s.lease_interval) + ")");
    bool id_ok =
      s.instance_id.size() <= 128 && std::all_of(s.instance_id.begin(), s.instance_id.end(), [](char ch) {
        return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.' || ch == ':';
      });
    relation(id_ok, "server.instance_id",
             "invalid: at most 128 letters, digits and - _ . : (it names this instance in the shared database)", "",
             "");
    tls_checks(s.tls, "server.tls.");
    tls_checks(cfg_.admin.tls, "admin.tls.");
    const auto& st = cfg_.storage;
    relation(st.reconnect_initial <= st.reconnect_max, "storage.reconnect_initial",
             "out of range: must not exceed storage.reconnect_max = " + format_duration(st.reconnect_max) + " (got "
               + format_duration(st.reconnect_initial) + ")",
             "storage.reconnect_max",
             "out of range: must be at least storage.reconnect_initial = " + format_duration(st.reconnect_initial)
               + " (got " + format_duration(st.reconnect_max) + ")");
    const auto& a = cfg_.admin;
    relation(a.max_rows_per_action <= a.max_rows_per_action_hard, "admin.max_rows_per_action",
             "out of range: must not exceed admin.max_rows_per_action_hard = "
               + std::to_string(a.max_rows_per_action_hard) + " (got " + std::to_string(a.max_rows_per_action) + ")",
             "admin.max_rows_per_action_hard",
             "out of range: must be at least admin.max_rows_per_action = " + std::to_string(a.max_rows_per_action)
               + " (got " + std::to_string(a.max_rows_per_action_hard) + ")");
    relation(!a.token_file.empty() || is_loopback(a.listen), "admin.listen",
             quote(a.listen.to_string())
               + " is not a loopback address, so admin.token_file must be set (the admin API then requires a "
                 "bearer token)",
             "admin.token_file",
             "must be set because admin.listen = " + quote(a.listen.to_string()) + " is not a loopback address");
  }

  std::string file_;
  daemon_config& cfg_;
  std::map<std::string, seen> seen_; // every known key the file sets: where its value is, whether it was valid
  std::vector<config_error> errors_;
};

} // namespace

// --- public API --------------------------------------------------------------------------------

std::string_view to_string(log_level level) {
  for (const auto& [text, value] : log_levels)
    if (value == level)
      return text;
  return "unknown";
}

std::string_view to_string(log_format format) {
  for (const auto& [text, value] : log_formats)
    if (value == format)
      return text;
  return "unknown";
}

load_result load_string(std::string_view text, std::string_view name) {
  load_result result{default_config(), {}};
  auto guarded = guard_toml_text(text);
  if (guarded.line != 0) {
    result.errors.push_back(config_error{std::string{name}, guarded.line, guarded.column, {}, guarded.message});
    return result;
  }
  toml::table root;
  try {
    root = toml::parse(guarded.text, name);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    result.errors.push_back(
      config_error{std::string{name}, where.line, where.column, {}, std::string{e.description()}});
    return result;
  }
  result.errors = loader{std::string{name}, result.config}.run(root);
  return result;
}

} // namespace nodecoord::config
