// SPDX-License-Identifier: BSD-3-Clause
// Transport over MPI point-to-point on a communicator of its own (a dup of the
// caller's, made by sparcl_comm_create_mpi). Receives of unknown size use
// MPI_Improbe + MPI_Imrecv, probing in post order (probe_order.hpp); messages
// past 2 GiB use a derived datatype so that counts stay within int.
#pragma once

#include <mpi.h>

#include <chrono>
#include <memory>
#include <vector>

#include "../probe_order.hpp"
#include "../transport.hpp"

namespace sparcl {

// Tests `request` until it completes or `deadline` passes, yielding the core
// between tests. False if it is still pending: MPI cannot withdraw it, so it
// and whatever memory it reads or writes must then be kept (keep_forever).
bool wait_until(MPI_Request& request, std::chrono::steady_clock::time_point deadline);

// Keeps `what` alive until the process exits: buffers and handles of MPI
// operations that were given up (a peer never came). Reachable from a
// global, so leak checkers do not count it.
void keep_forever(std::shared_ptr<const void> what);

// A message found by probing, that the next receive of it takes: MPI_Improbe's
// handle, or under SimGrid's SMPI (3.32: no MPI_Improbe, MPI_Mrecv,
// MPI_Get_elements_x) the source and tag that MPI_Iprobe saw, received with
// them. That is the probed message because only a single thread calls MPI
// there, and every receive on the communicator probes first (so no receive
// posted earlier can take it).
struct Probed {
  MPI_Message msg = MPI_MESSAGE_NULL;
  int source = MPI_ANY_SOURCE, tag = MPI_ANY_TAG;
  size_t bytes = 0;
};

// Probes `comm` for a message from `source` with `tag` (wildcards allowed).
// Returns MPI's error code; `found` says whether `probed` holds one.
int probe_message(int source, int tag, MPI_Comm comm, int& found, Probed& probed);

// Receives a probed message into `count` items of `type` at `buf`.
int receive_message(void* buf, int count, MPI_Datatype type, Probed& probed, MPI_Comm comm, MPI_Request* request);

// Receives a probed message and drops its contents, without memory of its size.
void drop_message(Probed& probed, MPI_Comm comm);

// sparcl's own MPI communicator (a dup of the caller's), freed with its last
// reference. When an operation on it is given up, the reference goes to
// keep_forever: MPI may still use the communicator, so it is never freed.
struct OwnedComm {
  explicit OwnedComm(MPI_Comm c) : comm(c) {}
  ~OwnedComm() {
    if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
  }
  OwnedComm(const OwnedComm&) = delete;
  OwnedComm& operator=(const OwnedComm&) = delete;
  MPI_Comm comm;
};

class MpiTransport final : public Transport {
 public:
  // Works on `comm`, shared with the bootstrap that created it. Its
  // blocking step (close) gives up after `timeout_ms` (0: never) with
  // SPARCL_ERR_TIMEOUT; its collectives (native_iallreduce) end at the
  // deadline of the operation that started them.
  MpiTransport(std::shared_ptr<OwnedComm> comm, int64_t timeout_ms);
  ~MpiTransport() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "mpi"; }
  std::unique_ptr<Request> isend(int peer, const Tag& tag, SharedBuffer data) override;
  std::unique_ptr<RecvRequest> irecv(int peer, const Tag& tag) override;
  void progress() override;
  bool has_native_iallreduce(uint64_t count) const override;
  std::unique_ptr<Request> native_iallreduce(const void* send, void* recv, size_t count, sparcl_datatype_t type,
                                             sparcl_op_t op, std::shared_ptr<const void> keep) override;
  void close() override;
  void abort() override { aborted_ = true; }

  MPI_Comm comm() const { return comm_; }
  int mpi_tag(const Tag& tag) const;
  void check(int mpi_error, const char* what) const;

  // A request dropped before completion, finished in progress() and the destructor.
  struct Orphan {
    MPI_Request request;
    SharedBuffer buffer;
  };
  void adopt(Orphan orphan) { orphans_.push_back(std::move(orphan)); }

  // A collective request dropped before completion: it cannot be cancelled
  // (MPI forbids it), so it is tested in progress() and, if still pending
  // when the transport goes, left to MPI with its buffers.
  struct CollectiveOrphan {
    MPI_Request request;
    std::shared_ptr<const void> keep;
  };
  void adopt_collective(CollectiveOrphan orphan) { collective_orphans_.push_back(std::move(orphan)); }
  ProbeOrder& probe_order() { return probe_order_; }

 private:
  std::shared_ptr<OwnedComm> owner_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  // Dup of comm_ for the native collectives, so that they never match the
  // closing barrier on comm_ (or anything else) out of order.
  MPI_Comm native_comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 0;
  int seq_bits_ = 0;
  int64_t timeout_ms_ = 0;
  void discard_unexpected();
  std::vector<Orphan> orphans_;
  std::vector<CollectiveOrphan> collective_orphans_;
  ProbeOrder probe_order_;
  bool aborted_ = false;  // sparcl_comm_abort: dropped requests get no grace period
};

}  // namespace sparcl
