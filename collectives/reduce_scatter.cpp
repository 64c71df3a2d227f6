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

namespace {
// Sub-ranges per owner in a balanced call's summary.
constexpr uint64_t kSummaryBins = 256;
}  // namespace

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
  if (round == 0) return id_;
  Identity raw = id_;  // the summaries are counts: always raw values
  raw.encoding = Encoding::Raw;
  raw.bucket = 0;
  return raw;
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
Stream<V, I> ReduceScatterOp<V, I>::weight_summary(const std::vector<View<V, I>>& parts) const {
  const Range own = range(rank());
  const uint64_t bins = std::min<uint64_t>(kSummaryBins, own.size());
  Stream<V, I> s;
  s.range = own;
  if (bins == 0) return s;
  std::vector<uint64_t> weight(bins, 0);
  auto bin_of = [&](uint64_t x) { return size_t(uint128(x - own.begin) * bins / own.size()); };
  for (const auto& v : parts)
    for (size_t k = 0; k < v.nnz; ++k) ++weight[bin_of(v.dense ? own.begin + k : uint64_t(v.idx[k]))];
  uint64_t cumulative = 0;
  for (uint64_t b = 0; b < bins; ++b) {
    if (!weight[b]) continue;
    cumulative += weight[b];
    // The last index of bin b.
    const uint64_t last = own.begin + uint64_t((uint128(b + 1) * own.size() + bins - 1) / bins) - 1;
    s.idx.push_back(I(last));
    s.val.push_back(V(cumulative));
  }
  return s;
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
    if (kind_ == PartitionKind::Balanced) summary_ = Held<V, I>::of_stream(weight_summary(parts));
    return;
  }
  // Every owner's samples, in rank order, offset by the weight of the owners before it.
  std::vector<Held<V, I>> summaries(static_cast<size_t>(size()));
  summaries[size_t(r)] = summary_;
  for (auto& m : messages) summaries[size_t(m.peer)] = Held<V, I>::of_message(m, range(m.peer));
  uint64_t before = 0;
  for (const auto& h : summaries) {
    const View<V, I>& v = h.view;
    uint64_t last = 0;
    for (size_t k = 0; k < v.nnz; ++k) {
      if (!has_bits(v.val[k])) continue;  // a summary sent dense: indices without a sample
      if (!(v.val[k] >= V(1) && v.val[k] < V(1e18)) || uint64_t(v.val[k]) < last) fail(SPARCL_ERR_CORRUPT, "a balanced reduce-scatter's summary is not a cumulative count");
      last = uint64_t(v.val[k]);
      samples_.push_back({v.dense ? v.range.begin + k : uint64_t(v.idx[k]), before + last});
    }
    before += last;
  }
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
