// SPDX-License-Identifier: BSD-3-Clause
// Global selection for the compressed allreduce (Ok-Topk, Li and Hoefler,
// PPoPP'22): the result is about k entries of the sum of the ranks' top-k
// selections, not the whole sum, so its volume does not grow with P.
//
// Rounds (P > 1):
//   0  sparse reduce-scatter: each rank sends every owner the part of its
//      selection in the owner's range (owner_range()); the owner sums.
//   1  threshold agreement: every owner sends every rank its policy (so
//      that ranks that disagree fail with SPARCL_ERR_MISMATCH), how many
//      nonzero sums it holds, and what the threshold is computed from: a
//      sample of their magnitudes (sampled mode, on the steps that estimate
//      a new threshold; nothing on steps that reuse one) or its largest k
//      (magnitude, index) pairs (exact mode). Every rank computes the same
//      cut from the same messages. Travels as raw float64 whatever the
//      call's encoding (counts and 32-bit keys are exact there).
//   2  allgather of the kept entries: each owner keeps the entries of its
//      range at or above the cut and sends them to every rank.
// Destinations are rotated by rank (rank r sends first to r+1).
//
// Volume per rank: about k(P-1)/P pairs in round 0 (a rank's k selected
// entries spread over the owners), about k(P-1)/P in round 2 (about k kept
// in all, k/P per owner, to P-1 ranks), plus round 1's small messages:
// within Ok-Topk's bound of 6k(P-1)/P.
#include <algorithm>
#include <cmath>
#include <string>

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

// Round 1's message: a dense float64 vector over [0, length).
constexpr size_t kMetaFields = 8;
constexpr double kMetaFormat = 1.0;
// Sampled mode: about k/P magnitudes per owner, at least 64 and at most
// 1024 (about k^2/union of the samples then lie above the threshold: enough
// for a few percent), so that an estimate costs about what round 0 does.
constexpr size_t kThresholdSample = 1024;
size_t sample_size(uint64_t k, int ranks) {
  return size_t(std::min<uint64_t>(kThresholdSample, std::max<uint64_t>(64, (k + uint64_t(ranks) - 1) / uint64_t(ranks))));
}

struct Meta {
  double format, exact, k, reuse, refresh, threshold, nonzeros, count;
};

class GlobalSelect final : public AllreduceOp<V, I> {
  using Base = AllreduceOp<V, I>;

 public:
  GlobalSelect(Transport& t, const Identity& id, const View<V, I>& input, const GlobalSelectPolicy& policy)
      : Base(t, id, input), policy_(policy) {
    if (!policy.exact && !policy.refresh) cut_.key = policy.threshold_key;
  }

  uint32_t threshold_key() const { return cut_.key; }

 protected:
  int rounds() const override { return this->size() == 1 ? 0 : 3; }

  Identity round_identity(int round) const override {
    Identity id = this->id_;
    if (round == 1) {  // counts and keys, raw float64
      id.value_type = SPARCL_FLOAT64;
      id.encoding = Encoding::Raw;
      id.bucket = 0;
    }
    return id;
  }

  void post(int round, RoundIO& io) override {
    const int p = this->size(), r = this->rank();
    SharedBuffer own;
    if (round == 1) {
      own = encode(round_identity(1), 1, View<double, I>{Range{0, agreement_.size()}, true, agreement_.size(),
                                                         nullptr, agreement_.data()});
    } else if (round == 2) {
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
      reduced_ = merge_all(parts);
      agreement_ = own_agreement();
      return;
    }
    if (round == 1) {
      std::vector<std::vector<double>> from(size_t(this->size()));
      for (auto& m : messages) from[size_t(m.peer)] = read_agreement(m);
      from[size_t(r)] = agreement_;
      decide(from);
      kept_ = Held<V, I>::of_stream(keep(reduced_.view(), owner_range(r)));
      return;
    }
    gathered_.resize(size_t(this->size()));
    for (auto& m : messages) gathered_[size_t(m.peer)] = Held<V, I>::of_message(m, owner_range(m.peer));
  }

  void finish() override {
    if (this->size() == 1) {  // nothing travels: the cut of this rank's own selection
      reduced_ = to_stream(this->input_);
      agreement_ = own_agreement();
      decide({agreement_});
      this->pieces_ = {Held<V, I>::of_stream(keep(reduced_.view(), this->whole()))};
      return;
    }
    gathered_[size_t(this->rank())] = kept_;
    this->pieces_ = std::move(gathered_);
  }

 private:
  // The range that rank `owner` sums: equal ranges (one place to give other
  // boundaries).
  Range owner_range(int owner) const {
    return split_range(this->whole(), uint64_t(this->size()), uint64_t(owner));
  }

  // This owner's nonzero sums as (key, index), index order.
  template <class F>
  void for_each_nonzero(const View<V, I>& v, F&& f) const {
    for (size_t j = 0; j < v.nnz; ++j) {
      const uint32_t key = codec::magnitude_key(v.val[j]);
      if (key == 0) continue;
      f(key, v.dense ? uint32_t(v.range.begin + j) : v.idx[j]);
    }
  }

  std::vector<double> own_agreement() const {
    const GlobalSelectPolicy& g = policy_;
    std::vector<double> a{kMetaFormat,  g.exact ? 1.0 : 0.0, double(g.k), double(g.reuse),
                          g.refresh ? 1.0 : 0.0, double(g.exact || g.refresh ? 0 : g.threshold_key), 0.0, 0.0};
    std::vector<std::pair<uint32_t, uint32_t>> nz;  // (key, index)
    for_each_nonzero(reduced_.view(), [&](uint32_t key, uint32_t i) { nz.emplace_back(key, i); });
    a[6] = double(nz.size());
    if (g.exact) {  // the owner's best k, by (key desc, index asc)
      auto better = [](const std::pair<uint32_t, uint32_t>& x, const std::pair<uint32_t, uint32_t>& y) {
        return x.first != y.first ? x.first > y.first : x.second < y.second;
      };
      const size_t c = size_t(std::min<uint64_t>(g.k, nz.size()));
      std::nth_element(nz.begin(), nz.begin() + ptrdiff_t(c), nz.end(), better);
      a[7] = double(c);
      for (size_t j = 0; j < c; ++j) {
        a.push_back(double(nz[j].first));
        a.push_back(double(nz[j].second));
      }
    } else if (g.refresh) {  // an evenly spaced sample, index order
      const size_t n = nz.size(), c = std::min(n, sample_size(g.k, this->size()));
      a[7] = double(c);
      for (size_t j = 0; j < c; ++j) a.push_back(double(nz[size_t((double(j) + 0.5) * double(n) / double(c))].first));
    }
    return a;
  }

  std::vector<double> read_agreement(const Received& m) const {
    const std::string from = "rank " + std::to_string(m.peer);
    const uint64_t length = m.header.end;
    const uint64_t most = kMetaFields + 2 * std::max<uint64_t>(policy_.k, kThresholdSample);
    if (m.header.begin != 0 || length < kMetaFields || length > most || !(m.header.flags & kFlagDense))
      fail(SPARCL_ERR_CORRUPT, "malformed global selection message from " + from);
    const Decoded<double, I> d = decode<double, I>(*m.buffer, m.header, Range{0, length}, m.peer);
    std::vector<double> a(d.view.val, d.view.val + d.view.nnz);
    const auto field = [&](size_t j) { return a[j]; };
    if (field(0) != kMetaFormat) fail(SPARCL_ERR_CORRUPT, "unknown global selection message from " + from);
    const auto differ = [&](const char* what, double theirs, double ours) {
      fail(SPARCL_ERR_MISMATCH, from + " uses global selection with " + what + " " + std::to_string(theirs) +
                                    ", this rank " + std::to_string(ours) +
                                    " (every rank needs the same compressor configuration and steps)");
    };
    if (field(1) != agreement_[1])
      fail(SPARCL_ERR_MISMATCH, from + " uses the " + (field(1) != 0 ? "exact" : "sampled") +
                                    " global threshold, this rank the " + (policy_.exact ? "exact" : "sampled") +
                                    " one");
    if (field(2) != agreement_[2]) differ("k", field(2), agreement_[2]);
    if (field(3) != agreement_[3]) differ("threshold_reuse", field(3), agreement_[3]);
    if (field(4) != agreement_[4] || field(5) != agreement_[5])
      fail(SPARCL_ERR_MISMATCH, from + " is at another point of its threshold schedule than this rank (" +
                                    (field(4) != 0 ? "estimating" : "reusing") + " vs " +
                                    (agreement_[4] != 0 ? "estimating" : "reusing") +
                                    "): were the compressors created or reset at different steps?");
    const double n = field(6), c = field(7);
    const double per = policy_.exact ? 2.0 : 1.0;
    if (!(n >= 0 && n <= double(owner_range(m.peer).size()) && n == std::floor(n) && c >= 0 && c <= n &&
          c == std::floor(c) && double(kMetaFields) + per * c == double(length)))
      fail(SPARCL_ERR_CORRUPT, "bad counts in the global selection message from " + from);
    for (size_t j = kMetaFields; j < a.size(); ++j) {
      const bool index = policy_.exact && (j - kMetaFields) % 2 == 1;
      const Range own = owner_range(m.peer);
      const double lo = index ? double(own.begin) : 1.0, hi = index ? double(own.end) - 1 : double(UINT32_MAX);
      if (!(a[j] >= lo && a[j] <= hi && a[j] == std::floor(a[j])))
        fail(SPARCL_ERR_CORRUPT, "bad entry in the global selection message from " + from);
    }
    return a;
  }

  // The cut, from every owner's agreement message (rank order): the same on
  // every rank.
  void decide(const std::vector<std::vector<double>>& from) {
    const GlobalSelectPolicy& g = policy_;
    if (!g.exact && !g.refresh) return;  // reuse: set at construction
    double total = 0;
    for (const auto& a : from) total += a[6];
    cut_ = Cut{};
    if (total <= double(g.k)) return;  // every nonzero sum
    if (g.exact) {
      std::vector<std::pair<uint32_t, uint32_t>> c;
      for (const auto& a : from)
        for (size_t j = kMetaFields; j + 1 < a.size(); j += 2) c.emplace_back(uint32_t(a[j]), uint32_t(a[j + 1]));
      auto better = [](const std::pair<uint32_t, uint32_t>& x, const std::pair<uint32_t, uint32_t>& y) {
        return x.first != y.first ? x.first > y.first : x.second < y.second;
      };
      // Every owner sent its best min(k, n): the k-th best of the union is among them.
      std::nth_element(c.begin(), c.begin() + ptrdiff_t(g.k - 1), c.end(), better);
      cut_ = Cut{c[size_t(g.k - 1)].first, c[size_t(g.k - 1)].second};
      return;
    }
    // Sampled: each owner's sample stands for its n nonzeros; walk down the
    // magnitudes until the weights reach k.
    std::vector<std::pair<uint32_t, double>> s;  // (key, weight)
    for (const auto& a : from) {
      const double c = a[7];
      for (size_t j = kMetaFields; j < a.size(); ++j) s.emplace_back(uint32_t(a[j]), a[6] / c);
    }
    std::stable_sort(s.begin(), s.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
    double reached = 0;
    for (const auto& e : s) {
      reached += e.second;
      if (reached >= double(g.k)) {
        cut_.key = e.first;
        return;
      }
    }
  }

  // The entries of `v` (this owner's sums over `range`) that the cut keeps.
  Stream<V, I> keep(const View<V, I>& v, Range range) const {
    Stream<V, I> out;
    out.range = range;
    for (size_t j = 0; j < v.nnz; ++j) {
      const uint32_t key = codec::magnitude_key(v.val[j]);
      const uint32_t i = v.dense ? uint32_t(v.range.begin + j) : v.idx[j];
      if (key == 0 || !cut_.keeps(key, i)) continue;
      out.idx.push_back(i);
      out.val.push_back(v.val[j]);
    }
    return out;
  }

  GlobalSelectPolicy policy_;
  Cut cut_;
  Stream<V, I> reduced_;
  std::vector<double> agreement_;
  Held<V, I> kept_;
  std::vector<Held<V, I>> gathered_;
};

}  // namespace

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
    auto in = std::make_shared<Input<V, I>>();
    make_input(*send, *in);
    auto op = std::make_unique<GlobalSelect>(call.comm()->transport(), call.identity(), in->view, policy);
    op->report_input_sent(compressed.input_sent);
    const GlobalSelect* select = op.get();
    request->deliver = [select, dense_recv, on_success = std::move(on_success)] {
      GlobalSelectOutcome outcome;
      outcome.threshold_key = select->threshold_key();
      for (const auto& piece : select->pieces()) {
        const View<V, I>& v = piece.view;
        write_dense(v, dense_recv + v.range.begin);
        for (size_t j = 0; j < v.nnz; ++j)  // sent dense: the entries it holds
          if (!v.dense || codec::magnitude_key(v.val[j]) != 0)
            outcome.kept.push_back(v.dense ? uint32_t(v.range.begin + j) : v.idx[j]);
      }
      if (on_success) on_success(outcome);
    };
    request->op = std::move(op);
    request->keep = in;
  });
  return call.submit(std::move(request));
}

}  // namespace sparcl
