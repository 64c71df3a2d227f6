// SPDX-License-Identifier: BSD-3-Clause
// Persistent allreduces (sparcl_allreduce_sparse_init,
// sparcl_allreduce_compressed_init, sparcl_start): N runs of one plan equal
// N one-shot calls bit for bit; bad input in one run fails that run on every
// rank and the next run is exact; plans interleave with each other and with
// one-shot calls; the request's misuses get clear statuses without side
// effects.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "mpi_test.hpp"
#include "sparcl/compress.h"

using namespace sparcl_testing;

namespace {

// The vector of step `step` on this rank: its values, and unless
// `steady_density`, its density change from step to step.
Case step_case(uint64_t dim, int step, bool integer_values, bool steady_density = false) {
  const double densities[] = {0.01, 0.03, 0.002, 0.02};
  return Case{dim, steady_density ? 0.01 : densities[step % 4], Pattern::Overlapping, integer_values,
              uint64_t(77 + step)};
}

// Holds a plan's bound input and refills it per step.
struct BoundInput {
  SparseVec<float> vec;
  sparcl_sparse_t send{};
  void set(const Case& c) {
    vec = make_vector<float>(c, world_rank(), world_size());
    send = vec.as_input();
  }
};

class Persistent : public ::testing::TestWithParam<sparcl_algorithm_t> {};

// Every run of a plan (dense and result outputs) equals the one-shot call
// on the same input bitwise; with auto, whose choices on two communicators
// may differ, the values are integers, so the sums are exact either way.
TEST_P(Persistent, RunsEqualOneShotCallsBitwise) {
  const sparcl_algorithm_t algorithm = GetParam();
  // Auto measures its candidates per density class: a steady density lets it settle.
  const bool exact = algorithm == SPARCL_ALGO_AUTO, steady = exact;
  Comm planned(algorithm), oneshot(algorithm);
  ASSERT_TRUE(all_ranks(planned.status() == SPARCL_SUCCESS && oneshot.status() == SPARCL_SUCCESS));
  const uint64_t dim = 20011;
  BoundInput input;
  input.set(step_case(dim, 0, exact, steady));
  std::vector<float> dense(dim, -1.0f), expected(dim), from_result(dim);
  sparcl_result_t result = nullptr;
  sparcl_request_t to_dense = nullptr, to_result = nullptr;
  ASSERT_EQ(sparcl_allreduce_sparse_init(&input.send, dense.data(), nullptr, planned.get(), &to_dense), SPARCL_SUCCESS)
      << planned.error();
  ASSERT_EQ(sparcl_allreduce_sparse_init(&input.send, nullptr, &result, planned.get(), &to_result), SPARCL_SUCCESS);
  // Auto measures its candidates over about 20 calls before a plan keeps its choice.
  const int steps = algorithm == SPARCL_ALGO_AUTO ? 40 : 6;
  for (int step = 0; step < steps; ++step) {
    input.set(step_case(dim, step, exact, steady));
    ASSERT_EQ(sparcl_allreduce_sparse(&input.send, expected.data(), nullptr, oneshot.get()), SPARCL_SUCCESS)
        << oneshot.error();
    ASSERT_EQ(sparcl_start(&to_dense), SPARCL_SUCCESS) << planned.error();
    ASSERT_EQ(sparcl_wait(&to_dense), SPARCL_SUCCESS) << planned.error();
    ASSERT_NE(to_dense, nullptr);  // inactive, not freed
    EXPECT_EQ(std::memcmp(dense.data(), expected.data(), dim * sizeof(float)), 0) << "step " << step;
    ASSERT_EQ(sparcl_start(&to_result), SPARCL_SUCCESS) << planned.error();
    int done = 0;
    while (!done) ASSERT_EQ(sparcl_test(&to_result, &done), SPARCL_SUCCESS) << planned.error();
    ASSERT_NE(result, nullptr);
    ASSERT_EQ(sparcl_result_to_dense(result, from_result.data()), SPARCL_SUCCESS);
    sparcl_result_free(result);
    result = nullptr;
    EXPECT_EQ(std::memcmp(from_result.data(), expected.data(), dim * sizeof(float)), 0) << "step " << step;
    EXPECT_EQ(count_wrong<float>(step_case(dim, step, exact, steady), world_size(), dense), 0u) << "step " << step;
  }
  if (algorithm == SPARCL_ALGO_AUTO && world_size() > 1) {
    // The plan kept auto's measured choice, and says so.
    sparcl_choice_t how = SPARCL_CHOSEN_AS_TRIAL;
    EXPECT_EQ(sparcl_comm_last_choice(planned.get(), &how), SPARCL_SUCCESS);
    EXPECT_EQ(how, SPARCL_CHOSEN_BY_MEASUREMENT);
    // It keeps that choice when the density changes (auto itself would measure afresh).
    sparcl_algorithm_t kept = SPARCL_ALGO_AUTO, ran = SPARCL_ALGO_AUTO;
    sparcl_comm_last_algorithm(planned.get(), &kept);
    for (int step = 0; step < 3; ++step) {
      const Case denser{dim, 0.3, Pattern::Overlapping, true, uint64_t(900 + step)};
      input.set(denser);
      ASSERT_EQ(sparcl_start(&to_dense), SPARCL_SUCCESS);
      ASSERT_EQ(sparcl_wait(&to_dense), SPARCL_SUCCESS) << planned.error();
      EXPECT_EQ(count_wrong<float>(denser, world_size(), dense), 0u);
      sparcl_comm_last_algorithm(planned.get(), &ran);
      sparcl_comm_last_choice(planned.get(), &how);
      EXPECT_EQ(ran, kept);
      EXPECT_EQ(how, SPARCL_CHOSEN_BY_MEASUREMENT);
    }
  }
  EXPECT_EQ(sparcl_request_free(&to_dense), SPARCL_SUCCESS);
  EXPECT_EQ(sparcl_request_free(&to_result), SPARCL_SUCCESS);
  EXPECT_EQ(to_dense, nullptr);
}

// A rank whose run has bad input fails that run; every other rank's run
// fails too, naming it; the next run of the plan is exact everywhere.
TEST_P(Persistent, BadInputFailsEveryRankAndTheNextRunIsExact) {
  Comm comm(GetParam());
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const uint64_t dim = 5003;
  BoundInput input;
  input.set(step_case(dim, 0, true, true));
  std::vector<float> out(dim);
  sparcl_request_t req = nullptr;
  ASSERT_EQ(sparcl_allreduce_sparse_init(&input.send, out.data(), nullptr, comm.get(), &req), SPARCL_SUCCESS);
  if (GetParam() == SPARCL_ALGO_AUTO) {
    // Until the plan keeps auto's choice: the failure then also returns it to auto on every rank.
    for (int k = 0; k < 40; ++k) {
      input.set(step_case(dim, 0, true, true));
      ASSERT_EQ(sparcl_start(&req), SPARCL_SUCCESS);
      ASSERT_EQ(sparcl_wait(&req), SPARCL_SUCCESS) << comm.error();
    }
    sparcl_choice_t how = SPARCL_CHOSEN_AS_TRIAL;
    sparcl_comm_last_choice(comm.get(), &how);
    if (world_size() > 1) {
      EXPECT_EQ(how, SPARCL_CHOSEN_BY_MEASUREMENT);
    }
  }
  for (int step = 0; step < 4; ++step) {
    input.set(step_case(dim, step, true, true));
    const bool bad = step == 1 && world_rank() == world_size() - 1;
    std::vector<uint64_t> broken = input.vec.idx;
    if (bad) {  // a duplicate index
      broken.push_back(broken.empty() ? 0 : broken.back());
      input.vec.val.push_back(1.0f);
      input.send.nnz = broken.size();
      input.send.indices = broken.data();
      input.send.values = input.vec.val.data();
    }
    sparcl_status_t st = sparcl_start(&req);
    if (bad) {
      EXPECT_EQ(st, SPARCL_ERR_INVALID_ARG);
      EXPECT_EQ(sparcl_wait(&req), SPARCL_ERR_INVALID_ARG);  // nothing started here: the request is inactive
    } else {
      ASSERT_EQ(st, SPARCL_SUCCESS) << comm.error();
      st = sparcl_wait(&req);
      if (step == 1)
        EXPECT_NE(st, SPARCL_SUCCESS) << "a run whose peer had bad input must fail";
      else
        EXPECT_EQ(st, SPARCL_SUCCESS) << comm.error();
    }
    if (step != 1) {
      EXPECT_EQ(count_wrong<float>(step_case(dim, step, true, true), world_size(), out), 0u) << step;
    }
    all_ranks(true);
  }
  EXPECT_EQ(sparcl_request_free(&req), SPARCL_SUCCESS);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, Persistent,
                         ::testing::Values(SPARCL_ALGO_AUTO, SPARCL_ALGO_RECURSIVE_DOUBLING,
                                           SPARCL_ALGO_SPLIT_ALLGATHER, SPARCL_ALGO_RING, SPARCL_ALGO_ALLGATHER,
                                           SPARCL_ALGO_DENSE, SPARCL_ALGO_HIERARCHICAL),
                         [](const ::testing::TestParamInfo<sparcl_algorithm_t>& p) {
                           return algorithm_label(p.param);
                         });

// Three plans and one-shot calls interleaved, completed in several ways,
// in a different order on each rank, with and without the progress thread:
// every sum exact.
class Interleaved : public ::testing::TestWithParam<bool> {};

TEST_P(Interleaved, WithEachOtherAndOneShotCalls) {
  Comm comm(SPARCL_ALGO_AUTO, 120000, GetParam());
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const uint64_t dims[3] = {1000, 30011, 7};
  BoundInput inputs[3];
  std::vector<float> outs[3];
  sparcl_request_t reqs[3] = {nullptr, nullptr, nullptr};
  for (int k = 0; k < 3; ++k) {
    inputs[k].set(step_case(dims[k], 0, true));
    outs[k].assign(dims[k], 0.0f);
    ASSERT_EQ(sparcl_allreduce_sparse_init(&inputs[k].send, outs[k].data(), nullptr, comm.get(), &reqs[k]),
              SPARCL_SUCCESS);
  }
  for (int step = 0; step < 8; ++step) {
    for (int k = 0; k < 3; ++k) inputs[k].set(step_case(dims[k], step + 10 * k, true));
    ASSERT_EQ(sparcl_startall(2, reqs), SPARCL_SUCCESS) << comm.error();
    // A one-shot call between the plans' starts.
    const Case between = step_case(4096, step, true);
    SparseVec<float> v = make_vector<float>(between, world_rank(), world_size());
    sparcl_sparse_t in = v.as_input();
    std::vector<float> between_out(4096);
    sparcl_request_t oneshot = nullptr;
    ASSERT_EQ(sparcl_iallreduce_sparse(&in, between_out.data(), nullptr, comm.get(), &oneshot), SPARCL_SUCCESS);
    ASSERT_EQ(sparcl_start(&reqs[2]), SPARCL_SUCCESS);
    if (step % 2 == 0) {
      std::vector<sparcl_request_t> all = {reqs[0], reqs[1], oneshot, reqs[2]};
      if (world_rank() % 2) std::swap(all[0], all[3]);
      ASSERT_EQ(sparcl_waitall(all.size(), all.data(), nullptr), SPARCL_SUCCESS) << comm.error();
      EXPECT_EQ(all[2], nullptr);  // the one-shot request is freed, the persistent ones stay
      EXPECT_NE(all[0], nullptr);
    } else {
      std::vector<sparcl_request_t> all = {reqs[0], reqs[1], reqs[2], oneshot};
      for (int left = 4; left > 0; --left) {
        size_t index = 0;
        ASSERT_EQ(sparcl_waitany(all.size(), all.data(), &index), SPARCL_SUCCESS) << comm.error();
        ASSERT_LT(index, all.size());
        if (index < 3) all[index] = nullptr;  // done with it in this loop (the plan stays in reqs)
      }
      size_t index = 0;  // only inactive plans and NULL entries are left
      std::vector<sparcl_request_t> idle = {reqs[0], nullptr, reqs[2]};
      EXPECT_EQ(sparcl_waitany(idle.size(), idle.data(), &index), SPARCL_SUCCESS);
      EXPECT_EQ(index, idle.size());
    }
    for (int k = 0; k < 3; ++k)
      EXPECT_EQ(count_wrong<float>(step_case(dims[k], step + 10 * k, true), world_size(), outs[k]), 0u)
          << "plan " << k << " step " << step;
    EXPECT_EQ(count_wrong<float>(between, world_size(), between_out), 0u) << step;
  }
  for (auto& r : reqs) EXPECT_EQ(sparcl_request_free(&r), SPARCL_SUCCESS);
}

INSTANTIATE_TEST_SUITE_P(PersistentPlans, Interleaved, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return std::string(p.param ? "progress_thread" : "caller_progress");
                         });

// Misuses of the request: a clear status, nothing started or changed.
TEST(PersistentPlans, MisusesAreRefusedWithoutSideEffects) {
  Comm comm(SPARCL_ALGO_RING);
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const uint64_t dim = 3001;
  BoundInput input;
  input.set(step_case(dim, 0, true));
  std::vector<float> out(dim);
  sparcl_request_t req = nullptr;
  // Bad plans are refused locally.
  EXPECT_EQ(sparcl_allreduce_sparse_init(&input.send, out.data(), nullptr, comm.get(), nullptr),
            SPARCL_ERR_INVALID_ARG);
  sparcl_result_t result = nullptr;
  EXPECT_EQ(sparcl_allreduce_sparse_init(&input.send, out.data(), &result, comm.get(), &req), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(req, nullptr);
  EXPECT_EQ(sparcl_allreduce_sparse_init(nullptr, out.data(), nullptr, comm.get(), &req), SPARCL_ERR_INVALID_ARG);
  ASSERT_EQ(sparcl_allreduce_sparse_init(&input.send, out.data(), nullptr, comm.get(), &req), SPARCL_SUCCESS);

  EXPECT_EQ(sparcl_wait(&req), SPARCL_ERR_INVALID_ARG) << "wait on an inactive request";
  EXPECT_NE(std::strstr(comm.error(), "not active"), nullptr) << comm.error();
  int done = 1;
  EXPECT_EQ(sparcl_test(&req, &done), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(done, 0);

  sparcl_stats_t before{}, after{};
  sparcl_comm_stats(comm.get(), &before);
  ASSERT_EQ(sparcl_start(&req), SPARCL_SUCCESS);
  EXPECT_EQ(sparcl_start(&req), SPARCL_ERR_INVALID_ARG) << "started twice";
  EXPECT_NE(std::strstr(comm.error(), "active"), nullptr) << comm.error();
  EXPECT_EQ(sparcl_request_free(&req), SPARCL_ERR_INVALID_ARG) << "freed while active";
  ASSERT_NE(req, nullptr);
  EXPECT_EQ(sparcl_wait(&req), SPARCL_SUCCESS) << comm.error();
  sparcl_comm_stats(comm.get(), &after);
  EXPECT_EQ(after.collectives - before.collectives, 1u) << "the refused start must not take part";
  EXPECT_EQ(count_wrong<float>(step_case(dim, 0, true), world_size(), out), 0u);

  // Another dim in the bound vector: refused here alone, nothing started.
  input.send.dim = dim + 1;
  EXPECT_EQ(sparcl_start(&req), SPARCL_ERR_INVALID_ARG);
  EXPECT_NE(std::strstr(comm.error(), "planned for dim 3001"), nullptr) << comm.error();
  input.send.dim = dim;
  input.set(step_case(dim, 1, true));
  ASSERT_EQ(sparcl_start(&req), SPARCL_SUCCESS);
  EXPECT_EQ(sparcl_wait(&req), SPARCL_SUCCESS) << comm.error();
  EXPECT_EQ(count_wrong<float>(step_case(dim, 1, true), world_size(), out), 0u);

  // sparcl_start of an ordinary request.
  sparcl_request_t ordinary = nullptr;
  sparcl_sparse_t in = input.send;
  ASSERT_EQ(sparcl_iallreduce_sparse(&in, out.data(), nullptr, comm.get(), &ordinary), SPARCL_SUCCESS);
  EXPECT_EQ(sparcl_start(&ordinary), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(sparcl_wait(&ordinary), SPARCL_SUCCESS);
  EXPECT_EQ(sparcl_start(nullptr), SPARCL_ERR_INVALID_ARG);

  EXPECT_EQ(sparcl_request_free(&req), SPARCL_SUCCESS) << "freed while idle";
  EXPECT_EQ(req, nullptr);
  all_ranks(true);
}

// Plans that differ between ranks (here the dim) fail every run with
// SPARCL_ERR_MISMATCH on every rank; the communicator goes on.
TEST(PersistentPlans, MismatchedPlansFailOnEveryRank) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  Comm comm(SPARCL_ALGO_AUTO);
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const uint64_t dim = world_rank() == 0 ? 1001 : 1000;
  BoundInput input;
  input.set(step_case(dim, 0, true));
  std::vector<float> out(dim);
  sparcl_request_t req = nullptr;
  ASSERT_EQ(sparcl_allreduce_sparse_init(&input.send, out.data(), nullptr, comm.get(), &req), SPARCL_SUCCESS);
  for (int run = 0; run < 2; ++run) {
    ASSERT_EQ(sparcl_start(&req), SPARCL_SUCCESS);
    EXPECT_EQ(sparcl_wait(&req), SPARCL_ERR_MISMATCH) << comm.error();
    all_ranks(true);
  }
  EXPECT_EQ(sparcl_request_free(&req), SPARCL_SUCCESS);
  // The communicator still works.
  BoundInput good;
  good.set(step_case(2000, 3, true));
  std::vector<float> sum(2000);
  EXPECT_EQ(sparcl_allreduce_sparse(&good.send, sum.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
  EXPECT_EQ(count_wrong<float>(step_case(2000, 3, true), world_size(), sum), 0u);
}

// With SPARCL_TUNE_FILE, a plan on a later communicator keeps the choice an
// earlier one stored, from its second start (the first has no density
// record yet) without measuring.
TEST(PersistentPlans, KeepTheChoiceOfTheTuneFile) {
  if (world_size() == 1) GTEST_SKIP() << "auto measures with two ranks or more";
  char path[256] = {};
  if (world_rank() == 0) std::snprintf(path, sizeof path, "/tmp/sparcl-persistent-%d.tune", int(getpid()));
  MPI_Bcast(path, sizeof path, MPI_CHAR, 0, MPI_COMM_WORLD);
  setenv("SPARCL_TUNE_FILE", path, 1);
  const uint64_t dim = 20011;
  BoundInput input;
  input.set(step_case(dim, 0, true, true));
  std::vector<float> out(dim);
  sparcl_algorithm_t kept = SPARCL_ALGO_AUTO;
  for (int run = 0; run < 2; ++run) {
    Comm comm(SPARCL_ALGO_AUTO);
    ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
    sparcl_request_t req = nullptr;
    ASSERT_EQ(sparcl_allreduce_sparse_init(&input.send, out.data(), nullptr, comm.get(), &req), SPARCL_SUCCESS);
    for (int n = 0; n < 40; ++n) {
      ASSERT_EQ(sparcl_start(&req), SPARCL_SUCCESS);
      ASSERT_EQ(sparcl_wait(&req), SPARCL_SUCCESS) << comm.error();
      EXPECT_EQ(count_wrong<float>(step_case(dim, 0, true, true), world_size(), out), 0u);
      sparcl_algorithm_t algorithm = SPARCL_ALGO_AUTO;
      sparcl_choice_t how = SPARCL_CHOSEN_BY_CONFIG;
      sparcl_comm_last_algorithm(comm.get(), &algorithm);
      sparcl_comm_last_choice(comm.get(), &how);
      if (run == 0) {
        if (how == SPARCL_CHOSEN_BY_MEASUREMENT) {
          kept = algorithm;
          break;
        }
      } else if (n > 0) {
        EXPECT_EQ(how, SPARCL_CHOSEN_FROM_TUNE_FILE) << "start " << n;
        EXPECT_EQ(algorithm, kept) << "start " << n;
        if (n == 3) break;
      }
    }
    if (run == 1) {
      // Kept by the plan, not looked up again: denser vectors (whose class
      // the file does not hold; auto classes a call by the previous result)
      // still run it.
      for (int n = 0; n < 3; ++n) {
        const Case denser{dim, 0.3, Pattern::Overlapping, true, uint64_t(901 + n)};
        input.set(denser);
        ASSERT_EQ(sparcl_start(&req), SPARCL_SUCCESS);
        ASSERT_EQ(sparcl_wait(&req), SPARCL_SUCCESS) << comm.error();
        EXPECT_EQ(count_wrong<float>(denser, world_size(), out), 0u);
        sparcl_algorithm_t algorithm = SPARCL_ALGO_AUTO;
        sparcl_choice_t how = SPARCL_CHOSEN_BY_CONFIG;
        sparcl_comm_last_algorithm(comm.get(), &algorithm);
        sparcl_comm_last_choice(comm.get(), &how);
        EXPECT_EQ(how, SPARCL_CHOSEN_FROM_TUNE_FILE) << "denser start " << n;
        EXPECT_EQ(algorithm, kept) << "denser start " << n;
      }
    }
    EXPECT_EQ(sparcl_request_free(&req), SPARCL_SUCCESS);
    if (run == 0) {
      ASSERT_NE(kept, SPARCL_ALGO_AUTO) << "no vote in 40 starts";
    }
  }
  unsetenv("SPARCL_TUNE_FILE");
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) std::remove(path);
}

// A plan outlives its communicator: it can no longer start, and frees.
TEST(PersistentPlans, FreedAfterItsCommunicator) {
  sparcl_request_t req = nullptr;
  BoundInput input;
  input.set(step_case(100, 0, true));
  std::vector<float> out(100);
  {
    Comm comm(SPARCL_ALGO_AUTO);
    ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
    ASSERT_EQ(sparcl_allreduce_sparse_init(&input.send, out.data(), nullptr, comm.get(), &req), SPARCL_SUCCESS);
    ASSERT_EQ(sparcl_start(&req), SPARCL_SUCCESS);
    ASSERT_EQ(sparcl_wait(&req), SPARCL_SUCCESS);
  }
  EXPECT_EQ(sparcl_start(&req), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(sparcl_request_free(&req), SPARCL_SUCCESS);
}

// The compressed plan: each run compresses what grad holds then, with error
// feedback; bitwise the same as sparcl_iallreduce_compressed() with a
// compressor of the same configuration on another communicator.
TEST(PersistentPlans, CompressedRunsEqualOneShotCalls) {
  Comm planned(SPARCL_ALGO_SPLIT_ALLGATHER), oneshot(SPARCL_ALGO_SPLIT_ALLGATHER);
  ASSERT_TRUE(all_ranks(planned.status() == SPARCL_SUCCESS && oneshot.status() == SPARCL_SUCCESS));
  const uint64_t dim = 10007;
  sparcl_compressor_config_t cc = SPARCL_COMPRESSOR_CONFIG_INIT;
  cc.method = SPARCL_COMPRESS_TOPK;
  cc.density = 0.02;
  cc.error_feedback = 1;
  sparcl_compressor_t a = nullptr, b = nullptr;
  ASSERT_EQ(sparcl_compressor_create(&cc, dim, &a), SPARCL_SUCCESS);
  ASSERT_EQ(sparcl_compressor_create(&cc, dim, &b), SPARCL_SUCCESS);
  std::vector<float> grad(dim), out(dim), expected(dim);
  sparcl_request_t req = nullptr;
  ASSERT_EQ(sparcl_allreduce_compressed_init(planned.get(), a, grad.data(), out.data(), &req), SPARCL_SUCCESS);
  std::mt19937 rng(uint32_t(world_rank()) * 11 + 3);
  std::normal_distribution<float> normal;
  for (int step = 0; step < 5; ++step) {
    for (float& g : grad) g = normal(rng);
    ASSERT_EQ(sparcl_allreduce_compressed(oneshot.get(), b, grad.data(), expected.data()), SPARCL_SUCCESS);
    ASSERT_EQ(sparcl_start(&req), SPARCL_SUCCESS) << planned.error();
    ASSERT_EQ(sparcl_wait(&req), SPARCL_SUCCESS) << planned.error();
    EXPECT_EQ(std::memcmp(out.data(), expected.data(), dim * sizeof(float)), 0) << "step " << step;
    EXPECT_EQ(std::memcmp(sparcl_compressor_residual(a), sparcl_compressor_residual(b), dim * sizeof(float)), 0);
  }
  EXPECT_EQ(sparcl_request_free(&req), SPARCL_SUCCESS);
  EXPECT_EQ(sparcl_allreduce_compressed_init(planned.get(), nullptr, grad.data(), out.data(), &req),
            SPARCL_ERR_INVALID_ARG);
  sparcl_compressor_free(a);
  sparcl_compressor_free(b);
}

}  // namespace
