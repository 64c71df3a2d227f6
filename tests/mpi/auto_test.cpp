// SPDX-License-Identifier: BSD-3-Clause
// SPARCL_ALGO_AUTO chooses the same algorithm on every rank: blocking calls
// whose density changes from call to call (the choice follows the previous
// call's density), and many non-blocking calls in flight, with fixed cost
// model parameters and with the communicator's own calibration; and the
// dense algorithm's native collectives with many calls in flight. Ranks that
// chose differently would fail with SPARCL_ERR_MISMATCH (the algorithm is in
// every message header); results are checked exactly.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <set>

#include "mpi_test.hpp"

using namespace sparcl_testing;

namespace {

// A 1 Gbit/s-like machine (docs/algorithms.md): at 4 ranks and 64K values the
// choice changes between 0.1% and 50% density.
constexpr const char* kSlowLink = "100,10,8,5,1";

// An environment variable for the communicators made in its scope ("" unsets it).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    if (*value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_)
      setenv(name_, old_.c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

struct AutoParams : ScopedEnv {
  explicit AutoParams(const char* value) : ScopedEnv("SPARCL_AUTO_PARAMS", value) {}
};

// The cost model alone (SPARCL_AUTO_TUNE=0).
TEST(AutoChoice, SameOnEveryRankAndFollowsTheDensity) {
  const AutoParams fixed(kSlowLink);
  const ScopedEnv model_only("SPARCL_AUTO_TUNE", "0");
  Comm comm(SPARCL_ALGO_AUTO);
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
  EXPECT_NE(std::string(sparcl_comm_auto_model(comm.get())).find("SPARCL_AUTO_PARAMS"), std::string::npos);
  const int p = world_size(), r = world_rank();
  // Each density twice: the second call of a pair chooses by the first's.
  const double densities[] = {0.001, 0.001, 0.5, 0.5, 0.01, 0.01, 0.5, 0.5, 0.001, 0.001};
  std::set<int> seen;
  for (size_t n = 0; n < std::size(densities); ++n) {
    const Case c{65536, densities[n], Pattern::Overlapping, true, 7000 + n};
    const SparseVec<float> v = make_vector<float>(c, r, p);
    const sparcl_sparse_t in = v.as_input();
    std::vector<float> out(c.dim);
    ASSERT_EQ(sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
    EXPECT_EQ(count_wrong<float>(c, p, out), 0u) << c.describe();
    sparcl_algorithm_t chosen = SPARCL_ALGO_AUTO;
    ASSERT_EQ(sparcl_comm_last_algorithm(comm.get(), &chosen), SPARCL_SUCCESS);
    EXPECT_TRUE(same_on_all_ranks(&chosen, sizeof chosen)) << "call " << n;
    if (p > 1) {
      EXPECT_NE(chosen, SPARCL_ALGO_AUTO);
    }
    if (n % 2) seen.insert(int(chosen));
  }
  // At 4 ranks the model (kSlowLink) picks another algorithm at 50% than at 0.1%.
  if (p == 4) {
    EXPECT_GE(seen.size(), 2u);
  }
  sparcl_choice_t how = SPARCL_CHOSEN_AS_TRIAL;
  ASSERT_EQ(sparcl_comm_last_choice(comm.get(), &how), SPARCL_SUCCESS);
  EXPECT_EQ(how, SPARCL_CHOSEN_BY_MODEL);
}

// Measurement (the default): the first call of a shape chooses by the model;
// the next ones try each candidate kTrialsPerCandidate (2) times, least tried
// first; a first vote keeps kFinalists (3), which get kFinalTrials (3) more
// trials each; the final vote chooses one of them, and every call runs it
// from then on. The same sequence on every rank, every result exact; a call
// of another density class measures on its own; after a call that failed
// (bad input on one rank: every rank fails), the dim starts afresh.
TEST(AutoChoice, MeasuresEachCandidateThenKeepsTheFastest) {
  const AutoParams fixed(kSlowLink);
  Comm comm(SPARCL_ALGO_AUTO);
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
  const int p = world_size(), r = world_rank();
  auto call = [&](const Case& c, sparcl_algorithm_t& algorithm, sparcl_choice_t& how) {
    const SparseVec<float> v = make_vector<float>(c, r, p);
    const sparcl_sparse_t in = v.as_input();
    std::vector<float> out(c.dim);
    ASSERT_EQ(sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
    EXPECT_EQ(count_wrong<float>(c, p, out), 0u) << c.describe();
    ASSERT_EQ(sparcl_comm_last_algorithm(comm.get(), &algorithm), SPARCL_SUCCESS);
    ASSERT_EQ(sparcl_comm_last_choice(comm.get(), &how), SPARCL_SUCCESS);
  };
  for (const int phase : {0, 1, 2}) {
    const double density = phase == 0 ? 0.01 : 0.3;
    const Case c{65536, density, Pattern::Overlapping, true, 42};
    if (phase == 2) {  // a call that fails everywhere: unsorted indices on rank 0
      std::vector<uint32_t> idx = {7, 3};
      std::vector<float> val = {1.0f, 1.0f};
      const sparcl_sparse_t in{c.dim, r == 0 ? 2u : 0u, SPARCL_INDEX_U32, idx.data(), SPARCL_FLOAT32, val.data(), 0};
      std::vector<float> out(c.dim);
      EXPECT_EQ(sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get()), SPARCL_ERR_INVALID_ARG);
    }
    std::vector<int> sequence;  // algorithm * 4 + how, per call
    std::map<int, int> trials;
    int votes_at = -1;
    sparcl_algorithm_t kept = SPARCL_ALGO_AUTO;
    for (int n = 0; n < 40; ++n) {
      sparcl_algorithm_t algorithm = SPARCL_ALGO_AUTO;
      sparcl_choice_t how = SPARCL_CHOSEN_BY_CONFIG;
      ASSERT_NO_FATAL_FAILURE(call(c, algorithm, how));
      sequence.push_back(int(algorithm) * 4 + int(how));
      // The first call chooses by the previous call's density: none (the
      // model), the other density's vote, none again after the failure.
      if (p == 1 || n == 0) {
        if (p == 1 || phase != 1) {
          EXPECT_EQ(how, SPARCL_CHOSEN_BY_MODEL) << "phase " << phase << ", call " << n;
        }
        continue;
      }
      if (how == SPARCL_CHOSEN_AS_TRIAL) {
        EXPECT_EQ(votes_at, -1) << "a trial after the vote, call " << n;
        ++trials[int(algorithm)];
      } else {
        ASSERT_EQ(how, SPARCL_CHOSEN_BY_MEASUREMENT) << "call " << n;
        if (votes_at < 0) votes_at = n, kept = algorithm;
        EXPECT_EQ(algorithm, kept) << "call " << n;
      }
    }
    EXPECT_TRUE(same_on_all_ranks(sequence.data(), sequence.size() * sizeof(int)));
    if (p == 1) continue;
    ASSERT_GT(votes_at, 0) << "phase " << phase << ": no vote in 40 calls";
    ASSERT_FALSE(trials.empty());
    int finalists = 0;
    for (const auto& [algorithm, count] : trials) {
      EXPECT_TRUE(count == 2 || count == 5) << "algorithm " << algorithm << " tried " << count << " times";
      finalists += count == 5;
    }
    EXPECT_EQ(finalists, std::min(3, int(trials.size())));
    EXPECT_EQ(trials.count(int(kept)) ? trials[int(kept)] : 0, 5) << "kept an algorithm that was not a finalist";
  }
}

std::string shared_temp_path(const char* name) {
  char path[256] = {};
  if (world_rank() == 0) std::snprintf(path, sizeof path, "/tmp/sparcl-%s-%d.tune", name, int(getpid()));
  MPI_Bcast(path, sizeof path, MPI_CHAR, 0, MPI_COMM_WORLD);
  return path;
}

std::string file_text(const std::string& path) {
  std::string text;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    char chunk[4096];
    size_t n;
    while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) text.append(chunk, n);
    std::fclose(f);
  }
  return text;
}

// The re-check: kRecheckAfter (256) calls after a choice, the chosen
// algorithm and one contender (in turn) get kRecheckTrials (5) trials each,
// least tried first, and a vote chooses again; once every contender was
// checked without a change the interval doubles (512); after a change, the
// replaced choice challenges again 64 calls later. The same sequence on
// every rank, every result exact. The choice comes from a tuning file that a
// first communicator stored: its contenders are then the model's first
// candidates, whatever the trial times were. (After a vote, the contenders
// are the candidates within kContenderSpread of the winner, which a loaded
// machine can leave empty: then there is nothing to re-check.)
TEST(AutoChoice, ChecksTheChoiceAgainAfterItsUses) {
  if (world_size() == 1) GTEST_SKIP() << "auto measures with two ranks or more";
  const AutoParams fixed(kSlowLink);
  const std::string path = shared_temp_path("recheck");
  const ScopedEnv file("SPARCL_TUNE_FILE", path.c_str());
  const int p = world_size(), r = world_rank();
  const Case c{16384, 0.01, Pattern::Overlapping, true, 7};
  const SparseVec<float> v = make_vector<float>(c, r, p);
  const sparcl_sparse_t in = v.as_input();
  std::vector<float> out(c.dim);
  {
    Comm first(SPARCL_ALGO_AUTO);
    ASSERT_TRUE(all_ranks(first.status() == SPARCL_SUCCESS)) << first.error();
    sparcl_choice_t how = SPARCL_CHOSEN_BY_MODEL;
    for (int n = 0; n < 40 && how != SPARCL_CHOSEN_BY_MEASUREMENT; ++n) {
      ASSERT_EQ(sparcl_allreduce_sparse(&in, out.data(), nullptr, first.get()), SPARCL_SUCCESS) << first.error();
      ASSERT_EQ(sparcl_comm_last_choice(first.get(), &how), SPARCL_SUCCESS);
    }
    ASSERT_EQ(how, SPARCL_CHOSEN_BY_MEASUREMENT) << "no vote in 40 calls";
  }
  MPI_Barrier(MPI_COMM_WORLD);
  Comm comm(SPARCL_ALGO_AUTO);
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
  std::vector<int> sequence;  // algorithm * 8 + how, per call
  std::vector<int> votes;     // the calls that ran a vote's choice right after trials
  sparcl_choice_t before = SPARCL_CHOSEN_BY_MODEL;
  std::map<int, int> check_trials;  // per algorithm, trials of the re-checks that ended in a vote
  std::map<int, int> pending;       // trials of the re-check under way
  int from_file = 0;
  for (int n = 0; n < 900; ++n) {
    ASSERT_EQ(sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
    if (n % 50 == 0) {
      EXPECT_EQ(count_wrong<float>(c, p, out), 0u) << "call " << n;
    }
    sparcl_algorithm_t algorithm;
    sparcl_choice_t how;
    ASSERT_EQ(sparcl_comm_last_algorithm(comm.get(), &algorithm), SPARCL_SUCCESS);
    ASSERT_EQ(sparcl_comm_last_choice(comm.get(), &how), SPARCL_SUCCESS);
    sequence.push_back(int(algorithm) * 8 + int(how));
    from_file += how == SPARCL_CHOSEN_FROM_TUNE_FILE;
    if (how == SPARCL_CHOSEN_BY_MEASUREMENT && before == SPARCL_CHOSEN_AS_TRIAL) {
      for (const auto& [a, count] : pending) check_trials[a] += count;
      pending.clear();
      votes.push_back(n);
    }
    if (how == SPARCL_CHOSEN_AS_TRIAL) ++pending[int(algorithm)];
    before = how;
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (r == 0) std::remove(path.c_str());
  EXPECT_TRUE(same_on_all_ranks(sequence.data(), sequence.size() * sizeof(int)));
  EXPECT_EQ(from_file, 256) << "calls that ran the tuning file's choice before the first check";
  ASSERT_GE(votes.size(), 2u) << "two re-checks in 900 calls";
  // Each check: 256 (512 after a full turn, 64 after a change) calls of the
  // choice after the vote's own, then 5 + 5 trials, then the vote.
  for (size_t i = 1; i < votes.size(); ++i) {
    const int gap = votes[i] - votes[i - 1];
    EXPECT_TRUE(gap == 1 + 64 + 10 || gap == 1 + 256 + 10 || gap == 1 + 512 + 10)
        << "vote " << i << " after " << gap << " calls";
  }
  ASSERT_GE(check_trials.size(), 2u) << "the chosen algorithm and a contender";
  for (const auto& [algorithm, count] : check_trials)
    EXPECT_EQ(count % 5, 0) << "algorithm " << algorithm << " tried " << count << " times";
}

// SPARCL_TUNE_FILE: the choice one communicator's vote settled is stored by
// rank 0, and a communicator made later (the next run) starts from it,
// without trials, on every rank alike.
TEST(AutoChoice, TuneFileKeepsTheVoteForTheNextRun) {
  if (world_size() == 1) GTEST_SKIP() << "auto measures with two ranks or more";
  const AutoParams fixed(kSlowLink);
  const std::string path = shared_temp_path("vote");
  const ScopedEnv file("SPARCL_TUNE_FILE", path.c_str());
  const int p = world_size(), r = world_rank();
  const Case c{65536, 0.01, Pattern::Overlapping, true, 99};
  const SparseVec<float> v = make_vector<float>(c, r, p);
  const sparcl_sparse_t in = v.as_input();
  std::vector<float> out(c.dim);
  auto call = [&](sparcl_comm_t comm, sparcl_algorithm_t& algorithm, sparcl_choice_t& how) {
    ASSERT_EQ(sparcl_allreduce_sparse(&in, out.data(), nullptr, comm), SPARCL_SUCCESS) << sparcl_comm_last_error(comm);
    EXPECT_EQ(count_wrong<float>(c, p, out), 0u);
    ASSERT_EQ(sparcl_comm_last_algorithm(comm, &algorithm), SPARCL_SUCCESS);
    ASSERT_EQ(sparcl_comm_last_choice(comm, &how), SPARCL_SUCCESS);
  };
  sparcl_algorithm_t kept = SPARCL_ALGO_AUTO;
  {
    Comm comm(SPARCL_ALGO_AUTO);
    ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
    for (int n = 0; n < 40 && kept == SPARCL_ALGO_AUTO; ++n) {
      sparcl_algorithm_t algorithm;
      sparcl_choice_t how;
      ASSERT_NO_FATAL_FAILURE(call(comm.get(), algorithm, how));
      ASSERT_NE(how, SPARCL_CHOSEN_FROM_TUNE_FILE) << "call " << n << ": the file was empty";
      if (how == SPARCL_CHOSEN_BY_MEASUREMENT) kept = algorithm;
    }
    ASSERT_NE(kept, SPARCL_ALGO_AUTO) << "no vote in 40 calls";
    if (r == 0) {
      EXPECT_NE(std::string(sparcl_comm_auto_model(comm.get())).find("1 stored"), std::string::npos)
          << sparcl_comm_auto_model(comm.get());
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const std::string text = file_text(path);
  EXPECT_EQ(text.rfind("sparcl-tune 1\n", 0), 0u) << text;
  EXPECT_NE(text.find(std::string("algorithm=") + sparcl_algorithm_name(kept) + "\n"), std::string::npos) << text;
  {
    Comm comm(SPARCL_ALGO_AUTO);
    ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
    std::vector<int> sequence;
    for (int n = 0; n < 4; ++n) {
      sparcl_algorithm_t algorithm;
      sparcl_choice_t how;
      ASSERT_NO_FATAL_FAILURE(call(comm.get(), algorithm, how));
      sequence.push_back(int(algorithm) * 8 + int(how));
      if (n == 0) continue;  // no density record yet: the model
      EXPECT_EQ(how, SPARCL_CHOSEN_FROM_TUNE_FILE) << "call " << n;
      EXPECT_EQ(algorithm, kept) << "call " << n;
    }
    EXPECT_TRUE(same_on_all_ranks(sequence.data(), sequence.size() * sizeof(int)));
    EXPECT_NE(std::string(sparcl_comm_auto_model(comm.get())).find("1 choices for this machine"), std::string::npos)
        << sparcl_comm_auto_model(comm.get());
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (r == 0) std::remove(path.c_str());
}

// A tuning file that the ranks read differently (here: each rank its own) is
// not used, and the communicator says why; the calls measure as without one.
TEST(AutoChoice, TuneFileReadDifferentlyIsNotUsed) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  const AutoParams fixed(kSlowLink);
  const std::string path = shared_temp_path("differ") + "." + std::to_string(world_rank());
  if (world_rank() == 0) {
    FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("sparcl-tune 1\n", f);
    std::fclose(f);
  }
  const ScopedEnv file("SPARCL_TUNE_FILE", path.c_str());
  Comm comm(SPARCL_ALGO_AUTO);
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
  const std::string model = sparcl_comm_auto_model(comm.get());
  EXPECT_NE(model.find("read other contents than this rank"), std::string::npos) << model;
  const Case c{4096, 0.05, Pattern::Overlapping, true, 5};
  const SparseVec<float> v = make_vector<float>(c, world_rank(), world_size());
  const sparcl_sparse_t in = v.as_input();
  std::vector<float> out(c.dim);
  for (int n = 0; n < 3; ++n) {
    ASSERT_EQ(sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
    EXPECT_EQ(count_wrong<float>(c, world_size(), out), 0u);
    sparcl_choice_t how;
    ASSERT_EQ(sparcl_comm_last_choice(comm.get(), &how), SPARCL_SUCCESS);
    EXPECT_NE(how, SPARCL_CHOSEN_FROM_TUNE_FILE);
  }
  std::remove(path.c_str());
}

// Ranks that disagree on measuring are told when the communicator is made.
TEST(AutoChoice, RanksThatDisagreeOnMeasuringAreToldAtCreation) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  const ScopedEnv tune("SPARCL_AUTO_TUNE", world_rank() == 0 ? "0" : "1");
  Comm comm(SPARCL_ALGO_AUTO);
  EXPECT_EQ(comm.status(), SPARCL_ERR_MISMATCH);
  const std::string msg = sparcl_comm_last_error(nullptr);
  EXPECT_NE(msg.find("SPARCL_AUTO_TUNE"), std::string::npos) << msg;
}

// 48 calls in flight with densities that change from call to call, over dims
// that calibrate (256 KiB and more) and dims that do not; sparse and dense
// inputs; completed in reverse start order.
void run_in_flight(const char* params, bool progress_thread, sparcl_algorithm_t algorithm = SPARCL_ALGO_AUTO) {
  const AutoParams fixed(params);
  Comm comm(algorithm, 120000, progress_thread);
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
  const int p = world_size(), r = world_rank();
  constexpr int kOps = 48;
  std::mt19937 shared_rng(99);  // the same calls on every rank
  const uint64_t dims[] = {1000, 65536, 131072};
  const double densities[] = {0.0, 0.001, 0.01, 0.1, 0.6};
  std::vector<Case> cases;
  std::vector<SparseVec<float>> inputs;
  std::vector<std::vector<float>> outputs;
  std::vector<sparcl_request_t> requests(kOps, nullptr);
  for (int k = 0; k < kOps; ++k) {
    cases.push_back(Case{dims[shared_rng() % 3], densities[shared_rng() % 5], Pattern(shared_rng() % 3), true,
                         uint64_t(500 + k)});
    inputs.push_back(make_vector<float>(cases.back(), r, p));
  }
  outputs.resize(kOps);
  for (int k = 0; k < kOps; ++k) {
    outputs[size_t(k)].assign(cases[size_t(k)].dim, 0.0f);
    sparcl_status_t st;
    if (k % 3 == 2) {  // a dense input
      for (size_t j = 0; j < inputs[size_t(k)].idx.size(); ++j)
        outputs[size_t(k)][inputs[size_t(k)].idx[j]] = inputs[size_t(k)].val[j];
      st = sparcl_iallreduce(SPARCL_IN_PLACE, outputs[size_t(k)].data(), cases[size_t(k)].dim, SPARCL_FLOAT32,
                             SPARCL_SUM, comm.get(), &requests[size_t(k)]);
    } else {
      const sparcl_sparse_t in = inputs[size_t(k)].as_input();
      st = sparcl_iallreduce_sparse(&in, outputs[size_t(k)].data(), nullptr, comm.get(), &requests[size_t(k)]);
    }
    ASSERT_EQ(st, SPARCL_SUCCESS) << comm.error();
  }
  for (int k = kOps - 1; k >= 0; --k) {
    EXPECT_EQ(sparcl_wait(&requests[size_t(k)]), SPARCL_SUCCESS) << "call " << k << ": " << comm.error();
    EXPECT_EQ(count_wrong<float>(cases[size_t(k)], p, outputs[size_t(k)]), 0u) << cases[size_t(k)].describe();
  }
  if (algorithm == SPARCL_ALGO_AUTO && !*params) {
    const std::string model = sparcl_comm_auto_model(comm.get());
    if (p > 1) {
      EXPECT_NE(model.find("calibrated"), std::string::npos) << model;
    }
    EXPECT_TRUE(same_on_all_ranks(model.data(), model.size())) << model;
  }
}

TEST(AutoChoice, ManyInFlightWithFixedParameters) { run_in_flight(kSlowLink, false); }
TEST(AutoChoice, ManyInFlightWhileCalibrating) { run_in_flight("", false); }
TEST(AutoChoice, ManyInFlightWhileCalibratingWithProgressThread) { run_in_flight("", true); }

// The dense algorithm starts MPI_Iallreduce, which MPI matches by start
// order: with many in flight, every rank must start them in the calls' order
// (NativeOrder), whatever order their barriers complete in.
TEST(DenseAlgorithm, ManyInFlight) { run_in_flight("", false, SPARCL_ALGO_DENSE); }
TEST(DenseAlgorithm, ManyInFlightWithProgressThread) { run_in_flight("", true, SPARCL_ALGO_DENSE); }

}  // namespace
