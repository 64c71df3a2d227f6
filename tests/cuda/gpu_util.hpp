// SPDX-License-Identifier: BSD-3-Clause
// Shared pieces of the GPU tests: the skip rule, and device copies of host
// vectors. Tests that need a GPU skip, with a message, where none is found.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "ml/cuda/runtime.hpp"

namespace gpu_test {

// On a GPU machine, SPARCL_TEST_REQUIRE_GPU=1 turns the skip into a failure,
// so that a driver too old for the CUDA 13 runtime cannot pass as success.
inline bool gpu_required() {
  const char* v = std::getenv("SPARCL_TEST_REQUIRE_GPU");
  return v && *v && std::strcmp(v, "0") != 0;
}

#define SKIP_WITHOUT_GPU()                                                                               \
  do {                                                                                                   \
    if (sparcl::cuda::device_count() == 0) {                                                             \
      if (gpu_test::gpu_required()) FAIL() << "no CUDA device, and SPARCL_TEST_REQUIRE_GPU is set";       \
      GTEST_SKIP() << "no CUDA device (no GPU, no driver, or a driver older than CUDA 13 here): this test " \
                      "runs only on a GPU machine";                                                      \
    }                                                                                                    \
  } while (0)

#define ASSERT_CUDA(call) ASSERT_EQ((call), cudaSuccess) << #call

// A device copy of a host vector (at least one element of room).
template <class T>
class Device {
 public:
  explicit Device(size_t n) : n_(n) { a_.reserve(n); }
  explicit Device(const std::vector<T>& h) : Device(h.size()) {
    if (n_) sparcl::cuda::check(cudaMemcpy(a_.get(), h.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  T* get() const { return a_.get(); }
  size_t size() const { return n_; }
  std::vector<T> host(size_t m) const {
    std::vector<T> h(m);
    if (m) sparcl::cuda::check(cudaMemcpy(h.data(), a_.get(), m * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return h;
  }
  std::vector<T> host() const { return host(n_); }

 private:
  sparcl::cuda::DeviceArray<T> a_;
  size_t n_;
};

template <class T>
std::vector<uint32_t> bits_of(const T* v, size_t n) {
  static_assert(sizeof(T) == 4, "32-bit values");
  std::vector<uint32_t> b(n);
  if (n) std::memcpy(b.data(), v, n * 4);
  return b;
}

}  // namespace gpu_test
