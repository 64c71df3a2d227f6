// SPDX-License-Identifier: BSD-3-Clause
// sparcl_comm_create_mpi: a communicator over an MPI communicator. MPI
// connects the ranks (the bootstrap); the transport is MPI itself unless the
// configuration asks for another one.
//
// Creation is bounded by the configuration's timeout: every collective MPI
// step (the dup, the bootstrap's allgathers) is non-blocking and given up at
// the deadline, so that a rank that never calls sparcl_comm_create_mpi makes
// the others fail with SPARCL_ERR_TIMEOUT instead of waiting forever.
// (Under SimGrid's SMPI, where deadlines are off, both steps block.)
#include <climits>

#include "../../comm_create.hpp"
#include "../../guard.hpp"
#include "mpi_transport.hpp"
#include "sparcl/sparcl_mpi.h"

using namespace sparcl;

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void creation_timed_out(const char* step, int64_t timeout_ms) {
  fail(SPARCL_ERR_TIMEOUT, std::string("communicator creation: ") + step + " did not complete within " +
                               std::to_string(timeout_ms) +
                               " ms (SPARCL_TIMEOUT_MS): not every rank of the MPI communicator called "
                               "sparcl_comm_create_mpi");
}

class MpiBootstrap final : public Bootstrap {
 public:
  MpiBootstrap(std::shared_ptr<OwnedComm> comm, Clock::time_point deadline, int64_t timeout_ms)
      : owner_(std::move(comm)), deadline_(deadline), timeout_ms_(timeout_ms) {
    MPI_Comm_rank(owner_->comm, &rank_);
    MPI_Comm_size(owner_->comm, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  // Throws SPARCL_ERR_TIMEOUT at the deadline, leaving the communicator to keep_forever.
  std::vector<uint8_t> allgather(const void* data, size_t bytes) override {
    if (bytes > size_t(INT_MAX)) fail(SPARCL_ERR_UNSUPPORTED, "bootstrap message too large");
    // Both buffers belong to the exchange: if it is given up, MPI may still
    // read and write them, so they are kept (keep_forever) instead of freed.
    struct Exchange {
      std::vector<uint8_t> send, recv;
      MPI_Request request = MPI_REQUEST_NULL;
    };
    auto x = std::make_shared<Exchange>();
    x->send.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + bytes);
    x->recv.resize(bytes * size_t(size_));
#if SPARCL_SMPI
    // SimGrid's SMPI (3.32) runs MPI_Iallgather as a linear exchange, and
    // every MPI_Test of it tests all of its 2P requests: polled by P ranks,
    // that was 57% of the simulation's work at 128 ranks. Its blocking
    // MPI_Allgather follows Open MPI's algorithms; deadlines are off there.
    if (MPI_Allgather(x->send.data(), int(bytes), MPI_BYTE, x->recv.data(), int(bytes), MPI_BYTE, owner_->comm) !=
        MPI_SUCCESS)
      fail(SPARCL_ERR_TRANSPORT, "MPI_Allgather failed during communicator creation");
#else
    if (MPI_Iallgather(x->send.data(), int(bytes), MPI_BYTE, x->recv.data(), int(bytes), MPI_BYTE, owner_->comm,
                       &x->request) != MPI_SUCCESS)
      fail(SPARCL_ERR_TRANSPORT, "MPI_Iallgather failed during communicator creation");
#endif
    if (!wait_until(x->request, deadline_)) {
      keep_forever(x);
      keep_forever(owner_);
      creation_timed_out("an exchange between the ranks (MPI_Iallgather)", timeout_ms_);
    }
    return std::move(x->recv);
  }

 private:
  std::shared_ptr<OwnedComm> owner_;
  Clock::time_point deadline_;
  int64_t timeout_ms_;
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
    // The deadline of the whole creation. A configuration that does not
    // resolve still takes part (with the default timeout), so that
    // create_comm reports its error on every rank.
    int64_t timeout_ms = Config{}.timeout_ms;
    try {
      timeout_ms = resolve_config(config).timeout_ms;
    } catch (const Error&) {
    }
    const Clock::time_point deadline = deadline_after(timeout_ms);

    // sparcl's own copy of the communicator: its traffic never meets the
    // caller's. The handle lives with the request: MPI writes it on completion.
    struct Dup {
      MPI_Comm comm = MPI_COMM_NULL;
      MPI_Request request = MPI_REQUEST_NULL;
    };
    auto dup = std::make_shared<Dup>();
#if SPARCL_SMPI
    // SimGrid's SMPI (3.32) aborts in MPI_Comm_idup ("not yet implemented"):
    // a blocking dup there. A rank that never comes is a deadlock that the
    // simulator itself detects and reports.
    if (MPI_Comm_dup(mpi_comm, &dup->comm) != MPI_SUCCESS) fail(SPARCL_ERR_TRANSPORT, "MPI_Comm_dup failed");
#else
    if (MPI_Comm_idup(mpi_comm, &dup->comm, &dup->request) != MPI_SUCCESS)
      fail(SPARCL_ERR_TRANSPORT, "MPI_Comm_idup failed");
#endif
    if (!wait_until(dup->request, deadline)) {
      keep_forever(dup);
      creation_timed_out("duplicating the MPI communicator (MPI_Comm_idup)", timeout_ms);
    }
    MPI_Comm_set_errhandler(dup->comm, MPI_ERRORS_RETURN);
    // Shared by the bootstrap and the MPI transport; freed with the last of
    // them (with the bootstrap, when another transport was chosen).
    auto owned = std::make_shared<OwnedComm>(dup->comm);
    MpiBootstrap boot(owned, deadline, timeout_ms);
    *comm = create_comm(boot, config, [&] {
              const Config cfg = resolve_config(config);
              int provided = MPI_THREAD_SINGLE;
              MPI_Query_thread(&provided);
              if (cfg.progress_thread && provided < MPI_THREAD_MULTIPLE)
                fail(SPARCL_ERR_UNSUPPORTED,
                     "the progress thread calls MPI beside the application: initialise MPI with "
                     "MPI_Init_thread(MPI_THREAD_MULTIPLE), or use another transport");
              return std::make_unique<MpiTransport>(owned, cfg.timeout_ms);
            }).release();
  });
}
