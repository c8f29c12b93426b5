// The fuzz build leaves storage/operations.cpp out of nc_storage (clang 14 cannot compile it: it
// captures structured bindings in lambdas, a C++20 feature clang has from 16 on). storage/grouped.cpp,
// which the bundle code pulls in, and storage/bulk.cpp refer to three of its functions; the fuzz targets never run a
// storage operation, so these stand-ins only satisfy the linker and abort if ever called.
#include "storage/operations_sql.hpp"

#include <cstdio>
#include <cstdlib>

namespace nodecoord::storage {

namespace {
[[noreturn]] void not_in_fuzz_build(const char* what) {
  std::fprintf(stderr, "fuzz: %s is not in the fuzz build (fuzz/storage_stubs.cpp)\n", what);
  std::abort();
}
} // namespace

int64_t contiguous_high_water(op_context&, const std::string&, int64_t, int64_t, int64_t) {
  not_in_fuzz_build("contiguous_high_water");
}
mark_pending::result_type mark_pending_by_ids(op_context&, const mark_pending&) {
  not_in_fuzz_build("mark_pending_by_ids");
}
int64_t sum_in_chunks(op_context&, const std::string&, const std::vector<std::string>&) {
  not_in_fuzz_build("sum_in_chunks");
}

} // namespace nodecoord::storage
