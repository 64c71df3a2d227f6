// SPDX-License-Identifier: BSD-3-Clause
// The collectives that MPI performs itself (the dense algorithm's
// MPI_Iallreduce, and sparcl_allreduce's ops and types without a sparse
// path): whatever fails, every rank fails that call, and no later call gives
// a wrong result, hangs or aborts.
#include <chrono>
#include <cstdlib>
#include <functional>

#include "mpi_test.hpp"

using namespace sparcl_testing;

namespace {

bool native_transport() {
  const char* t = std::getenv("SPARCL_TRANSPORT");
  return t && std::string(t) != "mpi";
}

// rank + 1 everywhere: the sum is exact in float32.
std::vector<float> ramp(size_t n) { return std::vector<float>(n, float(world_rank() + 1)); }
float ramp_sum() { return float(world_size() * (world_size() + 1) / 2); }

// A correct call of each path: both must be exact.
void expect_exact(sparcl_comm_t comm, const char* after) {
  std::vector<float> in = ramp(1000), out(1000, -1.0f);
  EXPECT_EQ(sparcl_allreduce(in.data(), out.data(), in.size(), SPARCL_FLOAT32, SPARCL_SUM, comm), SPARCL_SUCCESS)
      << after << ": " << sparcl_comm_last_error(comm);
  for (float x : out) ASSERT_EQ(x, ramp_sum()) << after;
  if (native_transport()) return;
  std::vector<int32_t> mine(100, world_rank()), got(100, -1);
  EXPECT_EQ(sparcl_allreduce(mine.data(), got.data(), 100, SPARCL_INT32, SPARCL_MAX, comm), SPARCL_SUCCESS)
      << after << ": " << sparcl_comm_last_error(comm);
  for (int32_t x : got) ASSERT_EQ(x, world_size() - 1) << after;
}

// The dense algorithm with a timeout so short that calls keep failing on
// some ranks while others go on: some ranks start MPI's collective of a call
// and others do not. No call may succeed with a wrong sum, none may abort.
TEST(NativeDense, TimeoutsNeverGiveWrongSums) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  auto setting = [](const char* name, int fallback) { return std::getenv(name) ? std::atoi(std::getenv(name)) : fallback; };
  const int calls = setting("SPARCL_TEST_NATIVE_CALLS", 150);
  const int timeout_ms = setting("SPARCL_TEST_NATIVE_TIMEOUT_MS", 20);
  // Creation is bounded by the same timeout: retried (on a fresh MPI
  // communicator each time, which a given-up creation may leave a
  // collective pending on) until every rank has the communicator.
  sparcl_comm_t c = nullptr;
  for (int attempt = 0; attempt < 50; ++attempt) {
    MPI_Comm mpi;
    MPI_Comm_dup(MPI_COMM_WORLD, &mpi);
    sparcl_config_t config = SPARCL_CONFIG_INIT;
    config.algorithm = SPARCL_ALGO_DENSE;
    config.timeout_ms = timeout_ms;
    const bool ok = sparcl_comm_create_mpi(mpi, &config, &c) == SPARCL_SUCCESS;
    if (all_ranks(ok)) break;
    if (ok) sparcl_comm_abort(c);
    c = nullptr;
  }
  ASSERT_TRUE(all_ranks(c != nullptr));
  struct Comm {
    sparcl_comm_t handle;
    sparcl_comm_t get() const { return handle; }
    const char* error() const { return sparcl_comm_last_error(handle); }
  } comm{c};
  std::vector<float> in(100000), out(in.size());
  int succeeded = 0, wrong = 0, failed = 0;
  for (int k = 0; k < calls; ++k) {
    // Values of this call only: a rank whose MPI collective pairs with
    // another call of its peers gets another sum.
    std::fill(in.begin(), in.end(), float(world_rank() + 1 + k));
    std::fill(out.begin(), out.end(), -1.0f);
    const sparcl_status_t st = sparcl_allreduce(in.data(), out.data(), in.size(), SPARCL_FLOAT32, SPARCL_SUM, comm.get());
    if (st != SPARCL_SUCCESS) {
      ++failed;
      EXPECT_TRUE(st == SPARCL_ERR_TIMEOUT || st == SPARCL_ERR_PEER_FAILED) << sparcl_strerror(st) << ": " << comm.error();
      continue;
    }
    ++succeeded;
    bool exact = true;
    for (float x : out) exact = exact && x == ramp_sum() + float(world_size() * k);
    wrong += !exact;
  }
  std::printf("[rank %d] dense, timeout %d ms, %d calls: %d succeeded (%d of them wrong), %d failed\n", world_rank(),
              timeout_ms, calls, succeeded, wrong, failed);
  EXPECT_EQ(wrong, 0);
  all_ranks(true);
  sparcl_comm_abort(c);  // a free would be bounded by the same timeout
}

// After failures that leave ranks out of step, a communicator with a
// generous timeout still gives exact results (the first call of a later
// communicator is unaffected, and this one recovers: tested in the same way
// by a late rank).
TEST(NativeDense, LateRankThenExact) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  Comm comm(SPARCL_ALGO_DENSE, 300);
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  std::vector<float> in = ramp(100000), out(in.size());
  for (int k = 0; k < 3; ++k) {
    // The last rank comes after the others gave up.
    if (world_rank() == world_size() - 1) {
      MPI_Barrier(MPI_COMM_WORLD);
      EXPECT_NE(sparcl_allreduce(in.data(), out.data(), in.size(), SPARCL_FLOAT32, SPARCL_SUM, comm.get()),
                SPARCL_SUCCESS);
    } else {
      EXPECT_NE(sparcl_allreduce(in.data(), out.data(), in.size(), SPARCL_FLOAT32, SPARCL_SUM, comm.get()),
                SPARCL_SUCCESS);
      MPI_Barrier(MPI_COMM_WORLD);
    }
    all_ranks(true);
  }
  int exact_calls = 0;
  for (int k = 0; k < 3; ++k) {
    std::fill(out.begin(), out.end(), -1.0f);
    const sparcl_status_t st = sparcl_allreduce(in.data(), out.data(), in.size(), SPARCL_FLOAT32, SPARCL_SUM, comm.get());
    if (st != SPARCL_SUCCESS) continue;  // slow machine: a timeout is allowed, a wrong sum is not
    bool exact = true;
    for (float x : out) exact = exact && x == ramp_sum();
    EXPECT_TRUE(exact) << "call " << k;
    exact_calls += exact;
  }
  all_ranks(true);
}

// Ranks that call with other arguments: every rank gets SPARCL_ERR_MISMATCH
// and the next calls are exact.
void expect_mismatch_everywhere(sparcl_comm_t comm, const char* what, const std::function<sparcl_status_t()>& odd,
                                const std::function<sparcl_status_t()>& usual) {
  const sparcl_status_t st = world_rank() == 0 ? odd() : usual();
  EXPECT_EQ(st, SPARCL_ERR_MISMATCH) << what << " (rank " << world_rank() << "): " << sparcl_comm_last_error(comm);
  all_ranks(true);
  expect_exact(comm, what);
  all_ranks(true);
}

TEST(PassThrough, MismatchedCallsFailEverywhere) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  Comm comm(SPARCL_ALGO_AUTO, 20000);
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  sparcl_comm_t c = comm.get();
  std::vector<float> f(100, 1.0f), fo(200);
  std::vector<int32_t> i32(200, 1), io32(200);
  std::vector<int64_t> i64(200, 1), io64(200);
  auto sum_f = [&](size_t n) { return [&, n] { return sparcl_allreduce(f.data(), fo.data(), n, SPARCL_FLOAT32, SPARCL_SUM, c); }; };
  expect_mismatch_everywhere(c, "count 0 against 100", sum_f(0), sum_f(100));
  if (!native_transport()) {
    auto max_i = [&](size_t n) { return [&, n] { return sparcl_allreduce(i32.data(), io32.data(), n, SPARCL_INT32, SPARCL_MAX, c); }; };
    expect_mismatch_everywhere(c, "MAX against SUM", [&] { return sparcl_allreduce(f.data(), fo.data(), 100, SPARCL_FLOAT32, SPARCL_MAX, c); },
                               sum_f(100));
    expect_mismatch_everywhere(c, "int32 MAX: count 0 against 100", max_i(0), max_i(100));
    expect_mismatch_everywhere(c, "int32 MAX: count 200 against 100", max_i(200), max_i(100));
    expect_mismatch_everywhere(c, "int64 against int32",
                               [&] { return sparcl_allreduce(i64.data(), io64.data(), 100, SPARCL_INT64, SPARCL_MAX, c); },
                               max_i(100));
    expect_mismatch_everywhere(c, "MIN against MAX",
                               [&] { return sparcl_allreduce(i32.data(), io32.data(), 100, SPARCL_INT32, SPARCL_MIN, c); },
                               max_i(100));
  }
  // Count 0 everywhere is a success.
  EXPECT_EQ(sparcl_allreduce(f.data(), fo.data(), 0, SPARCL_FLOAT32, SPARCL_SUM, c), SPARCL_SUCCESS) << comm.error();
  EXPECT_EQ(sparcl_allreduce(i32.data(), io32.data(), 0, SPARCL_INT32, SPARCL_MAX, c), SPARCL_SUCCESS) << comm.error();
  all_ranks(true);
}

// A bad argument on one rank of a passed-through call: every rank fails and
// hears which rank and why; the communicator goes on exactly and frees cleanly.
TEST(PassThrough, BadArgumentOnOneRank) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  if (native_transport()) GTEST_SKIP() << "only MPI passes ops through";
  sparcl_config_t config = SPARCL_CONFIG_INIT;
  config.timeout_ms = 20000;
  sparcl_comm_t comm = nullptr;
  ASSERT_TRUE(all_ranks(sparcl_comm_create_mpi(MPI_COMM_WORLD, &config, &comm) == SPARCL_SUCCESS));
  std::vector<int32_t> mine(100, world_rank()), got(100, -1);
  const bool bad = world_rank() == 1;
  const sparcl_status_t st = sparcl_allreduce(mine.data(), bad ? nullptr : got.data(), 100, SPARCL_INT32, SPARCL_MAX, comm);
  EXPECT_EQ(st, SPARCL_ERR_INVALID_ARG) << sparcl_comm_last_error(comm);
  if (!bad) {
    EXPECT_NE(std::string(sparcl_comm_last_error(comm)).find("rank 1"), std::string::npos) << sparcl_comm_last_error(comm);
  }
  all_ranks(true);
  for (int k = 0; k < 3; ++k) {
    std::vector<int32_t> v(100, world_rank() * 10 + k), r(100, -1);
    EXPECT_EQ(sparcl_allreduce(v.data(), r.data(), 100, SPARCL_INT32, SPARCL_MAX, comm), SPARCL_SUCCESS)
        << sparcl_comm_last_error(comm);
    EXPECT_EQ(r[0], (world_size() - 1) * 10 + k);
  }
  expect_exact(comm, "after a bad argument");
  EXPECT_EQ(sparcl_comm_free(comm), SPARCL_SUCCESS) << sparcl_comm_last_error(nullptr);
  all_ranks(true);
}

// Ops without a sparse path over libfabric and UCX: SPARCL_ERR_UNSUPPORTED
// on every rank, and the next calls are exact.
TEST(PassThrough, UnsupportedWithoutMpiOnEveryRank) {
  if (!native_transport()) GTEST_SKIP() << "MPI supports them";
  Comm comm(SPARCL_ALGO_AUTO, 20000);
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  std::vector<int32_t> mine(100, world_rank()), got(100, -1);
  EXPECT_EQ(sparcl_allreduce(mine.data(), got.data(), 100, SPARCL_INT32, SPARCL_MAX, comm.get()), SPARCL_ERR_UNSUPPORTED)
      << comm.error();
  all_ranks(true);
  expect_exact(comm.get(), "after an unsupported op");
  if (world_size() > 1) {
    std::vector<float> f(100, 1.0f), fo(100);
    const sparcl_status_t st = world_rank() == 0
                                   ? sparcl_allreduce(f.data(), fo.data(), 100, SPARCL_FLOAT32, SPARCL_MAX, comm.get())
                                   : sparcl_allreduce(f.data(), fo.data(), 100, SPARCL_FLOAT32, SPARCL_SUM, comm.get());
    EXPECT_NE(st, SPARCL_SUCCESS);
    all_ranks(true);
    expect_exact(comm.get(), "after MAX against SUM");
  }
  all_ranks(true);
}

}  // namespace
