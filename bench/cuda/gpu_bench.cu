// SPDX-License-Identifier: BSD-3-Clause
// sparcl-bench-cuda: the GPU kernels against the memory bandwidth and a
// sort-based selection, on one device.
//
//   sparcl-bench-cuda [-n LOG2_N] [-i ITERATIONS] [-d DEVICE]
//
// Prints the device, its peak memory bandwidth (from the memory clock and
// bus width it reports) and the measured time to read the input once (a
// reduction over n floats), then one row per kernel: median time over the
// iterations (CUDA events), the input's bytes over that time, and the time
// as a multiple of the read-once time. Rows:
//   topk-exact / topk-approx  sparcl's selection (ml/cuda/select.cu) of k =
//                             density * n entries of N(0,1) data, sorted by
//                             index, checked once against the CPU's
//   sort-topk                 the peer: cub::DeviceRadixSort::SortPairsDescending
//                             of (magnitude key, index) for all n, then a sort
//                             of the first k indices
//   encode/decode CODEC       the value codecs on n values
//   compress-step             a device compressor's whole step (error
//                             feedback, top-k 1%, copy to the host): QSGD4
//                             rounded on the GPU (sparcl_compress), and the
//                             compressed allreduce's step, which leaves the
//                             encoding to the wire (float32 values cross)
// Goal (docs/cuda.md): top-k within 3x of the read-once time.
#include <cub/device/device_radix_sort.cuh>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "src/codec/codec.hpp"
#include "ml/compress/compressor.hpp"
#include "src/codec/scalar.hpp"
#include "ml/compress/select.hpp"
#include "ml/cuda/compressor.hpp"
#include "ml/cuda/kernels.hpp"

namespace {

namespace cu = sparcl::cuda;
namespace cz = sparcl::compress;

__global__ void read_once(const float4* x, size_t n4, float* sink) {
  float acc = 0.0f;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += size_t(gridDim.x) * blockDim.x) {
    const float4 v = x[i];
    acc += v.x + v.y + v.z + v.w;
  }
  if (acc == 1234.5f) *sink = acc;  // keeps the loads; never true for the data used
}

__global__ void magnitude_keys(const float* x, size_t n, uint32_t* keys, uint32_t* idx) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    keys[i] = cz::magnitude_key(x[i]);
    idx[i] = uint32_t(i);
  }
}

struct Timer {
  cudaEvent_t a, b;
  Timer() {
    cudaEventCreate(&a);
    cudaEventCreate(&b);
  }
  ~Timer() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  template <class F>
  double median_ms(int iterations, F&& f) {
    f();  // warm-up: allocations, first launches
    cu::check(cudaDeviceSynchronize(), "warm-up");
    std::vector<double> t;
    for (int i = 0; i < iterations; ++i) {
      cudaEventRecord(a);
      f();
      cudaEventRecord(b);
      cu::check(cudaEventSynchronize(b), "timed run");
      float ms = 0;
      cudaEventElapsedTime(&ms, a, b);
      t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }
};

void row(const char* name, const std::string& detail, double ms, double bytes, double read_ms) {
  std::printf("%-14s %-16s %10.3f %10.1f %8.2f\n", name, detail.c_str(), ms, bytes / (ms * 1e-3) / 1e9, ms / read_ms);
}

}  // namespace

int main(int argc, char** argv) {
  int log2n = 26, iterations = 20, device = 0;
  for (int a = 1; a + 1 < argc; a += 2) {
    if (!std::strcmp(argv[a], "-n")) log2n = std::atoi(argv[a + 1]);
    else if (!std::strcmp(argv[a], "-i")) iterations = std::atoi(argv[a + 1]);
    else if (!std::strcmp(argv[a], "-d")) device = std::atoi(argv[a + 1]);
  }
  if (cu::device_count() == 0) {
    std::printf("sparcl-bench-cuda: no CUDA device (no GPU or no driver here)\n");
    return 0;
  }
  try {
    cu::check(cudaSetDevice(device), "cudaSetDevice");
    cudaDeviceProp prop{};
    cu::check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    int clock_khz = 0, bus_bits = 0;
    cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device);
    cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device);
    const double peak = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0);  // double data rate
    const size_t n = size_t(1) << log2n;
    std::printf("# device %d: %s, sm_%d%d, %d SMs, %.1f GiB; memory %d MHz x %d bits: peak %.0f GB/s (reported)\n",
                device, prop.name, prop.major, prop.minor, prop.multiProcessorCount,
                double(prop.totalGlobalMem) / double(1ull << 30), clock_khz / 1000, bus_bits, peak / 1e9);

    std::vector<float> x(n);
    std::mt19937_64 rng(1);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& v : x) v = normal(rng);
    cu::DeviceArray<float> dx, sink;
    dx.reserve(n);
    sink.reserve(1);
    cu::check(cudaMemcpy(dx.get(), x.data(), n * 4, cudaMemcpyHostToDevice), "upload");

    Timer timer;
    const int blocks = prop.multiProcessorCount * 8;
    const double read_ms = timer.median_ms(iterations, [&] {
      read_once<<<blocks, 256>>>(reinterpret_cast<const float4*>(dx.get()), n / 4, sink.get());
    });
    std::printf("# n = 2^%d floats (%.0f MB), %d iterations; read once: %.3f ms = %.0f GB/s = %.0f%% of peak\n", log2n,
                n * 4 / 1e6, iterations, read_ms, n * 4 / (read_ms * 1e-3) / 1e9,
                100.0 * n * 4 / (read_ms * 1e-3) / peak);
    std::printf("%-14s %-16s %10s %10s %8s\n", "kernel", "case", "ms", "GB/s", "x read");

    cu::Selector selector;
    cz::SelectWorkspace ws;
    cz::Selection cpu;
    cu::DeviceArray<uint32_t> keys, keys_out, idx, idx_out;
    cu::DeviceArray<unsigned char> temp;
    for (double density : {0.001, 0.01}) {
      const size_t k = size_t(density * double(n));
      const std::string detail = "density " + std::to_string(density).substr(0, 5);
      for (int approx = 0; approx < 2; ++approx) {
        const size_t kmax = approx ? cz::approx_topk_max_count(k) : k;
        size_t m = 0;
        const double ms = timer.median_ms(iterations, [&] { m = selector.topk(dx.get(), n, k, kmax, nullptr); });
        // Checked once against the CPU.
        if (approx)
          cz::select_approx_topk(x.data(), n, k, cpu, ws);
        else
          cz::select_topk(x.data(), n, k, cpu, ws);
        std::vector<uint32_t> got(m);
        cu::check(cudaMemcpy(got.data(), selector.indices(), m * 4, cudaMemcpyDeviceToHost), "download");
        const bool same = m == cpu.size() && std::equal(got.begin(), got.end(), cpu.idx.data());
        row(approx ? "topk-approx" : "topk-exact", detail + (same ? "" : " WRONG"), ms, n * 4.0, read_ms);
      }
      // The peer: sort everything by magnitude, keep the first k, sort those by index.
      keys.reserve(n), keys_out.reserve(n), idx.reserve(n), idx_out.reserve(n);
      size_t bytes = 0, bytes2 = 0;
      cub::DeviceRadixSort::SortPairsDescending(nullptr, bytes, keys.get(), keys_out.get(), idx.get(), idx_out.get(),
                                                int64_t(n), 0, 31);
      cub::DeviceRadixSort::SortKeys(nullptr, bytes2, idx_out.get(), idx.get(), int64_t(k), 0, log2n);
      temp.reserve(std::max(bytes, bytes2));
      const double sort_ms = timer.median_ms(iterations, [&] {
        magnitude_keys<<<int((n + 255) / 256), 256>>>(dx.get(), n, keys.get(), idx.get());
        size_t b = bytes, b2 = bytes2;
        cub::DeviceRadixSort::SortPairsDescending(temp.get(), b, keys.get(), keys_out.get(), idx.get(), idx_out.get(),
                                                  int64_t(n), 0, 31);
        cub::DeviceRadixSort::SortKeys(temp.get(), b2, idx_out.get(), idx.get(), int64_t(k), 0, log2n);
      });
      row("sort-topk", detail, sort_ms, n * 4.0, read_ms);
    }

    cu::DeviceArray<uint8_t> enc;
    cu::DeviceArray<float> dec;
    cu::DeviceArray<unsigned long long> failed;
    enc.reserve(n * 4);
    dec.reserve(n);
    failed.reserve(1);
    for (cz::ValueCodec codec : {cz::ValueCodec::Fp16, cz::ValueCodec::Bf16, cz::ValueCodec::Qsgd8,
                                 cz::ValueCodec::Qsgd4, cz::ValueCodec::Qsgd2}) {
      const double e = timer.median_ms(iterations, [&] {
        cu::encode_values(codec, dx.get(), n, cz::kDefaultQuantBucket, 7, enc.get(), failed.get(), nullptr);
      });
      row("encode", cz::value_codec_name(codec), e, n * 4.0, read_ms);
      const double d = timer.median_ms(iterations, [&] {
        cu::decode_values(codec, enc.get(), n, cz::kDefaultQuantBucket, dec.get(), nullptr);
      });
      row("decode", cz::value_codec_name(codec), d, n * 4.0, read_ms);
    }

    cz::CompressorOptions o;
    o.method = cz::Method::TopK;
    o.density = 0.01;
    o.codec = cz::ValueCodec::Qsgd4;
    const cz::Compressor host(o, n, false);
    cu::DeviceCompressor compressor(o, n, host.k(), device);
    const double step = timer.median_ms(iterations, [&] { compressor.compress(dx.get(), 0, true); });
    row("compress-step", "topk 1% qsgd4", step, n * 4.0, read_ms);
    // The compressed allreduce's step: float32 values to the host, the wire encodes.
    const double wire_step = timer.median_ms(iterations, [&] { compressor.compress(dx.get(), 0, false); });
    row("compress-step", "topk 1% for the wire", wire_step, n * 4.0, read_ms);
  } catch (const sparcl::Error& e) {
    std::fprintf(stderr, "sparcl-bench-cuda: %s\n", e.what());
    return 1;
  }
  return 0;
}
