#pragma once
// One TLS connection as a byte transformer, with no socket and no actor (issue 17; qpid-proton's
// SSL layer works the same way): ciphertext from the network in, plaintext out; plaintext in,
// ciphertext for the network out. OpenSSL runs over a pair of memory BIOs, so the caller keeps
// owning the socket, its buffers and its deadlines. node_session wraps its framing in one; the
// agent too.
#include "tls/context.hpp"

#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct ssl_st;
struct ssl_session_st;
struct bio_st;

namespace nodecoord::tls {

/// A TLS client's first byte is a handshake record (0x16); a plain protocol client's is '{'.
inline bool starts_tls(unsigned char first) { return first == 0x16; }

/// A client session to resume on the next connection (shared, immutable).
using saved_session = std::shared_ptr<ssl_session_st>;

class stream {
public:
  enum class state { handshaking, open, closed, failed };

  /// A server stream if `ctx` is a server context. A client stream verifies that the server's
  /// certificate names `server_name` (a DNS name or an IP address) and sends it as SNI.
  explicit stream(std::shared_ptr<const context> ctx, const std::string& server_name = {},
                  saved_session resume = nullptr);
  ~stream();
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;

  /// Client: writes the ClientHello (take it with take_output()).
  void start();

  /// Ciphertext from the peer; appends the application data it carries to `plaintext`. False
  /// once the stream failed (error() says why); take_output() may still hold an alert to send.
  bool receive(std::string_view ciphertext, std::string& plaintext);

  /// Plaintext for the peer (held until the handshake is done). False if the stream failed.
  bool send(std::string_view plaintext);

  /// Appends the ciphertext waiting for the socket to `out` (a socket's write buffer directly).
  void take_output(std::string& out);
  void take_output(std::vector<char>& out);
  size_t output_size() const;

  /// Sends close_notify (take it with take_output()).
  void shutdown();

  state current() const { return state_; }
  bool open() const { return state_ == state::open; }
  const std::string& error() const { return error_; }

  /// The verified peer certificate's common name and DNS names (empty without a certificate).
  std::vector<std::string> peer_names() const;
  /// Whether the verified peer certificate names `name` (CN or a DNS SAN, exactly).
  bool peer_certificate_names(std::string_view name) const;
  /// "TLSv1.3", "TLSv1.2", ...
  std::string protocol() const;
  bool resumed() const;
  /// Client: the session to pass to the next stream to the same server (tickets arrive after
  /// the handshake, so ask after some data came back); nullptr if there is none.
  saved_session session() const;

private:
  bool fail(int ssl_error);
  bool flush_pending();

  std::shared_ptr<const context> ctx_;
  ssl_st* ssl_ = nullptr;
  bio_st* in_ = nullptr;  // owned by ssl_
  bio_st* out_ = nullptr; // owned by ssl_
  state state_ = state::handshaking;
  std::string pending_; // plaintext sent before the handshake finished
  std::string error_;
};

} // namespace nodecoord::tls
