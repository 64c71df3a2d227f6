// SPDX-License-Identifier: BSD-3-Clause
// SparCML's split algorithms. [0, dim) is cut into P ranges, rank j owning
// range j. Round 0 is a sparse reduce-scatter: every rank sends each owner
// the part of its stream inside the owner's range, and the owner merges what
// it gets. Round 1 is an allgather of the reduced ranges, which are disjoint
// and only need concatenating.
//   SSAR_Split_allgather: the reduced ranges travel sparse, or dense where
//   SparCML's rule says so (merge_all may sum densely, but returns a sparse
//   range when its entries are below the rule's switch).
//   DSAR_Split_allgather: each owner densifies its range first (dense result).
// Destinations are rotated by rank (rank r sends first to r+1) so that no
// owner is hit by everyone at once. The ranges are equal, or cut at given
// boundaries (the balanced partition, partition.hpp).
#include "partition.hpp"

namespace sparcl {
namespace {

template <class V, class I>
class SplitAllgather final : public AllreduceOp<V, I> {
  using Base = AllreduceOp<V, I>;

 public:
  SplitAllgather(Transport& t, const Identity& id, const View<V, I>& input, bool dense_result,
                 std::vector<uint64_t> bounds = {})
      : Base(t, id, input), dense_result_(dense_result), bounds_(std::move(bounds)) {
    this->dense_pieces_ = dense_result;
  }

 protected:
  int rounds() const override { return this->size() == 1 ? 0 : 2; }

  void post(int round, RoundIO& io) override {
    const int p = this->size(), r = this->rank();
    SharedBuffer reduced;
    if (round == 1) reduced = this->message_for(round, reduced_, own_stream(r));
    for (int j = 1; j < p; ++j) {
      const int to = (r + j) % p, from = (r + p - j) % p;
      io.send(to, round == 0 ? this->encode_for(round, slice(this->input_, range(to)), own_stream(r)) : reduced);
      io.recv(from);
    }
  }

  void consume(int round, std::vector<Received>& messages) override {
    const int r = this->rank();
    if (round == 0) {
      std::vector<Held<V, I>> held;
      std::vector<View<V, I>> parts{slice(this->input_, range(r))};
      for (auto& m : messages) {
        held.push_back(Held<V, I>::of_message(m, range(r)));
        parts.push_back(held.back().view);
      }
      reduced_ = Held<V, I>::of_stream(merge_all(parts, dense_result_));
      return;
    }
    gathered_.resize(size_t(this->size()));
    for (auto& m : messages) gathered_[size_t(m.peer)] = Held<V, I>::of_message(m, range(m.peer));
  }

  void finish() override {
    if (this->size() == 1) {
      this->pieces_ = {Held<V, I>::of_input(this->input_)};
      return;
    }
    gathered_[size_t(this->rank())] = reduced_;
    this->pieces_ = std::move(gathered_);
  }

 private:
  Range range(int owner) const { return owner_range(bounds_, this->whole(), this->size(), owner); }

  bool dense_result_;
  std::vector<uint64_t> bounds_;  // P + 1 boundaries; empty: equal ranges
  Held<V, I> reduced_;
  std::vector<Held<V, I>> gathered_;
};

}  // namespace

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_split_allgather(Transport& t, const Identity& id,
                                                        const View<V, I>& input, NativeSlot) {
  return std::make_unique<SplitAllgather<V, I>>(t, id, input, false);
}

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_split_dense(Transport& t, const Identity& id, const View<V, I>& input,
                                                    NativeSlot) {
  return std::make_unique<SplitAllgather<V, I>>(t, id, input, true);
}

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_split_over(Transport& t, const Identity& id, const View<V, I>& input,
                                                   bool dense_result, std::vector<uint64_t> bounds) {
  return std::make_unique<SplitAllgather<V, I>>(t, id, input, dense_result, std::move(bounds));
}

#define SPARCL_INSTANTIATE(V, I)                                                                    \
  template std::unique_ptr<AllreduceOp<V, I>> make_split_over(Transport&, const Identity&,        \
                                                              const View<V, I>&, bool,            \
                                                              std::vector<uint64_t>);             \
  template std::unique_ptr<AllreduceOp<V, I>> make_split_allgather(Transport&, const Identity&,   \
                                                                   const View<V, I>&, NativeSlot); \
  template std::unique_ptr<AllreduceOp<V, I>> make_split_dense(Transport&, const Identity&,       \
                                                               const View<V, I>&, NativeSlot);
SPARCL_FOR_EACH_TYPE(SPARCL_INSTANTIATE)

}  // namespace sparcl
