#include "tls/stream.hpp"

#include "config/endpoint.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace nodecoord::tls {

stream::stream(std::shared_ptr<const context> ctx, const std::string& server_name, saved_session resume)
  : ctx_(std::move(ctx)) {
  ssl_ = SSL_new(ctx_->native());
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  if (!ssl_ || !in_ || !out_) {
    BIO_free(in_);
    BIO_free(out_);
    in_ = out_ = nullptr;
    state_ = state::failed;
    error_ = "cannot create a TLS stream (" + last_error("out of memory") + ")";
    return;
  }
  // An empty input BIO means "wait for more", not end of stream.
  BIO_set_mem_eof_return(in_, -1);
  SSL_set_bio(ssl_, in_, out_);
  if (ctx_->is_server()) {
    SSL_set_accept_state(ssl_);
    return;
  }
  SSL_set_connect_state(ssl_);
  if (!server_name.empty()) {
    if (config::is_ip_literal(server_name)) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), server_name.c_str());
    } else {
      SSL_set_tlsext_host_name(ssl_, server_name.c_str());
      SSL_set1_host(ssl_, server_name.c_str());
    }
  }
  if (resume)
    SSL_set_session(ssl_, resume.get());
}

stream::~stream() { SSL_free(ssl_); }

void stream::start() {
  if (state_ != state::handshaking)
    return;
  std::string none;
  receive({}, none);
}

bool stream::fail(int ssl_error) {
  state_ = state::failed;
  long verify = SSL_get_verify_result(ssl_);
  std::string detail = last_error("");
  if (verify != X509_V_OK && ssl_error == SSL_ERROR_SSL)
    error_ = std::string("certificate verification failed: ") + X509_verify_cert_error_string(verify);
  else if (!detail.empty())
    error_ = detail;
  else if (ssl_error == SSL_ERROR_SYSCALL)
    error_ = "unexpected end of the TLS stream";
  else
    error_ = "TLS error " + std::to_string(ssl_error);
  return false;
}

bool stream::flush_pending() {
  if (pending_.empty())
    return true;
  std::string data;
  data.swap(pending_);
  return send(data);
}

bool stream::receive(std::string_view ciphertext, std::string& plaintext) {
  if (state_ == state::failed)
    return false;
  if (!ciphertext.empty() && BIO_write(in_, ciphertext.data(), static_cast<int>(ciphertext.size())) <= 0)
    return fail(SSL_ERROR_SSL);
  if (state_ == state::handshaking) {
    ERR_clear_error();
    int r = SSL_do_handshake(ssl_);
    if (r != 1) {
      int e = SSL_get_error(ssl_, r);
      return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? true : fail(e);
    }
    state_ = state::open;
    if (!flush_pending())
      return false;
  }
  char buf[16384];
  for (;;) {
    ERR_clear_error();
    int r = SSL_read(ssl_, buf, sizeof buf);
    if (r > 0) {
      plaintext.append(buf, static_cast<size_t>(r));
      continue;
    }
    int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
      return true;
    if (e == SSL_ERROR_ZERO_RETURN) {
      state_ = state::closed;
      return true;
    }
    return fail(e);
  }
}

bool stream::send(std::string_view plaintext) {
  if (state_ == state::failed)
    return false;
  if (state_ == state::handshaking) {
    pending_.append(plaintext);
    return true;
  }
  while (!plaintext.empty()) {
    ERR_clear_error();
    int r = SSL_write(ssl_, plaintext.data(), static_cast<int>(std::min<size_t>(plaintext.size(), 1 << 30)));
    if (r <= 0)
      return fail(SSL_get_error(ssl_, r));
    plaintext.remove_prefix(static_cast<size_t>(r));
  }
  return true;
}

namespace {

template <class Buffer>
void append_pending(bio_st* bio, Buffer& out) {
  if (!bio)
    return;
  size_t n = BIO_ctrl_pending(bio);
  if (n == 0)
    return;
  auto at = out.size();
  out.resize(at + n);
  int got = BIO_read(bio, out.data() + at, static_cast<int>(n));
  out.resize(at + (got > 0 ? static_cast<size_t>(got) : 0));
}

} // namespace

void stream::take_output(std::string& out) { append_pending(out_, out); }

void stream::take_output(std::vector<char>& out) { append_pending(out_, out); }

size_t stream::output_size() const { return out_ ? BIO_ctrl_pending(out_) : 0; }

void stream::shutdown() {
  if (state_ == state::open || state_ == state::closed) {
    ERR_clear_error();
    SSL_shutdown(ssl_);
    ERR_clear_error();
  }
}

std::vector<std::string> stream::peer_names() const {
  std::vector<std::string> out;
  X509* cert = ssl_ ? SSL_get0_peer_certificate(ssl_) : nullptr;
  if (!cert || SSL_get_verify_result(ssl_) != X509_V_OK)
    return out;
  char cn[256];
  int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  if (n > 0 && static_cast<size_t>(n) < sizeof cn)
    out.emplace_back(cn, static_cast<size_t>(n));
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
      if (g->type != GEN_DNS)
        continue;
      const auto* s = g->d.dNSName;
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       static_cast<size_t>(ASN1_STRING_length(s)));
    }
    GENERAL_NAMES_free(sans);
  }
  return out;
}

bool stream::peer_certificate_names(std::string_view name) const {
  if (name.empty())
    return false;
  for (auto& n : peer_names())
    if (n == name)
      return true;
  return false;
}

std::string stream::protocol() const { return ssl_ ? SSL_get_version(ssl_) : ""; }

bool stream::resumed() const { return ssl_ && SSL_session_reused(ssl_) == 1; }

saved_session stream::session() const {
  if (!ssl_)
    return nullptr;
  SSL_SESSION* s = SSL_get1_session(ssl_);
  if (!s)
    return nullptr;
  if (SSL_SESSION_is_resumable(s) != 1) {
    SSL_SESSION_free(s);
    return nullptr;
  }
  return saved_session(s, SSL_SESSION_free);
}

} // namespace nodecoord::tls
