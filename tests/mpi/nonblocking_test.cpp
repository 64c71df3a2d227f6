// SPDX-License-Identifier: BSD-3-Clause
// Non-blocking collectives: 64 operations of mixed kinds and sizes in flight
// on one communicator, completed by test, wait, waitall and waitany, with and
// without the progress thread; results exact.
#include <algorithm>
#include <memory>
#include <random>
#include <thread>

#include "mpi_test.hpp"

using namespace sparcl_testing;

namespace {

enum class Completion { Test, Wait, WaitAll, WaitAny };

const char* completion_name(Completion c) {
  switch (c) {
    case Completion::Test: return "test";
    case Completion::Wait: return "wait";
    case Completion::WaitAll: return "waitall";
    case Completion::WaitAny: return "waitany";
  }
  return "?";
}

// One operation in flight and what it must produce.
struct Pending {
  enum Kind { DenseOut, ResultOut, Gather, DropIn } kind;
  Case c;
  SparseVec<float> input;
  std::vector<float> dense;            // DenseOut / DropIn output (DropIn: also its input)
  sparcl_result_t result = nullptr;    // ResultOut
  std::vector<sparcl_result_t> gathered;
  sparcl_result_t merged = nullptr;

  // Checks the outputs; EXPECT-style, so all ranks keep going.
  void check(int ranks) {
    std::vector<float> got(c.dim);
    switch (kind) {
      case DenseOut:
      case DropIn: got = dense; break;
      case ResultOut:
        EXPECT_EQ(sparcl_result_to_dense(result, got.data()), SPARCL_SUCCESS);
        sparcl_result_free(result);
        break;
      case Gather:
        EXPECT_EQ(sparcl_result_to_dense(merged, got.data()), SPARCL_SUCCESS);
        sparcl_result_free(merged);
        for (auto r : gathered) sparcl_result_free(r);
        break;
    }
    EXPECT_EQ(count_wrong<float>(c, ranks, got), 0u) << "kind " << kind << " " << c.describe();
  }
};

void run_many(Completion how, bool progress_thread) {
  Comm comm(SPARCL_ALGO_AUTO, 120000, progress_thread);
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
  const int p = world_size(), r = world_rank();
  constexpr int kOps = 64;
  std::vector<std::unique_ptr<Pending>> ops;
  std::vector<sparcl_request_t> requests(kOps, nullptr);
  std::mt19937 shared_rng(4242);  // the same sequence of kinds and sizes on every rank
  for (int k = 0; k < kOps; ++k) {
    auto op = std::make_unique<Pending>();
    op->kind = Pending::Kind(k % 4);
    // Small dims run recursive doubling under auto, large ones split-allgather.
    const uint64_t dims[] = {1, 17, 1000, 70001, 200003};
    op->c = Case{dims[shared_rng() % 5], (shared_rng() % 3) * 0.05, Pattern(shared_rng() % 3), true,
                 uint64_t(1000 + k)};
    op->input = make_vector<float>(op->c, r, p);
    sparcl_sparse_t in = op->input.as_input();
    sparcl_status_t st = SPARCL_SUCCESS;
    switch (op->kind) {
      case Pending::DenseOut:
        op->dense.assign(op->c.dim, -1.0f);
        st = sparcl_iallreduce_sparse(&in, op->dense.data(), nullptr, comm.get(), &requests[size_t(k)]);
        break;
      case Pending::ResultOut:
        st = sparcl_iallreduce_sparse(&in, nullptr, &op->result, comm.get(), &requests[size_t(k)]);
        break;
      case Pending::Gather:
        op->gathered.assign(size_t(p), nullptr);
        st = sparcl_iallgather_sparse(&in, op->gathered.data(), &op->merged, comm.get(), &requests[size_t(k)]);
        break;
      case Pending::DropIn:
        op->dense.assign(op->c.dim, 0.0f);
        for (size_t j = 0; j < op->input.idx.size(); ++j) op->dense[op->input.idx[j]] = op->input.val[j];
        st = sparcl_iallreduce(SPARCL_IN_PLACE, op->dense.data(), op->c.dim, SPARCL_FLOAT32, SPARCL_SUM, comm.get(),
                               &requests[size_t(k)]);
        break;
    }
    EXPECT_EQ(st, SPARCL_SUCCESS) << comm.error();
    ops.push_back(std::move(op));
  }

  std::vector<bool> checked(kOps, false);
  switch (how) {
    case Completion::Test: {
      // Poll every request until all are done, in whatever order they finish.
      int left = kOps;
      while (left > 0) {
        for (int k = 0; k < kOps; ++k) {
          if (checked[size_t(k)]) continue;
          int done = 0;
          const sparcl_status_t st = sparcl_test(&requests[size_t(k)], &done);
          if (!done) continue;
          EXPECT_EQ(st, SPARCL_SUCCESS) << comm.error();
          EXPECT_EQ(requests[size_t(k)], nullptr);
          ops[size_t(k)]->check(p);
          checked[size_t(k)] = true;
          --left;
        }
      }
      break;
    }
    case Completion::Wait:
      for (int k = kOps - 1; k >= 0; --k) {  // the reverse of the start order
        EXPECT_EQ(sparcl_wait(&requests[size_t(k)]), SPARCL_SUCCESS) << comm.error();
        ops[size_t(k)]->check(p);
      }
      break;
    case Completion::WaitAll: {
      std::vector<sparcl_status_t> statuses(kOps, SPARCL_ERR_INTERNAL);
      EXPECT_EQ(sparcl_waitall(kOps, requests.data(), statuses.data()), SPARCL_SUCCESS) << comm.error();
      for (int k = 0; k < kOps; ++k) {
        EXPECT_EQ(statuses[size_t(k)], SPARCL_SUCCESS);
        ops[size_t(k)]->check(p);
      }
      break;
    }
    case Completion::WaitAny:
      for (int n = 0; n < kOps; ++n) {
        size_t index = kOps;
        EXPECT_EQ(sparcl_waitany(kOps, requests.data(), &index), SPARCL_SUCCESS) << comm.error();
        ASSERT_LT(index, size_t(kOps));
        EXPECT_FALSE(checked[index]);
        checked[index] = true;
        ops[index]->check(p);
      }
      {
        size_t index = 0;
        EXPECT_EQ(sparcl_waitany(kOps, requests.data(), &index), SPARCL_SUCCESS);
        EXPECT_EQ(index, size_t(kOps)) << "all requests are NULL now";
      }
      break;
  }
  for (auto req : requests) EXPECT_EQ(req, nullptr);
}

class NonBlocking : public ::testing::TestWithParam<std::tuple<Completion, bool>> {};

TEST_P(NonBlocking, SixtyFourMixedOperationsInFlight) {
  run_many(std::get<0>(GetParam()), std::get<1>(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(
    Completions, NonBlocking,
    ::testing::Combine(::testing::Values(Completion::Test, Completion::Wait, Completion::WaitAll, Completion::WaitAny),
                       ::testing::Bool()),
    [](const ::testing::TestParamInfo<std::tuple<Completion, bool>>& p) {
      return std::string(completion_name(std::get<0>(p.param))) +
             (std::get<1>(p.param) ? "_progress_thread" : "_no_thread");
    });

// With the progress thread, a collective finishes while the caller does not
// call sparcl at all.
TEST(NonBlocking, ProgressThreadCompletesWithoutCalls) {
  Comm comm(SPARCL_ALGO_RING, 120000, /*progress_thread=*/true);
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
  const Case c{100000, 0.01, Pattern::Overlapping, true, 9};
  SparseVec<float> mine = make_vector<float>(c, world_rank(), world_size());
  sparcl_sparse_t in = mine.as_input();
  std::vector<float> out(c.dim);
  sparcl_request_t req = nullptr;
  ASSERT_EQ(sparcl_iallreduce_sparse(&in, out.data(), nullptr, comm.get(), &req), SPARCL_SUCCESS);
  // Compute (sleep) without calling sparcl. A ring needs 2 (P - 1) rounds and
  // each needs the peers' progress, so without the thread one sparcl_test
  // could not finish it: completing at the first test shows the thread did.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  int done = 0;
  EXPECT_EQ(sparcl_test(&req, &done), SPARCL_SUCCESS) << comm.error();
  EXPECT_EQ(done, 1) << "the progress thread did not complete the collective";
  EXPECT_EQ(sparcl_wait(&req), SPARCL_SUCCESS) << comm.error();
  EXPECT_EQ(count_wrong<float>(c, world_size(), out), 0u);
}

// The traffic counters can be read and reset from any thread while the
// progress thread runs collectives (ThreadSanitizer checks the locking).
TEST(NonBlocking, StatsWhileTheProgressThreadRuns) {
  Comm comm(SPARCL_ALGO_RING, 120000, /*progress_thread=*/true);
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
  const Case c{20000, 0.05, Pattern::Overlapping, true, 11};
  SparseVec<float> mine = make_vector<float>(c, world_rank(), world_size());
  sparcl_sparse_t in = mine.as_input();
  constexpr int kInFlight = 8;
  std::vector<std::vector<float>> out(kInFlight, std::vector<float>(c.dim));
  std::vector<sparcl_request_t> req(kInFlight, nullptr);
  for (int k = 0; k < kInFlight; ++k)
    ASSERT_EQ(sparcl_iallreduce_sparse(&in, out[size_t(k)].data(), nullptr, comm.get(), &req[size_t(k)]),
              SPARCL_SUCCESS);
  std::thread reader([&] {
    for (int i = 0; i < 200; ++i) {
      sparcl_stats_t st{};
      EXPECT_EQ(sparcl_comm_stats(comm.get(), &st), SPARCL_SUCCESS);
      if (i % 50 == 49) {
        EXPECT_EQ(sparcl_comm_reset_stats(comm.get()), SPARCL_SUCCESS);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  reader.join();
  std::vector<sparcl_status_t> statuses(kInFlight);
  EXPECT_EQ(sparcl_waitall(kInFlight, req.data(), statuses.data()), SPARCL_SUCCESS) << comm.error();
  for (const auto& o : out) EXPECT_EQ(count_wrong<float>(c, world_size(), o), 0u);
}

// Ranks that start collectives in different orders get an error, never a
// silently mixed-up result.
TEST(NonBlocking, DifferentStartOrderIsAMismatch) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  Comm comm;
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  SparseVec<float> a = make_vector<float>(Case{100, 0.1, Pattern::Overlapping, true, 1}, world_rank(), world_size());
  SparseVec<float> b = make_vector<float>(Case{200, 0.1, Pattern::Overlapping, true, 2}, world_rank(), world_size());
  sparcl_sparse_t ia = a.as_input(), ib = b.as_input();
  std::vector<float> oa(100), ob(200);
  sparcl_request_t reqs[2] = {nullptr, nullptr};
  const bool swapped = world_rank() == 0;
  if (!swapped) {
    EXPECT_EQ(sparcl_iallreduce_sparse(&ia, oa.data(), nullptr, comm.get(), &reqs[0]), SPARCL_SUCCESS);
    EXPECT_EQ(sparcl_iallreduce_sparse(&ib, ob.data(), nullptr, comm.get(), &reqs[1]), SPARCL_SUCCESS);
  } else {
    EXPECT_EQ(sparcl_iallreduce_sparse(&ib, ob.data(), nullptr, comm.get(), &reqs[1]), SPARCL_SUCCESS);
    EXPECT_EQ(sparcl_iallreduce_sparse(&ia, oa.data(), nullptr, comm.get(), &reqs[0]), SPARCL_SUCCESS);
  }
  sparcl_status_t statuses[2];
  sparcl_waitall(2, reqs, statuses);
  EXPECT_EQ(statuses[0], SPARCL_ERR_MISMATCH) << comm.error();
  EXPECT_EQ(statuses[1], SPARCL_ERR_MISMATCH) << comm.error();
}

// Many collectives in flight towards a rank that is not calling sparcl yet:
// its peers' messages pile up unexpected in the transport (more of them than
// the libfabric backend keeps receives posted for), and every one must still
// be delivered, in order, once that rank starts.
TEST(NonBlocking, ManyInFlightWhileAPeerIsLate) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  Comm comm;
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  constexpr int kOps = 200;
  const Case c{17, 0.3, Pattern::Overlapping, true, 11};
  SparseVec<float> mine = make_vector<float>(c, world_rank(), world_size());
  sparcl_sparse_t in = mine.as_input();
  std::vector<std::vector<float>> out(kOps, std::vector<float>(c.dim));
  std::vector<sparcl_request_t> reqs(kOps, nullptr);
  if (world_rank() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (int k = 0; k < kOps; ++k)
    ASSERT_EQ(sparcl_iallreduce_sparse(&in, out[size_t(k)].data(), nullptr, comm.get(), &reqs[size_t(k)]),
              SPARCL_SUCCESS)
        << comm.error();
  EXPECT_EQ(sparcl_waitall(kOps, reqs.data(), nullptr), SPARCL_SUCCESS) << comm.error();
  for (int k = 0; k < kOps; ++k) EXPECT_EQ(count_wrong<float>(c, world_size(), out[size_t(k)]), 0u) << "op " << k;
}

// A freed request still completes and delivers; the communicator then frees cleanly.
TEST(NonBlocking, FreedRequestCompletesInTheBackground) {
  // The freed request writes `out` whenever it completes, at the latest when
  // the communicator is freed: the buffers must outlive the communicator.
  const Case c{5000, 0.1, Pattern::Disjoint, true, 3};
  SparseVec<float> mine = make_vector<float>(c, world_rank(), world_size());
  sparcl_sparse_t in = mine.as_input();
  std::vector<float> out(c.dim), later(c.dim);
  Comm comm;
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  sparcl_request_t req = nullptr;
  ASSERT_EQ(sparcl_iallreduce_sparse(&in, out.data(), nullptr, comm.get(), &req), SPARCL_SUCCESS);
  EXPECT_EQ(sparcl_request_free(&req), SPARCL_SUCCESS);
  EXPECT_EQ(req, nullptr);
  // A later blocking collective progresses (and so finishes) the freed one too.
  ASSERT_EQ(sparcl_allreduce_sparse(&in, later.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
  EXPECT_EQ(count_wrong<float>(c, world_size(), later), 0u);
  sparcl_request_t none = nullptr;
  EXPECT_EQ(sparcl_wait(&none), SPARCL_SUCCESS);
}

}  // namespace
