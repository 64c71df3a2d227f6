// SPDX-License-Identifier: BSD-3-Clause
// The stream-ordered compressed allreduce of include/sparcl/sparcl_cuda.h,
// the same in builds with and without CUDA: start_compressed hands the
// stream to the compressor's step (bind_stream, which fails with
// SPARCL_ERR_UNSUPPORTED where CUDA is unavailable) after the collective has
// taken its sequence number, so that a failing rank tells the others.
#if !SPARCL_HAVE_CUDA
#define SPARCL_CUDA_STREAM_TYPE_ONLY
#endif
#include "ml/compress/handle.hpp"
#include "sparcl/sparcl_cuda.h"
#include "src/guard.hpp"
#include "collectives/start.hpp"

using namespace sparcl;

extern "C" {

sparcl_status_t sparcl_allreduce_compressed_stream(sparcl_comm_t comm, sparcl_compressor_t compressor,
                                                   const float* grad, float* out, cudaStream_t stream) {
  const StreamArg s{stream};
  return on_comm(comm, [&](auto& lock) { run_to_end(start_compressed(comm, compressor, grad, out, &out, &s), lock); });
}

sparcl_status_t sparcl_iallreduce_compressed_stream(sparcl_comm_t comm, sparcl_compressor_t compressor,
                                                    const float* grad, float* out, cudaStream_t stream,
                                                    sparcl_request_t* request) {
  const StreamArg s{stream};
  return on_comm(comm, [&](auto&) { *request = start_compressed(comm, compressor, grad, out, request, &s); });
}

}  // extern "C"
