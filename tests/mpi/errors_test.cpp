// SPDX-License-Identifier: BSD-3-Clause
// Bad input on one rank or on all: every rank gets a clear status, nobody
// hangs, and the communicator keeps working afterwards.
#include "mpi_test.hpp"

using namespace sparcl_testing;

namespace {

class Errors : public ::testing::TestWithParam<sparcl_algorithm_t> {};

// A valid input: one nonzero per rank.
struct Valid {
  explicit Valid(uint64_t dim_) : dim(dim_), idx{uint64_t(world_rank()) % dim_}, val{1.0f} {}
  sparcl_sparse_t input() const {
    return sparcl_sparse_t{dim, 1, SPARCL_INDEX_U64, idx.data(), SPARCL_FLOAT32, val.data(), 0};
  }
  uint64_t dim;
  std::vector<uint64_t> idx;
  std::vector<float> val;
};

// After a failed collective the communicator must still give correct sums.
void expect_still_works(const Comm& comm) {
  Valid v(64);
  sparcl_sparse_t in = v.input();
  std::vector<float> out(64);
  EXPECT_EQ(sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
  float total = 0;
  for (float x : out) total += x;
  EXPECT_EQ(total, float(world_size()));
}

// Rank `bad` calls with `broken`; the others with a valid input. Every rank
// must return `expected` (ranks other than `bad` learn it from `bad`).
void expect_everyone_fails(const Comm& comm, int bad, const sparcl_sparse_t& broken, sparcl_status_t expected,
                           const char* what) {
  Valid v(broken.dim ? broken.dim : 100);
  sparcl_sparse_t good = v.input();
  const bool me = world_rank() == bad;
  std::vector<float> out(good.dim + 1);
  const sparcl_status_t st = sparcl_allreduce_sparse(me ? &broken : &good, out.data(), nullptr, comm.get());
  EXPECT_EQ(st, expected) << what << " (rank " << world_rank() << "): " << comm.error();
  EXPECT_NE(std::string(comm.error()), "") << what;
  if (world_size() > 1 && !me) {
    EXPECT_NE(std::string(comm.error()).find("rank " + std::to_string(bad)), std::string::npos)
        << what << ": message should name the failing rank: " << comm.error();
  }
  all_ranks(true);
  expect_still_works(comm);
}

TEST_P(Errors, InvalidInputOnOneRankFailsEverywhere) {
  Comm comm(GetParam());
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const int bad = world_size() - 1;
  const uint64_t dim = 100;
  std::vector<uint64_t> unsorted = {7, 3}, duplicate = {3, 3}, out_of_range = {2, 100};
  std::vector<float> vals = {1.0f, 1.0f};
  sparcl_sparse_t in{dim, 2, SPARCL_INDEX_U64, unsorted.data(), SPARCL_FLOAT32, vals.data(), 0};
  expect_everyone_fails(comm, bad, in, SPARCL_ERR_INVALID_ARG, "unsorted indices");
  in.indices = duplicate.data();
  expect_everyone_fails(comm, bad, in, SPARCL_ERR_INVALID_ARG, "duplicate indices");
  in.indices = out_of_range.data();
  expect_everyone_fails(comm, bad, in, SPARCL_ERR_INVALID_ARG, "index >= dim");
  sparcl_sparse_t too_many{2, 3, SPARCL_INDEX_U64, unsorted.data(), SPARCL_FLOAT32, vals.data(), 0};
  too_many.dim = dim;
  too_many.nnz = dim + 1;
  expect_everyone_fails(comm, bad, too_many, SPARCL_ERR_INVALID_ARG, "nnz > dim");
  sparcl_sparse_t null_arrays{dim, 2, SPARCL_INDEX_U64, nullptr, SPARCL_FLOAT32, nullptr, 0};
  expect_everyone_fails(comm, bad, null_arrays, SPARCL_ERR_INVALID_ARG, "NULL arrays");
  sparcl_sparse_t bad_type{dim, 2, SPARCL_INDEX_U64, unsorted.data(), sparcl_datatype_t(99), vals.data(), 0};
  expect_everyone_fails(comm, bad, bad_type, SPARCL_ERR_INVALID_ARG, "unknown value type");
}

TEST_P(Errors, MismatchedDimOrTypeIsReportedOnEveryRank) {
  Comm comm(GetParam());
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  // Rank 0 uses another dim.
  {
    Valid v(world_rank() == 0 ? 1001 : 1000);
    sparcl_sparse_t in = v.input();
    std::vector<float> out(1001);
    const sparcl_status_t st = sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get());
    EXPECT_EQ(st, SPARCL_ERR_MISMATCH) << comm.error();
    all_ranks(true);
  }
  // The last rank uses double values.
  {
    const bool odd = world_rank() == world_size() - 1;
    std::vector<uint64_t> idx = {1};
    std::vector<double> val = {1.0};
    std::vector<float> valf = {1.0f};
    sparcl_sparse_t in{500, 1, SPARCL_INDEX_U64, idx.data(), odd ? SPARCL_FLOAT64 : SPARCL_FLOAT32,
                       odd ? static_cast<const void*>(val.data()) : valf.data(), 0};
    std::vector<double> out(500);
    const sparcl_status_t st = sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get());
    EXPECT_EQ(st, SPARCL_ERR_MISMATCH) << comm.error();
    all_ranks(true);
  }
  // Rank 0 calls allgather while the others call allreduce.
  {
    Valid v(300);
    sparcl_sparse_t in = v.input();
    std::vector<float> out(300);
    std::vector<sparcl_result_t> results(static_cast<size_t>(world_size()));
    const sparcl_status_t st = world_rank() == 0
                                   ? sparcl_allgather_sparse(&in, results.data(), nullptr, comm.get())
                                   : sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get());
    EXPECT_EQ(st, SPARCL_ERR_MISMATCH) << comm.error();
    all_ranks(true);
  }
  expect_still_works(comm);
}

TEST_P(Errors, NullArgumentsOnEveryRank) {
  Comm comm(GetParam());
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  Valid v(10);
  sparcl_sparse_t in = v.input();
  std::vector<float> out(10);
  sparcl_result_t res = nullptr;
  EXPECT_EQ(sparcl_allreduce_sparse(nullptr, out.data(), nullptr, comm.get()), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(sparcl_allreduce_sparse(&in, nullptr, nullptr, comm.get()), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(sparcl_allreduce_sparse(&in, out.data(), &res, comm.get()), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(sparcl_allgather_sparse(&in, nullptr, nullptr, comm.get()), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(sparcl_allreduce(nullptr, out.data(), 10, SPARCL_FLOAT32, SPARCL_SUM, comm.get()),
            SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(sparcl_allreduce_sparse(&in, out.data(), nullptr, nullptr), SPARCL_ERR_INVALID_ARG);
  EXPECT_NE(std::string(sparcl_comm_last_error(nullptr)), "");
  all_ranks(true);
  expect_still_works(comm);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, Errors, ::testing::ValuesIn(kAllAlgorithms),
                         [](const ::testing::TestParamInfo<sparcl_algorithm_t>& p) { return algorithm_label(p.param); });

TEST(CommCreate, MismatchedAlgorithmsAreRejectedOnEveryRank) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  Comm comm(world_rank() == 0 ? SPARCL_ALGO_RING : SPARCL_ALGO_RECURSIVE_DOUBLING);
  EXPECT_EQ(comm.status(), SPARCL_ERR_MISMATCH);
  EXPECT_EQ(comm.get(), nullptr);
  EXPECT_NE(std::string(sparcl_comm_last_error(nullptr)).find("algorithm"), std::string::npos);
}

TEST(CommCreate, QueriesAndVersion) {
  Comm comm;
  ASSERT_EQ(comm.status(), SPARCL_SUCCESS);
  int rank = -1, size = -1;
  EXPECT_EQ(sparcl_comm_rank(comm.get(), &rank), SPARCL_SUCCESS);
  EXPECT_EQ(sparcl_comm_size(comm.get(), &size), SPARCL_SUCCESS);
  EXPECT_EQ(rank, world_rank());
  EXPECT_EQ(size, world_size());
  EXPECT_EQ(sparcl_version(), SPARCL_VERSION_CODE);
  EXPECT_EQ(sparcl_comm_rank(comm.get(), nullptr), SPARCL_ERR_INVALID_ARG);
  EXPECT_STREQ(sparcl_strerror(SPARCL_ERR_MISMATCH), "ranks disagree on the arguments of a collective");
}

}  // namespace

namespace {

// A rank that comes late makes the others time out; it learns of their
// timeout from their abort notices, and the communicator stays aligned.
TEST(Timeout, LateRankMakesTheOthersTimeOutAndHearsOfIt) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  Comm comm(SPARCL_ALGO_AUTO, /*timeout_ms=*/300);
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const bool late = world_rank() == 0;
  if (late) {
    // Wait until every other rank has given up (they signal through MPI).
    int gave_up = 0;
    MPI_Allreduce(MPI_IN_PLACE, &gave_up, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  }
  Valid v(1000);
  sparcl_sparse_t in = v.input();
  std::vector<float> out(1000);
  const sparcl_status_t st = sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get());
  EXPECT_EQ(st, SPARCL_ERR_TIMEOUT) << comm.error();
  if (late) {
    EXPECT_NE(std::string(comm.error()).find("did not complete"), std::string::npos) << comm.error();
  } else {
    int gave_up = 1;
    MPI_Allreduce(MPI_IN_PLACE, &gave_up, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  }
  all_ranks(true);
  expect_still_works(comm);
}

}  // namespace
