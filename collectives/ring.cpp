// SPDX-License-Identifier: BSD-3-Clause
// Sparse ring: [0, dim) is cut into P segments. P-1 reduce-scatter steps pass
// segment streams around the ring and merge them (each segment may turn dense
// on its own); after them rank r holds segment r+1 fully reduced. P-1
// allgather steps then forward the reduced segments unchanged. The segments
// are equal, or cut at given boundaries (the balanced partition,
// partition.hpp).
#include "partition.hpp"

namespace sparcl {
namespace {

template <class V, class I>
class Ring final : public AllreduceOp<V, I> {
  using Base = AllreduceOp<V, I>;

 public:
  Ring(Transport& t, const Identity& id, const View<V, I>& input, std::vector<uint64_t> bounds = {})
      : Base(t, id, input), bounds_(std::move(bounds)) {
    const int p = t.size();
    for (int i = 0; i < p; ++i) segments_.push_back(Held<V, I>::of_input(slice(input, segment(i))));
  }

 protected:
  int rounds() const override { return 2 * (this->size() - 1); }

  void post(int round, RoundIO& io) override {
    const int p = this->size(), r = this->rank();
    const int next = (r + 1) % p, prev = (r + p - 1) % p;
    Held<V, I>& seg = segments_[send_segment(round)];
    // Reduce-scatter: a partial sum the next rank adds to (this rank never
    // uses it again). Allgather: the owned segment, kept as sent, or a
    // received one, forwarded as it came.
    io.send(next, round < p - 1 ? this->encode_for(round, seg.view, own_stream(r))
                                : this->message_for(round, seg, own_stream(r)));
    io.recv(prev);
  }

  void consume(int round, std::vector<Received>& messages) override {
    const int s = recv_segment(round);
    auto incoming = Held<V, I>::of_message(messages[0], segment(s));
    if (round < this->size() - 1) {
      segments_[s] = Held<V, I>::of_stream(merge(segments_[s].view, incoming.view));
    } else {
      segments_[s] = std::move(incoming);
    }
  }

  void finish() override { this->pieces_ = segments_; }

 private:
  Range segment(int i) const { return owner_range(bounds_, this->whole(), this->size(), i); }
  int mod(int x) const { return ((x % this->size()) + this->size()) % this->size(); }
  // Reduce-scatter step s sends segment r-s and receives r-s-1; allgather
  // step s sends r+1-s and receives r-s.
  int send_segment(int round) const {
    const int steps = this->size() - 1;
    return round < steps ? mod(this->rank() - round) : mod(this->rank() + 1 - (round - steps));
  }
  int recv_segment(int round) const {
    const int steps = this->size() - 1;
    return round < steps ? mod(this->rank() - round - 1) : mod(this->rank() - (round - steps));
  }

  std::vector<uint64_t> bounds_;  // P + 1 boundaries; empty: equal segments
  std::vector<Held<V, I>> segments_;
};

}  // namespace

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_ring(Transport& t, const Identity& id, const View<V, I>& input, NativeSlot) {
  return std::make_unique<Ring<V, I>>(t, id, input);
}

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_ring_over(Transport& t, const Identity& id, const View<V, I>& input,
                                                  std::vector<uint64_t> bounds) {
  return std::make_unique<Ring<V, I>>(t, id, input, std::move(bounds));
}

#define SPARCL_INSTANTIATE(V, I)                                                                                   \
  template std::unique_ptr<AllreduceOp<V, I>> make_ring(Transport&, const Identity&, const View<V, I>&, NativeSlot); \
  template std::unique_ptr<AllreduceOp<V, I>> make_ring_over(Transport&, const Identity&, const View<V, I>&,      \
                                                             std::vector<uint64_t>);
SPARCL_FOR_EACH_TYPE(SPARCL_INSTANTIATE)

}  // namespace sparcl
