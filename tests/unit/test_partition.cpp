// SPDX-License-Identifier: BSD-3-Clause
// The hashed partition's pieces: the index permutation and the radix sort of
// (key, position) pairs that orders permuted entries.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "collectives/partition.hpp"

namespace {

// Against std::stable_sort, with repeated keys (stability shows in the
// positions) and bounds that need one to four 11-bit digits.
TEST(SortByKey, MatchesAStableSortAtEveryKeyWidth) {
  std::mt19937_64 rng(11);
  for (uint64_t bound : {uint64_t(1000), uint64_t(1) << 20, uint64_t(3) << 30, uint64_t(1) << 40}) {
    for (size_t n : {size_t(0), size_t(1), size_t(255), size_t(256), size_t(5000), size_t(70000)}) {
      std::vector<std::pair<uint64_t, size_t>> keyed(n);
      for (size_t k = 0; k < n; ++k) keyed[k] = {rng() % std::min<uint64_t>(bound, n / 3 + 1 + (k % 2) * bound), k};
      auto expected = keyed;
      std::stable_sort(expected.begin(), expected.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
      sparcl::sort_by_key(keyed, bound);
      EXPECT_EQ(keyed, expected) << "bound " << bound << ", " << n << " pairs";
    }
  }
}

// The permutation of the hashed partition is a bijection of [0, dim), and
// inverse() undoes forward().
TEST(IndexPermutation, IsABijectionWithItsInverse) {
  for (uint64_t dim : {uint64_t(1), uint64_t(2), uint64_t(97), uint64_t(1000), uint64_t(65536)}) {
    const sparcl::IndexPermutation perm(dim);
    std::vector<bool> hit(dim, false);
    for (uint64_t i = 0; i < dim; ++i) {
      const uint64_t j = perm.forward(i);
      ASSERT_LT(j, dim);
      EXPECT_FALSE(hit[j]) << "dim " << dim << ": " << j << " reached twice";
      hit[j] = true;
      EXPECT_EQ(perm.inverse(j), i);
    }
  }
}

}  // namespace
