// SPDX-License-Identifier: BSD-3-Clause
// Transport over MPI point-to-point on a communicator of its own (a dup of the
// caller's, made by sparcl_comm_create_mpi). Receives of unknown size use
// MPI_Improbe + MPI_Imrecv, probing in post order (probe_order.hpp); messages
// past 2 GiB use a derived datatype so that counts stay within int.
#pragma once

#include <mpi.h>

#include <vector>

#include "../probe_order.hpp"
#include "../transport.hpp"

namespace sparcl {

class MpiTransport final : public Transport {
 public:
  // Takes ownership of `comm`, which must be sparcl's own (a dup).
  explicit MpiTransport(MPI_Comm comm);
  ~MpiTransport() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "mpi"; }
  std::unique_ptr<Request> isend(int peer, const Tag& tag, SharedBuffer data) override;
  std::unique_ptr<RecvRequest> irecv(int peer, const Tag& tag) override;
  void progress() override;
  void native_allreduce(const void* send, void* recv, size_t count, sparcl_datatype_t type,
                        sparcl_op_t op) override;
  bool has_native_iallreduce(uint64_t count) const override;
  std::unique_ptr<Request> native_iallreduce(const void* send, void* recv, size_t count, sparcl_datatype_t type,
                                             std::shared_ptr<const void> keep) override;
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
  MPI_Comm comm_ = MPI_COMM_NULL;
  // Dup of comm_ for the native collectives, so that they never match the
  // closing barrier on comm_ (or anything else) out of order.
  MPI_Comm native_comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 0;
  int seq_bits_ = 0;
  void discard_unexpected();
  std::vector<Orphan> orphans_;
  std::vector<CollectiveOrphan> collective_orphans_;
  ProbeOrder probe_order_;
  bool aborted_ = false;  // sparcl_comm_abort: dropped requests get no grace period
};

}  // namespace sparcl
