// SPDX-License-Identifier: BSD-3-Clause
// What the algorithms share: held streams, the allreduce and allgather
// operation types, and the factories that create each algorithm.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "../src/operation.hpp"
#include "../src/sparse.hpp"
#include "../src/wire.hpp"

namespace sparcl {

// A view plus whatever keeps its memory alive: the caller's input (nothing),
// a stream the algorithm built, or a received message. A view that is
// exactly a received message can be forwarded without re-encoding.
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
    return Held{decode<V, I>(*r.buffer, r.header, expected, r.peer), nullptr, r.buffer};
  }
};

// Base of the allreduce algorithms: input in, disjoint result pieces out.
template <class V, class I>
class AllreduceOp : public Operation {
 public:
  AllreduceOp(Transport& t, const Identity& id, const View<V, I>& input)
      : Operation(t, id), input_(input) {}
  // After success: pieces sorted by range that tile [0, dim).
  const std::vector<Held<V, I>>& pieces() const { return pieces_; }

 protected:
  Range whole() const { return Range{0, id_.dim}; }
  SharedBuffer encode_for(int round, const View<V, I>& v) const {
    return encode(id_, uint16_t(round), v);
  }
  // A held stream as a message of `round`: a received message is forwarded
  // as it is (with its step rewritten), anything else is encoded.
  SharedBuffer message_for(int round, const Held<V, I>& h) const {
    if (!h.message) return encode_for(round, h.view);
    const uint16_t step = uint16_t(round);
    std::memcpy(h.message->data() + offsetof(WireHeader, step), &step, sizeof step);
    return h.message;
  }

  View<V, I> input_;
  std::vector<Held<V, I>> pieces_;
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
