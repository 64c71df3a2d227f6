// SPDX-License-Identifier: BSD-3-Clause
// The transport interface: tagged, non-blocking point-to-point messages of any
// size. Collectives see only this; each backend (src/transport/<name>/) maps
// it onto MPI, libfabric or UCX.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <vector>

#include "../buffer.hpp"
#include "../config.hpp"

namespace sparcl {

constexpr int kAnyPeer = -1;

// What a tag carries: the collective (communicator and sequence number) and
// whether the message is an abort notice. Backends pack it into their own tag
// space (MPI keeps the low bits of seq; the wire header carries all of it and
// is checked).
//
// The step of a collective is deliberately not in the tag: a backend must
// deliver messages with equal tags from one peer in the order they were sent
// (MPI's non-overtaking rule; UCX tag matching; libfabric with FI_ORDER_SAS).
// Each algorithm receives at most one message per peer and round, so the next
// message from a peer is always the one it expects, and the step in the
// header proves it. Ranks that run different collectives under one sequence
// number therefore see each other's messages and report a mismatch, where
// step-specific tags would leave them waiting for messages that never come.
struct Tag {
  uint32_t comm_id = 0;
  uint64_t seq = 0;
  bool abort = false;
};

class Request {
 public:
  virtual ~Request() = default;
  // True once complete; never blocks. Throws Error(SPARCL_ERR_TRANSPORT) on failure.
  virtual bool test() = 0;
};

class RecvRequest : public Request {
 public:
  // After test() returned true: the message and who sent it.
  virtual Buffer take() = 0;
  virtual int source() const = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* name() const = 0;

  // Sends `data` to `peer`. The transport keeps `data` alive until the send
  // completes, also when the request is destroyed before that.
  virtual std::unique_ptr<Request> isend(int peer, const Tag& tag, SharedBuffer data) = 0;

  // Receives one message, of whatever size, from `peer` (or kAnyPeer).
  // Destroying the request before it completes withdraws it. Receives from
  // one peer with one tag take that peer's messages with that tag in the
  // order the receives were posted (and the messages sent), however many are
  // outstanding. kAnyPeer receives are for tags that no receive from a given
  // peer uses (the engine's abort notices).
  virtual std::unique_ptr<RecvRequest> irecv(int peer, const Tag& tag) = 0;

  // Moves outstanding transfers forward (for backends that need a call).
  virtual void progress() = 0;

  // A non-blocking dense allreduce of `count` values by the transport itself
  // (MPI: MPI_Iallreduce on a communicator of its own): the dense
  // algorithm's sum, and every op and type that has no sparse path.
  // has_native_iallreduce() depends on the transport and the count alone, so
  // all ranks agree on it. `keep` holds the buffers: the transport keeps it
  // until the operation is complete, also when the request is destroyed
  // before that. Every rank must start these in the same order
  // (collectives/collective.hpp: NativeOrder).
  virtual bool has_native_iallreduce(uint64_t count) const {
    (void)count;
    return false;
  }
  virtual std::unique_ptr<Request> native_iallreduce(const void* send, void* recv, size_t count,
                                                     sparcl_datatype_t type, sparcl_op_t op,
                                                     std::shared_ptr<const void> keep) {
    (void)send, (void)recv, (void)count, (void)type, (void)op, (void)keep;
    fail(SPARCL_ERR_UNSUPPORTED, std::string("the ") + name() + " transport has no allreduce of its own");
  }

  // Collective: called on every rank when the communicator is freed, before
  // the transport is destroyed, so that no rank tears down connections that
  // a peer still uses. Throws nothing but Error(SPARCL_ERR_TIMEOUT), when
  // peers did not all arrive within the transport's bound; the transport is
  // destroyed afterwards all the same.
  virtual void close() {}

  // Local: called instead of close() when the communicator is aborted
  // (sparcl_comm_abort), when peers may be dead or hung. The destructor that
  // follows waits for no peer beyond a short bound. Must not throw.
  virtual void abort() {}

  // The host of each rank (ids 0, 1, ... in order of first appearance), as
  // the ranks agreed at creation; empty: one host. Set once, after the
  // transport is made; what follows from it is worked out then.
  const std::vector<int>& hosts() const { return hosts_; }
  void set_hosts(std::vector<int> hosts);
  // Whether the ranks run on more than one host.
  bool spans_hosts() const { return spans_hosts_; }
  // The ranks of each host where every host holds the same number; else
  // size(), all ranks counting as one host.
  int ranks_per_host() const { return ranks_per_host_ ? ranks_per_host_ : size(); }

 private:
  std::vector<int> hosts_;
  bool spans_hosts_ = false;
  int ranks_per_host_ = 0;  // 0: not set (one host)
};

// A transport before it knows its peers. Creating a communicator opens an
// endpoint on every rank, exchanges the addresses through the bootstrap and
// connects; a rank that fails to open still takes part in the exchange, so
// every rank learns of the failure.
class Endpoint {
 public:
  virtual ~Endpoint() = default;
  // This rank's address, as peers need it to reach us.
  virtual std::vector<uint8_t> address() const = 0;
  // Whether the endpoint carries the messages of other communicators of this
  // process too (libfabric's: one per process); they are told apart by an id
  // that no two live communicators of a process may share (claim_id).
  virtual bool shared() const { return false; }
  // Claims `id` for the communicator being created, in place of an earlier
  // claim of this endpoint; false when a live communicator of this process
  // holds it. connect() uses the claimed id.
  virtual bool claim_id(uint32_t id) {
    (void)id;
    return true;
  }
  // addresses[i] is rank i's address (ours included).
  virtual std::unique_ptr<Transport> connect(int rank, int size,
                                             const std::vector<std::vector<uint8_t>>& addresses) = 0;
};

// Opens an endpoint of `config.transport` (SPARCL_TRANSPORT_OFI or
// SPARCL_TRANSPORT_UCX). Throws SPARCL_ERR_UNSUPPORTED for a backend that
// was not built, naming the package it needs.
std::unique_ptr<Endpoint> open_endpoint(const Config& config);

// Each backend's own opener (defined only when the backend is built).
std::unique_ptr<Endpoint> open_ofi_endpoint(const Config& config);
std::unique_ptr<Endpoint> open_ucx_endpoint(const Config& config);

// Transports built into this library, e.g. "mpi ofi ucx".
const char* built_transports();

}  // namespace sparcl
