// SPDX-License-Identifier: BSD-3-Clause
// The cost model behind SPARCL_ALGO_AUTO: its choice follows the machine
// parameters and the density it is given (pure functions, so the same on
// every rank), and the parameters' text form is checked.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "collectives/auto.hpp"
#include "collectives/cost_model.hpp"
#include "error.hpp"

namespace {

using sparcl::MachineParams;
using sparcl::Workload;

// Four ranks, float32 values and 32-bit indices, raw on the wire.
Workload four_ranks(uint64_t dim, double density, bool native_dense = true) {
  return sparcl::independent_workload(4, dim, 4, 4, density * double(dim), native_dense);
}

MachineParams params(double round_us, double message_us, double ns_per_byte, double merge_ns = 5,
                     double pass_ns = 1) {
  char text[160];
  std::snprintf(text, sizeof text, "%g,%g,%g,%g,%g", round_us, message_us, ns_per_byte, merge_ns, pass_ns);
  return sparcl::parse_machine_params(text);
}

const MachineParams kShm = sparcl::default_machine_params();
const MachineParams kTenGbit = params(50, 5, 0.8);
const MachineParams kOneGbit = params(100, 10, 8);

const sparcl_algorithm_t kAlgorithms[] = {SPARCL_ALGO_RECURSIVE_DOUBLING, SPARCL_ALGO_SPLIT_ALLGATHER,
                                          SPARCL_ALGO_SPLIT_DENSE,        SPARCL_ALGO_RING,
                                          SPARCL_ALGO_HALVING_DOUBLING,   SPARCL_ALGO_ALLGATHER,
                                          SPARCL_ALGO_DENSE,              SPARCL_ALGO_SPLIT_ALLGATHER_HASHED,
                                          SPARCL_ALGO_HALVING_DOUBLING_HASHED};

// The choice is the algorithm with the smallest prediction, at every point
// of a grid of shapes, densities and machines.
TEST(CostModel, ChoosesTheSmallestPrediction) {
  for (const MachineParams& p : {kShm, kTenGbit, kOneGbit})
    for (int ranks : {2, 3, 4, 8, 17, 64})
      for (uint64_t dim : {1ull, 1000ull, 65536ull, 1048576ull, 67108864ull})
        for (double d : {0.0, 0.001, 0.01, 0.1, 0.5, 1.0})
          for (bool native : {true, false}) {
            const Workload w = sparcl::independent_workload(ranks, dim, 4, 4, d * double(dim), native);
            const sparcl_algorithm_t chosen = sparcl::cheapest_algorithm(p, w);
            const double t = sparcl::predicted_seconds(chosen, p, w);
            ASSERT_TRUE(std::isfinite(t) && t > 0) << ranks << " " << dim << " " << d;
            for (sparcl_algorithm_t a : kAlgorithms) {
              const double other = sparcl::predicted_seconds(a, p, w);
              ASSERT_TRUE(std::isfinite(other) && other > 0);
              EXPECT_LE(t, other) << "chose " << chosen << " over " << a << " at P=" << ranks << " dim " << dim
                                  << " density " << d;
            }
          }
}

// Every prediction grows with the density and with the link's cost per byte.
TEST(CostModel, PredictionsGrowWithDensityAndBandwidthCost) {
  for (sparcl_algorithm_t a : kAlgorithms)
    for (uint64_t dim : {65536ull, 16777216ull}) {
      double before = 0;
      for (double d : {0.0, 0.001, 0.01, 0.1, 0.5, 1.0}) {
        const double t = sparcl::predicted_seconds(a, kTenGbit, four_ranks(dim, d));
        EXPECT_GE(t, before * (1 - 1e-12)) << a << " dim " << dim << " density " << d;
        before = t;
        EXPECT_LT(sparcl::predicted_seconds(a, kTenGbit, four_ranks(dim, d)),
                  sparcl::predicted_seconds(a, kOneGbit, four_ranks(dim, d)))
            << a << " dim " << dim << " density " << d;
      }
    }
}

// Latency-bound calls: the allgather's single round wins on few ranks; on
// many ranks its P - 1 ring steps lose to recursive doubling's log2 P.
TEST(CostModel, SmallVectorsFollowTheRounds) {
  for (const MachineParams& p : {kShm, kTenGbit, kOneGbit}) {
    EXPECT_EQ(sparcl::cheapest_algorithm(p, four_ranks(1000, 0.01)), SPARCL_ALGO_ALLGATHER);
    const Workload many = sparcl::independent_workload(64, 1000, 4, 4, 10, true);
    EXPECT_EQ(sparcl::cheapest_algorithm(p, many), SPARCL_ALGO_RECURSIVE_DOUBLING);
  }
}

// Large sparse vectors: no dense algorithm; a full vector on a slow link:
// nothing sparse beats the transport's own dense allreduce by much, and
// sparse algorithms beat it by far at 0.1%.
TEST(CostModel, DensityDecidesBetweenSparseAndDense) {
  const uint64_t dim = 16777216;
  for (const MachineParams& p : {kShm, kTenGbit, kOneGbit}) {
    const sparcl_algorithm_t sparse = sparcl::cheapest_algorithm(p, four_ranks(dim, 0.001));
    EXPECT_NE(sparse, SPARCL_ALGO_DENSE);
    EXPECT_LT(10 * sparcl::predicted_seconds(sparse, p, four_ranks(dim, 0.001)),
              sparcl::predicted_seconds(SPARCL_ALGO_DENSE, p, four_ranks(dim, 0.001)));
  }
  // Without a native allreduce the dense algorithm is sparcl's ring on the
  // densified vector: never cheaper than the native one.
  for (double d : {0.01, 0.5, 1.0})
    EXPECT_LE(sparcl::predicted_seconds(SPARCL_ALGO_DENSE, kOneGbit, four_ranks(dim, d, true)),
              sparcl::predicted_seconds(SPARCL_ALGO_DENSE, kOneGbit, four_ranks(dim, d, false)));
}

// Fewer bytes per value on the wire make the sparse algorithms cheaper.
TEST(CostModel, LossyEncodingsCostLess) {
  const Workload raw = four_ranks(16777216, 0.01, false);
  Workload fp16 = raw;
  fp16.wire_value_bytes = 2;
  for (sparcl_algorithm_t a : kAlgorithms)
    EXPECT_LT(sparcl::predicted_seconds(a, kOneGbit, fp16), sparcl::predicted_seconds(a, kOneGbit, raw)) << a;
}

TEST(CostModel, OneRankMovesNothing) {
  const Workload w = sparcl::independent_workload(1, 1 << 20, 4, 4, 1000, true);
  EXPECT_EQ(sparcl::cheapest_algorithm(kShm, w), SPARCL_ALGO_RECURSIVE_DOUBLING);
  for (sparcl_algorithm_t a : kAlgorithms) EXPECT_EQ(sparcl::predicted_seconds(a, kShm, w), 0.0);
}

// Whether auto must wait for the previous call's density: not where every
// density gives the same choice (tiny vectors), yes where it changes.
TEST(CostModel, ChoiceDependsOnDensityOnlyWhereItChanges) {
  EXPECT_FALSE(sparcl::choice_depends_on_density(kShm, four_ranks(1000, 0.01)));
  EXPECT_TRUE(sparcl::choice_depends_on_density(kShm, four_ranks(1048576, 0.01)));
  EXPECT_TRUE(sparcl::choice_depends_on_density(kOneGbit, four_ranks(65536, 0.01)));
}

// The hashed algorithms cost their plain form plus the same sorts (the model's
// indices are uniform, where hashing moves no byte): never the cheapest, but
// auto measures them beside their plain form at the sizes where the sparse
// algorithms are close (skewed indices decide between them there).
TEST(CostModel, HashedAlgorithmsAddTheSameSorts) {
  for (const MachineParams& p : {kShm, kTenGbit, kOneGbit})
    for (int ranks : {2, 3, 4, 16})
      for (double d : {0.001, 0.01, 0.1}) {
        const Workload w = sparcl::independent_workload(ranks, 1 << 20, 4, 4, d * (1 << 20), false);
        const double split = sparcl::predicted_seconds(SPARCL_ALGO_SPLIT_ALLGATHER, p, w);
        const double hd = sparcl::predicted_seconds(SPARCL_ALGO_HALVING_DOUBLING, p, w);
        const double split_sorts = sparcl::predicted_seconds(SPARCL_ALGO_SPLIT_ALLGATHER_HASHED, p, w) - split;
        const double hd_sorts = sparcl::predicted_seconds(SPARCL_ALGO_HALVING_DOUBLING_HASHED, p, w) - hd;
        EXPECT_GT(hd_sorts, 0) << ranks << " " << d;
        EXPECT_NEAR(hd_sorts, split_sorts, 1e-9 * (split + hd)) << ranks << " " << d;
        const std::vector<sparcl_algorithm_t> tried = sparcl::ranked_algorithms(p, w, sparcl::kCandidateSpread);
        EXPECT_NE(tried.front(), SPARCL_ALGO_SPLIT_ALLGATHER_HASHED) << ranks << " " << d;
        EXPECT_NE(tried.front(), SPARCL_ALGO_HALVING_DOUBLING_HASHED) << ranks << " " << d;
        if (d != 0.01) continue;
        for (sparcl_algorithm_t a : {SPARCL_ALGO_HALVING_DOUBLING, SPARCL_ALGO_SPLIT_ALLGATHER_HASHED,
                                     SPARCL_ALGO_HALVING_DOUBLING_HASHED})
          EXPECT_NE(std::find(tried.begin(), tried.end(), a), tried.end()) << a << " at P=" << ranks;
      }
}

TEST(MachineParams, ParseAndDescribe) {
  const MachineParams p = sparcl::parse_machine_params("24.1,3.2,0.31,4.2,0.9");
  EXPECT_DOUBLE_EQ(p.round_s, 24.1e-6);
  EXPECT_DOUBLE_EQ(p.message_s, 3.2e-6);
  EXPECT_DOUBLE_EQ(p.byte_s, 0.31e-9);
  EXPECT_DOUBLE_EQ(p.merge_s, 4.2e-9);
  EXPECT_DOUBLE_EQ(p.pass_s, 0.9e-9);
  EXPECT_EQ(sparcl::describe(p), "round 24.10 us, message 3.20 us, 0.3100 ns/B, merge 4.200 ns, pass 0.900 ns");
  for (const char* bad : {"", "1,2,3,4", "1,2,3,4,5,6", "0,1,1,1,1", "-1,1,1,1,1", "nan,1,1,1,1", "inf,1,1,1,1",
                          "1,2,3,4,5x", "1,2,3,4,5,", "1;2;3;4;5", "1,,3,4,5"}) {
    try {
      sparcl::parse_machine_params(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const sparcl::Error& e) {
      EXPECT_EQ(e.status(), SPARCL_ERR_INVALID_ARG) << bad;
    }
  }
}

// auto's density classes: floor(2 log2(u / dim)), exactly, at and around
// the boundaries (u / dim = 2^(c/2)), and as libm computes it elsewhere.
TEST(DensityClass, HalfOctavesExactly) {
  using sparcl::density_class;
  EXPECT_EQ(density_class(0, 1000), INT32_MIN);
  EXPECT_EQ(density_class(1000, 1000), 0);
  EXPECT_EQ(density_class(500, 1000), -2);  // 2 log2(1/2) = -2 exactly
  EXPECT_EQ(density_class(499, 1000), -3);
  EXPECT_EQ(density_class(708, 1000), -1);  // 2 log2(0.708) = -0.996
  EXPECT_EQ(density_class(707, 1000), -2);  // 2 log2(0.707) = -1.0006
  EXPECT_EQ(density_class(1, 1000), -20);
  EXPECT_EQ(density_class(1, uint64_t(1) << 40), -80);
  EXPECT_EQ(density_class(1, ~uint64_t(0)), -128);
  uint64_t h = 12345;
  for (int k = 0; k < 20000; ++k) {
    h ^= h << 13, h ^= h >> 7, h ^= h << 17;
    const uint64_t dim = 1 + h % 100000000, u = 1 + (h >> 32) % dim;
    const double x = 2 * std::log2(double(u) / double(dim));
    if (std::fabs(x - std::round(x)) < 1e-9) continue;  // too close to a boundary for libm
    EXPECT_EQ(density_class(u, dim), int(std::floor(x))) << u << " / " << dim;
  }
  // Exact powers of two and their neighbours, at every scale (the search
  // starts from the operands' bit lengths).
  for (int j = 1; j < 63; ++j)
    for (int k = 0; k <= j; ++k) {
      const uint64_t u = uint64_t(1) << k, dim = uint64_t(1) << j;
      EXPECT_EQ(density_class(u, dim), 2 * (k - j)) << u << " / " << dim;
      if (k >= 2) {
        EXPECT_EQ(density_class(u - 1, dim), 2 * (k - j) - 1) << u - 1 << " / " << dim;
      }
      if (k < j && j >= 2) {  // dim / (dim - 1) < sqrt(2)
        EXPECT_EQ(density_class(u, dim - 1), 2 * (k - j)) << u << " / " << dim - 1;
      }
    }
  // Densities spread over many octaves.
  for (int k = 0; k < 20000; ++k) {
    h ^= h << 13, h ^= h >> 7, h ^= h << 17;
    const uint64_t dim = 1 + h % (uint64_t(1) << 40), u = 1 + (h >> 20) % std::max<uint64_t>(1, dim >> (h % 36));
    const double x = 2 * std::log2(double(u) / double(dim));
    if (u > dim || std::fabs(x - std::round(x)) < 1e-9) continue;
    EXPECT_EQ(density_class(u, dim), int(std::floor(x))) << u << " / " << dim;
  }
}

}  // namespace

// The node-aware algorithm: not a candidate with one host or one rank per
// host (where it would be split_allgather); with 2 hosts of 4 ranks, a finite
// prediction that grows with the density.
TEST(CostModel, HierarchicalNeedsSeveralHostsOfSeveralRanks) {
  for (int per_host : {1, 8}) {
    Workload w = sparcl::independent_workload(8, 1 << 20, 4, 4, 0.01 * (1 << 20), false);
    w.ranks_per_host = per_host;
    EXPECT_TRUE(std::isinf(sparcl::predicted_seconds(SPARCL_ALGO_HIERARCHICAL, kTenGbit, w))) << per_host;
  }
  double before = 0;
  for (double d : {0.001, 0.01, 0.1}) {
    Workload w = sparcl::independent_workload(8, 1 << 20, 4, 4, d * (1 << 20), false);
    w.ranks_per_host = 4;
    const double t = sparcl::predicted_seconds(SPARCL_ALGO_HIERARCHICAL, kTenGbit, w);
    EXPECT_TRUE(std::isfinite(t) && t > before) << d;
    before = t;
  }
}
