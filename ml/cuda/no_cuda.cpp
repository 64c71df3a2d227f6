// SPDX-License-Identifier: BSD-3-Clause
// sparcl built without CUDA (-DSPARCL_CUDA=OFF, or AUTO without nvcc): the
// functions of include/sparcl/sparcl_cuda.h exist, so that one program can
// ask any build, and return SPARCL_ERR_UNSUPPORTED; no buffer is GPU memory
// (no DeviceStaging is registered: collectives/start.hpp).
#define SPARCL_CUDA_STREAM_TYPE_ONLY
#include "ml/compress/handle.hpp"
#include "sparcl/sparcl_cuda.h"
#include "src/guard.hpp"

using namespace sparcl;

namespace {

constexpr const char* kNoCuda = "sparcl was built without CUDA (configure with -DSPARCL_CUDA=ON)";

sparcl_status_t unsupported(sparcl_comm_t comm, const char* call) {
  return record(comm, SPARCL_ERR_UNSUPPORTED, (std::string(call) + ": " + kNoCuda).c_str());
}

}  // namespace

namespace sparcl {

void bind_stream(sparcl_compressor&, void*) { fail(SPARCL_ERR_UNSUPPORTED, std::string("a CUDA stream was given: ") + kNoCuda); }

}  // namespace sparcl

extern "C" {

int sparcl_cuda_device_count(void) { return 0; }

// NULL arguments are reported first, as in builds with CUDA.
sparcl_status_t sparcl_compressor_create_cuda(const sparcl_compressor_config_t*, uint64_t, int,
                                              sparcl_compressor_t* compressor) {
  if (!compressor) return record(nullptr, SPARCL_ERR_INVALID_ARG, "compressor is NULL");
  *compressor = nullptr;
  return unsupported(nullptr, "sparcl_compressor_create_cuda");
}

sparcl_status_t sparcl_compress_stream(sparcl_compressor_t compressor, const float*, sparcl_sparse_t*, cudaStream_t) {
  if (!compressor) return record(nullptr, SPARCL_ERR_INVALID_ARG, "compressor is NULL");
  return unsupported(nullptr, "sparcl_compress_stream");
}

sparcl_status_t sparcl_allreduce_sparse_stream(const sparcl_sparse_t*, void*, sparcl_result_t*, sparcl_comm_t comm,
                                               cudaStream_t) {
  if (!comm) return null_comm();
  return unsupported(comm, "sparcl_allreduce_sparse_stream");
}

sparcl_status_t sparcl_iallreduce_sparse_stream(const sparcl_sparse_t*, void*, sparcl_result_t*, sparcl_comm_t comm,
                                                cudaStream_t, sparcl_request_t*) {
  if (!comm) return null_comm();
  return unsupported(comm, "sparcl_iallreduce_sparse_stream");
}

}  // extern "C"
