#include "config/endpoint.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <stdexcept>

namespace nodecoord::config {

constexpr std::string_view endpoint_example = "\"127.0.0.1:7400\" or \"[::1]:7400\"";

std::string endpoint::to_string() const {
  std::string out = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return out + ":" + std::to_string(port);
}

namespace {

std::string quote(std::string_view s) { return "\"" + std::string{s} + "\""; }

bool is_host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

/// Parses "host:port" / "[v6]:port". On failure returns nullopt and sets `why` (a full message).
} // namespace

std::optional<endpoint> parse_endpoint(std::string_view text, std::string& why) {
  const std::string expected = "expected \"host:port\" such as " + std::string{endpoint_example};
  if (text.empty()) {
    why = "empty address; " + expected;
    return std::nullopt;
  }
  std::string_view host;
  std::string_view port;
  bool bracketed = false;
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) {
      why = "invalid address " + quote(text) + ": missing ']' after the IPv6 address; " + expected;
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    auto after = text.substr(close + 1);
    if (after.empty() || after.front() != ':') {
      why = "invalid address " + quote(text) + ": missing port after ']'; " + expected;
      return std::nullopt;
    }
    port = after.substr(1);
    bracketed = true;
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      why = "invalid address " + quote(text) + ": missing port; " + expected;
      return std::nullopt;
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      why = "invalid address " + quote(text) + ": IPv6 addresses must be written in brackets, e.g. \"[::1]:7400\"";
      return std::nullopt;
    }
  }
  if (host.empty()) {
    why = "invalid address " + quote(text)
          + ": missing host; use \"0.0.0.0\" (all IPv4 addresses) or \"[::]\" (all IPv6 addresses) to listen "
            "everywhere";
    return std::nullopt;
  }
  if (bracketed) {
    // An optional zone ("[fe80::1%eth0]") is passed through; the address part must be valid IPv6.
    std::string address{host.substr(0, host.find('%'))};
    in6_addr a6{};
    if (inet_pton(AF_INET6, address.c_str(), &a6) != 1) {
      why = "invalid address " + quote(text) + ": " + quote(host) + " is not an IPv6 address";
      return std::nullopt;
    }
  } else {
    if (!std::all_of(host.begin(), host.end(), is_host_char)) {
      why = "invalid address " + quote(text) + ": " + quote(host)
            + " is not a host name or IP address; use \"0.0.0.0\" (all IPv4 addresses) or \"[::]\" (all IPv6 "
              "addresses) to listen everywhere";
      return std::nullopt;
    }
    bool numeric = std::all_of(host.begin(), host.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
    in_addr a4{};
    if (numeric && inet_pton(AF_INET, std::string{host}.c_str(), &a4) != 1) {
      why = "invalid address " + quote(text) + ": " + quote(host) + " is not an IPv4 address";
      return std::nullopt;
    }
  }
  if (port.empty() || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    why = "invalid address " + quote(text) + ": the port must be a number from 1 to 65535";
    return std::nullopt;
  }
  uint64_t number = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
  // Port 0 means any free port (tests; the daemon logs the port it got).
  if (ec != std::errc{} || ptr != port.data() + port.size() || number > 65535) {
    why = "out of range: the port must be between 0 and 65535 (got " + std::string{port} + ")";
    return std::nullopt;
  }
  return endpoint{std::string{host}, static_cast<uint16_t>(number)};
}

bool is_loopback(const endpoint& ep) {
  if (ep.host == "localhost")
    return true;
  in_addr a4{};
  if (inet_pton(AF_INET, ep.host.c_str(), &a4) == 1)
    return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6{};
  if (inet_pton(AF_INET6, ep.host.c_str(), &a6) == 1)
    return IN6_IS_ADDR_LOOPBACK(&a6);
  return false;
}

endpoint default_endpoint(const char* text) {
  std::string why;
  auto ep = parse_endpoint(text, why);
  if (!ep)
    throw std::logic_error("invalid default address in config/defaults.hpp: " + why);
  return *ep;
}

bool is_ip_literal(std::string_view host) {
  std::string text(host);
  unsigned char buf[16];
  return inet_pton(AF_INET, text.c_str(), buf) == 1 || inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

bool valid_host_name(std::string_view name, std::string& why) {
  if (is_ip_literal(name))
    return true;
  if (name.empty() || name.size() > 253) {
    why = "must be a host name of 1 to 253 characters";
    return false;
  }
  size_t label = 0;
  for (size_t i = 0; i < name.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    if (c == '.') {
      if (label == 0) {
        why = "has an empty label";
        return false;
      }
      label = 0;
      continue;
    }
    if (!(std::isalnum(c) || c == '-')) {
      why = "may hold only letters, digits, '-' and '.' (no port, no scheme, no wildcard)";
      return false;
    }
    if (++label > 63) {
      why = "has a label longer than 63 characters";
      return false;
    }
  }
  if (label == 0) {
    why = "ends with '.'";
    return false;
  }
  return true;
}

} // namespace nodecoord::config
