// libFuzzer target: the bundle parser (storage::bundle::parse, storage/bundle.hpp), the part of
// POST /api/bundle that runs before any SQL. No database.
//
// A bundle that parses is exported again with the export's own line functions (manifest_line,
// line(record)); that text must parse, to the same records (compared through their lines), with
// the same line numbers: an export must always be importable. A refused bundle's error must name
// a line of the input ("line N: ..." with 1 <= N <= lines + 1).
#include "fuzz/check.hpp"
#include "storage/bundle.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace nodecoord::storage;

namespace {

using nodecoord::fuzz::check;
using nodecoord::fuzz::fail;

/// The export of a parsed bundle, in the order write_all uses, and the lines of each kind.
struct exported {
  std::string text;
  std::vector<std::string> lines;
};

exported export_of(const bundle::parsed& b) {
  exported out;
  auto add = [&](std::string line) {
    check(line.find('\n') == std::string::npos, "an exported line holds a newline", line);
    out.text += line;
    out.text += '\n';
    out.lines.push_back(std::move(line));
  };
  bundle::counts n{static_cast<int64_t>(b.nodes.size()), static_cast<int64_t>(b.attempts.size()),
                   static_cast<int64_t>(b.logs.size()), static_cast<int64_t>(b.jobs.size()),
                   static_cast<int64_t>(b.audit.size())};
  check(n == b.header.declared, "parse accepted counts that differ from the lines");
  add(bundle::manifest_line(n, b.header.created_at));
  for (auto& r : b.nodes)
    add(bundle::line(r.record));
  for (auto& r : b.attempts)
    add(bundle::line(r.record));
  for (auto& r : b.logs)
    add(bundle::line(r.record));
  for (auto& r : b.jobs)
    add(bundle::line(r.record));
  for (auto& r : b.audit)
    add(bundle::line(r.record));
  return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::variant<bundle::parsed, bundle::parse_error> result;
  // Nothing may escape parse() (finding 1, fixed: "1e400" threw out_of_range 406).
  result = bundle::parse(text);
  if (auto* err = std::get_if<bundle::parse_error>(&result)) {
    size_t lines = 0;
    for (char c : text)
      lines += c == '\n';
    check(err->line >= 1 && err->line <= lines + 1, "parse_error names no line of the input", err->message);
    auto prefix = "line " + std::to_string(err->line) + ": ";
    check(err->message.rfind(prefix, 0) == 0, "parse_error message does not start with its line", err->message);
    return 0;
  }
  auto& first = std::get<bundle::parsed>(result);
  for (auto& r : first.logs)
    check(r.record.entry.seq >= 0, "negative log seq accepted");
  auto once = export_of(first);
  decltype(result) again;
  try {
    again = bundle::parse(once.text);
  } catch (const std::exception& e) {
    fail("the export of a parsed bundle throws when parsed", once.text, e.what());
  }
  if (auto* err = std::get_if<bundle::parse_error>(&again)) {
    fail("the export of a parsed bundle does not parse", once.text, err->message);
  }
  auto twice = export_of(std::get<bundle::parsed>(again));
  check(once.text == twice.text, "export(parse(export(b))) != export(b)", once.text, twice.text);
  // The export orders lines by kind; the second parse numbers them in that order.
  auto& second = std::get<bundle::parsed>(again);
  size_t expect = 2;
  for (auto& r : second.nodes)
    check(r.line == expect++, "line numbers of the re-parsed nodes");
  for (auto& r : second.attempts)
    check(r.line == expect++, "line numbers of the re-parsed attempts");
  for (auto& r : second.logs)
    check(r.line == expect++, "line numbers of the re-parsed logs");
  for (auto& r : second.jobs)
    check(r.line == expect++, "line numbers of the re-parsed jobs");
  for (auto& r : second.audit)
    check(r.line == expect++, "line numbers of the re-parsed ledger rows");
  return 0;
}
