// SPDX-License-Identifier: BSD-3-Clause
// How the algorithms that give each rank an owner range cut [0, dim)
// (split_allgather, split_dense, ring, halving_doubling, the reduce-scatter,
// global selection): sparcl_partition_t.
//
//   equal:    P consecutive ranges of nearly equal width (split_range).
//   balanced: P consecutive ranges cut where the previous same-dim call of
//             the same collective found equal weight: the entries each owner
//             received in its first round, which a last round of small
//             messages (weight_summary) gives every rank (split algorithms,
//             the reduce-scatter; global selection sends them in its
//             agreement round), or the entries of the result (ring,
//             halving_doubling: no message). Every rank derives the cuts
//             from the same bytes, so all derive the same ones. A call
//             waits for the outcome of the previous one (a PartitionTicket),
//             so that ranks never disagree through timing; after a failure
//             the next call cuts equal ranges. If ranks still disagree (a
//             call that failed on some ranks and not on others), every owner
//             checks the range of every message it receives, the call fails
//             on every rank with SPARCL_ERR_MISMATCH, and the one after it
//             starts again from equal ranges.
//   hashed:   equal ranges of a fixed permutation of the indices
//             (i -> a*i mod dim, a coprime with dim near 0.618 dim), so that
//             clustered hot indices spread over all owners; no history.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <tuple>
#include <utility>
#include <vector>

#include "collective.hpp"

namespace sparcl {

enum class PartitionKind : uint8_t { Equal = SPARCL_PARTITION_EQUAL, Balanced = SPARCL_PARTITION_BALANCED,
                                     Hashed = SPARCL_PARTITION_HASHED };

// The cut of a call with balanced ranges, as the next same-dim call will read it.
struct PartitionRecord {
  bool done = false;             // the call has ended on this rank
  bool ok = false;               // ... successfully: `bounds` holds its cut
  std::vector<uint64_t> bounds;  // P + 1 boundaries, or empty for equal ranges
};

// A call's place in the chain of balanced calls of its dim: the previous
// call's record, which it waits for, and its own, which it completes.
// Dropped without completing, the call counts as failed.
class PartitionTicket {
 public:
  PartitionTicket() = default;
  PartitionTicket(std::shared_ptr<const PartitionRecord> previous, std::shared_ptr<PartitionRecord> own)
      : previous_(std::move(previous)), own_(std::move(own)) {}
  PartitionTicket(PartitionTicket&& o) noexcept = default;
  PartitionTicket& operator=(PartitionTicket&& o) noexcept {
    if (this != &o) {
      fail();
      previous_ = std::move(o.previous_);
      own_ = std::move(o.own_);
    }
    return *this;
  }
  PartitionTicket(const PartitionTicket&) = delete;
  PartitionTicket& operator=(const PartitionTicket&) = delete;
  ~PartitionTicket() { fail(); }

  bool active() const { return own_ != nullptr; }
  // Whether the previous call has ended on this rank.
  bool ready() const { return !previous_ || previous_->done; }
  // The cut this call uses (once ready()): the previous call's, or empty
  // (equal ranges) if there was none or it failed.
  std::vector<uint64_t> bounds() const {
    return previous_ && previous_->ok ? previous_->bounds : std::vector<uint64_t>{};
  }
  void succeed(std::vector<uint64_t> next) {
    if (!own_ || own_->done) return;
    own_->bounds = std::move(next);
    own_->ok = true;
    own_->done = true;
    previous_.reset();
  }
  void fail() noexcept {
    if (own_ && !own_->done) own_->done = true;
    previous_.reset();
  }

 private:
  std::shared_ptr<const PartitionRecord> previous_;
  std::shared_ptr<PartitionRecord> own_;
};

// The latest balanced call of each collective, algorithm and dim on a
// communicator (those of an Identity: global selection weighs what its
// owners receive differently from split_allgather, so each keeps its own).
class PartitionHistory {
 public:
  PartitionTicket take(const Identity& id) {
    auto own = std::make_shared<PartitionRecord>();
    std::shared_ptr<PartitionRecord>& last = last_[{uint8_t(id.kind), id.algorithm, id.dim}];
    PartitionTicket t(last, own);
    last = own;
    return t;
  }

 private:
  std::map<std::tuple<uint8_t, uint8_t, uint64_t>, std::shared_ptr<PartitionRecord>> last_;
};

// The range of `owner` under `bounds` (empty: equal ranges).
inline Range owner_range(const std::vector<uint64_t>& bounds, Range whole, int parts, int owner) {
  if (bounds.empty()) return split_range(whole, uint64_t(parts), uint64_t(owner));
  return Range{bounds[size_t(owner)], bounds[size_t(owner) + 1]};
}

// Samples of a cumulative weight over [0, dim): at index x (strictly
// increasing), the weight of all indices <= x (non-decreasing).
struct WeightSample {
  uint64_t at;
  uint64_t cumulative;
};

// The P + 1 boundaries that give each of `parts` owners about the same
// weight, the weight between two samples taken as spread evenly over their
// indices. Empty (equal ranges) when there is no weight. Integer arithmetic
// only: every rank computes the same cut from the same samples.
std::vector<uint64_t> balanced_bounds(const std::vector<WeightSample>& samples, uint64_t dim, int parts);

// Sub-ranges per owner in a balanced call's summary of the entries it received.
constexpr uint64_t kSummaryBins = 256;

// How the entries of `parts` (what owner range `own` received, its own part
// included) spread over `own`: for each of up to kSummaryBins equal
// sub-ranges holding any, its last index and the count up to its end. Sent
// to every rank, raw, as a sparse message over `own`.
template <class V, class I>
Stream<V, I> weight_summary(Range own, const std::vector<View<V, I>>& parts) {
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
    const uint64_t last = own.begin + uint64_t((uint128(b + 1) * own.size() + bins - 1) / bins) - 1;
    s.idx.push_back(I(last));
    s.val.push_back(V(cumulative));
  }
  return s;
}

// Every owner's summary (in rank order) as samples of the weight over
// [0, dim). Throws SPARCL_ERR_CORRUPT for a summary that is not a count.
template <class V, class I>
std::vector<WeightSample> samples_of(const std::vector<Held<V, I>>& summaries) {
  std::vector<WeightSample> samples;
  uint64_t before = 0;
  for (const auto& h : summaries) {
    const View<V, I>& v = h.view;
    uint64_t last = 0;
    for (size_t k = 0; k < v.nnz; ++k) {
      if (!has_bits(v.val[k])) continue;  // a summary sent dense: indices without a sample
      if (!(v.val[k] >= V(1) && v.val[k] < V(1e18)) || uint64_t(v.val[k]) < last)
        fail(SPARCL_ERR_CORRUPT, "a balanced call's summary of received entries is not a cumulative count");
      last = uint64_t(v.val[k]);
      samples.push_back({v.dense ? v.range.begin + k : uint64_t(v.idx[k]), before + last});
    }
    before += last;
  }
  return samples;
}

// The identity of a summary round: counts travel raw whatever the call's encoding.
inline Identity summary_identity(const Identity& id) {
  Identity raw = id;
  raw.encoding = Encoding::Raw;
  raw.bucket = 0;
  return raw;
}

// The fixed permutation of the hashed partition.
class IndexPermutation {
 public:
  explicit IndexPermutation(uint64_t dim);
  uint64_t forward(uint64_t i) const { return mul(a_, i); }
  uint64_t inverse(uint64_t j) const { return mul(a_inverse_, j); }

 private:
  uint64_t mul(uint64_t a, uint64_t i) const {
    if (dim_ <= (uint64_t(1) << 32)) return (a * i) % dim_;  // both < 2^32
    return uint64_t((uint128(a) * i) % dim_);
  }
  uint64_t dim_, a_ = 1, a_inverse_ = 1;
};

// Sorts (key, position) pairs by key, keys below `bound`: an LSD radix sort
// in 11-bit digits (as many passes as `bound` needs: two below 2^22), stable,
// so equal keys keep their order. std::sort of the pairs took most of
// split_allgather_hashed's time (7-8x split_allgather's at 1M, 1%, P=4).
inline void sort_by_key(std::vector<std::pair<uint64_t, size_t>>& keyed, uint64_t bound) {
  if (keyed.size() < 256) {
    std::stable_sort(keyed.begin(), keyed.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
    return;
  }
  constexpr int kDigitBits = 11;
  constexpr uint64_t kMask = (uint64_t(1) << kDigitBits) - 1;
  std::vector<std::pair<uint64_t, size_t>> other(keyed.size());
  size_t count[size_t(1) << kDigitBits];
  for (int shift = 0; shift < 64 && (shift == 0 || (bound - 1) >> shift); shift += kDigitBits) {
    std::fill(std::begin(count), std::end(count), size_t(0));
    for (const auto& e : keyed) ++count[(e.first >> shift) & kMask];
    size_t sum = 0;
    for (auto& c : count) {
      const size_t n = c;
      c = sum;
      sum += n;
    }
    for (const auto& e : keyed) other[count[(e.first >> shift) & kMask]++] = e;
    keyed.swap(other);
  }
}

// `v` with every index i moved to map(i), as a stream over `whole`.
// `order`, if not null, receives for each entry of the result the position
// of its entry in `v`. A dense view stays dense.
template <class V, class I, class Map>
Stream<V, I> permute(const View<V, I>& v, Range whole, Map&& map, std::vector<size_t>* order = nullptr) {
  Stream<V, I> s;
  s.range = whole;
  if (v.dense) {
    if (v.range != whole) fail(SPARCL_ERR_INTERNAL, "permute of a dense piece");
    s.dense = true;
    s.val.resize(whole.size());
    for (uint64_t k = 0; k < v.nnz; ++k) s.val[size_t(map(whole.begin + k) - whole.begin)] = v.val[k];
    if (order) {
      order->resize(v.nnz);
      for (uint64_t k = 0; k < v.nnz; ++k) (*order)[size_t(map(whole.begin + k) - whole.begin)] = size_t(k);
    }
    return s;
  }
  std::vector<std::pair<uint64_t, size_t>> keyed(v.nnz);
  for (size_t k = 0; k < v.nnz; ++k) keyed[k] = {map(uint64_t(v.idx[k])), k};
  sort_by_key(keyed, whole.end);  // keys are distinct (map is a permutation)
  s.idx.resize(v.nnz);
  s.val.resize(v.nnz);
  if (order) order->resize(v.nnz);
  for (size_t k = 0; k < v.nnz; ++k) {
    s.idx[k] = I(keyed[k].first);
    s.val[k] = v.val[keyed[k].second];
    if (order) (*order)[k] = keyed[k].second;
  }
  return s;
}

// Entries of a stream over the permuted space, back in the caller's index
// space; a dense range keeps its entries with a bit set (as a sparse result
// of it would).
template <class V, class I>
Stream<V, I> unpermute(const View<V, I>& v, Range whole, const IndexPermutation& perm) {
  if (v.dense && v.range == whole) return permute(v, whole, [&](uint64_t j) { return perm.inverse(j); });
  const Stream<V, I> sparse = v.dense ? to_sparse_stream(v) : Stream<V, I>{};
  const View<V, I> entries = v.dense ? sparse.view() : v;
  View<V, I> widened = entries;
  widened.range = whole;
  return permute(widened, whole, [&](uint64_t j) { return perm.inverse(j); });
}

// The algorithms that config.partition applies to: split_allgather,
// split_dense, ring, halving_doubling.
bool partitioned_algorithm(sparcl_algorithm_t a);

// What a balanced cut evens out (partition.cpp): the entries each owner
// received in the first round (one more round tells every rank), or the
// entries of the result (known to every rank).
enum class PartitionWeight : uint8_t { Received, Result };

// An algorithm's operation over explicit boundaries (empty: equal ranges).
template <class V, class I>
using OverBounds = std::function<std::unique_ptr<AllreduceOp<V, I>>(const View<V, I>&, std::vector<uint64_t>)>;

// `algorithm` (partitioned_algorithm()) under a balanced or hashed partition.
template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_partitioned(sparcl_algorithm_t algorithm, Transport& t, const Identity& id,
                                                    const View<V, I>& input, PartitionKind kind,
                                                    PartitionTicket ticket);

// The operations over explicit boundaries: split_allgather / split_dense
// (split_allgather.cpp) and ring (ring.cpp) over P + 1 of them,
// halving_doubling (halving_doubling.cpp) over P2 + 1 (its leaves, P2 the
// largest power of 2 <= P).
template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_split_over(Transport& t, const Identity& id, const View<V, I>& input,
                                                   bool dense_result, std::vector<uint64_t> bounds);
template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_ring_over(Transport& t, const Identity& id, const View<V, I>& input,
                                                  std::vector<uint64_t> bounds);
template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_halving_doubling_over(Transport& t, const Identity& id,
                                                              const View<V, I>& input, std::vector<uint64_t> bounds);

// The sparse reduce-scatter (reduce_scatter.cpp): each rank receives the sum
// of every rank's vector over its own part of [0, dim).
template <class V, class I>
class ReduceScatterOp final : public Operation {
 public:
  ReduceScatterOp(Transport& t, const Identity& id, const View<V, I>& input, PartitionKind kind,
                  PartitionTicket ticket);
  // After success: this rank's part, over its range (equal and balanced
  // partitions), or over [0, dim) holding the indices it owns (hashed).
  const Held<V, I>& part() const { return part_; }

 protected:
  bool ready() override;
  int rounds() const override;
  void post(int round, RoundIO& io) override;
  void consume(int round, std::vector<Received>& messages) override;
  void finish() override;
  void failed() noexcept override { ticket_.fail(); }
  Identity round_identity(int round) const override;

 private:
  Range range(int owner) const { return owner_range(bounds_, Range{0, id_.dim}, size(), owner); }

  View<V, I> input_;  // in the permuted space for the hashed partition
  std::shared_ptr<const Stream<V, I>> permuted_;
  PartitionKind kind_;
  PartitionTicket ticket_;
  std::vector<uint64_t> bounds_;
  Held<V, I> part_;
  Held<V, I> summary_;                   // balanced: this owner's received weight
  std::vector<WeightSample> samples_;    // balanced: every owner's, in rank order
};

}  // namespace sparcl
