// SPDX-License-Identifier: BSD-3-Clause
// Value codecs (ml/compress/codec.*): fp16 and bf16 against independent
// reference conversions (and the compiler's _Float16 where it has one) on
// every special value and every rounding case; QSGD unbiasedness and its
// variance bound; layout and validation of encoded values.
#include <gtest/gtest.h>

#include <cfloat>

#include "src/codec/codec.hpp"
#include "test_util.hpp"

namespace {

using namespace ctest;
using cz::ValueCodec;

// --- independent references (double arithmetic, no bit tricks) ---

// float -> binary16, round to nearest even; NaN: quiet, top payload bits kept.
uint16_t ref_fp16(float f) {
  const uint32_t b = cz::float_bits(f);
  const uint16_t sign = uint16_t((b >> 16) & 0x8000u);
  if (std::isnan(f)) return uint16_t(sign | 0x7E00u | ((b >> 13) & 0x3FFu));
  const double a = std::fabs(double(f));
  if (std::isinf(f) || a >= 65520.0) return uint16_t(sign | 0x7C00u);  // 65520 = max + half an ulp: ties to even = Inf
  if (a < std::ldexp(1.0, -14)) {  // subnormal grid of 2^-24
    const double m = std::nearbyint(a * std::ldexp(1.0, 24));
    return uint16_t(sign | uint16_t(m));  // m == 1024 is the smallest normal
  }
  int e;
  std::frexp(a, &e);  // a = fr * 2^e, fr in [0.5, 1)
  e -= 1;             // a in [2^e, 2^(e+1))
  double m = std::nearbyint(a * std::ldexp(1.0, 10 - e));  // 1024..2048
  if (m == 2048.0) {
    m = 1024.0;
    e += 1;
  }
  if (e + 15 >= 31) return uint16_t(sign | 0x7C00u);
  return uint16_t(sign | uint16_t((e + 15) << 10) | uint16_t(m - 1024.0));
}

// binary16 -> float, exact; NaN made quiet.
float ref_fp16_to_float(uint16_t h) {
  const bool neg = h & 0x8000u;
  const int e = (h >> 10) & 0x1F;
  const int m = h & 0x3FF;
  double v;
  if (e == 31) {
    if (m == 0) return neg ? -INFINITY : INFINITY;
    return cz::bits_float((neg ? 0x80000000u : 0u) | 0x7FC00000u | uint32_t(m) << 13);
  }
  v = e == 0 ? std::ldexp(double(m), -24) : std::ldexp(1024.0 + m, e - 25);
  return float(neg ? -v : v);
}

// float -> bfloat16, round to nearest even between the truncation and the
// next value up (2^128 standing in for Inf); NaN quiet.
uint16_t ref_bf16(float f) {
  const uint32_t b = cz::float_bits(f);
  if (std::isnan(f)) return uint16_t((b >> 16) | 0x40u);
  if (std::isinf(f)) return uint16_t(b >> 16);
  const uint16_t lo = uint16_t(b >> 16);
  const double vlo = std::fabs(double(cz::bits_float(uint32_t(lo) << 16)));
  const uint16_t hi = uint16_t(lo + 1);
  const double vhi = (hi & 0x7FFFu) == 0x7F80u ? std::ldexp(1.0, 128) : std::fabs(double(cz::bits_float(uint32_t(hi) << 16)));
  const double a = std::fabs(double(f));
  if (a - vlo < vhi - a) return lo;
  if (a - vlo > vhi - a) return hi;
  return (lo & 1) ? hi : lo;
}

bool same_bits(float a, float b) { return cz::float_bits(a) == cz::float_bits(b); }

// Floats that exercise every rounding case of a 16-bit target: every
// binary16 value, the midpoints between neighbours and their neighbours,
// the extremes, plus a prime-stride walk over all 2^32 bit patterns.
std::vector<float> fp16_probe_floats() {
  std::vector<float> v;
  for (uint32_t h = 0; h < 0x7C00u; ++h) {
    const double a = double(ref_fp16_to_float(uint16_t(h)));
    const double b = h + 1 == 0x7C00u ? 65536.0 : double(ref_fp16_to_float(uint16_t(h + 1)));
    const float mid = float((a + b) / 2);  // exact: one more bit than a half
    for (float f : {float(a), mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY),
                    std::nextafter(float(a), INFINITY)}) {
      v.push_back(f);
      v.push_back(-f);
    }
  }
  for (uint64_t b = 0; b < (uint64_t(1) << 32); b += 4099) v.push_back(cz::bits_float(uint32_t(b)));
  for (float f : {FLT_MAX, FLT_MIN, FLT_TRUE_MIN, 65504.0f, 65519.99f, 65520.0f, 1e-8f, 2.98e-8f, 2.99e-8f,
                  INFINITY, -INFINITY, NAN})
    v.push_back(f);
  for (uint32_t b : {0x7F800001u, 0x7FBFFFFFu, 0x7FC00000u, 0xFFC00001u, 0x7F802000u, 0xFFFFFFFFu, 0x80000000u})
    v.push_back(cz::bits_float(b));
  return v;
}

TEST(Fp16, EncodeMatchesReference) {
  const auto probes = fp16_probe_floats();
  for (float f : probes) ASSERT_EQ(cz::float_to_fp16(f), ref_fp16(f)) << std::hexfloat << f << " bits 0x" << std::hex << cz::float_bits(f);
}

#if defined(__FLT16_MAX__)
// The compiler's own conversions (libgcc's soft-fp or the hardware) agree
// bit for bit, NaN payloads included.
TEST(Fp16, MatchesCompilerFloat16) {
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    _Float16 v;
    const uint16_t hb = uint16_t(h);
    std::memcpy(&v, &hb, 2);
    const float want = float(v);
    const float got = cz::fp16_to_float(hb);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << std::hex << h;
      ASSERT_EQ(cz::float_bits(got) & 0x803FFFFFu, cz::float_bits(want) & 0x803FFFFFu) << std::hex << h;  // sign, payload
    } else {
      ASSERT_TRUE(same_bits(got, want)) << std::hex << h;
    }
  }
  for (float f : fp16_probe_floats()) {
    const _Float16 v = static_cast<_Float16>(f);
    uint16_t want;
    std::memcpy(&want, &v, 2);
    const uint16_t got = cz::float_to_fp16(f);
    if (std::isnan(f))
      ASSERT_EQ(got & 0x81FFu, want & 0x81FFu) << std::hex << cz::float_bits(f);  // sign and payload below the quiet bit
    else
      ASSERT_EQ(got, want) << std::hexfloat << f;
  }
}
#endif

TEST(Fp16, DecodeAllValues) {
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const float want = ref_fp16_to_float(uint16_t(h));
    ASSERT_TRUE(same_bits(cz::fp16_to_float(uint16_t(h)), want)) << std::hex << h;
    if (!std::isnan(want)) {
      ASSERT_EQ(cz::float_to_fp16(want), h) << std::hex << h;  // round trip
    }
  }
}

TEST(Bf16, EncodeMatchesReference) {
  std::mt19937 rng(3);
  std::vector<uint32_t> lows = {0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF};
  for (uint32_t hi = 0; hi < 0x10000u; ++hi) {
    for (uint32_t lo : lows) {
      const float f = cz::bits_float(hi << 16 | lo);
      ASSERT_EQ(cz::float_to_bf16(f), ref_bf16(f)) << std::hex << (hi << 16 | lo);
    }
    const float f = cz::bits_float(hi << 16 | (rng() & 0xFFFFu));
    ASSERT_EQ(cz::float_to_bf16(f), ref_bf16(f)) << std::hex << cz::float_bits(f);
  }
  EXPECT_EQ(cz::float_to_bf16(cz::bits_float(0x7F800001u)), 0x7FC0u);  // sNaN with a low payload stays NaN
  EXPECT_EQ(cz::float_to_bf16(cz::bits_float(0x7F7FFFFFu)), 0x7F80u);  // FLT_MAX rounds to Inf
  EXPECT_EQ(cz::float_to_bf16(cz::bits_float(0x00000001u)), 0x0000u);  // tiny subnormal to +0
  EXPECT_EQ(cz::float_to_bf16(cz::bits_float(0x00008000u)), 0x0000u);  // tie, to even
  EXPECT_EQ(cz::float_to_bf16(cz::bits_float(0x00018000u)), 0x0002u);  // tie, to even
}

TEST(Bf16, DecodeIsWidening) {
  for (uint32_t h = 0; h < 0x10000u; ++h) ASSERT_EQ(cz::float_bits(cz::bf16_to_float(uint16_t(h))), h << 16);
}

// The bulk codecs (vectorised, both kernel variants) equal the scalar ones.
TEST(HalfCodecs, BulkEqualsScalar) {
  const auto probes = fp16_probe_floats();
  for_each_isa([&] {
    for (ValueCodec c : {ValueCodec::Fp16, ValueCodec::Bf16}) {
      const size_t n = probes.size();
      std::vector<uint8_t> enc(cz::encoded_values_size(c, n, 1));
      ASSERT_EQ(enc.size(), 2 * n);
      cz::encode_values(c, probes.data(), n, 1, 0, enc.data());
      std::vector<float> dec(n);
      cz::decode_values(c, enc.data(), enc.size(), n, 1, dec.data());
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, enc.data() + 2 * i, 2);
        const uint16_t want = c == ValueCodec::Fp16 ? cz::float_to_fp16(probes[i]) : cz::float_to_bf16(probes[i]);
        ASSERT_EQ(h, want) << i;
        const float back = c == ValueCodec::Fp16 ? cz::fp16_to_float(h) : cz::bf16_to_float(h);
        ASSERT_TRUE(same_bits(dec[i], back)) << i;
      }
    }
  });
}

TEST(RawCodec, Identity) {
  const auto x = make_data(Dist::Specials, 1000, 1);
  std::vector<uint8_t> enc(cz::encoded_values_size(ValueCodec::Raw, x.size(), 512));
  cz::encode_values(ValueCodec::Raw, x.data(), x.size(), 512, 0, enc.data());
  std::vector<float> y(x.size());
  cz::decode_values(ValueCodec::Raw, enc.data(), enc.size(), x.size(), 512, y.data());
  EXPECT_EQ(std::memcmp(x.data(), y.data(), 4 * x.size()), 0);
}

// --- QSGD ---

const ValueCodec kQsgd[] = {ValueCodec::Qsgd8, ValueCodec::Qsgd4, ValueCodec::Qsgd2};

std::vector<float> qsgd_round_trip(ValueCodec c, const std::vector<float>& x, size_t bucket, uint64_t seed) {
  std::vector<uint8_t> enc(cz::encoded_values_size(c, x.size(), bucket));
  cz::encode_values(c, x.data(), x.size(), bucket, seed, enc.data());
  std::vector<float> y(x.size());
  cz::decode_values(c, enc.data(), enc.size(), x.size(), bucket, y.data());
  return y;
}

// Scale (max |x|) of the bucket holding each value.
std::vector<double> bucket_steps(ValueCodec c, const std::vector<float>& x, size_t bucket) {
  std::vector<double> step(x.size());
  for (size_t b = 0; b < x.size(); b += bucket) {
    double m = 0;
    const size_t e = std::min(x.size(), b + bucket);
    for (size_t i = b; i < e; ++i) m = std::max(m, std::fabs(double(x[i])));
    for (size_t i = b; i < e; ++i) step[i] = m / cz::qsgd_levels(c);
  }
  return step;
}

TEST(Qsgd, Layout) {
  EXPECT_EQ(cz::encoded_values_size(ValueCodec::Qsgd4, 1000, 512), 8u + 500u);
  EXPECT_EQ(cz::encoded_values_size(ValueCodec::Qsgd2, 1001, 512), 8u + 251u);
  EXPECT_EQ(cz::encoded_values_size(ValueCodec::Qsgd8, 1, 512), 5u);
  EXPECT_EQ(cz::encoded_values_size(ValueCodec::Qsgd8, 0, 512), 0u);
  EXPECT_EQ(status_of([] { cz::encoded_values_size(ValueCodec::Qsgd8, 10, 0); }), SPARCL_ERR_INVALID_ARG);
  // Known codes: 8-bit, one bucket of {-1, 0.5, 1}: scale 1, levels -127, 63.5 (random), 127.
  const std::vector<float> x = {-1.0f, 0.0f, 1.0f};
  std::vector<uint8_t> enc(cz::encoded_values_size(ValueCodec::Qsgd8, 3, 512));
  cz::encode_values(ValueCodec::Qsgd8, x.data(), 3, 512, 0, enc.data());
  float scale;
  std::memcpy(&scale, enc.data(), 4);
  EXPECT_EQ(scale, 1.0f);
  EXPECT_EQ(enc[4], 0);    // -127 + 127
  EXPECT_EQ(enc[5], 127);  // 0
  EXPECT_EQ(enc[6], 254);  // 127 + 127
}

// Mean of T draws per value: with sigma_i^2 = step_i^2 f_i (1 - f_i) the
// exact variance of one draw, z_i = (mean_i - x_i) / (sigma_i / sqrt(T)) is
// about N(0, 1). Every |z_i| <= 6 (n values, P(fail) < 1e-5), and the
// average of the z_i over n values is within 6 / sqrt(n) of 0 (a bias of
// a few percent of sigma would show). Empirical variances meet the bound
// step^2 / 4 and the exact formula within 15% on average.
TEST(Qsgd, UnbiasedAndVarianceBound) {
  const size_t n = 2048, bucket = 512, draws = 1200;
  for_each_isa([&] {
    for (ValueCodec c : kQsgd) {
      SCOPED_TRACE(cz::value_codec_name(c));
      auto x = make_data(Dist::Normal, n, 21);
      x[100] = 0.0f;
      x[700] = -0.0f;
      const auto step = bucket_steps(c, x, bucket);
      std::vector<double> sum(n, 0.0), sq(n, 0.0);
      for (uint64_t seed = 0; seed < draws; ++seed) {
        const auto y = qsgd_round_trip(c, x, bucket, seed * 0x9E37 + 1);
        for (size_t i = 0; i < n; ++i) {
          const double e = double(y[i]) - double(x[i]);
          ASSERT_LE(std::fabs(e), step[i] * (1 + 1e-6)) << i;  // one level at most
          sum[i] += e;
          sq[i] += e * e;
        }
      }
      double zsum = 0, var_ratio = 0;
      size_t random_values = 0;
      for (size_t i = 0; i < n; ++i) {
        const double a = std::fabs(double(x[i])) / step[i];
        const double f = a - std::floor(a);
        const double var = step[i] * step[i] * f * (1 - f);
        const double mean_err = sum[i] / draws, emp_var = sq[i] / draws - mean_err * mean_err;
        EXPECT_LE(emp_var, step[i] * step[i] / 4 * 1.2 + 1e-12) << i;
        if (var < 1e-4 * step[i] * step[i]) {  // (nearly) exact level: (almost) no randomness
          EXPECT_LE(std::fabs(mean_err), 0.01 * step[i] + 8 * std::ldexp(std::fabs(double(x[i])), -24)) << i;
          continue;
        }
        const double z = mean_err / std::sqrt(var / draws);
        EXPECT_LE(std::fabs(z), 6.0) << "value " << i << " x=" << x[i];
        zsum += z;
        var_ratio += emp_var / var;
        ++random_values;
      }
      ASSERT_GT(random_values, n / 2);
      EXPECT_LE(std::fabs(zsum / random_values), 6.0 / std::sqrt(double(random_values)));
      EXPECT_NEAR(var_ratio / random_values, 1.0, 0.15);
    }
  });
}

TEST(Qsgd, DeterministicGivenSeed) {
  const auto x = make_data(Dist::Normal, 5000, 1);
  for (ValueCodec c : kQsgd) {
    std::vector<uint8_t> a(cz::encoded_values_size(c, x.size(), 100)), b(a.size()), d(a.size());
    cz::encode_values(c, x.data(), x.size(), 100, 5, a.data());
    cz::encode_values(c, x.data(), x.size(), 100, 5, b.data());
    cz::encode_values(c, x.data(), x.size(), 100, 6, d.data());
    EXPECT_EQ(a, b);
    EXPECT_NE(a, d);
  }
}

// The kernels (baseline and AVX2) give identical bytes.
TEST(Qsgd, KernelVariantsAgree) {
  if (!cz::avx2_enabled()) GTEST_SKIP() << "no AVX2 on this CPU";
  const auto x = make_data(Dist::Cauchy, 10007, 1);
  for (ValueCodec c : kQsgd) {
    for (size_t bucket : {size_t(1), size_t(7), size_t(512), size_t(5000)}) {
      std::vector<uint8_t> a(cz::encoded_values_size(c, x.size(), bucket)), b(a.size());
      cz::encode_values(c, x.data(), x.size(), bucket, 9, a.data());
      cz::avx2_enabled() = false;
      cz::encode_values(c, x.data(), x.size(), bucket, 9, b.data());
      cz::avx2_enabled() = true;
      EXPECT_EQ(a, b) << cz::value_codec_name(c) << " bucket " << bucket;
    }
  }
}

TEST(Qsgd, SpecialBuckets) {
  for (ValueCodec c : kQsgd) {
    SCOPED_TRACE(cz::value_codec_name(c));
    // All zero: zeros back. Odd sizes and buckets: every position lands.
    std::vector<float> z(1001, 0.0f);
    EXPECT_EQ(qsgd_round_trip(c, z, 7, 1), z);
    // The bucket maximum is always exact (up to the scale's rounding).
    std::vector<float> x = {0.25f, -3.0f, 1.0f, 2.0f, 0.0f, 3.0f};
    const auto y = qsgd_round_trip(c, x, 3, 1);
    EXPECT_FLOAT_EQ(y[1], -3.0f);
    EXPECT_FLOAT_EQ(y[5], 3.0f);
    // Subnormal values (s / scale overflows a float): still within one level.
    std::vector<float> tiny = {FLT_TRUE_MIN, -FLT_TRUE_MIN * 3, FLT_TRUE_MIN * 2, 0.0f};
    const auto t = qsgd_round_trip(c, tiny, 4, 1);
    for (size_t i = 0; i < tiny.size(); ++i) EXPECT_LE(std::fabs(double(t[i]) - tiny[i]), 3.0 * FLT_TRUE_MIN);
    EXPECT_EQ(t[1], -FLT_TRUE_MIN * 3);
    // Scales near FLT_MAX: the level times the step once rounded up to Inf
    // (found by tests/fuzz/value_codec.cpp); now finite, the maximum exact.
    std::vector<float> huge = {FLT_MAX, -FLT_MAX / 3, 1.0f, -FLT_MAX, 0.75f * FLT_MAX};
    const auto h = qsgd_round_trip(c, huge, 5, 1);
    for (size_t i = 0; i < huge.size(); ++i) EXPECT_TRUE(std::isfinite(h[i])) << i << ": " << h[i];
    EXPECT_EQ(h[0], FLT_MAX);
    EXPECT_EQ(h[3], -FLT_MAX);
  }
}

TEST(Qsgd, RejectsNonFinite) {
  for (ValueCodec c : kQsgd) {
    for (float bad : {NAN, INFINITY, -INFINITY}) {
      std::vector<float> x(600, 1.0f);
      x[555] = bad;
      std::vector<uint8_t> enc(cz::encoded_values_size(c, x.size(), 512));
      try {
        cz::encode_values(c, x.data(), x.size(), 512, 0, enc.data());
        FAIL() << "accepted " << bad;
      } catch (const sparcl::Error& e) {
        EXPECT_EQ(e.status(), SPARCL_ERR_INVALID_ARG);
        EXPECT_NE(std::string(e.what()).find("position 555"), std::string::npos) << e.what();
      }
    }
  }
}

TEST(Qsgd, DecoderRejectsCorruption) {
  const auto x = make_data(Dist::Normal, 1003, 2);
  for (ValueCodec c : kQsgd) {
    SCOPED_TRACE(cz::value_codec_name(c));
    const size_t bucket = 100;
    std::vector<uint8_t> enc(cz::encoded_values_size(c, x.size(), bucket));
    cz::encode_values(c, x.data(), x.size(), bucket, 1, enc.data());
    std::vector<float> y(x.size());
    auto decode = [&](const std::vector<uint8_t>& bytes, size_t n) {
      return status_of([&] { cz::decode_values(c, bytes.data(), bytes.size(), n, bucket, y.data()); });
    };
    EXPECT_EQ(decode(enc, x.size()), SPARCL_SUCCESS);
    // Wrong sizes.
    auto shorter = enc;
    shorter.pop_back();
    EXPECT_EQ(decode(shorter, x.size()), SPARCL_ERR_CORRUPT);
    auto longer = enc;
    longer.push_back(0);
    EXPECT_EQ(decode(longer, x.size()), SPARCL_ERR_CORRUPT);
    EXPECT_EQ(decode(enc, x.size() + 8), SPARCL_ERR_CORRUPT);
    EXPECT_EQ(decode(enc, size_t(1) << 62), SPARCL_ERR_CORRUPT);
    // Scales: negative (even -0), Inf, NaN.
    for (uint32_t bad : {0x80000000u, 0xBF800000u, 0x7F800000u, 0x7FC00000u, 0xFFFFFFFFu}) {
      auto e = enc;
      std::memcpy(e.data() + 4 * 3, &bad, 4);
      EXPECT_EQ(decode(e, x.size()), SPARCL_ERR_CORRUPT) << std::hex << bad;
    }
    // The unused code 2^B - 1.
    const unsigned bits = cz::qsgd_bits(c);
    const size_t area = 4 * ((x.size() + bucket - 1) / bucket);
    for (size_t pos : {size_t(0), size_t(1), size_t(517), x.size() - 1}) {
      auto e = enc;
      const size_t bit = pos * bits;
      e[area + bit / 8] = uint8_t(e[area + bit / 8] | (((1u << bits) - 1) << (bit % 8)));
      EXPECT_EQ(decode(e, x.size()), SPARCL_ERR_CORRUPT) << "code at " << pos;
    }
    // Padding bits other than ones (the unused code) are corrupt; and so
    // one value more than was encoded reads that code.
    if ((x.size() * bits) % 8) {
      auto e = enc;
      e.back() = uint8_t(e.back() & 0x7F);
      EXPECT_EQ(decode(e, x.size()), SPARCL_ERR_CORRUPT);
      EXPECT_EQ(decode(enc, x.size() + 1), SPARCL_ERR_CORRUPT);
    }
    // Random corruption: CORRUPT or a clean decode, never a crash.
    std::mt19937 rng(7);
    for (int trial = 0; trial < 300; ++trial) {
      auto e = enc;
      for (int flips = 0; flips < 3; ++flips) e[rng() % e.size()] ^= uint8_t(1u << (rng() % 8));
      const sparcl_status_t st = decode(e, x.size());
      EXPECT_TRUE(st == SPARCL_SUCCESS || st == SPARCL_ERR_CORRUPT);
      if (st == SPARCL_SUCCESS) {
        for (float v : y) ASSERT_TRUE(std::isfinite(v));
      }
    }
  }
}

TEST(Values, DecoderRejectsBadSizeForHalfAndRaw) {
  std::vector<uint8_t> bytes(10);
  std::vector<float> y(8);
  EXPECT_EQ(status_of([&] { cz::decode_values(ValueCodec::Fp16, bytes.data(), 10, 4, 1, y.data()); }),
            SPARCL_ERR_CORRUPT);
  EXPECT_EQ(status_of([&] { cz::decode_values(ValueCodec::Bf16, bytes.data(), 10, 5, 1, y.data()); }),
            SPARCL_SUCCESS);
  EXPECT_EQ(status_of([&] { cz::decode_values(ValueCodec::Raw, bytes.data(), 10, 2, 1, y.data()); }),
            SPARCL_ERR_CORRUPT);
  EXPECT_EQ(status_of([&] { cz::decode_values(ValueCodec(9), bytes.data(), 10, 2, 1, y.data()); }),
            SPARCL_ERR_CORRUPT);
}

TEST(Values, RoundTripHelper) {
  auto x = make_data(Dist::Normal, 3000, 3);
  const auto orig = x;
  std::vector<uint8_t> scratch;
  cz::round_trip_values(ValueCodec::Raw, x.data(), x.size(), 512, 1, scratch);
  EXPECT_EQ(x, orig);
  cz::round_trip_values(ValueCodec::Bf16, x.data(), x.size(), 512, 1, scratch);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(x[i], cz::bf16_to_float(cz::float_to_bf16(orig[i])));
  x = orig;
  cz::round_trip_values(ValueCodec::Qsgd4, x.data(), x.size(), 512, 1, scratch);
  EXPECT_EQ(x, qsgd_round_trip(ValueCodec::Qsgd4, orig, 512, 1));
}

}  // namespace
