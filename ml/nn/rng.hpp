// SPDX-License-Identifier: BSD-3-Clause
// A small deterministic random generator (xoshiro256**, seeded by
// splitmix64), so that initialisation and shuffling are the same on every
// platform and standard library (std::*_distribution are not).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace sparcl {
namespace nn {

class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (uint64_t& word : s_) {
      seed += 0x9E3779B97F4A7C15ull;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      word = z ^ (z >> 31);
    }
  }

  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  /// Uniform in [0, 1), 24 random bits.
  float uniform() { return float(next() >> 40) * (1.0f / 16777216.0f); }

  /// Uniform in [lo, hi).
  float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }

  /// Uniform integer in [0, n), n >= 1 (multiply-shift; bias below 2^-32 for n < 2^32).
  uint64_t below(uint64_t n) {
    __extension__ typedef unsigned __int128 u128;  // GCC and Clang; pedantic-clean
    return uint64_t(u128(next()) * n >> 64);
  }

  /// Standard normal (Box-Muller on 53-bit uniforms).
  double normal() {
    const double u1 = (double(next() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = double(next() >> 11) * 0x1.0p-53;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

  /// Fisher-Yates shuffle.
  template <class T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[size_t(below(i))]);
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace nn
}  // namespace sparcl
