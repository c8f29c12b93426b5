#include "admin/browser_guard.hpp"

#include "config/endpoint.hpp"

#include <algorithm>
#include <cctype>

namespace nodecoord::admin {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

// The media type of a Content-Type header, lower case, without parameters.
std::string media_type(std::string_view content_type) {
  auto semi = content_type.find(';');
  return lower(trim(content_type.substr(0, semi)));
}

} // namespace

std::string host_of(std::string_view h) {
  h = trim(h);
  if (h.empty())
    return {};
  std::string_view host;
  std::string_view rest;
  if (h.front() == '[') {
    auto close = h.find(']');
    if (close == std::string_view::npos)
      return {};
    host = h.substr(1, close - 1);
    rest = h.substr(close + 1);
    if (!config::is_ip_literal(host))
      return {};
  } else {
    auto colon = h.find(':');
    host = h.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view{} : h.substr(colon);
  }
  if (!rest.empty() && !(rest.front() == ':' && all_digits(rest.substr(1)) && rest.size() <= 6))
    return {};
  std::string out = lower(host);
  // "name." is the same name as "name".
  if (!out.empty() && out.back() == '.')
    out.pop_back();
  return out;
}

bool host_allowed(const browser_policy& policy, std::string_view host_header) {
  auto host = host_of(host_header);
  if (host.empty())
    return false;
  if (config::is_ip_literal(host) || host == "localhost" || host == lower(policy.listen_host))
    return true;
  return std::any_of(policy.allowed_hosts.begin(), policy.allowed_hosts.end(),
                     [&](const std::string& a) { return lower(a) == host; });
}

std::optional<browser_refusal> check_browser(const browser_policy& policy, std::string_view method,
                                             std::string_view host, std::string_view origin,
                                             std::string_view content_type) {
  // No browser leaves Host out (HTTP/1.1 requires it), so a request without one is a tool's.
  if (!trim(host).empty() && !host_allowed(policy, host))
    return browser_refusal{403, "forbidden_host",
                           "Host '" + std::string(trim(host))
                             + "' is not a name of this API (an IP address, localhost, admin.listen's host or a "
                               "name in admin.allowed_hosts)"};
  // Browsers send Origin on cross-origin requests and on POSTs; our own dashboard's origin is
  // SCHEME://HOST. Everything else, "null" included, is another site.
  if (!trim(origin).empty()) {
    auto own = lower(policy.scheme + "://" + std::string(trim(host)));
    if (trim(host).empty() || lower(trim(origin)) != own)
      return browser_refusal{403, "forbidden_origin",
                             "requests from another origin ('" + std::string(trim(origin))
                               + "') are refused; this API grants no cross-origin access"};
  }
  if (method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE") {
    // A cross-site form can send only urlencoded, multipart or text/plain bodies without a CORS
    // preflight, which this API never grants.
    auto type = media_type(content_type);
    if (type != "application/json" && type != "application/x-ndjson")
      return browser_refusal{415, "unsupported_media_type",
                             std::string(method) + " needs 'Content-Type: application/json' (got "
                               + (type.empty() ? "none" : "'" + type + "'") + ")"};
  }
  return std::nullopt;
}

} // namespace nodecoord::admin
