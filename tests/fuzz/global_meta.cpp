// SPDX-License-Identifier: BSD-3-Clause
// Fuzz harness: global selection's agreement message (collectives/global_meta.hpp
// check_meta), the float64 vector each owner sends every rank in round 1 (its
// wire decoding is wire_payload's), and the balanced partition's cut from its
// quantile pairs (samples_of_quantiles, balanced_bounds).
//
// Input: a selector byte (bit 0 exact mode, bit 1 balanced partition, bit 2
// hashed partition, bit 3 this rank estimates a threshold this step, bit 4
// this rank's own fields are taken from the message, so that most inputs
// agree on the policy and reach the later checks), the rank count (1-64),
// k (1-4096), dim (1-2^20) and the sender's rank, then the message's values
// as doubles (at most meta_max_length of them).
// Properties: an accepted message has exactly the length its counts give,
// its exact-mode indices lie in the sender's range (after the permutation),
// and with the balanced partition the samples it gives increase and the
// cut cut from them is P + 1 non-decreasing bounds from 0 to dim.
#include <vector>

#include "collectives/global_meta.hpp"
#include "fuzz_util.hpp"

using namespace sparcl;
using sparcl_fuzz::accepts;
using sparcl_fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sparcl_fuzz::ByteReader in(data, size);
  const uint8_t selector = in.take<uint8_t>();
  const int ranks = 1 + in.take<uint8_t>() % 64;
  const uint64_t k = 1 + in.take<uint16_t>() % 4096;
  const uint64_t dim = 1 + in.take<uint32_t>() % (uint64_t(1) << 20);
  const int owner = in.take<uint8_t>() % ranks;

  MetaExpectation e;
  e.exact = selector & 1;
  e.balanced = (selector & 2) && ranks > 1;
  e.k = k;
  e.ranks = ranks;
  e.dim = dim;
  e.range = split_range(Range{0, dim}, uint64_t(ranks), uint64_t(owner));
  const IndexPermutation perm(dim);
  if ((selector & 4) && !e.balanced) e.permutation = &perm;
  const bool refresh = selector & 8;

  std::vector<double> a;
  while (in.left() >= sizeof(double) && a.size() < meta_max_length(e)) a.push_back(in.take<double>());
  std::vector<double> own{kMetaFormat, e.exact ? 1.0 : 0.0, double(k), 3.0, refresh ? 1.0 : 0.0, 0.0, 0.0, 0.0};
  if ((selector & 16) && a.size() >= kMetaFields)
    for (size_t f = kFormat; f <= kThresholdKey; ++f) own[f] = a[f];

  if (!accepts([&] { check_meta(a, own, e, "rank 1"); })) return 0;

  const double n = a[kNonzeros];
  const size_t quantile_fields = meta_quantile_fields(e.balanced);
  check(a.size() == kMetaFields + meta_trailing_entries(e, n, own[kRefresh] != 0) + quantile_fields,
        "accepted a message whose length its counts do not give");
  if (e.exact)
    for (size_t j = kMetaFields + 1; j < a.size() - quantile_fields; j += 2) {
      const uint64_t placed = e.permutation ? e.permutation->forward(uint64_t(a[j])) : uint64_t(a[j]);
      check(placed >= e.range.begin && placed < e.range.end, "accepted an index outside the sender's range");
    }
  if (!e.balanced) return 0;

  // The cut every rank makes: this owner's message among empty ones.
  std::vector<std::vector<double>> metas(static_cast<size_t>(ranks));
  for (int o = 0; o < ranks; ++o) {
    if (o == owner) {
      metas[size_t(o)] = a;
      continue;
    }
    std::vector<double>& empty = metas[size_t(o)];
    empty.assign(kMetaFields, 0.0);
    const Range r = split_range(Range{0, dim}, uint64_t(ranks), uint64_t(o));
    for (size_t j = 0; j < kBalanceQuantiles; ++j) empty.insert(empty.end(), {double(r.begin), 0.0});
  }
  const std::vector<WeightSample> samples = samples_of_quantiles(metas);
  for (size_t j = 0; j < samples.size(); ++j) {
    check(samples[j].at < dim, "a sample past dim");
    check(j == 0 || (samples[j].at >= samples[j - 1].at && samples[j].cumulative > samples[j - 1].cumulative),
          "samples that do not increase");
  }
  const std::vector<uint64_t> bounds = balanced_bounds(samples, dim, ranks);
  if (bounds.empty()) return 0;
  check(bounds.size() == size_t(ranks) + 1 && bounds.front() == 0 && bounds.back() == dim,
        "a cut that does not span [0, dim)");
  for (size_t j = 1; j < bounds.size(); ++j) check(bounds[j] >= bounds[j - 1], "a cut that decreases");
  return 0;
}
