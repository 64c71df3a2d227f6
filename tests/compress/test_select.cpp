// SPDX-License-Identifier: BSD-3-Clause
// Sparsifiers (ml/compress/select.*): exact top-k against a sort, approximate
// top-k within its tolerance, bucketed top-k, threshold and random-k, on
// several distributions, ties, NaN/Inf, and both kernel variants.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "test_util.hpp"

namespace {

using namespace ctest;

const Dist kAllDists[] = {Dist::Uniform,  Dist::Normal,     Dist::Cauchy,   Dist::Pareto,   Dist::SmallIntegers,
                          Dist::AllEqual, Dist::MostlyZero, Dist::Specials, Dist::Ascending};

// Reference order (key descending, index ascending) computed once per vector.
std::vector<uint32_t> reference_order(const std::vector<float>& x) {
  std::vector<uint32_t> order(x.size());
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    const uint32_t ka = cz::magnitude_key(x[a]), kb = cz::magnitude_key(x[b]);
    return ka != kb ? ka > kb : a < b;
  });
  return order;
}

std::vector<uint32_t> top_from_order(const std::vector<uint32_t>& order, size_t k) {
  std::vector<uint32_t> top(order.begin(), order.begin() + long(std::min(k, order.size())));
  std::sort(top.begin(), top.end());
  return top;
}

std::vector<size_t> ks_for(size_t n) {
  std::set<size_t> ks = {1, n / 1000 + 1, n / 100, n / 10, n / 2, n - 1, n, n + 5};
  ks.erase(0);
  return std::vector<size_t>(ks.begin(), ks.end());
}

TEST(TopK, ExactMatchesSortReference) {
  for_each_isa([] {
    cz::SelectWorkspace ws;
    cz::Selection out;
    for (Dist d : kAllDists) {
      for (size_t n : {size_t(1), size_t(2), size_t(17), size_t(1000), size_t(70000), size_t(300000)}) {
        const auto x = make_data(d, n, n);
        const auto order = reference_order(x);
        for (size_t k : ks_for(n)) {
          SCOPED_TRACE(std::string(dist_name(d)) + " n=" + std::to_string(n) + " k=" + std::to_string(k));
          cz::select_topk(x.data(), n, k, out, ws);
          ASSERT_TRUE(well_formed(out, x));
          ASSERT_EQ(indices_of(out), top_from_order(order, k));
        }
      }
    }
  });
}

TEST(TopK, ZeroKSelectsNothing) {
  cz::SelectWorkspace ws;
  cz::Selection out;
  const auto x = make_data(Dist::Normal, 100000, 1);
  cz::select_topk(x.data(), x.size(), 0, out, ws);
  EXPECT_EQ(out.size(), 0u);
  cz::select_approx_topk(x.data(), x.size(), 0, out, ws);
  EXPECT_EQ(out.size(), 0u);
}

TEST(TopK, TiesGoToLowerIndices) {
  cz::SelectWorkspace ws;
  cz::Selection out;
  for (size_t n : {size_t(100), size_t(200000)}) {
    std::vector<float> x(n, 1.0f);
    for (size_t i = 0; i < n; i += 3) x[i] = -1.0f;  // same magnitude
    x[n - 1] = 2.0f;
    cz::select_topk(x.data(), n, 5, out, ws);
    EXPECT_EQ(indices_of(out), (std::vector<uint32_t>{0, 1, 2, 3, uint32_t(n - 1)}));
  }
}

TEST(TopK, NanAndInfRankFirst) {
  cz::SelectWorkspace ws;
  cz::Selection out;
  std::vector<float> x = make_data(Dist::Normal, 100000, 3);
  x[500] = -std::numeric_limits<float>::infinity();
  x[70] = std::numeric_limits<float>::quiet_NaN();
  x[99999] = std::numeric_limits<float>::infinity();
  x[4] = -std::numeric_limits<float>::quiet_NaN();
  x[8] = 1e30f;
  cz::select_topk(x.data(), x.size(), 5, out, ws);
  EXPECT_EQ(indices_of(out), (std::vector<uint32_t>{4, 8, 70, 500, 99999}));
  cz::select_topk(x.data(), x.size(), 2, out, ws);  // two NaNs rank above the infinities
  EXPECT_EQ(indices_of(out), (std::vector<uint32_t>{4, 70}));
}

// The sample is made to overestimate the k-th magnitude: the sampled
// positions hold 2.0 and the rest 1.0, so the first threshold and the retry
// both collect fewer than k candidates and the radix select over the whole
// vector must give the exact answer.
TEST(TopK, MisleadingSampleFallsBackToExactSelection) {
  const size_t n = size_t(1) << 17;
  const size_t s = cz::topk_sample_size(n);
  ASSERT_GT(s, 0u);
  std::vector<float> x(n, 1.0f);
  for (size_t j = 0; j < s; ++j) x[cz::topk_sample_position(n, s, j)] = -2.0f;
  size_t twos = 0;
  for (float v : x) twos += v == -2.0f;
  EXPECT_EQ(twos, s);  // one position per stratum, all distinct
  cz::SelectWorkspace ws;
  cz::Selection out;
  const size_t k = s + 1000;
  const auto expected = reference_topk(x, k);
  cz::select_topk(x.data(), n, k, out, ws);
  EXPECT_EQ(indices_of(out), expected);
  cz::select_approx_topk(x.data(), n, k, out, ws);
  ASSERT_TRUE(well_formed(out, x));
  EXPECT_GE(out.size(), k);
  EXPECT_LE(out.size(), cz::approx_topk_max_count(k));
  EXPECT_EQ(indices_of(out), reference_topk(x, out.size()));
}

struct ApproxCase {
  Dist dist;
  size_t n;
  double density;
};

void PrintTo(const ApproxCase& c, std::ostream* os) {
  *os << dist_name(c.dist) << " n=" << c.n << " density=" << c.density;
}

class ApproxTopK : public ::testing::TestWithParam<ApproxCase> {};

// Approximate top-k selects between k and k + floor(k/10) entries, and they
// are exactly the top entries for that count (every selected magnitude >=
// every unselected one; ties cut by index).
TEST_P(ApproxTopK, WithinToleranceAndClosed) {
  const ApproxCase c = GetParam();
  const auto x = make_data(c.dist, c.n, 11);
  const auto order = reference_order(x);
  const size_t k = std::max<size_t>(1, size_t(std::llround(c.density * double(c.n))));
  for_each_isa([&] {
    cz::SelectWorkspace ws;
    cz::Selection out;
    cz::select_approx_topk(x.data(), c.n, k, out, ws);
    ASSERT_TRUE(well_formed(out, x));
    EXPECT_GE(out.size(), k);
    EXPECT_LE(out.size(), cz::approx_topk_max_count(k));
    EXPECT_EQ(indices_of(out), top_from_order(order, out.size()));
    cz::select_approx_topk(x.data(), c.n, k, out, ws, 0.0);  // tolerance 0: exact
    EXPECT_EQ(indices_of(out), top_from_order(order, k));
  });
}

std::vector<ApproxCase> approx_cases() {
  std::vector<ApproxCase> cases;
  for (Dist d : {Dist::Uniform, Dist::Normal, Dist::Cauchy, Dist::Pareto, Dist::SmallIntegers, Dist::MostlyZero,
                 Dist::Specials})
    for (size_t n : {size_t(5000), size_t(70000), size_t(1) << 20})
      for (double density : {0.001, 0.01, 0.1, 0.5}) cases.push_back({d, n, density});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Distributions, ApproxTopK, ::testing::ValuesIn(approx_cases()),
                         [](const ::testing::TestParamInfo<ApproxCase>& p) {
                           return std::string(dist_name(p.param.dist)) + "_n" + std::to_string(p.param.n) +
                                  "_d" + std::to_string(int(p.param.density * 1000)) + "permille";
                         });

TEST(ApproxTopK, RejectsBadTolerance) {
  cz::SelectWorkspace ws;
  cz::Selection out;
  const float x[4] = {1, 2, 3, 4};
  EXPECT_EQ(status_of([&] { cz::select_approx_topk(x, 4, 2, out, ws, -0.1); }), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(status_of([&] { cz::select_approx_topk(x, 4, 2, out, ws, std::nan("")); }), SPARCL_ERR_INVALID_ARG);
}

TEST(Selection, RejectsVectorsOf2To32Entries) {
  cz::SelectWorkspace ws;
  cz::Selection out;
  const size_t n = size_t(1) << 32;  // never read: the size is checked first
  EXPECT_EQ(status_of([&] { cz::select_topk(nullptr, n, 10, out, ws); }), SPARCL_ERR_UNSUPPORTED);
  EXPECT_EQ(status_of([&] { cz::select_threshold(nullptr, n, 1.0f, out); }), SPARCL_ERR_UNSUPPORTED);
  EXPECT_EQ(status_of([&] { cz::select_randomk(nullptr, n, 10, 1, 1, out, ws); }), SPARCL_ERR_UNSUPPORTED);
}

TEST(KthLargestKey, MatchesSortedKeys) {
  cz::SelectWorkspace ws;
  for (Dist d : {Dist::Normal, Dist::SmallIntegers, Dist::Specials}) {
    const auto x = make_data(d, 50000, 5);
    std::vector<uint32_t> keys(x.size());
    for (size_t i = 0; i < x.size(); ++i) keys[i] = cz::magnitude_key(x[i]);
    std::sort(keys.begin(), keys.end(), std::greater<uint32_t>());
    for (size_t k : {size_t(1), size_t(7), size_t(500), size_t(25000), size_t(50000)})
      EXPECT_EQ(cz::kth_largest_key(x.data(), x.size(), k, ws), keys[k - 1]) << dist_name(d) << " k=" << k;
  }
}

TEST(Threshold, SelectsMagnitudesAtOrAbove) {
  for_each_isa([] {
    cz::Selection out;
    for (Dist d : kAllDists) {
      const auto x = make_data(d, 40000, 2);
      for (float t : {0.0f, 0.5f, 1.0f, 3.0f, std::numeric_limits<float>::infinity()}) {
        cz::select_threshold(x.data(), x.size(), t, out);
        ASSERT_TRUE(well_formed(out, x));
        std::vector<uint32_t> expected;
        for (size_t i = 0; i < x.size(); ++i)
          if (std::isnan(x[i]) || std::fabs(x[i]) >= t) expected.push_back(uint32_t(i));
        EXPECT_EQ(indices_of(out), expected) << dist_name(d) << " t=" << t;
      }
    }
  });
}

TEST(Threshold, RejectsNegativeOrNan) {
  cz::Selection out;
  const float x[2] = {1, 2};
  EXPECT_EQ(status_of([&] { cz::select_threshold(x, 2, -1.0f, out); }), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(status_of([&] { cz::select_threshold(x, 2, std::nanf(""), out); }), SPARCL_ERR_INVALID_ARG);
}

TEST(RandomK, SameSeedAndStepSameIndices) {
  cz::SelectWorkspace ws1, ws2;
  cz::Selection a, b;
  const auto x = make_data(Dist::Normal, 100000, 9);
  const auto y = make_data(Dist::Uniform, 100000, 10);  // other values, as on another rank
  for (uint64_t step = 0; step < 5; ++step) {
    cz::select_randomk(x.data(), x.size(), 1000, 42, step, a, ws1);
    cz::select_randomk(y.data(), y.size(), 1000, 42, step, b, ws2);
    ASSERT_TRUE(well_formed(a, x));
    ASSERT_TRUE(well_formed(b, y));
    EXPECT_EQ(a.size(), 1000u);
    EXPECT_EQ(indices_of(a), indices_of(b));
  }
  cz::select_randomk(x.data(), x.size(), 1000, 42, 0, a, ws1);
  cz::select_randomk(x.data(), x.size(), 1000, 42, 1, b, ws1);
  EXPECT_NE(indices_of(a), indices_of(b));
  cz::select_randomk(x.data(), x.size(), 1000, 43, 0, b, ws1);
  EXPECT_NE(indices_of(a), indices_of(b));
}

TEST(RandomK, EdgeCounts) {
  cz::SelectWorkspace ws;
  cz::Selection out;
  const auto x = make_data(Dist::Normal, 1000, 9);
  cz::select_randomk(x.data(), x.size(), 0, 1, 1, out, ws);
  EXPECT_EQ(out.size(), 0u);
  cz::select_randomk(x.data(), x.size(), 1000, 1, 1, out, ws);
  EXPECT_EQ(out.size(), 1000u);
  cz::select_randomk(x.data(), x.size(), 5000, 1, 1, out, ws);
  EXPECT_EQ(out.size(), 1000u);
  cz::select_randomk(x.data(), x.size(), 999, 1, 1, out, ws);
  EXPECT_EQ(out.size(), 999u);
  EXPECT_TRUE(well_formed(out, x));
}

// Every index is picked with probability k/n: over T steps each count is
// Binomial(T, k/n); all must lie within 5 standard deviations. Pairs of
// indices are checked too (Floyd's algorithm makes all k-subsets equally likely).
TEST(RandomK, Uniform) {
  cz::SelectWorkspace ws;
  cz::Selection out;
  const size_t n = 40, k = 6, steps = 30000;
  const std::vector<float> x(n, 1.0f);
  std::vector<double> count(n, 0.0);
  std::map<std::pair<uint32_t, uint32_t>, double> pairs;
  for (uint64_t step = 0; step < steps; ++step) {
    cz::select_randomk(x.data(), n, k, 7, step, out, ws);
    ASSERT_EQ(out.size(), k);
    for (size_t j = 0; j < k; ++j) {
      count[out.idx[j]] += 1;
      for (size_t l = j + 1; l < k; ++l) pairs[{out.idx[j], out.idx[l]}] += 1;
    }
  }
  const double p = double(k) / n, mean = steps * p, sd = std::sqrt(steps * p * (1 - p));
  for (size_t i = 0; i < n; ++i) EXPECT_NEAR(count[i], mean, 5 * sd) << "index " << i;
  const double pp = double(k) * (k - 1) / (double(n) * (n - 1));
  const double pmean = steps * pp, psd = std::sqrt(steps * pp * (1 - pp));
  EXPECT_EQ(pairs.size(), n * (n - 1) / 2);
  for (const auto& kv : pairs) EXPECT_NEAR(kv.second, pmean, 5.5 * psd);
}

TEST(TopKBucketed, ExactPerBucket) {
  for_each_isa([] {
    cz::SelectWorkspace ws;
    cz::Selection out;
    for (Dist d : kAllDists) {
      const auto whole = make_data(d, 50001, 4);
      for (size_t bucket : {size_t(1), size_t(3), size_t(512), size_t(10000), size_t(60000)}) {
        // Buckets of 1 and 3: 5001 values, 1667-5001 buckets (the reference's
        // per-bucket sort cost most of the suite's time at 50001).
        const size_t n = bucket < 512 ? 5001 : whole.size();
        const std::vector<float> x(whole.begin(), whole.begin() + long(n));
        for (size_t k : {size_t(1), size_t(50), size_t(5000), size_t(40000)}) {
          SCOPED_TRACE(std::string(dist_name(d)) + " bucket=" + std::to_string(bucket) + " k=" + std::to_string(k));
          cz::select_topk_bucketed(x.data(), n, k, bucket, out, ws);
          ASSERT_TRUE(well_formed(out, x));
          std::vector<uint32_t> expected;
          for (size_t b = 0; b < n; b += bucket) {
            const size_t len = std::min(bucket, n - b);
            std::vector<float> part(x.begin() + long(b), x.begin() + long(b + len));
            for (uint32_t i : reference_topk(part, cz::bucket_quota(k, n, len))) expected.push_back(uint32_t(b) + i);
          }
          ASSERT_EQ(indices_of(out), expected);
        }
      }
    }
  });
}

TEST(TopKBucketed, QuotaAndValidation) {
  EXPECT_EQ(cz::bucket_quota(10, 1000, 100), 1u);
  EXPECT_EQ(cz::bucket_quota(10, 1050, 50), 1u);   // ceil(500 / 1050)
  EXPECT_EQ(cz::bucket_quota(1000, 1000, 7), 7u);  // at most the bucket
  EXPECT_EQ(cz::bucket_quota(0, 1000, 7), 0u);
  cz::SelectWorkspace ws;
  cz::Selection out;
  const float x[3] = {1, 2, 3};
  EXPECT_EQ(status_of([&] { cz::select_topk_bucketed(x, 3, 1, 0, out, ws); }), SPARCL_ERR_INVALID_ARG);
}

TEST(SelectAll, EveryEntry) {
  cz::Selection out;
  const auto x = make_data(Dist::Specials, 1000, 1);
  cz::select_all(x.data(), x.size(), out);
  ASSERT_EQ(out.size(), x.size());
  EXPECT_TRUE(well_formed(out, x));
}

}  // namespace
