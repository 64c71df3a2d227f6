// SPDX-License-Identifier: BSD-3-Clause
// sparcl_cuda.h where no GPU can be used (CI, and builds without CUDA): the
// device entry points return SPARCL_ERR_UNSUPPORTED with a message naming
// CUDA, leave the compressor as it was, and host buffers keep the host path.
// On a GPU machine the tests that need its absence skip.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#if !SPARCL_TEST_CUDA
#define SPARCL_CUDA_STREAM_TYPE_ONLY
#endif
#include "collectives/start.hpp"
#include "sparcl/sparcl_cuda.h"

namespace {

#define SKIP_WITH_GPU()                                                                           \
  do {                                                                                            \
    if (sparcl_cuda_device_count() > 0)                                                           \
      GTEST_SKIP() << "a CUDA device is present: this test checks the behaviour without one"; \
  } while (0)

bool names_cuda(const char* message) { return std::string(message).find("CUDA") != std::string::npos; }

TEST(CudaWithoutGpu, CreateIsUnsupported) {
  SKIP_WITH_GPU();
  EXPECT_EQ(sparcl_cuda_device_count(), 0);
  sparcl_compressor_t c = reinterpret_cast<sparcl_compressor_t>(1);
  EXPECT_EQ(sparcl_compressor_create_cuda(nullptr, 1000, 0, &c), SPARCL_ERR_UNSUPPORTED);
  EXPECT_EQ(c, nullptr);
  EXPECT_TRUE(names_cuda(sparcl_comm_last_error(nullptr))) << sparcl_comm_last_error(nullptr);
  EXPECT_EQ(sparcl_compressor_create_cuda(nullptr, 1000, -1, &c), SPARCL_ERR_UNSUPPORTED);
}

// A stream given for a host compressor: unsupported, and the compressor's
// state is untouched (the next plain step equals a twin's).
TEST(CudaWithoutGpu, StreamStepIsUnsupportedAndChangesNothing) {
  SKIP_WITH_GPU();
  const uint64_t dim = 5000;
  sparcl_compressor_config_t cfg = SPARCL_COMPRESSOR_CONFIG_INIT;
  sparcl_compressor_t c = nullptr, twin = nullptr;
  ASSERT_EQ(sparcl_compressor_create(&cfg, dim, &c), SPARCL_SUCCESS);
  ASSERT_EQ(sparcl_compressor_create(&cfg, dim, &twin), SPARCL_SUCCESS);
  std::vector<float> g(dim);
  for (uint64_t i = 0; i < dim; ++i) g[i] = float(i % 97) - 48.0f;
  sparcl_sparse_t s{}, t{};
  EXPECT_EQ(sparcl_compress_stream(c, g.data(), &s, nullptr), SPARCL_ERR_UNSUPPORTED);
  EXPECT_TRUE(names_cuda(sparcl_comm_last_error(nullptr))) << sparcl_comm_last_error(nullptr);
  ASSERT_EQ(sparcl_compress(c, g.data(), &s), SPARCL_SUCCESS);
  ASSERT_EQ(sparcl_compress(twin, g.data(), &t), SPARCL_SUCCESS);
  ASSERT_EQ(s.nnz, t.nnz);
  for (size_t j = 0; j < s.nnz; ++j) {
    EXPECT_EQ(static_cast<const uint32_t*>(s.indices)[j], static_cast<const uint32_t*>(t.indices)[j]);
    EXPECT_EQ(static_cast<const float*>(s.values)[j], static_cast<const float*>(t.values)[j]);
  }
  sparcl_compressor_free(c);
  sparcl_compressor_free(twin);
}

TEST(CudaWithoutGpu, HostBuffersAreNotDeviceBuffers) {
  SKIP_WITH_GPU();
  std::vector<uint32_t> idx = {1, 5, 9};
  std::vector<float> val = {1.0f, 2.0f, 3.0f}, dense(10);
  sparcl_sparse_t s{};
  s.dim = 10;
  s.nnz = 3;
  s.index_type = SPARCL_INDEX_U32;
  s.indices = idx.data();
  s.value_type = SPARCL_FLOAT32;
  s.values = val.data();
  // Builds without CUDA register no staging: every buffer is host memory.
  const sparcl::DeviceStaging* staging = sparcl::device_staging();
  if (!staging) return;
  EXPECT_FALSE(staging->any_device_buffer(&s, dense.data()));
  EXPECT_FALSE(staging->any_device_buffer(nullptr, nullptr));
  EXPECT_NO_THROW(staging->require_host_buffers(idx.data(), dense.data(), "test"));
}

TEST(Cuda, NullArguments) {
  EXPECT_EQ(sparcl_compressor_create_cuda(nullptr, 1000, 0, nullptr), SPARCL_ERR_INVALID_ARG);
  sparcl_sparse_t s{};
  EXPECT_EQ(sparcl_compress_stream(nullptr, nullptr, &s, nullptr), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(sparcl_allreduce_compressed_stream(nullptr, nullptr, nullptr, nullptr, nullptr), SPARCL_ERR_INVALID_ARG);
  sparcl_request_t r = nullptr;
  EXPECT_EQ(sparcl_iallreduce_compressed_stream(nullptr, nullptr, nullptr, nullptr, nullptr, &r),
            SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(sparcl_allreduce_sparse_stream(&s, nullptr, nullptr, nullptr, nullptr), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(sparcl_iallreduce_sparse_stream(&s, nullptr, nullptr, nullptr, nullptr, &r), SPARCL_ERR_INVALID_ARG);
}

}  // namespace
