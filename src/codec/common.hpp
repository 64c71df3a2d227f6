// SPDX-License-Identifier: BSD-3-Clause
// Pieces shared by the compression kernels: run-time ISA dispatch, the
// scalar arithmetic of scalar.hpp (magnitude keys, counter-based random
// numbers), and an uninitialised growable array.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include "scalar.hpp"

// Kernels with an AVX2 variant are compiled twice (baseline x86-64 and
// target("avx2")) and picked at run time; results are bit-identical (no FMA).
#if defined(__x86_64__) && defined(__GNUC__)
#define SPARCL_X86_DISPATCH 1
#define SPARCL_TARGET_AVX2 __attribute__((target("avx2,popcnt")))
#define SPARCL_TARGET_AVX512 __attribute__((target("avx512f,avx2,popcnt")))
#endif
#define SPARCL_ALWAYS_INLINE inline __attribute__((always_inline))

namespace sparcl {
namespace codec {

// Whether the AVX-512 variants (of the few kernels that have one) run: true
// when the CPU has AVX-512F; they also need avx2_enabled(). Tests turn it off
// to exercise the other code.
inline bool& avx512_enabled() {
#if defined(SPARCL_X86_DISPATCH)
  static bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
#else
  static bool yes = false;
#endif
  return yes;
}

// Whether the AVX2 variants run: true when the CPU has AVX2; tests set it
// to false to exercise the baseline code.
inline bool& avx2_enabled() {
#if defined(SPARCL_X86_DISPATCH)
  static bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
  }();
#else
  static bool yes = false;
#endif
  return yes;
}

// Uniform integer in [0, range) from a 64-bit draw (Lemire's multiply-shift;
// the bias is at most range / 2^64).
inline uint64_t below(uint64_t draw, uint64_t range) {
  __extension__ typedef unsigned __int128 u128;
  return uint64_t((u128(draw) * range) >> 64);
}

// A growable array of a trivially copyable type whose new elements are left
// uninitialised (std::vector would zero them on every growth), for scratch
// space and outputs that are always written before they are read.
template <class T>
class PodArray {
  static_assert(std::is_trivially_copyable<T>::value, "PodArray holds trivially copyable types");

 public:
  PodArray() = default;
  PodArray(const PodArray&) = delete;
  PodArray& operator=(const PodArray&) = delete;
  PodArray(PodArray&&) noexcept = default;
  PodArray& operator=(PodArray&&) noexcept = default;

  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }

  // Makes room for n elements, keeping the first size() ones.
  void reserve(size_t n) {
    if (n <= capacity_) return;
    size_t cap = capacity_ + capacity_ / 2;
    if (cap < n) cap = n;
    std::unique_ptr<T[]> fresh(new T[cap]);  // default-initialised: no zeroing
    if (size_) std::memcpy(fresh.get(), data_.get(), size_ * sizeof(T));
    data_ = std::move(fresh);
    capacity_ = cap;
  }
  // Sets the size to n; new elements are uninitialised.
  void resize(size_t n) {
    reserve(n);
    size_ = n;
  }
  void clear() { size_ = 0; }
  void swap(PodArray& o) noexcept {
    data_.swap(o.data_);
    std::swap(size_, o.size_);
    std::swap(capacity_, o.capacity_);
  }

 private:
  std::unique_ptr<T[]> data_;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

}  // namespace codec
}  // namespace sparcl
