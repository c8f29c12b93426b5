#pragma once
// Browser safety for the admin API (DESIGN §6, docs/admin-api.md "Browsers"): whatever the token
// setting, a web page open in a browser on the coordinator's host must not be able to change
// anything (cross-site POST) or read anything (DNS rebinding). Plain logic, no HTTP library.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nodecoord::admin {

struct browser_policy {
  std::string listen_host;                // [admin] listen's host, always accepted in Host
  std::vector<std::string> allowed_hosts; // [admin] allowed_hosts: further names accepted in Host
  std::string scheme = "http";            // the API's own origin is SCHEME://HOST
};

struct browser_refusal {
  int status;
  std::string code;
  std::string message;
};

/// Why the request must be refused, or nothing. POST, PUT, PATCH and DELETE also need a JSON
/// content type (application/json, or application/x-ndjson for bundles).
std::optional<browser_refusal> check_browser(const browser_policy& policy, std::string_view method,
                                             std::string_view host, std::string_view origin,
                                             std::string_view content_type);

/// The host part of a Host header ("Name:8080" → "name", "[::1]:80" → "::1"), lower case; empty
/// if the header is malformed.
std::string host_of(std::string_view host_header);

/// Whether a Host header names this API: an IP literal (a rebinding page cannot make the browser
/// send one for its own origin), "localhost", the listen host or one of the allowed hosts.
bool host_allowed(const browser_policy& policy, std::string_view host_header);

} // namespace nodecoord::admin
