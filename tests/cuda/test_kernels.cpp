// SPDX-License-Identifier: BSD-3-Clause
// The GPU kernels (ml/cuda/) against their CPU references (ml/compress/),
// bit for bit: value codecs on every fp16 value, midpoints and a walk over
// all float bit patterns; QSGD layouts, rounding streams and the tiny-scale
// path; exact and approximate top-k, threshold, all and random-k on every
// test distribution (ties, all equal, NaN/Inf, denormals, a misleading
// sample) from 1 to 2^26 entries; error feedback with momentum over several
// steps, rounded on the GPU or settled from what a collective reports;
// scatters. Every test skips where no GPU is found.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gpu_util.hpp"
#include "src/codec/codec.hpp"
#include "ml/compress/compressor.hpp"
#include "ml/compress/select.hpp"
#include "ml/cuda/compressor.hpp"
#include "ml/cuda/kernels.hpp"
#include "tests/compress/test_util.hpp"

namespace {

using namespace ctest;
using gpu_test::Device;
namespace cu = sparcl::cuda;

const cz::ValueCodec kCodecs[] = {cz::ValueCodec::Raw,   cz::ValueCodec::Fp16,  cz::ValueCodec::Bf16,
                                  cz::ValueCodec::Qsgd8, cz::ValueCodec::Qsgd4, cz::ValueCodec::Qsgd2};

const Dist kAllDists[] = {Dist::Uniform,  Dist::Normal,     Dist::Cauchy,   Dist::Pareto,   Dist::SmallIntegers,
                          Dist::AllEqual, Dist::MostlyZero, Dist::Specials, Dist::Ascending};

// Encodes x on both sides; expects the same bytes and the same decoded values.
void expect_codec_matches(cz::ValueCodec codec, const std::vector<float>& x, size_t bucket, uint64_t seed) {
  SCOPED_TRACE(std::string(cz::value_codec_name(codec)) + " n=" + std::to_string(x.size()) +
               " bucket=" + std::to_string(bucket));
  const size_t n = x.size(), bytes = cz::encoded_values_size(codec, n, bucket);
  std::vector<uint8_t> cpu(bytes);
  cz::encode_values(codec, x.data(), n, bucket, seed, cpu.data());
  Device<float> in(x);
  Device<uint8_t> enc(bytes);
  Device<unsigned long long> failed(1);
  cu::encode_values(codec, in.get(), n, bucket, seed, enc.get(), failed.get(), nullptr);
  ASSERT_EQ(failed.host()[0], cu::kNoPosition);
  const std::vector<uint8_t> gpu = enc.host(bytes);
  size_t first_diff = bytes;
  for (size_t b = 0; b < bytes && first_diff == bytes; ++b)
    if (gpu[b] != cpu[b]) first_diff = b;
  ASSERT_EQ(first_diff, bytes) << "encodings differ from byte " << first_diff;
  std::vector<float> cpu_dec(n);
  cz::decode_values(codec, cpu.data(), bytes, n, bucket, cpu_dec.data());
  Device<float> dec(n);
  cu::decode_values(codec, enc.get(), n, bucket, dec.get(), nullptr);
  const std::vector<float> gpu_dec = dec.host();
  EXPECT_EQ(gpu_test::bits_of(gpu_dec.data(), n), gpu_test::bits_of(cpu_dec.data(), n));
}

// Finite values for QSGD: the test distributions without NaN/Inf, plus
// denormals, signed zeros and tiny buckets (scales whose S / scale overflows).
std::vector<float> finite_values(size_t n, uint64_t seed) {
  std::vector<float> x = make_data(Dist::Specials, n, seed);
  const float tiny = std::numeric_limits<float>::denorm_min();
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) x[i] = (i % 2 ? -1.0f : 1.0f) * 1e30f;
    if (i % 1500 < 600) x[i] = float((i * 7919) % 13) * tiny * (i % 3 ? 1.0f : -1.0f);  // whole tiny buckets
  }
  return x;
}

TEST(GpuCodec, EveryCodecMatchesTheCpu) {
  SKIP_WITHOUT_GPU();
  for (cz::ValueCodec codec : kCodecs)
    for (size_t n : {size_t(1), size_t(2), size_t(7), size_t(511), size_t(512), size_t(513), size_t(4099),
                     size_t(1) << 20})
      for (size_t bucket : {size_t(1), size_t(3), size_t(512), size_t(1000)}) {
        if (!cz::qsgd_bits(codec) && bucket != 512) continue;
        for (uint64_t seed : {uint64_t(0), uint64_t(0x1234567890ull)}) {
          expect_codec_matches(codec, finite_values(n, n + seed), bucket, seed);
          expect_codec_matches(codec, make_data(Dist::Normal, n, n), bucket, seed);
          expect_codec_matches(codec, std::vector<float>(n, 0.0f), bucket, seed);  // all-zero buckets
        }
      }
}

// fp16 and bf16 on every half, every midpoint between neighbouring halves
// and its neighbours, and a walk over all 2^32 float bit patterns (NaN
// payloads, denormals, overflow).
TEST(GpuCodec, HalvesOnEverySpecialPattern) {
  SKIP_WITHOUT_GPU();
  std::vector<float> x;
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float v = cz::fp16_to_float(uint16_t(h)), next = cz::fp16_to_float(uint16_t(h + 1));
    x.push_back(v);
    if (std::isfinite(v) && std::isfinite(next) && (h & 0x7FFF) != 0x7BFF) {
      const float mid = float((double(v) + double(next)) / 2);
      x.push_back(mid);
      x.push_back(std::nextafter(mid, 0.0f));
      x.push_back(std::nextafter(mid, std::numeric_limits<float>::infinity()));
    }
  }
  for (uint64_t b = 0; b < (uint64_t(1) << 32); b += 4099) x.push_back(cz::bits_float(uint32_t(b)));
  for (uint32_t hi = 0; hi < 0x10000; ++hi)
    for (uint32_t lo : {0x0000u, 0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu}) x.push_back(cz::bits_float(hi << 16 | lo));
  expect_codec_matches(cz::ValueCodec::Fp16, x, 512, 0);
  expect_codec_matches(cz::ValueCodec::Bf16, x, 512, 0);
}

TEST(GpuCodec, QsgdReportsTheFirstNonFiniteValue) {
  SKIP_WITHOUT_GPU();
  std::vector<float> x = make_data(Dist::Normal, 5000, 3);
  x[3333] = std::numeric_limits<float>::infinity();
  x[777] = std::numeric_limits<float>::quiet_NaN();
  x[4000] = std::numeric_limits<float>::quiet_NaN();
  for (cz::ValueCodec codec : {cz::ValueCodec::Qsgd8, cz::ValueCodec::Qsgd4, cz::ValueCodec::Qsgd2})
    for (size_t bucket : {size_t(1), size_t(512), size_t(10000)}) {
      Device<float> in(x);
      Device<uint8_t> enc(cz::encoded_values_size(codec, x.size(), bucket));
      Device<unsigned long long> failed(1);
      cu::encode_values(codec, in.get(), x.size(), bucket, 1, enc.get(), failed.get(), nullptr);
      EXPECT_EQ(failed.host()[0], 777u);
      EXPECT_EQ(status_of([&] { std::vector<uint8_t> o(enc.size()); cz::encode_values(codec, x.data(), x.size(), bucket, 1, o.data()); }),
                SPARCL_ERR_INVALID_ARG);
    }
}

TEST(GpuCodec, LargeVectors) {
  SKIP_WITHOUT_GPU();
  const auto x = make_data(Dist::Normal, size_t(1) << 26, 26);
  for (cz::ValueCodec codec : {cz::ValueCodec::Fp16, cz::ValueCodec::Qsgd4}) expect_codec_matches(codec, x, 512, 99);
}

// --- selection ---

std::vector<uint32_t> gpu_indices(const cu::Selector& s, size_t m) {
  std::vector<uint32_t> h(m);
  if (m) sparcl::cuda::check(cudaMemcpy(h.data(), s.indices(), m * 4, cudaMemcpyDeviceToHost), "download");
  return h;
}
std::vector<uint32_t> gpu_value_bits(const cu::Selector& s, size_t m) {
  std::vector<float> h(m);
  if (m) sparcl::cuda::check(cudaMemcpy(h.data(), s.values(), m * 4, cudaMemcpyDeviceToHost), "download");
  return gpu_test::bits_of(h.data(), m);
}

// The GPU's selection equals the CPU's: same count, indices and value bits.
void expect_same(const cu::Selector& gpu, size_t m, const cz::Selection& cpu) {
  ASSERT_EQ(m, cpu.size());
  EXPECT_EQ(gpu_indices(gpu, m), indices_of(cpu));
  EXPECT_EQ(gpu_value_bits(gpu, m), gpu_test::bits_of(cpu.val.data(), m));
}

void expect_topk_matches(cu::Selector& gpu, const Device<float>& dx, const std::vector<float>& x, size_t k) {
  cz::SelectWorkspace ws;
  cz::Selection cpu;
  const size_t n = x.size();
  {
    SCOPED_TRACE("exact k=" + std::to_string(k));
    cz::select_topk(x.data(), n, k, cpu, ws);
    expect_same(gpu, gpu.topk(dx.get(), n, k, k, nullptr), cpu);
  }
  {
    SCOPED_TRACE("approx k=" + std::to_string(k));
    cz::select_approx_topk(x.data(), n, k, cpu, ws);
    expect_same(gpu, gpu.topk(dx.get(), n, k, cz::approx_topk_max_count(k), nullptr), cpu);
  }
}

std::vector<size_t> ks_for(size_t n) {
  std::set<size_t> ks = {1, n / 1000 + 1, n / 100, n / 10, n / 2, n - 1, n, n + 5};
  ks.erase(0);
  return std::vector<size_t>(ks.begin(), ks.end());
}

TEST(GpuTopK, MatchesTheCpuOnEveryDistribution) {
  SKIP_WITHOUT_GPU();
  cu::Selector gpu;
  for (Dist d : kAllDists)
    for (size_t n : {size_t(1), size_t(2), size_t(17), size_t(1000), size_t(65535), size_t(65536), size_t(70000),
                     size_t(300000), size_t(1) << 20}) {
      const auto x = make_data(d, n, n);
      const Device<float> dx(x);
      for (size_t k : ks_for(n)) {
        SCOPED_TRACE(std::string(dist_name(d)) + " n=" + std::to_string(n));
        expect_topk_matches(gpu, dx, x, k);
      }
    }
}

TEST(GpuTopK, LargeVectors) {
  SKIP_WITHOUT_GPU();
  cu::Selector gpu;
  for (Dist d : {Dist::Normal, Dist::SmallIntegers, Dist::Specials})
    for (size_t n : {size_t(1) << 24, size_t(1) << 26}) {
      if (d != Dist::Normal && n != (size_t(1) << 24)) continue;
      const auto x = make_data(d, n, 5);
      const Device<float> dx(x);
      for (double density : {0.001, 0.01}) {
        SCOPED_TRACE(std::string(dist_name(d)) + " n=" + std::to_string(n) + " density=" + std::to_string(density));
        expect_topk_matches(gpu, dx, x, size_t(density * double(n)));
      }
    }
}

// The sampled positions hold the largest magnitudes: both thresholds from
// the sample are too high and the GPU, like the CPU, falls back to a radix
// select over the whole vector.
TEST(GpuTopK, MisleadingSampleFallsBackLikeTheCpu) {
  SKIP_WITHOUT_GPU();
  const size_t n = size_t(1) << 17;
  const size_t s = cz::topk_sample_size(n);
  std::vector<float> x(n, 1.0f);
  for (size_t j = 0; j < s; ++j) x[cz::topk_sample_position(n, s, j)] = -2.0f;
  cu::Selector gpu;
  const Device<float> dx(x);
  expect_topk_matches(gpu, dx, x, s + 1000);
}

TEST(GpuSelect, ThresholdAllAndRandomKMatchTheCpu) {
  SKIP_WITHOUT_GPU();
  cu::Selector gpu;
  cz::SelectWorkspace ws;
  cz::Selection cpu;
  for (Dist d : kAllDists)
    for (size_t n : {size_t(1), size_t(1000), size_t(70000), size_t(1) << 20}) {
      SCOPED_TRACE(std::string(dist_name(d)) + " n=" + std::to_string(n));
      const auto x = make_data(d, n, 2 * n);
      const Device<float> dx(x);
      for (float t : {0.0f, 0.5f, 2.0f, std::numeric_limits<float>::infinity()}) {
        cz::select_threshold(x.data(), n, t, cpu);
        expect_same(gpu, gpu.threshold(dx.get(), n, t, nullptr), cpu);
      }
      cz::select_all(x.data(), n, cpu);
      expect_same(gpu, gpu.all(dx.get(), n, nullptr), cpu);
      if (n > 1) {
        const size_t k = n / 100 + 1;
        cz::select_randomk(x.data(), n, k, 7, 3, cpu, ws);
        std::vector<uint32_t> idx(k);
        cz::randomk_indices(n, k, 7, 3, idx.data(), ws);
        expect_same(gpu, gpu.gather(dx.get(), idx.data(), k, nullptr), cpu);
      }
    }
}

// --- error feedback, through the compressors ---

std::vector<float> device_residual(cu::DeviceCompressor& gpu, uint64_t dim) {
  std::vector<float> r(dim);
  cu::check(cudaMemcpy(r.data(), gpu.residual(), dim * 4, cudaMemcpyDeviceToHost), "download");
  return r;
}

// What a collective reports for a step whose values it encodes: the first
// half of the selection received rounded to eighths (one entry as Inf, whose
// residual must be 0), then the rest but its first entry (never reported:
// it reached the sum exactly) rounded to quarters.
void report_like_a_collective(const cz::Selection& sel, cz::Compressor& cpu, cu::DeviceCompressor& gpu) {
  const size_t m = sel.size(), half = m / 2;
  std::vector<float> received(m);
  for (size_t j = 0; j < m; ++j)
    received[j] = j == 3 ? INFINITY : std::nearbyint(sel.val[j] * (j < half ? 8 : 4)) / (j < half ? 8 : 4);
  const auto both = [&](size_t first, size_t count) {
    cpu.sent_as(first, count, received.data() + first);
    gpu.sent_as(first, count, received.data() + first);
  };
  both(0, half);
  if (half + 1 < m) both(half + 1, m - half - 1);
  gpu.settle();
}

// The host compressor and the device compressor, stepped on the same
// gradients: sent vectors and residuals equal bit for bit at every step.
// round_here false is the compressed allreduce's step: the values go
// unrounded, and the residual settles from what the collective reports.
void expect_steps_match(bool round_here) {
  using cz::Method;
  for (Method method : {Method::None, Method::TopK, Method::ApproxTopK, Method::Threshold, Method::RandomK})
    for (cz::ValueCodec codec : kCodecs)
      for (int feedback = 0; feedback < 3; ++feedback)  // off, on, on with momentum
        for (uint64_t dim : {uint64_t(1), uint64_t(1000), uint64_t(70001), uint64_t(1) << 20}) {
          if (dim == (uint64_t(1) << 20) && codec != cz::ValueCodec::Qsgd4 && codec != cz::ValueCodec::Raw) continue;
          SCOPED_TRACE(std::string(cz::method_name(method)) + " " + cz::value_codec_name(codec) + " feedback=" +
                       std::to_string(feedback) + " dim=" + std::to_string(dim));
          cz::CompressorOptions o;
          o.method = method;
          o.density = 0.01;
          o.threshold = 1.5f;
          o.codec = codec;
          o.error_feedback = feedback > 0;
          o.momentum = feedback == 2 ? 0.9f : 0.0f;
          o.seed = 42;
          cz::Compressor cpu(o, dim);
          cu::DeviceCompressor gpu(o, dim, cpu.k(), 0);
          for (int step = 0; step < 4; ++step) {
            SCOPED_TRACE("step " + std::to_string(step));
            auto g = make_data(step % 2 ? Dist::Cauchy : Dist::Normal, size_t(dim), uint64_t(step) * 31 + dim);
            if (codec == cz::ValueCodec::Fp16 && dim > 1) g[dim / 2] = 1e6f;  // overflows fp16: residual 0, not Inf
            const Device<float> dg(g);
            const cz::Selection& c = cpu.compress(g.data(), 5, round_here);
            const sparcl_sparse_t s = gpu.compress(dg.get(), 5, round_here);
            ASSERT_EQ(s.nnz, c.size());
            EXPECT_EQ(std::vector<uint32_t>(static_cast<const uint32_t*>(s.indices),
                                            static_cast<const uint32_t*>(s.indices) + s.nnz),
                      indices_of(c));
            EXPECT_EQ(gpu_test::bits_of(static_cast<const float*>(s.values), s.nnz),
                      gpu_test::bits_of(c.val.data(), c.size()));
            if (!round_here && step != 2) report_like_a_collective(c, cpu, gpu);  // step 2: nothing reported
            if (o.error_feedback) {
              ASSERT_EQ(gpu_test::bits_of(device_residual(gpu, dim).data(), dim),
                        gpu_test::bits_of(cpu.residual(), dim));
            }
          }
          // A failed collective (after the reports, here): both put the last step back.
          cpu.unsend();
          gpu.unsend();
          if (o.error_feedback) {
            EXPECT_EQ(gpu_test::bits_of(device_residual(gpu, dim).data(), dim),
                      gpu_test::bits_of(cpu.residual(), dim));
          }
        }
}

TEST(GpuCompressor, StepsMatchTheHostCompressor) {
  SKIP_WITHOUT_GPU();
  expect_steps_match(true);
}

TEST(GpuCompressor, StepsForTheWireMatchTheHostCompressor) {
  SKIP_WITHOUT_GPU();
  expect_steps_match(false);
}

// NaN under QSGD, rounded here or left to the wire: the same error as the
// CPU; the gradient stays in the residual and the step does not count, so
// the next steps still match.
TEST(GpuCompressor, QsgdNanFailsLikeTheCpu) {
  SKIP_WITHOUT_GPU();
  for (bool round_here : {true, false}) {
    SCOPED_TRACE(round_here ? "rounded here" : "left to the wire");
    cz::CompressorOptions o;
    o.method = cz::Method::TopK;
    o.density = 0.05;
    o.codec = cz::ValueCodec::Qsgd4;
    const uint64_t dim = 10000;
    cz::Compressor cpu(o, dim);
    cu::DeviceCompressor gpu(o, dim, cpu.k(), 0);
    auto g = make_data(Dist::Normal, dim, 1);
    g[4321] = std::numeric_limits<float>::quiet_NaN();
    const Device<float> bad(g);
    std::string cpu_message, gpu_message;
    try {
      cpu.compress(g.data(), 0, round_here);
    } catch (const sparcl::Error& e) {
      cpu_message = e.what();
    }
    try {
      gpu.compress(bad.get(), 0, round_here);
    } catch (const sparcl::Error& e) {
      EXPECT_EQ(e.status(), SPARCL_ERR_INVALID_ARG);
      gpu_message = e.what();
    }
    EXPECT_FALSE(gpu_message.empty());
    EXPECT_EQ(gpu_message, cpu_message);
    EXPECT_EQ(gpu_test::bits_of(device_residual(gpu, dim).data(), dim), gpu_test::bits_of(cpu.residual(), dim));
    cpu.reset();
    gpu.reset();
    g[4321] = 1.0f;
    const Device<float> good(g);
    const cz::Selection& c = cpu.compress(g.data(), 0, round_here);
    const sparcl_sparse_t s = gpu.compress(good.get(), 0, round_here);
    ASSERT_EQ(s.nnz, c.size());
    EXPECT_EQ(gpu_test::bits_of(static_cast<const float*>(s.values), s.nnz),
              gpu_test::bits_of(c.val.data(), c.size()));
  }
}

TEST(GpuCompressor, RejectsHostGradientsAndBucketedTopK) {
  SKIP_WITHOUT_GPU();
  cz::CompressorOptions o;
  cu::DeviceCompressor gpu(o, 100, 1, 0);
  std::vector<float> g(100, 1.0f);
  EXPECT_EQ(status_of([&] { gpu.compress(g.data(), 0, true); }), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(status_of([&] { gpu.compress(g.data(), 0, false); }), SPARCL_ERR_INVALID_ARG);
  o.method = cz::Method::TopKBucket;
  EXPECT_EQ(status_of([&] { cu::DeviceCompressor bucketed(o, 100, 1, 0); }), SPARCL_ERR_UNSUPPORTED);
}

// --- scatters ---

TEST(GpuScatter, AddAndAssignMatchTheCpu) {
  SKIP_WITHOUT_GPU();
  const size_t n = 100000, m = 30000;
  std::mt19937 rng(5);
  std::vector<uint32_t> idx(m);
  std::vector<float> val(m), base(n), expect_add(n), expect_set(n, 0.0f);
  for (size_t i = 0; i < n; ++i) base[i] = float(int(rng() % 17) - 8);
  for (size_t j = 0; j < m; ++j) {
    idx[j] = uint32_t(rng() % n);  // repeats: small integers sum exactly in any order
    val[j] = float(int(rng() % 9) - 4);
  }
  expect_add = base;
  for (size_t j = 0; j < m; ++j) expect_add[idx[j]] += val[j];
  Device<float> out(base);
  const Device<uint32_t> di(idx);
  const Device<float> dv(val);
  cu::scatter_add(out.get(), di.get(), dv.get(), m, nullptr);
  EXPECT_EQ(gpu_test::bits_of(out.host().data(), n), gpu_test::bits_of(expect_add.data(), n));
  // Assignment at distinct indices keeps -0.0.
  std::vector<uint64_t> unique_idx;
  std::vector<float> unique_val;
  for (uint64_t i = 0; i < n; i += 7) {
    unique_idx.push_back(i);
    unique_val.push_back(i % 2 ? -0.0f : float(i));
    expect_set[i] = unique_val.back();
  }
  Device<float> dense(std::vector<float>(n, 0.0f));
  const Device<uint64_t> ui(unique_idx);
  const Device<float> uv(unique_val);
  cu::scatter<float, uint64_t>(dense.get(), ui.get(), uv.get(), unique_idx.size(), nullptr);
  EXPECT_EQ(gpu_test::bits_of(dense.host().data(), n), gpu_test::bits_of(expect_set.data(), n));
}

}  // namespace
