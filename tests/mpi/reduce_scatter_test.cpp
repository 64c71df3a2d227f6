// SPDX-License-Identifier: BSD-3-Clause
// Sparse reduce-scatter under each partition: every rank's part is bitwise
// the same entries of split_allgather's allreduce, the parts tile [0, dim),
// bad input on one rank fails every rank and leaves the next call exact; and
// split_allgather, split_dense, ring and halving_doubling under balanced and
// hashed ranges stay exact, the last two evening out skewed inputs.
#include "mpi_test.hpp"

using namespace sparcl_testing;

namespace {

const sparcl_partition_t kPartitions[] = {SPARCL_PARTITION_EQUAL, SPARCL_PARTITION_BALANCED,
                                          SPARCL_PARTITION_HASHED};

std::string partition_label(sparcl_partition_t p) {
  return p == SPARCL_PARTITION_EQUAL ? "equal" : p == SPARCL_PARTITION_BALANCED ? "balanced" : "hashed";
}

sparcl_config_t config_for(sparcl_partition_t partition, sparcl_algorithm_t algorithm = SPARCL_ALGO_SPLIT_ALLGATHER) {
  sparcl_config_t config = SPARCL_CONFIG_INIT;
  config.algorithm = algorithm;
  config.timeout_ms = 60000;
  config.partition = partition;
  return config;
}

template <class V>
MPI_Datatype mpi_type() {
  return sizeof(V) == 4 ? MPI_FLOAT : MPI_DOUBLE;
}

// One reduce-scatter of case `c` beside the allreduce of the same vectors.
template <class V>
void check_against_allreduce(const Comm& comm, const Case& c, sparcl_partition_t partition) {
  const int p = world_size(), r = world_rank();
  const std::string what = c.describe() + " " + partition_label(partition);
  // The allreduce's balanced ranges come from its own history, so an index
  // may have another owner there, which adds in another order: bitwise
  // alike only where sums are exact.
  const bool bitwise = partition != SPARCL_PARTITION_BALANCED || c.integer_values;
  auto same_sum = [&](V got, V want) {
    if (bitwise) return std::memcmp(&got, &want, sizeof(V)) == 0 || (got == V(0) && want == V(0));
    return std::fabs(double(got) - double(want)) <= 8 * p * std::numeric_limits<V>::epsilon() * (1 + std::fabs(double(want)));
  };
  SparseVec<V> mine = make_vector<V>(c, r, p);
  sparcl_sparse_t in = mine.as_input();
  std::vector<V> sum(c.dim);
  ASSERT_EQ(sparcl_allreduce_sparse(&in, sum.data(), nullptr, comm.get()), SPARCL_SUCCESS) << what << comm.error();
  sparcl_result_t part = nullptr;
  const sparcl_status_t st = sparcl_reduce_scatter_sparse(&in, nullptr, &part, comm.get());
  ASSERT_EQ(st, SPARCL_SUCCESS) << what << ": " << comm.error();
  uint64_t begin = 0, end = 0;
  ASSERT_EQ(sparcl_result_range(part, &begin, &end), SPARCL_SUCCESS);
  EXPECT_EQ(sparcl_result_dim(part), c.dim);
  ASSERT_LE(begin, end);
  ASSERT_LE(end, c.dim);
  // Where each index's value lies: this rank's part, written into a vector
  // of dim values marked with the owner.
  std::vector<V> dense(end - begin + 1);  // never empty: to_dense takes no NULL
  ASSERT_EQ(sparcl_result_to_dense(part, dense.data()), SPARCL_SUCCESS);
  std::vector<int> owners(c.dim, 0);
  std::vector<V> values(c.dim, V(0));
  if (partition == SPARCL_PARTITION_HASHED) {
    EXPECT_EQ(begin, 0u);
    EXPECT_EQ(end, c.dim);
    EXPECT_FALSE(sparcl_result_is_dense(part) && c.dim > 64 && p > 2) << what;
    std::vector<uint64_t> entries;
    if (sparcl_result_is_dense(part)) {
      const V zero = V(0);
      for (uint64_t i = 0; i < c.dim; ++i)
        if (std::memcmp(&dense[i], &zero, sizeof(V)) != 0) entries.push_back(i);
    } else {
      const void* ix = sparcl_result_indices(part);
      const bool wide = sparcl_result_index_type(part) == SPARCL_INDEX_U64;
      for (size_t k = 0; k < sparcl_result_nnz(part); ++k)
        entries.push_back(wide ? static_cast<const uint64_t*>(ix)[k] : static_cast<const uint32_t*>(ix)[k]);
    }
    for (uint64_t i : entries) {
      owners[i] = 1;
      values[i] = dense[i];
      // Bitwise the allreduce's value.
      EXPECT_EQ(std::memcmp(&dense[i], &sum[i], sizeof(V)), 0) << what << " index " << i;
    }
  } else {
    for (uint64_t i = begin; i < end; ++i) {
      owners[i] = 1;
      values[i] = dense[i - begin];
      EXPECT_TRUE(same_sum(dense[i - begin], sum[i])) << what << " index " << i;
    }
  }
  sparcl_result_free(part);
  // The parts are disjoint and together hold every entry of the sum.
  MPI_Allreduce(MPI_IN_PLACE, owners.data(), int(c.dim), MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, values.data(), int(c.dim), mpi_type<V>(), MPI_SUM, MPI_COMM_WORLD);
  size_t overlaps = 0, wrong = 0;
  for (uint64_t i = 0; i < c.dim; ++i) {
    overlaps += owners[i] > 1;
    if (partition != SPARCL_PARTITION_HASHED) wrong += owners[i] != 1;
    wrong += !same_sum(values[i], sum[i]);
  }
  EXPECT_EQ(overlaps, 0u) << what;
  EXPECT_EQ(wrong, 0u) << what;
  if (c.integer_values) {
    EXPECT_EQ(count_wrong<V>(c, p, sum), 0u) << what;
  }
}

class ReduceScatter : public ::testing::TestWithParam<sparcl_partition_t> {};

TEST_P(ReduceScatter, BitwiseTheAllreducesEntries) {
  Comm comm(config_for(GetParam()));
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  uint64_t seed = 300;
  for (uint64_t dim : {1ull, 5ull, 1000ull, 70001ull})
    for (double d : {0.0, 0.01, 0.3, 1.0})
      for (Pattern pat : {Pattern::Disjoint, Pattern::Overlapping}) {
        check_against_allreduce<float>(comm, Case{dim, d, pat, seed % 2 == 0, seed}, GetParam());
        ++seed;
        check_against_allreduce<double>(comm, Case{dim, d, pat, seed % 2 == 0, seed}, GetParam());
        ++seed;
      }
}

// Rank r's vector with every third index of the first tenth of [0, dim)
// from r on (small integers), and the sum over `ranks` such vectors.
struct SkewedVector {
  SkewedVector(uint64_t n, int r, int ranks) : dim(n), sum(n, 0.0f) {
    for (int q = 0; q < ranks; ++q)
      for (uint32_t i = uint32_t(q); i < dim / 10; i += 3) {
        sum[i] += float(i % 7 + 1);
        if (q != r) continue;
        idx.push_back(i);
        val.push_back(float(i % 7 + 1));
      }
  }
  sparcl_sparse_t input() const {
    return sparcl_sparse_t{dim, idx.size(), SPARCL_INDEX_U32, idx.data(), SPARCL_FLOAT32, val.data(), 0};
  }
  uint64_t dim;
  std::vector<uint32_t> idx;
  std::vector<float> val, sum;
};

// Indices all in the first tenth of [0, dim): balanced ranges follow them
// from the second call on, and stay exact.
TEST_P(ReduceScatter, SkewedInputs) {
  Comm comm(config_for(GetParam()));
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const int p = world_size(), r = world_rank();
  const uint64_t dim = 100000;
  const SkewedVector mine(dim, r, p);
  const sparcl_sparse_t in = mine.input();
  const std::vector<float>& expect = mine.sum;
  for (int call = 0; call < 3; ++call) {
    sparcl_result_t part = nullptr;
    ASSERT_EQ(sparcl_reduce_scatter_sparse(&in, nullptr, &part, comm.get()), SPARCL_SUCCESS) << comm.error();
    uint64_t begin = 0, end = 0;
    sparcl_result_range(part, &begin, &end);
    std::vector<float> got(end - begin + 1);
    sparcl_result_to_dense(part, got.data());
    size_t wrong = 0;
    if (GetParam() == SPARCL_PARTITION_HASHED) {
      const auto* ix = static_cast<const uint32_t*>(sparcl_result_indices(part));
      for (size_t k = 0; k < sparcl_result_nnz(part); ++k) wrong += got[ix[k]] != expect[ix[k]];
    } else {
      for (uint64_t i = begin; i < end; ++i) wrong += got[i - begin] != expect[i];
    }
    EXPECT_EQ(wrong, 0u) << "call " << call;
    if (GetParam() == SPARCL_PARTITION_BALANCED && call > 0 && p > 1 && r == 0) {
      EXPECT_LT(end - begin, dim / 10) << "balanced ranges follow the entries";
    }
    if (GetParam() == SPARCL_PARTITION_EQUAL && r == 0) {
      EXPECT_EQ(end - begin, (dim + uint64_t(p) - 1) / uint64_t(p));
    }
    sparcl_result_free(part);
  }
}

TEST_P(ReduceScatter, BadInputOnOneRankFailsEveryRankThenExact) {
  Comm comm(config_for(GetParam()));
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const int p = world_size(), r = world_rank(), bad = p - 1;
  const Case c{5000, 0.05, Pattern::Overlapping, true, 77};
  SparseVec<float> mine = make_vector<float>(c, r, p);
  sparcl_sparse_t in = mine.as_input();
  for (int round = 0; round < 2; ++round) {
    // A valid call first, so that balanced ranges have a history to lose.
    check_against_allreduce<float>(comm, c, GetParam());
    sparcl_sparse_t broken = in;
    std::vector<uint64_t> unsorted = {9, 3};
    std::vector<float> two = {1.0f, 2.0f};
    if (r == bad) {
      broken.nnz = 2;
      broken.indices = unsorted.data();
      broken.values = two.data();
    }
    sparcl_result_t part = nullptr;
    const sparcl_status_t st = sparcl_reduce_scatter_sparse(&broken, nullptr, &part, comm.get());
    EXPECT_EQ(st, SPARCL_ERR_INVALID_ARG) << comm.error();
    if (r != bad) {  // told by the rank that failed
      EXPECT_NE(std::string(comm.error()).find("rank " + std::to_string(bad)), std::string::npos) << comm.error();
    }
    EXPECT_EQ(part, nullptr);
    check_against_allreduce<float>(comm, c, GetParam());
  }
}

TEST_P(ReduceScatter, DenseOutput) {
  Comm comm(config_for(GetParam()));
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const int p = world_size(), r = world_rank();
  const Case c{10007, 0.02, Pattern::Overlapping, true, 11};
  SparseVec<double> mine = make_vector<double>(c, r, p);
  sparcl_sparse_t in = mine.as_input();
  const uint64_t base = c.dim / uint64_t(p), extra = c.dim % uint64_t(p);
  const uint64_t begin = uint64_t(r) * base + std::min<uint64_t>(uint64_t(r), extra);
  const uint64_t length = base + (uint64_t(r) < extra ? 1 : 0);
  std::vector<double> got(length + 1, -1.0);
  const sparcl_status_t st = sparcl_reduce_scatter_sparse(&in, got.data(), nullptr, comm.get());
  if (GetParam() != SPARCL_PARTITION_EQUAL) {
    EXPECT_EQ(st, SPARCL_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(comm.error()).find(partition_label(GetParam())), std::string::npos) << comm.error();
  } else {
    ASSERT_EQ(st, SPARCL_SUCCESS) << comm.error();
    std::vector<double> sum, magnitude;
    reference_sum<double>(c, p, sum, magnitude);
    size_t wrong = 0;
    for (uint64_t k = 0; k < length; ++k) wrong += got[k] != sum[begin + k];
    EXPECT_EQ(wrong, 0u);
    EXPECT_EQ(got[length], -1.0) << "written past the rank's range";
  }
  check_against_allreduce<double>(comm, c, GetParam());  // the communicator is still in step
}

// Several in flight: balanced calls of one dim wait for each other's cut.
TEST_P(ReduceScatter, NonBlockingInFlight) {
  Comm comm(config_for(GetParam()));
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const int p = world_size(), r = world_rank();
  constexpr int kCalls = 4;
  std::vector<SparseVec<float>> vecs;
  std::vector<sparcl_sparse_t> ins;
  for (int k = 0; k < kCalls; ++k) vecs.push_back(make_vector<float>(Case{3000, 0.1, Pattern::Overlapping, true, 900u + uint64_t(k)}, r, p));
  for (auto& v : vecs) ins.push_back(v.as_input());
  std::vector<sparcl_result_t> parts(kCalls, nullptr);
  std::vector<sparcl_request_t> reqs(kCalls, nullptr);
  for (int k = 0; k < kCalls; ++k)
    ASSERT_EQ(sparcl_ireduce_scatter_sparse(&ins[size_t(k)], nullptr, &parts[size_t(k)], comm.get(), &reqs[size_t(k)]),
              SPARCL_SUCCESS);
  ASSERT_EQ(sparcl_waitall(kCalls, reqs.data(), nullptr), SPARCL_SUCCESS) << comm.error();
  for (int k = 0; k < kCalls; ++k) {
    const Case c{3000, 0.1, Pattern::Overlapping, true, 900u + uint64_t(k)};
    std::vector<double> sum, magnitude;
    reference_sum<float>(c, p, sum, magnitude);
    uint64_t begin = 0, end = 0;
    sparcl_result_range(parts[size_t(k)], &begin, &end);
    std::vector<float> got(end - begin + 1);
    sparcl_result_to_dense(parts[size_t(k)], got.data());
    size_t wrong = 0;
    if (GetParam() != SPARCL_PARTITION_HASHED)
      for (uint64_t i = begin; i < end; ++i) wrong += double(got[i - begin]) != sum[i];
    EXPECT_EQ(wrong, 0u) << "call " << k;
    sparcl_result_free(parts[size_t(k)]);
  }
}

// The algorithms that cut owner ranges, under the partition: exact, and the
// same bits on every rank.
TEST_P(ReduceScatter, PartitionedAllreducesExact) {
  for (sparcl_algorithm_t a : {SPARCL_ALGO_SPLIT_ALLGATHER, SPARCL_ALGO_SPLIT_DENSE, SPARCL_ALGO_RING,
                               SPARCL_ALGO_HALVING_DOUBLING}) {
    Comm comm(config_for(GetParam(), a));
    ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
    uint64_t seed = 500;
    for (uint64_t dim : {3ull, 4099ull, 100000ull})
      for (double d : {0.001, 0.05, 0.6}) {
        const Case c{dim, d, Pattern::Overlapping, true, seed++};
        SparseVec<float> mine = make_vector<float>(c, world_rank(), world_size());
        sparcl_sparse_t in = mine.as_input();
        for (int call = 0; call < 2; ++call) {
          std::vector<float> sum(dim);
          ASSERT_EQ(sparcl_allreduce_sparse(&in, sum.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
          EXPECT_EQ(count_wrong<float>(c, world_size(), sum), 0u) << c.describe() << " " << algorithm_label(a);
          EXPECT_TRUE(same_on_all_ranks(sum.data(), sum.size() * sizeof(float)));
        }
      }
  }
}

// Ring and halving_doubling on entries that all lie in the first tenth of
// [0, dim): exact on every rank at every call; balanced ranges (cut from the
// previous call's result) and hashed ones even out the bytes each rank
// receives, which equal ranges pile on the ranks whose ranges hold them.
// halving_doubling_hashed evens them out under every partition setting.
TEST_P(ReduceScatter, RingAndHalvingDoublingOnSkewedInputs) {
  const int p = world_size(), r = world_rank();
  const uint64_t dim = 100000;
  const SkewedVector mine(dim, r, p);
  const sparcl_sparse_t in = mine.input();
  const std::vector<float>& expect = mine.sum;
  for (sparcl_algorithm_t a : {SPARCL_ALGO_RING, SPARCL_ALGO_HALVING_DOUBLING, SPARCL_ALGO_HALVING_DOUBLING_HASHED}) {
    Comm comm(config_for(GetParam(), a));
    ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
    const bool hashed = a == SPARCL_ALGO_HALVING_DOUBLING_HASHED;
    double balance = 0;
    for (int call = 0; call < 3; ++call) {
      sparcl_stats_t before, after;
      ASSERT_EQ(sparcl_comm_stats(comm.get(), &before), SPARCL_SUCCESS);
      std::vector<float> sum(dim);
      ASSERT_EQ(sparcl_allreduce_sparse(&in, sum.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
      ASSERT_EQ(sparcl_comm_stats(comm.get(), &after), SPARCL_SUCCESS);
      EXPECT_EQ(std::memcmp(sum.data(), expect.data(), dim * sizeof(float)), 0)
          << algorithm_label(a) << " call " << call;
      double rx = double(after.bytes_received - before.bytes_received), most = rx, total = rx;
      MPI_Allreduce(MPI_IN_PLACE, &most, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
      balance = most / (total / p);
    }
    // The last call's most bytes received by one rank over the mean.
    if (p == 4 && GetParam() == SPARCL_PARTITION_EQUAL && !hashed) {
      EXPECT_GT(balance, 1.2) << algorithm_label(a) << ": the input is not skewed enough to tell partitions apart";
    } else if (p == 4) {
      EXPECT_LT(balance, 1.1) << algorithm_label(a);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Partitions, ReduceScatter, ::testing::ValuesIn(kPartitions),
                         [](const ::testing::TestParamInfo<sparcl_partition_t>& i) { return partition_label(i.param); });

// Ranks configured with different partitions cannot create a communicator.
TEST(ReduceScatterConfig, PartitionMismatchAtCreation) {
  if (world_size() < 2) GTEST_SKIP() << "needs two ranks";
  sparcl_config_t config = config_for(world_rank() == 0 ? SPARCL_PARTITION_HASHED : SPARCL_PARTITION_EQUAL);
  Comm comm(config);
  EXPECT_EQ(comm.status(), SPARCL_ERR_MISMATCH);
}

}  // namespace
