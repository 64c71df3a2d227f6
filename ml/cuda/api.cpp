// SPDX-License-Identifier: BSD-3-Clause
// The C API of include/sparcl/sparcl_cuda.h, and the GPU side of the host
// collectives (DeviceStaging, collectives/start.hpp), in builds with CUDA. Every entry point catches
// everything (src/guard.hpp): no exception crosses it.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "collectives/start.hpp"
#include "compressor.hpp"
#include "ml/compress/handle.hpp"
#include "runtime.hpp"
#include "sparcl/sparcl_cuda.h"
#include "src/guard.hpp"
#include "src/input.hpp"
#include "src/operation.hpp"

using namespace sparcl;

namespace sparcl {
namespace cuda {

namespace {

bool is_device_memory(const void* p) { return p && pointer_info(p).memory == Memory::Device; }

// What a sparse allreduce with GPU buffers keeps until its request ends:
// host copies of device input arrays, and the result a device output is
// written from.
struct Staging {
  std::vector<unsigned char> indices, values;
  sparcl_result_t result = nullptr;
  ~Staging() { sparcl_result_free(result); }
};

// Copies a device array to `copy` (after the work queued on `stream`) and
// returns the host address to read instead.
const void* to_host(const void* p, size_t bytes, std::vector<unsigned char>& copy, cudaStream_t stream) {
  if (!is_device_memory(p)) return p;
  copy.resize(bytes);
  check(cudaMemcpyAsync(copy.data(), p, bytes, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (input to the host)");
  return copy.data();
}

// The device a stream belongs to, or that of the first device buffer.
int device_for(const StreamArg* stream, const sparcl_sparse_t* send, const void* dense_recv) {
  int device = -1;
  if (stream) {
    check(cudaStreamGetDevice(static_cast<cudaStream_t>(stream->stream), &device), "cudaStreamGetDevice (the stream given)");
    return device;
  }
  for (const void* p : {send ? send->indices : nullptr, send ? send->values : nullptr, dense_recv}) {
    const PointerInfo info = pointer_info(p);
    if (info.memory == Memory::Device) return info.device;
  }
  check(cudaGetDevice(&device), "cudaGetDevice");
  return device;
}

bool any_device_buffer(const sparcl_sparse_t* send, const void* dense_recv) {
  if (!driver_loaded()) return false;  // the host path's only cost
  if (is_device_memory(dense_recv)) return true;
  return send && (is_device_memory(send->indices) || is_device_memory(send->values));
}

void require_host_buffers(const void* a, const void* b, const char* call) {
  if (driver_loaded() && (is_device_memory(a) || is_device_memory(b)))
    fail(SPARCL_ERR_UNSUPPORTED, std::string(call) +
                                     " takes host buffers only, and was given GPU memory (sparcl_allreduce_sparse() and "
                                     "the compressed allreduce accept device buffers)");
}

sparcl_request* start_allreduce_sparse(CallStart call, const sparcl_sparse_t* send, void* dense_recv,
                                       sparcl_result_t* result, const void* request_slot, const StreamArg* stream,
                                       const CompressedCall* compressed) {
  auto staging = std::make_shared<Staging>();
  sparcl_sparse_t host{};
  bool device_out = false;
  cudaStream_t s = cudaStreamLegacy;
  int device = -1;
  // Like any bad argument, a failed copy fails the call on every rank.
  call.check([&] {
    if (stream) {
      require_device("a CUDA stream was given");
      s = static_cast<cudaStream_t>(stream->stream);
    }
    device = device_for(stream, send, dense_recv);
    DeviceGuard guard(device);
    if (send) {
      host = *send;
      // A header the host collective rejects is left to it (it tells the
      // other ranks); only a valid one is read here.
      bool valid = true;
      try {
        check_sparse_header(send);
      } catch (const Error&) {
        valid = false;
      }
      if (valid && send->nnz > 0) {
        const size_t isize = raw(send->index_type) == SPARCL_INDEX_U32 ? 4 : 8;
        const size_t vsize = raw(send->value_type) == SPARCL_FLOAT32 ? 4 : 8;
        host.indices = to_host(send->indices, send->nnz * isize, staging->indices, s);
        host.values = to_host(send->values, send->nnz * vsize, staging->values, s);
      }
    }
    check(cudaStreamSynchronize(s), "copying the sparse input to the host");
    device_out = is_device_memory(dense_recv) && result == nullptr;
  });
  sparcl_request* r = start_allreduce_sparse_on_host(std::move(call), send ? &host : nullptr,
                                                    device_out ? nullptr : dense_recv,
                                                    device_out ? &staging->result : result, request_slot, compressed);
  r->keep = std::make_shared<std::pair<std::shared_ptr<void>, std::shared_ptr<Staging>>>(std::move(r->keep), staging);
  if (device_out)
    r->deliver = [deliver = std::move(r->deliver), staging, dense_recv, s, device, synchronous = stream == nullptr] {
      deliver();
      DeviceGuard guard(device);
      write_result(staging->result, dense_recv, s);
      if (synchronous) check(cudaStreamSynchronize(s), "writing the sum to the GPU");
    };
  return r;
}

sparcl_request* start_allreduce_sparse_unordered(CallStart call, const sparcl_sparse_t* send, void* dense_recv,
                                                 sparcl_result_t* result, const void* request_slot,
                                                 const CompressedCall* compressed) {
  return start_allreduce_sparse(std::move(call), send, dense_recv, result, request_slot, nullptr, compressed);
}

// The host collectives stage GPU buffers through here (collectives/start.hpp).
const DeviceStaging kStaging{any_device_buffer, require_host_buffers, start_allreduce_sparse_unordered};
[[maybe_unused]] const bool kStagingRegistered = register_device_staging(&kStaging);

// sparcl_allreduce_sparse_stream(): ordered on `stream`.
sparcl_request* start_stream_call(sparcl_comm* comm, const sparcl_sparse_t* send, void* dense_recv,
                                  sparcl_result_t* result, const void* request_slot, const StreamArg* stream) {
  const uint64_t dim = send ? send->dim : 0;
  const uint8_t vt = send ? uint8_t(raw(send->value_type)) : 0;
  return start_allreduce_sparse(CallStart::allreduce(comm, dim, vt), send, dense_recv, result, request_slot, stream,
                                nullptr);
}

}  // namespace
}  // namespace cuda

void bind_stream(sparcl_compressor& compressor, void* stream) {
  cuda::require_device("a CUDA stream was given");
  auto* device = dynamic_cast<cuda::DeviceCompressor*>(compressor.backend.get());
  require(device != nullptr, SPARCL_ERR_INVALID_ARG,
          "a CUDA stream was given for a compressor whose state is in host memory (create it with "
          "sparcl_compressor_create_cuda)");
  device->bind(static_cast<cudaStream_t>(stream));
}

}  // namespace sparcl

extern "C" {

int sparcl_cuda_device_count(void) { return cuda::device_count(); }

sparcl_status_t sparcl_compressor_create_cuda(const sparcl_compressor_config_t* config, uint64_t dim, int device,
                                              sparcl_compressor_t* compressor) {
  if (!compressor) return record(nullptr, SPARCL_ERR_INVALID_ARG, "compressor is NULL");
  *compressor = nullptr;
  return guarded(nullptr, [&] {
    cuda::require_device("sparcl_compressor_create_cuda");
    int ordinal = device;
    if (ordinal == -1) cuda::check(cudaGetDevice(&ordinal), "cudaGetDevice");
    if (ordinal < 0 || ordinal >= cuda::device_count())
      fail(SPARCL_ERR_INVALID_ARG, "device " + std::to_string(device) + " is not a CUDA device of this process (0.." +
                                       std::to_string(cuda::device_count() - 1) + ", or -1 for the current one)");
    std::unique_ptr<sparcl_compressor> c(new_compressor(config, dim, false));
    c->backend = std::make_unique<cuda::DeviceCompressor>(c->impl.options(), c->impl.dim(), c->impl.k(), ordinal);
    *compressor = c.release();
  });
}

sparcl_status_t sparcl_compress_stream(sparcl_compressor_t compressor, const float* grad, sparcl_sparse_t* out,
                                       cudaStream_t stream) {
  if (!compressor) return record(nullptr, SPARCL_ERR_INVALID_ARG, "compressor is NULL");
  const sparcl_status_t bound = guarded(nullptr, [&] { bind_stream(*compressor, stream); });
  if (bound != SPARCL_SUCCESS) return bound;
  const sparcl_status_t status = sparcl_compress(compressor, grad, out);
  static_cast<cuda::DeviceCompressor*>(compressor->backend.get())->unbind();  // if the step never ran
  return status;
}

sparcl_status_t sparcl_allreduce_sparse_stream(const sparcl_sparse_t* send, void* dense_recv,
                                               sparcl_result_t* result, sparcl_comm_t comm, cudaStream_t stream) {
  const StreamArg s{stream};
  return on_comm(comm, [&](auto& lock) {
    run_to_end(cuda::start_stream_call(comm, send, dense_recv, result, &dense_recv, &s), lock);
  });
}

sparcl_status_t sparcl_iallreduce_sparse_stream(const sparcl_sparse_t* send, void* dense_recv,
                                                sparcl_result_t* result, sparcl_comm_t comm, cudaStream_t stream,
                                                sparcl_request_t* request) {
  const StreamArg s{stream};
  return on_comm(comm,
                 [&](auto&) { *request = cuda::start_stream_call(comm, send, dense_recv, result, request, &s); });
}

}  // extern "C"
