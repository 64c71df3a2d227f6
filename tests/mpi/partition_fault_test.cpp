// SPDX-License-Identifier: BSD-3-Clause
// Balanced ranges when ranks disagree on the cut: a test-only hook (linked
// from the library's objects) corrupts the summary rank 0 sends rank 1 in
// the last round of a balanced reduce-scatter (its last count arrives 4x too
// large, still a valid count), so rank 1 cuts the next call differently from
// the others. That call must fail on every rank (SPARCL_ERR_MISMATCH where
// an owner sees another range, never a wrong result), and the calls after
// it, cut equal again everywhere, are exact.
#include "mpi_test.hpp"
#include "src/test_hooks.hpp"

using namespace sparcl_testing;

namespace {

const Case kCase{30000, 0.05, Pattern::Overlapping, /*integer_values=*/true, 61};

// A balanced reduce-scatter of kCase (an empty vector on rank 0 if `empty`);
// `wrong` counts the part's values that differ from the exact sum.
sparcl_status_t reduce_scatter(const Comm& comm, bool empty, size_t& wrong) {
  const int p = world_size(), r = world_rank();
  SparseVec<float> mine = make_vector<float>(kCase, r, p);
  if (empty && r == 0) mine.idx.clear(), mine.val.clear();
  sparcl_sparse_t in = mine.as_input();
  sparcl_result_t part = nullptr;
  const sparcl_status_t st = sparcl_reduce_scatter_sparse(&in, nullptr, &part, comm.get());
  wrong = 0;
  if (st != SPARCL_SUCCESS) return st;
  std::vector<double> sum(kCase.dim, 0.0);
  for (int q = 0; q < p; ++q) {
    if (empty && q == 0) continue;
    SparseVec<float> v = make_vector<float>(kCase, q, p);
    for (size_t k = 0; k < v.idx.size(); ++k) sum[v.idx[k]] += double(v.val[k]);
  }
  uint64_t begin = 0, end = 0;
  sparcl_result_range(part, &begin, &end);
  std::vector<float> got(end - begin + 1);
  sparcl_result_to_dense(part, got.data());
  for (uint64_t i = begin; i < end; ++i) wrong += double(got[i - begin]) != sum[i];
  sparcl_result_free(part);
  return st;
}

TEST(BalancedRanges, DisagreementAfterAOneRankFailureIsAMismatchThenExact) {
  if (world_size() < 2) GTEST_SKIP() << "needs two ranks";
  sparcl_config_t config = SPARCL_CONFIG_INIT;
  config.timeout_ms = 60000;
  config.partition = SPARCL_PARTITION_BALANCED;
  Comm comm(config);
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
  size_t wrong = 0;
  // Two good calls: the second one's ranges are cut from the first.
  for (int k = 0; k < 2; ++k) {
    ASSERT_EQ(reduce_scatter(comm, false, wrong), SPARCL_SUCCESS) << comm.error();
    EXPECT_EQ(wrong, 0u);
  }
  // Rank 0 sends no entries, so the first message it sends with a payload is
  // its summary, to rank 1 (the values of that call are not concerned).
  if (world_rank() == 0) sparcl::testing::corrupt_next_message(comm.get());
  EXPECT_EQ(reduce_scatter(comm, true, wrong), SPARCL_SUCCESS) << comm.error();
  EXPECT_EQ(wrong, 0u);
  all_ranks(true);
  // Rank 1 cuts otherwise than the others: every rank fails.
  const sparcl_status_t next = reduce_scatter(comm, false, wrong);
  EXPECT_TRUE(all_ranks(next != SPARCL_SUCCESS)) << "a call over ranges the ranks disagree on succeeded somewhere";
  EXPECT_TRUE(next == SPARCL_ERR_MISMATCH || next == SPARCL_ERR_PEER_FAILED) << next << ": " << comm.error();
  EXPECT_TRUE(all_ranks(next == SPARCL_ERR_MISMATCH || std::string(comm.error()).find("index range") != std::string::npos))
      << comm.error();
  // Then every rank is in step again.
  for (int k = 0; k < 2; ++k) {
    EXPECT_EQ(reduce_scatter(comm, false, wrong), SPARCL_SUCCESS) << comm.error();
    EXPECT_EQ(wrong, 0u);
  }
}

}  // namespace
