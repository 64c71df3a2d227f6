// SPDX-License-Identifier: BSD-3-Clause
// Sparse allreduce: every algorithm, dims that P does and does not divide,
// densities from empty to full, disjoint / overlapping / identical index sets,
// float and double, dense and result-object outputs; and the drop-in
// sparcl_allreduce against MPI_Allreduce.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "mpi_test.hpp"

using namespace sparcl_testing;

namespace {

std::vector<Case> cases() {
  std::vector<Case> out;
  // dims shared by all ranks: small, odd, prime and not divisible by any P.
  const uint64_t dims[] = {1, 2, 7, 100, 1021, 65543, 300007};
  const double densities[] = {0.0, 0.001, 0.01, 0.1, 0.5, 1.0};
  const Pattern patterns[] = {Pattern::Disjoint, Pattern::Overlapping, Pattern::Identical};
  uint64_t seed = 1;
  for (uint64_t dim : dims)
    for (double d : densities)
      for (Pattern p : patterns) {
        if (dim >= 65543 && d >= 0.5 && p != Pattern::Overlapping) continue;  // keep the suite short
        out.push_back(Case{dim, d, p, /*integer_values=*/seed % 3 != 0, seed});
        ++seed;
      }
  return out;
}

class Allreduce : public ::testing::TestWithParam<sparcl_algorithm_t> {};

template <class V>
void check_dense_output(const Comm& comm, const Case& c) {
  const int p = world_size(), r = world_rank();
  SparseVec<V> mine = make_vector<V>(c, r, p);
  sparcl_sparse_t in = mine.as_input();
  std::vector<V> out(c.dim, V(-12345));
  const sparcl_status_t st = sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get());
  EXPECT_EQ(st, SPARCL_SUCCESS) << c.describe() << ": " << comm.error();
  EXPECT_EQ(count_wrong<V>(c, p, out), 0u) << c.describe();
  EXPECT_TRUE(same_on_all_ranks(out.data(), out.size() * sizeof(V))) << c.describe();
}

template <class V>
void check_result_output(const Comm& comm, const Case& c) {
  const int p = world_size(), r = world_rank();
  SparseVec<V> mine = make_vector<V>(c, r, p);
  sparcl_sparse_t in = mine.as_input();
  sparcl_result_t res = nullptr;
  const sparcl_status_t st = sparcl_allreduce_sparse(&in, nullptr, &res, comm.get());
  EXPECT_EQ(st, SPARCL_SUCCESS) << c.describe() << ": " << comm.error();
  if (!res) {
    ADD_FAILURE() << "no result object";
    all_ranks(false);
    return;
  }
  EXPECT_EQ(sparcl_result_dim(res), c.dim);
  EXPECT_EQ(sparcl_result_value_type(res), sizeof(V) == 4 ? SPARCL_FLOAT32 : SPARCL_FLOAT64);
  EXPECT_EQ(sparcl_result_index_type(res), SPARCL_INDEX_U32);
  const size_t nnz = sparcl_result_nnz(res);
  if (sparcl_result_is_dense(res)) {
    EXPECT_EQ(nnz, c.dim);
    EXPECT_EQ(sparcl_result_indices(res), nullptr);
  } else {
    // Sorted, unique, in range, and sparse by SparCML's rule.
    const auto* idx = static_cast<const uint32_t*>(sparcl_result_indices(res));
    for (size_t k = 0; k < nnz; ++k) {
      EXPECT_LT(idx[k], c.dim);
      if (k) {
        EXPECT_LT(idx[k - 1], idx[k]);
      }
    }
    EXPECT_LT(nnz * (4 + sizeof(V)), c.dim * sizeof(V)) << "sparse result larger than dense";
  }
  if (sparcl_result_is_dense(res)) {  // dense only when the sparse form would not be smaller
    const V* val = static_cast<const V*>(sparcl_result_values(res));
    size_t set = 0;
    for (size_t k = 0; k < nnz; ++k) set += val[k] != V(0) || std::signbit(val[k]);
    EXPECT_GE(set * (4 + sizeof(V)), c.dim * sizeof(V)) << "dense result with " << set << " entries set";
  }
  std::vector<V> dense(c.dim);
  EXPECT_EQ(sparcl_result_to_dense(res, dense.data()), SPARCL_SUCCESS);
  EXPECT_EQ(count_wrong<V>(c, p, dense), 0u) << c.describe();
  sparcl_result_free(res);
  all_ranks(true);
}

TEST_P(Allreduce, DenseOutputFloat) {
  Comm comm(GetParam());
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  for (const Case& c : cases()) check_dense_output<float>(comm, c);
}

TEST_P(Allreduce, DenseOutputDouble) {
  Comm comm(GetParam());
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  for (const Case& c : cases()) check_dense_output<double>(comm, c);
}

TEST_P(Allreduce, ResultObject) {
  Comm comm(GetParam());
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  for (const Case& c : cases()) check_result_output<float>(comm, c);
}

TEST_P(Allreduce, UnsortedInputWithDuplicatesIsSortedAndSummed) {
  Comm comm(GetParam());
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const int p = world_size(), r = world_rank();
  const uint64_t dim = 1000;
  // Each rank lists index 5 three times and index r*7+1 once, in reverse order.
  std::vector<uint64_t> idx = {uint64_t(r) * 7 + 1, 5, 5, 5};
  std::vector<float> val = {2.0f, 1.0f, 1.0f, 1.0f};
  sparcl_sparse_t in{dim, idx.size(), SPARCL_INDEX_U64, idx.data(), SPARCL_FLOAT32, val.data(),
                     SPARCL_SPARSE_UNSORTED};
  std::vector<float> out(dim);
  ASSERT_EQ(sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
  std::vector<float> expect(dim, 0.0f);
  for (int q = 0; q < p; ++q) {
    expect[5] += 3.0f;
    expect[uint64_t(q) * 7 + 1] += 2.0f;
  }
  EXPECT_EQ(out, expect);
}

TEST_P(Allreduce, DropInMatchesMpiAllreduce) {
  Comm comm(GetParam());
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const int p = world_size(), r = world_rank();
  for (const Case& c : cases()) {
    if (!c.integer_values) continue;
    SparseVec<float> mine = make_vector<float>(c, r, p);
    std::vector<float> x(c.dim, 0.0f);
    for (size_t k = 0; k < mine.idx.size(); ++k) x[mine.idx[k]] = mine.val[k];
    std::vector<float> ours(c.dim), theirs(c.dim);
    EXPECT_EQ(sparcl_allreduce(x.data(), ours.data(), c.dim, SPARCL_FLOAT32, SPARCL_SUM, comm.get()),
              SPARCL_SUCCESS)
        << comm.error();
    MPI_Allreduce(x.data(), theirs.data(), int(c.dim), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    EXPECT_EQ(ours, theirs) << c.describe();
    // In place.
    EXPECT_EQ(sparcl_allreduce(SPARCL_IN_PLACE, x.data(), c.dim, SPARCL_FLOAT32, SPARCL_SUM, comm.get()),
              SPARCL_SUCCESS)
        << comm.error();
    EXPECT_EQ(x, theirs) << c.describe() << " (in place)";
  }
}

TEST_P(Allreduce, DropInPassesOtherOpsThrough) {
  Comm comm(GetParam());
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const int r = world_rank();
  std::vector<double> x = {double(r), -double(r), 3.5};
  std::vector<double> ours(3), theirs(3);
  const char* transport = std::getenv("SPARCL_TRANSPORT");
  if (transport && std::string(transport) != "mpi") {
    // Only MPI has an allreduce of its own to pass other ops to.
    EXPECT_EQ(sparcl_allreduce(x.data(), ours.data(), 3, SPARCL_FLOAT64, SPARCL_MAX, comm.get()),
              SPARCL_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(comm.error()), "");
    return;
  }
  EXPECT_EQ(sparcl_allreduce(x.data(), ours.data(), 3, SPARCL_FLOAT64, SPARCL_MAX, comm.get()), SPARCL_SUCCESS);
  MPI_Allreduce(x.data(), theirs.data(), 3, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  EXPECT_EQ(ours, theirs);
  std::vector<int32_t> xi = {r, 1, -r}, oi(3), ti(3);
  EXPECT_EQ(sparcl_allreduce(xi.data(), oi.data(), 3, SPARCL_INT32, SPARCL_SUM, comm.get()), SPARCL_SUCCESS);
  MPI_Allreduce(xi.data(), ti.data(), 3, MPI_INT32_T, MPI_SUM, MPI_COMM_WORLD);
  EXPECT_EQ(oi, ti);
}

TEST_P(Allreduce, ManyCallsOnOneCommunicator) {
  Comm comm(GetParam());
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const int p = world_size(), r = world_rank();
  for (int it = 0; it < 200; ++it) {
    const uint64_t dim = 50 + uint64_t(it) * 13;
    std::vector<uint64_t> idx = {uint64_t(it + r) % dim};
    std::vector<double> val = {1.0};
    sparcl_sparse_t in{dim, 1, SPARCL_INDEX_U64, idx.data(), SPARCL_FLOAT64, val.data(), 0};
    std::vector<double> out(dim);
    ASSERT_EQ(sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
    double total = 0;
    for (double v : out) total += v;
    EXPECT_EQ(total, double(p));
  }
}

// IEEE's additive identity is -0.0: an index where every rank holds -0.0 sums
// to -0.0 (as MPI_Allreduce gives), on every algorithm, bitwise alike on all
// ranks, in a dense buffer, a result object and through the drop-in. Dims
// from 16 (every algorithm sums densely) to 100,000 (sparse all the way).
TEST_P(Allreduce, NegativeZeroIsKept) {
  Comm comm(GetParam());
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  for (uint32_t dim : {16u, 1000u, 100000u}) {
    // Index 3: -0.0 on every rank; index 5: 1.0 on every rank; index 7 + r: r's own -0.0.
    std::vector<uint32_t> idx{3, 5, 7 + uint32_t(world_rank())};
    std::vector<float> val{-0.0f, 1.0f, -0.0f};
    sparcl_sparse_t in{dim, idx.size(), SPARCL_INDEX_U32, idx.data(), SPARCL_FLOAT32, val.data(), 0};
    std::vector<float> out(dim, 42.0f);
    ASSERT_EQ(sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
    EXPECT_TRUE(out[3] == 0.0f && std::signbit(out[3])) << "dim " << dim << ": index 3 is " << out[3];
    EXPECT_EQ(out[5], float(world_size()));
    EXPECT_TRUE(same_on_all_ranks(out.data(), out.size() * sizeof(float))) << dim;

    sparcl_result_t res = nullptr;
    ASSERT_EQ(sparcl_allreduce_sparse(&in, nullptr, &res, comm.get()), SPARCL_SUCCESS) << comm.error();
    std::vector<float> via_result(dim, 42.0f);
    EXPECT_EQ(sparcl_result_to_dense(res, via_result.data()), SPARCL_SUCCESS);
    EXPECT_EQ(std::memcmp(via_result.data(), out.data(), dim * sizeof(float)), 0) << dim;
    if (!sparcl_result_is_dense(res)) {
      EXPECT_GE(sparcl_result_nnz(res), 2u) << "the -0.0 entry was dropped";
    }
    sparcl_result_free(res);

    // The drop-in against MPI_Allreduce, bit for bit at the -0.0 and 1.0 entries.
    std::vector<float> x(dim, 0.0f), mine(dim), theirs(dim);
    x[3] = -0.0f;
    x[5] = 1.0f;
    ASSERT_EQ(sparcl_allreduce(x.data(), mine.data(), dim, SPARCL_FLOAT32, SPARCL_SUM, comm.get()), SPARCL_SUCCESS)
        << comm.error();
    MPI_Allreduce(x.data(), theirs.data(), int(dim), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    EXPECT_EQ(std::memcmp(mine.data(), theirs.data(), dim * sizeof(float)), 0) << "dim " << dim;
  }
}

// An empty sum is returned sparse (SparCML's rule: 0 entries are smaller
// than a dense vector), whatever the algorithm.
TEST_P(Allreduce, EmptySumIsSparse) {
  Comm comm(GetParam());
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  for (uint64_t dim : {1ull, 16ull, 1000ull}) {
    sparcl_sparse_t in{dim, 0, SPARCL_INDEX_U32, nullptr, SPARCL_FLOAT64, nullptr, 0};
    sparcl_result_t res = nullptr;
    ASSERT_EQ(sparcl_allreduce_sparse(&in, nullptr, &res, comm.get()), SPARCL_SUCCESS) << comm.error();
    EXPECT_FALSE(sparcl_result_is_dense(res)) << "dim " << dim;
    EXPECT_EQ(sparcl_result_nnz(res), 0u) << "dim " << dim;
    sparcl_result_free(res);
  }
}

// SparCML's rule on the wire and in the result, per algorithm, where sums
// are added densely (merge_all sums P parts densely from about 1/(8 log2 P)
// of a range) but stay far below the switch (about half the range): each
// rank holds 1.5/(8 P log2 P) of 2^18 entries, so the union holds at most
// 19%. Every message then has to travel sparse, so an algorithm sends at
// most about 2 * union / dim of what it sends for a full vector (8 bytes per
// sparse entry against 4 per dense value); the sum comes back sparse. The
// dense algorithms (split_dense, dense) send dense ranges by design, and
// auto runs whichever it tries.
TEST_P(Allreduce, WireAndResultFollowTheSparseRule) {
  const sparcl_algorithm_t a = GetParam();
  if (a == SPARCL_ALGO_AUTO || a == SPARCL_ALGO_SPLIT_DENSE || a == SPARCL_ALGO_DENSE) GTEST_SKIP();
  Comm comm(a);
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const int p = world_size(), r = world_rank();
  int levels = 0;
  while ((1 << levels) < p) ++levels;
  const uint64_t dim = 1u << 18;
  const Case sparse_case{dim, p > 1 ? 1.5 / (8.0 * p * levels) : 0.1, Pattern::Overlapping, true, 4242};
  const Case full_case{dim, 1.0, Pattern::Overlapping, true, 4243};
  std::vector<char> in_union(dim, 0);
  for (int q = 0; q < p; ++q)
    for (uint64_t i : make_vector<float>(sparse_case, q, p).idx) in_union[i] = 1;
  uint64_t union_nnz = 0;
  for (char c : in_union) union_nnz += uint64_t(c);
  ASSERT_LT(union_nnz * 8, dim * 4 / 2) << "the test case must stay well below the switch";

  auto run = [&](const Case& c, uint64_t& bytes, sparcl_result_t& res) {
    SparseVec<float> mine = make_vector<float>(c, r, p);
    sparcl_sparse_t in = mine.as_input();
    EXPECT_EQ(sparcl_comm_reset_stats(comm.get()), SPARCL_SUCCESS);
    EXPECT_EQ(sparcl_allreduce_sparse(&in, nullptr, &res, comm.get()), SPARCL_SUCCESS) << comm.error();
    sparcl_stats_t st{};
    EXPECT_EQ(sparcl_comm_stats(comm.get(), &st), SPARCL_SUCCESS);
    bytes = st.bytes_sent;
  };
  uint64_t sparse_bytes = 0, full_bytes = 0;
  sparcl_result_t res = nullptr, full = nullptr;
  run(sparse_case, sparse_bytes, res);
  run(full_case, full_bytes, full);
  ASSERT_NE(res, nullptr);
  EXPECT_FALSE(sparcl_result_is_dense(res));
  EXPECT_LE(sparcl_result_nnz(res), union_nnz);
  std::vector<float> got(dim);
  EXPECT_EQ(sparcl_result_to_dense(res, got.data()), SPARCL_SUCCESS);
  EXPECT_EQ(count_wrong<float>(sparse_case, p, got), 0u);
  EXPECT_TRUE(sparcl_result_is_dense(full));
  sparcl_result_free(res);
  sparcl_result_free(full);
  if (p == 1) {
    EXPECT_EQ(sparse_bytes, 0u);
  } else {
    // 2 * union / dim with 20% to spare for uneven ranges and headers.
    const double allowed = 1.2 * 2.0 * double(union_nnz) / double(dim) + 0.02;
    EXPECT_LE(double(sparse_bytes), allowed * double(full_bytes))
        << "sent " << sparse_bytes << " bytes for a union of " << union_nnz << " in " << dim << ", "
        << full_bytes << " for a full vector";
  }
  all_ranks(true);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, Allreduce, ::testing::ValuesIn(kAllAlgorithms),
                         [](const ::testing::TestParamInfo<sparcl_algorithm_t>& p) { return algorithm_label(p.param); });

}  // namespace

namespace {

// The traffic counters see the sparse saving: a 1%-dense vector moves far
// fewer bytes than its dense form would.
TEST(Stats, SparseAllreduceSendsFewerBytesThanDense) {
  Comm comm(SPARCL_ALGO_RING);
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const int p = world_size();
  const Case c{1u << 20, 0.01, Pattern::Overlapping, true, 77};
  SparseVec<float> mine = make_vector<float>(c, world_rank(), p);
  sparcl_sparse_t in = mine.as_input();
  sparcl_result_t res = nullptr;
  ASSERT_EQ(sparcl_comm_reset_stats(comm.get()), SPARCL_SUCCESS);
  ASSERT_EQ(sparcl_allreduce_sparse(&in, nullptr, &res, comm.get()), SPARCL_SUCCESS) << comm.error();
  sparcl_result_free(res);
  sparcl_stats_t st{};
  ASSERT_EQ(sparcl_comm_stats(comm.get(), &st), SPARCL_SUCCESS);
  EXPECT_EQ(st.collectives, 1u);
  if (p == 1) {
    EXPECT_EQ(st.bytes_sent, 0u);
    return;
  }
  // A dense ring allreduce sends 2 (P-1)/P of the vector per rank.
  const double dense_bytes = 2.0 * (p - 1) / p * double(c.dim) * sizeof(float);
  EXPECT_EQ(st.messages_sent, uint64_t(2 * (p - 1)));
  EXPECT_GT(st.bytes_sent, 0u);
  EXPECT_LT(double(st.bytes_sent), dense_bytes / 5) << "sent " << st.bytes_sent << " bytes";
}

}  // namespace
