// SPDX-License-Identifier: BSD-3-Clause
// The node-aware allreduce. Ranks on one host (Transport::hosts(), found at
// communicator creation) share memory, so traffic between them is cheap;
// what leaves the host crosses its one NIC. [0, dim) is cut into L slices,
// L the ranks per host, and the rank with local index j owns slice j:
//
//   round 0  reduce-scatter inside each host: every rank sends each local
//            peer its input inside the peer's slice; rank j sums its host's
//            slice j.
//   round 1  across hosts, among the H ranks with local index j: each sends
//            its host's sum of slice j to the others and adds theirs, in host
//            order (so all H hold it bitwise alike). Every rank of a host
//            takes part, each for its own slice: all NICs work, and only sums
//            of slices (sparse) leave a host.
//   round 2  allgather inside each host: rank j sends slice j to its local
//            peers.
//
// Hosts must hold equal numbers of ranks; otherwise (and with one host, or
// one rank per host) all ranks count as one host, which makes rounds 0 and 2
// split_allgather's and leaves round 1 empty. The slice sums of round 1 are
// encoded with a stream named after the slice (the H owners of slice j send
// the same bytes to their hosts), so lossy encodings end alike on every rank.
#include "collective.hpp"

namespace sparcl {
namespace {

// Where this rank sits: its host's ranks and the ranks that own its slice.
struct HostLayout {
  int local_count = 1;           // L: ranks per host
  int local_index = 0;           // j: this rank's place on its host
  std::vector<int> local_ranks;  // the ranks of this host, by local index
  std::vector<int> slice_ranks;  // the owners of slice j, one per host, in host order
  size_t host_index = 0;         // this host's place in slice_ranks
};

HostLayout host_layout(const Transport& t) {
  const int size = t.size(), per_host = t.ranks_per_host();
  // Hosts of equal size (Transport::ranks_per_host()); else one host of all ranks.
  std::vector<std::vector<int>> by_host(size_t(size / per_host));
  for (int r = 0; r < size; ++r) by_host[per_host == size ? 0 : size_t(t.hosts()[size_t(r)])].push_back(r);
  HostLayout l;
  l.local_count = per_host;
  for (size_t h = 0; h < by_host.size(); ++h)
    for (size_t j = 0; j < by_host[h].size(); ++j)
      if (by_host[h][j] == t.rank()) l.local_ranks = by_host[h], l.local_index = int(j), l.host_index = h;
  for (const auto& ranks : by_host) l.slice_ranks.push_back(ranks[size_t(l.local_index)]);
  return l;
}

template <class V, class I>
class Hierarchical final : public AllreduceOp<V, I> {
  using Base = AllreduceOp<V, I>;

 public:
  Hierarchical(Transport& t, const Identity& id, const View<V, I>& input)
      : Base(t, id, input), layout_(host_layout(t)) {}

 protected:
  int rounds() const override { return this->size() == 1 ? 0 : 3; }

  void post(int round, RoundIO& io) override {
    const int l = layout_.local_count, j = layout_.local_index, r = this->rank();
    if (round == 0) {
      for (int k = 1; k < l; ++k) {  // destinations rotated by local index
        const int to = (j + k) % l, from = (j + l - k) % l;
        io.send(layout_.local_ranks[size_t(to)],
                this->encode_for(round, slice(this->input_, slice_range(to)), own_stream(r)));
        io.recv(layout_.local_ranks[size_t(from)]);
      }
    } else if (round == 1) {
      const size_t h = layout_.slice_ranks.size();
      if (h == 1) return;
      const SharedBuffer own = this->message_for(round, host_sum_, own_stream(r));
      for (size_t k = 1; k < h; ++k) {
        io.send(layout_.slice_ranks[(layout_.host_index + k) % h], own);
        io.recv(layout_.slice_ranks[(layout_.host_index + h - k) % h]);
      }
    } else {
      const SharedBuffer own = this->message_for(round, slice_sum_, shared_stream(uint64_t(j)));
      for (int k = 1; k < l; ++k) {
        io.send(layout_.local_ranks[size_t((j + k) % l)], own);
        io.recv(layout_.local_ranks[size_t((j + l - k) % l)]);
      }
    }
  }

  void consume(int round, std::vector<Received>& messages) override {
    const int j = layout_.local_index;
    if (round == 0) {
      std::vector<Held<V, I>> held;
      std::vector<View<V, I>> parts{slice(this->input_, slice_range(j))};
      for (auto& m : messages) {
        held.push_back(Held<V, I>::of_message(m, slice_range(j)));
        parts.push_back(held.back().view);
      }
      host_sum_ = Held<V, I>::of_stream(merge_all(parts));
      if (layout_.slice_ranks.size() == 1) slice_sum_ = host_sum_;
      return;
    }
    if (round == 1) {
      if (layout_.slice_ranks.size() == 1) return;
      // Every owner of slice j adds the hosts' sums in host order.
      std::vector<Held<V, I>> by_host(layout_.slice_ranks.size());
      by_host[layout_.host_index] = host_sum_;
      for (auto& m : messages) {
        size_t h = 0;
        while (layout_.slice_ranks[h] != m.peer) ++h;
        by_host[h] = Held<V, I>::of_message(m, slice_range(j));
      }
      std::vector<View<V, I>> parts;
      for (const auto& p : by_host) parts.push_back(p.view);
      slice_sum_ = Held<V, I>::of_stream(merge_all(parts));
      return;
    }
    gathered_.resize(size_t(layout_.local_count));
    for (auto& m : messages) {
      size_t k = 0;
      while (layout_.local_ranks[k] != m.peer) ++k;
      gathered_[k] = Held<V, I>::of_message(m, slice_range(int(k)));
    }
  }

  void finish() override {
    if (this->size() == 1) {
      this->pieces_ = {Held<V, I>::of_input(this->input_)};
      return;
    }
    gathered_[size_t(layout_.local_index)] = slice_sum_;
    this->pieces_ = std::move(gathered_);
  }

 private:
  Range slice_range(int local_index) const {
    return split_range(this->whole(), uint64_t(layout_.local_count), uint64_t(local_index));
  }

  HostLayout layout_;
  Held<V, I> host_sum_, slice_sum_;
  std::vector<Held<V, I>> gathered_;
};

}  // namespace

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_hierarchical(Transport& t, const Identity& id, const View<V, I>& input,
                                                     NativeSlot) {
  return std::make_unique<Hierarchical<V, I>>(t, id, input);
}

#define SPARCL_INSTANTIATE(V, I)                                                                \
  template std::unique_ptr<AllreduceOp<V, I>> make_hierarchical(Transport&, const Identity&, \
                                                                const View<V, I>&, NativeSlot);
SPARCL_FOR_EACH_TYPE(SPARCL_INSTANTIATE)

}  // namespace sparcl
