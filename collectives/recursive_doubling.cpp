// SPDX-License-Identifier: BSD-3-Clause
// SparCML's SSAR_Recursive_double: log2(P2) rounds in which partners at
// distance 2^i swap their whole current stream and merge it. The stream grows
// with the union of indices and turns dense when that is smaller. Rounds:
// 0 fold, 1..levels exchange, levels+1 unfold.
#include "collective.hpp"
#include "fold.hpp"

namespace sparcl {
namespace {

template <class V, class I>
class RecursiveDoubling final : public AllreduceOp<V, I> {
  using Base = AllreduceOp<V, I>;

 public:
  RecursiveDoubling(Transport& t, const Identity& id, const View<V, I>& input)
      : Base(t, id, input), fold_(t.rank(), t.size()), acc_(Held<V, I>::of_input(input)) {}

 protected:
  int rounds() const override { return this->size() == 1 ? 0 : fold_.levels + 2; }

  void post(int round, RoundIO& io) override {
    const int r = this->rank();
    if (round == 0) {
      if (fold_.sitter) io.send(r + 1, this->encode_for(round, acc_.view, own_stream(r)));
      if (fold_.hosts_sitter(r)) io.recv(r - 1);
    } else if (round <= fold_.levels) {
      if (fold_.sitter) return;
      const int partner = fold_.real(fold_.newrank ^ (1 << (round - 1)));
      // Before this round the folded ranks that agree on their bits from
      // round - 1 up hold the same stream: they round it alike.
      const uint64_t group = uint64_t(fold_.newrank >> (round - 1));
      io.send(partner, this->message_for(round, acc_, shared_stream(group)));
      io.recv(partner);
    } else {
      // Every rank that did not sit out holds the result. With a lossy
      // encoding they all round it as a host sends it to its sitter, so that
      // all ranks end with the same values.
      const bool host = fold_.hosts_sitter(r);
      if (!fold_.sitter && fold_.rem > 0 && (host || this->lossy())) {
        SharedBuffer msg = this->message_for(round, acc_, shared_stream(0));
        if (host) io.send(r - 1, std::move(msg));
      }
      if (fold_.sitter) io.recv(r + 1);
    }
  }

  void consume(int round, std::vector<Received>& messages) override {
    if (messages.empty()) return;
    auto incoming = Held<V, I>::of_message(messages[0], this->whole());
    if (round == fold_.levels + 1) {
      acc_ = std::move(incoming);  // unfold: the finished result
    } else {
      acc_ = Held<V, I>::of_stream(merge(acc_.view, incoming.view));
    }
  }

  void finish() override { this->pieces_ = {acc_}; }

 private:
  Fold fold_;
  Held<V, I> acc_;
};

}  // namespace

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_recursive_doubling(Transport& t, const Identity& id,
                                                           const View<V, I>& input, NativeSlot) {
  return std::make_unique<RecursiveDoubling<V, I>>(t, id, input);
}

#define SPARCL_INSTANTIATE(V, I) \
  template std::unique_ptr<AllreduceOp<V, I>> make_recursive_doubling(Transport&, const Identity&, const View<V, I>&, \
                                                                       NativeSlot);
SPARCL_FOR_EACH_TYPE(SPARCL_INSTANTIATE)

}  // namespace sparcl
