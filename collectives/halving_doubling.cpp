// SPDX-License-Identifier: BSD-3-Clause
// Recursive halving reduce-scatter, then recursive doubling allgather
// (Rabenseifner's allreduce), on sparse streams. At halving level i a rank
// keeps one half of its current range, sends the other half to its partner
// and merges what the partner sends for the kept half; after log2(P2) levels
// it owns 1/P2 of [0, dim) fully reduced. The doubling rounds swap owned
// ranges and concatenate them. Rounds: 0 fold, 1..L halving, L+1..2L
// doubling, 2L+1 unfold. The halves are equal, or cut at given boundaries
// of the P2 leaf ranges (the balanced partition, partition.hpp).
#include "fold.hpp"
#include "partition.hpp"

namespace sparcl {
namespace {

template <class V, class I>
class HalvingDoubling final : public AllreduceOp<V, I> {
  using Base = AllreduceOp<V, I>;

 public:
  HalvingDoubling(Transport& t, const Identity& id, const View<V, I>& input, std::vector<uint64_t> bounds = {})
      : Base(t, id, input), fold_(t.rank(), t.size()), bounds_(std::move(bounds)), acc_(Held<V, I>::of_input(input)) {}

 protected:
  int rounds() const override { return this->size() == 1 ? 0 : 2 * fold_.levels + 2; }

  void post(int round, RoundIO& io) override {
    const int r = this->rank(), levels = fold_.levels;
    if (round == 0) {
      if (fold_.sitter) io.send(r + 1, this->encode_for(round, acc_.view, own_stream(r)));
      if (fold_.hosts_sitter(r)) io.recv(r - 1);
      return;
    }
    if (round == 2 * levels + 1) {
      // The result is the same on every rank that did not sit out; with a
      // lossy encoding they all round it as a host sends it to its sitter.
      const bool host = fold_.hosts_sitter(r);
      if (!fold_.sitter && fold_.rem > 0 && (host || this->lossy())) {
        SharedBuffer msg = this->message_for(round, acc_, shared_stream(0));
        if (host) io.send(r - 1, std::move(msg));
      }
      if (fold_.sitter) io.recv(r + 1);
      return;
    }
    if (fold_.sitter) return;
    const int n = fold_.newrank;
    if (round <= levels) {
      const int partner = n ^ (fold_.p2 >> round);
      io.send(fold_.real(partner),
              this->encode_for(round, slice(acc_.view, owned(partner, round)), own_stream(r)));
    } else {
      // Every rank holding this range holds it bitwise alike (it came from
      // the same doubling steps): the range names the rounding stream.
      const int partner = n ^ (1 << (round - levels - 1));
      io.send(fold_.real(partner), this->message_for(round, acc_, shared_stream(acc_.view.range.begin)));
    }
    io.recv(fold_.real(n ^ (round <= levels ? fold_.p2 >> round : 1 << (round - levels - 1))));
  }

  void consume(int round, std::vector<Received>& messages) override {
    const int levels = fold_.levels;
    if (messages.empty()) return;
    if (round == 0) {
      acc_ = Held<V, I>::of_stream(merge(acc_.view, Held<V, I>::of_message(messages[0], this->whole()).view));
    } else if (round == 2 * levels + 1) {
      acc_ = Held<V, I>::of_message(messages[0], this->whole());
    } else if (round <= levels) {
      const Range keep = owned(fold_.newrank, round);
      auto incoming = Held<V, I>::of_message(messages[0], keep);
      acc_ = Held<V, I>::of_stream(merge(slice(acc_.view, keep), incoming.view));
    } else {
      const int partner = fold_.newrank ^ (1 << (round - levels - 1));
      const int depth = 2 * levels + 1 - round;  // halving levels behind the partner's range
      auto incoming = Held<V, I>::of_message(messages[0], owned(partner, depth));
      // The rank whose bit is set holds the upper half (which may be empty
      // under a balanced cut, so ranges alone do not tell the order).
      std::vector<View<V, I>> both{acc_.view, incoming.view};
      if (fold_.newrank & (1 << (round - levels - 1))) std::swap(both[0], both[1]);
      acc_ = Held<V, I>::of_stream(concat(both, owned(fold_.newrank, depth - 1)));
    }
  }

  void finish() override { this->pieces_ = {acc_}; }

 private:
  // The range folded rank n owns after `depth` halving levels: with
  // boundaries, the leaves [n >> (L - depth) << (L - depth), + 2^(L - depth)).
  Range owned(int n, int depth) const {
    if (!bounds_.empty()) {
      const int below = fold_.levels - depth;
      const size_t first = size_t(n >> below) << below;
      return Range{bounds_[first], bounds_[first + (size_t(1) << below)]};
    }
    Range cur = this->whole();
    for (int i = 1; i <= depth; ++i) {
      const bool upper = n & (fold_.p2 >> i);
      cur = split_range(cur, 2, upper ? 1 : 0);
    }
    return cur;
  }

  Fold fold_;
  std::vector<uint64_t> bounds_;  // P2 + 1 leaf boundaries; empty: equal halves
  Held<V, I> acc_;
};

}  // namespace

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_halving_doubling(Transport& t, const Identity& id,
                                                         const View<V, I>& input, NativeSlot) {
  return std::make_unique<HalvingDoubling<V, I>>(t, id, input);
}

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_halving_doubling_over(Transport& t, const Identity& id,
                                                              const View<V, I>& input, std::vector<uint64_t> bounds) {
  return std::make_unique<HalvingDoubling<V, I>>(t, id, input, std::move(bounds));
}

#define SPARCL_INSTANTIATE(V, I)                                                                                   \
  template std::unique_ptr<AllreduceOp<V, I>> make_halving_doubling(Transport&, const Identity&, const View<V, I>&, \
                                                                     NativeSlot);                                  \
  template std::unique_ptr<AllreduceOp<V, I>> make_halving_doubling_over(Transport&, const Identity&,            \
                                                                         const View<V, I>&, std::vector<uint64_t>);
SPARCL_FOR_EACH_TYPE(SPARCL_INSTANTIATE)

}  // namespace sparcl
