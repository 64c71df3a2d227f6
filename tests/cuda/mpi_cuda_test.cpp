// SPDX-License-Identifier: BSD-3-Clause
// The collectives with GPU buffers, on 2 ranks. With a GPU: a device
// compressor's compressed allreduce (plain, stream-ordered, non-blocking,
// in place) gives bit for bit the host compressor's result and residual on
// the same gradients where the wire's encoding is deterministic, and keeps
// exactly what the wire lost under QSGD; the sparse allreduce from device
// arrays (float32 and float64, mixed host/device arrays, sparse and dense
// sums, result handles) equals the host one. Without one: every stream-ordered collective
// fails on every rank with SPARCL_ERR_UNSUPPORTED, nothing hangs, and the
// communicator and the compressor go on as if the call had not been made.
//
// Every rank runs every test and every collective; checks use EXPECT.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#if !SPARCL_TEST_CUDA
#define SPARCL_CUDA_STREAM_TYPE_ONLY
#endif
#include "sparcl/sparcl_cuda.h"
#include "../mpi/mpi_test.hpp"

namespace {

using sparcl_testing::Comm;
using sparcl_testing::world_rank;

// Rank r's gradient at step t: N(0, 1) rounded to quarters (many ties,
// signed zeros), some entries scaled up (as layers differ).
std::vector<float> gradient(uint64_t dim, int rank, int step) {
  std::mt19937_64 rng(uint64_t(rank) * 1000003 + uint64_t(step) * 7919 + 3);
  std::normal_distribution<double> normal(0.0, 4.0);
  std::vector<float> g(dim);
  for (uint64_t i = 0; i < dim; ++i) {
    const double q = std::round(normal(rng)) / 4;
    g[i] = float(q == 0 && i % 2 ? -0.0 : q) * (i % 997 < 9 ? 8.0f : 1.0f);
  }
  return g;
}

bool same_bits(const void* a, const void* b, size_t bytes) { return std::memcmp(a, b, bytes) == 0; }

TEST(CudaCollectivesWithoutGpu, StreamCallsFailEverywhereAndChangeNothing) {
  if (sparcl_cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present: this test checks the behaviour without one";
  Comm c;
  ASSERT_EQ(c.status(), SPARCL_SUCCESS);
  const uint64_t dim = 20000;
  sparcl_compressor_config_t cfg = SPARCL_COMPRESSOR_CONFIG_INIT;
  sparcl_compressor_t comp = nullptr, twin = nullptr;
  ASSERT_EQ(sparcl_compressor_create(&cfg, dim, &comp), SPARCL_SUCCESS);
  ASSERT_EQ(sparcl_compressor_create(&cfg, dim, &twin), SPARCL_SUCCESS);
  const auto g = gradient(dim, world_rank(), 0);
  std::vector<float> out(dim), expected(dim);
  EXPECT_EQ(sparcl_allreduce_compressed_stream(c.get(), comp, g.data(), out.data(), nullptr), SPARCL_ERR_UNSUPPORTED);
  EXPECT_NE(std::string(sparcl_comm_last_error(c.get())).find("CUDA"), std::string::npos)
      << sparcl_comm_last_error(c.get());
  sparcl_request_t r = nullptr;
  EXPECT_EQ(sparcl_iallreduce_compressed_stream(c.get(), comp, g.data(), out.data(), nullptr, &r),
            SPARCL_ERR_UNSUPPORTED);
  EXPECT_EQ(r, nullptr);
  sparcl_sparse_t s{};
  s.dim = dim;
  s.index_type = SPARCL_INDEX_U32;
  s.value_type = SPARCL_FLOAT32;
  EXPECT_EQ(sparcl_allreduce_sparse_stream(&s, out.data(), nullptr, c.get(), nullptr), SPARCL_ERR_UNSUPPORTED);
  EXPECT_EQ(sparcl_iallreduce_sparse_stream(&s, out.data(), nullptr, c.get(), nullptr, &r), SPARCL_ERR_UNSUPPORTED);
  // The same step on both compressors: equal results, so the failed calls
  // changed neither the compressor nor the communicator's sequence.
  EXPECT_EQ(sparcl_allreduce_compressed(c.get(), comp, g.data(), out.data()), SPARCL_SUCCESS)
      << sparcl_comm_last_error(c.get());
  EXPECT_EQ(sparcl_allreduce_compressed(c.get(), twin, g.data(), expected.data()), SPARCL_SUCCESS);
  EXPECT_TRUE(same_bits(out.data(), expected.data(), dim * 4));
  sparcl_compressor_free(comp);
  sparcl_compressor_free(twin);
}

#if SPARCL_TEST_CUDA

// As tests/cuda/gpu_util.hpp's, through the public API.
#define SKIP_WITHOUT_GPU()                                                                               \
  do {                                                                                                   \
    if (sparcl_cuda_device_count() == 0) {                                                               \
      const char* required = std::getenv("SPARCL_TEST_REQUIRE_GPU");                                     \
      if (required && *required && std::strcmp(required, "0") != 0)                                      \
        FAIL() << "no CUDA device, and SPARCL_TEST_REQUIRE_GPU is set";                                  \
      GTEST_SKIP() << "no CUDA device (no GPU, no driver, or a driver older than CUDA 13 here): this test " \
                      "runs only on a GPU machine";                                                      \
    }                                                                                                    \
  } while (0)

template <class T>
struct DeviceVector {
  explicit DeviceVector(size_t count) : n(count) {
    void* memory = nullptr;
    EXPECT_EQ(cudaMalloc(&memory, (n ? n : 1) * sizeof(T)), cudaSuccess);
    p = static_cast<T*>(memory);
  }
  explicit DeviceVector(const std::vector<T>& h) : DeviceVector(h.size()) { upload(h); }
  ~DeviceVector() { cudaFree(p); }
  DeviceVector(const DeviceVector&) = delete;
  DeviceVector& operator=(const DeviceVector&) = delete;
  void upload(const std::vector<T>& h) {
    EXPECT_EQ(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<T> host() const {
    std::vector<T> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
  T* p = nullptr;
  size_t n;
};

struct Case {
  sparcl_compress_method_t method;
  sparcl_value_encoding_t values;
  int error_feedback;
  float momentum;
};

bool is_qsgd(sparcl_value_encoding_t v) {
  return v == SPARCL_VALUES_QSGD8 || v == SPARCL_VALUES_QSGD4 || v == SPARCL_VALUES_QSGD2;
}

// A QSGD step of a device compressor without momentum, on 2 ranks with
// recursive doubling: each rank's selection crosses the wire once, encoded,
// and out is the sum of what the two sent, where each rank sent acc -
// residual (acc = the residual before the step + grad, rounded as the
// compressor adds). Checked to a few float roundings, far below a
// quantization step (as tests/compress/mpi_compressed_test.cpp does on the
// host).
void expect_residual_keeps_what_the_wire_lost(const std::vector<float>& before, const std::vector<float>& grad,
                                              const std::vector<float>& after, const std::vector<float>& out) {
  const size_t dim = grad.size();
  std::vector<double> sent(dim), mag(dim), sum(dim), scale(dim);
  for (size_t i = 0; i < dim; ++i) {
    const float acc = before[i] + grad[i];
    sent[i] = double(acc) - double(after[i]);
    mag[i] = std::fabs(double(acc)) + std::fabs(double(after[i]));
  }
  MPI_Allreduce(sent.data(), sum.data(), int(dim), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(mag.data(), scale.data(), int(dim), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  size_t wrong = 0;
  for (size_t i = 0; i < dim; ++i) wrong += std::fabs(double(out[i]) - sum[i]) > 4 * 6e-8 * scale[i];
  EXPECT_EQ(wrong, 0u);
}

// The host and the device compressor stepped alike on the same gradients.
// Raw, fp16 and bf16 values encode deterministically on the wire, so results
// and residuals are equal bit for bit. QSGD's draws on the wire depend on
// the collective's sequence number, which the host step and the device step
// cannot share; there the device step must keep exactly what its wire lost.
TEST(CudaCollectives, DeviceCompressorEqualsHostCompressor) {
  SKIP_WITHOUT_GPU();
  if (sparcl_testing::world_size() != 2) GTEST_SKIP() << "runs on 2 ranks";
  Comm c(SPARCL_ALGO_RECURSIVE_DOUBLING);
  ASSERT_EQ(c.status(), SPARCL_SUCCESS);
  const uint64_t dim = 300007;
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  const Case cases[] = {{SPARCL_COMPRESS_TOPK, SPARCL_VALUES_RAW, 1, 0.0f},
                        {SPARCL_COMPRESS_APPROX_TOPK, SPARCL_VALUES_FP16, 1, 0.9f},
                        {SPARCL_COMPRESS_THRESHOLD, SPARCL_VALUES_FP16, 0, 0.0f},
                        {SPARCL_COMPRESS_RANDOMK, SPARCL_VALUES_BF16, 1, 0.0f},
                        {SPARCL_COMPRESS_APPROX_TOPK, SPARCL_VALUES_QSGD4, 1, 0.0f},
                        {SPARCL_COMPRESS_NONE, SPARCL_VALUES_QSGD8, 1, 0.0f}};
  for (const Case& k : cases) {
    SCOPED_TRACE("method " + std::to_string(int(k.method)) + " values " + std::to_string(int(k.values)));
    const bool qsgd = is_qsgd(k.values);
    sparcl_compressor_config_t cfg = SPARCL_COMPRESSOR_CONFIG_INIT;
    cfg.method = k.method;
    cfg.values = k.values;
    cfg.error_feedback = k.error_feedback;
    cfg.momentum = k.momentum;
    cfg.threshold = 2.5f;
    cfg.seed = 11;
    sparcl_compressor_t host = nullptr, dev = nullptr;
    ASSERT_EQ(sparcl_compressor_create(&cfg, dim, &host), SPARCL_SUCCESS);
    ASSERT_EQ(sparcl_compressor_create_cuda(&cfg, dim, -1, &dev), SPARCL_SUCCESS) << sparcl_comm_last_error(nullptr);
    DeviceVector<float> d_grad(dim), d_out(dim);
    const auto device_residual = [&] {
      std::vector<float> r(dim);
      EXPECT_EQ(cudaMemcpy(r.data(), sparcl_compressor_residual(dev), dim * 4, cudaMemcpyDeviceToHost), cudaSuccess);
      return r;
    };
    for (int step = 0; step < 4; ++step) {
      SCOPED_TRACE("step " + std::to_string(step));
      const auto g = gradient(dim, world_rank(), step);
      std::vector<float> expected(dim);
      EXPECT_EQ(sparcl_allreduce_compressed(c.get(), host, g.data(), expected.data()), SPARCL_SUCCESS);
      const std::vector<float> before = qsgd ? device_residual() : std::vector<float>();
      d_grad.upload(g);
      float* out = step == 3 ? d_grad.p : d_out.p;  // the last step in place
      switch (step) {
        case 0:  // no stream: the legacy default stream, done on return
          EXPECT_EQ(sparcl_allreduce_compressed(c.get(), dev, d_grad.p, out), SPARCL_SUCCESS)
              << sparcl_comm_last_error(c.get());
          break;
        case 1:
        case 3:
          EXPECT_EQ(sparcl_allreduce_compressed_stream(c.get(), dev, d_grad.p, out, stream), SPARCL_SUCCESS)
              << sparcl_comm_last_error(c.get());
          break;
        case 2: {
          sparcl_request_t r = nullptr;
          EXPECT_EQ(sparcl_iallreduce_compressed_stream(c.get(), dev, d_grad.p, out, stream, &r), SPARCL_SUCCESS)
              << sparcl_comm_last_error(c.get());
          EXPECT_EQ(sparcl_wait(&r), SPARCL_SUCCESS);
          break;
        }
      }
      EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
      const auto got = (step == 3 ? d_grad : d_out).host();
      if (qsgd) {
        expect_residual_keeps_what_the_wire_lost(before, g, device_residual(), got);
      } else {
        EXPECT_TRUE(same_bits(got.data(), expected.data(), dim * 4));
      }
    }
    if (k.error_feedback && !qsgd) {
      EXPECT_TRUE(same_bits(device_residual().data(), sparcl_compressor_residual(host), dim * 4));
    }
    sparcl_compressor_free(host);
    sparcl_compressor_free(dev);
  }
  cudaStreamDestroy(stream);
}

// Sparse allreduce from device arrays, V float or double, I uint32 or uint64.
template <class V, class I>
void expect_sparse_device_equals_host(sparcl_comm_t comm, uint64_t dim, double density, cudaStream_t stream) {
  SCOPED_TRACE(std::string(sizeof(V) == 4 ? "float" : "double") + (sizeof(I) == 4 ? " u32" : " u64") +
               " density " + std::to_string(density));
  std::mt19937_64 rng(uint64_t(world_rank()) * 77 + dim);
  std::vector<I> idx;
  std::vector<V> val;
  for (uint64_t i = 0; i < dim; ++i)
    if (std::uniform_real_distribution<double>(0, 1)(rng) < density) {
      idx.push_back(I(i));
      val.push_back(V(std::normal_distribution<double>(0, 1)(rng)) * (i % 3 ? V(1) : V(-0.0)));
    }
  sparcl_sparse_t s{};
  s.dim = dim;
  s.nnz = idx.size();
  s.index_type = sizeof(I) == 4 ? SPARCL_INDEX_U32 : SPARCL_INDEX_U64;
  s.value_type = sizeof(V) == 4 ? SPARCL_FLOAT32 : SPARCL_FLOAT64;
  s.indices = idx.data();
  s.values = val.data();
  std::vector<V> expected(dim);
  EXPECT_EQ(sparcl_allreduce_sparse(&s, expected.data(), nullptr, comm), SPARCL_SUCCESS);
  DeviceVector<I> d_idx(idx);
  DeviceVector<V> d_val(val), d_out(dim);
  sparcl_sparse_t d = s;
  d.indices = d_idx.p;
  d.values = d_val.p;
  EXPECT_EQ(sparcl_allreduce_sparse(&d, d_out.p, nullptr, comm), SPARCL_SUCCESS) << sparcl_comm_last_error(comm);
  EXPECT_TRUE(same_bits(d_out.host().data(), expected.data(), dim * sizeof(V)));
  sparcl_sparse_t mixed = s;  // host indices, device values
  mixed.values = d_val.p;
  EXPECT_EQ(cudaMemset(d_out.p, 0xFF, dim * sizeof(V)), cudaSuccess);
  EXPECT_EQ(sparcl_allreduce_sparse_stream(&mixed, d_out.p, nullptr, comm, stream), SPARCL_SUCCESS)
      << sparcl_comm_last_error(comm);
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_TRUE(same_bits(d_out.host().data(), expected.data(), dim * sizeof(V)));
  sparcl_request_t r = nullptr;
  EXPECT_EQ(cudaMemset(d_out.p, 0xFF, dim * sizeof(V)), cudaSuccess);
  EXPECT_EQ(sparcl_iallreduce_sparse(&d, d_out.p, nullptr, comm, &r), SPARCL_SUCCESS);
  EXPECT_EQ(sparcl_wait(&r), SPARCL_SUCCESS);
  EXPECT_TRUE(same_bits(d_out.host().data(), expected.data(), dim * sizeof(V)));
  sparcl_result_t result = nullptr;  // device input, host result
  EXPECT_EQ(sparcl_allreduce_sparse(&d, nullptr, &result, comm), SPARCL_SUCCESS);
  std::vector<V> dense(dim);
  EXPECT_EQ(sparcl_result_to_dense(result, dense.data()), SPARCL_SUCCESS);
  EXPECT_TRUE(same_bits(dense.data(), expected.data(), dim * sizeof(V)));
  sparcl_result_free(result);
}

TEST(CudaCollectives, SparseAllreduceFromDeviceArraysEqualsHost) {
  SKIP_WITHOUT_GPU();
  Comm c;
  ASSERT_EQ(c.status(), SPARCL_SUCCESS);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  for (double density : {0.01, 0.7}) {  // a sparse and a dense sum
    expect_sparse_device_equals_host<float, uint32_t>(c.get(), 100003, density, stream);
    expect_sparse_device_equals_host<double, uint64_t>(c.get(), 50001, density, stream);
  }
  cudaStreamDestroy(stream);
}

TEST(CudaCollectives, HostOnlyCollectivesRejectDeviceBuffers) {
  SKIP_WITHOUT_GPU();
  Comm c;
  ASSERT_EQ(c.status(), SPARCL_SUCCESS);
  DeviceVector<float> d(1000);
  EXPECT_EQ(sparcl_allreduce(d.p, d.p, 1000, SPARCL_FLOAT32, SPARCL_SUM, c.get()), SPARCL_ERR_UNSUPPORTED);
  EXPECT_EQ(sparcl_allreduce(d.p, d.p, 1000, SPARCL_FLOAT32, SPARCL_MAX, c.get()), SPARCL_ERR_UNSUPPORTED);
  std::vector<uint32_t> idx = {3};
  sparcl_sparse_t s{};
  s.dim = 1000;
  s.nnz = 1;
  s.index_type = SPARCL_INDEX_U32;
  s.indices = idx.data();
  s.value_type = SPARCL_FLOAT32;
  s.values = d.p;
  std::vector<sparcl_result_t> results(2);
  EXPECT_EQ(sparcl_allgather_sparse(&s, results.data(), nullptr, c.get()), SPARCL_ERR_UNSUPPORTED);
  // Still in step: a collective after the failures works.
  std::vector<float> v(1000, 1.0f), out(1000);
  EXPECT_EQ(sparcl_allreduce(v.data(), out.data(), 1000, SPARCL_FLOAT32, SPARCL_SUM, c.get()), SPARCL_SUCCESS);
  EXPECT_EQ(out[5], float(sparcl_testing::world_size()));
}

#endif  // SPARCL_TEST_CUDA

}  // namespace
