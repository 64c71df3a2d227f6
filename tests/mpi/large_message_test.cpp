// SPDX-License-Identifier: BSD-3-Clause
// One 256 MiB message per rank on the transport chosen by SPARCL_TRANSPORT:
// a sparse allgather of a fully dense float vector of 64 Mi elements (sent
// in dense form, forwarded around the ring), checked value by value.
#include <cstdint>
#include <vector>

#include "mpi_test.hpp"

using namespace sparcl_testing;

namespace {

TEST(LargeMessage, QuarterGigabytePerRank) {
  Comm comm;
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
  const int p = world_size(), r = world_rank();
  const uint64_t dim = uint64_t(64) << 20;
  std::vector<uint32_t> idx(dim);
  std::vector<float> val(dim);
  for (uint64_t i = 0; i < dim; ++i) {
    idx[i] = uint32_t(i);
    val[i] = float(i % 1000 + 1000 * uint64_t(r));
  }
  sparcl_sparse_t in{dim, dim, SPARCL_INDEX_U32, idx.data(), SPARCL_FLOAT32, val.data(), 0};
  std::vector<sparcl_result_t> results(static_cast<size_t>(p));
  ASSERT_EQ(sparcl_comm_reset_stats(comm.get()), SPARCL_SUCCESS);
  ASSERT_EQ(sparcl_allgather_sparse(&in, results.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
  sparcl_stats_t stats{};
  sparcl_comm_stats(comm.get(), &stats);
  if (p > 1) {
    EXPECT_GE(stats.bytes_sent / stats.messages_sent, dim * sizeof(float)) << "messages were not 256 MiB";
  }
  for (int q = 0; q < p; ++q) {
    const sparcl_result_t res = results[size_t(q)];
    ASSERT_TRUE(sparcl_result_is_dense(res));
    const float* v = static_cast<const float*>(sparcl_result_values(res));
    uint64_t wrong = 0;
    for (uint64_t i = 0; i < dim; ++i) wrong += v[i] != float(i % 1000 + 1000 * uint64_t(q));
    EXPECT_EQ(wrong, 0u) << "vector of rank " << q;
    sparcl_result_free(res);
  }
}

}  // namespace
