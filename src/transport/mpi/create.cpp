// SPDX-License-Identifier: BSD-3-Clause
// sparcl_comm_create_mpi: a communicator over an MPI communicator. MPI
// connects the ranks (the bootstrap); the transport is MPI itself unless the
// configuration asks for another one.
#include <climits>

#include "../../comm_create.hpp"
#include "../../guard.hpp"
#include "mpi_transport.hpp"
#include "sparcl/sparcl_mpi.h"

using namespace sparcl;

namespace {

class MpiBootstrap final : public Bootstrap {
 public:
  explicit MpiBootstrap(MPI_Comm comm) : comm_(comm) {
    MPI_Comm_rank(comm, &rank_);
    MPI_Comm_size(comm, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::vector<uint8_t> allgather(const void* data, size_t bytes) override {
    if (bytes > size_t(INT_MAX)) fail(SPARCL_ERR_UNSUPPORTED, "bootstrap message too large");
    std::vector<uint8_t> out(bytes * size_t(size_));
    const int rc = MPI_Allgather(data, int(bytes), MPI_BYTE, out.data(), int(bytes), MPI_BYTE, comm_);
    if (rc != MPI_SUCCESS) fail(SPARCL_ERR_TRANSPORT, "MPI_Allgather failed during communicator creation");
    return out;
  }

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 0;
};

}  // namespace

extern "C" sparcl_status_t sparcl_comm_create_mpi(MPI_Comm mpi_comm, const sparcl_config_t* config,
                                                  sparcl_comm_t* comm) {
  if (!comm) return record(nullptr, SPARCL_ERR_INVALID_ARG, "comm is NULL");
  *comm = nullptr;
  return guarded(nullptr, [&] {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    require(initialized && !finalized, SPARCL_ERR_INVALID_ARG, "MPI is not initialised");
    require(mpi_comm != MPI_COMM_NULL, SPARCL_ERR_INVALID_ARG, "MPI communicator is MPI_COMM_NULL");
    // sparcl's own copy of the communicator: its traffic never meets the caller's.
    MPI_Comm dup = MPI_COMM_NULL;
    if (MPI_Comm_dup(mpi_comm, &dup) != MPI_SUCCESS) fail(SPARCL_ERR_TRANSPORT, "MPI_Comm_dup failed");
    MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
    bool owned_by_transport = false;
    try {
      MpiBootstrap boot(dup);
      auto created = create_comm(boot, config, [&] {
        int provided = MPI_THREAD_SINGLE;
        MPI_Query_thread(&provided);
        if (resolve_config(config).progress_thread && provided < MPI_THREAD_MULTIPLE)
          fail(SPARCL_ERR_UNSUPPORTED,
               "the progress thread calls MPI beside the application: initialise MPI with "
               "MPI_Init_thread(MPI_THREAD_MULTIPLE), or use another transport");
        auto transport = std::make_unique<MpiTransport>(dup);
        owned_by_transport = true;
        return transport;
      });
      if (!owned_by_transport) MPI_Comm_free(&dup);
      *comm = created.release();
    } catch (...) {
      if (!owned_by_transport) MPI_Comm_free(&dup);
      throw;
    }
  });
}
