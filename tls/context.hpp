#pragma once
// TLS configuration for node links and their agents (issue 17): an OpenSSL SSL_CTX built from
// files, checked while it is built (readable, key matches certificate, not expired), and immutable
// afterwards. A reload builds a new context; live streams keep the one they started with, so a
// certificate rotation never drops a session. No CAF, no sockets.
#include "config/config.hpp"

#include <memory>
#include <mutex>
#include <optional>
#include <string>

struct ssl_ctx_st;

namespace nodecoord::tls {

enum class version { tls1_2, tls1_3 };

/// "1.2" or "1.3"; false otherwise.
bool parse_version(const std::string& text, version& out);

struct server_options {
  std::string cert_file;      // PEM: the certificate, then any intermediates
  std::string key_file;       // PEM private key
  std::string client_ca_file; // non-empty: mutual TLS, clients must present a certificate it signed
  version min_version = version::tls1_2;
};

struct client_options {
  std::string ca_file;   // PEM CAs that may sign the coordinator; empty: the system trust store
  std::string cert_file; // mutual TLS: this client's certificate ...
  std::string key_file;  // ... and key (both or neither)
  version min_version = version::tls1_2;
};

class context {
public:
  /// nullptr with `why` set (naming the file and the problem) if the files are not usable.
  static std::shared_ptr<const context> server(const server_options& opts, std::string& why);
  static std::shared_ptr<const context> client(const client_options& opts, std::string& why);

  ~context();
  context(const context&) = delete;
  context& operator=(const context&) = delete;

  ssl_ctx_st* native() const { return ctx_; }
  bool is_server() const { return server_; }
  /// Mutual TLS: the server asks for and verifies a client certificate.
  bool verifies_clients() const { return verifies_clients_; }
  /// The certificate's notAfter, RFC 3339 (servers and mTLS clients; empty otherwise).
  const std::string& not_after() const { return not_after_; }

private:
  context(ssl_ctx_st* ctx, bool server) : ctx_(ctx), server_(server) {}
  ssl_ctx_st* ctx_;
  bool server_;
  bool verifies_clients_ = false;
  std::string not_after_;
};

/// What a new node connection gets, replaced as a whole by a reload (any thread).
class server_setting {
public:
  struct value {
    std::shared_ptr<const context> ctx; // null: plain TCP only
    bool required = true;               // with ctx: refuse plain connections
  };
  value get() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return value_;
  }
  void set(value v) {
    std::lock_guard<std::mutex> lock(mutex_);
    value_ = std::move(v);
  }

private:
  mutable std::mutex mutex_;
  value value_;
};

/// A port's setting from its [*.tls] table (`table`: "server.tls" or "admin.tls"): no context
/// when TLS is off; nullopt with `why` (naming the key and the file) when the files are not usable.
std::optional<server_setting::value> setting_from(const config::tls_config& cfg, const std::string& table,
                                                  std::string& why);

/// The text of OpenSSL's error queue (emptied), or `fallback` if it is empty.
std::string last_error(const std::string& fallback);

} // namespace nodecoord::tls
