// SPDX-License-Identifier: BSD-3-Clause
// The data-parallel training loop: every rank holds the same model (same
// seed), takes its share of each global batch, backpropagates, and sums the
// gradients with the other ranks layer by layer while the layers below are
// still being backpropagated (ml/train/exchange.hpp); then every rank takes
// the same optimizer step.
//
// The loss of a step is the mean over the global batch: each rank scales its
// gradient by 1 / (global batch), so the sum over ranks is the gradient of
// one process training on the whole batch (up to the order of additions).
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "ml/data/datasets.hpp"
#include "ml/nn/model.hpp"
#include "ml/nn/optim.hpp"
#include "ml/train/exchange.hpp"

namespace sparcl {
namespace train {

enum class Task {
  Classify,     ///< softmax cross-entropy on labels; accuracy
  Reconstruct,  ///< mean squared error of the output against the input (autoencoder)
};

struct TrainConfig {
  size_t epochs = 1;
  size_t batch = 8;            ///< samples per rank per step
  uint64_t seed = 1;           ///< initialisation and shuffling (the same on every rank)
  nn::OptimizerConfig optimizer;
  ExchangeConfig exchange;
  size_t warmup_epochs = 0;    ///< compressed modes: the first epochs exchange dense
  /// Large-batch training (Goyal et al.): the learning rate times the number
  /// of ranks (P ranks train on P times the batch), reached linearly over
  /// the first lr_warmup_epochs (fractions allowed) from the base rate.
  bool lr_linear_scaling = false;
  double lr_warmup_epochs = 0;
  size_t eval_every = 0;       ///< steps between evaluations; 0: at the end of each epoch only
  bool eval_train = false;     ///< evaluate the whole training set too at each evaluation
  double target_accuracy = 0;  ///< Classify: record the training time at which test accuracy first reaches it
  bool stop_at_target = false; ///< ... and stop there
  double max_seconds = 0;      ///< stop at the first evaluation after this much training time (0: no limit)
  size_t max_steps = 0;        ///< stop after this many steps (0: no limit)
  std::string workload;        ///< name in the log
  std::string csv_path;        ///< CSV log (rank 0), "" for none
  bool progress = true;        ///< progress bar on rank 0's stderr
  bool verbose = true;         ///< epoch lines on rank 0's stdout
};

/// The learning rate of step `step` (counted from 0) of `steps_per_epoch`:
/// `base`, or with linear scaling `base * ranks`, ramped linearly from
/// `base` over the first `warmup_epochs`.
double scaled_learning_rate(double base, int ranks, bool linear, double warmup_epochs, size_t step,
                            size_t steps_per_epoch);

struct Evaluation {
  double loss = 0;      ///< mean cross-entropy per sample, or mean squared error per value
  double accuracy = 0;  ///< Classify only
  size_t count = 0;
};

/// One row of the log (an evaluation point).
struct LogRow {
  size_t epoch = 0, step = 0, samples = 0;
  double wall_s = 0;       ///< training time so far (evaluations excluded)
  double interval_s = 0;   ///< training time since the previous row
  double comm_s = 0;       ///< of which inside the gradient exchange (mean over ranks)
  double samples_per_s = 0;
  double train_loss = 0, train_accuracy = 0;  ///< running mean over the interval's steps
  Evaluation train_eval;   ///< with eval_train
  Evaluation test;
  bool compressed = false; ///< the interval's last step was compressed
  double sent_mb = 0;      ///< MB this rank sent in the interval (mean over ranks)
};

class Trainer {
 public:
  /// `model` must be set up for batches of at least config.batch samples.
  Trainer(nn::Sequential& model, Task task, const data::Samples& train, const data::Samples& test,
          const TrainConfig& config, MPI_Comm mpi, sparcl_comm_t comm);
  ~Trainer();

  /// Trains for config.epochs (or until a stop condition); returns the log.
  const std::vector<LogRow>& run();
  /// Loss (and accuracy) of the current model over `s`, shared out over the ranks.
  Evaluation evaluate(const data::Samples& s);
  /// Training time at which test accuracy first reached the target (< 0: not reached).
  double time_to_target() const { return time_to_target_; }
  const std::vector<LogRow>& log() const { return log_; }

 private:
  void step(const std::vector<size_t>& order, size_t lo, size_t len);
  void record(size_t epoch);
  void write_csv_header();
  void write_csv_row(const LogRow& row);
  void show_progress(size_t epoch, size_t step, size_t steps, bool force);
  LogRow epoch_total(size_t first_row, size_t samples_before) const;

  nn::Sequential& model_;
  Task task_;
  const data::Samples& train_;
  const data::Samples& test_;
  TrainConfig config_;
  MPI_Comm mpi_;
  int rank_ = 0, ranks_ = 1;
  std::vector<size_t> tensor_of_layer_;
  nn::Optimizer optimizer_;
  GradientExchange exchange_;
  std::vector<float> x_, dout_;
  std::vector<int> labels_;
  std::vector<LogRow> log_;
  std::FILE* csv_ = nullptr;
  // Counters since the previous row.
  double wall_ = 0, interval_ = 0, comm_at_row_ = 0;
  double loss_sum_ = 0, correct_ = 0, seen_ = 0;
  uint64_t sent_at_row_ = 0;
  size_t steps_ = 0, samples_ = 0;
  double time_to_target_ = -1;
  double last_bar_ = -1;
  double run_start_ = 0, epoch_start_ = 0;  // wall clock, for the progress bar's ETA
  size_t total_steps_ = 0;
};

}  // namespace train
}  // namespace sparcl
