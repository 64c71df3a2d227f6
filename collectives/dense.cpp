// SPDX-License-Identifier: BSD-3-Clause
// The dense algorithm: densify the input and reduce it as a dense vector,
// for sums so dense that indices only cost (SparCML's switch at half
// density, or MPI_Allreduce winning outright).
//
// Native: the transport's own allreduce (MPI_Iallreduce on a communicator of
// the transport's own), used for raw values without checksums. It cannot
// carry sparcl's value encodings or CRCs, and a collective of the MPI
// library cannot be called off once one rank has started it, so it runs only
// after every rank has shown it will: a dissemination barrier first
// (NativeBarrier, ceil(log2 P) rounds). A rank that fails before (bad input,
// out of memory) never joins the barrier and tells the others, who fail
// without having started the MPI collective. MPI's sum is its own order of
// additions; Open MPI's algorithms (recursive doubling, ring, Rabenseifner)
// give every rank the same bits.
//
// A failure during the barrier can still leave some ranks with the MPI
// collective started and others without; MPI would then pair different
// calls from there on. The barrier compares how many native collectives
// each rank has started (and whether any rank retired native after a
// failure): if they differ, every rank retires native on this communicator
// and runs sparcl's ring instead, in this call and every later one.
//
// Otherwise (a lossy encoding, checksums, or a transport without an
// allreduce): sparcl's ring on the densified vector, so that encodings and
// checksums keep their guarantees, and error feedback still learns what its
// input's segment became on the wire.
#include "collective.hpp"

namespace sparcl {

bool dense_is_native(const Transport& t, const Identity& id) {
  return id.encoding == Encoding::Raw && !id.checksum && t.has_native_iallreduce(id.dim);
}

namespace {

template <class V, class I>
class NativeDense final : public AllreduceOp<V, I> {
  using Base = AllreduceOp<V, I>;

 public:
  // Both buffers are allocated here, before any round: a rank that runs out
  // of memory fails before the barrier.
  NativeDense(Transport& t, const Identity& id, const View<V, I>& input, NativeSlot native)
      : Base(t, id, input), buffers_(std::make_shared<Buffers>()), native_(std::move(native)),
        order_(native_.order()), barrier_(t.size()) {
    this->dense_pieces_ = true;
    buffers_->send = std::make_shared<Stream<V, I>>(to_dense_stream(input));
    buffers_->sum = std::make_shared<Stream<V, I>>();
    buffers_->sum->range = input.range;
    buffers_->sum->dense = true;
    buffers_->sum->val.resize(input.range.size());
  }

 protected:
  // Its barrier starts once every allreduce started before it has started
  // its native collective or will not (NativeOrder).
  bool ready() override {
    if (ring_) return ring_->ready();
    if (this->size() == 1) native_.release();  // no collective to start
    return native_.first();
  }
  void failed() noexcept override {
    // MPI may still pair the collective this rank started with a later one
    // of the peers: never start another on this communicator.
    if (started_native_ && order_) order_->retired = true;
    native_.release();
    if (ring_) ring_->failed();
  }
  int rounds() const override {
    if (this->size() == 1) return 0;
    return barrier_.rounds() + (ring_ ? ring_->rounds() : 1);
  }

  void post(int round, RoundIO& io) override {
    const int p = this->size(), r = this->rank();
    if (round < barrier_.rounds()) {
      barrier_.post(this->id_, round, r, p, order_.get(), io);
      return;
    }
    if (ring_) {
      ring_->post(round - barrier_.rounds(), io);
      return;
    }
    // Counted as a ring allreduce sends: 2 (P-1) messages of N/P values (what
    // MPI really sends depends on the algorithm it picks).
    const uint64_t bytes = 2 * uint64_t(p - 1) * (this->id_.dim / uint64_t(p)) * sizeof(V);
    io.await(this->transport_.native_iallreduce(buffers_->send->val.data(), buffers_->sum->val.data(),
                                                size_t(this->id_.dim), sparcl_datatype_t(value_type_code<V>()),
                                                SPARCL_SUM, buffers_),
             2 * uint64_t(p - 1), bytes);
    started_native_ = true;
    if (order_) ++order_->started;
    native_.release();
  }

  void consume(int round, std::vector<Received>& messages) override {
    if (round >= barrier_.rounds()) {
      if (ring_) ring_->consume(round - barrier_.rounds(), messages);
      return;
    }
    barrier_.consume(messages);
    if (round + 1 == barrier_.rounds() && !barrier_.native_ok()) {
      // Every rank completing the barrier sees the same tally: all retire
      // native and run the ring on the densified vector, as its next rounds.
      if (order_) order_->retired = true;
      native_.release();
      Identity ring_id = this->id_;
      ring_id.step_base = uint16_t(this->id_.step_base + barrier_.rounds());  // after auto's rounds too
      ring_ = make_ring(this->transport_, ring_id, buffers_->send->view(), NativeSlot{});
      ring_->run_on_densified(this->input_, buffers_->send);
    }
  }

  void finish() override {
    if (this->size() == 1) {
      this->pieces_ = {Held<V, I>{buffers_->send->view(), buffers_->send, nullptr}};
      return;
    }
    if (ring_) {
      ring_->finish();
      this->pieces_ = ring_->pieces();
      return;
    }
    this->pieces_ = {Held<V, I>{buffers_->sum->view(), buffers_->sum, nullptr}};
  }

 private:
  // Kept by the transport until its collective is done, also if this
  // operation ends first (a timeout).
  struct Buffers {
    std::shared_ptr<Stream<V, I>> send, sum;
  };
  std::shared_ptr<Buffers> buffers_;
  NativeSlot native_;
  std::shared_ptr<NativeOrder> order_;
  NativeBarrier barrier_;
  std::unique_ptr<AllreduceOp<V, I>> ring_;  // native retired: the ring on the densified vector
  bool started_native_ = false;
};

}  // namespace

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_dense(Transport& t, const Identity& id, const View<V, I>& input,
                                              NativeSlot native) {
  if (dense_is_native(t, id)) return std::make_unique<NativeDense<V, I>>(t, id, input, std::move(native));
  native.release();
  auto dense = std::make_shared<const Stream<V, I>>(to_dense_stream(input));
  auto op = make_ring(t, id, dense->view(), NativeSlot{});
  op->run_on_densified(input, std::move(dense));
  return op;
}

#define SPARCL_INSTANTIATE(V, I) \
  template std::unique_ptr<AllreduceOp<V, I>> make_dense(Transport&, const Identity&, const View<V, I>&, \
                                                              NativeSlot);
SPARCL_FOR_EACH_TYPE(SPARCL_INSTANTIATE)

}  // namespace sparcl
