#pragma once
// One check of parsed JSON for both backends (docs/protocol.md, limits): the frame decoder and
// the bundle parser use it. Header-only: a template over nlohmann's json and ordered_json.
#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace nodecoord {

/// Deepest nesting of arrays and objects in a frame or a bundle line, the line itself being
/// level 1 (docs/protocol.md, limits).
inline constexpr size_t max_json_depth = 32;

/// What neither backend stores faithfully, anywhere in a parsed JSON value (a frame, a bundle
/// line): nesting deeper than max_depth, the value itself being level 1 (serializing it again
/// would recurse that deep), and U+0000 in a string or key (PostgreSQL's text and JSONB refuse
/// it). Iterative, so a value nested 400,000 deep costs a loop, not the stack (nlohmann's parser
/// and destructor are iterative too). Returns the problem, naming the value by its path from
/// `type` ("logs.entries[3].line: ..."); nullopt if there is none.
template <class Json>
std::optional<std::string> unsafe_json(const Json& root, const std::string& type, size_t max_depth) {
  struct node {
    const Json* v;
    size_t parent;          // index into `seen`; npos for the root
    const std::string* key; // in an object, else null
    size_t index;           // in an array
    size_t depth;           // the root is level 1
  };
  constexpr auto none = std::string::npos;
  std::vector<node> seen{{&root, none, nullptr, 0, 1}};
  std::vector<size_t> todo{0};
  auto path = [&](size_t i, const std::string* bad_key) {
    std::vector<std::string> parts;
    auto part = [](const std::string& k) {
      return k.size() > 64 || k.find('\0') != std::string::npos ? std::string("?") : k;
    };
    if (bad_key)
      parts.push_back("." + part(*bad_key));
    for (; i != 0; i = seen[i].parent)
      parts.push_back(seen[i].key ? "." + part(*seen[i].key) : "[" + std::to_string(seen[i].index) + "]");
    std::string out = type;
    for (auto it = parts.rbegin(); it != parts.rend(); ++it)
      out += *it;
    return out;
  };
  while (!todo.empty()) {
    auto i = todo.back();
    todo.pop_back();
    auto [v, parent, key, index, depth] = seen[i];
    if (v->is_string()) {
      if (v->template get_ref<const std::string&>().find('\0') != std::string::npos)
        return path(i, nullptr) + ": contains \\u0000, which the database cannot store";
      continue;
    }
    if (!v->is_structured())
      continue;
    if (depth > max_depth)
      return path(i, nullptr) + ": nested deeper than " + std::to_string(max_depth) + " levels";
    size_t n = 0, first = todo.size();
    for (auto c = v->begin(); c != v->end(); ++c, ++n) {
      const std::string* k = v->is_object() ? &c.key() : nullptr;
      if (k && k->find('\0') != std::string::npos)
        return path(i, k) + ": a key contains \\u0000, which the database cannot store";
      seen.push_back({&*c, i, k, n, depth + 1});
      todo.push_back(seen.size() - 1);
    }
    std::reverse(todo.begin() + static_cast<std::ptrdiff_t>(first), todo.end()); // report in order
  }
  return std::nullopt;
}

} // namespace nodecoord
