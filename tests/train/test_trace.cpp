// SPDX-License-Identifier: BSD-3-Clause
// Gradient traces (ml/train/trace.hpp): a written trace reads back as
// written; damaged traces are rejected with the offset and the reason.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "ml/train/trace.hpp"

using namespace sparcl::train;

namespace {

std::string temp_path(const char* name) { return ::testing::TempDir() + name; }

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::vector<uint8_t> b;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return b;
  int c;
  while ((c = std::fgetc(f)) != EOF) b.push_back(uint8_t(c));
  std::fclose(f);
  return b;
}

// A trace of 3 layers and 4 steps with random selections (one layer skipped at step 2).
Trace sample_trace(const std::string& path) {
  Trace t;
  t.rank = 2;
  t.ranks = 4;
  t.dims = {100000, 17, uint64_t(UINT32_MAX)};
  std::mt19937_64 rng(7);
  TraceWriter w(path, t.rank, t.ranks, t.dims);
  for (uint32_t step = 0; step < 4; ++step)
    for (uint32_t layer = 0; layer < 3; ++layer) {
      if (step == 2 && layer == 1) continue;
      TraceRecord r{step, layer, {}};
      const uint64_t dim = t.dims[layer];
      for (uint64_t i = rng() % 5; i < dim && r.indices.size() < 300; i += 1 + rng() % (dim / 50 + 1))
        r.indices.push_back(uint32_t(i));
      if (layer == 2) r.indices.push_back(UINT32_MAX - 1);  // the largest index a layer can have
      w.add(step, layer, r.indices.data(), r.indices.size());
      t.records.push_back(r);
    }
  w.close();
  return t;
}

void expect_rejected(const std::vector<uint8_t>& bytes, const std::string& offset, const std::string& reason) {
  SCOPED_TRACE(reason);
  try {
    parse_trace(bytes, "t");
    ADD_FAILURE() << "accepted a damaged trace (" << reason << ")";
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(offset.empty() ? std::string("offset ") : "offset " + offset + ":"), std::string::npos) << m;
    EXPECT_NE(m.find(reason), std::string::npos) << m;
  }
}

}  // namespace

TEST(Trace, RoundTrip) {
  const std::string path = temp_path("roundtrip.trace");
  const Trace want = sample_trace(path);
  const Trace got = read_trace(path);
  EXPECT_EQ(got.rank, want.rank);
  EXPECT_EQ(got.ranks, want.ranks);
  EXPECT_EQ(got.dims, want.dims);
  ASSERT_EQ(got.records.size(), want.records.size());
  for (size_t j = 0; j < want.records.size(); ++j) {
    EXPECT_EQ(got.records[j].step, want.records[j].step);
    EXPECT_EQ(got.records[j].layer, want.records[j].layer);
    EXPECT_EQ(got.records[j].indices, want.records[j].indices);
  }
  std::remove(path.c_str());
}

TEST(Trace, WriterRejectsBadRecords) {
  const std::string path = temp_path("bad.trace");
  TraceWriter w(path, 0, 1, {10});
  const uint32_t unsorted[] = {3, 2}, too_large[] = {10};
  EXPECT_THROW(w.add(0, 0, unsorted, 2), std::invalid_argument);
  EXPECT_THROW(w.add(0, 0, too_large, 1), std::invalid_argument);
  EXPECT_THROW(w.add(0, 1, nullptr, 0), std::invalid_argument);
  w.add(3, 0, nullptr, 0);
  EXPECT_THROW(w.add(2, 0, nullptr, 0), std::invalid_argument);
  w.close();
  EXPECT_THROW(TraceWriter(path, 1, 1, {10}), std::invalid_argument);
  EXPECT_THROW(TraceWriter(path, 0, 1, {0}), std::invalid_argument);
  std::remove(path.c_str());
}

TEST(Trace, DamagedTracesAreRejected) {
  const std::string path = temp_path("damaged.trace");
  sample_trace(path);
  const std::vector<uint8_t> good = file_bytes(path);
  std::remove(path.c_str());
  ASSERT_GT(good.size(), 100u);
  const size_t header = 8 + 16 + 3 * 8;
  auto with = [&](size_t at, uint8_t v) {
    std::vector<uint8_t> b = good;
    b[at] = v;
    return b;
  };
  expect_rejected(with(0, 'X'), "0", "not a sparcl trace");
  expect_rejected(with(8, 2), "8", "unknown version");
  expect_rejected(with(12, 9), "12", "rank not below ranks");    // rank 9 of 4
  expect_rejected(with(20, 0), "20", "no layers");
  expect_rejected(with(24 + 8 + 7, 0x80), "32", "layer dim outside");  // the second dim: 2^63 + 17
  expect_rejected(with(header + 4, 3), std::to_string(header + 4), "layer 3 of 3");
  expect_rejected(with(header + 11, 0xFF), std::to_string(header + 8), "more indices than the layer");
  // The first record's first index (a one-byte gap) made 100000, the layer's dim.
  std::vector<uint8_t> b = good;
  b.erase(b.begin() + ptrdiff_t(header + 12));
  const uint8_t dim_varint[] = {0xA0, 0x8D, 0x06};
  b.insert(b.begin() + ptrdiff_t(header + 12), dim_varint, dim_varint + 3);
  expect_rejected(b, std::to_string(header + 12), "index 100000 >= the layer's dim");
  // A gap longer than 5 bytes, and one past 32 bits.
  std::vector<uint8_t> long_gap = good;
  long_gap.erase(long_gap.begin() + ptrdiff_t(header + 12));
  const uint8_t six[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, big[] = {0xFF, 0xFF, 0xFF, 0xFF, 0x1F};
  std::vector<uint8_t> too_big = long_gap;
  long_gap.insert(long_gap.begin() + ptrdiff_t(header + 12), six, six + 6);
  too_big.insert(too_big.begin() + ptrdiff_t(header + 12), big, big + 5);
  expect_rejected(long_gap, std::to_string(header + 12), "longer than 5 bytes");
  expect_rejected(too_big, std::to_string(header + 12), "does not fit 32 bits");
  // Every truncation inside the header or a record is rejected; a cut at a
  // record's end leaves a shorter valid trace.
  size_t rejected = 0, accepted = 0;
  for (size_t n = 0; n < good.size(); ++n) {
    try {
      const Trace t = parse_trace(std::vector<uint8_t>(good.begin(), good.begin() + ptrdiff_t(n)), "t");
      ++accepted;
      EXPECT_GE(n, header);
      EXPECT_LT(t.records.size(), 11u);
    } catch (const std::runtime_error& e) {
      ++rejected;
      EXPECT_NE(std::string(e.what()).find("offset "), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(accepted, 11u);  // the header alone and after each of the first 10 of 11 records
  EXPECT_EQ(rejected, good.size() - 11);
  // Steps that go back.
  std::vector<uint8_t> back = good;
  back[header] = 9;  // the first record claims step 9; the next is step 0
  expect_rejected(back, "", "after step 9");
}
