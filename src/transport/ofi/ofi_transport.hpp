// SPDX-License-Identifier: BSD-3-Clause
// Transport over libfabric: RDM endpoints and tagged messages (fi_tsend /
// fi_trecv) on the provider named by config.ofi_provider ("tcp;ofi_rxm" by
// default; "shm", "sockets" and "udp;ofi_rxd" work too). docs/transport-ofi.md
// describes the design; in short:
//
// - A sparcl message of unknown size travels as a small header message (a
//   48-byte prefix with the sender's rank, the total size, an order stamp
//   and the matching key, followed by the whole message when it fits in
//   16 KiB). A larger message is sent only after the receiver has posted
//   buffers for it: the receiver answers the header with a clear-to-send
//   message, and the sender then sends the data in chunks straight from the
//   caller's buffer into the receiver's.
// - Header and control messages land in a pool of wildcard receives and are
//   matched to sparcl's receives in software (MPI's rule: per tag, in
//   arrival order, by source or any source); order stamps per (sender,
//   receiver) undo completions reported out of order. So a message waits
//   unexpected only in sparcl (its header, at most 16 KiB), never holds up
//   later messages in the provider (ofi_rxd would), whatever its size.
// - Payload and clear-to-send messages carry an id of their one message in
//   the 64-bit tag (chosen by their receiver) and meet receives posted for
//   exactly that tag and sender; FI_ORDER_SAS keeps a message's chunks in
//   order.
// - Every posted operation has its own fi_context2 inside a Flow (one per
//   request). Flows stay alive while the provider holds any of their
//   buffers, so a dropped send finishes on its own and a dropped receive is
//   cancelled (or, once its header has arrived, drained and discarded).
// - Posts that meet -FI_EAGAIN wait in a FIFO (which keeps their order) and
//   are retried while the completion queue is read.
// - connect() exchanges a message with every rank (all connections are made
//   at creation); close() does it again as a barrier (5 s bound).
// - For providers whose reliability runs in the process (ofi_rxd) an idle
//   progress thread reads the completion queue when the caller does not; a
//   mutex serializes it with the caller's calls.
#pragma once

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "../transport.hpp"

namespace sparcl {
namespace ofi {

// Message kinds. Payload and Cts messages never arrive unexpected; they
// travel with transfer_tag(kind, id), an id that the receiving side chose
// for this one message and sent in the header (Cts) or the clear-to-send
// (Payload), and meet the receives posted for exactly that tag and sender:
// two large messages in flight between one pair of ranks cannot take each
// other's clear-to-send or payload, however the provider orders completions.
// Header and Control messages may arrive before
// their receive is posted: they all travel with one tag, kHeaderWireTag, land
// in the wildcard receives, and are matched in software on the key in their
// prefix (make_tag of kind Header or Control). No receive ever uses an ignore
// mask: shm in libfabric 1.16-1.18 matches a posted receive against its
// unexpected queue with the queued entry's stale ignore bits instead of the
// receive's own, which lost messages sent while the wildcard pool was empty.
enum class Kind : uint64_t { Header = 0, Payload = 1, Control = 2, Cts = 3 };

// Keys of Header and Control messages: [0,32) seq, [32,59) comm_id, 59 abort,
// [60,62) kind, 62-63 zero. Kind Control: the messages of close() (seq 0) and
// of the wire-up (seq 1). Tags of Payload and Cts: [0,60) id, [60,62) kind.
constexpr int kSeqBits = 32;
constexpr int kCommBits = 27;
constexpr int kAbortShift = kSeqBits + kCommBits;  // 59
constexpr int kKindShift = kAbortShift + 1;        // 60
uint64_t make_tag(const Tag& tag, Kind kind);
uint64_t transfer_tag(Kind kind, uint64_t id);
// The tag of every Header and Control message (never that of a Payload or
// Cts message, whose kind bits are not zero).
constexpr uint64_t kHeaderWireTag = 0;

// Sizes of the protocol (the same on every rank: part of the wire protocol).
constexpr size_t kBounceBytes = 16384;                        // a header message at most
constexpr size_t kPrefixBytes = 48;                           // see Prefix in the .cpp
constexpr size_t kInlineBytes = kBounceBytes - kPrefixBytes;  // larger messages use clear-to-send
constexpr size_t kDefaultChunkBytes = size_t(64) << 20;      // payload chunk (a sender's choice)

// The libfabric objects of one endpoint; the destructor closes them in the
// reverse order of creation.
struct Fabric {
  fi_info* info = nullptr;
  fid_fabric* fabric = nullptr;
  fid_domain* domain = nullptr;
  fid_cq* cq = nullptr;
  fid_av* av = nullptr;
  fid_ep* ep = nullptr;
  std::string provider;     // as configured, for messages
  bool local_mr = false;    // FI_MR_LOCAL: buffers must be registered
  bool prov_key = true;     // FI_MR_PROV_KEY: the provider picks MR keys
  size_t chunk_bytes = kDefaultChunkBytes;
  size_t wildcards = 64;  // wildcard receives kept posted
  // Period of the idle progress thread; zero: none.
  std::chrono::milliseconds idle_progress{0};
  // How long a dropped small send (an abort notice) may wait to be posted:
  // 1 s, or a quarter of a shorter collective timeout, so that a rank that
  // gives up returns well within twice its timeout.
  std::chrono::milliseconds drop_linger{1000};

  Fabric() = default;
  Fabric(const Fabric&) = delete;
  Fabric& operator=(const Fabric&) = delete;
  ~Fabric();
  void close_endpoint();  // first step of teardown: no provider access to our buffers afterwards
};

// Registered memory (or plain memory when the provider needs no registration).
class Mr {
 public:
  Mr() = default;
  Mr(const Mr&) = delete;
  Mr& operator=(const Mr&) = delete;
  ~Mr() { reset(); }
  void reset();
  void* desc() const { return desc_; }
  fid_mr* mr_ = nullptr;
  void* desc_ = nullptr;
};

// A registered buffer of kBounceBytes for header, clear-to-send and wildcard receives.
struct Bounce {
  std::unique_ptr<uint8_t[]> data;
  Mr mr;
};

struct Flow;
struct Ctx;
class PoolFlow;

class OfiTransport final : public Transport {
 public:
  OfiTransport(std::unique_ptr<Fabric> fabric, int rank, int size, std::vector<fi_addr_t> addrs);
  ~OfiTransport() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "ofi"; }
  std::unique_ptr<Request> isend(int peer, const Tag& tag, SharedBuffer data) override;
  std::unique_ptr<RecvRequest> irecv(int peer, const Tag& tag) override;
  void progress() override;
  void close() override;
  // Posts the wildcard receives, then exchanges a message with every other
  // rank, which sets up all connections (called by connect(), on every rank).
  // Throws when a rank does not answer.
  void wire_up();

  // --- used by the requests and flows (ofi_transport.cpp); callers hold guard() ---
  std::unique_lock<std::mutex> guard() const { return std::unique_lock<std::mutex>(mutex_); }
  void progress_locked();
  const Fabric& fabric() const { return *fab_; }
  std::unique_ptr<Bounce> get_bounce();
  void put_bounce(std::unique_ptr<Bounce> b);
  // Registers [data, data + bytes) for FI_SEND or FI_RECV when the provider needs it.
  void register_memory(Mr& mr, void* data, size_t bytes, uint64_t access);
  // Queues a send to or receive from `peer` (kAnyPeer: a wildcard receive)
  // of `ctx`, which belongs to `flow`; flush() posts it. A Header or Control
  // message is `stamped`: flush() writes its order stamp into its prefix when
  // it posts it.
  void submit(Flow& flow, Ctx& ctx, bool send, void* buf, size_t len, void* desc, int peer, uint64_t tag,
              bool stamped = false);
  // Withdraws an operation: drops it from the queue or asks the provider to cancel it.
  void cancel(Ctx& ctx);
  // Posts what is queued, in order per peer, as far as the provider takes it.
  void flush();
  // Software matching of Header and Control messages: `flow` receives the
  // next message with `tag` from `peer` (or kAnyPeer) through on_message(),
  // at once when one is waiting.
  void soft_post(Flow& flow, int peer, uint64_t tag);
  void soft_cancel(Flow& flow, uint64_t tag);
  // A wildcard receive completed: puts the message in order and matches it.
  void arrive(const uint8_t* data, size_t len);
  // A new id for the Cts or Payload messages of one large message.
  uint64_t next_transfer() { return next_transfer_++; }
  // A dropped send to `peer` could not be posted within its linger: later
  // drops to that peer do not wait (a dead peer costs one linger, not one
  // per abort notice). Cleared when a send to it completes.
  void stall(int peer) { stalled_[size_t(peer)] = true; }
  // An operation to or from `peer` failed as when a peer is gone
  // (connection refused, reset, ...): its flows fail with
  // SPARCL_ERR_PEER_FAILED, and later sends to it fail at once.
  void peer_lost(int peer, const std::string& why);
  bool lost(int peer) const { return !lost_[size_t(peer)].empty(); }
  const std::string& loss_of(int peer) const { return lost_[size_t(peer)]; }
  bool stalled(int peer) const { return stalled_[size_t(peer)]; }
  void unstall(int peer) { stalled_[size_t(peer)] = false; }
  void fail_everything(const std::string& message);
  // Reads the completion queue once; false when it was empty.
  bool poll();
  std::string describe(int err) const;  // "libfabric <provider>: <fi_strerror>"

 private:
  struct Post {
    std::shared_ptr<Flow> flow;  // keeps ctx alive while queued
    Ctx* ctx;
    bool send;
    void* buf;
    size_t len;
    void* desc;
    int peer;  // or kAnyPeer
    uint64_t tag;
    bool stamped;
  };
  void complete(Ctx& ctx, bool ok, size_t len, int err, const std::string& what);
  void release(Flow& flow);  // one operation of flow fewer outstanding
  void deliver(int source, uint64_t tag, const uint8_t* data, size_t len);
  // A message to and from every other rank, bounded in time; "" or what went wrong.
  std::string barrier(bool wire_up);
  // The idle progress thread: reads the completion queue when the caller has
  // not for a while (providers whose reliability protocol runs in the
  // process, like ofi_rxd, must answer retransmissions even then).
  void keep_progressing();
  void stop_keeper();

  std::unique_ptr<Fabric> fab_;
  int rank_, size_;
  std::vector<fi_addr_t> addrs_;
  // Posts that wait for the provider, per peer, in submission order; the
  // last queue holds the wildcard receives.
  std::vector<std::deque<Post>> queues_;
  bool flushing_ = false;
  bool closed_ = false;
  std::string broken_;  // set when the completion queue fails: every later call fails
  // Flows with operations queued or on the provider.
  std::unordered_map<Flow*, std::shared_ptr<Flow>> live_;
  std::vector<std::unique_ptr<Bounce>> bounces_;  // free, registered
  uint64_t next_key_ = 1;
  uint64_t next_transfer_ = 0;

  // Software matching (see soft_post).
  struct SoftRecv {
    std::shared_ptr<Flow> flow;
    int peer;
  };
  struct Message {
    int source;
    uint64_t tag;
    std::vector<uint8_t> bytes;
  };
  std::shared_ptr<PoolFlow> pool_;                                 // the wildcard receives
  std::unordered_map<uint64_t, std::deque<SoftRecv>> posted_;      // by tag, in post order
  std::unordered_map<uint64_t, std::deque<Message>> unexpected_;  // by tag, in arrival order
  std::vector<uint64_t> next_out_, next_in_;                       // order stamps per peer
  std::vector<bool> stalled_;                                      // see stall()
  std::vector<std::string> lost_;                                  // see peer_lost(); "" while alive
  std::vector<std::map<uint64_t, Message>> early_;                 // arrived before their turn

  // Serializes the caller's calls with the idle progress thread.
  mutable std::mutex mutex_;
  std::thread keeper_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::chrono::steady_clock::time_point last_progress_ = std::chrono::steady_clock::now();
};

}  // namespace ofi
}  // namespace sparcl
