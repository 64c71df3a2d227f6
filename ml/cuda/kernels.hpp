// SPDX-License-Identifier: BSD-3-Clause
// The GPU kernels of gradient compression, as host functions that queue
// them on a stream: selection (select.cu) and value codecs, error feedback
// and scatters (codec.cu). Each computes what its CPU counterpart in
// ml/compress/ computes, bit for bit (docs/cuda.md). Arguments named d_*
// are device memory of the current device; nothing here synchronises
// unless it says so.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "src/codec/codec.hpp"
#include "runtime.hpp"

namespace sparcl {
namespace cuda {

// --- error feedback ---

// residual += grad, or with momentum m > 0: velocity = m * velocity + grad,
// residual += velocity (Compressor::compress's accumulation, unfused).
void accumulate(float* d_residual, float* d_velocity, const float* d_grad, size_t n, float momentum,
                cudaStream_t stream);

// After a step sent values at idx[0, m): residual[idx[j]] = 0 with raw
// values (d_sent is not read), else unsent_part(residual[idx[j]], sent[j])
// (ml/compress/scalar.hpp); velocity[idx[j]] = 0 (d_velocity may be null).
// Does nothing if d_failed is not null and *d_failed != kNoPosition (the
// encoding failed).
void settle(float* d_residual, float* d_velocity, const uint32_t* d_idx, const float* d_sent, size_t m, bool raw,
            const unsigned long long* d_failed, cudaStream_t stream);

// --- sparse to dense ---

// out[idx[j]] += val[j] for j < m, with atomic adds: exact where the indices
// are distinct, in an unspecified order where they repeat.
void scatter_add(float* d_out, const uint32_t* d_idx, const float* d_val, size_t m, cudaStream_t stream);

// out[idx[j]] = val[j] for j < m (indices distinct), V float or double, I
// uint32_t or uint64_t.
template <class V, class I>
void scatter(V* d_out, const I* d_idx, const V* d_val, size_t m, cudaStream_t stream);

// --- value codecs ---

constexpr unsigned long long kNoPosition = ~0ull;

// Encodes in[0, n) into out[0, encoded_values_size(codec, n, bucket)), the
// bytes codec::encode_values writes. For QSGD, *d_failed receives the
// smallest position of a NaN or Inf (kNoPosition if none; the codes are then
// unspecified); d_failed is written for every codec.
void encode_values(codec::ValueCodec codec, const float* d_in, size_t n, size_t bucket, uint64_t seed,
                   uint8_t* d_out, unsigned long long* d_failed, cudaStream_t stream);

// Decodes n values that encode_values wrote (no validation: the CPU's
// decode_values validates what crosses to the host).
void decode_values(codec::ValueCodec codec, const uint8_t* d_in, size_t n, size_t bucket, float* d_out,
                   cudaStream_t stream);

// --- selection ---

// The state of one radix select on device (select.cu), for the kernels;
// exposed only so that the Selector can hold it.
struct CutState {
  unsigned long long k, kmax;  // entries still to place inside the bins of `prefix`
  unsigned long long above;    // entries above the range of `prefix`
  unsigned long long selected; // entries the final cut selects
  unsigned long long ties;     // limit_ties: how many entries with key == `key` are selected
  uint32_t prefix;             // key bits decided so far
  uint32_t key;                // the cut: every key > key, and the ties at key
  uint32_t tie_last;           // largest index among the selected ties (all of them: 0xFFFFFFFF)
  uint32_t done;               // the cut is final
  uint32_t limit_ties;         // only the first `ties` entries with key == `key` (by index) are selected
  uint32_t error;              // fewer entries than k were seen (a bug)
};

// Selections on one device, sorted by index with the values copied bit for
// bit, with scratch space reused between calls. The result is valid until
// the next call. Not thread-safe.
class Selector {
 public:
  Selector();

  // Compressor methods on x[0, n) (n < 2^32), queued on `stream`; each
  // returns the number of entries selected, which the host learns through
  // synchronisations on the stream.
  // top-k by magnitude with between k and kmax entries: kmax == k is
  // select_topk, kmax == approx_topk_max_count(k, tol) select_approx_topk.
  size_t topk(const float* d_x, size_t n, size_t k, size_t kmax, cudaStream_t stream);
  // select_threshold: every |x| >= t (t >= 0, not NaN).
  size_t threshold(const float* d_x, size_t n, float t, cudaStream_t stream);
  // select_all.
  size_t all(const float* d_x, size_t n, cudaStream_t stream);
  // The entries at the m sorted indices host_idx (select_randomk's).
  size_t gather(const float* d_x, const uint32_t* host_idx, size_t m, cudaStream_t stream);

  const uint32_t* indices() const { return idx_[out_].get(); }
  const float* values() const { return val_[out_].get(); }

 private:
  enum Slot { kSampleCut = 0, kSubsampleCut = 1, kFinalCut = 2, kSlots = 3 };
  struct Readback {
    unsigned long long count;
    CutState cut;
  };
  void radix_cut(const float* d_v, size_t n, size_t k, size_t kmax, bool exact_key, Slot slot);
  void fixed_cut(uint32_t key, Slot slot);
  // The entries of x (indices = positions) or of pair buffer `from` that pass
  // the cut in `slot` (keys >= its key; with `ties`, its ties limited as it
  // says), into pair buffer `to` with room for `capacity`. Returns how many
  // pass (if more than capacity, only the first capacity were written),
  // after a synchronisation that also reads the cut back.
  size_t compact_dense(const float* d_x, size_t n, Slot slot, int to, size_t capacity, bool ties);
  size_t compact_pairs(int from, size_t n, Slot slot, int to, size_t capacity, bool ties);
  template <class Pred, class Out>
  void select_into(const Pred& pred, const Out& out, size_t n);
  size_t finish_cut(const float* d_x, int from, size_t n, size_t kmax);
  bool refine_by_subsample(size_t c, size_t k, size_t kmax, size_t& count);
  Readback read_back(Slot slot);
  void reserve_pairs(int which, size_t n);
  void* temp(size_t bytes);

  cudaStream_t stream_ = nullptr;
  int blocks_ = 1;  // resident blocks of the histogram kernels
  DeviceArray<uint32_t> idx_[2];
  DeviceArray<float> val_[2];
  int out_ = 0;
  DeviceArray<float> sample_;
  DeviceArray<uint32_t> hist_;
  DeviceArray<CutState> cuts_;
  DeviceArray<unsigned long long> count_;
  DeviceArray<unsigned char> temp_;
  PinnedArray<Readback> readback_;
  PinnedArray<uint32_t> host_idx_;
};

}  // namespace cuda
}  // namespace sparcl
