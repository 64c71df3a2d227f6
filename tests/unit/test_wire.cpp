// SPDX-License-Identifier: BSD-3-Clause
// The wire format (src/wire.hpp, src/wire.cpp): round trips, and that every
// malformed message is rejected with a sparcl::Error instead of being read.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "unit_types.hpp"
#include "wire.hpp"

namespace {

using sparcl::Buffer;
using sparcl::Range;
using sparcl::WireHeader;
using namespace sparcl_unit;

constexpr int kPeer = 3;
constexpr uint16_t kStep = 5;

template <class V, class I>
sparcl::Identity identity(uint64_t dim) {
  sparcl::Identity id;
  id.comm_id = 0xC0FFEE;
  id.seq = 42;
  id.kind = sparcl::Kind::Allreduce;
  id.algorithm = SPARCL_ALGO_RING;
  id.dim = dim;
  id.value_type = sparcl::value_type_code<V>();
  id.index_width = sizeof(I);
  id.encoding = sparcl::Encoding::Raw;
  return id;
}

WireHeader header_of(const Buffer& b) {
  WireHeader h;
  std::memcpy(&h, b.data(), sizeof h);
  return h;
}

void set_header(Buffer& b, const WireHeader& h) { std::memcpy(b.data(), &h, sizeof h); }

Buffer copy(const Buffer& b, size_t n) {
  Buffer out(n);
  if (n) std::memcpy(out.data(), b.data(), std::min(n, b.size()));
  if (n > b.size()) std::memset(out.data() + b.size(), 0, n - b.size());
  return out;
}

// Receiver side: header checks, identity, payload. Raw values only: the
// view points into `b`.
template <class V, class I>
sparcl::View<V, I> receive(const Buffer& b, const sparcl::Identity& id, Range expected) {
  const WireHeader h = sparcl::read_header(b);
  sparcl::check_identity(h, id, kStep, kPeer);
  sparcl::Decoded<V, I> d = sparcl::decode<V, I>(b, h, expected, kPeer);
  EXPECT_EQ(d.stream, nullptr) << "raw values are read in place";
  return d.view;
}

// A decoded view must lie inside the message it was decoded from.
template <class V, class I>
::testing::AssertionResult inside(const sparcl::View<V, I>& v, const Buffer& b) {
  const auto lo = reinterpret_cast<uintptr_t>(b.data()) + sizeof(WireHeader);
  const auto hi = reinterpret_cast<uintptr_t>(b.data()) + b.size();
  const auto vb = reinterpret_cast<uintptr_t>(v.val);
  const __uint128_t ve = __uint128_t(vb) + __uint128_t(v.nnz) * sizeof(V);
  if (v.nnz && (vb < lo || ve > hi))
    return ::testing::AssertionFailure() << "values [" << vb << ", +" << v.nnz << "*" << sizeof(V)
                                         << ") outside the message [" << lo << ", " << hi << ")";
  if (!v.dense && v.nnz) {
    const auto ib = reinterpret_cast<uintptr_t>(v.idx);
    const __uint128_t ie = __uint128_t(ib) + __uint128_t(v.nnz) * sizeof(I);
    if (ib < lo || ie > hi) return ::testing::AssertionFailure() << "indices outside the message";
  }
  return ::testing::AssertionSuccess();
}

template <class T>
class WireTyped : public ::testing::Test {};
TYPED_TEST_SUITE(WireTyped, AllTypes);

TYPED_TEST(WireTyped, SparseRoundTrip) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  const auto id = identity<V, I>(1000);
  const Range r{100, 200};
  auto s = sparse<V, I>(r, {100, 101, 120, 150, 199}, {1.5, -2, 7, 3, 1e6});
  auto buf = sparcl::encode(id, kStep, s.view());
  ASSERT_EQ(buf->size(), sizeof(WireHeader) + sparcl::pad8(5 * sizeof(I)) + 5 * sizeof(V));

  const WireHeader h = sparcl::read_header(*buf);
  EXPECT_EQ(h.magic, sparcl::kWireMagic);
  EXPECT_EQ(h.version, sparcl::kWireVersion);
  EXPECT_EQ(h.flags, 0);
  EXPECT_EQ(h.begin, 100u);
  EXPECT_EQ(h.end, 200u);
  EXPECT_EQ(h.nnz, 5u);
  EXPECT_EQ(h.step, kStep);
  EXPECT_EQ(h.dim, 1000u);
  EXPECT_EQ(h.index_width, sizeof(I));
  EXPECT_EQ(h.value_type, sizeof(V) == 4 ? SPARCL_FLOAT32 : SPARCL_FLOAT64);
  EXPECT_EQ(h.comm_id, 0xC0FFEEu);
  EXPECT_EQ(h.seq, 42u);
  EXPECT_EQ(h.kind, uint8_t(sparcl::Kind::Allreduce));
  EXPECT_EQ(h.algorithm, SPARCL_ALGO_RING);
  EXPECT_EQ(h.reserved0, 0);
  EXPECT_EQ(h.choice_digest, 0);
  EXPECT_EQ(h.status, 0);
  // The magic reads "SPCL" in memory.
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf->data()), 4), "SPCL");

  EXPECT_NO_THROW(sparcl::check_identity(h, id, kStep, kPeer));
  auto v = sparcl::decode<V, I>(*buf, h, r, kPeer).view;
  EXPECT_TRUE(inside(v, *buf));
  EXPECT_FALSE(v.dense);
  EXPECT_EQ(v.range, r);
  ASSERT_EQ(v.nnz, 5u);
  EXPECT_EQ(std::vector<I>(v.idx, v.idx + 5), vec(s.idx));
  EXPECT_EQ(std::vector<V>(v.val, v.val + 5), vec(s.val));

  // Index padding is zero.
  const size_t ib = 5 * sizeof(I);
  for (size_t k = ib; k < sparcl::pad8(ib); ++k) EXPECT_EQ(buf->data()[sizeof(WireHeader) + k], 0) << k;
}

TYPED_TEST(WireTyped, EmptySparseRoundTrip) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  const auto id = identity<V, I>(50);
  sparcl::Stream<V, I> s;
  s.range = {10, 50};
  auto buf = sparcl::encode(id, kStep, s.view());
  EXPECT_EQ(buf->size(), sizeof(WireHeader));
  auto v = receive<V, I>(*buf, id, s.range);
  EXPECT_FALSE(v.dense);
  EXPECT_EQ(v.nnz, 0u);

  // An empty range is sent dense with no values.
  sparcl::Stream<V, I> e;
  e.range = {50, 50};
  auto be = sparcl::encode(id, kStep, e.view());
  EXPECT_EQ(be->size(), sizeof(WireHeader));
  auto ve = receive<V, I>(*be, id, e.range);
  EXPECT_EQ(ve.nnz, 0u);
}

TYPED_TEST(WireTyped, DenseRoundTrip) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  const auto id = identity<V, I>(8);
  auto d = dense<V, I>({2, 7}, {1, 0, -3, 0.25, 9});
  auto buf = sparcl::encode(id, kStep, d.view());
  ASSERT_EQ(buf->size(), sizeof(WireHeader) + 5 * sizeof(V));
  const WireHeader h = sparcl::read_header(*buf);
  EXPECT_EQ(h.flags, sparcl::kFlagDense);
  EXPECT_EQ(h.nnz, 5u);
  auto v = receive<V, I>(*buf, id, d.range);
  EXPECT_TRUE(inside(v, *buf));
  EXPECT_TRUE(v.dense);
  ASSERT_EQ(v.nnz, 5u);
  EXPECT_EQ(std::vector<V>(v.val, v.val + 5), vec(d.val));
}

TYPED_TEST(WireTyped, SparseSentDenseWhenNotSmaller) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  const uint64_t len = 30;
  const uint64_t t = dense_threshold<V, I>(len);
  const auto id = identity<V, I>(len);
  std::vector<uint64_t> idx;
  std::vector<double> val;
  for (uint64_t k = 0; k < t; ++k) idx.push_back(k * len / t), val.push_back(double(k + 1));
  auto s = sparse<V, I>({0, len}, idx, val);
  auto buf = sparcl::encode(id, kStep, s.view());
  const WireHeader h = sparcl::read_header(*buf);
  EXPECT_EQ(h.flags, sparcl::kFlagDense) << "t=" << t;
  EXPECT_EQ(h.nnz, len);
  EXPECT_EQ(buf->size(), sizeof(WireHeader) + len * sizeof(V));
  // ... and is never larger than the sparse form would have been.
  EXPECT_LE(buf->size(), sizeof(WireHeader) + sparcl::pad8(t * sizeof(I)) + t * sizeof(V));
  auto v = receive<V, I>(*buf, id, s.range);
  ASSERT_TRUE(v.dense);
  EXPECT_EQ(std::vector<V>(v.val, v.val + len), densify(s));

  // One entry fewer stays sparse.
  auto s2 = sparse<V, I>({0, len}, std::vector<uint64_t>(idx.begin(), idx.end() - 1),
                         std::vector<double>(val.begin(), val.end() - 1));
  auto buf2 = sparcl::encode(id, kStep, s2.view());
  EXPECT_EQ(sparcl::read_header(*buf2).flags, 0);
  auto v2 = receive<V, I>(*buf2, id, s2.range);
  EXPECT_FALSE(v2.dense);
  EXPECT_EQ(v2.nnz, t - 1);
}

// A sparse message over [10, 40) of dim 64 with indices 11, 13, 20, 39.
template <class V, class I>
sparcl::SharedBuffer sample_sparse(const sparcl::Identity& id) {
  auto s = sparse<V, I>({10, 40}, {11, 13, 20, 39}, {1, 2, 3, 4});
  return sparcl::encode(id, kStep, s.view());
}

TYPED_TEST(WireTyped, TruncatedMessagesAreCorrupt) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  const auto id = identity<V, I>(64);
  auto sp = sample_sparse<V, I>(id);
  auto dn = sparcl::encode(id, kStep, dense<V, I>({10, 16}, {1, 2, 3, 4, 5, 6}).view());
  const std::pair<sparcl::SharedBuffer, Range> messages[] = {{sp, Range{10, 40}}, {dn, Range{10, 16}}};
  for (const auto& m : messages) {
    const sparcl::SharedBuffer& full = m.first;
    const Range r = m.second;
    ASSERT_NO_THROW((receive<V, I>(*full, id, r)));
    for (size_t n = 0; n < full->size(); ++n) {
      Buffer b = copy(*full, n);
      const std::string msg = expect_error([&] { receive<V, I>(b, id, r); }, SPARCL_ERR_CORRUPT);
      if (::testing::Test::HasFailure()) FAIL() << "length " << n << " of " << full->size() << ": " << msg;
    }
    // Trailing bytes are corrupt too.
    for (size_t extra : {1, 7, 8, 64}) {
      Buffer b = copy(*full, full->size() + extra);
      expect_error([&] { receive<V, I>(b, id, r); }, SPARCL_ERR_CORRUPT);
    }
  }
}

TYPED_TEST(WireTyped, BadMagicVersionAndFlags) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  const auto id = identity<V, I>(64);
  auto good = sample_sparse<V, I>(id);

  for (int byte = 0; byte < 4; ++byte) {
    Buffer b = copy(*good, good->size());
    b.data()[byte] ^= 0x20;
    const std::string m = expect_error([&] { sparcl::read_header(b); }, SPARCL_ERR_CORRUPT);
    EXPECT_NE(m.find("magic"), std::string::npos) << m;
  }
  {
    Buffer b = copy(*good, good->size());
    WireHeader h = header_of(b);
    h.version = 4;
    set_header(b, h);
    const std::string m = expect_error([&] { sparcl::read_header(b); }, SPARCL_ERR_MISMATCH);
    EXPECT_NE(m.find("version 4"), std::string::npos) << m;
    h.version = 2;  // before the choice digest
    set_header(b, h);
    expect_error([&] { sparcl::read_header(b); }, SPARCL_ERR_MISMATCH);
    h.version = 1;  // sparcl 0.1's format
    set_header(b, h);
    expect_error([&] { sparcl::read_header(b); }, SPARCL_ERR_MISMATCH);
    h.version = 0;
    set_header(b, h);
    expect_error([&] { sparcl::read_header(b); }, SPARCL_ERR_MISMATCH);
  }
  for (uint8_t flag : {8, 16, 32, 64, 128, 0xff, 0xd}) {
    Buffer b = copy(*good, good->size());
    WireHeader h = header_of(b);
    h.flags = flag;
    set_header(b, h);
    const std::string m = expect_error([&] { sparcl::read_header(b); }, SPARCL_ERR_CORRUPT);
    EXPECT_NE(m.find("flags"), std::string::npos) << m;
  }
}

TYPED_TEST(WireTyped, BadEntryCounts) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  const auto id = identity<V, I>(64);
  const Range r{10, 40};
  // Sparse nnz > length, with a message size that matches that nnz.
  {
    std::vector<uint64_t> idx;
    std::vector<double> val;
    for (uint64_t k = 0; k < 31; ++k) idx.push_back(10 + k), val.push_back(1);
    sparcl::Stream<V, I> s = sparse<V, I>({10, 41}, idx, val);  // 31 entries
    WireHeader h = sparcl::make_header(id, kStep);
    h.begin = 10;
    h.end = 40;
    h.nnz = 31;
    Buffer b(sizeof h + sparcl::pad8(31 * sizeof(I)) + 31 * sizeof(V));
    std::memset(b.data(), 0, b.size());
    set_header(b, h);
    std::memcpy(b.data() + sizeof h, s.idx.data(), 31 * sizeof(I));
    const std::string m = expect_error([&] { receive<V, I>(b, id, r); }, SPARCL_ERR_CORRUPT);
    EXPECT_NE(m.find("rank 3"), std::string::npos) << m;
  }
  // Dense with nnz != length.
  for (uint64_t nnz : {0, 29, 31, 1000}) {
    WireHeader h = sparcl::make_header(id, kStep);
    h.flags = sparcl::kFlagDense;
    h.begin = 10;
    h.end = 40;
    h.nnz = nnz;
    Buffer b(sizeof h + 30 * sizeof(V));
    std::memset(b.data(), 0, b.size());
    set_header(b, h);
    expect_error([&] { receive<V, I>(b, id, r); }, SPARCL_ERR_CORRUPT);
  }
  // Huge sparse nnz on a short message.
  {
    auto good = sample_sparse<V, I>(id);
    for (uint64_t nnz : {uint64_t(5), uint64_t(1) << 40, ~uint64_t(0), ~uint64_t(0) / sizeof(I) + 1}) {
      Buffer b = copy(*good, good->size());
      WireHeader h = header_of(b);
      h.nnz = nnz;
      set_header(b, h);
      expect_error([&] { receive<V, I>(b, id, r); }, SPARCL_ERR_CORRUPT);
    }
  }
}

TYPED_TEST(WireTyped, BadIndices) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  const auto id = identity<V, I>(64);
  const Range r{10, 40};
  auto good = sample_sparse<V, I>(id);  // indices 11, 13, 20, 39
  auto with_index = [&](size_t k, uint64_t value) {
    Buffer b = copy(*good, good->size());
    const I ix = I(value);
    std::memcpy(b.data() + sizeof(WireHeader) + k * sizeof(I), &ix, sizeof ix);
    return b;
  };
  ASSERT_NO_THROW((receive<V, I>(*good, id, r)));
  struct Case {
    size_t k;
    uint64_t value;
    const char* what;
  };
  for (const Case& c : {Case{1, 11, "duplicate"}, Case{2, 13, "duplicate"}, Case{1, 10, "out of order"},
                        Case{3, 12, "out of order"}, Case{3, 40, "out of range (== end)"},
                        Case{3, 63, "out of range (< dim)"}, Case{3, 64, "out of range (== dim)"},
                        Case{0, 9, "below begin"}, Case{0, 0, "below begin"},
                        Case{3, uint64_t(I(~uint64_t(0))), "max index"}}) {
    Buffer b = with_index(c.k, c.value);
    const std::string m = expect_error([&] { receive<V, I>(b, id, r); }, SPARCL_ERR_CORRUPT);
    EXPECT_NE(m.find("index"), std::string::npos) << c.what << ": " << m;
  }
  // Still increasing after a change: accepted.
  EXPECT_NO_THROW((receive<V, I>(with_index(3, 21), id, r)));
  EXPECT_NO_THROW((receive<V, I>(with_index(0, 10), id, r)));
}

TYPED_TEST(WireTyped, WrongRangeIsMismatch) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  const auto id = identity<V, I>(64);
  auto good = sample_sparse<V, I>(id);
  const WireHeader h = sparcl::read_header(*good);
  for (Range r : {Range{10, 41}, Range{9, 40}, Range{0, 64}, Range{40, 64}, Range{10, 10}}) {
    const std::string m =
        expect_error([&] { sparcl::decode<V, I>(*good, h, r, kPeer); }, SPARCL_ERR_MISMATCH);
    EXPECT_NE(m.find("range"), std::string::npos) << m;
    EXPECT_NE(m.find("[10, 40)"), std::string::npos) << m;
    EXPECT_NE(m.find("rank 3"), std::string::npos) << m;
  }
}

TYPED_TEST(WireTyped, IdentityMismatchNamesTheField) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  const auto id = identity<V, I>(64);
  auto good = sample_sparse<V, I>(id);
  const WireHeader h = sparcl::read_header(*good);
  EXPECT_NO_THROW(sparcl::check_identity(h, id, kStep, kPeer));

  struct Case {
    const char* field;
    void (*change)(sparcl::Identity&);
  };
  const Case cases[] = {
      {"communicator id", [](sparcl::Identity& i) { i.comm_id += 1; }},
      {"sequence number", [](sparcl::Identity& i) { i.seq += 1; }},
      {"allgather", [](sparcl::Identity& i) { i.kind = sparcl::Kind::Allgather; }},
      {"algorithm", [](sparcl::Identity& i) { i.algorithm = SPARCL_ALGO_SPLIT_ALLGATHER; }},
      {"dim", [](sparcl::Identity& i) { i.dim = 65; }},
      {"value type", [](sparcl::Identity& i) { i.value_type = i.value_type == 1 ? 2 : 1; }},
      {"index width", [](sparcl::Identity& i) { i.index_width = i.index_width == 4 ? 8 : 4; }},
      {"encoding", [](sparcl::Identity& i) { i.encoding = sparcl::Encoding(1); }},
      {"bucket size", [](sparcl::Identity& i) { i.bucket = 512; }},
      {"checksums", [](sparcl::Identity& i) { i.checksum = true; }},
  };
  for (const Case& c : cases) {
    sparcl::Identity other = id;
    c.change(other);
    const std::string m = expect_error([&] { sparcl::check_identity(h, other, kStep, kPeer); }, SPARCL_ERR_MISMATCH);
    EXPECT_NE(m.find(c.field), std::string::npos) << c.field << ": " << m;
    EXPECT_NE(m.find("rank 3"), std::string::npos) << m;
  }
  const std::string m = expect_error([&] { sparcl::check_identity(h, id, kStep + 1, kPeer); }, SPARCL_ERR_MISMATCH);
  EXPECT_NE(m.find("step"), std::string::npos) << m;
  EXPECT_NE(m.find(std::to_string(kStep)), std::string::npos) << m;

  // Both values are in the message.
  sparcl::Identity other = id;
  other.dim = 12345;
  const std::string md = expect_error([&] { sparcl::check_identity(h, other, kStep, kPeer); }, SPARCL_ERR_MISMATCH);
  EXPECT_NE(md.find("64"), std::string::npos) << md;
  EXPECT_NE(md.find("12345"), std::string::npos) << md;
}

TEST(Wire, AbortRoundTrip) {
  const auto id = identity<float, uint32_t>(100);
  const std::string text = "rank 2: index 7 at position 3 is >= dim 5";
  auto buf = sparcl::encode_abort(id, SPARCL_ERR_INVALID_ARG, text);
  ASSERT_EQ(buf->size(), sizeof(WireHeader) + text.size());
  const WireHeader h = sparcl::read_header(*buf);
  EXPECT_EQ(h.flags, sparcl::kFlagAbort);
  EXPECT_EQ(h.status, SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(h.nnz, text.size());
  EXPECT_EQ(h.step, 0);
  EXPECT_NO_THROW(sparcl::check_identity(h, id, 0, kPeer));
  EXPECT_EQ(sparcl::abort_text(*buf, h), text);

  auto empty = sparcl::encode_abort(id, SPARCL_ERR_TIMEOUT, "");
  const WireHeader he = sparcl::read_header(*empty);
  EXPECT_EQ(he.status, SPARCL_ERR_TIMEOUT);
  EXPECT_EQ(sparcl::abort_text(*empty, he), "");

  // Text with embedded NUL and non-ASCII bytes survives.
  const std::string odd("a\0b\xff", 4);
  auto ob = sparcl::encode_abort(id, SPARCL_ERR_CORRUPT, odd);
  EXPECT_EQ(sparcl::abort_text(*ob, sparcl::read_header(*ob)), odd);

  // Truncated or padded abort messages: header errors, or a malformed text.
  for (size_t n = 0; n < buf->size(); ++n) {
    Buffer b = copy(*buf, n);
    if (n < sizeof(WireHeader)) {
      expect_error([&] { sparcl::read_header(b); }, SPARCL_ERR_CORRUPT);
    } else {
      EXPECT_EQ(sparcl::abort_text(b, sparcl::read_header(b)), "(malformed abort message)") << n;
    }
  }
  Buffer longer = copy(*buf, buf->size() + 3);
  EXPECT_EQ(sparcl::abort_text(longer, sparcl::read_header(longer)), "(malformed abort message)");
}

// Every single-bit flip, and random byte overwrites, of valid messages: the
// receiver either accepts a message whose view lies inside it, or throws
// sparcl::Error. Never a crash, never another exception.
template <class V, class I>
void fuzz_message(const Buffer& good, const sparcl::Identity& id, Range r) {
  auto attempt = [&](const Buffer& b) {
    try {
      const WireHeader h = sparcl::read_header(b);
      if (h.flags & sparcl::kFlagAbort) {
        (void)sparcl::abort_text(b, h);
        return;
      }
      if (h.flags & sparcl::kFlagChecksum) sparcl::verify_checksum(b, kPeer);
      sparcl::check_identity(h, id, kStep, kPeer);
      const sparcl::Decoded<V, I> d = sparcl::decode<V, I>(b, h, r, kPeer);
      const auto& v = d.view;
      if (!d.stream) {
        ASSERT_TRUE(inside(v, b));
      }
      V sum = 0;
      for (size_t k = 0; k < v.nnz; ++k) sum += v.val[k];
      (void)sum;
      if (!v.dense)
        for (size_t k = 0; k < v.nnz; ++k) {
          ASSERT_GE(uint64_t(v.idx[k]), r.begin);
          ASSERT_LT(uint64_t(v.idx[k]), r.end);
        }
    } catch (const sparcl::Error& e) {
      ASSERT_TRUE(e.status() == SPARCL_ERR_CORRUPT || e.status() == SPARCL_ERR_MISMATCH) << e.what();
    }
  };
  for (size_t pos = 0; pos < good.size(); ++pos)
    for (int bit = 0; bit < 8; ++bit) {
      Buffer b = copy(good, good.size());
      b.data()[pos] ^= uint8_t(1u << bit);
      attempt(b);
      if (::testing::Test::HasFatalFailure()) FAIL() << "byte " << pos << " bit " << bit;
    }
  std::mt19937 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    Buffer b = copy(good, good.size());
    const int flips = 1 + int(rng() % 4);
    for (int f = 0; f < flips; ++f) b.data()[rng() % b.size()] = uint8_t(rng());
    attempt(b);
    if (::testing::Test::HasFatalFailure()) FAIL() << "trial " << trial;
  }
}

TYPED_TEST(WireTyped, RandomCorruptionNeverCrashes) {
  using V = typename TypeParam::V;
  using I = typename TypeParam::I;
  const auto id = identity<V, I>(64);
  fuzz_message<V, I>(*sample_sparse<V, I>(id), id, Range{10, 40});
  auto d = dense<V, I>({10, 16}, {1, 2, 3, 4, 5, 6});
  fuzz_message<V, I>(*sparcl::encode(id, kStep, d.view()), id, Range{10, 16});
  fuzz_message<V, I>(*sparcl::encode_abort(id, SPARCL_ERR_TIMEOUT, "timed out"), id, Range{10, 16});
}

// A header whose payload size does not fit in 64 bits must not pass the size
// check by wrapping around: dim = 2^62 float values (u64 indices) claim
// 2^62 * 4 = 2^64 bytes, which is 0 modulo 2^64, so a bare 64-byte header
// would be accepted as a dense message of 2^62 values lying beyond its end.
TEST(Wire, PayloadSizeOverflowIsCorrupt) {
  {
    const uint64_t len = uint64_t(1) << 62;
    const auto id = identity<float, uint64_t>(len);
    WireHeader h = sparcl::make_header(id, kStep);
    h.flags = sparcl::kFlagDense;
    h.begin = 0;
    h.end = len;
    h.nnz = len;
    Buffer b(sizeof h);
    set_header(b, h);
    try {
      auto v = receive<float, uint64_t>(b, id, Range{0, len});
      ADD_FAILURE() << "accepted a 64-byte message as " << v.nnz << " dense floats";
    } catch (const sparcl::Error& e) {
      EXPECT_EQ(e.status(), SPARCL_ERR_CORRUPT) << e.what();
    }
  }
  {
    const uint64_t len = uint64_t(1) << 61;  // 2^61 doubles = 2^64 bytes
    const auto id = identity<double, uint64_t>(len);
    WireHeader h = sparcl::make_header(id, kStep);
    h.flags = sparcl::kFlagDense;
    h.begin = 0;
    h.end = len;
    h.nnz = len;
    Buffer b(sizeof h);
    set_header(b, h);
    try {
      auto v = receive<double, uint64_t>(b, id, Range{0, len});
      ADD_FAILURE() << "accepted a 64-byte message as " << v.nnz << " dense doubles";
    } catch (const sparcl::Error& e) {
      EXPECT_EQ(e.status(), SPARCL_ERR_CORRUPT) << e.what();
    }
  }
}

TEST(Wire, Helpers) {
  EXPECT_EQ(sparcl::pad8(0), 0u);
  EXPECT_EQ(sparcl::pad8(1), 8u);
  EXPECT_EQ(sparcl::pad8(8), 8u);
  EXPECT_EQ(sparcl::pad8(12), 16u);
  const sparcl::Identity raw;
  EXPECT_EQ(sparcl::payload_bytes<float>(raw, false, 3, 100, 4), 16u + 12u);
  EXPECT_EQ(sparcl::payload_bytes<double>(raw, false, 3, 100, 8), 24u + 24u);
  EXPECT_EQ(sparcl::payload_bytes<double>(raw, true, 3, 100, 4), 800u);
  EXPECT_EQ(sparcl::value_type_code<float>(), SPARCL_FLOAT32);
  EXPECT_EQ(sparcl::value_type_code<double>(), SPARCL_FLOAT64);

  const auto id = identity<double, uint64_t>(77);
  const WireHeader h = sparcl::make_header(id, 9);
  EXPECT_EQ(h.magic, sparcl::kWireMagic);
  EXPECT_EQ(h.step, 9);
  EXPECT_EQ(h.flags, 0);
  EXPECT_EQ(h.nnz, 0u);
  EXPECT_EQ(h.dim, 77u);
  EXPECT_EQ(h.index_width, 8);
  EXPECT_EQ(h.value_type, SPARCL_FLOAT64);

  Buffer empty;
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_EQ(empty.data(), nullptr);
  Buffer b(33);
  EXPECT_EQ(b.size(), 33u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 16, 0u);
}

}  // namespace
