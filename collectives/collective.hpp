// SPDX-License-Identifier: BSD-3-Clause
// What the algorithms share: held streams, the allreduce and allgather
// operation types, and the factories that create each algorithm.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

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

  static Held of_input(const View<V, I>& v) { return Held{v, nullptr, nullptr}; }
  static Held of_stream(Stream<V, I>&& s) {
    auto p = std::make_shared<const Stream<V, I>>(std::move(s));
    return Held{p->view(), p, nullptr};
  }
  static Held of_message(const Received& r, Range expected) {
    Decoded<V, I> d = decode<V, I>(*r.buffer, r.header, expected, r.peer);
    return Held{d.view, std::move(d.stream), r.buffer};
  }
};

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
// is (step rewritten); anything else is encoded with rounding stream `stream`
// by `encode_fn`, and with a lossy encoding `h` becomes what the receivers
// will decode.
template <class V, class I, class EncodeFn>
SharedBuffer send_and_keep(const Identity& id, uint16_t step, Held<V, I>& h, int self, EncodeFn&& encode_fn) {
  if (h.message) {
    set_step(*h.message, step);
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

 protected:
  Range whole() const { return Range{0, id_.dim}; }
  bool lossy() const { return is_lossy(id_.encoding); }
  // `v` as a message of `round`, rounded with `stream`. For a piece that is
  // not kept (the receiver is the only one to use it).
  SharedBuffer encode_for(int round, const View<V, I>& v, uint64_t stream) const {
    SharedBuffer msg = encode(id_, uint16_t(round), v, stream);
    if (input_sent_ && lossy()) report_if_input(v, msg);
    return msg;
  }
  // `h` as a message of `round` for a piece the sender keeps (see send_and_keep).
  SharedBuffer message_for(int round, Held<V, I>& h, uint64_t stream) {
    return send_and_keep(id_, uint16_t(round), h, rank(),
                         [&](const View<V, I>& v) { return encode_for(round, v, stream); });
  }

  View<V, I> input_;
  std::vector<Held<V, I>> pieces_;

 private:
  void report_if_input(const View<V, I>& v, const SharedBuffer& msg) const {
    std::less_equal<const V*> le;
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

  InputSentFn<V> input_sent_;
};

// Sparse allgather: every rank's vector, in rank order.
template <class V, class I>
class AllgatherOp : public Operation {
 public:
  AllgatherOp(Transport& t, const Identity& id, const View<V, I>& input);
  const std::vector<Held<V, I>>& vectors() const { return vectors_; }

 protected:
  int rounds() const override { return size() - 1; }
  void post(int round, RoundIO& io) override;
  void consume(int round, std::vector<Received>& messages) override;
  void finish() override {}

 private:
  std::vector<Held<V, I>> vectors_;
};

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_recursive_doubling(Transport&, const Identity&, const View<V, I>&);
template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_split_allgather(Transport&, const Identity&, const View<V, I>&,
                                                        bool dense_result);
template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_ring(Transport&, const Identity&, const View<V, I>&);
template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_halving_doubling(Transport&, const Identity&, const View<V, I>&);

// The allreduce algorithm for `requested` (resolving SPARCL_ALGO_AUTO by the
// documented rule, which looks only at values that all ranks share).
sparcl_algorithm_t resolve_algorithm(sparcl_algorithm_t requested, uint64_t dim, size_t value_size,
                                     int ranks);

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_allreduce(sparcl_algorithm_t algorithm, Transport& t,
                                                  const Identity& id, const View<V, I>& input);

// Instantiates X(V, I) for every supported value and index type.
#define SPARCL_FOR_EACH_TYPE(X) \
  X(float, uint32_t)            \
  X(float, uint64_t)            \
  X(double, uint32_t)           \
  X(double, uint64_t)

}  // namespace sparcl
