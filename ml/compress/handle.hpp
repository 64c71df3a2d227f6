// SPDX-License-Identifier: BSD-3-Clause
// The compressor behind sparcl_compressor_t, and what the C APIs of
// compress.h and sparcl_cuda.h (ml/cuda/) share: creating a compressor, a
// compressor whose state and steps live on a GPU, and starting the
// compressed allreduce.
#pragma once

#include <cstdint>
#include <memory>

#include "compressor.hpp"
#include "sparcl/compress.h"

struct sparcl_comm;
struct sparcl_request;

namespace sparcl {

// A compressor's state and steps kept outside the host Compressor (in a
// GPU's memory, ml/cuda/). Its steps compute what Compressor::compress
// computes, bit for bit; only where the vectors live differs.
class CompressorBackend {
 public:
  virtual ~CompressorBackend() = default;
  // Compressor::compress(grad, rounding_stream, round_here): the sent vector,
  // in host memory that the backend owns until its next step.
  virtual sparcl_sparse_t compress(const float* grad, uint64_t rounding_stream, bool round_here) = 0;
  // Compressor::sent_as() of the last step (a step of round_here false). The
  // residual takes what it reports at settle().
  virtual void sent_as(size_t first, size_t count, const float* received) = 0;
  // Once the collective of the last step has succeeded: the residual keeps
  // what sent_as() reported, as Compressor::sent_as() leaves it.
  virtual void settle() = 0;
  // Compressor::unsend() of the last step (also after settle()). Never throws.
  virtual void unsend() noexcept = 0;
  virtual float* residual() = 0;
  virtual void reset() = 0;
  // The compressed allreduce hands its sum to the backend: result_slot(out)
  // checks `out` (before the step) and gives the place where the collective
  // puts its result; write_sum(out), called once the collective has
  // delivered it, writes it to `out` and frees it.
  virtual sparcl_result_t* result_slot(const float* out) = 0;
  virtual void write_sum(float* out) = 0;
};

}  // namespace sparcl

struct sparcl_compressor {
  sparcl_compressor(const sparcl::compress::CompressorOptions& o, uint64_t dim, uint32_t stream, bool host_state)
      : impl(o, dim, host_state), rounding_stream(stream) {}
  sparcl::compress::Compressor impl;  // options and k; the state too unless a backend holds it
  uint32_t rounding_stream;
  std::unique_ptr<sparcl::CompressorBackend> backend;  // set by sparcl_compressor_create_cuda()
  // Global selection with a sampled threshold: the magnitude key agreed at
  // the last estimate and how many successful steps have used it (0: none
  // yet; every rank counts alike, since a failed step fails on every rank).
  sparcl_sparse_t last_selection{};  // the last step's selection (nnz and arrays; dim 0 before any step)
  uint32_t global_threshold_key = 0;
  uint32_t global_threshold_uses = 0;
};

namespace sparcl {

// The work of sparcl_compressor_create(): validates `config` (NULL: the
// defaults) and builds a compressor; without host_state, the residual and
// momentum are left to a backend.
sparcl_compressor* new_compressor(const sparcl_compressor_config_t* config, uint64_t dim, bool host_state);

// A CUDA stream (cudaStream_t) given to a stream-ordered call of sparcl_cuda.h.
struct StreamArg {
  void* stream;
};

class AllreducePlan;  // collectives/persistent.hpp

// Starts the compressed allreduce (caller holds the communicator's lock).
// `stream` is null unless the caller gave one; `plan` is set for a run of a
// persistent request (sparcl_allreduce_compressed_init).
sparcl_request* start_compressed(sparcl_comm* comm, sparcl_compressor* compressor, const float* grad, float* out,
                                 const void* request_slot, const StreamArg* stream,
                                 const std::shared_ptr<AllreducePlan>& plan = nullptr);

// Gives `stream` to the compressor's next step (ml/cuda/api.cpp): throws
// SPARCL_ERR_UNSUPPORTED where CUDA is unavailable, SPARCL_ERR_INVALID_ARG
// for a compressor whose state is in host memory.
void bind_stream(sparcl_compressor& compressor, void* stream);

}  // namespace sparcl
