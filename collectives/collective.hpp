// SPDX-License-Identifier: BSD-3-Clause
// What the algorithms share: held streams, the allreduce and allgather
// operation types, and the factories that create each algorithm.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "../src/operation.hpp"
#include "../src/sparse.hpp"
#include "../src/wire.hpp"

namespace sparcl {

// A view plus whatever keeps its memory alive: the caller's input (nothing),
// a stream the algorithm built or decoded, or a received message. A view
// decoded from a received message (`message` set) is exactly what that
// message carries, so it can be forwarded without re-encoding.
template <class V, class I>
struct Held {
  View<V, I> view;
  std::shared_ptr<const Stream<V, I>> stream;
  SharedBuffer message;
  // Entries of `view` with a bit set, where already counted (set_entries()).
  uint64_t set_entries = kUncounted;

  static Held of_input(const View<V, I>& v) { return Held{v, nullptr, nullptr}; }
  static Held of_stream(Stream<V, I>&& s) {
    auto p = std::make_shared<const Stream<V, I>>(std::move(s));
    return Held{p->view(), p, nullptr, p->set_entries};
  }
  static Held of_message(const Received& r, Range expected) {
    Decoded<V, I> d = decode<V, I>(*r.buffer, r.header, expected, r.peer);
    return Held{d.view, std::move(d.stream), r.buffer};
  }
};

// Entries of `h` with a bit set (-0.0 counts, +0.0 does not): the same on
// every rank that holds the same values, whether it holds them sparse or
// dense. O(1) where counted before, else a pass over the entries.
template <class V, class I>
uint64_t set_entries(const Held<V, I>& h) {
  return h.set_entries != kUncounted ? h.set_entries : count_set_entries(h.view);
}

// A message this rank encoded, as its receivers will decode it: what the
// sender keeps of a piece it sent with a lossy encoding, so that it holds
// bitwise what they hold. Not forwardable (the message may still be in flight).
template <class V, class I>
Held<V, I> as_received(const SharedBuffer& sent, Range range, int self) {
  Decoded<V, I> d = decode<V, I>(*sent, read_header(*sent), range, self);
  if (d.stream) return Held<V, I>{d.view, std::move(d.stream), nullptr};
  return Held<V, I>::of_stream(to_stream(d.view));
}

// The message that sends `h` in `step`: a received message is forwarded as it
// is (step rewritten); anything else is encoded with `rounding_stream`
// by `encode_fn`, and with a lossy encoding `h` becomes what the receivers
// will decode.
template <class V, class I, class EncodeFn>
SharedBuffer send_and_keep(const Identity& id, uint16_t step, Held<V, I>& h, int self, EncodeFn&& encode_fn) {
  if (h.message) {
    set_step(*h.message, uint16_t(id.step_base + step));
    return h.message;
  }
  SharedBuffer msg = encode_fn(h.view);
  if (is_lossy(id.encoding)) h = as_received<V, I>(msg, h.view.range, self);
  return msg;
}

// Reports, for a piece of an allreduce's input that was encoded on its own
// (before anything was added to it), the values its receivers decode: entries
// [first, first + count) of the input, and their values as received.
template <class V>
using InputSentFn = std::function<void(size_t first, size_t count, const V* received)>;

// Sets `bytes` bytes at `p` to 0 with non-temporal stores where the CPU has
// them: a large output zeroed a block at a time would otherwise be read into
// the caches first (a small memset is not streamed), which doubled its
// memory traffic; only the scatter of the result's entries touches it again.
inline void zero_streaming(void* p, size_t bytes) {
#if defined(__SSE2__)
  auto* c = static_cast<unsigned char*>(p);
  const size_t head = std::min(bytes, size_t((16 - (reinterpret_cast<uintptr_t>(c) & 15)) & 15));
  std::memset(c, 0, head);
  c += head;
  bytes -= head;
  const __m128i zero = _mm_setzero_si128();
  for (; bytes >= 16; c += 16, bytes -= 16) _mm_stream_si128(reinterpret_cast<__m128i*>(c), zero);
  std::memset(c, 0, bytes);
  _mm_sfence();
#else
  std::memset(p, 0, bytes);
#endif
}

// Base of the allreduce algorithms: input in, disjoint result pieces out.
//
// With a lossy encoding every piece is encoded where it is sent and the
// sender keeps what it sent (message_for), so all ranks end bitwise alike.
template <class V, class I>
class AllreduceOp : public Operation {
 public:
  AllreduceOp(Transport& t, const Identity& id, const View<V, I>& input)
      : Operation(t, id), input_(input) {}
  // After success: pieces sorted by range that tile [0, dim).
  const std::vector<Held<V, I>>& pieces() const { return pieces_; }
  // Called for every piece of the input that goes out encoded on its own
  // (lossy encodings only), e.g. for error feedback.
  void report_input_sent(InputSentFn<V> fn) { input_sent_ = std::move(fn); }
  // The algorithm runs on `dense`, the densified form of `sparse`: pieces
  // of it that go out on their own are reported as entries of `sparse`.
  void run_on_densified(const View<V, I>& sparse, std::shared_ptr<const Stream<V, I>> dense) {
    sparse_input_ = sparse;
    densified_ = std::move(dense);
    dense_pieces_ = true;
  }
  // After success: the entries with a bit set of all ranks' inputs
  // together, where the algorithm saw every input (the allgather); 0 where
  // it did not.
  virtual uint64_t inputs_nonzeros() const { return 0; }
  // How the algorithm was chosen (auto overrides it).
  virtual sparcl_choice_t choice() const { return SPARCL_CHOSEN_BY_CONFIG; }
  // The caller's dense output (dim values), which the pieces are written to
  // after success: zeroed a block at a time while the operation waits for
  // messages, so that sparse pieces then only scatter their entries.
  void prepare_dense_output(V* out) { dense_out_ = out; }
  // How many values from the start of that output are zero already.
  uint64_t zeroed_output() const { return zeroed_; }
  // Whether the pieces will all be dense (then the output needs no zeroing).
  bool pieces_dense() const { return dense_pieces_; }
  bool idle_work() noexcept override {
    if (!dense_out_ || dense_pieces_ || zeroed_ >= id_.dim) return false;
    const uint64_t n = std::min<uint64_t>(kZeroBlock, id_.dim - zeroed_);
    zero_streaming(dense_out_ + zeroed_, n * sizeof(V));  // all bits 0: +0.0
    zeroed_ += n;
    return true;
  }

 protected:
  Range whole() const { return Range{0, id_.dim}; }
  bool lossy() const { return is_lossy(id_.encoding); }
  // `v` as a message of `round`, rounded with `stream`. For a piece that is
  // not kept (the receiver is the only one to use it).
  SharedBuffer encode_for(int round, const View<V, I>& v, uint64_t rounding_stream) const {
    SharedBuffer msg = encode(id_, uint16_t(round), v, rounding_stream);
    if (input_sent_ && lossy()) report_if_input(v, msg);
    return msg;
  }
  // `h` as a message of `round` for a piece the sender keeps (see send_and_keep).
  SharedBuffer message_for(int round, Held<V, I>& h, uint64_t rounding_stream) {
    return send_and_keep(id_, uint16_t(round), h, rank(),
                         [&](const View<V, I>& v) { return encode_for(round, v, rounding_stream); });
  }

  View<V, I> input_;
  std::vector<Held<V, I>> pieces_;
  InputSentFn<V> input_sent_;
  bool dense_pieces_ = false;  // the pieces will all be dense: a dense output needs no zeroing

 private:
  void report_if_input(const View<V, I>& v, const SharedBuffer& msg) const {
    std::less_equal<const V*> le;
    if (densified_ && v.dense && v.nnz && le(input_.val, v.val) && le(v.val + v.nnz, input_.val + input_.nnz)) {
      // A dense piece of the densified input: its entries are those of the
      // caller's sparse input inside the piece's range.
      const View<V, I> part = slice(sparse_input_, v.range);
      if (part.nnz == 0) return;
      const Held<V, I> got = as_received<V, I>(msg, v.range, rank());
      std::vector<V> at(part.nnz);
      for (size_t k = 0; k < part.nnz; ++k) at[k] = got.view.val[uint64_t(part.idx[k]) - v.range.begin];
      input_sent_(size_t(part.val - sparse_input_.val), part.nnz, at.data());
      return;
    }
    if (v.nnz == 0 || v.dense || input_.dense || !le(input_.val, v.val) || !le(v.val + v.nnz, input_.val + input_.nnz))
      return;
    const Held<V, I> got = as_received<V, I>(msg, v.range, rank());
    if (got.view.dense) {  // sent dense: pick the piece's entries
      std::vector<V> at(v.nnz);
      for (size_t k = 0; k < v.nnz; ++k) at[k] = got.view.val[uint64_t(v.idx[k]) - v.range.begin];
      input_sent_(size_t(v.val - input_.val), v.nnz, at.data());
    } else {
      input_sent_(size_t(v.val - input_.val), v.nnz, got.view.val);
    }
  }

  static constexpr uint64_t kZeroBlock = 32768;  // values zeroed per idle call: 128 KiB of float, in L2
  V* dense_out_ = nullptr;
  uint64_t zeroed_ = 0;
  View<V, I> sparse_input_;                        // with densified_: the caller's input
  std::shared_ptr<const Stream<V, I>> densified_;  // what input_ views, if the algorithm densified it
};

// How every rank's vector reaches every rank, for the sparse allgather and
// the allgather-based allreduce: up to kDirectGatherRanks ranks each sends
// its vector to all others in one round (latency-bound sizes pay one round,
// not P - 1); beyond, a ring of P - 1 steps that forwards received vectors
// as they came (one peer per step).
constexpr int kDirectGatherRanks = 16;
inline bool gather_is_direct(int ranks) { return ranks <= kDirectGatherRanks; }

// The steps of that exchange over `vectors` (rank order; this rank's own in
// place). `message_for(round, held)` makes the message that sends `held`
// (send_and_keep: this rank's own vector encoded and kept as its receivers
// will decode it, a received one forwarded as it came).
template <class V, class I>
struct GatherSteps {
  static int rounds(int ranks) { return ranks == 1 ? 0 : gather_is_direct(ranks) ? 1 : ranks - 1; }

  template <class MessageFn>
  static void post(int round, int rank, int ranks, std::vector<Held<V, I>>& vectors, RoundIO& io,
                   MessageFn&& message_for) {
    if (gather_is_direct(ranks)) {
      const SharedBuffer own = message_for(round, vectors[size_t(rank)]);
      for (int j = 1; j < ranks; ++j) {  // destinations rotated by rank
        io.send((rank + j) % ranks, own);
        io.recv((rank + ranks - j) % ranks);
      }
      return;
    }
    // Ring: step s passes on the vector of rank r - s (its own at s = 0)
    // and receives that of rank r - s - 1.
    io.send((rank + 1) % ranks, message_for(round, vectors[size_t((rank - round + ranks) % ranks)]));
    io.recv((rank + ranks - 1) % ranks);
  }

  static void consume(int round, int rank, int ranks, std::vector<Held<V, I>>& vectors,
                      std::vector<Received>& messages, uint64_t dim) {
    for (size_t j = 0; j < messages.size(); ++j) {
      const int origin = gather_is_direct(ranks) ? messages[j].peer : (rank - round - 1 + 2 * ranks) % ranks;
      vectors[size_t(origin)] = Held<V, I>::of_message(messages[j], Range{0, dim});
    }
  }
};

// Sparse allgather: every rank's vector, in rank order.
template <class V, class I>
class AllgatherOp : public Operation {
 public:
  AllgatherOp(Transport& t, const Identity& id, const View<V, I>& input);
  const std::vector<Held<V, I>>& vectors() const { return vectors_; }

 protected:
  int rounds() const override { return GatherSteps<V, I>::rounds(size()); }
  void post(int round, RoundIO& io) override;
  void consume(int round, std::vector<Received>& messages) override;
  void finish() override {}

 private:
  std::vector<Held<V, I>> vectors_;
};

// The order in which a communicator's allreduces start collectives of the
// transport's own (MPI_Iallreduce). MPI matches those by the order they are
// started in, not by a tag, so every rank must start them in the same order:
// that of the calls' start (sequence numbers), which all ranks share. Every
// allreduce that may run one takes a slot when it starts; it begins (its
// barrier, then the collective) only when every earlier slot is released,
// and releases its own once it has started the collective. Any other outcome
// (another algorithm chosen, a failure) releases the slot.
//
// It also keeps what the barrier before each native collective compares
// across ranks (NativeTally): how many this rank has started, and whether it
// has retired native for good. A failure can leave ranks out of step (some
// started the collective of a call, others gave up before); a rank that
// failed after starting one retires. Either way every rank learns of it in
// the next barrier and from then on all use sparcl's own messages instead.
class NativeOrder {
 public:
  uint64_t take() {
    open_.insert(next_);
    return next_++;
  }
  void release(uint64_t n) { open_.erase(n); }
  bool first(uint64_t n) const { return open_.empty() || *open_.begin() == n; }

  uint64_t started = 0;  // native collectives this rank has started
  bool retired = false;  // never start one again on this communicator

 private:
  std::set<uint64_t> open_;  // slots taken and not released
  uint64_t next_ = 0;
};

class NativeSlot {
 public:
  NativeSlot() = default;
  explicit NativeSlot(std::shared_ptr<NativeOrder> order) : order_(std::move(order)), n_(order_->take()) {}
  NativeSlot(NativeSlot&& o) noexcept : order_(std::move(o.order_)), n_(o.n_) { o.order_.reset(); }
  NativeSlot& operator=(NativeSlot&& o) noexcept {
    if (this != &o) {
      release();
      order_ = std::move(o.order_);
      n_ = o.n_;
      o.order_.reset();
    }
    return *this;
  }
  NativeSlot(const NativeSlot&) = delete;
  NativeSlot& operator=(const NativeSlot&) = delete;
  ~NativeSlot() { release(); }

  // True once every earlier slot is released (always for an empty slot).
  bool first() const { return !order_ || order_->first(n_); }
  void release() {
    if (order_) order_->release(n_);
    order_.reset();
  }
  // The order this slot belongs to (null for an empty or released slot).
  const std::shared_ptr<NativeOrder>& order() const { return order_; }

 private:
  std::shared_ptr<NativeOrder> order_;
  uint64_t n_ = 0;
};

// The dissemination barrier (ceil(log2 P) rounds of acknowledgements that
// carry a NativeTally) before a native collective. Every rank that completes
// it holds the tally of all ranks, so all of them take the same decision.
class NativeBarrier {
 public:
  explicit NativeBarrier(int ranks) {
    while ((1 << levels_) < ranks) ++levels_;
  }
  int rounds() const { return levels_; }
  // Round `round` (< rounds()); the first one reads this rank's own tally.
  void post(const Identity& id, int round, int rank, int ranks, const NativeOrder* order, RoundIO& io) {
    if (round == 0 && order) tally_ = NativeTally{order->started, order->started, order->retired};
    const int d = 1 << round;
    io.send((rank + d) % ranks, encode_native_ack(id, uint16_t(round), tally_));
    io.recv((rank - d + ranks) % ranks);
  }
  void consume(std::vector<Received>& messages) {
    for (const auto& m : messages) tally_.merge(read_native_ack(*m.buffer, m.header, m.peer));
  }
  // After the last round: whether the native collective may run.
  bool native_ok() const { return !tally_.retired && tally_.min_started == tally_.max_started; }

 private:
  int levels_ = 0;
  NativeTally tally_;
};

// Whether the dense algorithm runs on the transport's own allreduce for this
// collective: raw values, no checksums (MPI's allreduce carries neither
// sparcl's encodings nor its CRCs) and a transport that has one.
bool dense_is_native(const Transport& t, const Identity& id);

// The algorithms' factories (one file each; listed in algorithms.cpp).
// `native` is the call's place in the NativeOrder: the dense algorithm uses
// it, the others release it.
#define SPARCL_DECLARE_FACTORY(name)                                                                     \
  template <class V, class I>                                                                             \
  std::unique_ptr<AllreduceOp<V, I>> name(Transport&, const Identity&, const View<V, I>&, NativeSlot native);
SPARCL_DECLARE_FACTORY(make_recursive_doubling)
SPARCL_DECLARE_FACTORY(make_split_allgather)
SPARCL_DECLARE_FACTORY(make_split_dense)
SPARCL_DECLARE_FACTORY(make_ring)
SPARCL_DECLARE_FACTORY(make_halving_doubling)
SPARCL_DECLARE_FACTORY(make_allgather_allreduce)
SPARCL_DECLARE_FACTORY(make_dense)
SPARCL_DECLARE_FACTORY(make_hierarchical)
SPARCL_DECLARE_FACTORY(make_split_allgather_hashed)
SPARCL_DECLARE_FACTORY(make_halving_doubling_hashed)
#undef SPARCL_DECLARE_FACTORY

// An allreduce that the transport performs itself (MPI_Iallreduce with the
// op): for ops other than SPARCL_SUM and for integer types. It starts with a
// NativeBarrier that checks the call's identity on every rank (dim, type,
// op: the op is in the identity's algorithm field, pass_through_algorithm);
// once native is retired, every rank sends its vector to every other and
// each reduces them in rank order (the same bits on every rank).
class PassThroughAllreduce final : public Operation {
 public:
  // Copies `count` values of `type` (sparcl_datatype_t) from `send`.
  PassThroughAllreduce(Transport& t, const Identity& id, const void* send, size_t count, int type, int op,
                       NativeSlot native);
  // After success: the reduced values.
  const void* result() const;

 protected:
  bool ready() override;
  int rounds() const override;
  void post(int round, RoundIO& io) override;
  void consume(int round, std::vector<Received>& messages) override;
  void finish() override;
  void failed() noexcept override;

 private:
  struct Buffers {
    Buffer send, recv;
  };
  std::shared_ptr<Buffers> buffers_;
  size_t count_;
  int type_, op_;
  NativeSlot native_;
  std::shared_ptr<NativeOrder> order_;
  NativeBarrier barrier_;
  bool gather_ = false;          // native retired: the vectors travel as sparcl messages
  bool started_native_ = false;  // this rank started the native collective
  std::vector<SharedBuffer> gathered_;
};

// An allreduce of no values: only a dissemination barrier of
// acknowledgements, so that ranks that called with other arguments are told.
class EmptyAllreduce final : public Operation {
 public:
  EmptyAllreduce(Transport& t, const Identity& id) : Operation(t, id) {
    while ((1 << levels_) < t.size()) ++levels_;
  }

 protected:
  int rounds() const override { return levels_; }
  void post(int round, RoundIO& io) override {
    const int d = 1 << round;
    io.send((rank() + d) % size(), encode_ack(id_, uint16_t(round)));
    io.recv((rank() - d + size()) % size());
  }
  void consume(int, std::vector<Received>& messages) override {
    for (const auto& m : messages) check_ack(*m.buffer, m.header, m.peer);
  }
  void finish() override {}

 private:
  int levels_ = 0;
};

// Instantiates X(V, I) for every supported value and index type.
#define SPARCL_FOR_EACH_TYPE(X) \
  X(float, uint32_t)            \
  X(float, uint64_t)            \
  X(double, uint32_t)           \
  X(double, uint64_t)

}  // namespace sparcl
