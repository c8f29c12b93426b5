#pragma once
// `host:port` endpoints of the configuration ("127.0.0.1:7400", "[::1]:7400", "localhost:7400"):
// parsing with a reason, and whether an endpoint is loopback (the admin API without a token may
// only listen there).
#include "config/config.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace nodecoord::config {

/// The endpoint `text` spells; nullopt with `why` set if it is not one.
std::optional<endpoint> parse_endpoint(std::string_view text, std::string& why);

/// True for localhost, 127.0.0.0/8 and ::1.
bool is_loopback(const endpoint& ep);

/// An IPv4 or IPv6 address written as such (no brackets, no port).
bool is_ip_literal(std::string_view host);

/// A valid entry for [admin] allowed_hosts: a DNS name (letters, digits, '-', '.'; labels of at
/// most 63 characters, 253 in all) or an IP literal; `why` says what is wrong otherwise.
bool valid_host_name(std::string_view name, std::string& why);

/// A default of config/defaults.hpp; throws std::logic_error if it does not parse (a bug).
endpoint default_endpoint(const char* text);

} // namespace nodecoord::config
