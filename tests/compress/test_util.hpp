// SPDX-License-Identifier: BSD-3-Clause
// Shared pieces of the compression tests: test vectors from several
// distributions, the sort-based reference top-k, and helpers.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "src/codec/common.hpp"
#include "ml/compress/select.hpp"
#include "src/error.hpp"

namespace ctest {

namespace cz = sparcl::compress;

enum class Dist { Uniform, Normal, Cauchy, Pareto, SmallIntegers, AllEqual, MostlyZero, Specials, Ascending };

inline const char* dist_name(Dist d) {
  switch (d) {
    case Dist::Uniform: return "uniform";
    case Dist::Normal: return "normal";
    case Dist::Cauchy: return "cauchy";
    case Dist::Pareto: return "pareto";
    case Dist::SmallIntegers: return "small_integers";
    case Dist::AllEqual: return "all_equal";
    case Dist::MostlyZero: return "mostly_zero";
    case Dist::Specials: return "specials";
    case Dist::Ascending: return "ascending";
  }
  return "?";
}

// n values of distribution d (signs random where it matters).
inline std::vector<float> make_data(Dist d, size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed * 7919 + uint64_t(d));
  std::vector<float> x(n);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::cauchy_distribution<float> cauchy(0.0f, 1.0f);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  std::uniform_int_distribution<int> small(-8, 8);
  for (size_t i = 0; i < n; ++i) {
    switch (d) {
      case Dist::Uniform: x[i] = uni(rng); break;
      case Dist::Normal: x[i] = normal(rng); break;
      case Dist::Cauchy: x[i] = cauchy(rng); break;
      case Dist::Pareto: {  // shape 1.2, random sign
        const double v = std::pow(1.0 - u01(rng), -1.0 / 1.2);
        x[i] = float(u01(rng) < 0.5 ? -v : v);
        break;
      }
      case Dist::SmallIntegers: x[i] = float(small(rng)); break;  // many ties, +-0
      case Dist::AllEqual: x[i] = (i % 2) ? -0.5f : 0.5f; break;
      case Dist::MostlyZero: x[i] = u01(rng) < 0.02 ? normal(rng) : (u01(rng) < 0.5 ? 0.0f : -0.0f); break;
      case Dist::Specials: {
        const double r = u01(rng);
        if (r < 0.002) x[i] = std::numeric_limits<float>::quiet_NaN();
        else if (r < 0.004) x[i] = -std::numeric_limits<float>::infinity();
        else if (r < 0.006) x[i] = std::numeric_limits<float>::infinity();
        else if (r < 0.05) x[i] = std::numeric_limits<float>::denorm_min() * float(1 + (i % 7));
        else if (r < 0.1) x[i] = -0.0f;
        else x[i] = normal(rng);
        break;
      }
      case Dist::Ascending: x[i] = float(i) * ((i % 3) ? 1.0f : -1.0f); break;
    }
  }
  return x;
}

// Reference top-k: by magnitude key descending, then index ascending; sorted by index.
inline std::vector<uint32_t> reference_topk(const std::vector<float>& x, size_t k) {
  std::vector<uint32_t> order(x.size());
  std::iota(order.begin(), order.end(), 0u);
  k = std::min(k, x.size());
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    const uint32_t ka = cz::magnitude_key(x[a]), kb = cz::magnitude_key(x[b]);
    return ka != kb ? ka > kb : a < b;
  });
  order.resize(k);
  std::sort(order.begin(), order.end());
  return order;
}

inline std::vector<uint32_t> indices_of(const cz::Selection& s) {
  return std::vector<uint32_t>(s.idx.data(), s.idx.data() + s.size());
}

// Indices strictly increasing and < n; values bit-equal to x at them.
inline ::testing::AssertionResult well_formed(const cz::Selection& s, const std::vector<float>& x) {
  for (size_t j = 0; j < s.size(); ++j) {
    if (s.idx[j] >= x.size()) return ::testing::AssertionFailure() << "index " << s.idx[j] << " >= n";
    if (j > 0 && s.idx[j] <= s.idx[j - 1])
      return ::testing::AssertionFailure() << "indices not increasing at position " << j;
    if (cz::float_bits(s.val[j]) != cz::float_bits(x[s.idx[j]]))
      return ::testing::AssertionFailure() << "value at index " << s.idx[j] << " differs";
  }
  return ::testing::AssertionSuccess();
}

// Status of a sparcl::Error thrown by f, or SPARCL_SUCCESS.
template <class F>
sparcl_status_t status_of(F&& f) {
  try {
    f();
  } catch (const sparcl::Error& e) {
    return e.status();
  }
  return SPARCL_SUCCESS;
}

// Runs the body with each kernel variant the CPU has: AVX-512, AVX2, baseline.
template <class F>
void for_each_isa(F&& body) {
  bool& avx2 = cz::avx2_enabled();
  bool& avx512 = cz::avx512_enabled();
  const bool saved2 = avx2, saved512 = avx512;
  for (int level = 2; level >= 0; --level) {
    if ((level == 2 && !(saved512 && saved2)) || (level == 1 && !saved2)) continue;
    avx2 = level >= 1;
    avx512 = level == 2;
    SCOPED_TRACE(level == 2 ? "avx512 kernels" : level == 1 ? "avx2 kernels" : "baseline kernels");
    body();
  }
  avx2 = saved2;
  avx512 = saved512;
}

}  // namespace ctest
