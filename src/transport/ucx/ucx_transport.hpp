// SPDX-License-Identifier: BSD-3-Clause
// Transport over UCX tagged messages (ucp). Each communicator has a UCP
// context and a worker of its own, so the worker is the communicator's private
// matching space, as the dup'ed MPI_Comm is for the MPI transport.
//
// Receives of unknown size probe the worker's unexpected queue
// (ucp_tag_probe_nb with remove) and then receive the matched message into a
// buffer of exactly its length (ucp_tag_msg_recv_nbx). Nothing is ever posted
// to UCX's expected queue, so a receive that has not matched yet is withdrawn
// by just forgetting it.
//
// Tag layout (ucp_tag_t, 64 bits; see docs/transport-ucx.md):
//   bits 63..62  kind: 0 data, 1 abort notice, 2 control (connect and close)
//   bits 61..38  sender's rank (24 bits): UCX matching has no source filter,
//                so a receive from one peer matches on these bits and a
//                receive from any peer masks them out
//   bits 37..0   low 38 bits of the collective's sequence number
// The communicator id is not in the tag (the worker belongs to one
// communicator); the wire header carries it and the full sequence number.
#pragma once

#include <ucp/api/ucp.h>

#include <chrono>
#include <string>
#include <vector>

#include "../probe_order.hpp"
#include "../transport.hpp"

namespace sparcl {

namespace ucx_tag {
constexpr int kSeqBits = 38;
constexpr int kSourceBits = 24;
constexpr int kSourceShift = kSeqBits;
constexpr int kKindShift = kSeqBits + kSourceBits;
constexpr uint64_t kSeqMask = (uint64_t(1) << kSeqBits) - 1;
constexpr uint64_t kSourceMask = ((uint64_t(1) << kSourceBits) - 1) << kSourceShift;
constexpr uint64_t kFullMask = ~uint64_t(0);
constexpr int kMaxRanks = 1 << kSourceBits;
enum Kind : uint64_t { kData = 0, kAbort = 1, kControl = 2 };

constexpr ucp_tag_t make(Kind kind, int source, uint64_t seq) {
  return (uint64_t(kind) << kKindShift) | (uint64_t(uint32_t(source)) << kSourceShift) | (seq & kSeqMask);
}
constexpr int source_of(ucp_tag_t tag) { return int((tag & kSourceMask) >> kSourceShift); }
static_assert(kKindShift + 2 == 64, "tag fields fill 64 bits");
}  // namespace ucx_tag

class UcxTransport final : public Transport {
 public:
  // Takes ownership of `context` and `worker` (destroyed with the transport).
  // `peer_errors`: endpoints to other ranks use UCP_ERR_HANDLING_MODE_PEER.
  UcxTransport(ucp_context_h context, ucp_worker_h worker, int rank, int size, bool peer_errors);
  ~UcxTransport() override;
  UcxTransport(const UcxTransport&) = delete;
  UcxTransport& operator=(const UcxTransport&) = delete;

  // Creates an endpoint to every rank (ours included) from their worker addresses.
  void connect(const std::vector<std::vector<uint8_t>>& addresses);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "ucx"; }
  std::unique_ptr<Request> isend(int peer, const Tag& tag, SharedBuffer data) override;
  std::unique_ptr<RecvRequest> irecv(int peer, const Tag& tag) override;
  void progress() override;
  void close() override;
  void abort() override;

  ucp_worker_h worker() const { return worker_; }
  ProbeOrder& probe_order() { return probe_order_; }

  // UCX reported `peer` dead (PEER error handling only): its sends and
  // receives fail with SPARCL_ERR_PEER_FAILED. Throws that if so.
  void check_alive(int peer, const char* what) const;
  // The status of a finished UCX request to or from `peer` as sparcl's error.
  [[noreturn]] void fail_request(int peer, ucs_status_t status, const std::string& what) const;

  // Receives a message that ucp_tag_probe_nb removed from the worker into a
  // new buffer of `length` bytes. Returns the UCX request (nullptr when it
  // completed at once). The message is consumed also when this throws.
  void* receive_probed(ucp_tag_message_h message, size_t length, int source, SharedBuffer& buffer);

  // A request dropped before completion, finished in progress() and the
  // destructor. Adopting one also progresses the worker once, so that a
  // dropped send (an abort notice) leaves even if the caller then stops
  // calling sparcl for a while.
  struct Orphan {
    void* request;
    SharedBuffer buffer;
  };
  void adopt(Orphan orphan);

 private:
  ucp_tag_t tag_for(const Tag& tag, int source) const;
  void check_peer(int peer, const char* what) const;
  void reap_orphans();
  // Control messages (kind kControl) to and from every peer; returns the
  // ranks not heard from (or whose message did not leave) within `limit`.
  std::vector<int> barrier(uint64_t round, std::chrono::milliseconds limit);
  void discard_unexpected(ucp_tag_t tag, ucp_tag_t mask);
  // Closes every endpoint: gracefully (flushing) within `limit`, or with
  // `force` (PEER error handling only) without waiting for the peer.
  void close_endpoints(std::chrono::milliseconds limit, bool force);
  static void on_peer_error(void* arg, ucp_ep_h ep, ucs_status_t status);
  void close_failed_endpoints();
  void reap_closing();
  // Progresses until every dropped request has ended, at most `limit`.
  void drain_orphans(std::chrono::milliseconds limit);

  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  int rank_ = 0, size_ = 0;
  bool peer_errors_ = false;
  std::vector<ucp_ep_h> eps_;
  // PEER error handling: the argument of each endpoint's error callback, and
  // what UCX reported (UCS_OK while the peer is alive).
  struct Link {
    UcxTransport* transport;
    int peer;
  };
  std::vector<Link> links_;
  std::vector<ucs_status_t> failed_;
  bool failures_to_close_ = false;
  std::vector<void*> closing_;  // endpoint closes in progress
  std::vector<Orphan> orphans_;
  ProbeOrder probe_order_;
  bool closed_ = false;
};

}  // namespace sparcl
