// SPDX-License-Identifier: BSD-3-Clause
// The C API of include/sparcl/compress.h. Every entry point catches
// everything (src/guard.hpp): no exception crosses it.
#include <algorithm>
#include <cstdint>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "compressor.hpp"
#include "guard.hpp"
#include "handle.hpp"
#include "input.hpp"
#include "collectives/persistent.hpp"
#include "collectives/start.hpp"
#include "sparcl/compress.h"

using namespace sparcl;
using sparcl::compress::Compressor;
using sparcl::compress::CompressorOptions;

namespace {

// SPARCL_SELECTION: `local` or `global` (unset or empty: local).
int selection_from_environment() {
  const char* e = std::getenv("SPARCL_SELECTION");
  if (!e || !*e) return SPARCL_SELECTION_LOCAL;
  const std::string v = e;
  if (v == "local") return SPARCL_SELECTION_LOCAL;
  if (v == "global") return SPARCL_SELECTION_GLOBAL;
  fail(SPARCL_ERR_INVALID_ARG, "SPARCL_SELECTION=" + v + ": expected local or global");
}

CompressorOptions options_from(const sparcl_compressor_config_t& c) {
  const int method = raw(c.method);
  if (method < SPARCL_COMPRESS_NONE || method > SPARCL_COMPRESS_RANDOMK)
    fail(SPARCL_ERR_INVALID_ARG, "config.method is not a sparcl_compress_method_t");
  const int values = raw(c.values);
  if (!codec::is_value_codec(values))
    fail(SPARCL_ERR_INVALID_ARG, "config.values is not a sparcl_value_encoding_t");
  if (c.error_feedback != 0 && c.error_feedback != 1)
    fail(SPARCL_ERR_INVALID_ARG, "config.error_feedback must be 0 or 1");
  if (c.k == 0 && !(c.density > 0.0 && c.density <= 1.0))
    fail(SPARCL_ERR_INVALID_ARG, "config.density must lie in (0, 1] (or set config.k)");
  if (!(c.threshold >= 0.0f)) fail(SPARCL_ERR_INVALID_ARG, "config.threshold must be >= 0 (and not NaN)");
  if (c.bucket_size == 0) fail(SPARCL_ERR_INVALID_ARG, "config.bucket_size must be at least 1");
  if (c.quantization_bucket == 0) fail(SPARCL_ERR_INVALID_ARG, "config.quantization_bucket must be at least 1");
  if (!(c.momentum >= 0.0f && c.momentum < 1.0f)) fail(SPARCL_ERR_INVALID_ARG, "config.momentum must lie in [0, 1)");
  if (c.momentum > 0.0f && !c.error_feedback)
    fail(SPARCL_ERR_INVALID_ARG, "config.momentum needs config.error_feedback = 1");
  CompressorOptions o;
  o.method = compress::Method(method);
  o.k = c.k;
  o.density = c.density;
  o.threshold = c.threshold;
  o.bucket = c.bucket_size;
  o.codec = codec::ValueCodec(values);
  o.quant_bucket = c.quantization_bucket;
  o.error_feedback = c.error_feedback == 1;
  o.momentum = c.momentum;
  o.seed = c.seed;
  int selection = raw(c.selection);
  if (selection == SPARCL_SELECTION_DEFAULT) selection = selection_from_environment();
  if (selection != SPARCL_SELECTION_LOCAL && selection != SPARCL_SELECTION_GLOBAL)
    fail(SPARCL_ERR_INVALID_ARG, "config.selection is not a sparcl_selection_t");
  const int threshold = raw(c.global_threshold);
  if (threshold != SPARCL_THRESHOLD_SAMPLED && threshold != SPARCL_THRESHOLD_EXACT)
    fail(SPARCL_ERR_INVALID_ARG, "config.global_threshold is not a sparcl_global_threshold_t");
  if (c.threshold_reuse == 0) fail(SPARCL_ERR_INVALID_ARG, "config.threshold_reuse must be at least 1");
  o.global = selection == SPARCL_SELECTION_GLOBAL;
  o.exact_threshold = threshold == SPARCL_THRESHOLD_EXACT;
  o.threshold_reuse = c.threshold_reuse;
  return o;
}

// The compressor's current selection as a caller-facing sparse vector.
sparcl_sparse_t as_sparse(const sparcl_compressor& c, const compress::Selection& sel) {
  sparcl_sparse_t s{};
  s.dim = c.impl.dim();
  s.nnz = sel.size();
  s.index_type = SPARCL_INDEX_U32;
  s.indices = sel.idx.data();
  s.value_type = SPARCL_FLOAT32;
  s.values = sel.val.data();
  s.flags = 0;
  return s;
}

sparcl_status_t null_compressor() { return record(nullptr, SPARCL_ERR_INVALID_ARG, "compressor is NULL"); }

// --- compressors whose state lives on a GPU (sparcl_compressor_create_cuda,
// ml/cuda/): their backend runs the step and stages the sum ---

sparcl_sparse_t compress_step(sparcl_compressor& c, const float* grad, uint64_t stream, bool round_here) {
  c.last_selection = c.backend ? c.backend->compress(grad, stream, round_here)
                               : as_sparse(c, c.impl.compress(grad, stream, round_here));
  return c.last_selection;
}

void sent_as_step(sparcl_compressor& c, size_t first, size_t count, const float* received) {
  if (c.backend)
    c.backend->sent_as(first, count, received);
  else
    c.impl.sent_as(first, count, received);
}

void unsend_step(sparcl_compressor& c) {
  if (c.backend)
    c.backend->unsend();
  else
    c.impl.unsend();
}

// Rounding streams: ranks use their rank (< 2^31); sparcl_compress() callers
// their config.rounding_stream, kept apart from the ranks' by bit 32.
uint64_t local_stream(uint32_t s) { return (uint64_t(1) << 32) | s; }

template <class I>
void scatter(const sparcl_sparse_t& s, float* dense) {
  const I* idx = static_cast<const I*>(s.indices);
  const float* val = static_cast<const float*>(s.values);
  const bool unsorted = s.flags & SPARCL_SPARSE_UNSORTED;
  for (size_t k = 0; k < s.nnz; ++k) {
    const uint64_t i = uint64_t(idx[k]);
    if (i >= s.dim)
      fail(SPARCL_ERR_INVALID_ARG, "index " + std::to_string(i) + " at position " + std::to_string(k) +
                                       " is >= dim " + std::to_string(s.dim));
    if (!unsorted && k > 0 && idx[k] <= idx[k - 1])
      fail(SPARCL_ERR_INVALID_ARG,
           std::string(idx[k] == idx[k - 1] ? "duplicate" : "unsorted") + " index " + std::to_string(i) +
               " at position " + std::to_string(k) +
               " (indices must be strictly increasing, or set SPARCL_SPARSE_UNSORTED)");
  }
  std::fill(dense, dense + s.dim, 0.0f);
  if (unsorted)
    for (size_t k = 0; k < s.nnz; ++k) dense[idx[k]] += val[k];
  else
    for (size_t k = 0; k < s.nnz; ++k) dense[idx[k]] = val[k];
}

}  // namespace

namespace {

// The compressed allreduce with global selection (collectives/global_select.cpp):
// the same start-and-fail path, and on success the residual takes back what
// this rank selected but the sum did not keep.
sparcl_request* start_global_compressed(sparcl_comm* comm, sparcl_compressor* compressor, const float* grad,
                                        float* out, const void* request_slot, const StreamArg* stream,
                                        CompressedCall options) {
  const compress::CompressorOptions& o = compressor->impl.options();
  CallStart call = CallStart::global_select(comm, compressor->impl.dim(), options);
  GlobalSelectPolicy policy;
  policy.exact = o.exact_threshold;
  policy.k = compressor->impl.k();
  policy.reuse = o.threshold_reuse;
  policy.refresh = compressor->global_threshold_uses == 0 || compressor->global_threshold_uses >= o.threshold_reuse;
  policy.threshold_key = compressor->global_threshold_key;
  sparcl_sparse_t send{};
  call.check([&] {
    require(request_slot != nullptr, SPARCL_ERR_INVALID_ARG, "request is NULL");
    require(grad != nullptr, SPARCL_ERR_INVALID_ARG, "grad is NULL");
    require(out != nullptr, SPARCL_ERR_INVALID_ARG, "out is NULL");
    if (stream || compressor->backend)
      fail(SPARCL_ERR_UNSUPPORTED,
           "global selection (SPARCL_SELECTION_GLOBAL) is not supported by compressors whose state lives on a GPU "
           "(sparcl_compressor_create_cuda); use local selection there");
    send = compress_step(*compressor, grad, uint64_t(comm->transport().rank()), false);
  });
  const bool exact = policy.exact;
  sparcl_request* r = nullptr;
  try {
    r = start_global_select(std::move(call), &send, out, request_slot, options, policy,
                            [compressor, exact](const GlobalSelectOutcome& outcome) {
                              compressor->impl.keep_only(outcome.kept.data(), outcome.kept.size());
                              if (exact) return;
                              if (outcome.estimated) {
                                compressor->global_threshold_key = outcome.threshold_key;
                                compressor->global_threshold_uses = 0;
                              }
                              ++compressor->global_threshold_uses;
                            });
  } catch (...) {
    unsend_step(*compressor);  // nothing was delivered: keep it for the next step
    throw;
  }
  r->on_failure = [then = std::move(r->on_failure), compressor] {
    unsend_step(*compressor);
    if (then) then();
  };
  return r;
}

}  // namespace

// The call takes its places (start.hpp) before anything can fail, with the
// compressor's encoding, so that a step that fails here (a bad argument, a
// failed compression) fails on every rank with its cause. The request puts
// the step's values back into the residual if it fails, so that a retried
// step loses nothing.
sparcl_request* sparcl::start_compressed(sparcl_comm* comm, sparcl_compressor* compressor, const float* grad,
                                         float* out, const void* request_slot, const StreamArg* stream,
                                         const std::shared_ptr<AllreducePlan>& plan) {
  CompressedCall options;
  if (compressor) {
    const compress::CompressorOptions& o = compressor->impl.options();
    options.encoding = o.codec;
    // Messages hold fewer than 2^32 values, so a larger bucket is the same as 2^32 - 1.
    options.bucket = codec::qsgd_bits(o.codec) ? uint32_t(std::min<size_t>(o.quant_bucket, UINT32_MAX)) : 0;
    // The collective encodes the values with the compressor's encoding and
    // reports what each piece became, so the residual keeps exactly the
    // error of what went on the wire.
    options.input_sent = [compressor](size_t first, size_t count, const float* received) {
      sent_as_step(*compressor, first, count, received);
    };
  }
  // Global selection runs its own rounds (collectives/global_select.cpp):
  // a persistent plan of it starts one such collective per run.
  if (compressor && compressor->impl.options().global)
    return start_global_compressed(comm, compressor, grad, out, request_slot, stream, std::move(options));
  const uint64_t dim = compressor ? compressor->impl.dim() : 0;
  const CompressedCall* compressed = compressor ? &options : nullptr;
  CallStart call = plan ? plan->next_call(dim, SPARCL_FLOAT32, compressed)
                        : CallStart::allreduce(comm, dim, SPARCL_FLOAT32, compressed);
  sparcl_sparse_t send{};
  sparcl_result_t* staged = nullptr;  // a backend's place for the sum
  call.check([&] {
    require(request_slot != nullptr, SPARCL_ERR_INVALID_ARG, "request is NULL");
    require(compressor != nullptr, SPARCL_ERR_INVALID_ARG, "compressor is NULL");
    require(grad != nullptr, SPARCL_ERR_INVALID_ARG, "grad is NULL");
    require(out != nullptr, SPARCL_ERR_INVALID_ARG, "out is NULL");
    if (stream) bind_stream(*compressor, stream->stream);
    if (compressor->backend) staged = compressor->backend->result_slot(out);
    send = compress_step(*compressor, grad, uint64_t(comm->transport().rank()), false);
  });
  sparcl_request* r = nullptr;
  CompressorBackend* backend = compressor->backend.get();
  try {
    r = start_allreduce_sparse(std::move(call), &send, staged ? nullptr : out, staged, request_slot, &options);
  } catch (...) {
    unsend_step(*compressor);  // nothing was delivered: keep it for the next step
    throw;
  }
  // Set before the lock is released, so before the engine can end the request.
  if (backend) r->deliver = [deliver = std::move(r->deliver), backend, out] {
    deliver();
    backend->settle();
    backend->write_sum(out);
  };
  r->on_failure = [then = std::move(r->on_failure), compressor] {
    unsend_step(*compressor);
    if (then) then();
  };
  if (plan) plan->follow(r, plan);
  return r;
}

sparcl_compressor* sparcl::new_compressor(const sparcl_compressor_config_t* config, uint64_t dim, bool host_state) {
  sparcl_compressor_config_t c = SPARCL_COMPRESSOR_CONFIG_INIT;
  if (config) {
    // Configs from older headers are shorter: fields past their end keep
    // their defaults. This is the first version: every field is required.
    constexpr size_t kOldest = offsetof(sparcl_compressor_config_t, rounding_stream) + sizeof(uint32_t);
    if (config->struct_size < kOldest)
      fail(SPARCL_ERR_INVALID_ARG, "config.struct_size is too small: initialise it with SPARCL_COMPRESSOR_CONFIG_INIT");
    std::memcpy(&c, config, std::min(config->struct_size, sizeof c));
    c.struct_size = sizeof c;
  }
  return new sparcl_compressor(options_from(c), dim, c.rounding_stream, host_state);
}

extern "C" {

sparcl_status_t sparcl_compressor_config_init(sparcl_compressor_config_t* config) {
  if (!config) return record(nullptr, SPARCL_ERR_INVALID_ARG, "config is NULL");
  *config = sparcl_compressor_config_t SPARCL_COMPRESSOR_CONFIG_INIT;
  return SPARCL_SUCCESS;
}

sparcl_status_t sparcl_compressor_create(const sparcl_compressor_config_t* config, uint64_t dim,
                                         sparcl_compressor_t* compressor) {
  if (!compressor) return record(nullptr, SPARCL_ERR_INVALID_ARG, "compressor is NULL");
  *compressor = nullptr;
  return guarded(nullptr, [&] { *compressor = new_compressor(config, dim, true); });
}

sparcl_status_t sparcl_compressor_free(sparcl_compressor_t compressor) {
  delete compressor;
  return SPARCL_SUCCESS;
}

sparcl_status_t sparcl_compress(sparcl_compressor_t compressor, const float* grad, sparcl_sparse_t* out) {
  if (!compressor) return null_compressor();
  return guarded(nullptr, [&] {
    require(grad != nullptr, SPARCL_ERR_INVALID_ARG, "grad is NULL");
    require(out != nullptr, SPARCL_ERR_INVALID_ARG, "out is NULL");
    *out = compress_step(*compressor, grad, local_stream(compressor->rounding_stream), true);
  });
}

sparcl_status_t sparcl_decompress(const sparcl_sparse_t* sparse, float* dense) {
  return guarded(nullptr, [&] {
    check_sparse_header(sparse);
    require(raw(sparse->value_type) == SPARCL_FLOAT32, SPARCL_ERR_INVALID_ARG,
            "sparcl_decompress writes float32: value_type must be SPARCL_FLOAT32");
    require(dense != nullptr, SPARCL_ERR_INVALID_ARG, "dense is NULL");
    if (raw(sparse->index_type) == SPARCL_INDEX_U32)
      scatter<uint32_t>(*sparse, dense);
    else
      scatter<uint64_t>(*sparse, dense);
  });
}

sparcl_status_t sparcl_allreduce_compressed(sparcl_comm_t comm, sparcl_compressor_t compressor, const float* grad,
                                            float* out) {
  return on_comm(comm,
                 [&](auto& lock) { run_to_end(start_compressed(comm, compressor, grad, out, &out, nullptr), lock); });
}

sparcl_status_t sparcl_iallreduce_compressed(sparcl_comm_t comm, sparcl_compressor_t compressor, const float* grad,
                                             float* out, sparcl_request_t* request) {
  return on_comm(comm, [&](auto&) { *request = start_compressed(comm, compressor, grad, out, request, nullptr); });
}

sparcl_status_t sparcl_allreduce_compressed_init(sparcl_comm_t comm, sparcl_compressor_t compressor, const float* grad,
                                                 float* out, sparcl_request_t* request) {
  if (!comm) return null_comm();
  auto lock = comm->lock();
  return guarded(comm, [&] {
    require(request != nullptr, SPARCL_ERR_INVALID_ARG, "request is NULL");
    *request = nullptr;
    require(compressor != nullptr, SPARCL_ERR_INVALID_ARG, "compressor is NULL");
    require(grad != nullptr, SPARCL_ERR_INVALID_ARG, "grad is NULL");
    require(out != nullptr, SPARCL_ERR_INVALID_ARG, "out is NULL");
    auto plan = std::make_shared<AllreducePlan>(comm);
    *request = new_persistent_request(comm, [=] {
      try {
        return start_compressed(comm, compressor, grad, out, plan.get(), nullptr, plan);
      } catch (...) {
        plan->start_failed();
        throw;
      }
    });
  });
}

float* sparcl_compressor_residual(sparcl_compressor_t compressor) {
  if (!compressor) return nullptr;
  return compressor->backend ? compressor->backend->residual() : compressor->impl.residual();
}

sparcl_status_t sparcl_compressor_selection(sparcl_compressor_t compressor, sparcl_sparse_t* out) {
  if (!compressor) return null_compressor();
  return guarded(nullptr, [&] {
    require(out != nullptr, SPARCL_ERR_INVALID_ARG, "out is NULL");
    require(compressor->last_selection.dim != 0, SPARCL_ERR_INVALID_ARG, "the compressor has made no step yet");
    *out = compressor->last_selection;
  });
}

sparcl_status_t sparcl_compressor_reset(sparcl_compressor_t compressor) {
  if (!compressor) return null_compressor();
  return guarded(nullptr, [&] {
    if (compressor->backend)
      compressor->backend->reset();
    else
      compressor->impl.reset();
    compressor->global_threshold_key = 0;
    compressor->global_threshold_uses = 0;
  });
}

}  // extern "C"
