// SPDX-License-Identifier: BSD-3-Clause
// Value codecs, error feedback and scatters on the GPU (kernels.hpp). The
// per-value arithmetic is ml/compress/scalar.hpp's, shared with the CPU;
// the error feedback spells out its roundings (__fmul_rn, __fadd_rn) so that
// nvcc does not fuse them into one.
#include <algorithm>
#include <string>

#include "kernels.hpp"
#include "src/codec/scalar.hpp"

namespace sparcl {
namespace cuda {

namespace {

using namespace sparcl::codec;

constexpr int kThreads = 256;

int grid_for(size_t n) { return int(std::min<size_t>((n + kThreads - 1) / kThreads, size_t(1) << 30)); }

__device__ uint64_t thread_index() { return uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; }

__global__ void accumulate_kernel(float* r, float* u, const float* g, uint64_t n, float m) {
  const uint64_t i = thread_index();
  if (i >= n) return;
  if (u) {
    const float v = __fadd_rn(__fmul_rn(m, u[i]), g[i]);
    u[i] = v;
    r[i] = __fadd_rn(r[i], v);
  } else {
    r[i] = __fadd_rn(r[i], g[i]);
  }
}

__global__ void settle_kernel(float* r, float* u, const uint32_t* idx, const float* sent, uint64_t m, bool raw,
                              const unsigned long long* failed) {
  const uint64_t j = thread_index();
  if (j >= m || (failed && *failed != kNoPosition)) return;
  const uint32_t i = idx[j];
  r[i] = raw ? 0.0f : unsent_part(r[i], sent[j]);
  if (u) u[i] = 0.0f;
}

__global__ void scatter_add_kernel(float* out, const uint32_t* idx, const float* val, uint64_t m) {
  const uint64_t j = thread_index();
  if (j < m) atomicAdd(out + idx[j], val[j]);
}

template <class V, class I>
__global__ void scatter_kernel(V* out, const I* idx, const V* val, uint64_t m) {
  const uint64_t j = thread_index();
  if (j < m) out[idx[j]] = val[j];
}

// out[i] = f(in[i]): the fp16 and bf16 conversions.
template <class In, class Out, class F>
__global__ void map_kernel(const In* in, uint64_t n, Out* out, F f) {
  const uint64_t i = thread_index();
  if (i < n) out[i] = f(in[i]);
}
struct ToFp16 {
  __device__ uint16_t operator()(float x) const { return fp16_from_bits(float_bits(x)); }
};
struct ToBf16 {
  __device__ uint16_t operator()(float x) const { return bf16_from_bits(float_bits(x)); }
};
struct FromFp16 {
  __device__ float operator()(uint16_t h) const { return bits_float(fp16_to_bits(h)); }
};
struct FromBf16 {
  __device__ float operator()(uint16_t h) const { return bits_float(bf16_to_bits(h)); }
};

template <class In, class Out, class F>
void map(const In* in, size_t n, Out* out, F f, cudaStream_t stream) {
  map_kernel<<<grid_for(n), kThreads, 0, stream>>>(in, n, out, f);
}

// QSGD scales: per bucket (blocks stride over them) the largest magnitude
// key, stored as the bucket's float32 scale; a NaN or Inf in the bucket
// lowers *failed to its position.
constexpr int kScaleThreads = 128;
__global__ void __launch_bounds__(kScaleThreads)
    qsgd_scales(const float* x, uint64_t n, uint64_t bucket, uint64_t buckets, uint32_t* scales,
                unsigned long long* failed) {
  __shared__ uint32_t warp_top[kScaleThreads / 32];
  __shared__ uint32_t block_top;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (uint64_t b = blockIdx.x; b < buckets; b += gridDim.x) {
    const uint64_t first = b * bucket, last = min(n, first + bucket);
    uint32_t top = 0;
    for (uint64_t i = first + threadIdx.x; i < last; i += blockDim.x) top = max(top, magnitude_key(x[i]));
    for (int o = 16; o > 0; o >>= 1) top = max(top, __shfl_xor_sync(0xFFFFFFFFu, top, o));
    if (lane == 0) warp_top[warp] = top;
    __syncthreads();
    if (threadIdx.x == 0) {
      uint32_t t = 0;
      for (int w = 0; w < kScaleThreads / 32; ++w) t = max(t, warp_top[w]);
      block_top = t;
      scales[b] = t;
    }
    __syncthreads();
    if (block_top >= kInfKey) {
      for (uint64_t i = first + threadIdx.x; i < last; i += blockDim.x)
        if (magnitude_key(x[i]) >= kInfKey) {  // this thread's first one is its smallest
          atomicMin(failed, (unsigned long long)i);
          break;
        }
    }
    __syncthreads();  // warp_top and block_top are reused by the next bucket
  }
}

// QSGD codes, one byte of the code area per thread: the codes of its 8 / B
// values (bit j*B of the area holds value j), the unused code (all ones)
// past the last value.
template <int S, int B>
__global__ void qsgd_codes(const float* x, uint64_t n, uint64_t bucket, const uint32_t* scales, uint64_t bytes,
                           Key32 key, uint8_t* area) {
  constexpr int per = 8 / B;
  const uint64_t t = thread_index();
  if (t >= bytes) return;
  uint32_t byte = 0;
  for (int p = 0; p < per; ++p) {
    const uint64_t v = t * per + p;
    uint32_t code = (1u << B) - 1;
    if (v < n) {
      const uint32_t top = scales[v / bucket];
      if (top == 0) {
        code = S;
      } else {
        const float scale = bits_float(top);
        const float inv = float(S) / scale;
        const uint32_t draw = draw32(key, uint32_t(v));
        code = isfinite(inv) ? qsgd_code<S>(float_bits(x[v]), inv, draw)
                             : qsgd_code_tiny<S>(x[v], double(S) / double(scale), draw);
      }
    }
    byte |= code << (p * B);
  }
  area[t] = uint8_t(byte);
}

template <int S, int B>
__global__ void qsgd_decode(const uint32_t* scales, const uint8_t* area, uint64_t n, uint64_t bucket, float* out) {
  const uint64_t i = thread_index();
  if (i >= n) return;
  const float scale = bits_float(scales[i / bucket]);
  const uint8_t code = uint8_t((area[i * B / 8] >> (i * B % 8)) & ((1u << B) - 1));
  out[i] = qsgd_decodes_in_double<S>(scale) ? qsgd_value_in_double<S>(code, scale) : qsgd_value<S>(code, scale / float(S));
}

uint64_t bucket_count(size_t n, size_t bucket) { return n == 0 ? 0 : (n - 1) / bucket + 1; }

template <int B>
void encode_qsgd(const float* in, size_t n, size_t bucket, uint64_t seed, uint8_t* out, unsigned long long* failed,
                 cudaStream_t stream) {
  constexpr int S = (1 << (B - 1)) - 1;
  const uint64_t buckets = bucket_count(n, bucket), bytes = (uint64_t(n) * B + 7) / 8;
  uint32_t* scales = reinterpret_cast<uint32_t*>(out);  // device buffers are aligned
  const int scale_blocks = int(std::min<uint64_t>(buckets, uint64_t(1) << 20));
  qsgd_scales<<<scale_blocks, kScaleThreads, 0, stream>>>(in, n, bucket, buckets, scales, failed);
  qsgd_codes<S, B><<<grid_for(bytes), kThreads, 0, stream>>>(in, n, bucket, scales, bytes, key32(seed),
                                                             out + 4 * buckets);
}

template <int B>
void decode_qsgd(const uint8_t* in, size_t n, size_t bucket, float* out, cudaStream_t stream) {
  constexpr int S = (1 << (B - 1)) - 1;
  const uint64_t buckets = bucket_count(n, bucket);
  qsgd_decode<S, B><<<grid_for(n), kThreads, 0, stream>>>(reinterpret_cast<const uint32_t*>(in), in + 4 * buckets, n,
                                                          bucket, out);
}

}  // namespace

void accumulate(float* d_residual, float* d_velocity, const float* d_grad, size_t n, float momentum,
                cudaStream_t stream) {
  if (n == 0) return;
  accumulate_kernel<<<grid_for(n), kThreads, 0, stream>>>(d_residual, momentum > 0.0f ? d_velocity : nullptr, d_grad,
                                                          n, momentum);
  check(cudaGetLastError(), "GPU error feedback");
}

void settle(float* d_residual, float* d_velocity, const uint32_t* d_idx, const float* d_sent, size_t m, bool raw,
            const unsigned long long* d_failed, cudaStream_t stream) {
  if (m == 0) return;
  settle_kernel<<<grid_for(m), kThreads, 0, stream>>>(d_residual, d_velocity, d_idx, d_sent, m, raw, d_failed);
  check(cudaGetLastError(), "GPU residual update");
}

void scatter_add(float* d_out, const uint32_t* d_idx, const float* d_val, size_t m, cudaStream_t stream) {
  if (m == 0) return;
  scatter_add_kernel<<<grid_for(m), kThreads, 0, stream>>>(d_out, d_idx, d_val, m);
  check(cudaGetLastError(), "GPU scatter-add");
}

template <class V, class I>
void scatter(V* d_out, const I* d_idx, const V* d_val, size_t m, cudaStream_t stream) {
  if (m == 0) return;
  scatter_kernel<V, I><<<grid_for(m), kThreads, 0, stream>>>(d_out, d_idx, d_val, m);
  check(cudaGetLastError(), "GPU scatter");
}
template void scatter<float, uint32_t>(float*, const uint32_t*, const float*, size_t, cudaStream_t);
template void scatter<float, uint64_t>(float*, const uint64_t*, const float*, size_t, cudaStream_t);
template void scatter<double, uint32_t>(double*, const uint32_t*, const double*, size_t, cudaStream_t);
template void scatter<double, uint64_t>(double*, const uint64_t*, const double*, size_t, cudaStream_t);

void encode_values(ValueCodec codec, const float* d_in, size_t n, size_t bucket, uint64_t seed, uint8_t* d_out,
                   unsigned long long* d_failed, cudaStream_t stream) {
  encoded_values_size(codec, n, bucket);  // validates the codec and the bucket
  check(cudaMemsetAsync(d_failed, 0xFF, sizeof *d_failed, stream), "cudaMemsetAsync");
  if (n == 0) return;
  switch (codec) {
    case ValueCodec::Raw:
      check(cudaMemcpyAsync(d_out, d_in, 4 * n, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
      return;
    case ValueCodec::Fp16: map(d_in, n, reinterpret_cast<uint16_t*>(d_out), ToFp16{}, stream); break;
    case ValueCodec::Bf16: map(d_in, n, reinterpret_cast<uint16_t*>(d_out), ToBf16{}, stream); break;
    case ValueCodec::Qsgd8: encode_qsgd<8>(d_in, n, bucket, seed, d_out, d_failed, stream); break;
    case ValueCodec::Qsgd4: encode_qsgd<4>(d_in, n, bucket, seed, d_out, d_failed, stream); break;
    case ValueCodec::Qsgd2: encode_qsgd<2>(d_in, n, bucket, seed, d_out, d_failed, stream); break;
  }
  check(cudaGetLastError(), "GPU encoding");
}

void decode_values(ValueCodec codec, const uint8_t* d_in, size_t n, size_t bucket, float* d_out,
                   cudaStream_t stream) {
  encoded_values_size(codec, n, bucket);
  if (n == 0) return;
  switch (codec) {
    case ValueCodec::Raw:
      check(cudaMemcpyAsync(d_out, d_in, 4 * n, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
      return;
    case ValueCodec::Fp16: map(reinterpret_cast<const uint16_t*>(d_in), n, d_out, FromFp16{}, stream); break;
    case ValueCodec::Bf16: map(reinterpret_cast<const uint16_t*>(d_in), n, d_out, FromBf16{}, stream); break;
    case ValueCodec::Qsgd8: decode_qsgd<8>(d_in, n, bucket, d_out, stream); break;
    case ValueCodec::Qsgd4: decode_qsgd<4>(d_in, n, bucket, d_out, stream); break;
    case ValueCodec::Qsgd2: decode_qsgd<2>(d_in, n, bucket, d_out, stream); break;
  }
  check(cudaGetLastError(), "GPU decoding");
}

}  // namespace cuda
}  // namespace sparcl
