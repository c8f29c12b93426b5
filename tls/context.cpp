#include "tls/context.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace nodecoord::tls {

namespace {

struct ctx_deleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using ctx_ptr = std::unique_ptr<SSL_CTX, ctx_deleter>;

bool readable(const std::string& key, const std::string& path, std::string& why) {
  if (path.empty()) {
    why = key + " is not set";
    return false;
  }
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    why = key + ": cannot read " + path + " (" + std::strerror(errno) + ")";
    return false;
  }
  std::fclose(f);
  return true;
}

std::string rfc3339(const ASN1_TIME* t) {
  std::tm tm{};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
    return "?";
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int openssl_version(version v) { return v == version::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION; }

/// Loads the certificate chain and its key and checks that they match and are valid now.
bool load_identity(SSL_CTX* ctx, const std::string& cert_key, const std::string& cert_file, const std::string& key_key,
                   const std::string& key_file, std::string& not_after, std::string& why) {
  if (!readable(cert_key, cert_file, why) || !readable(key_key, key_file, why))
    return false;
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    why = cert_key + ": " + cert_file + " holds no usable PEM certificate (" + last_error("unknown error") + ")";
    return false;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    auto detail = last_error("unknown error");
    why = key_key + ": " + key_file
          + (detail.find("values mismatch") != std::string::npos || detail.find("mismatch") != std::string::npos
               ? " does not belong to the certificate in " + cert_file
               : " holds no usable PEM private key (" + detail + ")");
    return false;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    why = key_key + ": " + key_file + " does not belong to the certificate in " + cert_file;
    last_error("");
    return false;
  }
  X509* cert = SSL_CTX_get0_certificate(ctx);
  not_after = rfc3339(X509_get0_notAfter(cert));
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
    why = cert_key + ": the certificate in " + cert_file + " expired at " + not_after;
    return false;
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
    why = cert_key + ": the certificate in " + cert_file + " is not valid before " + rfc3339(X509_get0_notBefore(cert));
    return false;
  }
  return true;
}

ctx_ptr new_ctx(const SSL_METHOD* method, version min, std::string& why) {
  ctx_ptr ctx(SSL_CTX_new(method));
  if (!ctx) {
    why = "cannot create a TLS context (" + last_error("out of memory") + ")";
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx.get(), openssl_version(min));
  // Renegotiation is a denial-of-service lever and nothing here needs it (TLS 1.3 has none).
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);
  // Idle sessions are most sessions: give their 34 KB of record buffers back between records.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
  return ctx;
}

} // namespace

bool parse_version(const std::string& text, version& out) {
  if (text == "1.2")
    out = version::tls1_2;
  else if (text == "1.3")
    out = version::tls1_3;
  else
    return false;
  return true;
}

std::optional<server_setting::value> setting_from(const config::tls_config& cfg, const std::string& table,
                                                  std::string& why) {
  server_setting::value v;
  v.required = cfg.required;
  if (!cfg.enabled())
    return v;
  server_options o;
  o.cert_file = cfg.cert_file;
  o.key_file = cfg.key_file;
  o.client_ca_file = cfg.client_ca_file;
  if (!parse_version(cfg.min_version, o.min_version)) {
    why = table + ".min_version: \"" + cfg.min_version + "\" is not \"1.2\" or \"1.3\"";
    return std::nullopt;
  }
  v.ctx = context::server(o, why);
  if (!v.ctx) {
    why = table + "." + why;
    return std::nullopt;
  }
  return v;
}

std::string last_error(const std::string& fallback) {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty())
      out += "; ";
    out += buf;
  }
  return out.empty() ? fallback : out;
}

context::~context() { SSL_CTX_free(ctx_); }

std::shared_ptr<const context> context::server(const server_options& opts, std::string& why) {
  ERR_clear_error();
  auto ctx = new_ctx(TLS_server_method(), opts.min_version, why);
  if (!ctx)
    return nullptr;
  std::string not_after;
  if (!load_identity(ctx.get(), "cert_file", opts.cert_file, "key_file", opts.key_file, not_after, why))
    return nullptr;
  bool mutual = !opts.client_ca_file.empty();
  if (mutual) {
    if (!readable("client_ca_file", opts.client_ca_file, why))
      return nullptr;
    if (SSL_CTX_load_verify_locations(ctx.get(), opts.client_ca_file.c_str(), nullptr) != 1) {
      why = "client_ca_file: " + opts.client_ca_file + " holds no usable PEM certificate ("
            + last_error("unknown error") + ")";
      return nullptr;
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(opts.client_ca_file.c_str());
    if (names)
      SSL_CTX_set_client_CA_list(ctx.get(), names);
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  // Resumption (reconnect storms): tickets are on by default; a session id context is required
  // for resuming sessions whose client certificate was verified.
  static const unsigned char sid_ctx[] = "nodecoord";
  SSL_CTX_set_session_id_context(ctx.get(), sid_ctx, sizeof sid_ctx - 1);
  std::shared_ptr<context> out(new context(ctx.release(), true));
  out->verifies_clients_ = mutual;
  out->not_after_ = std::move(not_after);
  return out;
}

std::shared_ptr<const context> context::client(const client_options& opts, std::string& why) {
  ERR_clear_error();
  auto ctx = new_ctx(TLS_client_method(), opts.min_version, why);
  if (!ctx)
    return nullptr;
  if (opts.ca_file.empty()) {
    if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
      why = "cannot load the system trust store (" + last_error("unknown error") + ")";
      return nullptr;
    }
  } else {
    if (!readable("ca_file", opts.ca_file, why))
      return nullptr;
    if (SSL_CTX_load_verify_locations(ctx.get(), opts.ca_file.c_str(), nullptr) != 1) {
      why = "ca_file: " + opts.ca_file + " holds no usable PEM certificate (" + last_error("unknown error") + ")";
      return nullptr;
    }
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  std::string not_after;
  if (!opts.cert_file.empty() || !opts.key_file.empty()) {
    if (!load_identity(ctx.get(), "cert_file", opts.cert_file, "key_file", opts.key_file, not_after, why))
      return nullptr;
  }
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_CLIENT);
  std::shared_ptr<context> out(new context(ctx.release(), false));
  out->not_after_ = std::move(not_after);
  return out;
}

} // namespace nodecoord::tls
