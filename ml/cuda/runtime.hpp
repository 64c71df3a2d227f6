// SPDX-License-Identifier: BSD-3-Clause
// The CUDA runtime as sparcl uses it: errors as sparcl::Error, the cached
// device probe, the current-device guard, where a pointer points, and owned
// device and pinned host arrays. Host code; CUDA builds only.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "src/error.hpp"

namespace sparcl {
namespace cuda {

// Throws sparcl::Error unless e is cudaSuccess: SPARCL_ERR_NO_MEMORY when
// an allocation failed, SPARCL_ERR_UNSUPPORTED without a usable driver or
// device, SPARCL_ERR_INVALID_ARG for an invalid value, pointer, device or
// stream, SPARCL_ERR_INTERNAL otherwise; the message names the CUDA error
// and `what`.
void check(cudaError_t e, const char* what);

// CUDA devices usable in this process (0 without a driver or device).
// Probed once with cudaGetDeviceCount, which creates no context.
int device_count();

// Throws SPARCL_ERR_UNSUPPORTED ("<what>: no CUDA device ...") when
// device_count() is 0.
void require_device(const char* what);

// Makes `device` the calling thread's current device for the guard's
// lifetime, and restores the previous one after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
  bool changed_ = false;
};

// Where a pointer points, as the driver sees it.
enum class Memory {
  Host,            // unknown to CUDA: ordinary host memory
  HostRegistered,  // pinned or registered host memory (device-accessible)
  Device,          // device memory of `device`
  Managed          // managed (unified) memory
};
struct PointerInfo {
  Memory memory = Memory::Host;
  int device = -1;
};

// Whether the process has loaded the CUDA driver (whoever loaded it). While
// it has not, no pointer can be device memory.
bool driver_loaded();

// What the driver knows about p (cuPointerGetAttributes). Host for every
// pointer while the process has not loaded the driver: sparcl never loads
// it for this question, since no device memory can exist before then.
PointerInfo pointer_info(const void* p);

// Whether a kernel on `device` may read and write p: device memory of that
// device, managed memory, or pinned host memory.
bool device_accessible(const void* p, int device);

// Where an Array's memory comes from.
struct DeviceMemory {
  static void* allocate(size_t bytes) {
    void* p = nullptr;
    check(cudaMalloc(&p, bytes), "cudaMalloc");
    return p;
  }
  static void release(void* p) noexcept { cudaFree(p); }  // errors at exit (runtime unloaded) are of no use
};
// Pinned (page-locked) host memory: copies from and to the device run at
// full speed and asynchronously.
struct PinnedMemory {
  static void* allocate(size_t bytes) {
    void* p = nullptr;
    check(cudaMallocHost(&p, bytes), "cudaMallocHost");
    return p;
  }
  static void release(void* p) noexcept { cudaFreeHost(p); }
};

// An owned array; reserve() discards the contents when it grows.
template <class T, class Source>
class Array {
 public:
  Array() = default;
  ~Array() { release(); }
  Array(const Array&) = delete;
  Array& operator=(const Array&) = delete;
  Array(Array&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  Array& operator=(Array&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }

  void reserve(size_t n) {
    if (n <= n_ && p_) return;
    release();
    p_ = static_cast<T*>(Source::allocate((n ? n : 1) * sizeof(T)));
    n_ = n;
  }
  T* get() const { return p_; }
  size_t capacity() const { return n_; }

 private:
  void release() noexcept {
    if (p_) Source::release(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  size_t n_ = 0;
};

template <class T>
using DeviceArray = Array<T, DeviceMemory>;
template <class T>
using PinnedArray = Array<T, PinnedMemory>;

}  // namespace cuda
}  // namespace sparcl
