// SPDX-License-Identifier: BSD-3-Clause
// Balanced and hashed owner ranges (partition.hpp), the algorithms that
// cut owner ranges (split_allgather, split_dense, ring, halving_doubling)
// under them, and the hashed ones as algorithms of their own
// (split_allgather_hashed, halving_doubling_hashed).
#include "partition.hpp"

#include "fold.hpp"

namespace sparcl {

std::vector<uint64_t> balanced_bounds(const std::vector<WeightSample>& samples, uint64_t dim, int parts) {
  if (samples.empty() || parts < 2 || samples.back().cumulative == 0) return {};
  const uint64_t total = samples.back().cumulative;
  std::vector<uint64_t> b(size_t(parts) + 1, 0);
  b[size_t(parts)] = dim;
  size_t s = 0;
  for (int k = 1; k < parts; ++k) {
    // Owner k - 1 ends where the weight reaches ceil(k * total / parts).
    const uint64_t target = uint64_t((uint128(total) * uint64_t(k) + uint64_t(parts) - 1) / uint64_t(parts));
    while (samples[s].cumulative < target) ++s;  // the last sample holds `total`
    const uint64_t low = s ? samples[s - 1].at + 1 : 0;
    const uint64_t below = s ? samples[s - 1].cumulative : 0;
    const uint64_t length = samples[s].at - low + 1;
    const uint64_t cut = low + uint64_t(uint128(length) * (target - below) / (samples[s].cumulative - below));
    b[size_t(k)] = std::min(dim, std::max(cut, b[size_t(k) - 1]));
  }
  return b;
}

namespace {
uint64_t gcd(uint64_t a, uint64_t b) {
  while (b) a = std::exchange(b, a % b);
  return a;
}

// a^-1 mod m (gcd(a, m) = 1), by the extended Euclidean algorithm.
__extension__ typedef __int128 int128;
uint64_t inverse_mod(uint64_t a, uint64_t m) {
  int128 t = 0, next_t = 1, r = m, next_r = a;
  while (next_r != 0) {
    const int128 q = r / next_r;
    t = std::exchange(next_t, t - q * next_t);
    r = std::exchange(next_r, r - q * next_r);
  }
  if (t < 0) t += m;
  return uint64_t(t);
}
}  // namespace

IndexPermutation::IndexPermutation(uint64_t dim) : dim_(dim) {
  if (dim <= 2) return;  // the identity
  // Near dim / golden ratio: consecutive indices land far apart and evenly
  // spread (the three-distance theorem), so a hot cluster meets every owner.
  uint64_t a = uint64_t(double(dim) * 0.6180339887498949) | 1;
  while (gcd(a, dim) != 1) a += 2;
  a_ = a % dim;
  a_inverse_ = inverse_mod(a_, dim);
}

namespace {

// Samples of how the set entries of `pieces` (a result: disjoint ranges in
// increasing order, the same bits on every rank whatever form each piece
// has) spread over [0, dim): where they reach j / kResultSamples of their
// count, for j = 1..kResultSamples.
constexpr uint64_t kResultSamples = 4096;
template <class V, class I>
std::vector<WeightSample> result_samples(const std::vector<Held<V, I>>& pieces) {
  uint64_t total = 0;
  for (const auto& p : pieces) total += set_entries(p);
  std::vector<WeightSample> samples;
  if (total == 0) return samples;
  const auto target_of = [&](uint64_t j) {
    return uint64_t((uint128(total) * j + kResultSamples - 1) / kResultSamples);
  };
  uint64_t seen = 0, j = 1, target = target_of(1);
  for (const auto& p : pieces) {
    const View<V, I>& v = p.view;
    for (size_t k = 0; k < v.nnz; ++k) {
      if (!has_bits(v.val[k]) || ++seen < target) continue;
      samples.push_back({v.dense ? v.range.begin + k : uint64_t(v.idx[k]), seen});
      while (j <= kResultSamples && target_of(j) <= seen) ++j;
      target = j <= kResultSamples ? target_of(j) : UINT64_MAX;
    }
  }
  return samples;
}

// An algorithm under a balanced or hashed partition: `over(input, bounds)`
// makes it over explicit boundaries of `parts` owner ranges (empty: equal).
//   hashed:   it runs over equal ranges of the permuted indices, and the
//             result is permuted back.
//   balanced: it runs over the cut the previous same-dim call left (once
//             that call has ended), and leaves the next call a cut where
//             the weight is even. The weight is what the algorithm's traffic
//             follows. For the split algorithms it is the entries each owner
//             received in the first round (where skewed indices pile up),
//             which a last round of small messages (weight_summary) gives
//             every rank. For ring and halving_doubling, whose messages carry
//             partial sums of a range, it is the result's entries there:
//             the same bits on every rank, so no message is needed.
// Every rank derives the cut from the same data, so all derive the same one.
template <class V, class I>
class Partitioned final : public AllreduceOp<V, I> {
  using Base = AllreduceOp<V, I>;

 public:
  Partitioned(Transport& t, const Identity& id, const View<V, I>& input, OverBounds<V, I> over, int parts,
              PartitionWeight weight, PartitionKind kind, PartitionTicket ticket)
      : Base(t, id, input), over_(std::move(over)), parts_(parts), weight_(weight), kind_(kind),
        ticket_(std::move(ticket)) {}

  bool ready() override {
    if (inner_) return inner_->ready();
    if (!ticket_.ready()) return false;
    if (kind_ == PartitionKind::Hashed) {
      perm_ = std::make_unique<IndexPermutation>(this->id_.dim);
      permuted_ = std::make_shared<const Stream<V, I>>(
          permute(this->input_, this->whole(), [&](uint64_t i) { return perm_->forward(i); }, &order_));
      inner_ = over_(permuted_->view(), {});
      if (this->input_sent_) {
        // The inner operation reports entries of the permuted input.
        inner_->report_input_sent([this](size_t first, size_t count, const V* received) {
          for (size_t k = 0; k < count; ++k) this->input_sent_(order_[first + k], 1, received + k);
        });
      }
    } else {
      bounds_ = ticket_.bounds();
      inner_ = over_(this->input_, bounds_);
      if (this->input_sent_) inner_->report_input_sent(this->input_sent_);
    }
    return inner_->ready();
  }
  int rounds() const override {
    if (!inner_) return 0;
    return inner_->rounds() + (summarises() ? 1 : 0);
  }

  void post(int round, RoundIO& io) override {
    if (round < inner_->rounds()) return inner_->post(round, io);
    const int p = this->size(), r = this->rank();
    const SharedBuffer summary = encode(summary_identity(this->id_), uint16_t(round), summary_.view);
    for (int j = 1; j < p; ++j) {
      io.send((r + j) % p, summary);
      io.recv((r + p - j) % p);
    }
  }

  void consume(int round, std::vector<Received>& messages) override {
    if (round >= inner_->rounds()) {
      std::vector<Held<V, I>> summaries(static_cast<size_t>(this->size()));
      summaries[size_t(this->rank())] = summary_;
      for (auto& m : messages) summaries[size_t(m.peer)] = Held<V, I>::of_message(m, range(m.peer));
      samples_ = samples_of(summaries);
      return;
    }
    if (round == 0 && summarises()) {
      // What this owner received (its own part included), before the
      // algorithm consumes the messages.
      const Range own = range(this->rank());
      std::vector<Held<V, I>> held;
      std::vector<View<V, I>> parts{slice(this->input_, own)};
      for (auto& m : messages) {
        held.push_back(Held<V, I>::of_message(m, own));
        parts.push_back(held.back().view);
      }
      summary_ = Held<V, I>::of_stream(weight_summary(own, parts));
    }
    inner_->consume(round, messages);
  }

  void finish() override {
    inner_->finish();
    if (kind_ == PartitionKind::Hashed) {
      std::vector<View<V, I>> views;
      for (const auto& p : inner_->pieces()) views.push_back(p.view);
      const Stream<V, I> joined = concat(views, this->whole());
      this->pieces_ = {Held<V, I>::of_stream(unpermute(joined.view(), this->whole(), *perm_))};
      return;
    }
    this->pieces_ = inner_->pieces();
    if (weight_ == PartitionWeight::Result) samples_ = result_samples(this->pieces_);
    ticket_.succeed(balanced_bounds(samples_, this->id_.dim, parts_));
  }

 protected:
  Identity round_identity(int round) const override {
    return inner_ && round >= inner_->rounds() ? summary_identity(this->id_) : this->id_;
  }

  void failed() noexcept override {
    ticket_.fail();
    if (inner_) inner_->failed();
  }

 private:
  OverBounds<V, I> over_;
  int parts_;
  PartitionWeight weight_;
  PartitionKind kind_;
  PartitionTicket ticket_;
  std::unique_ptr<IndexPermutation> perm_;
  std::shared_ptr<const Stream<V, I>> permuted_;
  std::vector<size_t> order_;  // hashed: entry k of the permuted input is entry order_[k] of the input
  std::unique_ptr<AllreduceOp<V, I>> inner_;
  std::vector<uint64_t> bounds_;      // balanced: this call's cut (empty: equal ranges)
  Held<V, I> summary_;                // balanced, received weight: this owner's received entries
  std::vector<WeightSample> samples_;  // balanced: the weight over [0, dim)

  bool summarises() const {
    return kind_ == PartitionKind::Balanced && weight_ == PartitionWeight::Received && this->size() > 1;
  }
  Range range(int owner) const { return owner_range(bounds_, this->whole(), this->size(), owner); }
};

}  // namespace

bool partitioned_algorithm(sparcl_algorithm_t a) {
  return a == SPARCL_ALGO_SPLIT_ALLGATHER || a == SPARCL_ALGO_SPLIT_DENSE || a == SPARCL_ALGO_RING ||
         a == SPARCL_ALGO_HALVING_DOUBLING;
}

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_partitioned(sparcl_algorithm_t algorithm, Transport& t, const Identity& id,
                                                    const View<V, I>& input, PartitionKind kind,
                                                    PartitionTicket ticket) {
  if (!partitioned_algorithm(algorithm)) fail(SPARCL_ERR_INTERNAL, "no partitioned form of this algorithm");
  const bool split = algorithm == SPARCL_ALGO_SPLIT_ALLGATHER || algorithm == SPARCL_ALGO_SPLIT_DENSE;
  OverBounds<V, I> over = [&t, id, algorithm](const View<V, I>& in, std::vector<uint64_t> b) {
    if (algorithm == SPARCL_ALGO_RING) return make_ring_over<V, I>(t, id, in, std::move(b));
    if (algorithm == SPARCL_ALGO_HALVING_DOUBLING) return make_halving_doubling_over<V, I>(t, id, in, std::move(b));
    return make_split_over<V, I>(t, id, in, algorithm == SPARCL_ALGO_SPLIT_DENSE, std::move(b));
  };
  // halving_doubling cuts its P2 leaf ranges (fold.hpp), the others P ranges.
  const int parts = algorithm == SPARCL_ALGO_HALVING_DOUBLING ? Fold(t.rank(), t.size()).p2 : t.size();
  return std::make_unique<Partitioned<V, I>>(t, id, input, std::move(over), parts,
                                             split ? PartitionWeight::Received : PartitionWeight::Result, kind,
                                             std::move(ticket));
}

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_split_allgather_hashed(Transport& t, const Identity& id,
                                                               const View<V, I>& input, NativeSlot) {
  return make_partitioned<V, I>(SPARCL_ALGO_SPLIT_ALLGATHER, t, id, input, PartitionKind::Hashed, PartitionTicket{});
}

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_halving_doubling_hashed(Transport& t, const Identity& id,
                                                                const View<V, I>& input, NativeSlot) {
  return make_partitioned<V, I>(SPARCL_ALGO_HALVING_DOUBLING, t, id, input, PartitionKind::Hashed, PartitionTicket{});
}

#define SPARCL_INSTANTIATE(V, I)                                                                               \
  template std::unique_ptr<AllreduceOp<V, I>> make_split_allgather_hashed(Transport&, const Identity&,       \
                                                                          const View<V, I>&, NativeSlot);     \
  template std::unique_ptr<AllreduceOp<V, I>> make_halving_doubling_hashed(Transport&, const Identity&,      \
                                                                           const View<V, I>&, NativeSlot);    \
  template std::unique_ptr<AllreduceOp<V, I>> make_partitioned(sparcl_algorithm_t, Transport&, const Identity&, \
                                                               const View<V, I>&, PartitionKind, PartitionTicket);
SPARCL_FOR_EACH_TYPE(SPARCL_INSTANTIATE)

}  // namespace sparcl
