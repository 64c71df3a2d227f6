// SPDX-License-Identifier: BSD-3-Clause
// Sparse allgather: every rank gets every rank's vector exactly, and the merged sum.
#include "mpi_test.hpp"

using namespace sparcl_testing;

namespace {

template <class V>
void check_allgather(const Comm& comm, const Case& c) {
  const int p = world_size(), r = world_rank();
  SparseVec<V> mine = make_vector<V>(c, r, p);
  sparcl_sparse_t in = mine.as_input();
  std::vector<sparcl_result_t> results(size_t(p), nullptr);
  sparcl_result_t merged = nullptr;
  const sparcl_status_t st = sparcl_allgather_sparse(&in, results.data(), &merged, comm.get());
  EXPECT_EQ(st, SPARCL_SUCCESS) << c.describe() << ": " << comm.error();
  if (st != SPARCL_SUCCESS) return;
  for (int q = 0; q < p; ++q) {
    SparseVec<V> theirs = make_vector<V>(c, q, p);
    std::vector<V> expect(c.dim, V(0)), got(c.dim, V(-1));
    for (size_t k = 0; k < theirs.idx.size(); ++k) expect[theirs.idx[k]] = theirs.val[k];
    EXPECT_EQ(sparcl_result_to_dense(results[size_t(q)], got.data()), SPARCL_SUCCESS);
    EXPECT_EQ(got, expect) << c.describe() << " vector of rank " << q;
    if (!sparcl_result_is_dense(results[size_t(q)])) {
      EXPECT_EQ(sparcl_result_nnz(results[size_t(q)]), theirs.idx.size());
    }
    sparcl_result_free(results[size_t(q)]);
  }
  std::vector<V> sum(c.dim);
  EXPECT_EQ(sparcl_result_to_dense(merged, sum.data()), SPARCL_SUCCESS);
  EXPECT_EQ(count_wrong<V>(c, p, sum), 0u) << c.describe();
  EXPECT_TRUE(same_on_all_ranks(sum.data(), sum.size() * sizeof(V)));
  sparcl_result_free(merged);
}

TEST(Allgather, EveryRankGetsEveryVector) {
  Comm comm;
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  uint64_t seed = 100;
  for (uint64_t dim : {1ull, 5ull, 1000ull, 70001ull})
    for (double d : {0.0, 0.01, 0.2, 1.0})
      for (Pattern pat : {Pattern::Disjoint, Pattern::Overlapping, Pattern::Identical}) {
        check_allgather<float>(comm, Case{dim, d, pat, true, seed++});
        check_allgather<double>(comm, Case{dim, d, pat, seed % 2 == 0, seed++});
      }
}

TEST(Allgather, WithoutMergedResult) {
  Comm comm;
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const int p = world_size(), r = world_rank();
  std::vector<uint32_t> idx = {uint32_t(r)};
  std::vector<float> val = {float(r + 1)};
  sparcl_sparse_t in{uint64_t(p), 1, SPARCL_INDEX_U32, idx.data(), SPARCL_FLOAT32, val.data(), 0};
  std::vector<sparcl_result_t> results(static_cast<size_t>(p));
  ASSERT_EQ(sparcl_allgather_sparse(&in, results.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
  for (int q = 0; q < p; ++q) {
    std::vector<float> got(static_cast<size_t>(p));
    sparcl_result_to_dense(results[size_t(q)], got.data());
    EXPECT_EQ(got[size_t(q)], float(q + 1));
    sparcl_result_free(results[size_t(q)]);
  }
}

}  // namespace
