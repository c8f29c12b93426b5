#pragma once
// nodecoordctl's side of the admin API (docs/admin-api.md): where the daemon is, its token, one
// request and its envelope. Exit codes follow the HTTP status so scripts can branch on them.
#include <nlohmann/json.hpp>

#include <functional>
#include <stdexcept>
#include <string>

namespace nodecoord::ctl {

// Exit codes scripts can rely on (also in docs/operations.md).
constexpr int exit_ok = 0;
constexpr int exit_failure = 1;   // the daemon is unreachable or failed (5xx)
constexpr int exit_usage = 2;     // bad command line or a request the API refused (400)
constexpr int exit_conflict = 3;  // 409: name taken, node offline, attempt not partial / not failed
constexpr int exit_not_found = 4; // 404
constexpr int exit_auth = 5;      // 401 / 403: token missing or wrong

/// An answer that is not ok, with the exit code it maps to.
struct api_failure : std::runtime_error {
  api_failure(int exit, std::string code_, const std::string& message)
    : std::runtime_error(message), exit_code(exit), code(std::move(code_)) {}
  int exit_code;
  std::string code;
};

struct target {
  std::string host;
  int port = 0;
  std::string token;
  std::string display; // http://host:port or https://host:port
  bool https = false;
  std::string ca_file; // HTTPS: the CAs to trust (empty: the system trust store)
};

/// --admin URL (or $NODECOORD_ADMIN), else admin.listen of the configuration file (https when it
/// has [admin.tls]); the token from --token-file, $NODECOORD_ADMIN_TOKEN, or admin.token_file of the
/// configuration; the CA file for HTTPS from --ca-file or $NODECOORD_CA_FILE. Throws
/// api_failure(exit_usage) on a bad URL or an unreadable token file.
target resolve_target(const std::string& admin_flag, const std::string& token_file_flag, const std::string& config_path,
                      const std::string& ca_file_flag = "");

class client {
public:
  explicit client(target t);
  /// The `data` of a JSON answer; throws api_failure for an error answer or no answer.
  nlohmann::json call(const std::string& method, const std::string& path, const std::string& body = "",
                      const std::string& content_type = "application/json");
  /// GET streamed into `sink`; throws api_failure on an error status.
  void download(const std::string& path, const std::function<bool(const char*, size_t)>& sink);

private:
  target t_;
};

/// Percent-encodes a query parameter value.
std::string url_encode(const std::string& s);

} // namespace nodecoord::ctl
