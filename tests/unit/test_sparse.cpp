// SPDX-License-Identifier: BSD-3-Clause
// Sparse streams: split_range, prefer_dense, slice, merge, merge_all, concat
// and the densifying helpers (src/sparse.hpp), and pack_set_entries (src/pack.hpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "codec/common.hpp"
#include "sparse.hpp"
#include "unit_types.hpp"

namespace {

using sparcl::Range;
using namespace sparcl_unit;

// ---------------------------------------------------------------- split_range

void expect_tiles(Range whole, uint64_t parts) {
  SCOPED_TRACE("whole [" + std::to_string(whole.begin) + ", " + std::to_string(whole.end) +
               ") parts " + std::to_string(parts));
  const uint64_t n = whole.size();
  uint64_t pos = whole.begin;
  for (uint64_t i = 0; i < parts; ++i) {
    const Range r = sparcl::split_range(whole, parts, i);
    EXPECT_EQ(r.begin, pos) << "part " << i;
    EXPECT_LE(r.begin, r.end) << "part " << i;
    // Nearly equal: every part has floor(n/parts) or ceil(n/parts) elements.
    EXPECT_GE(r.size(), n / parts) << "part " << i;
    EXPECT_LE(r.size(), n / parts + 1) << "part " << i;
    pos = r.end;
  }
  EXPECT_EQ(pos, whole.end);
}

TEST(SplitRange, TilesDivisibleDims) {
  expect_tiles({0, 12}, 4);
  expect_tiles({0, 1024}, 8);
  EXPECT_EQ(sparcl::split_range({0, 12}, 4, 2), (Range{6, 9}));
}

TEST(SplitRange, TilesDimsNotDivisibleByParts) {
  for (uint64_t dim = 1; dim <= 40; ++dim)
    for (uint64_t parts = 1; parts <= 17; ++parts) expect_tiles({0, dim}, parts);
  // The first n % parts ranges take the extra element.
  EXPECT_EQ(sparcl::split_range({0, 10}, 3, 0), (Range{0, 4}));
  EXPECT_EQ(sparcl::split_range({0, 10}, 3, 1), (Range{4, 7}));
  EXPECT_EQ(sparcl::split_range({0, 10}, 3, 2), (Range{7, 10}));
}

TEST(SplitRange, MorePartsThanElements) {
  expect_tiles({0, 3}, 8);
  uint64_t nonempty = 0;
  for (uint64_t i = 0; i < 8; ++i) nonempty += sparcl::split_range({0, 3}, 8, i).size() == 1;
  EXPECT_EQ(nonempty, 3u);
  EXPECT_EQ(sparcl::split_range({0, 3}, 8, 7), (Range{3, 3}));
}

TEST(SplitRange, DimOne) {
  expect_tiles({0, 1}, 1);
  expect_tiles({0, 1}, 5);
  EXPECT_EQ(sparcl::split_range({0, 1}, 5, 0), (Range{0, 1}));
  EXPECT_EQ(sparcl::split_range({0, 1}, 5, 4), (Range{1, 1}));
}

TEST(SplitRange, SubRangesAndHugeDims) {
  expect_tiles({100, 117}, 4);
  expect_tiles({5, 6}, 3);
  const uint64_t big = std::numeric_limits<uint64_t>::max();
  expect_tiles({0, big}, 7);
  expect_tiles({1, big}, 16);
  expect_tiles({uint64_t(1) << 40, (uint64_t(1) << 40) + 1000003}, 13);
}

// ---------------------------------------------------------------- prefer_dense

TEST(PreferDense, SparcmlRule) {
  // float/u32: 8 bytes a pair vs 4 a value -> dense from nnz >= dim/2.
  EXPECT_FALSE((sparcl::prefer_dense<float, uint32_t>(49, 100)));
  EXPECT_TRUE((sparcl::prefer_dense<float, uint32_t>(50, 100)));
  EXPECT_TRUE((sparcl::prefer_dense<float, uint32_t>(51, 100)));
  // float/u64: 12 vs 4 -> nnz >= dim/3.
  EXPECT_FALSE((sparcl::prefer_dense<float, uint64_t>(33, 100)));
  EXPECT_TRUE((sparcl::prefer_dense<float, uint64_t>(34, 100)));
  EXPECT_FALSE((sparcl::prefer_dense<float, uint64_t>(1, 4)));
  EXPECT_TRUE((sparcl::prefer_dense<float, uint64_t>(1, 3)));
  // double/u32: 12 vs 8 -> nnz >= 2*dim/3.
  EXPECT_FALSE((sparcl::prefer_dense<double, uint32_t>(66, 100)));
  EXPECT_TRUE((sparcl::prefer_dense<double, uint32_t>(67, 100)));
  EXPECT_FALSE((sparcl::prefer_dense<double, uint32_t>(1, 2)));
  EXPECT_TRUE((sparcl::prefer_dense<double, uint32_t>(2, 3)));
  // double/u64: 16 vs 8 -> nnz >= dim/2.
  EXPECT_FALSE((sparcl::prefer_dense<double, uint64_t>(49, 100)));
  EXPECT_TRUE((sparcl::prefer_dense<double, uint64_t>(50, 100)));
}

TEST(PreferDense, EdgeCases) {
  EXPECT_TRUE((sparcl::prefer_dense<float, uint32_t>(0, 0)));   // nothing is as small as nothing
  EXPECT_FALSE((sparcl::prefer_dense<float, uint32_t>(0, 1)));
  EXPECT_TRUE((sparcl::prefer_dense<float, uint32_t>(1, 1)));
  EXPECT_TRUE((sparcl::prefer_dense<float, uint32_t>(1, 2)));
  EXPECT_FALSE((sparcl::prefer_dense<float, uint32_t>(1, 3)));
}

TEST(PreferDense, HugeValuesDoNotOverflow) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  // In 64-bit arithmetic max*8 wraps to max*8 mod 2^64 (= 2^64-8) and
  // max*4 to 2^64-4: a wrapped comparison would answer true for a tiny entry count.
  EXPECT_FALSE((sparcl::prefer_dense<float, uint32_t>(max / 4, max)));
  EXPECT_TRUE((sparcl::prefer_dense<float, uint32_t>(max / 2 + 1, max)));
  EXPECT_FALSE((sparcl::prefer_dense<float, uint32_t>(max / 2 - 1, max)));
  EXPECT_TRUE((sparcl::prefer_dense<double, uint64_t>(max, max)));
  EXPECT_FALSE((sparcl::prefer_dense<double, uint64_t>(uint64_t(1) << 62, max)));
  // 2^62 pairs of 16 bytes = 2^66 bytes (wraps to 0 in 64 bits) vs 2^63 values of 8 bytes.
  EXPECT_TRUE((sparcl::prefer_dense<double, uint64_t>(uint64_t(1) << 62, uint64_t(1) << 63)));
  EXPECT_FALSE((sparcl::prefer_dense<double, uint64_t>((uint64_t(1) << 62) - 1, uint64_t(1) << 63)));
  EXPECT_FALSE((sparcl::prefer_dense<float, uint64_t>(1000, max)));
  EXPECT_TRUE((sparcl::prefer_dense<float, uint64_t>(max, 3)));
}

// ---------------------------------------------------------------- typed tests

template <class T>
class SparseTyped : public ::testing::Test {};
TYPED_TEST_SUITE(SparseTyped, AllTypes);

TYPED_TEST(SparseTyped, PreferDenseMatchesThresholdHelper) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  for (uint64_t len = 0; len < 200; ++len) {
    const uint64_t t = dense_threshold<V, I>(len);
    EXPECT_TRUE((sparcl::prefer_dense<V, I>(t, len))) << len;
    if (t > 0) {
      EXPECT_FALSE((sparcl::prefer_dense<V, I>(t - 1, len))) << len;
    }
  }
}

TYPED_TEST(SparseTyped, SliceSparse) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  auto s = sparse<V, I>({10, 30}, {10, 12, 15, 20, 29}, {1, 2, 3, 4, 5});
  auto v = s.view();

  auto a = sparcl::slice(v, Range{12, 20});
  EXPECT_EQ(a.range, (Range{12, 20}));
  EXPECT_FALSE(a.dense);
  ASSERT_EQ(a.nnz, 2u);
  EXPECT_EQ(a.idx[0], I(12));
  EXPECT_EQ(a.idx[1], I(15));
  EXPECT_EQ(a.val[0], V(2));
  EXPECT_EQ(a.val[1], V(3));

  auto whole = sparcl::slice(v, Range{10, 30});
  EXPECT_EQ(whole.nnz, 5u);
  EXPECT_EQ(whole.idx, s.idx.data());

  auto tail = sparcl::slice(v, Range{20, 30});
  ASSERT_EQ(tail.nnz, 2u);
  EXPECT_EQ(tail.idx[0], I(20));
  EXPECT_EQ(tail.val[1], V(5));

  // Empty slices: a range without entries, and empty ranges.
  auto gap = sparcl::slice(v, Range{16, 20});
  EXPECT_EQ(gap.nnz, 0u);
  EXPECT_EQ(gap.range, (Range{16, 20}));
  EXPECT_EQ(sparcl::slice(v, Range{15, 15}).nnz, 0u);
  EXPECT_EQ(sparcl::slice(v, Range{30, 30}).nnz, 0u);
  EXPECT_EQ(sparcl::slice(v, Range{10, 10}).nnz, 0u);

  // Slices of slices tile the parent.
  size_t total = 0;
  for (uint64_t i = 0; i < 7; ++i) total += sparcl::slice(v, sparcl::split_range(v.range, 7, i)).nnz;
  EXPECT_EQ(total, 5u);

  // An empty stream.
  sparcl::Stream<V, I> e;
  e.range = {0, 100};
  EXPECT_EQ(sparcl::slice(e.view(), Range{3, 50}).nnz, 0u);
}

TYPED_TEST(SparseTyped, SliceDense) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  auto s = dense<V, I>({4, 10}, {1, 2, 3, 4, 5, 6});
  auto a = sparcl::slice(s.view(), Range{6, 9});
  EXPECT_TRUE(a.dense);
  EXPECT_EQ(a.range, (Range{6, 9}));
  ASSERT_EQ(a.nnz, 3u);
  EXPECT_EQ(a.val[0], V(3));
  EXPECT_EQ(a.val[2], V(5));
  auto e = sparcl::slice(s.view(), Range{10, 10});
  EXPECT_TRUE(e.dense);
  EXPECT_EQ(e.nnz, 0u);
}

TYPED_TEST(SparseTyped, WriteDenseAndAddIntoDense) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  auto s = sparse<V, I>({5, 11}, {5, 8, 10}, {1, -2, 3});
  std::vector<V> out(6, V(99));
  sparcl::write_dense(s.view(), out.data());
  EXPECT_EQ(out, (std::vector<V>{1, 0, 0, -2, 0, 3}));

  sparcl::add_into_dense(s.view(), out.data());
  EXPECT_EQ(out, (std::vector<V>{2, 0, 0, -4, 0, 6}));

  auto d = dense<V, I>({5, 11}, {1, 1, 1, 1, 1, 1});
  sparcl::add_into_dense(d.view(), out.data());
  EXPECT_EQ(out, (std::vector<V>{3, 1, 1, -3, 1, 7}));

  std::vector<V> out2(6, V(7));
  sparcl::write_dense(d.view(), out2.data());
  EXPECT_EQ(out2, std::vector<V>(6, V(1)));

  // Empty sparse stream writes zeros; empty dense range writes nothing.
  sparcl::Stream<V, I> e;
  e.range = {0, 3};
  std::vector<V> z(3, V(5));
  sparcl::write_dense(e.view(), z.data());
  EXPECT_EQ(z, std::vector<V>(3, V(0)));
  sparcl::add_into_dense(e.view(), z.data());
  EXPECT_EQ(z, std::vector<V>(3, V(0)));
}

TYPED_TEST(SparseTyped, ToDenseStream) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  auto s = sparse<V, I>({2, 6}, {3, 5}, {7, 8});
  auto d = sparcl::to_dense_stream(s.view());
  EXPECT_TRUE(d.dense);
  EXPECT_EQ(d.range, (Range{2, 6}));
  EXPECT_TRUE(d.idx.empty());
  EXPECT_EQ(vec(d.val), (std::vector<V>{0, 7, 0, 8}));
  EXPECT_EQ(d.view().nnz, 4u);
  EXPECT_EQ(d.view().idx, nullptr);

  auto dd = sparcl::to_dense_stream(d.view());
  EXPECT_EQ(vec(dd.val), vec(d.val));

  sparcl::Stream<V, I> e;
  e.range = {7, 7};
  auto ed = sparcl::to_dense_stream(e.view());
  EXPECT_TRUE(ed.dense);
  EXPECT_TRUE(ed.val.empty());
}

TYPED_TEST(SparseTyped, MergeSparseDisjoint) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  auto a = sparse<V, I>({0, 100}, {1, 5, 90}, {1, 2, 3});
  auto b = sparse<V, I>({0, 100}, {0, 6, 99}, {10, 20, 30});
  auto m = sparcl::merge(a.view(), b.view());
  EXPECT_FALSE(m.dense);
  EXPECT_EQ(m.range, (Range{0, 100}));
  EXPECT_EQ(vec(m.idx), (std::vector<I>{0, 1, 5, 6, 90, 99}));
  EXPECT_EQ(vec(m.val), (std::vector<V>{10, 1, 2, 20, 3, 30}));
}

TYPED_TEST(SparseTyped, MergeSparseOverlapping) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  auto a = sparse<V, I>({10, 110}, {10, 20, 30, 40}, {1, 2, 3, 4});
  auto b = sparse<V, I>({10, 110}, {20, 25, 40, 109}, {100, 200, -4, 400});
  auto m = sparcl::merge(a.view(), b.view());
  EXPECT_FALSE(m.dense);
  EXPECT_EQ(vec(m.idx), (std::vector<I>{10, 20, 25, 30, 40, 109}));
  // Cancelled values stay as explicit zeros.
  EXPECT_EQ(vec(m.val), (std::vector<V>{1, 102, 200, 3, 0, 400}));
  // Commutative for these inputs.
  auto m2 = sparcl::merge(b.view(), a.view());
  EXPECT_EQ(vec(m2.idx), vec(m.idx));
  EXPECT_EQ(vec(m2.val), vec(m.val));
}

TYPED_TEST(SparseTyped, MergeSparseIdenticalAndEmpty) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  auto a = sparse<V, I>({0, 1000}, {3, 500, 999}, {1.5, -2.25, 4});
  auto m = sparcl::merge(a.view(), a.view());
  EXPECT_FALSE(m.dense);
  EXPECT_EQ(vec(m.idx), vec(a.idx));
  EXPECT_EQ(vec(m.val), (std::vector<V>{3, -4.5, 8}));

  sparcl::Stream<V, I> e;
  e.range = {0, 1000};
  auto me = sparcl::merge(a.view(), e.view());
  EXPECT_FALSE(me.dense);
  EXPECT_EQ(vec(me.idx), vec(a.idx));
  EXPECT_EQ(vec(me.val), vec(a.val));
  auto em = sparcl::merge(e.view(), a.view());
  EXPECT_EQ(vec(em.idx), vec(a.idx));
  EXPECT_EQ(vec(em.val), vec(a.val));
  auto ee = sparcl::merge(e.view(), e.view());
  EXPECT_FALSE(ee.dense);
  EXPECT_TRUE(ee.idx.empty());
  EXPECT_TRUE(ee.val.empty());
}

TYPED_TEST(SparseTyped, MergeRejectsDifferentRanges) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  auto a = sparse<V, I>({0, 10}, {1}, {1});
  auto b = sparse<V, I>({0, 11}, {1}, {1});
  expect_error([&] { sparcl::merge(a.view(), b.view()); }, SPARCL_ERR_INTERNAL);
}

TYPED_TEST(SparseTyped, MergeSwitchesToDenseAtThreshold) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  const uint64_t len = 60;
  const uint64_t t = dense_threshold<V, I>(len);
  ASSERT_GE(t, 2u);
  // a holds the even indices, b the odd ones; a.nnz + b.nnz = t - 1 stays sparse.
  auto build = [&](uint64_t na, uint64_t nb) {
    std::vector<uint64_t> ia, ib;
    std::vector<double> va, vb;
    for (uint64_t k = 0; k < na; ++k) ia.push_back(2 * k), va.push_back(double(k + 1));
    for (uint64_t k = 0; k < nb; ++k) ib.push_back(2 * k + 1), vb.push_back(-double(k + 1));
    return std::make_pair(sparse<V, I>({0, len}, ia, va), sparse<V, I>({0, len}, ib, vb));
  };
  {
    auto [a, b] = build((t - 1) / 2, (t - 1) - (t - 1) / 2);
    auto m = sparcl::merge(a.view(), b.view());
    EXPECT_FALSE(m.dense) << "t=" << t;
    EXPECT_EQ(m.val.size(), t - 1);
    std::vector<V> expect(len, V(0));
    sparcl::add_into_dense(a.view(), expect.data());
    sparcl::add_into_dense(b.view(), expect.data());
    EXPECT_EQ(densify(m), expect);
  }
  {
    auto [a, b] = build(t / 2, t - t / 2);
    auto m = sparcl::merge(a.view(), b.view());
    EXPECT_TRUE(m.dense) << "t=" << t;
    ASSERT_EQ(m.val.size(), len);
    EXPECT_TRUE(m.idx.empty());
    std::vector<V> expect(len, V(0));
    sparcl::add_into_dense(a.view(), expect.data());
    sparcl::add_into_dense(b.view(), expect.data());
    EXPECT_EQ(vec(m.val), expect);
  }
  {
    // The rule is tested on the upper bound a.nnz + b.nnz, before merging:
    // identical inputs whose union is small still give a dense result.
    auto [a, b] = build((t + 1) / 2, 0);
    auto m = sparcl::merge(a.view(), a.view());
    EXPECT_TRUE(m.dense);
    EXPECT_EQ(m.val[0], V(2));
    EXPECT_EQ(m.val[1], V(0));
    EXPECT_EQ(m.val[2], V(4));
  }
}

TYPED_TEST(SparseTyped, MergeDenseAndSparse) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  auto d = dense<V, I>({3, 8}, {1, 2, 3, 4, 5});
  auto s = sparse<V, I>({3, 8}, {3, 7}, {10, 20});
  for (int order = 0; order < 2; ++order) {
    auto m = order ? sparcl::merge(s.view(), d.view()) : sparcl::merge(d.view(), s.view());
    EXPECT_TRUE(m.dense);
    EXPECT_EQ(m.range, (Range{3, 8}));
    EXPECT_EQ(vec(m.val), (std::vector<V>{11, 2, 3, 4, 25}));
  }
  sparcl::Stream<V, I> e;
  e.range = {3, 8};
  auto me = sparcl::merge(e.view(), d.view());
  EXPECT_TRUE(me.dense);
  EXPECT_EQ(vec(me.val), vec(d.val));
}

TYPED_TEST(SparseTyped, MergeDenseAndDense) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  auto a = dense<V, I>({0, 4}, {1, 2, 3, 4});
  auto b = dense<V, I>({0, 4}, {0.5, -2, 30, 1e6});
  auto m = sparcl::merge(a.view(), b.view());
  EXPECT_TRUE(m.dense);
  EXPECT_EQ(vec(m.val), (std::vector<V>{1.5, 0, 33, 1000004}));
  // Inputs are untouched.
  EXPECT_EQ(vec(a.val), (std::vector<V>{1, 2, 3, 4}));
}

TYPED_TEST(SparseTyped, MergeRandomAgainstDenseReference) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  std::mt19937_64 rng(1234);
  for (int trial = 0; trial < 200; ++trial) {
    const uint64_t begin = rng() % 50, len = 1 + rng() % 300;
    const Range r{begin, begin + len};
    auto random_stream = [&] {
      const double p = std::uniform_real_distribution<double>(0, 0.7)(rng);
      std::vector<uint64_t> idx;
      std::vector<double> val;
      for (uint64_t i = r.begin; i < r.end; ++i)
        if (std::uniform_real_distribution<double>(0, 1)(rng) < p) {
          idx.push_back(i);
          val.push_back(double(int64_t(rng() % 2001) - 1000));  // integer-valued: sums are exact
        }
      if (rng() % 5 == 0) {
        sparcl::Stream<V, I> s = sparse<V, I>(r, idx, val);
        return sparcl::to_dense_stream(s.view());
      }
      return sparse<V, I>(r, idx, val);
    };
    auto a = random_stream(), b = random_stream();
    auto m = sparcl::merge(a.view(), b.view());
    std::vector<V> expect(len, V(0));
    sparcl::add_into_dense(a.view(), expect.data());
    sparcl::add_into_dense(b.view(), expect.data());
    ASSERT_EQ(densify(m), expect) << "trial " << trial;
    const bool want_dense = a.dense || b.dense || sparcl::prefer_dense<V, I>(a.val.size() + b.val.size(), len);
    ASSERT_EQ(m.dense, want_dense) << "trial " << trial;
    if (!m.dense) {
      ASSERT_EQ(m.idx.size(), m.val.size());
      for (size_t k = 1; k < m.idx.size(); ++k) ASSERT_LT(m.idx[k - 1], m.idx[k]);
    }
  }
}

TYPED_TEST(SparseTyped, MergeAllAddsInOrder) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  // Floating-point addition is not associative: with big = 2^60,
  // (big + -big) + 1 = 1 but big + (-big + 1) = 0 in float and in double.
  // Three parts are added as (0+1)+2, on the sparse and on the dense path.
  const double big = std::ldexp(1.0, 60);
  auto p0 = sparse<V, I>({0, 100}, {7}, {big});
  auto p1 = sparse<V, I>({0, 100}, {7}, {-big});
  auto p2 = sparse<V, I>({0, 100}, {7}, {1});
  auto m = sparcl::merge_all<V, I>({p0.view(), p1.view(), p2.view()});
  EXPECT_FALSE(m.dense);
  ASSERT_EQ(vec(m.idx), (std::vector<I>{7}));
  EXPECT_EQ(m.val[0], V(1));
  auto m2 = sparcl::merge_all<V, I>({p1.view(), p2.view(), p0.view()});
  ASSERT_EQ(m2.val.size(), 1u);
  EXPECT_EQ(m2.val[0], V(0));

  // The same on the dense path.
  auto d0 = sparcl::to_dense_stream(p0.view());
  auto md = sparcl::merge_all<V, I>({d0.view(), p1.view(), p2.view()});
  EXPECT_TRUE(md.dense);
  EXPECT_EQ(md.val[7], V(1));
  auto md2 = sparcl::merge_all<V, I>({p1.view(), p2.view(), d0.view()});
  EXPECT_TRUE(md2.dense);
  EXPECT_EQ(md2.val[7], V(0));
}

TYPED_TEST(SparseTyped, MergeAllPairsInABalancedTree) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  // Sparse parts are merged pairwise, (0+1)+(2+3): with big = 2^60,
  // (big + 1) + (-big + 1) = big + -big = 0, where a left fold gives 1.
  const double big = std::ldexp(1.0, 60);
  auto p0 = sparse<V, I>({0, 1000}, {7}, {big});
  auto p1 = sparse<V, I>({0, 1000}, {7}, {1});
  auto p2 = sparse<V, I>({0, 1000}, {7}, {-big});
  auto p3 = sparse<V, I>({0, 1000}, {7, 8}, {1, 5});
  auto m = sparcl::merge_all<V, I>({p0.view(), p1.view(), p2.view(), p3.view()});
  ASSERT_FALSE(m.dense);
  EXPECT_EQ(vec(m.idx), (std::vector<I>{7, 8}));
  EXPECT_EQ(vec(m.val), (std::vector<V>{0, 5}));
  // (0+1)+(2+3) with a different pairing of the same values: (big + -big) + (1 + 1) = 2.
  auto m2 = sparcl::merge_all<V, I>({p0.view(), p2.view(), p1.view(), p3.view()});
  ASSERT_FALSE(m2.dense);
  EXPECT_EQ(vec(m2.val), (std::vector<V>{2, 5}));
  // Five parts: ((0+1)+(2+3))+4.
  auto p4 = sparse<V, I>({0, 1000}, {7}, {3});
  auto m5 = sparcl::merge_all<V, I>({p0.view(), p1.view(), p2.view(), p3.view(), p4.view()});
  ASSERT_FALSE(m5.dense);
  EXPECT_EQ(vec(m5.val), (std::vector<V>{3, 5}));
}

TYPED_TEST(SparseTyped, MergeAllIsDeterministicAndExact) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 40; ++trial) {
    const uint64_t len = 50 + rng() % 500, nparts = 1 + rng() % 17;
    std::vector<sparcl::Stream<V, I>> own;
    std::vector<V> exact(len, V(0));
    for (uint64_t p = 0; p < nparts; ++p) {
      std::vector<uint64_t> idx;
      std::vector<double> val;
      for (uint64_t i = 0; i < len; ++i)
        if (rng() % 23 == 0) idx.push_back(i), val.push_back(double(int64_t(rng() % 201) - 100));
      own.push_back(sparse<V, I>({0, len}, idx, val));
      for (size_t k = 0; k < idx.size(); ++k) exact[idx[k]] += V(val[k]);
    }
    std::vector<sparcl::View<V, I>> views;
    uint64_t entries = 0;
    for (auto& s : own) views.push_back(s.view()), entries += s.val.size();
    auto a = sparcl::merge_all(views);
    auto b = sparcl::merge_all(views);
    ASSERT_EQ(a.dense, b.dense);
    ASSERT_EQ(vec(a.idx), vec(b.idx));
    ASSERT_EQ(0, std::memcmp(a.val.data(), b.val.data(), a.val.size() * sizeof(V)));
    ASSERT_EQ(densify(a), exact) << "trial " << trial;  // integer values: exact in any order
    // SparCML's rule on the sum's own entries (summed densely or not).
    if (nparts > 1) {
      uint64_t set = 0;
      for (V x : densify(a)) set += x != V(0);
      if (a.dense) {
        ASSERT_TRUE((sparcl::prefer_dense<V, I>(set, len))) << "trial " << trial;
        ASSERT_EQ(a.set_entries, set) << "trial " << trial;
      } else {
        ASSERT_FALSE((sparcl::prefer_dense<V, I>(a.idx.size(), len))) << "trial " << trial;
      }
    }
    (void)entries;
    if (!a.dense) {
      for (size_t k = 1; k < a.idx.size(); ++k) ASSERT_LT(a.idx[k - 1], a.idx[k]);
    }
  }
}

TYPED_TEST(SparseTyped, MergeAllManyAndDenseSwitch) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  const uint64_t len = 90;
  // k parts with one entry each at index 3*k: total entries = number of parts.
  // t: the fewest parts that merge_all sums densely (5: 5 entries x 8 x 3 levels >= 90).
  uint64_t t = 2;
  while (!sparcl::merge_all_is_dense<V, I>(t, len, t)) ++t;
  ASSERT_EQ(t, 5u);
  auto make_parts = [&](uint64_t count, std::vector<sparcl::Stream<V, I>>& own) {
    own.clear();
    for (uint64_t k = 0; k < count; ++k) own.push_back(sparse<V, I>({0, len}, {(3 * k) % len}, {double(k + 1)}));
    std::vector<sparcl::View<V, I>> views;
    for (auto& s : own) views.push_back(s.view());
    return views;
  };
  std::vector<sparcl::Stream<V, I>> own;
  auto below = make_parts(t - 1, own);
  auto m = sparcl::merge_all(below);
  std::vector<V> expect(len, V(0));
  for (auto& v : below) sparcl::add_into_dense(v, expect.data());
  EXPECT_EQ(densify(m), expect);
  EXPECT_FALSE(m.dense);
  auto forced_tree = sparcl::merge_all(below, true);
  EXPECT_TRUE(forced_tree.dense);
  EXPECT_EQ(vec(forced_tree.val), expect);

  // Summed densely from t parts on, but 5 entries of 90 are sparse by
  // SparCML's rule: the sum goes back to sparse.
  auto at = make_parts(t, own);
  auto md = sparcl::merge_all(at);
  EXPECT_FALSE(md.dense);
  EXPECT_EQ(md.idx.size(), t);
  std::vector<V> expect2(len, V(0));
  for (auto& v : at) sparcl::add_into_dense(v, expect2.data());
  EXPECT_EQ(densify(md), expect2);
  // Asked for, the result is dense whatever its entries.
  auto forced = sparcl::merge_all(at, true);
  EXPECT_TRUE(forced.dense);
  EXPECT_EQ(vec(forced.val), expect2);
}

// A dense sum of sparse parts keeps the rule on its entries with a bit set:
// sparse below the switch (values that cancel to +0.0 left out, -0.0 kept),
// dense at it, with the count carried so that nobody counts again.
TYPED_TEST(SparseTyped, MergeAllDenseSumFollowsTheRule) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  const uint64_t len = 64;
  const uint64_t half = (len * sizeof(V) + sizeof(I) + sizeof(V) - 1) / (sizeof(I) + sizeof(V));  // the switch
  // Four parts over the same `cover` indices: their 4 * cover entries are
  // summed densely; part 3 cancels part 0 at index 0 and leaves -0.0 at index 1.
  for (uint64_t cover : {half, half + 1}) {
    std::vector<sparcl::Stream<V, I>> own;
    for (int p = 0; p < 4; ++p) {
      std::vector<uint64_t> idx;
      std::vector<double> val;
      for (uint64_t i = 0; i < cover; ++i) {
        idx.push_back(i);
        val.push_back(i == 0 ? (p == 0 ? 5.0 : p == 3 ? -5.0 : 0.0) : i == 1 ? -0.0 : double(p + 1));
      }
      own.push_back(sparse<V, I>({0, len}, idx, val));
    }
    std::vector<sparcl::View<V, I>> views;
    for (auto& s : own) views.push_back(s.view());
    ASSERT_TRUE((sparcl::merge_all_is_dense<V, I>(4 * cover, len, 4)));
    auto m = sparcl::merge_all(views);
    // Index 0 is +0.0 (cancelled): cover - 1 entries set.
    const bool dense = sparcl::prefer_dense<V, I>(cover - 1, len);
    EXPECT_EQ(m.dense, dense) << cover;
    if (m.dense) {
      EXPECT_EQ(m.set_entries, cover - 1);
      continue;
    }
    ASSERT_EQ(m.idx.size(), cover - 1) << cover;
    EXPECT_EQ(m.idx[0], I(1));
    EXPECT_TRUE(m.val[0] == V(0) && std::signbit(m.val[0]));
    EXPECT_EQ(m.val[1], V(10));
  }
}

TYPED_TEST(SparseTyped, MergeAllSingleAndErrors) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  auto a = sparse<V, I>({0, 10}, {1, 2}, {3, 4});
  auto one = sparcl::merge_all<V, I>({a.view()});
  EXPECT_FALSE(one.dense);
  EXPECT_EQ(vec(one.idx), vec(a.idx));
  EXPECT_EQ(vec(one.val), vec(a.val));
  // The copy is owned.
  EXPECT_NE(one.val.data(), a.val.data());

  expect_error([] { sparcl::merge_all<V, I>({}); }, SPARCL_ERR_INTERNAL);
  auto b = sparse<V, I>({0, 11}, {1}, {1});
  expect_error([&] { sparcl::merge_all<V, I>({a.view(), b.view()}); }, SPARCL_ERR_INTERNAL);
}

TYPED_TEST(SparseTyped, ConcatToSparse) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  auto p0 = sparse<V, I>({0, 100}, {4, 50}, {1, 2});
  auto p1 = sparse<V, I>({100, 150}, {}, {});
  auto p2 = sparse<V, I>({150, 300}, {151, 299}, {3, 4});
  auto c = sparcl::concat<V, I>({p0.view(), p1.view(), p2.view()}, Range{0, 300});
  EXPECT_FALSE(c.dense);
  EXPECT_EQ(c.range, (Range{0, 300}));
  EXPECT_EQ(vec(c.idx), (std::vector<I>{4, 50, 151, 299}));
  EXPECT_EQ(vec(c.val), (std::vector<V>{1, 2, 3, 4}));

  // A small dense piece in a sparse result: its values become entries.
  auto d = dense<V, I>({100, 103}, {5, 0, 6});
  auto p3 = sparse<V, I>({103, 300}, {200}, {7});
  auto c2 = sparcl::concat<V, I>({p0.view(), d.view(), p3.view()}, Range{0, 300});
  EXPECT_FALSE(c2.dense);
  EXPECT_EQ(vec(c2.idx), (std::vector<I>{4, 50, 100, 101, 102, 200}));
  EXPECT_EQ(vec(c2.val), (std::vector<V>{1, 2, 5, 0, 6, 7}));
  std::vector<V> expect(300, V(0));
  expect[4] = 1, expect[50] = 2, expect[100] = 5, expect[102] = 6, expect[200] = 7;
  EXPECT_EQ(densify(c2), expect);
}

TYPED_TEST(SparseTyped, ConcatToDense) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  auto p0 = sparse<V, I>({10, 13}, {10, 12}, {1, 2});
  auto p1 = dense<V, I>({13, 16}, {3, 4, 5});
  auto c = sparcl::concat<V, I>({p0.view(), p1.view()}, Range{10, 16});
  EXPECT_TRUE(c.dense);
  EXPECT_EQ(c.range, (Range{10, 16}));
  EXPECT_EQ(vec(c.val), (std::vector<V>{1, 0, 2, 3, 4, 5}));

  // Sparse pieces whose entries reach the threshold give a dense result.
  const uint64_t len = 40, t = dense_threshold<V, I>(len);
  std::vector<uint64_t> ia, ib;
  std::vector<double> va, vb;
  for (uint64_t k = 0; k < t; ++k) {
    if (k < t / 2) ia.push_back(k), va.push_back(double(k + 1));
    else ib.push_back(20 + (k - t / 2)), vb.push_back(double(k + 1));
  }
  auto a = sparse<V, I>({0, 20}, ia, va);
  auto b = sparse<V, I>({20, 40}, ib, vb);
  auto cd = sparcl::concat<V, I>({a.view(), b.view()}, Range{0, 40});
  EXPECT_TRUE(cd.dense);
  std::vector<V> expect(len, V(0));
  for (size_t k = 0; k < ia.size(); ++k) expect[ia[k]] = V(va[k]);
  for (size_t k = 0; k < ib.size(); ++k) expect[ib[k]] = V(vb[k]);
  EXPECT_EQ(vec(cd.val), expect);

  // One entry fewer stays sparse.
  auto b2 = sparse<V, I>({20, 40}, std::vector<uint64_t>(ib.begin(), ib.end() - 1),
                         std::vector<double>(vb.begin(), vb.end() - 1));
  auto cs = sparcl::concat<V, I>({a.view(), b2.view()}, Range{0, 40});
  EXPECT_FALSE(cs.dense);
  EXPECT_EQ(cs.idx.size(), t - 1);
}

TYPED_TEST(SparseTyped, ConcatRejectsPiecesThatDoNotTile) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  auto a = sparse<V, I>({0, 10}, {1}, {1});
  auto b = sparse<V, I>({10, 20}, {15}, {1});
  auto gap = sparse<V, I>({11, 20}, {15}, {1});
  auto overlap = sparse<V, I>({9, 20}, {15}, {1});
  auto late = sparse<V, I>({1, 10}, {1}, {1});
  EXPECT_NO_THROW((sparcl::concat<V, I>({a.view(), b.view()}, Range{0, 20})));
  expect_error([&] { sparcl::concat<V, I>({a.view(), gap.view()}, Range{0, 20}); }, SPARCL_ERR_INTERNAL);
  expect_error([&] { sparcl::concat<V, I>({a.view(), overlap.view()}, Range{0, 20}); }, SPARCL_ERR_INTERNAL);
  expect_error([&] { sparcl::concat<V, I>({b.view(), a.view()}, Range{0, 20}); }, SPARCL_ERR_INTERNAL);
  expect_error([&] { sparcl::concat<V, I>({late.view(), b.view()}, Range{0, 20}); }, SPARCL_ERR_INTERNAL);
  expect_error([&] { sparcl::concat<V, I>({a.view()}, Range{0, 20}); }, SPARCL_ERR_INTERNAL);
  expect_error([&] { sparcl::concat<V, I>({a.view(), b.view()}, Range{0, 19}); }, SPARCL_ERR_INTERNAL);
  expect_error([&] { sparcl::concat<V, I>({}, Range{0, 20}); }, SPARCL_ERR_INTERNAL);
  // No pieces for an empty range is a valid (empty) concatenation.
  auto e = sparcl::concat<V, I>({}, Range{5, 5});
  EXPECT_EQ(e.range, (Range{5, 5}));
  EXPECT_EQ(e.val.size(), 0u);
}

TYPED_TEST(SparseTyped, ConcatOfSplitRoundTrips) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  std::mt19937_64 rng(99);
  for (int trial = 0; trial < 50; ++trial) {
    const uint64_t len = 1 + rng() % 200, parts = 1 + rng() % 9;
    std::vector<uint64_t> idx;
    std::vector<double> val;
    for (uint64_t i = 0; i < len; ++i)
      if (rng() % 5 == 0) idx.push_back(i), val.push_back(double(rng() % 100) + 1);
    auto s = sparse<V, I>({0, len}, idx, val);
    std::vector<sparcl::View<V, I>> pieces;
    for (uint64_t p = 0; p < parts; ++p)
      pieces.push_back(sparcl::slice(s.view(), sparcl::split_range(s.range, parts, p)));
    auto c = sparcl::concat(pieces, s.range);
    ASSERT_EQ(densify(c), densify(s)) << "trial " << trial;
    ASSERT_EQ(c.dense, (sparcl::prefer_dense<V, I>(idx.size(), len))) << "trial " << trial;
    if (!c.dense) {
      ASSERT_EQ(vec(c.idx), vec(s.idx));
    }
  }
}

// ---------------------------------------------------------------- pack_set_entries

// Its vector and scalar kernels, and count_set_floats's, against a plain
// loop, on runs whose lengths and bounds cut blocks of 8 anywhere, with -0.0
// and NaN (kept) and +0.0 (left out), at densities from empty to full,
// indices up to 2^32 - 1, and nothing written past most + kPackSlack.
TEST(PackSetEntries, KernelsMatchAPlainLoop) {
  struct RestoreAvx2 {
    bool& flag = sparcl::codec::avx2_enabled();
    const bool saved = flag;
    ~RestoreAvx2() { flag = saved; }
  } restore;
  constexpr uint32_t kCanary = 0xdeadbeef;
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 400; ++trial) {
    const size_t len = rng() % 300;
    const unsigned percent = unsigned(rng() % 101);
    std::vector<float> in(len, 0.0f);
    for (auto& x : in) {
      if (rng() % 100 >= percent) continue;
      switch (rng() % 4) {
        case 0: x = -0.0f; break;
        case 1: x = std::numeric_limits<float>::quiet_NaN(); break;
        default: x = float(rng() % 1000) - 500.5f;
      }
    }
    const uint32_t first = uint32_t(rng() % 2 ? rng() % 1000 : (uint64_t(1) << 32) - len);
    std::vector<uint32_t> want_idx;
    std::vector<uint32_t> want_bits;
    for (size_t i = 0; i < len; ++i) {
      uint32_t bits;
      std::memcpy(&bits, &in[i], 4);
      if (bits) want_idx.push_back(first + uint32_t(i)), want_bits.push_back(bits);
    }
    const size_t most = rng() % 3 ? want_idx.size() : rng() % (want_idx.size() + 1);
    for (bool vectors : {false, restore.saved}) {
      restore.flag = vectors;
      const size_t room = most + sparcl::kPackSlack;
      std::vector<uint32_t> idx(room + 8, kCanary);
      std::vector<float> val(room + 8);
      std::memcpy(val.data() + room, idx.data() + room, 8 * sizeof(float));  // canaries
      ASSERT_EQ(sparcl::count_set_floats(in.data(), len), want_idx.size()) << "trial " << trial << " avx2 " << vectors;
      const size_t k = sparcl::pack_set_entries(in.data(), len, first, idx.data(), val.data(), most);
      ASSERT_EQ(k, most) << "trial " << trial << " avx2 " << vectors;
      for (size_t j = 0; j < k; ++j) {
        uint32_t bits;
        std::memcpy(&bits, &val[j], 4);
        ASSERT_EQ(idx[j], want_idx[j]) << "trial " << trial << " entry " << j << " avx2 " << vectors;
        ASSERT_EQ(bits, want_bits[j]) << "trial " << trial << " entry " << j << " avx2 " << vectors;
      }
      for (size_t j = room; j < room + 8; ++j) {
        uint32_t bits;
        std::memcpy(&bits, &val[j], 4);
        ASSERT_EQ(idx[j], kCanary) << "trial " << trial << ": index written past the room, avx2 " << vectors;
        ASSERT_EQ(bits, kCanary) << "trial " << trial << ": value written past the room, avx2 " << vectors;
      }
    }
  }
}

}  // namespace
