#pragma once
// The TLS tests' certificates (tests/support/make_certs.sh, made with the openssl command), once
// per test binary, in a temporary directory removed at exit.
#include "process.hpp"

#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <memory>
#include <string>

namespace nodecoord::test {

class test_certs {
public:
  /// The shared set; the first call makes it (about a second).
  static const test_certs& get() {
    static std::unique_ptr<test_certs> certs(new test_certs());
    return *certs;
  }
  std::string crt(const std::string& name) const { return dir_.file(name + ".crt"); }
  std::string key(const std::string& name) const { return dir_.file(name + ".key"); }
  const std::string& dir() const { return dir_.path(); }

private:
  test_certs() : dir_("nodecoord-certs") {
    std::string cmd = std::string("bash '") + NODECOORD_SOURCE_DIR + "/tests/support/make_certs.sh' '" + dir_.path()
                      + "' >'" + dir_.file("make_certs.log") + "' 2>&1";
    BOOST_TEST_REQUIRE(std::system(cmd.c_str()) == 0, "make_certs.sh failed; see " << dir_.file("make_certs.log"));
  }
  temp_dir dir_;
};

} // namespace nodecoord::test
