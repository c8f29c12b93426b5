#pragma once
// TLS contexts from the test certificates (test_certs.hpp), for the tests that build their own
// streams (tls_test, session_tls_test). Fails the test if a context cannot be built.
#include "test_certs.hpp"
#include "tls/context.hpp"

namespace nodecoord::test {

/// A server context with the certificate `cert` (and mutual TLS with `client_ca`, if given).
inline std::shared_ptr<const tls::context> server_context(const std::string& cert = "server",
                                                          const std::string& client_ca = "",
                                                          tls::version min = tls::version::tls1_2) {
  const auto& c = test_certs::get();
  tls::server_options o;
  o.cert_file = c.crt(cert);
  o.key_file = c.key(cert);
  if (!client_ca.empty())
    o.client_ca_file = c.crt(client_ca);
  o.min_version = min;
  std::string why;
  auto ctx = tls::context::server(o, why);
  BOOST_TEST_REQUIRE(ctx != nullptr, why);
  return ctx;
}

/// A client context trusting `ca` (and presenting `cert`, if given).
inline std::shared_ptr<const tls::context> client_context(const std::string& ca = "ca", const std::string& cert = "") {
  const auto& c = test_certs::get();
  tls::client_options o;
  o.ca_file = c.crt(ca);
  if (!cert.empty()) {
    o.cert_file = c.crt(cert);
    o.key_file = c.key(cert);
  }
  std::string why;
  auto ctx = tls::context::client(o, why);
  BOOST_TEST_REQUIRE(ctx != nullptr, why);
  return ctx;
}

} // namespace nodecoord::test
