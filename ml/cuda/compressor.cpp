// SPDX-License-Identifier: BSD-3-Clause
#include "compressor.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "src/codec/codec.hpp"
#include "src/codec/scalar.hpp"

namespace sparcl {
namespace cuda {

using compress::Method;
using codec::ValueCodec;

bool device_writable(const void* p, int device) {
  const PointerInfo info = pointer_info(p);
  return (info.memory == Memory::Device && info.device == device) || info.memory == Memory::Managed;
}

namespace {

template <class V, class I>
void scatter_result(sparcl_result_t r, V* out, cudaStream_t stream) {
  const size_t nnz = sparcl_result_nnz(r);
  if (nnz == 0) return;
  // Stream-ordered scratch: freed when the scatter has run. The copies from
  // pageable memory return once the host data is taken.
  void* idx = nullptr;
  void* val = nullptr;
  check(cudaMallocAsync(&idx, nnz * sizeof(I), stream), "cudaMallocAsync");
  const cudaError_t e = cudaMallocAsync(&val, nnz * sizeof(V), stream);
  if (e != cudaSuccess) cudaFreeAsync(idx, stream);
  check(e, "cudaMallocAsync");
  cudaError_t status = cudaMemcpyAsync(idx, sparcl_result_indices(r), nnz * sizeof(I), cudaMemcpyHostToDevice, stream);
  if (status == cudaSuccess)
    status = cudaMemcpyAsync(val, sparcl_result_values(r), nnz * sizeof(V), cudaMemcpyHostToDevice, stream);
  if (status == cudaSuccess) {
    try {
      scatter<V, I>(out, static_cast<const I*>(idx), static_cast<const V*>(val), nnz, stream);
    } catch (...) {
      cudaFreeAsync(idx, stream);
      cudaFreeAsync(val, stream);
      throw;
    }
  }
  cudaFreeAsync(idx, stream);
  cudaFreeAsync(val, stream);
  check(status, "cudaMemcpyAsync (sum to the GPU)");
}

template <class V>
void write_result_as(sparcl_result_t r, V* out, cudaStream_t stream) {
  const size_t dim = size_t(sparcl_result_dim(r));
  if (sparcl_result_is_dense(r)) {
    check(cudaMemcpyAsync(out, sparcl_result_values(r), dim * sizeof(V), cudaMemcpyHostToDevice, stream),
          "cudaMemcpyAsync (sum to the GPU)");
    return;
  }
  // Zeros, then the values at their (distinct) indices: exactly what the
  // host collective writes into a dense host buffer, -0.0 included.
  check(cudaMemsetAsync(out, 0, dim * sizeof(V), stream), "cudaMemsetAsync");
  if (sparcl_result_index_type(r) == SPARCL_INDEX_U32)
    scatter_result<V, uint32_t>(r, out, stream);
  else
    scatter_result<V, uint64_t>(r, out, stream);
}

}  // namespace

void write_result(sparcl_result_t result, void* d_out, cudaStream_t stream) {
  if (sparcl_result_value_type(result) == SPARCL_FLOAT64)
    write_result_as(result, static_cast<double*>(d_out), stream);
  else
    write_result_as(result, static_cast<float*>(d_out), stream);
}

DeviceCompressor::DeviceCompressor(const compress::CompressorOptions& options, uint64_t dim, size_t k, int device)
    : options_(options), dim_(dim), k_(k), device_(device) {
  require(options.method != Method::TopKBucket, SPARCL_ERR_UNSUPPORTED,
          "bucketed top-k (SPARCL_COMPRESS_TOPK_BUCKET) does not run on the GPU: use TOPK or APPROX_TOPK, or a host "
          "compressor");
  DeviceGuard guard(device_);
  const size_t n = size_t(dim);
  if (options_.error_feedback) {
    residual_.reserve(n);
    check(cudaMemset(residual_.get(), 0, n * sizeof(float)), "cudaMemset");
  }
  if (options_.momentum > 0.0f) {
    velocity_.reserve(n);
    check(cudaMemset(velocity_.get(), 0, n * sizeof(float)), "cudaMemset");
  }
  selector_ = std::make_unique<Selector>();
  failed_.reserve(1);
  host_failed_.reserve(1);
  check(cudaEventCreateWithFlags(&step_done_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
}

DeviceCompressor::~DeviceCompressor() {
  if (sum_) sparcl_result_free(sum_);
  cudaEventDestroy(step_done_);
}

void DeviceCompressor::bind(cudaStream_t stream) {
  DeviceGuard guard(device_);
  int stream_device = -1;
  check(cudaStreamGetDevice(stream, &stream_device), "cudaStreamGetDevice (the stream given)");
  if (stream_device != device_)
    fail(SPARCL_ERR_INVALID_ARG, "the stream belongs to CUDA device " + std::to_string(stream_device) +
                                     ", the compressor to device " + std::to_string(device_));
  bound_stream_ = stream;
  bound_ = true;
}

sparcl_result_t* DeviceCompressor::result_slot(const float* out) {
  if (!device_writable(out, device_))
    fail(SPARCL_ERR_INVALID_ARG, "out is not device or managed memory of CUDA device " + std::to_string(device_) +
                                     ", where this compressor lives");
  if (sum_) {  // left by a step whose collective failed
    sparcl_result_free(sum_);
    sum_ = nullptr;
  }
  return &sum_;
}

sparcl_sparse_t DeviceCompressor::compress(const float* grad, uint64_t rounding_stream, bool round_here) {
  const cudaStream_t stream = bound_ ? bound_stream_ : cudaStreamLegacy;
  const bool synchronous = !bound_;
  bound_ = false;
  DeviceGuard guard(device_);
  if (!device_accessible(grad, device_))
    fail(SPARCL_ERR_INVALID_ARG, "grad is not memory of CUDA device " + std::to_string(device_) +
                                     " (where this compressor lives), nor managed or pinned memory");
  if (step_done_pending_) {  // the last allreduce's writes of the residual and the sum, perhaps on another stream
    check(cudaStreamWaitEvent(stream, step_done_, 0), "cudaStreamWaitEvent");
    step_done_pending_ = false;
  }
  const compress::CompressorOptions& o = options_;
  const size_t n = size_t(dim_);
  const float* acc = grad;
  if (o.error_feedback) {
    accumulate(residual_.get(), velocity_.get(), grad, n, o.momentum, stream);
    acc = residual_.get();
  }

  Selector& sel = *selector_;
  size_t m = 0;
  switch (o.method) {
    case Method::None: m = sel.all(acc, n, stream); break;
    case Method::TopK: m = sel.topk(acc, n, k_, k_, stream); break;
    case Method::ApproxTopK:
      m = sel.topk(acc, n, k_, compress::approx_topk_max_count(k_, o.tolerance), stream);
      break;
    case Method::Threshold: m = sel.threshold(acc, n, o.threshold, stream); break;
    case Method::RandomK:
      if (k_ >= n) {
        m = sel.all(acc, n, stream);
      } else {
        randomk_idx_.resize(k_);
        compress::randomk_indices(n, k_, o.seed, step_, randomk_idx_.data(), host_workspace_);
        m = sel.gather(acc, randomk_idx_.data(), k_, stream);
      }
      break;
    case Method::TopKBucket: fail(SPARCL_ERR_UNSUPPORTED, "bucketed top-k does not run on the GPU");
  }

  // Only the indices and the values (encoded, or float32 for the wire) cross to the host.
  host_idx_.reserve(m);
  check(cudaMemcpyAsync(host_idx_.get(), sel.indices(), m * sizeof(uint32_t), cudaMemcpyDeviceToHost, stream),
        "cudaMemcpyAsync");
  const float* values = round_here ? encode_here(m, rounding_stream, stream) : leave_to_the_wire(m, stream);
  rounded_here_ = round_here;
  reported_ = false;
  last_idx_ = sel.indices();
  last_acc_ = sel.values();
  last_count_ = m;
  step_stream_ = stream;
  step_synchronous_ = synchronous;
  ++step_;

  sparcl_sparse_t s{};
  s.dim = dim_;
  s.nnz = m;
  s.index_type = SPARCL_INDEX_U32;
  s.indices = host_idx_.get();
  s.value_type = SPARCL_FLOAT32;
  s.values = values;
  s.flags = 0;
  return s;
}

const float* DeviceCompressor::encode_here(size_t m, uint64_t rounding_stream, cudaStream_t stream) {
  // Encode on the device; the residual keeps what the encoding lost.
  const compress::CompressorOptions& o = options_;
  const Selector& sel = *selector_;
  const bool raw = o.codec == ValueCodec::Raw;
  const size_t bytes = codec::encoded_values_size(o.codec, m, o.quant_bucket);
  encoded_.reserve(bytes);
  encode_values(o.codec, sel.values(), m, o.quant_bucket, compress::rounding_seed(o.seed, step_, rounding_stream),
                encoded_.get(), failed_.get(), stream);
  const float* sent = sel.values();
  if (!raw) {
    sent_.reserve(m);
    decode_values(o.codec, encoded_.get(), m, o.quant_bucket, sent_.get(), stream);
    sent = sent_.get();
  }
  if (o.error_feedback)
    cuda::settle(residual_.get(), o.momentum > 0.0f ? velocity_.get() : nullptr, sel.indices(), sent, m, raw,
                 failed_.get(), stream);
  last_sent_ = sent;

  host_encoded_.reserve(bytes);
  check(cudaMemcpyAsync(host_encoded_.get(), encoded_.get(), bytes, cudaMemcpyDeviceToHost, stream),
        "cudaMemcpyAsync");
  check(cudaMemcpyAsync(host_failed_.get(), failed_.get(), sizeof(unsigned long long), cudaMemcpyDeviceToHost, stream),
        "cudaMemcpyAsync");
  check(cudaStreamSynchronize(stream), "GPU compression step");
  const unsigned long long bad = *host_failed_.get();
  if (bad != kNoPosition) {
    // As the CPU: the gradient stays in the residual, the step does not count.
    float value = 0.0f;
    check(cudaMemcpy(&value, sel.values() + bad, sizeof value, cudaMemcpyDeviceToHost), "cudaMemcpy");
    fail(SPARCL_ERR_INVALID_ARG, "QSGD cannot encode " + std::string(std::isnan(value) ? "NaN" : "Inf") +
                                     " (value at position " + std::to_string(bad) + ")");
  }
  // The sent values, decoded by the CPU's decoder (which also validates the
  // GPU's bytes): what the receivers will see.
  if (raw) return reinterpret_cast<const float*>(host_encoded_.get());
  host_values_.reserve(m);
  codec::decode_values(o.codec, host_encoded_.get(), bytes, m, o.quant_bucket, host_values_.get());
  return host_values_.get();
}

const float* DeviceCompressor::leave_to_the_wire(size_t m, cudaStream_t stream) {
  // Compressor::compress(..., false): the values go as selected, the
  // collective encodes them.
  const compress::CompressorOptions& o = options_;
  const Selector& sel = *selector_;
  host_values_.reserve(m);
  check(cudaMemcpyAsync(host_values_.get(), sel.values(), m * sizeof(float), cudaMemcpyDeviceToHost, stream),
        "cudaMemcpyAsync");
  check(cudaStreamSynchronize(stream), "GPU compression step");
  compress::require_encodable(o.codec, host_idx_.get(), host_values_.get(), m);
  // The residual is 0 on the selection (what the collective does not
  // report reached the sum exactly) until settle(); the momentum is masked.
  if (o.error_feedback)
    cuda::settle(residual_.get(), o.momentum > 0.0f ? velocity_.get() : nullptr, sel.indices(), nullptr, m, true,
                 nullptr, stream);
  return host_values_.get();
}

void DeviceCompressor::sent_as(size_t first, size_t count, const float* received) {
  compress::require_reportable(!rounded_here_, first, count, last_count_);
  if (!options_.error_feedback) return;
  if (!reported_) {
    host_left_.reserve(last_count_);
    std::fill_n(host_left_.get(), last_count_, 0.0f);  // entries never reported reached the sum exactly
    reported_ = true;
  }
  // The arithmetic of Compressor::sent_as, on the host copy of acc; settle() writes it to the GPU.
  const float* acc = host_values_.get() + first;
  float* left = host_left_.get() + first;
  for (size_t j = 0; j < count; ++j) left[j] = codec::unsent_part(acc[j], received[j]);
}

void DeviceCompressor::settle() {
  if (!reported_) return;  // nothing reported: the residual's zeros on the selection stand
  reported_ = false;
  DeviceGuard guard(device_);
  const size_t m = last_count_;
  left_.reserve(m);
  check(cudaMemcpyAsync(left_.get(), host_left_.get(), m * sizeof(float), cudaMemcpyHostToDevice, step_stream_),
        "cudaMemcpyAsync (residual to the GPU)");
  scatter<float, uint32_t>(residual_.get(), last_idx_, left_.get(), m, step_stream_);
}

void DeviceCompressor::unsend() noexcept {
  if (!options_.error_feedback || last_count_ == 0) return;
  try {
    DeviceGuard guard(device_);
    if (rounded_here_)  // the residual holds acc - sent there
      scatter_add(residual_.get(), last_idx_, last_sent_, last_count_, step_stream_);
    else  // it holds only this step's error (or 0): acc itself goes back
      scatter<float, uint32_t>(residual_.get(), last_idx_, last_acc_, last_count_, step_stream_);
    check(cudaStreamSynchronize(step_stream_), "GPU residual restore");
  } catch (...) {
    // Nothing to report to: the collective's own error is what the caller sees.
  }
  last_count_ = 0;
  reported_ = false;
}

void DeviceCompressor::reset() {
  DeviceGuard guard(device_);
  const size_t n = size_t(dim_);
  if (residual_.get()) check(cudaMemset(residual_.get(), 0, n * sizeof(float)), "cudaMemset");
  if (velocity_.get()) check(cudaMemset(velocity_.get(), 0, n * sizeof(float)), "cudaMemset");
  check(cudaDeviceSynchronize(), "reset");
  step_ = 0;
  last_count_ = 0;
  reported_ = false;
  step_done_pending_ = false;
}

void DeviceCompressor::write_sum(float* out) {
  sparcl_result_t r = sum_;
  sum_ = nullptr;
  struct Free {
    sparcl_result_t r;
    ~Free() { sparcl_result_free(r); }
  } free_result{r};
  DeviceGuard guard(device_);
  write_result(r, out, step_stream_);
  if (step_synchronous_) {
    check(cudaStreamSynchronize(step_stream_), "writing the sum to the GPU");
  } else {
    check(cudaEventRecord(step_done_, step_stream_), "cudaEventRecord");
    step_done_pending_ = true;
  }
}

}  // namespace cuda
}  // namespace sparcl
