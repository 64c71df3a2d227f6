// SPDX-License-Identifier: BSD-3-Clause
// Value encodings and checksums in the wire format (src/wire.hpp): every
// encoding round-trips through a message exactly as the codec does, the
// dense switch weighs encoded sizes, rounding streams are deterministic, and
// every malformed payload or header (sizes, bucket, scales, padding, unused
// bits, a flipped bit under a checksum) is rejected with SPARCL_ERR_CORRUPT.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "crc32c.hpp"
#include "unit_types.hpp"
#include "wire.hpp"

namespace {

using sparcl::Buffer;
using sparcl::Encoding;
using sparcl::Range;
using sparcl::WireHeader;
using namespace sparcl_unit;

constexpr int kPeer = 2;
constexpr uint16_t kStep = 3;

const Encoding kLossy[] = {Encoding::Fp16, Encoding::Bf16, Encoding::Qsgd8, Encoding::Qsgd4, Encoding::Qsgd2};

sparcl::Identity identity(uint64_t dim, Encoding e, uint32_t bucket = 4, bool checksum = false) {
  sparcl::Identity id;
  id.comm_id = 77;
  id.seq = 9;
  id.algorithm = SPARCL_ALGO_RING;
  id.dim = dim;
  id.value_type = SPARCL_FLOAT32;
  id.index_width = 4;
  id.encoding = e;
  id.bucket = sparcl::codec::qsgd_bits(e) ? bucket : 0;
  id.checksum = checksum;
  id.rounding_key = 0x1234;
  return id;
}

Buffer copy(const Buffer& b) {
  Buffer out(b.size());
  std::memcpy(out.data(), b.data(), b.size());
  return out;
}

WireHeader header_of(const Buffer& b) {
  WireHeader h;
  std::memcpy(&h, b.data(), sizeof h);
  return h;
}

// What a receiver does with a message: checksum (if any), header, identity, payload.
sparcl::Decoded<float, uint32_t> receive(const Buffer& b, const sparcl::Identity& id, Range r) {
  if (id.checksum) sparcl::verify_checksum(b, kPeer);
  const WireHeader h = sparcl::read_header(b);
  sparcl::check_identity(h, id, kStep, kPeer);
  return sparcl::decode<float, uint32_t>(b, h, r, kPeer);
}

// What the codec alone gives for these values with the message's seed.
std::vector<float> codec_round_trip(const sparcl::Identity& id, const std::vector<float>& x, uint64_t stream) {
  const size_t bytes = sparcl::codec::encoded_values_size(id.encoding, x.size(), id.bucket);
  std::vector<uint8_t> enc(bytes);
  sparcl::codec::encode_values(id.encoding, x.data(), x.size(), id.bucket,
                                  sparcl::rounding_seed(id, kStep, stream), enc.data());
  std::vector<float> out(x.size());
  sparcl::codec::decode_values(id.encoding, enc.data(), bytes, x.size(), id.bucket, out.data());
  return out;
}

// A sparse stream over [10, 90) of dim 100: 9 entries with fractional values.
sparcl::Stream<float, uint32_t> sample() {
  return sparse<float, uint32_t>({10, 90}, {10, 11, 17, 30, 31, 50, 64, 88, 89},
                                 {0.3, -1.7, 2.25, -0.01, 5.5, 1e-3, -3.3, 0.7, 4.0});
}

TEST(WireEncodings, SparseRoundTripEqualsTheCodec) {
  const auto s = sample();
  const std::vector<float> values(s.val.begin(), s.val.end());
  for (Encoding e : kLossy) {
    SCOPED_TRACE(sparcl::codec::value_codec_name(e));
    const auto id = identity(100, e);
    auto buf = sparcl::encode(id, kStep, s.view(), sparcl::own_stream(5));
    const WireHeader h = sparcl::read_header(*buf);
    EXPECT_EQ(h.encoding, uint8_t(e));
    EXPECT_EQ(h.bucket, id.bucket);
    EXPECT_EQ(h.flags, 0);
    EXPECT_EQ(h.nnz, 9u);
    EXPECT_EQ(buf->size(), sizeof(WireHeader) + sparcl::pad8(9 * 4) +
                               sparcl::codec::encoded_values_size(e, 9, id.bucket));
    const auto d = receive(*buf, id, s.range);
    ASSERT_NE(d.stream, nullptr);
    EXPECT_FALSE(d.view.dense);
    ASSERT_EQ(d.view.nnz, 9u);
    EXPECT_EQ(std::vector<uint32_t>(d.view.idx, d.view.idx + 9), vec(s.idx));
    const auto expected = codec_round_trip(id, values, sparcl::own_stream(5));
    for (size_t k = 0; k < 9; ++k) EXPECT_EQ(d.view.val[k], expected[k]) << k;
  }
}

TEST(WireEncodings, DenseRoundTripEqualsTheCodec) {
  std::vector<double> v;
  for (int k = 0; k < 37; ++k) v.push_back(k % 5 == 0 ? 0.0 : std::sin(k) * 3);
  const auto d = dense<float, uint32_t>({3, 40}, v);
  const std::vector<float> values(d.val.begin(), d.val.end());
  for (Encoding e : kLossy) {
    SCOPED_TRACE(sparcl::codec::value_codec_name(e));
    const auto id = identity(50, e, 8);
    auto buf = sparcl::encode(id, kStep, d.view(), sparcl::shared_stream(3));
    EXPECT_EQ(sparcl::read_header(*buf).flags, sparcl::kFlagDense);
    EXPECT_EQ(buf->size(), sizeof(WireHeader) + sparcl::codec::encoded_values_size(e, 37, id.bucket));
    const auto got = receive(*buf, id, d.range);
    ASSERT_TRUE(got.view.dense);
    ASSERT_EQ(got.view.nnz, 37u);
    const auto expected = codec_round_trip(id, values, sparcl::shared_stream(3));
    for (size_t k = 0; k < 37; ++k) EXPECT_EQ(got.view.val[k], expected[k]) << k;
  }
}

// A sparse view goes dense as soon as its encoded sparse form (indices +
// encoded values) is not smaller than the encoded dense form, and the dense
// message holds the zeros where the sparse one had no entry.
TEST(WireEncodings, DenseSwitchWeighsEncodedSizes) {
  const uint64_t len = 256;
  for (Encoding e : kLossy) {
    SCOPED_TRACE(sparcl::codec::value_codec_name(e));
    const auto id = identity(len, e, 64);
    const auto dense_bytes = sparcl::values_bytes<float>(e, len, id.bucket);
    uint64_t t = 0;  // the smallest entry count sent dense
    while (uint64_t(4) * t + uint64_t(sparcl::values_bytes<float>(e, t, id.bucket)) < uint64_t(dense_bytes)) ++t;
    for (uint64_t n : {t - 1, t}) {
      std::vector<uint64_t> idx;
      std::vector<double> val;
      for (uint64_t k = 0; k < n; ++k) idx.push_back(k * len / n), val.push_back(double(k % 7) - 3.0);
      const auto s = sparse<float, uint32_t>({0, len}, idx, val);
      auto buf = sparcl::encode(id, kStep, s.view(), 0);
      const WireHeader h = sparcl::read_header(*buf);
      EXPECT_EQ(bool(h.flags & sparcl::kFlagDense), n == t) << "n=" << n << " t=" << t;
      const auto got = receive(*buf, id, s.range);
      std::vector<float> dense_got(len);
      sparcl::write_dense(got.view, dense_got.data());
      const auto exact = densify(s);
      for (uint64_t i = 0; i < len; ++i) {
        if (exact[i] == 0.0f) {
          EXPECT_EQ(dense_got[i], 0.0f) << i;  // zeros stay zero in every encoding
        } else {
          EXPECT_NEAR(dense_got[i], exact[i], 3.0 + 1e-6) << i;  // within one QSGD2 step (scale 3, one level)
        }
      }
    }
  }
}

// The rounding draws are a function of (rounding key, step, stream): the same
// stream gives the same bytes, other streams or steps other bytes.
TEST(WireEncodings, RoundingStreamsAreDeterministic) {
  std::vector<double> v;
  for (int k = 0; k < 400; ++k) v.push_back(std::cos(k * 0.37) * 0.9);
  const auto d = dense<float, uint32_t>({0, 400}, v);
  const auto id = identity(400, Encoding::Qsgd4, 512);
  auto a = sparcl::encode(id, kStep, d.view(), sparcl::own_stream(1));
  auto b = sparcl::encode(id, kStep, d.view(), sparcl::own_stream(1));
  auto c = sparcl::encode(id, kStep, d.view(), sparcl::own_stream(2));
  auto e = sparcl::encode(id, kStep + 1, d.view(), sparcl::own_stream(1));
  ASSERT_EQ(a->size(), b->size());
  EXPECT_EQ(std::memcmp(a->data(), b->data(), a->size()), 0);
  EXPECT_NE(std::memcmp(a->data() + sizeof(WireHeader), c->data() + sizeof(WireHeader), a->size() - sizeof(WireHeader)), 0);
  EXPECT_NE(std::memcmp(a->data() + sizeof(WireHeader), e->data() + sizeof(WireHeader), a->size() - sizeof(WireHeader)), 0);
  EXPECT_NE(sparcl::own_stream(1), sparcl::shared_stream(1));
}

TEST(WireEncodings, TruncatedOrPaddedMessagesAreCorrupt) {
  const auto s = sample();
  for (Encoding e : kLossy) {
    SCOPED_TRACE(sparcl::codec::value_codec_name(e));
    const auto id = identity(100, e);
    auto full = sparcl::encode(id, kStep, s.view(), 0);
    for (size_t n = 0; n < full->size() + 9; ++n) {
      if (n == full->size()) continue;
      Buffer b(n);
      if (n > 0) {  // an empty Buffer has no storage
        std::memset(b.data(), 0, n);
        std::memcpy(b.data(), full->data(), std::min(n, full->size()));
      }
      const std::string m = expect_error([&] { receive(b, id, s.range); }, SPARCL_ERR_CORRUPT);
      if (n >= sizeof(WireHeader)) {
        EXPECT_NE(m.find("rank 2"), std::string::npos) << n << ": " << m;
      }
    }
  }
}

// Header fields of the encoding: an unknown encoding, a bucket that does not
// fit the encoding, lossy values of a float64 vector, nonzero reserved bytes.
TEST(WireEncodings, BadEncodingFieldsAreCorrupt) {
  const auto s = sample();
  const auto id = identity(100, Encoding::Qsgd4);
  auto good = sparcl::encode(id, kStep, s.view(), 0);
  auto with = [&](void (*change)(WireHeader&)) {
    Buffer b = copy(*good);
    WireHeader h = header_of(b);
    change(h);
    std::memcpy(b.data(), &h, sizeof h);
    return b;
  };
  const struct {
    const char* what;
    void (*change)(WireHeader&);
    const char* says;
  } cases[] = {
      {"encoding 6", [](WireHeader& h) { h.encoding = 6; }, "encoding"},
      {"encoding 255", [](WireHeader& h) { h.encoding = 255; }, "encoding"},
      {"QSGD bucket 0", [](WireHeader& h) { h.bucket = 0; }, "bucket"},
      {"fp16 with a bucket", [](WireHeader& h) { h.encoding = uint8_t(Encoding::Fp16); }, "bucket"},
      {"reserved byte", [](WireHeader& h) { h.reserved0 = 1; }, "reserved"},
  };
  for (const auto& c : cases) {
    Buffer b = with(c.change);
    const std::string m = expect_error([&] { sparcl::read_header(b); }, SPARCL_ERR_CORRUPT);
    EXPECT_NE(m.find(c.says), std::string::npos) << c.what << ": " << m;
  }
  // Another bucket size than this rank's: a mismatch of the collective, not corruption.
  {
    Buffer b = with([](WireHeader& h) { h.bucket = 5; });
    const WireHeader h = sparcl::read_header(b);
    const std::string m = expect_error([&] { sparcl::check_identity(h, id, kStep, kPeer); }, SPARCL_ERR_MISMATCH);
    EXPECT_NE(m.find("bucket"), std::string::npos) << m;
  }
  // Another digest of auto's records: a mismatch of the collective (auto's
  // records differ between ranks), not corruption.
  {
    Buffer b = with([](WireHeader& h) { h.choice_digest = 0x100; });
    const WireHeader h = sparcl::read_header(b);
    const std::string m = expect_error([&] { sparcl::check_identity(h, id, kStep, kPeer); }, SPARCL_ERR_MISMATCH);
    EXPECT_NE(m.find("reset"), std::string::npos) << m;
  }
  // Lossy values claimed for float64 values.
  {
    const WireHeader h = sparcl::read_header(*good);
    const std::string m =
        expect_error([&] { sparcl::decode<double, uint32_t>(*good, h, s.range, kPeer); }, SPARCL_ERR_CORRUPT);
    EXPECT_NE(m.find("float64"), std::string::npos) << m;
  }
}

// Payload bits that must be as written: the padding after the indices
// (zero), QSGD scales (finite, >= 0), codes (never the unused one) and the
// last byte's unused bits (ones).
TEST(WireEncodings, BadPayloadBitsAreCorrupt) {
  const auto s = sample();  // 9 entries: 36 index bytes, 4 of padding
  const size_t values_at = sizeof(WireHeader) + 40;
  for (Encoding e : {Encoding::Qsgd8, Encoding::Qsgd4, Encoding::Qsgd2}) {
    SCOPED_TRACE(sparcl::codec::value_codec_name(e));
    const auto id = identity(100, e, 4);  // 3 buckets: scales at values_at + 0, 4, 8
    auto good = sparcl::encode(id, kStep, s.view(), 0);
    ASSERT_NO_THROW(receive(*good, id, s.range));
    auto expect_corrupt = [&](const Buffer& b, const char* says) {
      const std::string m = expect_error([&] { receive(b, id, s.range); }, SPARCL_ERR_CORRUPT);
      EXPECT_NE(m.find(says), std::string::npos) << m;
      EXPECT_NE(m.find("rank 2"), std::string::npos) << m;
    };
    for (size_t pad = 36; pad < 40; ++pad) {
      Buffer b = copy(*good);
      b.data()[sizeof(WireHeader) + pad] = 1;
      expect_corrupt(b, "padding");
    }
    for (float scale : {-1.0f, -0.0f, INFINITY, -INFINITY, NAN}) {
      Buffer b = copy(*good);
      std::memcpy(b.data() + values_at + 4, &scale, 4);
      expect_corrupt(b, "scale");
    }
    const unsigned bits = sparcl::codec::qsgd_bits(e);
    const size_t codes_at = values_at + 12;
    {  // the unused code 2^B - 1 as the first value
      Buffer b = copy(*good);
      b.data()[codes_at] = uint8_t(b.data()[codes_at] | ((1u << bits) - 1));
      expect_corrupt(b, "code");
    }
    if ((9 * bits) % 8) {  // a zero among the last byte's unused bits
      Buffer b = copy(*good);
      b.data()[b.size() - 1] = uint8_t(b.data()[b.size() - 1] & 0x7F);
      expect_corrupt(b, "");
    }
  }
}

// Random corruption of lossy messages, also with checksums: the receiver
// throws sparcl::Error or yields a valid view; never a crash.
TEST(WireEncodings, RandomCorruptionNeverCrashes) {
  const auto s = sample();
  std::mt19937 rng(3);
  for (bool checksum : {false, true})
    for (Encoding e : kLossy) {
      SCOPED_TRACE(sparcl::codec::value_codec_name(e));
      const auto id = identity(100, e, 4, checksum);
      auto good = sparcl::encode(id, kStep, s.view(), 0);
      size_t accepted = 0;
      for (int trial = 0; trial < 3000; ++trial) {
        Buffer b = copy(*good);
        const int flips = 1 + int(rng() % 3);
        for (int f = 0; f < flips; ++f) b.data()[rng() % b.size()] ^= uint8_t(1u << (rng() % 8));
        if (std::memcmp(b.data(), good->data(), b.size()) == 0) continue;  // two flips of one bit cancel
        try {
          const auto d = receive(b, id, s.range);
          ++accepted;
          for (size_t k = 0; k < d.view.nnz; ++k) {
            ASSERT_GE(d.view.idx[k], 10u);
            ASSERT_LT(d.view.idx[k], 90u);
          }
        } catch (const sparcl::Error& err) {
          ASSERT_TRUE(err.status() == SPARCL_ERR_CORRUPT || err.status() == SPARCL_ERR_MISMATCH) << err.what();
        }
      }
      if (checksum) {
        EXPECT_EQ(accepted, 0u) << "a corrupted message passed its checksum";
      }
    }
}

// The checksum trailer: a sealed message verifies, every single-bit flip of
// it (header, payload or trailer) fails naming the sender, a forwarder's
// step rewrite keeps it valid, and abort notices carry it too.
TEST(WireChecksum, EveryBitFlipIsCaught) {
  const auto s = sample();
  for (Encoding e : {Encoding::Raw, Encoding::Qsgd4}) {
    auto id = identity(100, e, 4, true);
    auto good = sparcl::encode(id, kStep, s.view(), 0);
    EXPECT_EQ(sparcl::read_header(*good).flags, sparcl::kFlagChecksum);
    ASSERT_NO_THROW(receive(*good, id, s.range));
    for (size_t pos = 0; pos < good->size(); ++pos)
      for (int bit = 0; bit < 8; ++bit) {
        Buffer b = copy(*good);
        b.data()[pos] ^= uint8_t(1u << bit);
        const std::string m = expect_error([&] { sparcl::verify_checksum(b, kPeer); }, SPARCL_ERR_CORRUPT);
        ASSERT_NE(m.find("CRC32C"), std::string::npos) << m;
        ASSERT_NE(m.find("from rank 2"), std::string::npos) << m;
      }
  }
}

TEST(WireChecksum, ForwardingAndAbortNotices) {
  const auto s = sample();
  const auto id = identity(100, Encoding::Raw, 0, true);
  auto msg = sparcl::encode(id, kStep, s.view(), 0);
  sparcl::set_step(*msg, 7);
  EXPECT_NO_THROW(sparcl::verify_checksum(*msg, kPeer));
  EXPECT_EQ(sparcl::read_header(*msg).step, 7);
  // Without a checksum, set_step leaves the rest alone.
  auto plain = sparcl::encode(identity(100, Encoding::Raw), kStep, s.view(), 0);
  const Buffer before = copy(*plain);
  sparcl::set_step(*plain, 8);
  EXPECT_EQ(std::memcmp(before.data() + sizeof(WireHeader), plain->data() + sizeof(WireHeader),
                        plain->size() - sizeof(WireHeader)),
            0);

  auto notice = sparcl::encode_abort(id, SPARCL_ERR_TIMEOUT, "rank 1: late");
  EXPECT_NO_THROW(sparcl::verify_checksum(*notice, kPeer));
  const WireHeader h = sparcl::read_header(*notice);
  EXPECT_EQ(h.flags, sparcl::kFlagAbort | sparcl::kFlagChecksum);
  EXPECT_EQ(sparcl::abort_text(*notice, h), "rank 1: late");
  // A receiver with checksums rejects a message without them as a mismatch.
  const WireHeader hp = sparcl::read_header(*plain);
  const std::string m = expect_error([&] { sparcl::check_identity(hp, id, 8, kPeer); }, SPARCL_ERR_MISMATCH);
  EXPECT_NE(m.find("checksum"), std::string::npos) << m;
  // The trailer is the payload's CRC32C, then that of the header and the first CRC.
  uint32_t payload_crc, header_crc;
  std::memcpy(&payload_crc, msg->data() + msg->size() - 8, 4);
  std::memcpy(&header_crc, msg->data() + msg->size() - 4, 4);
  EXPECT_EQ(payload_crc, sparcl::crc32c(msg->data() + sizeof(WireHeader), msg->size() - sizeof(WireHeader) - 8));
  EXPECT_EQ(header_crc, sparcl::crc32c(&payload_crc, 4, sparcl::crc32c(msg->data(), sizeof(WireHeader))));
}

TEST(WireEncodings, LossyEncodingOfFloat64IsAnInternalError) {
  auto id = identity(100, Encoding::Fp16);
  id.value_type = SPARCL_FLOAT64;
  const auto s = sparse<double, uint32_t>({0, 100}, {1, 2}, {1.0, 2.0});
  expect_error([&] { sparcl::encode(id, kStep, s.view(), 0); }, SPARCL_ERR_INTERNAL);
}

TEST(WireEncodings, QsgdCannotEncodeNanOrInf) {
  const auto id = identity(100, Encoding::Qsgd8);
  for (double bad : {double(NAN), double(INFINITY)}) {
    const auto s = sparse<float, uint32_t>({0, 100}, {1, 2}, {1.0, bad});
    const std::string m = expect_error([&] { sparcl::encode(id, kStep, s.view(), 0); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(m.find("QSGD"), std::string::npos) << m;
  }
  // fp16 carries them.
  const auto s = sparse<float, uint32_t>({0, 100}, {1, 2}, {1e6, double(NAN)});
  const auto fp = identity(100, Encoding::Fp16);
  auto buf = sparcl::encode(fp, kStep, s.view(), 0);
  const auto d = receive(*buf, fp, Range{0, 100});
  EXPECT_TRUE(std::isinf(d.view.val[0]));
  EXPECT_TRUE(std::isnan(d.view.val[1]));
}

}  // namespace
