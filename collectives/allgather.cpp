// SPDX-License-Identifier: BSD-3-Clause
// Sparse allgather, and the allreduce built on it: every rank's vector goes
// to every rank (GatherSteps in collective.hpp: one direct round up to
// kDirectGatherRanks ranks, else a ring that forwards received vectors
// without re-encoding); a rank's own vector is held as the others decode it.
//
// The allgather-based allreduce (what Horovod and PyTorch's gloo do with
// sparse tensors) then sums the P vectors locally, in rank order, so that
// every rank adds the same values in the same order: bitwise identical
// results. Each value is rounded once on the wire, by its own rank. Its
// volume grows with P ((P-1) k per rank), but it has the fewest rounds and
// does no merging between them: the best at small sizes and, at few ranks,
// wherever the union of the vectors is not much smaller than their sum.
#include "collective.hpp"

namespace sparcl {

template <class V, class I>
AllgatherOp<V, I>::AllgatherOp(Transport& t, const Identity& id, const View<V, I>& input)
    : Operation(t, id), vectors_(size_t(t.size())) {
  vectors_[size_t(t.rank())] = Held<V, I>::of_input(input);
}

template <class V, class I>
void AllgatherOp<V, I>::post(int round, RoundIO& io) {
  const int r = rank();
  GatherSteps<V, I>::post(round, r, size(), vectors_, io, [&](int step, Held<V, I>& h) {
    return send_and_keep(id_, uint16_t(step), h, r,
                         [&](const View<V, I>& v) { return encode(id_, uint16_t(step), v, own_stream(r)); });
  });
}

template <class V, class I>
void AllgatherOp<V, I>::consume(int round, std::vector<Received>& messages) {
  GatherSteps<V, I>::consume(round, rank(), size(), vectors_, messages, id_.dim);
}

namespace {

template <class V, class I>
class AllgatherAllreduce final : public AllreduceOp<V, I> {
  using Base = AllreduceOp<V, I>;

 public:
  AllgatherAllreduce(Transport& t, const Identity& id, const View<V, I>& input)
      : Base(t, id, input), vectors_(size_t(t.size())) {
    vectors_[size_t(t.rank())] = Held<V, I>::of_input(input);
  }

  uint64_t inputs_nonzeros() const override { return inputs_nonzeros_; }

 protected:
  int rounds() const override { return GatherSteps<V, I>::rounds(this->size()); }

  void post(int round, RoundIO& io) override {
    const int r = this->rank();
    GatherSteps<V, I>::post(round, r, this->size(), vectors_, io, [&](int step, Held<V, I>& h) {
      return this->message_for(step, h, own_stream(r));
    });
  }

  void consume(int round, std::vector<Received>& messages) override {
    GatherSteps<V, I>::consume(round, this->rank(), this->size(), vectors_, messages, this->id_.dim);
  }

  void finish() override {
    std::vector<View<V, I>> views;
    for (const auto& h : vectors_) {
      views.push_back(h.view);
      inputs_nonzeros_ += count_set_entries(h.view);
    }
    this->pieces_ = {this->size() == 1 ? vectors_[0] : Held<V, I>::of_stream(merge_all(views))};
  }

 private:
  std::vector<Held<V, I>> vectors_;
  uint64_t inputs_nonzeros_ = 0;
};

}  // namespace

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_allgather_allreduce(Transport& t, const Identity& id,
                                                            const View<V, I>& input, NativeSlot) {
  return std::make_unique<AllgatherAllreduce<V, I>>(t, id, input);
}

#define SPARCL_INSTANTIATE(V, I)                                                                    \
  template class AllgatherOp<V, I>;                                                                 \
  template std::unique_ptr<AllreduceOp<V, I>> make_allgather_allreduce(Transport&, const Identity&, \
                                                                       const View<V, I>&, NativeSlot);
SPARCL_FOR_EACH_TYPE(SPARCL_INSTANTIATE)

}  // namespace sparcl
