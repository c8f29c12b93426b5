#pragma once
// The API's JSON envelope and its errors (docs/admin-api.md), shared by the route files.
#include "admin/api.hpp"

#include <nlohmann/json.hpp>

#include <string>

namespace nodecoord::admin {

/// A 4xx/5xx answer raised anywhere below route().
struct api_error {
  int status;
  std::string code;
  std::string message;
  nlohmann::json detail = nullptr; // the error's "detail" object, if any
};

/// By value and moved: a list of 10,000 nodes is not copied on its way out (an initializer list
/// would copy it).
inline http_response reply(int status, nlohmann::json data) {
  http_response r;
  r.status = status;
  nlohmann::json out = nlohmann::json::object();
  out["ok"] = true;
  out["data"] = std::move(data);
  r.body = out.dump();
  return r;
}

inline http_response failure(int status, const std::string& code, const std::string& message,
                             const nlohmann::json& detail = nullptr) {
  http_response r;
  r.status = status;
  nlohmann::json err{{"code", code}, {"message", message}};
  if (!detail.is_null())
    err["detail"] = detail;
  // The message may quote what the client sent (a path, a parameter), which need not be UTF-8.
  r.body = nlohmann::json{{"ok", false}, {"error", err}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

[[noreturn]] inline void bad_request(const std::string& message) { throw api_error{400, "bad_request", message}; }
[[noreturn]] inline void not_found(const std::string& message) { throw api_error{404, "not_found", message}; }
[[noreturn]] inline void conflict(const std::string& message) { throw api_error{409, "conflict", message}; }

} // namespace nodecoord::admin
