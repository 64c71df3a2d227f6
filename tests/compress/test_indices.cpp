// SPDX-License-Identifier: BSD-3-Clause
// Index coding (ml/compress/codec.*): delta-varint, bitmap and full-range
// encodings round-trip on random and adversarial index sets, the smallest is
// chosen, and the decoder rejects every malformed input with
// SPARCL_ERR_CORRUPT (truncations, single-byte mutations, crafted cases)
// without reading out of bounds.
#include <gtest/gtest.h>

#include <set>

#include "src/codec/codec.hpp"
#include "test_util.hpp"

namespace {

using namespace ctest;
using cz::IndexCoding;

struct Range {
  uint64_t begin, end;
};

// About `count` sorted distinct indices in [begin, end).
std::vector<uint32_t> random_indices(Range r, size_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const uint64_t len = r.end - r.begin;
  count = size_t(std::min<uint64_t>(count, len));
  std::vector<uint32_t> v;
  if (count * 2 > len) {  // dense: coin per index
    std::bernoulli_distribution coin(double(count) / double(len));
    for (uint64_t i = r.begin; i < r.end; ++i)
      if (coin(rng)) v.push_back(uint32_t(i));
    return v;
  }
  std::set<uint64_t> s;
  std::uniform_int_distribution<uint64_t> pick(r.begin, r.end - 1);
  while (s.size() < count) s.insert(pick(rng));
  for (uint64_t i : s) v.push_back(uint32_t(i));
  return v;
}

std::vector<uint8_t> encode(const std::vector<uint32_t>& idx, Range r) {
  std::vector<uint8_t> out;
  const size_t bytes = cz::encode_indices(idx.data(), idx.size(), r.begin, r.end, out);
  EXPECT_EQ(bytes, out.size());
  return out;
}

sparcl_status_t decode(const std::vector<uint8_t>& bytes, size_t n, Range r, std::vector<uint32_t>& out) {
  out.assign(n, 0);
  return status_of([&] { cz::decode_indices(bytes.data(), bytes.size(), n, r.begin, r.end, out.data()); });
}

void expect_round_trip(const std::vector<uint32_t>& idx, Range r) {
  const auto bytes = encode(idx, r);
  std::vector<uint32_t> back;
  ASSERT_EQ(decode(bytes, idx.size(), r, back), SPARCL_SUCCESS);
  ASSERT_EQ(back, idx);
  // The chosen coding is the smallest.
  const uint64_t len = r.end - r.begin;
  size_t varint = 1;
  for (size_t i = 0; i < idx.size(); ++i) {
    uint64_t gap = i == 0 ? idx[0] - r.begin : uint64_t(idx[i]) - idx[i - 1] - 1;
    do {
      ++varint;
      gap >>= 7;
    } while (gap);
  }
  const size_t bitmap = 1 + size_t((len + 7) / 8);
  const size_t expected = idx.size() == len ? 1 : std::min(varint, bitmap);
  EXPECT_EQ(bytes.size(), expected);
  EXPECT_EQ(bytes[0], uint8_t(idx.size() == len ? IndexCoding::Full
                                                : (bitmap < varint ? IndexCoding::Bitmap : IndexCoding::Varint)));
}

TEST(Indices, RoundTripRandom) {
  const Range ranges[] = {{0, 1}, {0, 1000}, {5, 1000}, {0, 1 << 20}, {(uint64_t(1) << 32) - 5000, uint64_t(1) << 32},
                          {123456, 123456 + 77777}};
  for (Range r : ranges) {
    const uint64_t len = r.end - r.begin;
    for (double density : {0.0, 0.0001, 0.01, 0.05, 0.1, 0.124, 0.126, 0.2, 0.5, 0.99, 1.0}) {
      SCOPED_TRACE("range [" + std::to_string(r.begin) + ", " + std::to_string(r.end) + ") density " +
                   std::to_string(density));
      const auto idx = random_indices(r, size_t(std::llround(density * double(len))), uint64_t(density * 1e6) + len);
      expect_round_trip(idx, r);
    }
  }
}

TEST(Indices, AdversarialSets) {
  const uint64_t top = uint64_t(1) << 32;
  // Empty; one index at either end; the largest gaps; every varint length.
  expect_round_trip({}, {0, 0});
  expect_round_trip({}, {0, top});
  expect_round_trip({0}, {0, top});
  expect_round_trip({uint32_t(top - 1)}, {0, top});
  expect_round_trip({0, uint32_t(top - 1)}, {0, top});
  expect_round_trip({uint32_t(top - 2), uint32_t(top - 1)}, {top - 2, top});
  std::vector<uint32_t> lengths;
  uint64_t at = 0;
  for (uint64_t gap : {0ull, 127ull, 128ull, 16383ull, 16384ull, 2097151ull, 2097152ull, 268435455ull, 268435456ull}) {
    at += gap;
    lengths.push_back(uint32_t(at));
    ++at;
  }
  expect_round_trip(lengths, {0, top});
  // Full ranges, and all but one.
  std::vector<uint32_t> full(1000);
  std::iota(full.begin(), full.end(), 77u);
  expect_round_trip(full, {77, 1077});
  full.erase(full.begin() + 500);
  expect_round_trip(full, {77, 1077});
  // Evenly spaced every 8 (bitmap and varint sizes close), every 9.
  for (uint32_t stride : {7u, 8u, 9u, 127u, 128u}) {
    std::vector<uint32_t> v;
    for (uint32_t i = 3; i < 100000; i += stride) v.push_back(i);
    expect_round_trip(v, {3, 100000});
  }
}

TEST(Indices, EncoderRejectsInvalidInput) {
  std::vector<uint8_t> out;
  const std::vector<uint32_t> dup = {1, 5, 5, 9};
  const std::vector<uint32_t> down = {1, 5, 4};
  const std::vector<uint32_t> ok = {1, 5, 9};
  EXPECT_EQ(status_of([&] { cz::encode_indices(dup.data(), dup.size(), 0, 10, out); }), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(status_of([&] { cz::encode_indices(down.data(), down.size(), 0, 10, out); }), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(status_of([&] { cz::encode_indices(ok.data(), ok.size(), 2, 10, out); }), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(status_of([&] { cz::encode_indices(ok.data(), ok.size(), 0, 9, out); }), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(status_of([&] { cz::encode_indices(ok.data(), ok.size(), 0, (uint64_t(1) << 32) + 1, out); }),
            SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(status_of([&] { cz::encode_indices(ok.data(), ok.size(), 10, 5, out); }), SPARCL_ERR_INVALID_ARG);
}

TEST(Indices, DecoderRejectsCraftedInput) {
  std::vector<uint32_t> out;
  const Range r{0, 1000};
  auto st = [&](std::vector<uint8_t> bytes, size_t n, Range rr = {0, 1000}) { return decode(bytes, n, rr, out); };
  EXPECT_EQ(st({}, 0), SPARCL_ERR_CORRUPT);                      // no tag
  EXPECT_EQ(st({3}, 0), SPARCL_ERR_CORRUPT);                     // unknown tag
  EXPECT_EQ(st({0}, 0), SPARCL_SUCCESS);                         // empty varint
  EXPECT_EQ(st({0, 5}, 0), SPARCL_ERR_CORRUPT);                  // trailing byte
  EXPECT_EQ(st({0, 5}, 2), SPARCL_ERR_CORRUPT);                  // too few varints
  EXPECT_EQ(st({0, 0x85}, 1), SPARCL_ERR_CORRUPT);               // varint runs past the end
  EXPECT_EQ(st({0, 0x85, 0x00}, 1), SPARCL_ERR_CORRUPT);         // over-long
  EXPECT_EQ(st({0, 0x80, 0x80, 0x80, 0x80, 0x10}, 1, {0, uint64_t(1) << 32}), SPARCL_ERR_CORRUPT);  // > 32 bits
  EXPECT_EQ(st({0, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F}, 1, {0, uint64_t(1) << 32}), SPARCL_SUCCESS);      // 2^32 - 1
  EXPECT_EQ(st({0, 0xE8, 0x07}, 1), SPARCL_ERR_CORRUPT);         // 1000: outside the range
  EXPECT_EQ(st({0, 0xE7, 0x07}, 1), SPARCL_SUCCESS);             // 999
  EXPECT_EQ(st({0, 0xE7, 0x07, 0}, 2), SPARCL_ERR_CORRUPT);      // 999 then 1000
  EXPECT_EQ(st({2}, 1000), SPARCL_SUCCESS);                      // full
  EXPECT_EQ(st({2}, 999), SPARCL_ERR_CORRUPT);                   // full with the wrong count
  EXPECT_EQ(st({2, 0}, 1000), SPARCL_ERR_CORRUPT);               // full with a payload
  EXPECT_EQ(st({0}, 1001), SPARCL_ERR_CORRUPT);                  // more indices than the range
  // Bitmaps of a range of 12: 2 bytes, bits 12..15 must be 0.
  EXPECT_EQ(st({1, 0x05, 0x08}, 3, {0, 12}), SPARCL_SUCCESS);
  EXPECT_EQ(st({1, 0x05, 0x18}, 3, {0, 12}), SPARCL_ERR_CORRUPT);  // padding bit
  EXPECT_EQ(st({1, 0x05, 0x08}, 2, {0, 12}), SPARCL_ERR_CORRUPT);  // count mismatch (more)
  EXPECT_EQ(st({1, 0x05, 0x08}, 4, {0, 12}), SPARCL_ERR_CORRUPT);  // count mismatch (fewer)
  EXPECT_EQ(st({1, 0x05}, 2, {0, 12}), SPARCL_ERR_CORRUPT);        // truncated
  EXPECT_EQ(st({1, 0x05, 0x08, 0x00}, 3, {0, 12}), SPARCL_ERR_CORRUPT);  // too long
  // A bitmap word with more bits than n must not overrun `out`.
  std::vector<uint8_t> big(1 + 16, 0xFF);
  big[0] = 1;
  EXPECT_EQ(st(big, 3, {0, 128}), SPARCL_ERR_CORRUPT);
  // Invalid ranges are caller errors.
  EXPECT_EQ(st({0}, 0, {5, 4}), SPARCL_ERR_INVALID_ARG);
  (void)r;
}

// Every truncation of a valid encoding, and every single-byte mutation
// (each byte set to several values), either fails with CORRUPT or decodes
// to a valid index set; never anything else. Run under ASan to check the
// bounds as well.
TEST(Indices, DecoderSurvivesTruncationAndMutation) {
  struct Sample {
    std::vector<uint32_t> idx;
    Range r;
  };
  std::vector<Sample> samples;
  samples.push_back({random_indices({0, 1000}, 30, 1), {0, 1000}});        // varint
  samples.push_back({random_indices({100, 400}, 150, 2), {100, 400}});     // bitmap
  samples.push_back({random_indices({0, uint64_t(1) << 32}, 40, 3), {0, uint64_t(1) << 32}});  // long varints
  for (const auto& s : samples) {
    const auto bytes = encode(s.idx, s.r);
    std::vector<uint32_t> out;
    for (size_t cut = 0; cut < bytes.size(); ++cut) {
      std::vector<uint8_t> t(bytes.begin(), bytes.begin() + long(cut));
      EXPECT_EQ(decode(t, s.idx.size(), s.r, out), SPARCL_ERR_CORRUPT) << "truncated to " << cut;
    }
    for (size_t pos = 0; pos < bytes.size(); ++pos) {
      for (unsigned v : {0x00u, 0x01u, 0x02u, 0x7Fu, 0x80u, 0xFEu, 0xFFu, unsigned(bytes[pos] ^ 0x10u)}) {
        auto m = bytes;
        m[pos] = uint8_t(v);
        const sparcl_status_t st = decode(m, s.idx.size(), s.r, out);
        ASSERT_TRUE(st == SPARCL_SUCCESS || st == SPARCL_ERR_CORRUPT);
        if (st == SPARCL_SUCCESS) {
          for (size_t i = 0; i < out.size(); ++i) {
            ASSERT_GE(out[i], s.r.begin);
            ASSERT_LT(out[i], s.r.end);
            if (i) {
              ASSERT_GT(out[i], out[i - 1]);
            }
          }
        }
      }
    }
  }
}

TEST(Indices, PlanAndWriteIntoPreallocatedBuffer) {
  const auto idx = random_indices({0, 50000}, 400, 9);
  const cz::IndexPlan plan = cz::plan_indices(idx.data(), idx.size(), 0, 50000);
  std::vector<uint8_t> buf(plan.bytes + 2, 0xAB);
  cz::write_indices(plan, idx.data(), idx.size(), 0, 50000, buf.data() + 1);
  EXPECT_EQ(buf[0], 0xAB);  // nothing outside [out, out + plan.bytes)
  EXPECT_EQ(buf[plan.bytes + 1], 0xAB);
  std::vector<uint32_t> back(idx.size());
  cz::decode_indices(buf.data() + 1, plan.bytes, idx.size(), 0, 50000, back.data());
  EXPECT_EQ(back, idx);
}

}  // namespace
