// SPDX-License-Identifier: BSD-3-Clause
// sparcl_comm_create_mpi: a communicator over an MPI communicator.
#include <random>

#include "../../comm.hpp"
#include "../../guard.hpp"
#include "mpi_transport.hpp"
#include "sparcl/sparcl_mpi.h"

using namespace sparcl;

namespace {

// The parts of a configuration that all ranks must share.
struct SharedConfig {
  int32_t algorithm;
  int32_t transport;
};

}  // namespace

extern "C" sparcl_status_t sparcl_comm_create_mpi(MPI_Comm mpi_comm, const sparcl_config_t* config,
                                                  sparcl_comm_t* comm) {
  if (!comm) return record(nullptr, SPARCL_ERR_INVALID_ARG, "comm is NULL");
  *comm = nullptr;
  return guarded(nullptr, [&] {
    // Creation is collective: a rank that fails locally still takes part in
    // the exchanges below, so that every rank returns the same error.
    sparcl_status_t local = SPARCL_SUCCESS;
    std::string local_message;
    Config cfg;
    try {
      cfg = resolve_config(config);
    } catch (const Error& e) {
      local = e.status();
      local_message = e.what();
    }
    auto transport = std::make_unique<MpiTransport>(mpi_comm);
    MPI_Comm mc = transport->comm();
    const int p = transport->size();

    SharedConfig mine{local == SPARCL_SUCCESS ? int32_t(cfg.algorithm) : -1, int32_t(cfg.transport)};
    std::vector<SharedConfig> all(static_cast<size_t>(p));
    transport->check(MPI_Allgather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE, mc),
                     "MPI_Allgather of configurations");
    for (int k = 0; k < p && local == SPARCL_SUCCESS; ++k) {
      const SharedConfig& theirs = all[size_t(k)];
      if (theirs.algorithm < 0) {
        local = SPARCL_ERR_INVALID_ARG;
        local_message = "rank " + std::to_string(k) + " has an invalid configuration";
      } else if (theirs.algorithm != mine.algorithm || theirs.transport != mine.transport) {
        local = SPARCL_ERR_MISMATCH;
        local_message = "rank " + std::to_string(k) + " configured algorithm " +
                        algorithm_name(sparcl_algorithm_t(theirs.algorithm)) + ", this rank " +
                        algorithm_name(cfg.algorithm) + " (check SPARCL_ALGORITHM on every rank)";
      }
    }
    if (local != SPARCL_SUCCESS) throw Error(local, local_message);

    uint32_t id = 0;
    if (transport->rank() == 0) id = std::random_device{}();
    transport->check(MPI_Bcast(&id, 1, MPI_UINT32_T, 0, mc), "MPI_Bcast of the communicator id");
    auto c = std::make_unique<sparcl_comm>();
    c->id = id;
    c->config = cfg;
    c->transport = std::move(transport);
    *comm = c.release();
  });
}
