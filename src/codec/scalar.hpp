// SPDX-License-Identifier: BSD-3-Clause
// The scalar arithmetic of the compression kernels that runs both on the CPU
// (ml/compress/) and, compiled by nvcc, on the GPU (ml/cuda/): magnitude
// keys, the counter-based random numbers, the fp16/bf16 conversions, the
// QSGD level of one value and what error feedback keeps of a sent value.
// One definition for both, so that the GPU's codes are the CPU's bit for
// bit. None of these functions computes a*b+c (which nvcc would fuse into
// one rounding), and no GPU kernel is built with flush-to-zero, so every
// float operation rounds as it does on the CPU.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define SPARCL_HD __host__ __device__ __forceinline__
#else
#define SPARCL_HD inline __attribute__((always_inline))
#endif

namespace sparcl {
namespace codec {

SPARCL_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
#endif
}

SPARCL_HD float bits_float(uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(b);
#else
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
#endif
}

// The magnitude key of a float: its bits without the sign. As unsigned
// integers, keys order like |x| for every finite value and infinity, and every
// NaN (whatever its payload) has a key above +Inf's (0x7F800000). All
// selection in ml/compress/ and ml/cuda/ compares keys, never floats, so the
// order is total.
SPARCL_HD uint32_t magnitude_key(float x) { return float_bits(x) & 0x7FFFFFFFu; }

constexpr uint32_t kInfKey = 0x7F800000u;

// What error feedback keeps of the accumulated value `acc` once `sent` went
// out for it (sent as the receivers decode it): acc - sent, or 0 where that
// is not finite (a value that overflowed to Inf, an Inf or NaN that was
// sent), so that one bad step does not poison the later ones.
SPARCL_HD float unsent_part(float acc, float sent) {
  const float left = acc - sent;
  return magnitude_key(left) < kInfKey ? left : 0.0f;
}

// --- counter-based random numbers (no state: the n-th draw is a function of
// (key, n), so any draw can be recomputed anywhere) ---

// SplitMix64's finaliser: a bijection on 64-bit words with full avalanche.
SPARCL_HD uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// MurmurHash3's 32-bit finaliser: a bijection on 32-bit words.
SPARCL_HD uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h;
}

// Key of a stream of 32-bit draws, derived from a 64-bit seed.
struct Key32 {
  uint32_t a, b;
};
SPARCL_HD Key32 key32(uint64_t seed) {
  const uint64_t m = mix64(seed);
  return Key32{uint32_t(m), uint32_t(m >> 32)};
}

// Draw number `counter` of the stream `key`: fmix32 of the counter keyed by
// (a, b). Two 32-bit multiplies, so loops over it vectorise. Within a stream
// the draws are a bijection of the counters (every 32-bit value once per
// 2^32 draws); streams of unrelated keys look independent.
SPARCL_HD uint32_t draw32(Key32 key, uint32_t counter) { return fmix32((counter ^ key.a) + key.b); }

// A 64-bit seed for a sub-stream, e.g. (seed, step) or (seed, step, rank).
SPARCL_HD uint64_t derive_seed(uint64_t seed, uint64_t a, uint64_t b = 0) {
  return mix64(mix64(seed ^ mix64(a)) + b);
}

// Position of sample j of a stratified sample: one pseudo-random position in
// each of s equal strata of [0, n). Stratum j is [j*step, (j+1)*step) >> 32
// with step = n * 2^32 / s (fixed point, no division per sample).
SPARCL_HD uint64_t stratified_position(uint64_t step, Key32 key, uint64_t j) {
  const uint64_t lo = (j * step) >> 32, hi = ((j + 1) * step) >> 32;
  return lo + ((uint64_t(draw32(key, uint32_t(j))) * (hi - lo)) >> 32);
}

// --- float16 / bfloat16 (branch-free, so that the CPU's bulk loops vectorise) ---

SPARCL_HD uint16_t fp16_from_bits(uint32_t u) {
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;
  // Normal results: re-bias the exponent and round the 13 dropped bits to
  // nearest even; a carry out of the mantissa bumps the exponent (up to Inf).
  const uint32_t normal = (u - (uint32_t(127 - 15) << 23) + 0xFFFu + ((u >> 13) & 1u)) >> 13;
  // Subnormal results (|x| < 2^-14): adding 0.5 (2^-1) aligns the value's
  // bits to the half's subnormal grid and lets the FPU round to nearest even.
  const float magic = bits_float(uint32_t(127 - 1) << 23);
  const uint32_t sub = float_bits(bits_float(u) + magic) - float_bits(magic);
  // Inf stays Inf; NaN keeps the top 10 payload bits and becomes quiet.
  const uint32_t special = u > 0x7F800000u ? (0x7E00u | ((u >> 13) & 0x3FFu)) : 0x7C00u;
  uint32_t o = u >= 0x47800000u ? special : (u < 0x38800000u ? sub : normal);
  return uint16_t(o | (sign >> 16));
}

SPARCL_HD uint32_t fp16_to_bits(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7FFFu;
  const uint32_t exp = em & 0x7C00u;
  // Normal: re-bias. Subnormal: the mantissa times 2^-24, exactly, through
  // an integer-to-float conversion. Inf/NaN: all-ones exponent, payload
  // kept, NaN made quiet.
  const uint32_t normal = (em << 13) + (uint32_t(127 - 15) << 23);
  const uint32_t sub = float_bits(float(int32_t(em)) * 0x1p-24f);
  const uint32_t special = 0x7F800000u | ((em & 0x3FFu) << 13) | ((em & 0x3FFu) ? 0x00400000u : 0u);
  const uint32_t o = exp == 0x7C00u ? special : (exp == 0 ? sub : normal);
  return o | sign;
}

SPARCL_HD uint16_t bf16_from_bits(uint32_t u) {
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  const uint32_t nan = (u >> 16) | 0x0040u;
  return uint16_t((u & 0x7FFFFFFFu) > 0x7F800000u ? nan : rounded);
}

SPARCL_HD uint32_t bf16_to_bits(uint16_t h) { return uint32_t(h) << 16; }

// --- QSGD: the code (level + S) of one value, and the value of one code ---

// The code of the value with bits `vb` in a bucket whose scale gives
// inv = S / scale (finite), with the draw `draw` of its position: |x| * inv
// rounded up with probability equal to its fractional part. Comparisons of
// non-negative floats are done on their bits (same order), which keeps the
// CPU's loop free of floating-point compares.
template <int S>
SPARCL_HD uint8_t qsgd_code(uint32_t vb, float inv, uint32_t draw) {
  const int32_t sbits = int32_t(float_bits(float(S)));
  const float a0 = bits_float(vb & 0x7FFFFFFFu) * inv;
  const int32_t ab = int32_t(float_bits(a0));
  const float a = bits_float(uint32_t(ab < sbits ? ab : sbits));  // |x| <= scale, but the product may round above S
  const int32_t l = int32_t(a);
  const float f = a - float(l);
  const float u = float(int32_t(draw >> 8)) * 0x1p-24f;
  const int32_t level = l + (int32_t(float_bits(u)) < int32_t(float_bits(f)) ? 1 : 0);
  return uint8_t(vb >> 31 ? S - level : S + level);
}

// The same in double precision, for buckets whose scale is so small that
// S / scale overflows a float (inv = double(S) / double(scale)).
template <int S>
SPARCL_HD uint8_t qsgd_code_tiny(float x, double inv, uint32_t draw) {
  const double m = (x < 0.0f ? -double(x) : double(x)) * inv;
  const double a = m < double(S) ? m : double(S);
  const int32_t l = int32_t(a);
  const double f = a - double(l);
  const double u = double(draw >> 8) * 0x1p-24;
  const int32_t level = l + (u < f ? 1 : 0);
  return uint8_t(x < 0.0f ? S - level : S + level);
}

// Whether a bucket of this scale decodes in double: a step below FLT_MIN
// (1.17549435e-38f) would lose bits, and near FLT_MAX (3.40282347e+38f) the
// level S times the rounded-up step overflows to Inf (found by fuzzing).
template <int S>
SPARCL_HD bool qsgd_decodes_in_double(float scale) {
  return scale < float(S) * 1.17549435082228750797e-38f || scale > 3.40282346638528859812e+38f / 2;
}

// The value of a code in a bucket of step = scale / S (qsgd_decodes_in_double
// false), and in a bucket that decodes in double.
template <int S>
SPARCL_HD float qsgd_value(uint8_t code, float step) {
  return float(int32_t(code) - S) * step;
}
template <int S>
SPARCL_HD float qsgd_value_in_double(uint8_t code, float scale) {
  return float(double(int32_t(code) - S) * double(scale) / S);
}

}  // namespace codec
}  // namespace sparcl
