// SPDX-License-Identifier: BSD-3-Clause
// A compressor whose state lives in a GPU's memory (sparcl_compressor_create_cuda):
// the backend of ml/compress/handle.hpp that runs Compressor::compress's
// step on the device, and stages the allreduce's sum back into device
// memory. Host code; CUDA builds only.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <vector>

#include "kernels.hpp"
#include "ml/compress/handle.hpp"
#include "ml/compress/select.hpp"
#include "runtime.hpp"

namespace sparcl {
namespace cuda {

// Writes a sum (a host result of the sparse allreduce) into dim values at
// `d_out` (device or managed memory of the current device), on `stream`:
// zeros and a scatter of the sparse form, or one copy of the dense form.
// The result may be freed when this returns.
void write_result(sparcl_result_t result, void* d_out, cudaStream_t stream);

// Whether kernels and copies of `device` may write dim values at p: device
// memory of that device, or managed memory.
bool device_writable(const void* p, int device);

class DeviceCompressor final : public CompressorBackend {
 public:
  // options and k as validated by a host Compressor (which holds no state).
  DeviceCompressor(const compress::CompressorOptions& options, uint64_t dim, size_t k, int device);
  ~DeviceCompressor() override;

  // round_here true: selects, encodes and decodes on the GPU, and the
  // residual is settled before this returns. false (the compressed
  // allreduce): only the selection's indices and float32 values cross to the
  // host; the residual is 0 on the selection until settle() writes there,
  // on the step's stream, what sent_as() reported.
  sparcl_sparse_t compress(const float* grad, uint64_t rounding_stream, bool round_here) override;
  void sent_as(size_t first, size_t count, const float* received) override;
  void settle() override;
  void unsend() noexcept override;
  float* residual() override { return residual_.get(); }
  void reset() override;
  sparcl_result_t* result_slot(const float* out) override;
  void write_sum(float* out) override;

  // The stream of the next step and of the write of its sum. Without one, a
  // step runs on the legacy default stream and its sum is written before
  // the collective completes.
  void bind(cudaStream_t stream);
  void unbind() { bound_ = false; }
  int device() const { return device_; }

 private:
  compress::CompressorOptions options_;
  uint64_t dim_;
  size_t k_;
  int device_;
  uint64_t step_ = 0;
  DeviceArray<float> residual_, velocity_;
  std::unique_ptr<Selector> selector_;
  compress::SelectWorkspace host_workspace_;  // random-k indices are drawn on the host
  std::vector<uint32_t> randomk_idx_;
  DeviceArray<uint8_t> encoded_;
  DeviceArray<float> sent_;
  DeviceArray<unsigned long long> failed_;
  PinnedArray<uint32_t> host_idx_;
  PinnedArray<uint8_t> host_encoded_;
  PinnedArray<float> host_values_;  // the sent vector's values (for the wire: acc)
  PinnedArray<unsigned long long> host_failed_;
  PinnedArray<float> host_left_;  // what sent_as() leaves in the residual, per entry
  DeviceArray<float> left_;

  // The last step, for sent_as(), settle(), unsend() and write_sum().
  const uint32_t* last_idx_ = nullptr;
  const float* last_acc_ = nullptr;   // the selected values of acc (device)
  const float* last_sent_ = nullptr;  // what was sent, where this compressor rounded (device)
  size_t last_count_ = 0;
  bool rounded_here_ = true;
  bool reported_ = false;  // sent_as() was called since the step
  cudaStream_t step_stream_ = nullptr;
  bool step_synchronous_ = true;
  // Recorded after the work a compressed allreduce queues on step_stream_
  // when it ends (settle() and write_sum()), which the next step waits for
  // if it runs on another stream.
  cudaEvent_t step_done_ = nullptr;
  bool step_done_pending_ = false;

  cudaStream_t bound_stream_ = nullptr;
  bool bound_ = false;
  sparcl_result_t sum_ = nullptr;

  // The two ends of compress(): both synchronise with the stream and return
  // the sent vector's values in host memory.
  const float* encode_here(size_t m, uint64_t rounding_stream, cudaStream_t stream);
  const float* leave_to_the_wire(size_t m, cudaStream_t stream);
};

}  // namespace cuda
}  // namespace sparcl
