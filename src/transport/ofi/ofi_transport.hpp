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
// - One endpoint per process and provider (SharedEndpoint) carries the
//   messages of all its communicators (a Member each): ofi_rxm's buffer
//   pools and connections then cost once per process, not once per
//   communicator. Each communicator claims an id (the comm bits of its keys)
//   that no other live communicator of any of its processes holds; the
//   wildcard pool dispatches on it. Order stamps, software matching and
//   peer ranks are per communicator; transfer ids, the completion queue, the
//   address vector (one fi_addr_t per peer process) and peer loss (a
//   property of the process) are per endpoint. The last communicator freed
//   closes the endpoint.
// - connect() exchanges a message with every rank (all connections are made
//   at creation); close() does it again as a barrier (5 s bound).
// - For providers whose reliability runs in the process (ofi_rxd) an idle
//   progress thread reads the completion queue when the caller does not; one
//   mutex per endpoint serializes it with every communicator's calls
//   (FI_THREAD_DOMAIN).
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
#include <unordered_set>
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

// Keys of Header and Control messages: [0,32) seq, [32,59) the communicator's
// claimed id (Member::id(); not sparcl's comm_id, whose low bits may collide
// with another live communicator of the endpoint), 59 abort,
// [60,62) kind, 62-63 zero. Kind Control: the messages of close() (seq 0) and
// of the wire-up (seq 1). Tags of Payload and Cts: [0,60) id, [60,62) kind.
constexpr int kSeqBits = 32;
constexpr int kCommBits = 27;
constexpr int kAbortShift = kSeqBits + kCommBits;  // 59
constexpr int kKindShift = kAbortShift + 1;        // 60
constexpr uint32_t kCommMask = (uint32_t(1) << kCommBits) - 1;
uint64_t make_tag(const Tag& tag, Kind kind);  // the comm bits from tag.comm_id
// The communicator id in a Header or Control key.
inline uint32_t comm_of(uint64_t key) { return uint32_t(key >> kSeqBits) & kCommMask; }
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
  std::vector<uint8_t> address;  // ours, as fi_getname gives it

  Fabric() = default;
  Fabric(const Fabric&) = delete;
  Fabric& operator=(const Fabric&) = delete;
  ~Fabric();
  void close_endpoint();  // first step of teardown: no provider access to our buffers afterwards
};

// Opens the libfabric objects of an endpoint of `provider` (fi_getinfo
// through fi_enable and fi_getname); throws what went wrong.
std::unique_ptr<Fabric> open_fabric(const std::string& provider);

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
class Member;

// An operation waiting for the provider to take it.
struct Post {
  std::shared_ptr<Flow> flow;  // keeps ctx alive while queued
  Ctx* ctx;
  bool send;
  void* buf;
  size_t len;
  void* desc;
  int peer;        // the communicator's rank, or kAnyPeer (a wildcard receive)
  fi_addr_t addr;  // the peer's, or FI_ADDR_UNSPEC
  uint64_t tag;
  bool stamped;  // a Header or Control message: its order stamp is written when posted
};

// The endpoint of one provider in this process, shared by all communicators
// of the process that use that provider. Every method but acquire(),
// claim() and unclaim() is called with guard() held.
class SharedEndpoint {
 public:
  // The endpoint of config.ofi_provider that this process has open, or a
  // new one; it closes when the last holder lets go.
  static std::shared_ptr<SharedEndpoint> acquire(const Config& config);
  explicit SharedEndpoint(std::unique_ptr<Fabric> fabric);
  ~SharedEndpoint();
  SharedEndpoint(const SharedEndpoint&) = delete;
  SharedEndpoint& operator=(const SharedEndpoint&) = delete;

  std::unique_lock<std::mutex> guard() const { return std::unique_lock<std::mutex>(mutex_); }
  const Fabric& fabric() const { return *fab_; }
  const std::vector<uint8_t>& address() const { return fab_->address; }

  // Communicator ids (the comm bits of keys; takes the lock): claim() is
  // false when a live communicator of this process holds `id` already.
  bool claim(uint32_t id);
  void unclaim(uint32_t id);
  // The communicator with a claimed id starts (attach) and ends (detach) its
  // use of the endpoint; messages that came for it before attach() are
  // handed to it then. After detach() its flows still running finish (or
  // are cancelled) in the background, and nothing reaches it any more.
  void attach(Member& member);
  void detach(Member& member);

  // The address vector entry of a peer process, inserted once however many
  // communicators use it (counted; released by release_address).
  fi_addr_t map_address(const std::vector<uint8_t>& address);
  void release_address(fi_addr_t addr);

  void progress_locked();
  void note_progress();  // the caller progressed: the idle progress thread may rest
  std::unique_ptr<Bounce> get_bounce();
  void put_bounce(std::unique_ptr<Bounce> b);
  // Registers [data, data + bytes) for FI_SEND or FI_RECV when the provider needs it.
  void register_memory(Mr& mr, void* data, size_t bytes, uint64_t access);
  // A new id for the Cts or Payload messages of one large message (unique
  // on this endpoint, whichever communicator sends it).
  uint64_t next_transfer() { return next_transfer_++; }
  // Marks `ctx` of `flow` queued (the flow stays alive until it is done).
  void track(Flow& flow, Ctx& ctx);
  // Withdraws an operation: drops it from its queue or asks the provider to cancel it.
  void cancel(Ctx& ctx);
  // Posts what is queued (wildcard receives, then every communicator's
  // queues), in order per queue, as far as the provider takes it.
  void flush();
  // Posts one queue; `owner` stamps and checks its peers (none: the wildcard
  // receives). `stalls` counts -FI_EAGAIN over one flush.
  void post_queue(std::deque<Post>& queue, Member* owner, int& stalls);
  // A wildcard receive completed: hands the message to its communicator.
  void arrive(const uint8_t* data, size_t len);
  // Reads the completion queue once; false when it was empty.
  bool poll();
  const std::unordered_map<Flow*, std::shared_ptr<Flow>>& live() const { return live_; }

  // A dropped send to `addr` could not be posted within its linger: later
  // drops to that process do not wait (a dead peer costs one linger, not one
  // per abort notice). Cleared when a send to it completes.
  void stall(fi_addr_t addr) { stalled_.insert(addr); }
  bool stalled(fi_addr_t addr) const { return stalled_.count(addr) != 0; }
  void unstall(fi_addr_t addr) { stalled_.erase(addr); }
  // An operation to or from the process at `addr` failed as when it is gone
  // (connection refused, reset, ...): every communicator with a rank there
  // fails that rank's flows with SPARCL_ERR_PEER_FAILED and sends nothing
  // more to it.
  void peer_lost(fi_addr_t addr, const std::string& why);
  // The completion queue or the wildcard pool failed: every communicator fails.
  void fail_everything(const std::string& message);
  const std::string& broken() const { return broken_; }
  std::string describe(int err) const;  // "libfabric <provider>: <fi_strerror>"

 private:
  void complete(Ctx& ctx, bool ok, size_t len, int err, const std::string& what);
  void release(Flow& flow);  // one operation of flow fewer outstanding
  void start();              // posts the wildcard receives, starts the idle progress thread
  // The idle progress thread: reads the completion queue when no caller has
  // for a while (providers whose reliability protocol runs in the process,
  // like ofi_rxd, must answer retransmissions even then).
  void keep_progressing();
  void stop_keeper();

  std::unique_ptr<Fabric> fab_;
  std::deque<Post> wildcard_queue_;
  std::shared_ptr<PoolFlow> pool_;  // the wildcard receives
  bool flushing_ = false;
  std::string broken_;  // set when the completion queue fails: every later call fails
  // Flows with operations queued or on the provider, of every communicator.
  std::unordered_map<Flow*, std::shared_ptr<Flow>> live_;
  std::vector<std::unique_ptr<Bounce>> bounces_;  // free, registered
  uint64_t next_key_ = 1;
  uint64_t next_transfer_ = 0;

  // Claimed communicator ids: the attached communicator, or (before attach)
  // the messages that came for it already, in arrival order.
  struct Claim {
    Member* member = nullptr;
    std::vector<std::vector<uint8_t>> early;
    std::string failure;  // a message for it was lost before attach: it fails then
  };
  std::unordered_map<uint32_t, Claim> claims_;
  std::vector<Member*> members_;  // attached, in attach order
  struct Peer {
    fi_addr_t addr;
    int users;  // communicators' ranks mapped to it
  };
  std::map<std::vector<uint8_t>, Peer> peers_;           // by address
  std::unordered_map<fi_addr_t, std::string> lost_;      // see peer_lost()
  std::unordered_set<fi_addr_t> stalled_;                // see stall()

  mutable std::mutex mutex_;
  std::thread keeper_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::chrono::steady_clock::time_point last_progress_ = std::chrono::steady_clock::now();
};

// One communicator's use of a shared endpoint: its ranks' addresses, order
// stamps and software matching. Owned by its OfiTransport and by its flows
// still running (which may outlive the communicator). Called with the
// endpoint's guard() held, except where said.
class Member : public std::enable_shared_from_this<Member> {
 public:
  Member(SharedEndpoint& endpoint, uint32_t id, int rank, int size, std::vector<fi_addr_t> addrs,
         std::chrono::milliseconds drop_linger);
  Member(const Member&) = delete;
  Member& operator=(const Member&) = delete;

  // --- the transport's calls; these take the lock ---
  std::unique_ptr<Request> isend(int peer, const Tag& tag, SharedBuffer data);
  std::unique_ptr<RecvRequest> irecv(int peer, const Tag& tag);
  void progress();
  void close();
  // Exchanges a message with every other rank, which sets up all
  // connections (called by connect(), on every rank, once attached).
  // Throws when a rank does not answer.
  void wire_up();

  // --- used by the endpoint, the requests and flows ---
  std::unique_lock<std::mutex> guard() const { return e_.guard(); }
  SharedEndpoint& endpoint() const { return e_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  uint32_t id() const { return id_; }
  fi_addr_t address_of(int peer) const { return addrs_[size_t(peer)]; }
  const std::vector<fi_addr_t>& addresses() const { return addrs_; }
  // The key of a Header or Control message of this communicator.
  uint64_t key(const Tag& tag, Kind kind) const { return make_tag(Tag{id_, tag.seq, tag.abort}, kind); }
  const Fabric& fabric() const { return e_.fabric(); }
  std::chrono::milliseconds drop_linger() const { return drop_linger_; }
  void progress_locked() { e_.progress_locked(); }
  std::unique_ptr<Bounce> get_bounce() { return e_.get_bounce(); }
  void put_bounce(std::unique_ptr<Bounce> b) { e_.put_bounce(std::move(b)); }
  void register_memory(Mr& mr, void* data, size_t bytes, uint64_t access) {
    e_.register_memory(mr, data, bytes, access);
  }
  uint64_t next_transfer() { return e_.next_transfer(); }
  // Queues a send to or receive from `peer` of `ctx`, which belongs to
  // `flow`; the endpoint's flush() posts it. A Header or Control message is
  // `stamped`: its order stamp is written into its prefix when it is posted.
  void submit(Flow& flow, Ctx& ctx, bool send, void* buf, size_t len, void* desc, int peer, uint64_t tag,
              bool stamped = false);
  std::vector<std::deque<Post>>& queues() { return queues_; }
  // The order stamp of the next Header or Control message to `peer`.
  uint64_t next_order(int peer) const { return next_out_[size_t(peer)]; }
  void count_order(int peer) { ++next_out_[size_t(peer)]; }
  // Software matching of Header and Control messages: `flow` receives the
  // next message with `tag` from `peer` (or kAnyPeer) through on_message(),
  // at once when one is waiting.
  void soft_post(Flow& flow, int peer, uint64_t tag);
  void soft_cancel(Flow& flow, uint64_t tag);
  // A message for this communicator: puts it in order and matches it.
  void arrive(const uint8_t* data, size_t len);
  void stall(int peer) { e_.stall(address_of(peer)); }
  bool stalled(int peer) const { return e_.stalled(address_of(peer)); }
  void unstall(int peer) { e_.unstall(address_of(peer)); }
  // An operation to or from `peer` failed as when a peer is gone: the
  // endpoint tells every communicator with a rank in that process.
  void peer_lost(int peer, const std::string& why) { e_.peer_lost(address_of(peer), why); }
  // The endpoint's word that `peer` is gone: its flows fail with
  // SPARCL_ERR_PEER_FAILED, and later sends to it fail at once.
  void mark_lost(int peer, const std::string& why);
  bool lost(int peer) const { return !lost_[size_t(peer)].empty(); }
  const std::string& loss_of(int peer) const { return lost_[size_t(peer)]; }
  // This communicator is unusable (a malformed or out-of-sequence message):
  // its flows fail, and so does every later call.
  void fail_all(const std::string& message);
  // The endpoint's detach(): withdraws every operation and forgets every message.
  void detach();
  bool detached() const { return detached_; }

 private:
  void deliver(int source, uint64_t tag, const uint8_t* data, size_t len);
  // A message to and from every other rank, bounded in time; "" or what
  // went wrong. Lets go of `lock` while it waits, so that other
  // communicators of the endpoint go on.
  std::string barrier(std::unique_lock<std::mutex>& lock, bool wire_up);
  void check_usable() const;

  SharedEndpoint& e_;
  uint32_t id_;
  int rank_, size_;
  std::vector<fi_addr_t> addrs_;
  std::chrono::milliseconds drop_linger_;
  // Posts that wait for the provider, per peer, in submission order.
  std::vector<std::deque<Post>> queues_;
  bool closed_ = false;
  bool detached_ = false;
  std::string broken_;  // see fail_all()

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
  std::unordered_map<uint64_t, std::deque<SoftRecv>> posted_;      // by tag, in post order
  std::unordered_map<uint64_t, std::deque<Message>> unexpected_;  // by tag, in arrival order
  std::vector<uint64_t> next_out_, next_in_;                       // order stamps per peer
  std::vector<std::string> lost_;                                  // see mark_lost(); "" while alive
  std::vector<std::map<uint64_t, Message>> early_;                 // arrived before their turn
};

// A communicator's transport: its Member of the shared endpoint.
class OfiTransport final : public Transport {
 public:
  OfiTransport(std::shared_ptr<SharedEndpoint> endpoint, std::shared_ptr<Member> member);
  ~OfiTransport() override;  // detaches the member; the endpoint closes with its last communicator

  int rank() const override { return member_->rank(); }
  int size() const override { return member_->size(); }
  const char* name() const override { return "ofi"; }
  std::unique_ptr<Request> isend(int peer, const Tag& tag, SharedBuffer data) override {
    return member_->isend(peer, tag, std::move(data));
  }
  std::unique_ptr<RecvRequest> irecv(int peer, const Tag& tag) override { return member_->irecv(peer, tag); }
  void progress() override { member_->progress(); }
  void close() override { member_->close(); }
  void wire_up() { member_->wire_up(); }

 private:
  std::shared_ptr<SharedEndpoint> endpoint_;
  std::shared_ptr<Member> member_;
};

}  // namespace ofi
}  // namespace sparcl
