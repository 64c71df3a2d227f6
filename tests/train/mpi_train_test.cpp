// SPDX-License-Identifier: BSD-3-Clause
// Data-parallel training on 2 ranks: with dense communication (MPI or
// sparcl) the weights equal those of one process training on the combined
// batches, and top-k at density 1.0 equals dense.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "ml/data/datasets.hpp"
#include "ml/nn/rng.hpp"
#include "ml/train/trainer.hpp"
#include "ml/train/workloads.hpp"
#include "sparcl/sparcl_mpi.h"

using namespace sparcl;

namespace {

// Images whose class is where the bright square sits, plus noise: learnable in a few steps.
data::Samples synthetic_images(size_t count, uint64_t seed) {
  data::Samples s;
  s.count = count;
  s.height = s.width = 8;
  nn::Rng rng(seed);
  for (size_t i = 0; i < count; ++i) {
    const int label = int(rng.below(3));
    s.labels.push_back(label);
    for (size_t y = 0; y < 8; ++y)
      for (size_t x = 0; x < 8; ++x) {
        const bool lit = y >= 2 && y < 5 && x >= size_t(label) * 2 && x < size_t(label) * 2 + 3;
        s.values.push_back((lit ? 0.8f : 0.0f) + 0.2f * rng.uniform());
      }
  }
  return s;
}

struct TrainedModel {
  std::vector<std::vector<float>> weights;
  std::vector<train::LogRow> log;
};

// Trains the small CNN on `comm_world` with the given per-rank batch and
// exchange, `steps` steps over `train_set` (same seed everywhere).
TrainedModel train_cnn(MPI_Comm mpi, size_t batch, const train::ExchangeConfig& ex, size_t steps,
              const data::Samples& train_set, const data::Samples& test_set, nn::OptimizerConfig::Kind opt) {
  sparcl_comm_t comm = nullptr;
  EXPECT_EQ(sparcl_comm_create_mpi(mpi, nullptr, &comm), SPARCL_SUCCESS);
  auto model = train::make_cnn(nn::Shape{1, 8, 8}, {3}, 24, 3);
  model->setup(16, 99);
  train::TrainConfig c;
  c.epochs = 100;
  c.max_steps = steps;
  c.batch = batch;
  c.seed = 5;
  c.exchange = ex;
  c.optimizer.kind = opt;
  c.optimizer.lr = opt == nn::OptimizerConfig::Kind::Adam ? 0.01f : 0.1f;
  c.progress = false;
  c.verbose = false;
  TrainedModel r;
  {
    train::Trainer t(*model, train::Task::Classify, train_set, test_set, c, mpi, comm);
    r.log = t.run();
  }
  for (size_t i : model->trainable()) r.weights.push_back(model->layer(i).params());
  sparcl_comm_free(comm);
  return r;
}

float max_difference(const TrainedModel& a, const TrainedModel& b) {
  float d = 0;
  for (size_t t = 0; t < a.weights.size(); ++t)
    for (size_t i = 0; i < a.weights[t].size(); ++i) d = std::max(d, std::fabs(a.weights[t][i] - b.weights[t][i]));
  return d;
}

int world_size() {
  int p = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  return p;
}

}  // namespace

// 2 ranks x batch 4 against 1 process x batch 8: the same global batches in
// the same order. 57 samples: the last batch of each epoch has 1 sample, so
// one rank contributes nothing (its zero gradient) on that step. Tolerance:
// 1e-5 on weights of magnitude ~0.1-1 after 20 steps (1.2e-7 seen): the two
// sides add the same float terms in a different order (per-rank partial
// sums, then the allreduce), nothing else differs.
TEST(DataParallel, DenseEqualsOneProcessOnTheCombinedBatch) {
  ASSERT_EQ(world_size(), 2) << "run on 2 ranks";
  const data::Samples train_set = synthetic_images(57, 1), test_set = synthetic_images(20, 2);
  for (auto mode : {train::CommMode::DenseMpi, train::CommMode::Dense})
    for (auto opt : {nn::OptimizerConfig::Kind::Sgd, nn::OptimizerConfig::Kind::Adam}) {
      train::ExchangeConfig ex;
      ex.mode = mode;
      const TrainedModel two = train_cnn(MPI_COMM_WORLD, 4, ex, 20, train_set, test_set, opt);
      const TrainedModel one = train_cnn(MPI_COMM_SELF, 8, ex, 20, train_set, test_set, opt);
      EXPECT_LE(max_difference(two, one), 1e-5f) << train::comm_mode_name(mode) << " " << nn::optimizer_name(opt);
      // It learned something, and both sides measured the same losses.
      EXPECT_LT(two.log.back().test.loss, two.log.front().test.loss + 1e-9);
      EXPECT_NEAR(two.log.back().test.loss, one.log.back().test.loss, 1e-4);
    }
}

// Top-k at density 1 sends every entry with its raw value and the residual
// stays zero; sparcl's dense allreduce and its sparse allreduce of the full
// vector run the same algorithm (chosen from dim and P alone) on the same
// values, so every sum is formed in the same order: the weights are
// bitwise equal.
TEST(DataParallel, TopkAtDensityOneEqualsDense) {
  ASSERT_EQ(world_size(), 2);
  const data::Samples train_set = synthetic_images(40, 3), test_set = synthetic_images(20, 4);
  train::ExchangeConfig dense;
  dense.mode = train::CommMode::Dense;
  train::ExchangeConfig topk;
  topk.mode = train::CommMode::TopK;
  topk.density = 1.0;
  topk.dense_below = 0;  // compress every tensor, the small ones too
  const TrainedModel a = train_cnn(MPI_COMM_WORLD, 4, dense, 10, train_set, test_set, nn::OptimizerConfig::Kind::Sgd);
  const TrainedModel b = train_cnn(MPI_COMM_WORLD, 4, topk, 10, train_set, test_set, nn::OptimizerConfig::Kind::Sgd);
  EXPECT_EQ(max_difference(a, b), 0.0f);
}

// Top-k at 10% with error feedback and 8-bit values still learns the task.
TEST(DataParallel, CompressedTrainingLearns) {
  ASSERT_EQ(world_size(), 2);
  const data::Samples train_set = synthetic_images(120, 5), test_set = synthetic_images(60, 6);
  for (auto mode : {train::CommMode::TopK, train::CommMode::TopKQ}) {
    train::ExchangeConfig ex;
    ex.mode = mode;
    ex.density = 0.1;
    ex.dense_below = 0;
    const TrainedModel r = train_cnn(MPI_COMM_WORLD, 4, ex, 60, train_set, test_set, nn::OptimizerConfig::Kind::Sgd);
    EXPECT_GT(r.log.back().test.accuracy, 0.8) << train::comm_mode_name(mode);
    EXPECT_TRUE(r.log.back().compressed);
  }
}
