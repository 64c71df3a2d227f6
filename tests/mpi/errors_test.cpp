// SPDX-License-Identifier: BSD-3-Clause
// Bad input on one rank or on all: every rank gets a clear status, nobody
// hangs, and the communicator keeps working afterwards.
#include <chrono>
#include <cstdlib>

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

// A call that fails on one rank before it starts (bad input there only)
// still takes its place on that rank (sequence number, auto's records, the
// native order), so the next allreduce of the same dim succeeds everywhere,
// exactly, also while auto is measuring its candidates.
TEST_P(Errors, FailureBeforeTheStartKeepsTheRanksInStep) {
  Comm comm(GetParam());
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const int bad = world_size() - 1;
  const uint64_t dim = 4096;
  Valid v(dim);
  const sparcl_sparse_t good = v.input();
  sparcl_sparse_t broken = good;
  broken.indices = nullptr;
  std::vector<float> out(dim);
  for (int round = 0; round < 6; ++round) {
    const bool me = world_rank() == bad;
    const sparcl_status_t failed = sparcl_allreduce_sparse(me ? &broken : &good, out.data(), nullptr, comm.get());
    EXPECT_EQ(failed, SPARCL_ERR_INVALID_ARG) << comm.error();
    for (int ok = 0; ok < 3; ++ok) {
      std::fill(out.begin(), out.end(), -1.0f);
      EXPECT_EQ(sparcl_allreduce_sparse(&good, out.data(), nullptr, comm.get()), SPARCL_SUCCESS)
          << "round " << round << ": " << comm.error();
      std::vector<float> expected(dim, 0.0f);
      for (int r = 0; r < world_size(); ++r) expected[uint64_t(r) % dim] += 1.0f;
      EXPECT_EQ(out, expected) << "round " << round;
    }
  }
  all_ranks(true);
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

bool native_transport() {
  const char* t = std::getenv("SPARCL_TRANSPORT");
  return t && std::string(t) != "mpi";
}

// The timeout of the tests below. It bounds the communicator's creation too,
// so it leaves room for that on loaded machines and under sanitizers
// (libfabric and UCX take 0.3-1 s to connect 3 ranks here).
const int64_t kTimeoutMs = native_transport() ? 3000 : 1000;

// A rank that comes late makes the others time out; it learns of their
// timeout from their abort notices, and the communicator stays aligned.
// (On the native transports at 2 ranks only: the notices take the same path
// at every size, and each run waits for the timeout.)
TEST(Timeout, LateRankMakesTheOthersTimeOutAndHearsOfIt) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  if (native_transport() && world_size() > 2) GTEST_SKIP() << "runs at 2 ranks on this transport";
  Comm comm(SPARCL_ALGO_AUTO, kTimeoutMs);
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

// Milliseconds since `t0`.
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Ranks waiting for an absent one must give up within kTimeoutMs plus this
// slack (the cores are shared).
constexpr double kSlackMs = 10000;

// Creating a communicator waits for the other ranks only as long as the
// timeout: without rank 0 the others fail with SPARCL_ERR_TIMEOUT, and rank 0,
// coming after they left, times out too. (The bounded steps are MPI's, the
// same whichever transport follows: tested with the MPI transport.)
TEST(Timeout, CommCreateWithoutOneRankTimesOut) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  if (native_transport()) GTEST_SKIP() << "the same bootstrap as over MPI";
  // A communicator of the test's own: sparcl's pending step stays on it.
  MPI_Comm mpi_comm;
  MPI_Comm_dup(MPI_COMM_WORLD, &mpi_comm);
  sparcl_config_t config = SPARCL_CONFIG_INIT;
  config.timeout_ms = kTimeoutMs;
  const bool absent = world_rank() == 0;
  auto create = [&] {
    sparcl_comm_t comm = nullptr;
    const auto t0 = std::chrono::steady_clock::now();
    const sparcl_status_t st = sparcl_comm_create_mpi(mpi_comm, &config, &comm);
    const double took = ms_since(t0);
    const std::string error = sparcl_comm_last_error(nullptr);
    EXPECT_EQ(st, SPARCL_ERR_TIMEOUT) << error;
    EXPECT_EQ(comm, nullptr);
    EXPECT_GE(took, double(kTimeoutMs) * 0.9);
    EXPECT_LT(took, double(kTimeoutMs) + kSlackMs);
    EXPECT_NE(error.find("SPARCL_TIMEOUT_MS"), std::string::npos) << error;
    if (comm) sparcl_comm_free(comm);
  };
  if (!absent) create();
  all_ranks(true);  // rank 0 waits here until the others have given up
  if (absent) create();
  all_ranks(true);
  MPI_Comm_free(&mpi_comm);  // not used for collectives any more
}

// Freeing waits for the other ranks only as long as the timeout too: without
// rank 0 the others return SPARCL_ERR_TIMEOUT (the handle is gone all the
// same); rank 0, coming later, finds the others' part done or times out.
TEST(Timeout, CommFreeWithoutOneRankTimesOut) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  if (native_transport()) GTEST_SKIP() << "libfabric and UCX bound their own close (the transports' tests)";
  sparcl_config_t config = SPARCL_CONFIG_INIT;
  config.timeout_ms = kTimeoutMs;
  sparcl_comm_t comm = nullptr;
  ASSERT_TRUE(all_ranks(sparcl_comm_create_mpi(MPI_COMM_WORLD, &config, &comm) == SPARCL_SUCCESS));
  const bool late = world_rank() == 0;
  if (!late) {
    const auto t0 = std::chrono::steady_clock::now();
    const sparcl_status_t st = sparcl_comm_free(comm);
    const double took = ms_since(t0);
    const std::string error = sparcl_comm_last_error(nullptr);
    EXPECT_EQ(st, SPARCL_ERR_TIMEOUT) << error;
    EXPECT_GE(took, double(kTimeoutMs) * 0.9);
    EXPECT_LT(took, double(kTimeoutMs) + kSlackMs);
    EXPECT_NE(error.find("sparcl_comm_free"), std::string::npos) << error;
  }
  all_ranks(true);
  if (late) {
    const auto t0 = std::chrono::steady_clock::now();
    const sparcl_status_t st = sparcl_comm_free(comm);
    EXPECT_TRUE(st == SPARCL_SUCCESS || st == SPARCL_ERR_TIMEOUT) << sparcl_strerror(st);
    EXPECT_LT(ms_since(t0), double(kTimeoutMs) + kSlackMs);
  }
  all_ranks(true);
}

// The drop-in's ops without a sparse path go to MPI's own allreduce, after
// a barrier that checks the call on every rank, bounded by the same timeout:
// the ranks that waited for rank 0 time out and tell it; rank 0, coming
// late, fails with their cause instead of pairing with a later call, and
// the communicator goes on working exactly.
TEST(Timeout, PassedThroughAllreduceTimesOut) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  if (native_transport()) GTEST_SKIP() << "only MPI has an allreduce of its own";
  Comm comm(SPARCL_ALGO_AUTO, kTimeoutMs);
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const bool late = world_rank() == 0;
  std::vector<int32_t> mine(100, world_rank()), out(100, -1);
  if (!late) {
    const auto t0 = std::chrono::steady_clock::now();
    const sparcl_status_t st = sparcl_allreduce(mine.data(), out.data(), 100, SPARCL_INT32, SPARCL_MAX, comm.get());
    EXPECT_EQ(st, SPARCL_ERR_TIMEOUT) << comm.error();
    EXPECT_LT(ms_since(t0), double(kTimeoutMs) + kSlackMs);
    EXPECT_NE(std::string(comm.error()).find("SPARCL_TIMEOUT_MS"), std::string::npos) << comm.error();
  }
  all_ranks(true);
  if (late) {
    EXPECT_EQ(sparcl_allreduce(mine.data(), out.data(), 100, SPARCL_INT32, SPARCL_MAX, comm.get()), SPARCL_ERR_TIMEOUT)
        << comm.error();
    EXPECT_NE(std::string(comm.error()).find("SPARCL_TIMEOUT_MS"), std::string::npos) << comm.error();
  }
  all_ranks(true);
  EXPECT_EQ(sparcl_allreduce(mine.data(), out.data(), 100, SPARCL_INT32, SPARCL_MAX, comm.get()), SPARCL_SUCCESS)
      << comm.error();
  EXPECT_EQ(out[0], world_size() - 1);
  expect_still_works(comm);
}

}  // namespace
