// SPDX-License-Identifier: BSD-3-Clause
// CRC32C (src/crc32c.hpp): known vectors, the hardware and portable versions
// against each other at every length and alignment, and chaining.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "crc32c.hpp"

namespace {

// Runs `body` with crc32c() on the portable code, then on the instruction
// where this CPU has it.
template <class F>
void for_each_implementation(F&& body) {
  const bool saved = sparcl::crc32c_use_hardware();
  sparcl::crc32c_use_hardware() = false;
  body("portable");
  if (sparcl::crc32c_hardware_available()) {
    sparcl::crc32c_use_hardware() = true;
    body("sse4.2");
  }
  sparcl::crc32c_use_hardware() = saved;
}

// RFC 3720 (iSCSI), appendix B.4, and the usual check value of "123456789".
TEST(Crc32c, KnownVectors) {
  for_each_implementation([](const char* impl) {
    SCOPED_TRACE(impl);
    EXPECT_EQ(sparcl::crc32c("123456789", 9), 0xE3069283u);
    EXPECT_EQ(sparcl::crc32c("", 0), 0u);
    EXPECT_EQ(sparcl::crc32c("a", 1), 0xC1D04330u);
    std::vector<uint8_t> b(32, 0x00);
    EXPECT_EQ(sparcl::crc32c(b.data(), b.size()), 0x8A9136AAu);
    std::fill(b.begin(), b.end(), uint8_t(0xFF));
    EXPECT_EQ(sparcl::crc32c(b.data(), b.size()), 0x62A8AB43u);
    for (int i = 0; i < 32; ++i) b[size_t(i)] = uint8_t(i);
    EXPECT_EQ(sparcl::crc32c(b.data(), b.size()), 0x46DD794Eu);
    for (int i = 0; i < 32; ++i) b[size_t(i)] = uint8_t(31 - i);
    EXPECT_EQ(sparcl::crc32c(b.data(), b.size()), 0x113FDB5Cu);
    // An iSCSI read command PDU (RFC 3720 B.4).
    const uint8_t pdu[48] = {0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                             0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
                             0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
                             0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    EXPECT_EQ(sparcl::crc32c(pdu, sizeof pdu), 0xD9963A56u);
  });
}

TEST(Crc32c, HardwareEqualsPortableAtEveryLengthAndAlignment) {
  if (!sparcl::crc32c_hardware_available()) GTEST_SKIP() << "this CPU has no SSE4.2";
  std::mt19937 rng(11);
  std::vector<uint8_t> data(4096 + 16);
  for (auto& x : data) x = uint8_t(rng());
  for (size_t offset = 0; offset < 16; ++offset)
    for (size_t n = 0; n <= 300; ++n)
      ASSERT_EQ(sparcl::crc32c_hardware(data.data() + offset, n), sparcl::crc32c_portable(data.data() + offset, n))
          << "offset " << offset << " length " << n;
  for (size_t n : {1000u, 4095u, 4096u})
    EXPECT_EQ(sparcl::crc32c_hardware(data.data() + 3, n, 0x1234u), sparcl::crc32c_portable(data.data() + 3, n, 0x1234u));
}

TEST(Crc32c, ChainingEqualsOneCall) {
  std::mt19937 rng(5);
  std::vector<uint8_t> data(1000);
  for (auto& x : data) x = uint8_t(rng());
  for_each_implementation([&](const char* impl) {
    SCOPED_TRACE(impl);
    const uint32_t whole = sparcl::crc32c(data.data(), data.size());
    for (size_t cut : {0u, 1u, 7u, 8u, 9u, 500u, 999u, 1000u})
      EXPECT_EQ(sparcl::crc32c(data.data() + cut, data.size() - cut, sparcl::crc32c(data.data(), cut)), whole) << cut;
  });
}

// Every single-bit change of a message changes its CRC (a CRC detects all
// errors of up to 3 bits in messages this short).
TEST(Crc32c, DetectsEveryBitFlip) {
  std::vector<uint8_t> data(200);
  for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(i * 37);
  const uint32_t good = sparcl::crc32c(data.data(), data.size());
  for (size_t i = 0; i < data.size(); ++i)
    for (int bit = 0; bit < 8; ++bit) {
      data[i] ^= uint8_t(1u << bit);
      ASSERT_NE(sparcl::crc32c(data.data(), data.size()), good) << i << " " << bit;
      data[i] ^= uint8_t(1u << bit);
    }
}

}  // namespace
