// SPDX-License-Identifier: BSD-3-Clause
// Which backends this build has (SPARCL_HAVE_OFI, SPARCL_HAVE_UCX from CMake).
#include "transport.hpp"

namespace sparcl {

int uniform_ranks_per_host(const std::vector<int>& hosts, int size) {
  if (int(hosts.size()) != size || size == 0) return size;
  std::vector<int> count(size_t(size), 0);
  for (int h : hosts) {
    if (h < 0 || h >= size) return size;
    ++count[size_t(h)];
  }
  int per_host = 0;
  for (int c : count) {
    if (c == 0) continue;
    if (per_host && c != per_host) return size;
    per_host = c;
  }
  return per_host;
}

const char* built_transports() {
  return "mpi"
#if SPARCL_HAVE_OFI
         " ofi"
#endif
#if SPARCL_HAVE_UCX
         " ucx"
#endif
      ;
}

std::unique_ptr<Endpoint> open_endpoint(const Config& config) {
  switch (config.transport) {
    case SPARCL_TRANSPORT_OFI:
#if SPARCL_HAVE_OFI
      return open_ofi_endpoint(config);
#else
      fail(SPARCL_ERR_UNSUPPORTED,
           "sparcl was built without libfabric (install libfabric-dev and rebuild); built: " +
               std::string(built_transports()));
#endif
    case SPARCL_TRANSPORT_UCX:
#if SPARCL_HAVE_UCX
      return open_ucx_endpoint(config);
#else
      fail(SPARCL_ERR_UNSUPPORTED,
           "sparcl was built without UCX (install libucx-dev and rebuild); built: " + std::string(built_transports()));
#endif
    default:
      fail(SPARCL_ERR_INTERNAL, "open_endpoint for a transport without endpoints");
  }
}

}  // namespace sparcl
