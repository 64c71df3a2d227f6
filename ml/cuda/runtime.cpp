// SPDX-License-Identifier: BSD-3-Clause
#include "runtime.hpp"

#include <cuda.h>  // types of the driver's pointer query only; the driver itself is found with dlopen
#include <dlfcn.h>
#include <link.h>

#include <atomic>
#include <cstring>
#include <string>

namespace sparcl {
namespace cuda {

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear a non-sticky error so that later calls do not report it again
  sparcl_status_t status = SPARCL_ERR_INTERNAL;
  switch (e) {
    case cudaErrorMemoryAllocation: status = SPARCL_ERR_NO_MEMORY; break;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorNotSupported:
    case cudaErrorStubLibrary: status = SPARCL_ERR_UNSUPPORTED; break;
    case cudaErrorInvalidValue:
    case cudaErrorInvalidDevice:
    case cudaErrorInvalidDevicePointer:
    case cudaErrorInvalidResourceHandle: status = SPARCL_ERR_INVALID_ARG; break;
    default: break;
  }
  fail(status, std::string(what) + ": CUDA error " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

int device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return n;
  }();
  return count;
}

void require_device(const char* what) {
  if (device_count() == 0)
    fail(SPARCL_ERR_UNSUPPORTED,
         std::string(what) + ": no CUDA device is available (no GPU, or no CUDA driver on this machine)");
}

DeviceGuard::DeviceGuard(int device) {
  check(cudaGetDevice(&previous_), "cudaGetDevice");
  if (previous_ != device) {
    check(cudaSetDevice(device), "cudaSetDevice");
    changed_ = true;
  }
}

DeviceGuard::~DeviceGuard() {
  if (changed_) cudaSetDevice(previous_);
}

namespace {

using PointerGetAttributes = CUresult (*)(unsigned int, CUpointer_attribute*, void**, CUdeviceptr);

// The count of shared objects the dynamic loader has loaded so far.
unsigned long long loads_so_far() {
  unsigned long long adds = 0;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        *static_cast<unsigned long long*>(out) = info->dlpi_adds;
        return 1;  // the first object carries the count: stop there
      },
      &adds);
  return adds;
}

// Whether an object named libcuda.so* is loaded.
bool driver_is_loaded() {
  bool found = false;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        const char* slash = info->dlpi_name ? std::strrchr(info->dlpi_name, '/') : nullptr;
        const char* base = slash ? slash + 1 : info->dlpi_name;
        if (base && std::strncmp(base, "libcuda.so", 10) == 0) *static_cast<bool*>(out) = true;
        return *static_cast<bool*>(out) ? 1 : 0;
      },
      &found);
  return found;
}

// cuPointerGetAttributes of the driver, if the process has loaded it (by
// any runtime: the application's or sparcl's own). Found once, then cached.
// Until then a call costs a look at the loader's count of loaded objects:
// the list of objects is searched again only after something was loaded
// (dlopen, even with RTLD_NOLOAD, would search the file system each time).
PointerGetAttributes loaded_driver() {
  static std::atomic<PointerGetAttributes> cached{nullptr};
  static std::atomic<unsigned long long> searched_at{~0ull};
  PointerGetAttributes f = cached.load(std::memory_order_acquire);
  if (f) return f;
  const unsigned long long loads = loads_so_far();
  if (loads == searched_at.load(std::memory_order_relaxed)) return nullptr;
  if (!driver_is_loaded()) {
    searched_at.store(loads, std::memory_order_relaxed);
    return nullptr;
  }
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
  if (!lib) return nullptr;
  f = reinterpret_cast<PointerGetAttributes>(dlsym(lib, "cuPointerGetAttributes"));
  if (!f) {
    dlclose(lib);
    return nullptr;
  }
  cached.store(f, std::memory_order_release);  // the handle stays open: the driver stays loaded anyway
  return f;
}

}  // namespace

bool driver_loaded() { return loaded_driver() != nullptr; }

PointerInfo pointer_info(const void* p) {
  PointerInfo info;
  if (!p) return info;
  const PointerGetAttributes query = loaded_driver();
  if (!query) return info;
  unsigned int type = 0, managed = 0;
  int ordinal = -1;
  CUpointer_attribute attributes[3] = {CU_POINTER_ATTRIBUTE_MEMORY_TYPE, CU_POINTER_ATTRIBUTE_IS_MANAGED,
                                       CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL};
  void* data[3] = {&type, &managed, &ordinal};
  // Pointers the driver does not know come back with empty attributes;
  // errors (driver not initialised, no context) mean no device memory.
  if (query(3, attributes, data, CUdeviceptr(reinterpret_cast<uintptr_t>(p))) != CUDA_SUCCESS) return info;
  if (managed)
    info.memory = Memory::Managed;
  else if (type == CU_MEMORYTYPE_DEVICE)
    info.memory = Memory::Device;
  else if (type == CU_MEMORYTYPE_HOST)
    info.memory = Memory::HostRegistered;
  info.device = ordinal;
  return info;
}

bool device_accessible(const void* p, int device) {
  const PointerInfo info = pointer_info(p);
  switch (info.memory) {
    case Memory::Device: return info.device == device;
    case Memory::Managed:
    case Memory::HostRegistered: return true;
    case Memory::Host: return false;
  }
  return false;
}

}  // namespace cuda
}  // namespace sparcl
