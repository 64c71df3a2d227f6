// SPDX-License-Identifier: BSD-3-Clause
// Global selection's agreement message (round 1 of global_select.cpp): what
// each owner tells every rank, and the checks a receiver makes of it, as
// functions of plain numbers so that the fuzz harness reaches them
// (tests/fuzz/global_meta.cpp).
//
// The message is a dense float64 vector (counts, 32-bit keys and indices
// are all exact in float64):
//   kMetaFields fields (MetaField), then
//   exact mode:                min(k, nonzeros) (key, original index) pairs;
//   sampled mode, estimating:  sample_count(nonzeros) keys;
//   balanced partition:        kBalanceQuantiles (index, count) pairs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "partition.hpp"

namespace sparcl {

constexpr size_t kMetaFields = 8;
constexpr double kMetaFormat = 1.0;
enum MetaField { kFormat, kExact, kK, kReuse, kRefresh, kThresholdKey, kNonzeros, kAbove };

// Sampled mode: about k/P magnitudes per owner, at least 64 and at most
// 1024 (about k^2/union of the samples then lie above the threshold: enough
// for a few percent), so that an estimate costs about what round 0 does.
constexpr size_t kThresholdSample = 1024;

// Balanced partition: points of each owner's received-entry distribution
// ((index, entries up to it) pairs), from which every rank cuts the next
// call's ranges. 16 per owner cost 256 bytes per peer and bring the busiest
// owner within 5-20% of the mean after a few calls on zipf-skewed gradients
// at 4-32 ranks (bench/results/global-selection-partitions-zipf.txt).
constexpr size_t kBalanceQuantiles = 16;

// The fields the balanced partition's quantile pairs take at a message's end.
inline size_t meta_quantile_fields(bool balanced) { return balanced ? 2 * kBalanceQuantiles : 0; }

// What a receiver knows of an owner's message before reading it.
struct MetaExpectation {
  bool exact = false;    // exact mode (else sampled)
  uint64_t k = 1;        // entries to keep
  int ranks = 1;         // P
  uint64_t dim = 0;
  Range range;           // the owner's range (in the owners' index space)
  bool balanced = false;  // the message ends with the quantile pairs
  const IndexPermutation* permutation = nullptr;  // hashed: caller's index -> owners' space
};

// Keys an owner of `nonzeros` sums samples.
size_t meta_sample_count(double nonzeros, uint64_t k, int ranks);
// Entries after the fields, quantiles excluded, for an owner of `nonzeros`
// sums whose message has refresh flag `refresh`.
size_t meta_trailing_entries(const MetaExpectation& e, double nonzeros, bool refresh);
// The longest message an owner may send (a bound before decoding it).
size_t meta_max_length(const MetaExpectation& e);

// Checks owner message `a` against this rank's own message `own` (same
// policy and threshold schedule) and `e`. Throws SPARCL_ERR_MISMATCH for a
// rank configured otherwise, SPARCL_ERR_CORRUPT for anything malformed;
// `from` names the sender in the message.
void check_meta(const std::vector<double>& a, const std::vector<double>& own, const MetaExpectation& e,
                const std::string& from);

// Every owner's quantile pairs (checked messages, rank order, each ending
// with them) as samples of the weight over [0, dim), for balanced_bounds().
std::vector<WeightSample> samples_of_quantiles(const std::vector<std::vector<double>>& metas);

}  // namespace sparcl
