// SPDX-License-Identifier: BSD-3-Clause
// The sparse reduce-scatter: round 0 of split_allgather on its own. Every
// rank sends each owner the part of its vector inside the owner's range
// (destinations rotated by rank), and each owner sums what it gets, in the
// same order as split_allgather, so its part is bitwise that of the
// allreduce. With the balanced partition a second round tells every rank how
// the entries each owner received were spread over its range (a few hundred
// samples), from which all ranks cut the next call's ranges alike; it also
// makes every rank wait for every owner, so a failure at one owner (ranks
// that cut differently) fails the call everywhere.
#include "partition.hpp"

namespace sparcl {

template <class V, class I>
ReduceScatterOp<V, I>::ReduceScatterOp(Transport& t, const Identity& id, const View<V, I>& input, PartitionKind kind,
                                       PartitionTicket ticket)
    : Operation(t, id), input_(input), kind_(kind), ticket_(std::move(ticket)) {
  if (kind_ == PartitionKind::Hashed) {
    const IndexPermutation perm(id.dim);
    permuted_ = std::make_shared<const Stream<V, I>>(
        permute(input, Range{0, id.dim}, [&](uint64_t i) { return perm.forward(i); }));
    input_ = permuted_->view();
  }
}

template <class V, class I>
bool ReduceScatterOp<V, I>::ready() {
  if (!ticket_.ready()) return false;
  bounds_ = ticket_.bounds();
  return true;
}

template <class V, class I>
int ReduceScatterOp<V, I>::rounds() const {
  if (size() == 1) return 0;
  return kind_ == PartitionKind::Balanced ? 2 : 1;
}

template <class V, class I>
Identity ReduceScatterOp<V, I>::round_identity(int round) const {
  return round == 0 ? id_ : summary_identity(id_);
}

template <class V, class I>
void ReduceScatterOp<V, I>::post(int round, RoundIO& io) {
  const int p = size(), r = rank();
  SharedBuffer summary;
  if (round == 1) summary = encode(round_identity(1), uint16_t(1), summary_.view);
  for (int j = 1; j < p; ++j) {
    const int to = (r + j) % p, from = (r + p - j) % p;
    io.send(to, round == 0 ? encode(id_, uint16_t(0), slice(input_, range(to)), own_stream(r)) : summary);
    io.recv(from);
  }
}

template <class V, class I>
void ReduceScatterOp<V, I>::consume(int round, std::vector<Received>& messages) {
  const int r = rank();
  if (round == 0) {
    std::vector<Held<V, I>> held;
    std::vector<View<V, I>> parts{slice(input_, range(r))};
    for (auto& m : messages) {
      held.push_back(Held<V, I>::of_message(m, range(r)));
      parts.push_back(held.back().view);
    }
    part_ = Held<V, I>::of_stream(merge_all(parts));
    if (kind_ == PartitionKind::Balanced) summary_ = Held<V, I>::of_stream(weight_summary(range(r), parts));
    return;
  }
  std::vector<Held<V, I>> summaries(static_cast<size_t>(size()));
  summaries[size_t(r)] = summary_;
  for (auto& m : messages) summaries[size_t(m.peer)] = Held<V, I>::of_message(m, range(m.peer));
  samples_ = samples_of(summaries);
}

template <class V, class I>
void ReduceScatterOp<V, I>::finish() {
  if (size() == 1) part_ = Held<V, I>::of_stream(to_stream(input_));
  if (kind_ == PartitionKind::Hashed) {
    const IndexPermutation perm(id_.dim);
    part_ = Held<V, I>::of_stream(unpermute(part_.view, Range{0, id_.dim}, perm));
  }
  ticket_.succeed(balanced_bounds(samples_, id_.dim, size()));
}

#define SPARCL_INSTANTIATE(V, I) template class ReduceScatterOp<V, I>;
SPARCL_FOR_EACH_TYPE(SPARCL_INSTANTIATE)

}  // namespace sparcl
