// SPDX-License-Identifier: BSD-3-Clause
// Validation and conversion of the caller's vectors (src/input.hpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "input.hpp"
#include "unit_types.hpp"

namespace {

using sparcl::Range;
using namespace sparcl_unit;

template <class V>
constexpr sparcl_datatype_t dtype() {
  return sizeof(V) == 4 ? SPARCL_FLOAT32 : SPARCL_FLOAT64;
}
template <class J>
constexpr sparcl_index_type_t itype() {
  return sizeof(J) == 4 ? SPARCL_INDEX_U32 : SPARCL_INDEX_U64;
}

template <class V, class J>
sparcl_sparse_t make_sparse(uint64_t dim, const std::vector<J>& idx, const std::vector<V>& val,
                            uint32_t flags = 0) {
  sparcl_sparse_t s;
  s.dim = dim;
  s.nnz = idx.size();
  s.index_type = itype<J>();
  s.indices = idx.empty() ? nullptr : idx.data();
  s.value_type = dtype<V>();
  s.values = val.empty() ? nullptr : val.data();
  s.flags = flags;
  return s;
}

// Stores any int in a C enum field, as a C caller may.
template <class E>
void set_raw(E& field, int value) {
  static_assert(sizeof(E) == sizeof(int), "C enums are int-sized");
  std::memcpy(&field, &value, sizeof value);
}

// ---------------------------------------------------------------- check_sparse_header

TEST(CheckSparseHeader, AcceptsValidHeaders) {
  std::vector<uint32_t> idx{1, 2};
  std::vector<float> val{1, 2};
  auto s = make_sparse<float, uint32_t>(10, idx, val);
  EXPECT_NO_THROW(sparcl::check_sparse_header(&s));
  s.flags = SPARCL_SPARSE_UNSORTED;
  EXPECT_NO_THROW(sparcl::check_sparse_header(&s));
  // NULL arrays are fine when nnz == 0.
  auto e = make_sparse<double, uint64_t>(1, {}, {});
  EXPECT_EQ(e.indices, nullptr);
  EXPECT_NO_THROW(sparcl::check_sparse_header(&e));
  // With SPARCL_SPARSE_UNSORTED, duplicates may make nnz > dim.
  std::vector<uint32_t> dup{0, 0, 0};
  std::vector<float> dv{1, 1, 1};
  auto d = make_sparse<float, uint32_t>(1, dup, dv, SPARCL_SPARSE_UNSORTED);
  EXPECT_NO_THROW(sparcl::check_sparse_header(&d));
}

TEST(CheckSparseHeader, RejectsBadHeaders) {
  std::vector<uint32_t> idx{1, 2};
  std::vector<float> val{1, 2};
  const sparcl_sparse_t good = make_sparse<float, uint32_t>(10, idx, val);

  auto msg = expect_error([] { sparcl::check_sparse_header(nullptr); }, SPARCL_ERR_INVALID_ARG);
  EXPECT_NE(msg.find("NULL"), std::string::npos) << msg;

  auto s = good;
  s.dim = 0;
  s.nnz = 0;
  msg = expect_error([&] { sparcl::check_sparse_header(&s); }, SPARCL_ERR_INVALID_ARG);
  EXPECT_NE(msg.find("dim 0"), std::string::npos) << msg;

  // Any int a C caller may store in the enum fields.
  for (int vt : {0, int(SPARCL_INT32), int(SPARCL_INT64), 5, 7, -1, 1 << 20}) {
    s = good;
    set_raw(s.value_type, vt);
    msg = expect_error([&] { sparcl::check_sparse_header(&s); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(msg.find("value type"), std::string::npos) << vt << ": " << msg;
  }
  for (int it : {0, 3, -1, 4, 1 << 20}) {
    s = good;
    set_raw(s.index_type, it);
    msg = expect_error([&] { sparcl::check_sparse_header(&s); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(msg.find("index type"), std::string::npos) << it << ": " << msg;
  }
  for (uint32_t f : {2u, 4u, 0x80000000u, 3u}) {
    s = good;
    s.flags = f;
    msg = expect_error([&] { sparcl::check_sparse_header(&s); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(msg.find("flags"), std::string::npos) << f << ": " << msg;
  }
  s = good;
  s.indices = nullptr;
  msg = expect_error([&] { sparcl::check_sparse_header(&s); }, SPARCL_ERR_INVALID_ARG);
  EXPECT_NE(msg.find("indices is NULL"), std::string::npos) << msg;
  s = good;
  s.values = nullptr;
  msg = expect_error([&] { sparcl::check_sparse_header(&s); }, SPARCL_ERR_INVALID_ARG);
  EXPECT_NE(msg.find("values is NULL"), std::string::npos) << msg;

  s = good;
  s.dim = 1;  // nnz 2 > dim 1
  msg = expect_error([&] { sparcl::check_sparse_header(&s); }, SPARCL_ERR_INVALID_ARG);
  EXPECT_NE(msg.find("nnz > dim"), std::string::npos) << msg;
}

TEST(InputHelpers, IndexWidthAndValueSize) {
  EXPECT_EQ(sparcl::index_width_for(1), 4);
  EXPECT_EQ(sparcl::index_width_for(uint64_t(1) << 32), 8);
  EXPECT_EQ(sparcl::index_width_for((uint64_t(1) << 32) - 1), 4);
  EXPECT_EQ(sparcl::index_width_for(~uint64_t(0)), 8);
  EXPECT_EQ(sparcl::value_size(SPARCL_FLOAT32), 4u);
  EXPECT_EQ(sparcl::value_size(SPARCL_FLOAT64), 8u);
  EXPECT_EQ(sparcl::value_size(SPARCL_INT32), 4u);
  EXPECT_EQ(sparcl::value_size(SPARCL_INT64), 8u);
  EXPECT_EQ(sparcl::value_size(7), 0u);
  EXPECT_EQ(sparcl::value_size(-1), 0u);
}

// ---------------------------------------------------------------- make_input

template <class T>
class InputTyped : public ::testing::Test {};
TYPED_TEST_SUITE(InputTyped, AllTypes);

// The user index type J runs over u32 and u64 for each internal (V, I).
template <class V, class I, class J>
void sorted_input_is_viewed_or_converted() {
  std::vector<J> idx{0, 3, 9};
  std::vector<V> val{1, -2, 3.5};
  auto s = make_sparse<V, J>(10, idx, val);
  sparcl::Input<V, I> in;
  sparcl::make_input(s, in);
  EXPECT_EQ(in.view.range, (Range{0, 10}));
  EXPECT_FALSE(in.view.dense);
  ASSERT_EQ(in.view.nnz, 3u);
  EXPECT_EQ(std::vector<I>(in.view.idx, in.view.idx + 3), (std::vector<I>{0, 3, 9}));
  EXPECT_EQ(std::vector<V>(in.view.val, in.view.val + 3), val);
  if (std::is_same<I, J>::value) {
    // Same index type: no copy.
    EXPECT_EQ(static_cast<const void*>(in.view.idx), static_cast<const void*>(idx.data()));
    EXPECT_EQ(in.view.val, val.data());
  } else {
    EXPECT_EQ(in.view.idx, in.owned.idx.data());
    EXPECT_EQ(in.owned.idx.size(), 3u);
  }
}

TYPED_TEST(InputTyped, SortedInput) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  sorted_input_is_viewed_or_converted<V, I, uint32_t>();
  sorted_input_is_viewed_or_converted<V, I, uint64_t>();
  // Empty input.
  auto e = make_sparse<V, uint32_t>(5, {}, {});
  sparcl::Input<V, I> in;
  sparcl::make_input(e, in);
  EXPECT_EQ(in.view.nnz, 0u);
  EXPECT_EQ(in.view.range, (Range{0, 5}));
}

template <class V, class I, class J>
void rejects_bad_indices() {
  struct Case {
    std::vector<J> idx;
    const char* words;  // expected in the message
  };
  const Case cases[] = {
      {{0, 10}, "index 10 at position 1 is >= dim 10"},
      {{12}, "index 12 at position 0 is >= dim 10"},
      {{1, 5, 3}, "unsorted index 3 at position 2"},
      {{1, 1}, "duplicate index 1 at position 1"},
      {{0, 2, 4, 4, 6}, "duplicate index 4 at position 3"},
      {{9, 0}, "unsorted index 0 at position 1"},
  };
  for (const Case& c : cases) {
    std::vector<V> val(c.idx.size(), V(1));
    auto s = make_sparse<V, J>(10, c.idx, val);
    sparcl::Input<V, I> in;
    const std::string msg = expect_error([&] { sparcl::make_input(s, in); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(msg.find(c.words), std::string::npos) << "expected '" << c.words << "' in: " << msg;
  }
  // A huge u64 index that would wrap when narrowed to 32 bits.
  if (sizeof(J) == 8) {
    std::vector<J> idx{1, J((uint64_t(1) << 32) + 2)};
    std::vector<V> val{1, 1};
    auto s = make_sparse<V, J>(10, idx, val);
    sparcl::Input<V, I> in;
    const std::string msg = expect_error([&] { sparcl::make_input(s, in); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(msg.find("position 1"), std::string::npos) << msg;
    s.flags = SPARCL_SPARSE_UNSORTED;
    sparcl::Input<V, I> in2;
    expect_error([&] { sparcl::make_input(s, in2); }, SPARCL_ERR_INVALID_ARG);
  }
}

TYPED_TEST(InputTyped, RejectsBadIndices) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  rejects_bad_indices<V, I, uint32_t>();
  rejects_bad_indices<V, I, uint64_t>();
}

template <class V, class I, class J>
void unsorted_input_is_sorted_and_summed() {
  std::vector<J> idx{7, 2, 7, 0, 2, 9, 7};
  std::vector<V> val{1, 10, 2, 100, 20, 1000, 4};
  auto s = make_sparse<V, J>(10, idx, val, SPARCL_SPARSE_UNSORTED);
  sparcl::Input<V, I> in;
  sparcl::make_input(s, in);
  EXPECT_FALSE(in.view.dense);
  EXPECT_EQ(in.view.range, (Range{0, 10}));
  ASSERT_EQ(in.view.nnz, 4u);
  EXPECT_EQ(std::vector<I>(in.view.idx, in.view.idx + 4), (std::vector<I>{0, 2, 7, 9}));
  EXPECT_EQ(std::vector<V>(in.view.val, in.view.val + 4), (std::vector<V>{100, 30, 7, 1000}));
  // The caller's arrays are untouched.
  EXPECT_EQ(idx, (std::vector<J>{7, 2, 7, 0, 2, 9, 7}));

  // Duplicates are summed in input order (stable): big + -big + 1 = 1.
  const double big = std::ldexp(1.0, 60);
  std::vector<J> i2{3, 3, 3};
  std::vector<V> v2{V(big), V(-big), V(1)};
  auto s2 = make_sparse<V, J>(4, i2, v2, SPARCL_SPARSE_UNSORTED);
  sparcl::Input<V, I> in2;
  sparcl::make_input(s2, in2);
  ASSERT_EQ(in2.view.nnz, 1u);
  EXPECT_EQ(in2.view.val[0], V(1));

  // More entries than dim with the flag.
  std::vector<J> i3{0, 0, 0, 0};
  std::vector<V> v3{1, 1, 1, 1};
  auto s3 = make_sparse<V, J>(1, i3, v3, SPARCL_SPARSE_UNSORTED);
  sparcl::Input<V, I> in3;
  sparcl::make_input(s3, in3);
  ASSERT_EQ(in3.view.nnz, 1u);
  EXPECT_EQ(in3.view.val[0], V(4));

  // An already sorted input with the flag.
  std::vector<J> i4{1, 2, 3};
  std::vector<V> v4{1, 2, 3};
  auto s4 = make_sparse<V, J>(4, i4, v4, SPARCL_SPARSE_UNSORTED);
  sparcl::Input<V, I> in4;
  sparcl::make_input(s4, in4);
  EXPECT_EQ(std::vector<I>(in4.view.idx, in4.view.idx + in4.view.nnz), (std::vector<I>{1, 2, 3}));

  // Out of range is still an error, naming the position.
  std::vector<J> i5{3, 1, 10};
  std::vector<V> v5{1, 1, 1};
  auto s5 = make_sparse<V, J>(10, i5, v5, SPARCL_SPARSE_UNSORTED);
  sparcl::Input<V, I> in5;
  const std::string msg = expect_error([&] { sparcl::make_input(s5, in5); }, SPARCL_ERR_INVALID_ARG);
  EXPECT_NE(msg.find("index 10 at position 2"), std::string::npos) << msg;
}

TYPED_TEST(InputTyped, UnsortedFlagSortsAndSums) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  unsorted_input_is_sorted_and_summed<V, I, uint32_t>();
  unsorted_input_is_sorted_and_summed<V, I, uint64_t>();
}

TEST(MakeInput, U64UserIndicesBecomeU32Internally) {
  const uint64_t dim = (uint64_t(1) << 32) - 1;  // largest dim with 4-byte indices
  ASSERT_EQ(sparcl::index_width_for(dim), 4);
  std::vector<uint64_t> idx{0, 65536, dim - 1};
  std::vector<float> val{1, 2, 3};
  auto s = make_sparse<float, uint64_t>(dim, idx, val);
  sparcl::Input<float, uint32_t> in;
  sparcl::make_input(s, in);
  ASSERT_EQ(in.view.nnz, 3u);
  EXPECT_EQ(std::vector<uint32_t>(in.view.idx, in.view.idx + 3),
            (std::vector<uint32_t>{0, 65536, 0xFFFFFFFEu}));
  EXPECT_EQ(in.view.val[2], 3.0f);

  // u32 user indices into 8-byte internal indices for a huge dim.
  const uint64_t big = uint64_t(1) << 40;
  std::vector<uint32_t> i32{5, 0xFFFFFFFFu};
  std::vector<double> v32{1, 2};
  auto s2 = make_sparse<double, uint32_t>(big, i32, v32);
  sparcl::Input<double, uint64_t> in2;
  sparcl::make_input(s2, in2);
  EXPECT_EQ(in2.view.range, (Range{0, big}));
  EXPECT_EQ(std::vector<uint64_t>(in2.view.idx, in2.view.idx + 2), (std::vector<uint64_t>{5, 0xFFFFFFFFu}));
}

// ---------------------------------------------------------------- make_dense_input

TYPED_TEST(InputTyped, DenseInputPicksFormByRule) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  const uint64_t len = 24;
  const uint64_t t = dense_threshold<V, I>(len);
  for (uint64_t nnz : {uint64_t(0), uint64_t(1), t - 1, t, len}) {
    std::vector<V> x(len, V(0));
    for (uint64_t k = 0; k < nnz; ++k) x[(k * 7) % len] = V(k + 1);  // 7 is coprime with 24
    sparcl::Input<V, I> in;
    sparcl::make_dense_input(x.data(), len, in);
    EXPECT_EQ(in.view.range, (Range{0, len}));
    const bool want_dense = nnz >= t;
    ASSERT_EQ(in.view.dense, want_dense) << "nnz " << nnz << " threshold " << t;
    if (want_dense) {
      EXPECT_EQ(in.view.val, x.data());  // a view of the caller's buffer
      EXPECT_EQ(in.view.nnz, len);
    } else {
      ASSERT_EQ(in.view.nnz, nnz);
      for (size_t k = 1; k < in.view.nnz; ++k) EXPECT_LT(in.view.idx[k - 1], in.view.idx[k]);
    }
    std::vector<V> back(len, V(-1));
    sparcl::write_dense(in.view, back.data());
    EXPECT_EQ(back, x) << "nnz " << nnz;
  }
}

TYPED_TEST(InputTyped, DenseInputKeepsNegativeZeroAndNaN) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  std::vector<V> x(100, V(0));
  x[3] = V(-0.0);
  x[50] = std::numeric_limits<V>::quiet_NaN();
  x[99] = std::numeric_limits<V>::denorm_min();
  sparcl::Input<V, I> in;
  sparcl::make_dense_input(x.data(), x.size(), in);
  ASSERT_FALSE(in.view.dense);
  ASSERT_EQ(in.view.nnz, 3u);
  EXPECT_EQ(in.view.idx[0], I(3));
  EXPECT_TRUE(std::signbit(in.view.val[0]));
  EXPECT_EQ(in.view.val[0], V(0));
  EXPECT_EQ(in.view.idx[1], I(50));
  EXPECT_TRUE(std::isnan(in.view.val[1]));
  EXPECT_EQ(in.view.idx[2], I(99));
  EXPECT_EQ(in.view.val[2], std::numeric_limits<V>::denorm_min());

  // All zeros: an empty sparse view.
  std::vector<V> z(10, V(0));
  sparcl::Input<V, I> iz;
  sparcl::make_dense_input(z.data(), z.size(), iz);
  EXPECT_FALSE(iz.view.dense);
  EXPECT_EQ(iz.view.nnz, 0u);
}

}  // namespace
