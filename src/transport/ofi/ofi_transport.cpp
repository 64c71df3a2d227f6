// SPDX-License-Identifier: BSD-3-Clause
#include "ofi_transport.hpp"

#include <dirent.h>
#include <malloc.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_tagged.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>

namespace sparcl {
namespace ofi {

namespace {

using Clock = std::chrono::steady_clock;

// close() waits this long for the other ranks.
constexpr auto kCloseTimeout = std::chrono::seconds(5);
// connect() waits this long for the other ranks.
constexpr auto kWireUpTimeout = std::chrono::seconds(60);
// Bounce buffers kept for reuse.
constexpr size_t kBouncePool = 64;
// flush() gives up after this many -FI_EAGAIN (and retries on the next call).
constexpr int kMaxStalls = 32;

constexpr uint32_t kHeaderMagic = 0x31484653;  // "SFH1"
constexpr uint32_t kCtsMagic = 0x31434653;     // "SFC1"
constexpr uint32_t kCloseMagic = 0x31584653;   // "SFX1"
constexpr uint32_t kWireUpMagic = 0x31574653;  // "SFW1"
// Sequence numbers of the control messages (kind Control).
constexpr uint64_t kCloseSeq = 0, kWireUpSeq = 1;

// The first bytes of header, clear-to-send and control messages.
struct Prefix {
  uint32_t magic;
  uint32_t source;  // rank of the sender of this message
  uint64_t size;    // bytes of the sparcl message
  uint64_t chunk;   // payload chunk size when the data follows separately, else 0
  uint64_t order;   // Header and Control: the sender's count of such messages to this receiver
  uint64_t key;     // Header and Control: what software matching matches (make_tag of kind Header or Control)
  uint64_t transfer;  // header of a large message: the sender's clear-to-send id; clear-to-send: the payload's id
};
static_assert(sizeof(Prefix) == kPrefixBytes, "prefix layout");
static_assert(std::is_trivially_copyable<Prefix>::value, "prefix layout");

Prefix read_prefix(const uint8_t* p) {
  Prefix x;
  std::memcpy(&x, p, sizeof x);
  return x;
}

void write_prefix(uint8_t* p, const Prefix& x) { std::memcpy(p, &x, sizeof x); }

std::string error_text(long err) { return fi_strerror(int(err < 0 ? -err : err)); }

size_t chunks_of(size_t size, size_t chunk) { return (size + chunk - 1) / chunk; }

// Optional environment knobs of this backend (docs/transport-ofi.md).
size_t env_size(const char* name, size_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const unsigned long long x = std::strtoull(v, &end, 10);
  if (*end != '\0' || x == 0)
    fail(SPARCL_ERR_INVALID_ARG, std::string(name) + ": '" + v + "' is not a positive number of bytes");
  return size_t(x);
}

// A duration in ms, 0 allowed.
long env_ms(const char* name, long fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < 0 || x > 60000)
    fail(SPARCL_ERR_INVALID_ARG, std::string(name) + ": '" + v + "' is not a number of milliseconds (0-60000)");
  return x;
}

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && std::strcmp(v, "1") == 0;
}

}  // namespace

// Where the order stamp sits in a message (written when the message is posted).
constexpr size_t kOrderOffset = offsetof(Prefix, order);

Kind kind_of(uint64_t key) { return Kind((key >> kKindShift) & 3); }

// Errors with which providers end operations to a peer that is gone.
bool is_peer_loss(int err) {
  switch (err) {
    case FI_ECONNREFUSED:
    case FI_ECONNRESET:
    case FI_ECONNABORTED:
    case FI_ENOTCONN:
    case FI_EHOSTUNREACH:
    case FI_ENETUNREACH:
    case FI_ETIMEDOUT:
      return true;
    default:
      return false;
  }
}

uint64_t transfer_tag(Kind kind, uint64_t id) {
  return (id & ((uint64_t(1) << kKindShift) - 1)) | (uint64_t(kind) << kKindShift);
}

uint64_t make_tag(const Tag& tag, Kind kind) {
  const uint64_t seq = tag.seq & ((uint64_t(1) << kSeqBits) - 1);
  const uint64_t comm = uint64_t(tag.comm_id) & ((uint64_t(1) << kCommBits) - 1);
  return seq | (comm << kSeqBits) | (uint64_t(tag.abort ? 1 : 0) << kAbortShift) |
         (uint64_t(kind) << kKindShift);
}

// ---------------------------------------------------------------------------
// Operations and flows

// One posted (or queued) libfabric operation. The provider hands &fi back as
// the completion's op_context; fi is the first member of this standard-layout
// struct, so the Ctx is found from it.
struct Ctx {
  fi_context2 fi{};
  Flow* flow = nullptr;
  size_t slot = 0;
  enum State : uint8_t { Idle, Queued, Posted } state = Idle;
  bool cancel_requested = false;
};
static_assert(std::is_standard_layout<Ctx>::value, "Ctx must be standard-layout");

Ctx& ctx_of(void* op_context) { return *reinterpret_cast<Ctx*>(op_context); }

// The state of one request: its buffers and operations. A flow lives while
// its request holds it or while any of its operations is queued or on the
// provider (the transport holds it then), whichever is longer.
struct Flow : std::enable_shared_from_this<Flow> {
  Flow(SharedEndpoint& endpoint, std::shared_ptr<Member> member) : e(endpoint), owner(std::move(member)) {}
  virtual ~Flow() = default;
  Flow(const Flow&) = delete;
  Flow& operator=(const Flow&) = delete;

  virtual void on_complete(Ctx& ctx, size_t len) = 0;
  virtual void on_error(Ctx& ctx, int err, const std::string& what) = 0;
  // The rank this flow exchanges with, once known (kAnyPeer: several or none).
  virtual int peer() const { return kAnyPeer; }
  // A Header or Control message matched by the flow's soft_post(); `data` is
  // valid during the call only.
  virtual void on_message(int, const uint8_t*, size_t) {}

  // Adds an operation slot; slots never move (deque).
  Ctx& slot(size_t i) {
    while (ctxs.size() <= i) {
      ctxs.emplace_back();
      ctxs.back().slot = ctxs.size() - 1;
    }
    return ctxs[i];
  }
  void fail(sparcl_status_t s, const std::string& m) {
    if (status != SPARCL_SUCCESS) return;
    status = s;
    message = m;
  }
  void check() const {
    if (status != SPARCL_SUCCESS) throw Error(status, message);
  }
  // Withdraws every operation still queued or on the provider.
  void cancel_all() {
    for (Ctx& c : ctxs)
      if (c.state != Ctx::Idle) e.cancel(c);
  }

  SharedEndpoint& e;
  // The communicator of the flow (none: the wildcard receives), kept alive
  // while the flow runs, also after the communicator is freed.
  std::shared_ptr<Member> owner;
  std::deque<Ctx> ctxs;
  int pending = 0;      // operations queued or posted
  bool orphan = false;  // the request is gone
  bool done = false;
  sparcl_status_t status = SPARCL_SUCCESS;
  std::string message;
};

namespace {

// Slots of a send: 0 header send, 1 clear-to-send receive, 2.. payload chunks.
class SendFlow final : public Flow {
 public:
  SendFlow(Member& member, int peer, const Tag& tag, SharedBuffer data)
      : Flow(member.endpoint(), member.shared_from_this()),
        t(member),
        peer_(peer),
        tag_(tag),
        data_(std::move(data)),
        size_(data_->size()) {}

  void start() {
    const bool inline_data = size_ <= kInlineBytes;
    if (!inline_data) {
      chunk_ = t.fabric().chunk_bytes;
      t.register_memory(mr_, data_->data(), size_, FI_SEND);
      cts_ = t.get_bounce();
    }
    header_ = t.get_bounce();
    if (inline_data) {
      if (size_ > 0) std::memcpy(header_->data.get() + kPrefixBytes, data_->data(), size_);
      data_.reset();  // copied
    } else {
      // The clear-to-send receive goes first, so that the answer is never unexpected.
      cts_id_ = t.next_transfer();
      t.submit(*this, slot(1), false, cts_->data.get(), kBounceBytes, cts_->mr.desc(), peer_,
               transfer_tag(Kind::Cts, cts_id_));
    }
    write_prefix(header_->data.get(), Prefix{kHeaderMagic, uint32_t(t.rank()), size_, inline_data ? 0 : chunk_, 0,
                                             t.key(tag_, Kind::Header), cts_id_});
    t.submit(*this, slot(0), true, header_->data.get(), kPrefixBytes + (inline_data ? size_ : 0),
             header_->mr.desc(), peer_, kHeaderWireTag, true);
  }

  void on_complete(Ctx& ctx, size_t len) override {
    if (ctx.slot == 0) {
      header_sent_ = true;
      t.unstall(peer_);
      t.put_bounce(std::move(header_));
    } else if (ctx.slot == 1) {
      const Prefix p = read_prefix(cts_->data.get());
      t.put_bounce(std::move(cts_));
      if (len != kPrefixBytes || p.magic != kCtsMagic || p.source != uint32_t(peer_) || p.size != size_ ||
          p.chunk != chunk_) {
        fail(SPARCL_ERR_CORRUPT, "libfabric " + t.fabric().provider + ": malformed clear-to-send from rank " +
                                     std::to_string(peer_));
        return cancel_all();
      }
      cts_received_ = true;
      const size_t n = chunks_of(size_, chunk_);
      for (size_t i = 0; i < n; ++i) {
        const size_t offset = i * chunk_;
        t.submit(*this, slot(2 + i), true, data_->data() + offset, std::min(chunk_, size_ - offset), mr_.desc(),
                 peer_, transfer_tag(Kind::Payload, p.transfer));
      }
    } else {
      ++chunks_sent_;
    }
    if (header_sent_ && (chunk_ == 0 || (cts_received_ && chunks_sent_ == chunks_of(size_, chunk_)))) {
      done = true;
      mr_.reset();
      data_.reset();
    }
  }

  void on_error(Ctx& ctx, int err, const std::string& what) override {
    const std::string text = "libfabric " + t.fabric().provider + ": " +
                             (ctx.slot == 1 ? "clear-to-send from" : "send to") + " rank " + std::to_string(peer_) +
                             " failed: " + what;
    if (!orphan) fail(is_peer_loss(err) ? SPARCL_ERR_PEER_FAILED : SPARCL_ERR_TRANSPORT, text);
    cancel_all();
    if (is_peer_loss(err)) t.peer_lost(peer_, text);
  }
  int peer() const override { return peer_; }

  // The request is dropped before completion: the flow finishes in the
  // background. A message that fits in the header message (an abort notice,
  // typically) is first handed to the provider, should it be pushing back
  // (-FI_EAGAIN): the caller may not call into sparcl again for a long time,
  // and its peers are waiting for it. (Not until it completes: a send to a
  // dead peer may never complete, and once posted the providers here move
  // it on their own or from the idle progress thread.)
  void drop() {
    orphan = true;
    if (done || chunk_ != 0 || status != SPARCL_SUCCESS) return;
    if (t.stalled(peer_)) return;  // it did not take the last one either: dead, most likely
    const auto deadline = Clock::now() + t.drop_linger();
    while (ctxs[0].state == Ctx::Queued && Clock::now() < deadline) {
      t.progress_locked();
      if (ctxs[0].state == Ctx::Queued) sched_yield();
    }
    if (ctxs[0].state == Ctx::Queued) t.stall(peer_);
  }

 private:
  Member& t;
  int peer_;
  Tag tag_;
  SharedBuffer data_;
  size_t size_;
  size_t chunk_ = 0;  // 0: the data travels inside the header message
  uint64_t cts_id_ = 0;
  std::unique_ptr<Bounce> header_, cts_;
  Mr mr_;
  bool header_sent_ = false, cts_received_ = false;
  size_t chunks_sent_ = 0;
};

// A receive: the header arrives through software matching (soft_post);
// slots: 1 clear-to-send send, 2.. payload chunks.
class RecvFlow final : public Flow {
 public:
  RecvFlow(Member& member, int peer, const Tag& tag)
      : Flow(member.endpoint(), member.shared_from_this()), t(member), peer_(peer), tag_(tag) {}

  void start() {
    t.soft_post(*this, peer_, t.key(tag_, Kind::Header));
    // What a lost peer sent before is still received; nothing more comes.
    if (!header_received_ && peer_ != kAnyPeer && t.lost(peer_))
      fail(SPARCL_ERR_PEER_FAILED, t.loss_of(peer_));
  }
  int peer() const override { return header_received_ ? source_ : peer_; }

  void on_message(int source, const uint8_t* data, size_t len) override {
    header_received_ = true;
    source_ = source;
    const std::string from = "libfabric " + t.fabric().provider + ": message from rank " + std::to_string(source);
    const Prefix p = read_prefix(data);  // arrive() checked magic, source and length >= kPrefixBytes
    size_ = p.size;
    const bool inline_data = size_ <= kInlineBytes;
    if (inline_data ? len != kPrefixBytes + size_ || p.chunk != 0 : len != kPrefixBytes || p.chunk == 0)
      return fail(SPARCL_ERR_CORRUPT, from + " has an inconsistent length");
    if (inline_data) {
      buffer_ = Buffer(size_);
      if (size_ > 0) std::memcpy(buffer_.data(), data + kPrefixBytes, size_);
      done = true;
      return;
    }
    chunk_ = p.chunk;
    // Receive straight into the message's buffer; posted before the
    // clear-to-send, so the payload never arrives unexpected.
    const uint64_t payload_id = t.next_transfer();
    buffer_ = Buffer(size_);
    t.register_memory(mr_, buffer_.data(), size_, FI_RECV);
    cts_ = t.get_bounce();
    const size_t n = chunks_of(size_, chunk_);
    for (size_t i = 0; i < n; ++i) {
      const size_t offset = i * chunk_;
      t.submit(*this, slot(2 + i), false, buffer_.data() + offset, std::min(chunk_, size_ - offset), mr_.desc(),
               source_, transfer_tag(Kind::Payload, payload_id));
    }
    write_prefix(cts_->data.get(), Prefix{kCtsMagic, uint32_t(t.rank()), size_, chunk_, 0, 0, payload_id});
    t.submit(*this, slot(1), true, cts_->data.get(), kPrefixBytes, cts_->mr.desc(), source_,
             transfer_tag(Kind::Cts, p.transfer));
  }

  void on_complete(Ctx& ctx, size_t len) override {
    if (ctx.slot == 1) {
      t.put_bounce(std::move(cts_));
      return;
    }
    const size_t offset = (ctx.slot - 2) * chunk_;
    if (len != std::min(chunk_, size_ - offset))
      return fail(SPARCL_ERR_CORRUPT, "libfabric " + t.fabric().provider + ": payload chunk of " +
                                          std::to_string(len) + " bytes from rank " + std::to_string(source_) +
                                          ", expected " + std::to_string(std::min(chunk_, size_ - offset)));
    if (++chunks_received_ == chunks_of(size_, chunk_)) {
      done = true;
      mr_.reset();
      if (orphan) buffer_ = Buffer();
    }
  }

  void on_error(Ctx& ctx, int err, const std::string& what) override {
    // Payload receives stay posted: the sender, answered already, sends the
    // payload, which must not arrive unexpected (unless the sender is gone).
    const std::string text = "libfabric " + t.fabric().provider + ": " +
                             (ctx.slot == 1 ? "clear-to-send to" : "receive from") + " rank " +
                             std::to_string(source_) + " failed: " + what;
    fail(is_peer_loss(err) ? SPARCL_ERR_PEER_FAILED : SPARCL_ERR_TRANSPORT, text);
    if (is_peer_loss(err)) t.peer_lost(source_, text);
  }

  // The request is dropped before completion. Before its header has arrived
  // it is simply withdrawn; afterwards the message is ours: it is received in
  // the background and discarded (as MPI_Imrecv after MPI_Improbe would be).
  void withdraw() {
    orphan = true;
    if (!header_received_)
      t.soft_cancel(*this, t.key(tag_, Kind::Header));
    else if (done)
      buffer_ = Buffer();
  }

  Buffer take() { return std::move(buffer_); }
  int source() const { return source_; }

 private:
  Member& t;
  int peer_;
  Tag tag_;
  int source_ = -1;
  std::unique_ptr<Bounce> cts_;
  Buffer buffer_;
  Mr mr_;
  size_t size_ = 0, chunk_ = 0, chunks_received_ = 0;
  bool header_received_ = false;
};

// A message to and from every other rank: the wire-up of connect() and the
// barrier of close(). The messages arrive through software matching; slot p
// sends to rank p.
class BarrierFlow final : public Flow {
 public:
  BarrierFlow(Member& member, uint32_t magic, uint64_t seq)
      : Flow(member.endpoint(), member.shared_from_this()),
        t(member),
        magic_(magic),
        tag_(member.key(Tag{0, seq, false}, Kind::Control)) {}

  void start() {
    const size_t n = size_t(t.size());
    heard_.assign(n, false);
    heard_[size_t(t.rank())] = true;
    mem_.reset(new uint8_t[n * kPrefixBytes]);
    t.register_memory(mr_, mem_.get(), n * kPrefixBytes, FI_SEND);
    for (int p = 0; p < t.size(); ++p) {
      if (p == t.rank()) continue;
      left_ += 2;
      uint8_t* msg = mem_.get() + size_t(p) * kPrefixBytes;
      write_prefix(msg, Prefix{magic_, uint32_t(t.rank()), 0, 0, 0, tag_, 0});
      t.submit(*this, slot(size_t(p)), true, msg, kPrefixBytes, mr_.desc(), p, kHeaderWireTag, true);
    }
    for (int p = 0; p < t.size(); ++p)
      if (p != t.rank()) t.soft_post(*this, p, tag_);
  }
  void on_message(int source, const uint8_t* data, size_t len) override {
    --left_;
    if (len == kPrefixBytes && read_prefix(data).magic == magic_)
      heard_[size_t(source)] = true;
    else
      fail(SPARCL_ERR_CORRUPT, "libfabric " + t.fabric().provider + ": malformed control message from rank " +
                                   std::to_string(source));
  }
  void on_complete(Ctx&, size_t) override { --left_; }
  void on_error(Ctx& ctx, int err, const std::string& what) override {
    --left_;  // a peer that is gone
    const std::string text =
        "libfabric " + t.fabric().provider + ": send to rank " + std::to_string(ctx.slot) + " failed: " + what;
    if (!orphan) fail(SPARCL_ERR_TRANSPORT, text);
    if (is_peer_loss(err)) t.peer_lost(int(ctx.slot), text);
  }
  bool finished() const { return left_ == 0; }
  // Ends the barrier: withdraws the receives still waiting.
  void stop() {
    orphan = true;
    for (int p = 0; p < t.size(); ++p)
      if (!heard_[size_t(p)]) t.soft_cancel(*this, tag_);
  }
  // The ranks not heard from, e.g. "1, 3".
  std::string missing() const {
    std::string s;
    for (size_t p = 0; p < heard_.size(); ++p)
      if (!heard_[p]) s += (s.empty() ? "" : ", ") + std::to_string(p);
    return s;
  }

 private:
  Member& t;
  uint32_t magic_;
  uint64_t tag_;
  std::unique_ptr<uint8_t[]> mem_;
  std::vector<bool> heard_;
  Mr mr_;
  int left_ = 0;
};

}  // namespace

// The wildcard receives: every Header and Control message lands in one of
// them, so the provider never holds an unexpected message (ofi_rxd, for one,
// would hold back every later message from that peer until it is matched).
// Slot i receives into bounce i and is posted again once its message is handled.
class PoolFlow final : public Flow {
 public:
  PoolFlow(SharedEndpoint& endpoint, std::deque<Post>& wildcards)
      : Flow(endpoint, nullptr), wildcards_(&wildcards) {}

  void start(size_t n) {
    for (size_t i = 0; i < n; ++i) {
      bounces_.push_back(e.get_bounce());
      post(i);
    }
  }
  void on_complete(Ctx& ctx, size_t len) override {
    try {
      e.arrive(bounces_[ctx.slot]->data.get(), len);
    } catch (const std::exception& x) {  // out of memory, most likely: the pool itself goes on
      e.fail_everything("libfabric " + e.fabric().provider + ": " + x.what());
    }
    post(ctx.slot);
  }
  void on_error(Ctx& ctx, int err, const std::string& what) override {
    if (err == FI_ECANCELED) return;
    e.fail_everything("libfabric " + e.fabric().provider + ": receive failed: " + what +
                      (err == FI_ETRUNC ? " (a message larger than a header; another sparcl version?)" : ""));
    post(ctx.slot);
  }

 private:
  void post(size_t i) {
    Bounce& b = *bounces_[i];
    Ctx& ctx = slot(i);
    e.track(*this, ctx);
    wildcards_->push_back(Post{shared_from_this(), &ctx, false, b.data.get(), kBounceBytes, b.mr.desc(), kAnyPeer,
                               FI_ADDR_UNSPEC, kHeaderWireTag, false});
  }
  std::deque<Post>* wildcards_;  // the endpoint's queue of wildcard receives
  std::vector<std::unique_ptr<Bounce>> bounces_;
};

namespace {

class OfiSend final : public Request {
 public:
  explicit OfiSend(std::shared_ptr<SendFlow> f) : f_(std::move(f)) {}
  ~OfiSend() override {
    try {
      auto lock = f_->owner->guard();
      f_->drop();
      f_.reset();  // under the lock: freeing a flow closes memory registrations
    } catch (...) {
      // never throw from a destructor; the flow finishes in the background
    }
  }
  bool test() override {
    auto lock = f_->owner->guard();
    f_->check();
    return f_->done;
  }

 private:
  std::shared_ptr<SendFlow> f_;
};

class OfiRecv final : public RecvRequest {
 public:
  explicit OfiRecv(std::shared_ptr<RecvFlow> f) : f_(std::move(f)) {}
  ~OfiRecv() override {
    try {
      auto lock = f_->owner->guard();
      f_->withdraw();
      f_.reset();  // under the lock: freeing a flow closes memory registrations
    } catch (...) {
      // never throw from a destructor; the flow finishes in the background
    }
  }
  bool test() override {
    auto lock = f_->owner->guard();
    f_->check();
    return f_->done;
  }
  Buffer take() override {
    auto lock = f_->owner->guard();
    return f_->take();
  }
  int source() const override {
    auto lock = f_->owner->guard();
    return f_->source();
  }

 private:
  std::shared_ptr<RecvFlow> f_;
};

}  // namespace

// ---------------------------------------------------------------------------
// Fabric and memory

void Mr::reset() {
  if (mr_) fi_close(&mr_->fid);
  mr_ = nullptr;
  desc_ = nullptr;
}

void Fabric::close_endpoint() {
  if (ep) fi_close(&ep->fid);
  ep = nullptr;
}

Fabric::~Fabric() {
  close_endpoint();
  if (av) fi_close(&av->fid);
  if (cq) fi_close(&cq->fid);
  if (domain) fi_close(&domain->fid);
  if (fabric) fi_close(&fabric->fid);
  if (info) fi_freeinfo(info);
#ifdef __GLIBC__
  // The provider's pools of this endpoint came from the heap and leave it
  // fragmented behind later allocations: hand the freed pages back.
  malloc_trim(0);
#endif
}

// ---------------------------------------------------------------------------
// Shared endpoint

namespace {

// The endpoints this process has open, by provider: communicators created
// while one is open use it. The pid tells a forked child that an endpoint is
// its parent's (whose connections and threads it does not have).
struct RegistryEntry {
  pid_t pid = 0;
  std::weak_ptr<SharedEndpoint> endpoint;
};
std::mutex registry_mutex;
std::map<std::string, RegistryEntry> registry;

// libfabric's shm provider (1.17) names the shared-memory region of an
// endpoint after the process id (/dev/shm/<pid>:<n>:<n>) and maps a file of
// that name that already exists as its own. A process that died without
// closing its endpoint (killed, crashed) leaves its file behind, and process
// ids are reused (pid_max is 32768 by default), so a later process with the
// same id failed to open its endpoint or died of SIGBUS mapping the stale
// file. Before a process opens its first shm endpoint no region of its id
// can be live: any file of that name is stale. Called under registry_mutex.
void remove_stale_shm_regions(const std::string& provider) {
  if (provider.find("shm") == std::string::npos) return;
  for (const auto& [name, entry] : registry)
    if (name.find("shm") != std::string::npos && entry.pid == getpid() && !entry.endpoint.expired()) return;
  const std::string prefix = std::to_string(getpid()) + ":";
  DIR* dir = opendir("/dev/shm");
  if (!dir) return;
  while (const dirent* file = readdir(dir)) {
    const std::string name = file->d_name;
    if (name.compare(0, prefix.size(), prefix) == 0 &&
        name.find_first_not_of("0123456789:", prefix.size()) == std::string::npos)
      unlink(("/dev/shm/" + name).c_str());
  }
  closedir(dir);
}

}  // namespace

std::shared_ptr<SharedEndpoint> SharedEndpoint::acquire(const Config& config) {
  std::lock_guard<std::mutex> registry_lock(registry_mutex);
  RegistryEntry& entry = registry[config.ofi_provider];
  if (entry.pid == getpid())
    if (std::shared_ptr<SharedEndpoint> open = entry.endpoint.lock()) return open;
  remove_stale_shm_regions(config.ofi_provider);
  auto endpoint = std::make_shared<SharedEndpoint>(open_fabric(config.ofi_provider));
  endpoint->start();
  entry.pid = getpid();
  entry.endpoint = endpoint;
  return endpoint;
}

SharedEndpoint::SharedEndpoint(std::unique_ptr<Fabric> fabric) : fab_(std::move(fabric)) {}

void SharedEndpoint::start() {
  {
    auto lock = guard();
    pool_ = std::make_shared<PoolFlow>(*this, wildcard_queue_);
    pool_->start(fab_->wildcards);
    flush();
  }
  if (fab_->idle_progress.count() > 0) keeper_ = std::thread([this] { keep_progressing(); });
}

SharedEndpoint::~SharedEndpoint() {
  try {
    stop_keeper();
    // The endpoint goes first: afterwards the provider touches none of our
    // buffers, and flows (with their registrations) can be freed.
    fab_->close_endpoint();
    wildcard_queue_.clear();
    live_.clear();
    pool_.reset();
    claims_.clear();
    bounces_.clear();
    fab_.reset();
  } catch (...) {
  }
}

std::string SharedEndpoint::describe(int err) const {
  return "libfabric " + fab_->provider + ": " + error_text(err);
}

bool SharedEndpoint::claim(uint32_t id) {
  auto lock = guard();
  return claims_.emplace(id & kCommMask, Claim{}).second;
}

void SharedEndpoint::unclaim(uint32_t id) {
  auto lock = guard();
  auto it = claims_.find(id & kCommMask);
  if (it != claims_.end() && !it->second.member) claims_.erase(it);
}

void SharedEndpoint::attach(Member& member) {
  Claim& claim = claims_.at(member.id());
  claim.member = &member;
  members_.push_back(&member);
  for (int r = 0; r < member.size(); ++r) {
    auto it = lost_.find(member.address_of(r));
    if (it != lost_.end()) member.mark_lost(r, it->second);
  }
  if (!claim.failure.empty()) member.fail_all(claim.failure);
  // Peers that were faster may have sent already (their wire-up message).
  std::vector<std::vector<uint8_t>> early = std::move(claim.early);
  for (const std::vector<uint8_t>& m : early) member.arrive(m.data(), m.size());
}

void SharedEndpoint::detach(Member& member) {
  members_.erase(std::remove(members_.begin(), members_.end(), &member), members_.end());
  auto it = claims_.find(member.id());
  if (it != claims_.end() && it->second.member == &member) claims_.erase(it);
  member.detach();
  for (fi_addr_t addr : member.addresses()) release_address(addr);
}

fi_addr_t SharedEndpoint::map_address(const std::vector<uint8_t>& address) {
  auto it = peers_.find(address);
  if (it != peers_.end()) {
    ++it->second.users;
    return it->second.addr;
  }
  fi_addr_t addr = FI_ADDR_NOTAVAIL;
  const int n = fi_av_insert(fab_->av, address.data(), 1, &addr, 0, nullptr);
  if (n != 1)
    fail(SPARCL_ERR_TRANSPORT, "libfabric " + fab_->provider + ": fi_av_insert failed" +
                                   (n < 0 ? ": " + error_text(n) : std::string()));
  peers_.emplace(address, Peer{addr, 1});
  return addr;
}

void SharedEndpoint::release_address(fi_addr_t addr) {
  for (auto it = peers_.begin(); it != peers_.end(); ++it) {
    if (it->second.addr != addr) continue;
    if (--it->second.users == 0) {
      // No communicator reaches that process any more: what was learnt about
      // it goes (a process that comes back at that address is another). The
      // AV entry stays: operations to it may still be outstanding, and a
      // later insert of the same address gets it back.
      lost_.erase(addr);
      stalled_.erase(addr);
      peers_.erase(it);
    }
    return;
  }
}

std::unique_ptr<Bounce> SharedEndpoint::get_bounce() {
  if (!bounces_.empty()) {
    std::unique_ptr<Bounce> b = std::move(bounces_.back());
    bounces_.pop_back();
    return b;
  }
  auto b = std::make_unique<Bounce>();
  b->data.reset(new (std::nothrow) uint8_t[kBounceBytes]);
  if (!b->data) fail(SPARCL_ERR_NO_MEMORY, "cannot allocate a message buffer");
  register_memory(b->mr, b->data.get(), kBounceBytes, FI_SEND | FI_RECV);
  return b;
}

void SharedEndpoint::put_bounce(std::unique_ptr<Bounce> b) {
  if (b && bounces_.size() < kBouncePool) bounces_.push_back(std::move(b));
}

void SharedEndpoint::register_memory(Mr& mr, void* data, size_t bytes, uint64_t access) {
  mr.reset();
  if (!fab_->local_mr || bytes == 0) return;
  const uint64_t key = fab_->prov_key ? 0 : next_key_++;
  const int rc = fi_mr_reg(fab_->domain, data, bytes, access, 0, key, 0, &mr.mr_, nullptr);
  if (rc != 0) {
    mr.mr_ = nullptr;
    fail(rc == -FI_ENOMEM ? SPARCL_ERR_NO_MEMORY : SPARCL_ERR_TRANSPORT,
         describe(rc) + " (fi_mr_reg of " + std::to_string(bytes) + " bytes)");
  }
  mr.desc_ = fi_mr_desc(mr.mr_);
}

void SharedEndpoint::track(Flow& flow, Ctx& ctx) {
  ctx.flow = &flow;
  ctx.state = Ctx::Queued;
  ctx.cancel_requested = false;
  if (flow.pending++ == 0) live_.emplace(&flow, flow.shared_from_this());
}

void SharedEndpoint::release(Flow& flow) {
  if (--flow.pending == 0) live_.erase(&flow);  // may free the flow
}

void SharedEndpoint::cancel(Ctx& ctx) {
  if (ctx.state == Ctx::Queued) {
    ctx.state = Ctx::Idle;  // flush() skips it
    release(*ctx.flow);
  } else if (ctx.state == Ctx::Posted && !ctx.cancel_requested) {
    ctx.cancel_requested = true;
    // Completes with FI_ECANCELED, or normally if it matched already. Names
    // this one operation: other communicators' posts stay.
    fi_cancel(&fab_->ep->fid, &ctx.fi);
  }
}

void SharedEndpoint::flush() {
  if (flushing_ || !fab_->ep) return;
  flushing_ = true;
  struct Reset {
    bool& b;
    ~Reset() { b = false; }
  } reset{flushing_};
  int stalls = 0;
  post_queue(wildcard_queue_, nullptr, stalls);
  // One queue per communicator and peer: a peer whose posts the provider
  // refuses (a dead one, while rxm keeps reconnecting) holds up its own
  // queues only.
  for (Member* m : members_)
    for (std::deque<Post>& queue : m->queues()) post_queue(queue, m, stalls);
}

void SharedEndpoint::post_queue(std::deque<Post>& queue, Member* owner, int& stalls) {
  int queue_stalls = 0;
  while (!queue.empty()) {
    Post p = queue.front();
    if (p.ctx->state != Ctx::Queued) {  // withdrawn while queued
      queue.pop_front();
      continue;
    }
    if (owner && owner->lost(p.peer)) {  // nothing more goes to a lost peer
      queue.pop_front();
      p.ctx->state = Ctx::Idle;
      release(*p.flow);
      continue;
    }
    // The order stamp is taken when the message is handed to the provider, so
    // that a message withdrawn while queued leaves no gap in the sequence.
    if (p.stamped) {
      const uint64_t order = owner->next_order(p.peer);
      std::memcpy(static_cast<uint8_t*>(p.buf) + kOrderOffset, &order, sizeof order);
    }
    const ssize_t rc = p.send ? fi_tsend(fab_->ep, p.buf, p.len, p.desc, p.addr, p.tag, &p.ctx->fi)
                              : fi_trecv(fab_->ep, p.buf, p.len, p.desc, p.addr, p.tag, 0, &p.ctx->fi);
    if (rc == 0) {
      if (p.stamped) owner->count_order(p.peer);
      p.ctx->state = Ctx::Posted;
      queue.pop_front();
      queue_stalls = 0;
      continue;
    }
    if (rc == -FI_EAGAIN) {
      // Out of resources: completions free them; retried once after a read
      // of the completion queue, then on the next call.
      if (++queue_stalls > 1 || ++stalls > kMaxStalls) break;
      poll();
      continue;
    }
    queue.pop_front();
    p.ctx->state = Ctx::Idle;
    Flow& f = *p.flow;
    const std::string what =
        describe(int(rc)) + (p.send ? " (fi_tsend" : " (fi_trecv") + " of " + std::to_string(p.len) + " bytes)";
    if (&f == pool_.get()) {
      fail_everything(what);  // no more wildcard receive in this slot: nothing is safe now
    } else {
      if (!f.orphan) f.fail(SPARCL_ERR_TRANSPORT, what);
      f.cancel_all();
    }
    release(f);
  }
}

bool SharedEndpoint::poll() {
  if (!fab_->cq) return false;
  fi_cq_tagged_entry entries[32];
  const ssize_t n = fi_cq_read(fab_->cq, entries, 32);
  if (n > 0) {
    for (ssize_t i = 0; i < n; ++i)
      if (entries[i].op_context)
        complete(ctx_of(entries[i].op_context), true, entries[i].len, 0, std::string());
    return true;
  }
  if (n == -FI_EAGAIN) return false;
  if (n == -FI_EAVAIL) {
    fi_cq_err_entry err{};
    const ssize_t r = fi_cq_readerr(fab_->cq, &err, 0);
    if (r <= 0) return false;
    char text[256] = {0};
    const char* detail = fi_cq_strerror(fab_->cq, err.prov_errno, err.err_data, text, sizeof text);
    std::string what = error_text(err.err);
    if (detail && *detail) what += std::string(" (") + detail + ")";
    if (err.op_context) complete(ctx_of(err.op_context), false, err.len, err.err, what);
    return true;
  }
  fail_everything(describe(int(n)) + " (fi_cq_read)");
  return false;
}

void SharedEndpoint::complete(Ctx& ctx, bool ok, size_t len, int err, const std::string& what) {
  if (ctx.state != Ctx::Posted) return;
  Flow& f = *ctx.flow;
  std::shared_ptr<Flow> keep = f.shared_from_this();
  ctx.state = Ctx::Idle;
  ctx.cancel_requested = false;
  --f.pending;
  try {
    if (ok)
      f.on_complete(ctx, len);
    else
      f.on_error(ctx, err, what);
  } catch (const Error& e) {
    f.fail(e.status(), e.what());
    f.cancel_all();
  } catch (const std::bad_alloc&) {
    f.fail(SPARCL_ERR_NO_MEMORY, "out of memory receiving a message");
    f.cancel_all();
  } catch (const std::exception& e) {
    f.fail(SPARCL_ERR_INTERNAL, e.what());
    f.cancel_all();
  }
  if (f.pending == 0) live_.erase(&f);
}

void SharedEndpoint::fail_everything(const std::string& message) {
  if (broken_.empty()) broken_ = message;
  for (auto& entry : live_) entry.second->fail(SPARCL_ERR_TRANSPORT, message);
  for (Member* m : members_) m->fail_all(message);
}

void SharedEndpoint::peer_lost(fi_addr_t addr, const std::string& why) {
  // A process that no communicator reaches any more (an operation of a freed
  // one failed late) is not remembered: a process at that address later is
  // another.
  const bool mapped = std::any_of(peers_.begin(), peers_.end(), [&](const auto& p) { return p.second.addr == addr; });
  if (!mapped || !lost_.emplace(addr, why).second) return;
  // Collected first: failing flows may not change members_, but stay safe.
  const std::vector<Member*> members = members_;
  for (Member* m : members)
    for (int r = 0; r < m->size(); ++r)
      if (r != m->rank() && m->address_of(r) == addr) m->mark_lost(r, why);
}

void SharedEndpoint::arrive(const uint8_t* data, size_t len) {
  const Prefix p = len >= kPrefixBytes ? read_prefix(data) : Prefix{0, 0, 0, 0, 0, 0, 0};
  const bool known = p.magic == kHeaderMagic ? kind_of(p.key) == Kind::Header
                                             : (p.magic == kCloseMagic || p.magic == kWireUpMagic) &&
                                                   kind_of(p.key) == Kind::Control;
  if (!known)
    return fail_everything("libfabric " + fab_->provider +
                           ": malformed message received (another sparcl version, or not sparcl?)");
  auto it = claims_.find(comm_of(p.key));
  // No communicator of this process holds the id: a late message of one that
  // was freed or aborted here (every rank claims a new communicator's id
  // before any rank sends with it).
  if (it == claims_.end()) return;
  Claim& claim = it->second;
  try {
    if (claim.member)
      claim.member->arrive(data, len);
    else if (claim.failure.empty())
      claim.early.emplace_back(data, data + len);
  } catch (const std::exception& x) {
    // Out of memory, most likely: that communicator lost a message and
    // fails; the others go on.
    const std::string what = "libfabric " + fab_->provider + ": " + x.what() + " receiving a message";
    if (claim.member)
      claim.member->fail_all(what);
    else
      claim.failure = what;
  }
}

void SharedEndpoint::progress_locked() {
  flush();
  for (int i = 0; i < 64 && poll(); ++i) {
  }
  flush();
}

void SharedEndpoint::note_progress() {
  if (keeper_.joinable()) last_progress_ = Clock::now();  // only the idle progress thread reads it
}

void SharedEndpoint::keep_progressing() {
  auto lock = guard();
  while (!stop_) {
    wake_.wait_for(lock, fab_->idle_progress);
    if (!stop_ && Clock::now() - last_progress_ >= fab_->idle_progress) progress_locked();
  }
}

void SharedEndpoint::stop_keeper() {
  if (!keeper_.joinable()) return;
  {
    auto lock = guard();
    stop_ = true;
  }
  wake_.notify_all();
  keeper_.join();
}

// ---------------------------------------------------------------------------
// A communicator's share

Member::Member(SharedEndpoint& endpoint, uint32_t id, int rank, int size, std::vector<fi_addr_t> addrs,
               std::chrono::milliseconds drop_linger)
    : e_(endpoint),
      id_(id & kCommMask),
      rank_(rank),
      size_(size),
      addrs_(std::move(addrs)),
      drop_linger_(drop_linger),
      queues_(size_t(size)),
      next_out_(size_t(size), 0),
      next_in_(size_t(size), 0),
      lost_(size_t(size)),
      early_(size_t(size)) {}

void Member::submit(Flow& flow, Ctx& ctx, bool send, void* buf, size_t len, void* desc, int peer, uint64_t tag,
                    bool stamped) {
  // A flow that outlives its communicator (a large send answered after the
  // free) sends nothing more.
  if (detached_) fail(SPARCL_ERR_TRANSPORT, "libfabric " + fabric().provider + ": the communicator was freed");
  e_.track(flow, ctx);
  queues_[size_t(peer)].push_back(
      Post{flow.shared_from_this(), &ctx, send, buf, len, desc, peer, addrs_[size_t(peer)], tag, stamped});
}

void Member::detach() {
  detached_ = true;
  // Collected first: cancelling changes the endpoint's live flows.
  std::vector<std::shared_ptr<Flow>> mine;
  for (const auto& entry : e_.live())
    if (entry.second->owner.get() == this) mine.push_back(entry.second);
  for (auto& f : mine) {
    f->orphan = true;
    f->cancel_all();
  }
  // What still refers to flows goes, so that flows and member do not keep
  // each other alive.
  queues_.assign(queues_.size(), std::deque<Post>());
  posted_.clear();
  unexpected_.clear();
  early_.assign(early_.size(), std::map<uint64_t, Message>());
}

void Member::fail_all(const std::string& message) {
  if (broken_.empty()) broken_ = message;
  for (const auto& entry : e_.live())
    if (entry.second->owner.get() == this) entry.second->fail(SPARCL_ERR_TRANSPORT, message);
  for (auto& entry : posted_)
    for (SoftRecv& r : entry.second) r.flow->fail(SPARCL_ERR_TRANSPORT, message);
}

void Member::check_usable() const {
  if (!e_.broken().empty()) fail(SPARCL_ERR_TRANSPORT, e_.broken());
  if (!broken_.empty()) fail(SPARCL_ERR_TRANSPORT, broken_);
}

void Member::mark_lost(int peer, const std::string& why) {
  if (peer < 0 || peer >= size_ || lost(peer)) return;
  lost_[size_t(peer)] = why + "; rank " + std::to_string(peer) + " is taken for gone";
  // Nothing more goes to it (a send to a lost peer makes rxm reconnect, over
  // and over), and nothing more comes from it: its flows fail. Collected
  // first: failing them changes the live flows and the queues.
  std::vector<std::shared_ptr<Flow>> victims;
  for (const Post& p : queues_[size_t(peer)])
    if (p.ctx->state == Ctx::Queued && p.flow->peer() == peer) victims.push_back(p.flow);
  for (const auto& entry : e_.live())
    if (entry.second->owner.get() == this && entry.second->peer() == peer && !entry.second->done)
      victims.push_back(entry.second);
  for (auto& entry : posted_)
    for (SoftRecv& r : entry.second)
      if (r.peer == peer) victims.push_back(r.flow);
  for (auto& f : victims) {
    f->fail(SPARCL_ERR_PEER_FAILED, lost_[size_t(peer)]);
    f->cancel_all();
  }
}

void Member::soft_post(Flow& flow, int peer, uint64_t tag) {
  auto it = unexpected_.find(tag);
  if (it != unexpected_.end()) {
    std::deque<Message>& waiting = it->second;
    for (auto m = waiting.begin(); m != waiting.end(); ++m) {
      if (peer != kAnyPeer && m->source != peer) continue;
      Message msg = std::move(*m);
      waiting.erase(m);
      if (waiting.empty()) unexpected_.erase(it);
      flow.on_message(msg.source, msg.bytes.data(), msg.bytes.size());
      return;
    }
  }
  posted_[tag].push_back(SoftRecv{flow.shared_from_this(), peer});
}

void Member::soft_cancel(Flow& flow, uint64_t tag) {
  auto it = posted_.find(tag);
  if (it == posted_.end()) return;
  std::deque<SoftRecv>& list = it->second;
  for (auto r = list.begin(); r != list.end(); ++r) {
    if (r->flow.get() != &flow) continue;
    std::shared_ptr<Flow> keep = std::move(r->flow);  // freed after the erase, outside the list
    list.erase(r);
    if (list.empty()) posted_.erase(it);
    return;
  }
}

void Member::arrive(const uint8_t* data, size_t len) {
  const Prefix p = read_prefix(data);  // the endpoint checked the length, magic and kind
  const uint64_t tag = p.key;
  if (p.source >= uint32_t(size_))
    return fail_all("libfabric " + fabric().provider + ": message from rank " + std::to_string(p.source) +
                    ", which is not a peer in this communicator of " + std::to_string(size_) + " ranks");
  const size_t src = p.source;
  // Completions need not come in the order of arrival (FI_ORDER_SAS orders the
  // matching, not the completions): the order stamp restores it per sender.
  if (p.order != next_in_[src]) {
    if (p.order < next_in_[src] || early_[src].count(p.order))
      return fail_all("libfabric " + fabric().provider + ": message from rank " + std::to_string(src) +
                      " out of sequence");
    early_[src].emplace(p.order, Message{int(src), tag, std::vector<uint8_t>(data, data + len)});
    return;
  }
  ++next_in_[src];
  deliver(int(src), tag, data, len);
  auto& early = early_[src];
  while (!early.empty() && early.begin()->first == next_in_[src]) {
    Message m = std::move(early.begin()->second);
    early.erase(early.begin());
    ++next_in_[src];
    deliver(m.source, m.tag, m.bytes.data(), m.bytes.size());
  }
}

void Member::deliver(int source, uint64_t tag, const uint8_t* data, size_t len) {
  auto it = posted_.find(tag);
  if (it != posted_.end()) {
    std::deque<SoftRecv>& list = it->second;
    for (auto r = list.begin(); r != list.end(); ++r) {
      if (r->peer != kAnyPeer && r->peer != source) continue;
      std::shared_ptr<Flow> flow = std::move(r->flow);
      list.erase(r);
      if (list.empty()) posted_.erase(it);
      try {
        flow->on_message(source, data, len);
      } catch (const Error& e) {
        flow->fail(e.status(), e.what());
        flow->cancel_all();
      } catch (const std::bad_alloc&) {
        flow->fail(SPARCL_ERR_NO_MEMORY, "out of memory receiving a message");
        flow->cancel_all();
      } catch (const std::exception& e) {
        flow->fail(SPARCL_ERR_INTERNAL, e.what());
        flow->cancel_all();
      }
      return;
    }
  }
  unexpected_[tag].push_back(Message{source, tag, std::vector<uint8_t>(data, data + len)});
}

std::unique_ptr<Request> Member::isend(int peer, const Tag& tag, SharedBuffer data) {
  auto lock = guard();
  if (peer < 0 || peer >= size_) fail(SPARCL_ERR_INTERNAL, "send to rank " + std::to_string(peer) + " out of range");
  check_usable();
  if (lost(peer)) fail(SPARCL_ERR_PEER_FAILED, loss_of(peer));
  if (!data) data = std::make_shared<Buffer>();
  auto f = std::make_shared<SendFlow>(*this, peer, tag, std::move(data));
  f->start();
  e_.flush();
  return std::make_unique<OfiSend>(std::move(f));
}

std::unique_ptr<RecvRequest> Member::irecv(int peer, const Tag& tag) {
  auto lock = guard();
  if (peer != kAnyPeer && (peer < 0 || peer >= size_))
    fail(SPARCL_ERR_INTERNAL, "receive from rank " + std::to_string(peer) + " out of range");
  check_usable();
  auto f = std::make_shared<RecvFlow>(*this, peer, tag);
  f->start();
  e_.flush();
  return std::make_unique<OfiRecv>(std::move(f));
}

void Member::progress() {
  auto lock = guard();
  e_.note_progress();
  e_.progress_locked();
}

std::string Member::barrier(std::unique_lock<std::mutex>& lock, bool wire_up) {
  auto flow = std::make_shared<BarrierFlow>(*this, wire_up ? kWireUpMagic : kCloseMagic,
                                            wire_up ? kWireUpSeq : kCloseSeq);
  flow->start();
  const auto deadline = Clock::now() + (wire_up ? Clock::duration(kWireUpTimeout) : Clock::duration(kCloseTimeout));
  for (;;) {
    e_.progress_locked();
    if (flow->finished() || Clock::now() > deadline) break;
    // Other communicators of the endpoint (other threads) go on meanwhile.
    lock.unlock();
    sched_yield();
    lock.lock();
  }
  std::string problem;
  if (flow->status != SPARCL_SUCCESS)
    problem = flow->message;
  else if (!flow->finished())
    problem = "libfabric " + fabric().provider + ": no answer from rank(s) " + flow->missing() + " within " +
              std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                 wire_up ? Clock::duration(kWireUpTimeout) : Clock::duration(kCloseTimeout))
                                 .count()) +
              " s" + (wire_up ? " while connecting" : " while closing");
  flow->stop();
  e_.progress_locked();
  return problem;
}

void Member::wire_up() {
  if (size_ < 2) return;
  auto lock = guard();
  const std::string problem = barrier(lock, true);
  if (!problem.empty()) fail(SPARCL_ERR_TRANSPORT, problem);
  check_usable();
}

void Member::close() {
  auto lock = guard();
  if (closed_) return;
  closed_ = true;
  if (size_ < 2 || !fabric().ep) return;
  try {
    // Every rank tells every other that it is done and waits to hear the
    // same, so that no rank frees what a peer still sends to.
    barrier(lock, false);
  } catch (...) {
    // close() must not throw; the destructor releases everything anyway
  }
}

// ---------------------------------------------------------------------------
// Transport

OfiTransport::OfiTransport(std::shared_ptr<SharedEndpoint> endpoint, std::shared_ptr<Member> member)
    : endpoint_(std::move(endpoint)), member_(std::move(member)) {}

OfiTransport::~OfiTransport() {
  try {
    {
      auto lock = endpoint_->guard();
      endpoint_->detach(*member_);
      member_.reset();  // under the lock: its last flows may go with it
    }
    endpoint_.reset();  // the last communicator closes the endpoint
  } catch (...) {
  }
}

}  // namespace ofi

// ---------------------------------------------------------------------------
// Endpoint

namespace {

// ofi_rxm allocates its bounce buffers per endpoint (one per process, see
// SharedEndpoint): pools of 1024 buffers of FI_OFI_RXM_BUFFER_SIZE (16 KiB
// by default) at fi_enable and one more per connection, plus pools sized by
// FI_OFI_RXM_MSG_TX_SIZE and _RX_SIZE (128): about 85 MiB per endpoint.
// sparcl keeps few messages in flight per peer, so queues of 32 suffice
// (35 MiB). The buffer size stays: it is also rxm's eager limit, and 4 KiB
// buffers (11 MiB) make an 8 KiB message 2.3 times slower
// (bench/results/ofi-comm-memory.txt). The provider reads these variables
// once, when libfabric is first used in the process; a value the user set
// is kept.
void limit_rxm_pools(const std::string& provider) {
  if (provider.find("ofi_rxm") == std::string::npos) return;
  setenv("FI_OFI_RXM_MSG_TX_SIZE", "32", 0);
  setenv("FI_OFI_RXM_MSG_RX_SIZE", "32", 0);
}

}  // namespace

std::unique_ptr<ofi::Fabric> ofi::open_fabric(const std::string& provider) {
  auto fab = std::make_unique<ofi::Fabric>();
  fab->provider = provider;
  auto check = [&](int rc, const char* call) {
    if (rc != 0)
      fail(rc == -FI_ENOMEM ? SPARCL_ERR_NO_MEMORY : SPARCL_ERR_TRANSPORT,
           "libfabric " + provider + ": " + call + " failed: " + ofi::error_text(rc));
  };

  struct Hints {
    fi_info* p = fi_allocinfo();
    ~Hints() {
      if (p) fi_freeinfo(p);
    }
  } hints;
  if (!hints.p) fail(SPARCL_ERR_NO_MEMORY, "fi_allocinfo failed");
  hints.p->ep_attr->type = FI_EP_RDM;
  hints.p->caps = FI_TAGGED | FI_DIRECTED_RECV;
  hints.p->mode = FI_CONTEXT | FI_CONTEXT2;
  hints.p->tx_attr->msg_order = FI_ORDER_SAS;
  hints.p->rx_attr->msg_order = FI_ORDER_SAS;
  hints.p->domain_attr->threading = FI_THREAD_DOMAIN;  // the endpoint's mutex serializes all calls
  // We read the completion queue often enough; providers that can do without
  // a progress thread (sockets) then do, which matters when ranks share cores.
  hints.p->domain_attr->control_progress = FI_PROGRESS_MANUAL;
  hints.p->domain_attr->data_progress = FI_PROGRESS_MANUAL;
  hints.p->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
  hints.p->fabric_attr->prov_name = strdup(provider.c_str());  // freed by fi_freeinfo
  if (!hints.p->fabric_attr->prov_name) fail(SPARCL_ERR_NO_MEMORY, "out of memory");

  limit_rxm_pools(provider);
  const int rc = fi_getinfo(FI_VERSION(FI_MAJOR_VERSION, FI_MINOR_VERSION), nullptr, nullptr, 0, hints.p, &fab->info);
  if (rc != 0 || !fab->info) {
    fab->info = nullptr;
    fail(rc == -FI_ENODATA || rc == 0 ? SPARCL_ERR_UNSUPPORTED : SPARCL_ERR_TRANSPORT,
         "libfabric provider '" + provider +
             "' offers no reliable tagged endpoint (FI_EP_RDM, FI_TAGGED, FI_DIRECTED_RECV, FI_ORDER_SAS) here "
             "(fi_getinfo: " + ofi::error_text(rc) +
             "); list the available providers with `fi_info -l` and choose one with SPARCL_OFI_PROVIDER, "
             "e.g. 'tcp;ofi_rxm' or 'shm'");
  }
  fi_info* info = fab->info;
  if (!(info->tx_attr->msg_order & FI_ORDER_SAS) || !(info->rx_attr->msg_order & FI_ORDER_SAS))
    fail(SPARCL_ERR_UNSUPPORTED, "libfabric provider '" + provider +
                                     "' does not deliver messages in order (FI_ORDER_SAS), which sparcl needs");
  fab->local_mr = (info->domain_attr->mr_mode & FI_MR_LOCAL) || ofi::env_flag("SPARCL_OFI_MR_LOCAL");
  fab->prov_key = (info->domain_attr->mr_mode & FI_MR_PROV_KEY) != 0;
  fab->chunk_bytes = ofi::env_size("SPARCL_OFI_CHUNK_BYTES", ofi::kDefaultChunkBytes);
  // A quarter of the receive queue, at most 64, for the wildcard receives.
  fab->wildcards = std::min<size_t>(64, std::max<size_t>(8, info->rx_attr->size / 4));
  if (info->ep_attr->max_msg_size > 0) fab->chunk_bytes = std::min(fab->chunk_bytes, info->ep_attr->max_msg_size);
  // Providers that run their reliability protocol in the process (ofi_rxd)
  // need the receiver to progress after its receive completed, or a lost
  // acknowledgement stalls the sender: give them the idle progress thread.
  const bool user_space_reliability = provider.find("rxd") != std::string::npos;
  fab->idle_progress = std::chrono::milliseconds(ofi::env_ms("SPARCL_OFI_IDLE_PROGRESS_MS", user_space_reliability ? 2 : 0));
  if (info->ep_attr->max_msg_size < ofi::kBounceBytes)
    fail(SPARCL_ERR_UNSUPPORTED, "libfabric provider '" + provider + "' limits messages to " +
                                     std::to_string(info->ep_attr->max_msg_size) + " bytes; sparcl needs " +
                                     std::to_string(ofi::kBounceBytes));

  check(fi_fabric(info->fabric_attr, &fab->fabric, nullptr), "fi_fabric");
  check(fi_domain(fab->fabric, info, &fab->domain, nullptr), "fi_domain");
  fi_cq_attr cq_attr{};
  cq_attr.format = FI_CQ_FORMAT_TAGGED;
  cq_attr.wait_obj = FI_WAIT_NONE;
  check(fi_cq_open(fab->domain, &cq_attr, &fab->cq, nullptr), "fi_cq_open");
  fi_av_attr av_attr{};
  av_attr.type = FI_AV_TABLE;
  check(fi_av_open(fab->domain, &av_attr, &fab->av, nullptr), "fi_av_open");
  check(fi_endpoint(fab->domain, info, &fab->ep, nullptr), "fi_endpoint");
  check(fi_ep_bind(fab->ep, &fab->av->fid, 0), "fi_ep_bind (address vector)");
  check(fi_ep_bind(fab->ep, &fab->cq->fid, FI_TRANSMIT | FI_RECV), "fi_ep_bind (completion queue)");
  check(fi_enable(fab->ep), "fi_enable");

  size_t len = 0;
  std::vector<uint8_t> name(256);
  for (;;) {
    len = name.size();
    const int r = fi_getname(&fab->ep->fid, name.data(), &len);
    if (r == 0) break;
    if (r != -FI_ETOOSMALL || len <= name.size()) check(r, "fi_getname");
    name.resize(len);
  }
  name.resize(len);
  if (info->addr_format == FI_ADDR_STR && (name.empty() || name.back() != 0)) name.push_back(0);
  fab->address = std::move(name);
  return fab;
}

namespace {

// A communicator's way onto its process's shared endpoint: holds the
// endpoint and the communicator id it claimed until connect() hands both to
// the transport.
class OfiEndpoint final : public Endpoint {
 public:
  explicit OfiEndpoint(const Config& config) : shared_(ofi::SharedEndpoint::acquire(config)) {
    if (config.timeout_ms > 0)
      drop_linger_ = std::min(drop_linger_, std::chrono::milliseconds(std::max<int64_t>(1, config.timeout_ms / 4)));
  }
  ~OfiEndpoint() override {
    if (claimed_) shared_->unclaim(id_);
  }
  OfiEndpoint(const OfiEndpoint&) = delete;
  OfiEndpoint& operator=(const OfiEndpoint&) = delete;

  std::vector<uint8_t> address() const override { return shared_->address(); }
  bool shared() const override { return true; }
  bool claim_id(uint32_t id) override;
  std::unique_ptr<Transport> connect(int rank, int size, const std::vector<std::vector<uint8_t>>& addresses) override;

 private:
  std::shared_ptr<ofi::SharedEndpoint> shared_;
  // How long a dropped small send (an abort notice) may wait to be posted:
  // 1 s, or a quarter of a shorter collective timeout, so that a rank that
  // gives up returns well within twice its timeout.
  std::chrono::milliseconds drop_linger_{1000};
  bool claimed_ = false;
  uint32_t id_ = 0;
};

bool OfiEndpoint::claim_id(uint32_t id) {
  if (!shared_) fail(SPARCL_ERR_INTERNAL, "libfabric endpoint already connected");
  if (claimed_) shared_->unclaim(id_);
  claimed_ = shared_->claim(id);
  id_ = id & ofi::kCommMask;
  return claimed_;
}

std::unique_ptr<Transport> OfiEndpoint::connect(int rank, int size, const std::vector<std::vector<uint8_t>>& addresses) {
  if (!shared_) fail(SPARCL_ERR_INTERNAL, "libfabric endpoint connected twice");
  if (!claimed_) fail(SPARCL_ERR_INTERNAL, "libfabric endpoint connected without a communicator id");
  if (size < 1 || rank < 0 || rank >= size || addresses.size() != size_t(size))
    fail(SPARCL_ERR_INTERNAL, "libfabric endpoint: bad rank, size or address list");
  const std::string& provider = shared_->fabric().provider;
  const bool strings = shared_->fabric().info->addr_format == FI_ADDR_STR;
  std::map<std::vector<uint8_t>, int> rank_at;
  for (int i = 0; i < size; ++i) {
    const std::vector<uint8_t>& a = addresses[size_t(i)];
    const bool fits = strings ? !a.empty() && a.back() == 0 : a.size() == shared_->address().size();
    if (!fits)
      fail(SPARCL_ERR_TRANSPORT, "libfabric " + provider + ": rank " + std::to_string(i) +
                                     " sent an address of another format (check SPARCL_OFI_PROVIDER on every rank)");
    // One endpoint per process: two ranks there would be one address.
    const auto seen = rank_at.emplace(a, i);
    if (!seen.second)
      fail(SPARCL_ERR_UNSUPPORTED, "libfabric " + provider + ": ranks " + std::to_string(seen.first->second) +
                                       " and " + std::to_string(i) +
                                       " are in one process; the libfabric transport takes one rank per process");
  }
  auto lock = shared_->guard();
  std::vector<fi_addr_t> addrs;
  addrs.reserve(size_t(size));
  try {
    for (int i = 0; i < size; ++i) addrs.push_back(shared_->map_address(addresses[size_t(i)]));
  } catch (...) {
    for (fi_addr_t a : addrs) shared_->release_address(a);
    throw;
  }
  auto member = std::make_shared<ofi::Member>(*shared_, id_, rank, size, std::move(addrs), drop_linger_);
  try {
    shared_->attach(*member);
  } catch (...) {  // out of memory handing it what came early: the endpoint must not keep it
    shared_->detach(*member);
    throw;
  }
  claimed_ = false;  // the transport's now: detached (and released) when it goes
  lock.unlock();
  auto transport = std::make_unique<ofi::OfiTransport>(std::move(shared_), std::move(member));
  // Every rank connects at once (create_comm calls connect on all ranks):
  // connections are made now, and an unreachable rank is reported now.
  transport->wire_up();
  return transport;
}

}  // namespace

std::unique_ptr<Endpoint> open_ofi_endpoint(const Config& config) { return std::make_unique<OfiEndpoint>(config); }

}  // namespace sparcl
