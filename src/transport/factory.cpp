// SPDX-License-Identifier: BSD-3-Clause
// Which backends this build has (SPARCL_HAVE_OFI, SPARCL_HAVE_UCX from CMake).
#include "transport.hpp"

#include <algorithm>

namespace sparcl {

namespace {

// Equal numbers of ranks on every host of `hosts` (ids 0 .. H-1, each in
// use): that number; otherwise (or for an empty map) `size`.
int uniform_ranks_per_host(const std::vector<int>& hosts, int size) {
  if (int(hosts.size()) != size || size == 0) return size;
  std::vector<int> count(size_t(size), 0);
  for (int h : hosts) {
    if (h < 0 || h >= size) return size;
    ++count[size_t(h)];
  }
  const int per_host = count[0];
  if (per_host == 0) return size;
  for (int c : count)
    if (c != 0 && c != per_host) return size;
  // Ids in use must be 0 .. size / per_host - 1.
  for (int h = 0; h < size / per_host; ++h)
    if (count[size_t(h)] == 0) return size;
  return per_host;
}

}  // namespace

void Transport::set_hosts(std::vector<int> hosts) {
  hosts_ = std::move(hosts);
  spans_hosts_ = std::any_of(hosts_.begin(), hosts_.end(), [&](int h) { return h != hosts_.front(); });
  ranks_per_host_ = uniform_ranks_per_host(hosts_, size());
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
