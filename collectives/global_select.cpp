// SPDX-License-Identifier: BSD-3-Clause
// Global selection for the compressed allreduce (Ok-Topk, Li and Hoefler,
// PPoPP'22): the result is about k entries of the sum of the ranks' top-k
// selections, not the whole sum, so its volume does not grow with P.
//
// Owner ranges follow the communicator's partition (partition.hpp): equal
// ranges; balanced ones, cut where the previous call's owners received
// equal numbers of entries (each owner adds kBalanceQuantiles points of
// that distribution to its round 1 message); or equal ranges of the hashed
// partition's permuted indices (the caller permutes the selection and maps
// the result back; ties at the cut still go to the lower original index).
//
// Rounds (P > 1):
//   0  sparse reduce-scatter: each rank sends every owner the part of its
//      selection in the owner's range (owner_range()); the owner sums.
//   1  agreement: every owner sends every rank its policy (so that ranks
//      that disagree fail with SPARCL_ERR_MISMATCH), how many nonzero sums
//      it holds and, on steps that reuse a threshold, how many of them the
//      reused one keeps; then, in exact mode, its best k (magnitude, index)
//      pairs, from which every rank finds the k-th of the sum, and in
//      sampled mode, on the steps that estimate a threshold (every
//      threshold_reuse steps), an evenly spaced sample of about k/P of its
//      magnitudes, from which every rank estimates the magnitude above which
//      about k sums lie; with the balanced partition, where the entries
//      the owner received reach each 1/kBalanceQuantiles of their count.
//  (2) only when a reused threshold would keep fewer than k/2 or more than
//      2k entries: the sample, for an estimate at once.
//   Rounds 1 and 2 travel as raw float64 whatever the call's encoding
//   (counts and 32-bit keys are exact there); every rank computes the same
//   cut from the same messages.
//   last: allgather of the kept entries: each owner keeps the entries of its
//      range at or above the cut and sends them to every rank.
// Destinations are rotated by rank (rank r sends first to r+1).
//
// Volume per rank: about k(P-1)/P pairs in round 0 (a rank's k selected
// entries spread over the owners), at most about 2k(P-1)/P in the allgather
// (k/2 to 2k kept in all, spread over the owners, to P-1 ranks), 64 bytes of
// counts per peer (balanced: 256 more), and a sample of about k/P 8-byte
// keys per peer when estimating: within Ok-Topk's bound of 6k(P-1)/P pairs.
#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

#include "global_meta.hpp"
#include "src/codec/scalar.hpp"
#include "src/input.hpp"
#include "start.hpp"

namespace sparcl {
namespace {

using V = float;
using I = uint32_t;

// A sum entry ranks by its magnitude key (codec::magnitude_key: -0 == +0,
// Inf above every finite value, NaN above Inf); among equal keys the lower
// index ranks higher. An entry is kept when it ranks at or above the cut.
struct Cut {
  uint32_t key = 1;               // 1: every nonzero sum
  uint32_t last_index = UINT32_MAX;  // at `key`, indices up to this one
  bool keeps(uint32_t k, uint32_t i) const { return k > key || (k == key && i <= last_index); }
};

using Entry = std::pair<uint32_t, uint32_t>;  // (magnitude key, original index)
bool ranks_higher(const Entry& x, const Entry& y) { return x.first != y.first ? x.first > y.first : x.second < y.second; }

class GlobalSelect final : public AllreduceOp<V, I> {
  using Base = AllreduceOp<V, I>;

 public:
  // `input` is in the permuted index space when `permutation` is set (the
  // hashed partition); `ticket` is the call's place among balanced calls.
  GlobalSelect(Transport& t, const Identity& id, const View<V, I>& input, const GlobalSelectPolicy& policy,
               PartitionKind partition, PartitionTicket ticket, std::optional<IndexPermutation> permutation)
      : Base(t, id, input), policy_(policy), partition_(partition), ticket_(std::move(ticket)),
        perm_(std::move(permutation)) {
    if (!policy.exact && !policy.refresh) cut_.key = policy.threshold_key;
  }

  // After success (sampled mode): whether this step estimated a threshold,
  // and the magnitude key it kept entries at or above.
  bool estimated() const { return estimate_; }
  uint32_t threshold_key() const { return cut_.key; }
  bool permuted() const { return perm_.has_value(); }
  // An index of the result in the caller's index space.
  uint32_t original(uint64_t i) const { return uint32_t(perm_ ? perm_->inverse(i) : i); }

 protected:
  bool ready() override {
    if (!ticket_.ready()) return false;
    bounds_ = ticket_.bounds();
    return true;
  }
  void failed() noexcept override { ticket_.fail(); }

  // 0 reduce-scatter, 1 agreement, [2 sample, only for an early estimate],
  // then the allgather of the kept entries. Every rank decides alike after
  // round 1 whether the sample round runs.
  int rounds() const override { return this->size() == 1 ? 0 : sample_round_ ? 4 : 3; }
  bool is_sample_round(int round) const { return sample_round_ && round == 2; }

  Identity round_identity(int round) const override {
    Identity id = this->id_;
    if (round == 1 || is_sample_round(round)) {  // counts and keys, raw float64
      id.value_type = SPARCL_FLOAT64;
      id.encoding = Encoding::Raw;
      id.bucket = 0;
    }
    return id;
  }

  void post(int round, RoundIO& io) override {
    const int p = this->size(), r = this->rank();
    SharedBuffer own;
    if (round == 1 || is_sample_round(round)) {
      const std::vector<double>& v = round == 1 ? meta_ : sample_;
      own = encode(round_identity(round), uint16_t(round),
                   View<double, I>{Range{0, v.size()}, true, v.size(), nullptr, v.data()});
    } else if (round > 0) {
      own = this->message_for(round, kept_, own_stream(r));
    }
    for (int j = 1; j < p; ++j) {
      const int to = (r + j) % p, from = (r + p - j) % p;
      io.send(to, round == 0 ? this->encode_for(round, slice(this->input_, owner_range(to)), own_stream(r)) : own);
      io.recv(from);
    }
  }

  void consume(int round, std::vector<Received>& messages) override {
    const int r = this->rank();
    if (round == 0) {
      std::vector<Held<V, I>> held;
      std::vector<View<V, I>> parts{slice(this->input_, owner_range(r))};
      held.reserve(messages.size());
      for (auto& m : messages) {
        held.push_back(Held<V, I>::of_message(m, owner_range(r)));
        parts.push_back(held.back().view);
      }
      if (balanced()) quantiles_ = received_quantiles(owner_range(r), parts);
      reduce(merge_all(parts));
      return;
    }
    if (round == 1) {
      metas_.resize(size_t(this->size()));
      for (auto& m : messages) metas_[size_t(m.peer)] = read_meta(m);
      metas_[size_t(r)] = meta_;
      if (balanced()) next_bounds_ = balanced_bounds(samples_of_quantiles(metas_), this->id_.dim, this->size());
      after_metas();
      return;
    }
    if (is_sample_round(round)) {
      std::vector<std::vector<double>> samples(size_t(this->size()));
      for (auto& m : messages) samples[size_t(m.peer)] = read_sample(m);
      samples[size_t(r)] = sample_;
      cut_from_samples(samples);
      keep_own();
      return;
    }
    gathered_.resize(size_t(this->size()));
    for (auto& m : messages) gathered_[size_t(m.peer)] = Held<V, I>::of_message(m, owner_range(m.peer));
  }

  void finish() override {
    if (this->size() == 1) {  // nothing travels: the cut of this rank's own selection
      reduce(to_stream(this->input_));
      metas_ = {meta_};
      after_metas();
      if (sample_round_) {
        cut_from_samples({sample_});
        keep_own();
      }
      this->pieces_ = {kept_};
      ticket_.succeed({});
      return;
    }
    gathered_[size_t(this->rank())] = kept_;
    this->pieces_ = std::move(gathered_);
    ticket_.succeed(std::move(next_bounds_));
  }

 private:
  // The range that rank `owner` sums (in the permuted space when hashed).
  Range owner_range(int owner) const { return sparcl::owner_range(bounds_, this->whole(), this->size(), owner); }
  bool balanced() const { return partition_ == PartitionKind::Balanced && this->size() > 1; }

  // Balanced: for j = 1..kBalanceQuantiles, the smallest index of `own` up
  // to which the entries this owner received (its own part included) reach
  // ceil(j n / kBalanceQuantiles), and their exact count there, as
  // (index, count) pairs. Parts are sorted: counts come from binary searches.
  static std::vector<double> received_quantiles(Range own, const std::vector<View<V, I>>& parts) {
    const auto up_to = [&](uint64_t x) {  // entries at indices <= x
      uint64_t n = 0;
      for (const View<V, I>& v : parts)
        n += v.dense ? std::min<uint64_t>(v.nnz, x + 1 - std::min(x + 1, v.range.begin))
                     : uint64_t(std::upper_bound(v.idx, v.idx + v.nnz, I(x)) - v.idx);
      return n;
    };
    const uint64_t total = own.size() == 0 ? 0 : up_to(own.end - 1);
    std::vector<double> q;
    for (size_t j = 1; j <= kBalanceQuantiles; ++j) {
      if (total == 0) {  // nothing to cut by: pairs that say so
        q.insert(q.end(), {double(own.begin), 0.0});
        continue;
      }
      const uint64_t target = (total * j + kBalanceQuantiles - 1) / kBalanceQuantiles;
      uint64_t low = own.begin, high = own.end - 1;  // up_to(high) >= target
      while (low < high) {
        const uint64_t mid = low + (high - low) / 2;
        if (up_to(mid) >= target) high = mid; else low = mid + 1;
      }
      q.insert(q.end(), {double(low), double(up_to(low))});
    }
    return q;
  }

  size_t quantile_fields() const { return meta_quantile_fields(balanced()); }
  Range own_range() const { return this->size() == 1 ? this->whole() : owner_range(this->rank()); }

  size_t sample_count(double nonzeros) const { return meta_sample_count(nonzeros, policy_.k, this->size()); }

  // An evenly spaced sample of this owner's magnitudes (index order).
  std::vector<double> own_sample() const {
    const size_t n = nonzero_.size(), c = sample_count(double(n));
    std::vector<double> s;
    for (size_t j = 0; j < c; ++j) s.push_back(double(nonzero_[size_t((double(j) + 0.5) * double(n) / double(c))].first));
    return s;
  }

  // This owner's sums: its nonzero entries and its round 1 message.
  void reduce(Stream<V, I>&& sum) {
    reduced_ = std::move(sum);
    const View<V, I> v = reduced_.view();
    for (size_t j = 0; j < v.nnz; ++j) {
      const uint32_t key = codec::magnitude_key(v.val[j]);
      if (key != 0) nonzero_.emplace_back(key, original(v.dense ? v.range.begin + j : uint64_t(v.idx[j])));
    }
    const GlobalSelectPolicy& g = policy_;
    const bool reusing = !g.exact && !g.refresh;
    size_t above = 0;
    if (reusing)
      for (const Entry& e : nonzero_) above += e.first >= g.threshold_key;
    meta_ = {kMetaFormat, g.exact ? 1.0 : 0.0, double(g.k), double(g.reuse), g.refresh ? 1.0 : 0.0,
             double(reusing ? g.threshold_key : 0), double(nonzero_.size()), double(above)};
    if (g.exact) {  // the owner's best k, by (key desc, index asc)
      std::vector<Entry> best(nonzero_);
      const size_t c = size_t(std::min<uint64_t>(g.k, best.size()));
      std::nth_element(best.begin(), best.begin() + ptrdiff_t(c), best.end(), ranks_higher);
      for (size_t j = 0; j < c; ++j) {
        meta_.push_back(double(best[j].first));
        meta_.push_back(double(best[j].second));
      }
    } else if (g.refresh) {  // a scheduled estimate: the sample comes along
      const std::vector<double> s = own_sample();
      meta_.insert(meta_.end(), s.begin(), s.end());
    }
    meta_.insert(meta_.end(), quantiles_.begin(), quantiles_.end());
  }

  // What this rank expects of owner `owner`'s round 1 message.
  MetaExpectation expectation(int owner) const {
    MetaExpectation e;
    e.exact = policy_.exact;
    e.k = policy_.k;
    e.ranks = this->size();
    e.dim = this->id_.dim;
    e.range = owner_range(owner);
    e.balanced = balanced();
    e.permutation = perm_ ? &*perm_ : nullptr;
    return e;
  }

  std::vector<double> read_meta(const Received& m) const {
    const std::string from = "rank " + std::to_string(m.peer);
    const MetaExpectation e = expectation(m.peer);
    const uint64_t length = m.header.end;
    if (m.header.begin != 0 || length < kMetaFields || length > meta_max_length(e) || !(m.header.flags & kFlagDense))
      fail(SPARCL_ERR_CORRUPT, "malformed global selection message from " + from);
    const Decoded<double, I> d = decode<double, I>(*m.buffer, m.header, Range{0, length}, m.peer);
    std::vector<double> a(d.view.val, d.view.val + d.view.nnz);
    check_meta(a, meta_, e, from);
    return a;
  }

  // Once every owner's round 1 message is in (the same on every rank): the
  // cut, or whether a sample round must decide it. A reused threshold is
  // re-estimated at once when it would keep fewer than k/2 or more than 2k
  // entries, so that the volume stays bounded while magnitudes drift.
  void after_metas() {
    const GlobalSelectPolicy& g = policy_;
    double total = 0, above = 0;
    for (const auto& a : metas_) {
      total += a[kNonzeros];
      above += a[kAbove];
    }
    const double k = double(g.k);
    if (!g.exact) estimate_ = g.refresh || above > 2 * k || 2 * above < k;
    if (g.exact || estimate_) cut_ = Cut{};
    if (total > k) {
      if (g.exact) {
        std::vector<Entry> c;
        for (const auto& a : metas_)
          for (size_t j = kMetaFields; j + 1 < a.size() - quantile_fields(); j += 2)
            c.emplace_back(uint32_t(a[j]), uint32_t(a[j + 1]));
        // Every owner sent its best min(k, n): the k-th best of the union is among them.
        std::nth_element(c.begin(), c.begin() + ptrdiff_t(g.k - 1), c.end(), ranks_higher);
        cut_ = Cut{c[size_t(g.k - 1)].first, c[size_t(g.k - 1)].second};
      } else if (g.refresh) {
        std::vector<std::vector<double>> samples;
        for (const auto& a : metas_)
          samples.emplace_back(a.begin() + kMetaFields, a.end() - ptrdiff_t(quantile_fields()));
        cut_from_samples(samples);
      } else if (estimate_) {
        sample_round_ = true;
        sample_ = own_sample();
        return;  // the cut after the sample round
      }
    }
    keep_own();
  }

  std::vector<double> read_sample(const Received& m) const {
    const std::string from = "rank " + std::to_string(m.peer);
    const uint64_t want = sample_count(metas_[size_t(m.peer)][kNonzeros]);
    if (m.header.begin != 0 || m.header.end != want || !(m.header.flags & kFlagDense))
      fail(SPARCL_ERR_CORRUPT, "malformed global selection sample from " + from);
    const Decoded<double, I> d = decode<double, I>(*m.buffer, m.header, Range{0, want}, m.peer);
    std::vector<double> a(d.view.val, d.view.val + d.view.nnz);
    for (double x : a)
      if (!(x >= 1 && x <= double(UINT32_MAX) && x == std::floor(x)))
        fail(SPARCL_ERR_CORRUPT, "bad entry in the global selection sample from " + from);
    return a;
  }

  // Sampled: each owner's sample (rank order) stands for its n nonzeros;
  // walk down the magnitudes until the weights reach k.
  void cut_from_samples(const std::vector<std::vector<double>>& samples) {
    std::vector<std::pair<uint32_t, double>> s;  // (key, weight)
    for (size_t o = 0; o < samples.size(); ++o)
      for (double x : samples[o]) s.emplace_back(uint32_t(x), metas_[o][kNonzeros] / double(samples[o].size()));
    std::stable_sort(s.begin(), s.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
    double reached = 0;
    for (const auto& e : s) {
      reached += e.second;
      if (reached >= double(policy_.k)) {
        cut_.key = e.first;
        return;
      }
    }
  }

  void keep_own() { kept_ = Held<V, I>::of_stream(keep(reduced_.view(), own_range())); }

  // The entries of `v` (this owner's sums over `range`) that the cut keeps.
  Stream<V, I> keep(const View<V, I>& v, Range range) const {
    Stream<V, I> out;
    out.range = range;
    for (size_t j = 0; j < v.nnz; ++j) {
      const uint32_t key = codec::magnitude_key(v.val[j]);
      const uint32_t i = v.dense ? uint32_t(v.range.begin + j) : v.idx[j];
      if (key == 0 || !cut_.keeps(key, original(i))) continue;
      out.idx.push_back(i);
      out.val.push_back(v.val[j]);
    }
    return out;
  }

  GlobalSelectPolicy policy_;
  PartitionKind partition_;
  PartitionTicket ticket_;
  std::optional<IndexPermutation> perm_;  // hashed: the owners' index space
  std::vector<uint64_t> bounds_;          // balanced: this call's cut (empty: equal ranges)
  std::vector<double> quantiles_;         // balanced: this owner's round 1 summary
  std::vector<uint64_t> next_bounds_;     // balanced: the next call's cut
  Cut cut_;
  bool estimate_ = false;      // sampled: this step estimates the threshold
  bool sample_round_ = false;  // ... early, in a round of its own
  Stream<V, I> reduced_;
  std::vector<Entry> nonzero_;  // this owner's nonzero sums, index order
  std::vector<double> meta_, sample_;
  std::vector<std::vector<double>> metas_;
  Held<V, I> kept_;
  std::vector<Held<V, I>> gathered_;
};

}  // namespace

size_t meta_sample_count(double nonzeros, uint64_t k, int ranks) {
  const uint64_t per_owner = std::min<uint64_t>(kThresholdSample, std::max<uint64_t>(64, (k + uint64_t(ranks) - 1) / uint64_t(ranks)));
  return size_t(std::min<double>(nonzeros, double(per_owner)));
}

size_t meta_trailing_entries(const MetaExpectation& e, double nonzeros, bool refresh) {
  if (e.exact) return 2 * size_t(std::min(double(e.k), nonzeros));
  return refresh ? meta_sample_count(nonzeros, e.k, e.ranks) : 0;
}

size_t meta_max_length(const MetaExpectation& e) {
  return kMetaFields + size_t(std::max<uint64_t>(2 * e.k, kThresholdSample)) + meta_quantile_fields(e.balanced);
}

void check_meta(const std::vector<double>& a, const std::vector<double>& own, const MetaExpectation& e,
                const std::string& from) {
  const size_t quantile_fields = meta_quantile_fields(e.balanced);
  if (a.size() < kMetaFields + quantile_fields || own.size() < kMetaFields)
    fail(SPARCL_ERR_CORRUPT, "malformed global selection message from " + from);
  if (a[kFormat] != kMetaFormat) fail(SPARCL_ERR_CORRUPT, "unknown global selection message from " + from);
  const auto whole_number = [](double x, double low, double high) {
    return x >= low && x <= high && x == std::floor(x);
  };
  // The policy fields are whole numbers in their ranges before they are compared (and named).
  if (!whole_number(a[kExact], 0, 1) || !whole_number(a[kK], 1, 9007199254740992.0) ||
      !whole_number(a[kReuse], 1, double(UINT32_MAX)) || !whole_number(a[kRefresh], 0, 1) ||
      !whole_number(a[kThresholdKey], 0, double(UINT32_MAX)))
    fail(SPARCL_ERR_CORRUPT, "bad policy fields in the global selection message from " + from);
  const auto differ = [&](const char* what, double theirs, double ours) {
    fail(SPARCL_ERR_MISMATCH, from + " uses global selection with " + what + " " + std::to_string(uint64_t(theirs)) +
                                  ", this rank " + std::to_string(uint64_t(ours)) +
                                  " (every rank needs the same compressor configuration)");
  };
  if (a[kExact] != own[kExact])
    fail(SPARCL_ERR_MISMATCH, from + " uses the " + (a[kExact] != 0 ? "exact" : "sampled") +
                                  " global threshold, this rank the " + (e.exact ? "exact" : "sampled") + " one");
  if (a[kK] != own[kK]) differ("k", a[kK], own[kK]);
  if (a[kReuse] != own[kReuse]) differ("threshold_reuse", a[kReuse], own[kReuse]);
  if (a[kRefresh] != own[kRefresh] || a[kThresholdKey] != own[kThresholdKey])
    fail(SPARCL_ERR_MISMATCH, from + " is at another point of its threshold schedule than this rank (" +
                                  (a[kRefresh] != 0 ? "estimating" : "reusing") + " vs " +
                                  (own[kRefresh] != 0 ? "estimating" : "reusing") +
                                  " a threshold): were the compressors created or reset at different steps?");
  const Range range = e.range;
  const double n = a[kNonzeros], above = a[kAbove];
  if (!whole_number(n, 0, double(range.size())) || !whole_number(above, 0, n) ||
      kMetaFields + meta_trailing_entries(e, n, own[kRefresh] != 0) + quantile_fields != a.size())
    fail(SPARCL_ERR_CORRUPT, "bad counts in the global selection message from " + from);
  // Exact: (key, original index) pairs, the index owned by the sender;
  // sampled: keys.
  const size_t entries_end = a.size() - quantile_fields;
  for (size_t j = kMetaFields; j < entries_end; j += e.exact ? 2 : 1) {
    bool ok = whole_number(a[j], 1, double(UINT32_MAX));
    if (ok && e.exact) {
      ok = e.dim > 0 && whole_number(a[j + 1], 0, double(e.dim - 1));
      if (ok) {
        const uint64_t i = uint64_t(a[j + 1]);
        const uint64_t placed = e.permutation ? e.permutation->forward(i) : i;
        ok = placed >= range.begin && placed < range.end;
      }
    }
    if (!ok) fail(SPARCL_ERR_CORRUPT, "bad entry in the global selection message from " + from);
  }
  // Balanced: (index, count) pairs in the owner's range, both non-decreasing,
  // counts at most every rank's whole range; (range begin, 0) from an owner
  // that received nothing (its range may be empty).
  double at = double(range.begin), count = 0;
  for (size_t j = entries_end; j < a.size(); j += 2) {
    const bool at_ok = a[j + 1] == 0 ? a[j] == double(range.begin) : whole_number(a[j], at, double(range.end) - 1);
    if (!at_ok || !whole_number(a[j + 1], count, double(range.size()) * double(e.ranks)))
      fail(SPARCL_ERR_CORRUPT, "bad partition summary in the global selection message from " + from);
    at = a[j];
    count = a[j + 1];
  }
}

std::vector<WeightSample> samples_of_quantiles(const std::vector<std::vector<double>>& metas) {
  std::vector<WeightSample> samples;
  uint64_t before = 0;
  for (const auto& a : metas) {
    const size_t first = a.size() - 2 * kBalanceQuantiles;
    uint64_t last = 0;
    for (size_t j = first; j < a.size(); j += 2) {
      const uint64_t at = uint64_t(a[j]), count = uint64_t(a[j + 1]);
      if (count == 0 || count == last) continue;  // an empty owner, or a point repeated
      samples.push_back({at, before + count});
      last = count;
    }
    before += last;
  }
  return samples;
}

sparcl_request* start_global_select(CallStart call, const sparcl_sparse_t* send, float* dense_recv,
                                    const void* request_slot, const CompressedCall& compressed,
                                    const GlobalSelectPolicy& policy,
                                    std::function<void(const GlobalSelectOutcome&)> on_success) {
  const uint64_t dim = call.identity().dim;
  call.check([&] {
    require(request_slot != nullptr, SPARCL_ERR_INVALID_ARG, "request is NULL");
    check_sparse_header(send);
    require(dense_recv != nullptr, SPARCL_ERR_INVALID_ARG, "out is NULL");
    require(call.identity().value_type == SPARCL_FLOAT32 && dim < (uint64_t(1) << 32) && policy.k >= 1,
            SPARCL_ERR_INTERNAL, "global selection of other than float32 values with 32-bit indices");
    if (const DeviceStaging* staging = device_staging())
      staging->require_host_buffers(send->indices, dense_recv, "global selection (sparcl_allreduce_compressed)");
  });
  std::unique_ptr<sparcl_request> request;
  call.check([&] {
    request = std::make_unique<sparcl_request>();
    // What the operation reads: the converted selection, and under the
    // hashed partition that selection in the permuted index space.
    struct Kept {
      Input<V, I> in;
      Stream<V, I> permuted;
      std::vector<size_t> order;  // entry k of `permuted` is entry order[k] of `in`
    };
    auto kept = std::make_shared<Kept>();
    make_input(*send, kept->in);
    const PartitionKind partition = PartitionKind(call.comm()->config().partition);
    std::optional<IndexPermutation> perm;
    View<V, I> input = kept->in.view;
    InputSentFn<V> input_sent = compressed.input_sent;
    if (partition == PartitionKind::Hashed) {
      perm.emplace(dim);
      kept->permuted = permute(input, Range{0, dim}, [&](uint64_t i) { return perm->forward(i); }, &kept->order);
      input = kept->permuted.view();
      if (input_sent)  // the residual takes entries of the caller's selection
        input_sent = [then = std::move(input_sent), order = &kept->order](size_t first, size_t count,
                                                                          const V* received) {
          for (size_t k = 0; k < count; ++k) then((*order)[first + k], 1, received + k);
        };
    }
    auto op = std::make_unique<GlobalSelect>(call.comm()->transport(), call.identity(), input, policy, partition,
                                             call.take_partition(), std::move(perm));
    op->report_input_sent(std::move(input_sent));
    const GlobalSelect* select = op.get();
    request->deliver = [select, dense_recv, dim, on_success = std::move(on_success)] {
      GlobalSelectOutcome outcome;
      outcome.estimated = select->estimated();
      outcome.threshold_key = select->threshold_key();
      std::fill(dense_recv, dense_recv + dim, 0.0f);
      size_t entries = 0;
      for (const auto& piece : select->pieces()) entries += piece.view.nnz;
      outcome.kept.reserve(entries);
      for (const auto& piece : select->pieces()) {
        const View<V, I>& v = piece.view;
        for (size_t j = 0; j < v.nnz; ++j) {
          if (v.dense && codec::magnitude_key(v.val[j]) == 0) continue;  // sent dense: the entries it holds
          const uint32_t i = select->original(v.dense ? v.range.begin + j : uint64_t(v.idx[j]));
          dense_recv[i] = v.val[j];
          outcome.kept.push_back(i);
        }
      }
      if (select->permuted()) std::sort(outcome.kept.begin(), outcome.kept.end());
      if (on_success) on_success(outcome);
    };
    request->op = std::move(op);
    request->keep = kept;
  });
  return call.submit(std::move(request));
}

}  // namespace sparcl
