// SPDX-License-Identifier: BSD-3-Clause
#include "ml/train/trainer.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "ml/nn/loss.hpp"

namespace sparcl {
namespace train {

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// 75 -> "1:15", 3725 -> "1:02:05".
std::string clock_text(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

std::vector<size_t> tensor_sizes(const nn::Sequential& model) {
  std::vector<size_t> sizes;
  for (size_t i : model.trainable()) sizes.push_back(model.layer(i).params().size());
  return sizes;
}

}  // namespace

Trainer::Trainer(nn::Sequential& model, Task task, const data::Samples& train, const data::Samples& test,
                 const TrainConfig& config, MPI_Comm mpi, sparcl_comm_t comm)
    : model_(model),
      task_(task),
      train_(train),
      test_(test),
      config_(config),
      mpi_(mpi),
      optimizer_(config.optimizer, tensor_sizes(model)),
      exchange_(config.exchange, mpi, comm, tensor_sizes(model)) {
  MPI_Comm_rank(mpi_, &rank_);
  MPI_Comm_size(mpi_, &ranks_);
  if (config_.batch == 0) throw std::invalid_argument("--batch must be at least 1");
  if (model_.max_batch() < config_.batch)
    throw std::invalid_argument("the model was set up for batches of " + std::to_string(model_.max_batch()) +
                                ", smaller than --batch " + std::to_string(config_.batch));
  if (train_.count == 0) throw std::invalid_argument("no training samples");
  const size_t features = model_.input_shape().size();
  if (train_.sample_size() != features || (test_.count && test_.sample_size() != features))
    throw std::invalid_argument("samples of " + std::to_string(train_.sample_size()) + " values do not fit a model input of " +
                                model_.input_shape().str());
  if (task_ == Task::Classify && (train_.labels.size() != train_.count || test_.labels.size() != test_.count))
    throw std::invalid_argument("classification needs a label for every sample");
  if (task_ == Task::Reconstruct && model_.output_shape().size() != features)
    throw std::invalid_argument("an autoencoder's output (" + model_.output_shape().str() +
                                ") must have the input's size (" + model_.input_shape().str() + ")");
  tensor_of_layer_.assign(model_.size(), 0);
  for (size_t t = 0; t < model_.trainable().size(); ++t) tensor_of_layer_[model_.trainable()[t]] = t;
  x_.resize(config_.batch * features);
  dout_.resize(config_.batch * model_.output_shape().size());
  labels_.resize(config_.batch);
  if (rank_ == 0 && !config_.csv_path.empty()) {
    csv_ = std::fopen(config_.csv_path.c_str(), "w");
    if (!csv_) throw std::runtime_error("cannot write " + config_.csv_path);
    write_csv_header();
  }
}

Trainer::~Trainer() {
  if (csv_) std::fclose(csv_);
}

double scaled_learning_rate(double base, int ranks, bool linear, double warmup_epochs, size_t step,
                            size_t steps_per_epoch) {
  const double target = linear ? base * double(ranks) : base;
  const double warmup_steps = warmup_epochs * double(steps_per_epoch);
  if (!(warmup_steps > 0) || double(step) >= warmup_steps) return target;
  return base + (target - base) * double(step) / warmup_steps;
}

void Trainer::step(const std::vector<size_t>& order, size_t lo, size_t len) {
  // This rank's part of the global batch order[lo, lo + len).
  const size_t r = size_t(rank_), p = size_t(ranks_);
  const size_t mine_lo = lo + r * len / p, mine_hi = lo + (r + 1) * len / p, nb = mine_hi - mine_lo;
  const size_t features = model_.input_shape().size(), outputs = model_.output_shape().size();
  const auto exchange_layer = [&](size_t layer) {
    exchange_.start(tensor_of_layer_[layer], model_.layer(layer).grads().data());
    exchange_.progress();
  };
  if (nb > 0) {
    for (size_t j = 0; j < nb; ++j) {
      const size_t i = order[mine_lo + j];
      std::copy(train_.sample(i), train_.sample(i) + features, x_.begin() + std::ptrdiff_t(j * features));
      if (task_ == Task::Classify) labels_[j] = train_.labels[i];
    }
    const float* out = model_.forward(x_.data(), nb);
    if (task_ == Task::Classify) {
      const auto res = nn::softmax_cross_entropy(out, labels_.data(), nb, outputs, 1.0f / float(len), dout_.data());
      loss_sum_ += res.loss_sum;
      correct_ += double(res.correct);
    } else {
      const float scale = float(1.0 / (double(len) * double(outputs)));
      loss_sum_ += nn::squared_error(out, x_.data(), nb * outputs, scale, dout_.data()) / double(outputs);
    }
    seen_ += double(nb);
    model_.backward(x_.data(), dout_.data(), nb, exchange_layer);
  } else {
    // No sample for this rank in a short last batch: it still adds its (zero) share.
    for (size_t k = model_.trainable().size(); k-- > 0;) {
      auto& g = model_.layer(model_.trainable()[k]).grads();
      std::fill(g.begin(), g.end(), 0.0f);
      exchange_layer(model_.trainable()[k]);
    }
  }
  exchange_.wait_all();
  for (size_t t = 0; t < model_.trainable().size(); ++t) {
    nn::Layer& l = model_.layer(model_.trainable()[t]);
    optimizer_.step(t, l.params().data(), exchange_.sum(t));
  }
}

Evaluation Trainer::evaluate(const data::Samples& s) {
  const size_t features = model_.input_shape().size(), outputs = model_.output_shape().size();
  const size_t chunk = model_.max_batch();
  std::vector<float> x(chunk * features);
  std::vector<int> labels(chunk);
  double sums[3] = {0, 0, 0};  // loss, correct, samples
  std::vector<size_t> mine;
  for (size_t i = size_t(rank_); i < s.count; i += size_t(ranks_)) mine.push_back(i);
  for (size_t at = 0; at < mine.size(); at += chunk) {
    const size_t nb = std::min(chunk, mine.size() - at);
    for (size_t j = 0; j < nb; ++j) {
      std::copy(s.sample(mine[at + j]), s.sample(mine[at + j]) + features, x.begin() + std::ptrdiff_t(j * features));
      if (task_ == Task::Classify) labels[j] = s.labels[mine[at + j]];
    }
    const float* out = model_.forward(x.data(), nb);
    if (task_ == Task::Classify) {
      const auto res = nn::softmax_cross_entropy(out, labels.data(), nb, outputs, 1.0f, nullptr);
      sums[0] += res.loss_sum;
      sums[1] += double(res.correct);
    } else {
      sums[0] += nn::squared_error(out, x.data(), nb * outputs, 1.0f, nullptr) / double(outputs);
    }
    sums[2] += double(nb);
  }
  MPI_Allreduce(MPI_IN_PLACE, sums, 3, MPI_DOUBLE, MPI_SUM, mpi_);
  Evaluation e;
  e.count = size_t(sums[2]);
  if (e.count) {
    e.loss = sums[0] / sums[2];
    e.accuracy = sums[1] / sums[2];
  }
  return e;
}

void Trainer::record(size_t epoch) {
  LogRow row;
  row.epoch = epoch;
  row.step = steps_;
  row.samples = samples_;
  row.wall_s = wall_;
  row.interval_s = interval_;
  // Means over ranks of what each rank measured; sums of the training loss.
  double local[5] = {exchange_.seconds() - comm_at_row_, double(exchange_.bytes_sent() - sent_at_row_), loss_sum_,
                     correct_, seen_};
  MPI_Allreduce(MPI_IN_PLACE, local, 5, MPI_DOUBLE, MPI_SUM, mpi_);
  row.comm_s = local[0] / ranks_;
  row.sent_mb = local[1] / ranks_ / 1e6;
  row.train_loss = local[4] > 0 ? local[2] / local[4] : 0;
  row.train_accuracy = local[4] > 0 ? local[3] / local[4] : 0;
  row.samples_per_s = interval_ > 0 ? local[4] / interval_ : 0;
  row.compressed = exchange_.compressing();
  if (config_.eval_train) row.train_eval = evaluate(train_);
  if (test_.count) row.test = evaluate(test_);
  // Stop decisions must be the same on every rank: rank 0's clock decides.
  MPI_Bcast(&row.wall_s, 1, MPI_DOUBLE, 0, mpi_);
  if (task_ == Task::Classify && config_.target_accuracy > 0 && time_to_target_ < 0 &&
      row.test.accuracy >= config_.target_accuracy)
    time_to_target_ = row.wall_s;
  log_.push_back(row);
  if (csv_) write_csv_row(row);
  comm_at_row_ = exchange_.seconds();
  sent_at_row_ = exchange_.bytes_sent();
  interval_ = loss_sum_ = correct_ = seen_ = 0;
}

// The rows of one epoch (several with --eval-every) as one: times, bytes and
// samples add up; the training loss and accuracy are means over all its samples.
LogRow Trainer::epoch_total(size_t first_row, size_t samples_before) const {
  LogRow e = log_.back();
  e.interval_s = e.comm_s = e.sent_mb = e.train_loss = e.train_accuracy = 0;
  size_t before = samples_before;
  for (size_t i = first_row; i < log_.size(); ++i) {
    const LogRow& r = log_[i];
    const double samples = double(r.samples - before);
    before = r.samples;
    e.interval_s += r.interval_s;
    e.comm_s += r.comm_s;
    e.sent_mb += r.sent_mb;
    e.train_loss += r.train_loss * samples;
    e.train_accuracy += r.train_accuracy * samples;
  }
  const double samples = double(e.samples - samples_before);
  if (samples > 0) e.train_loss /= samples, e.train_accuracy /= samples;
  e.samples_per_s = e.interval_s > 0 ? samples / e.interval_s : 0;
  return e;
}

const std::vector<LogRow>& Trainer::run() {
  const size_t n = train_.count, global = config_.batch * size_t(ranks_);
  const size_t steps_per_epoch = (n + global - 1) / global;
  std::vector<size_t> order(n);
  bool stop = false;
  run_start_ = now();
  total_steps_ = config_.epochs * steps_per_epoch;
  if (config_.max_steps) total_steps_ = std::min(total_steps_, config_.max_steps);
  for (size_t epoch = 1; epoch <= config_.epochs && !stop; ++epoch) {
    const size_t first_row = log_.size(), samples_before = samples_;
    epoch_start_ = now();
    exchange_.set_compression(epoch > config_.warmup_epochs);
    std::iota(order.begin(), order.end(), size_t(0));
    nn::Rng(config_.seed * 1000003u + epoch).shuffle(order);
    for (size_t s = 0; s < steps_per_epoch && !stop; ++s) {
      const size_t lo = s * global, len = std::min(global, n - lo);
      optimizer_.set_lr(float(scaled_learning_rate(config_.optimizer.lr, ranks_, config_.lr_linear_scaling,
                                                   config_.lr_warmup_epochs, steps_, steps_per_epoch)));
      const double t0 = now();
      step(order, lo, len);
      const double dt = now() - t0;
      wall_ += dt;
      interval_ += dt;
      ++steps_;
      samples_ += len;
      const bool last = s + 1 == steps_per_epoch;
      if (config_.max_steps && steps_ >= config_.max_steps) stop = true;
      show_progress(epoch, s + 1, steps_per_epoch, last || stop);
      if (last || stop || (config_.eval_every && steps_ % config_.eval_every == 0)) {
        record(epoch);
        if (config_.stop_at_target && time_to_target_ >= 0) stop = true;
        if (config_.max_seconds > 0 && log_.back().wall_s >= config_.max_seconds) stop = true;
        if (rank_ == 0 && config_.verbose && (last || stop)) {
          // The whole epoch, however many rows --eval-every wrote (evaluations: the last one's).
          const LogRow row = epoch_total(first_row, samples_before);
          std::printf("epoch %zu: %.2f s training, %.0f samples/s, comm %.0f%%, train loss %.5f", epoch,
                      row.interval_s, row.samples_per_s, row.interval_s > 0 ? 100 * row.comm_s / row.interval_s : 0,
                      row.train_loss);
          if (task_ == Task::Classify) std::printf(" acc %.2f%%", 100 * row.train_accuracy);
          if (config_.eval_train) std::printf(", train eval %.5f", row.train_eval.loss);
          if (test_.count) {
            std::printf(", test loss %.5f", row.test.loss);
            if (task_ == Task::Classify) std::printf(" acc %.2f%%", 100 * row.test.accuracy);
          }
          std::printf(", sent %.1f MB%s\n", row.sent_mb, row.compressed ? "" : exchange_.compressed_mode() ? " (dense warm-up)" : "");
          std::fflush(stdout);
        }
      }
    }
  }
  return log_;
}

void Trainer::write_csv_header() {
  std::fprintf(csv_,
               "workload,comm,ranks,density,bits,optimizer,lr,batch,epoch,step,samples,wall_s,interval_s,comm_s,"
               "comm_share,samples_per_s,train_loss,train_acc,train_eval_loss,train_eval_acc,test_loss,test_acc,"
               "compressed,sent_mb\n");
  std::fflush(csv_);
}

void Trainer::write_csv_row(const LogRow& r) {
  const bool classify = task_ == Task::Classify;
  const bool compressed = exchange_.compressed_mode();
  std::fprintf(csv_, "%s,%s,%d,", config_.workload.c_str(), comm_mode_name(config_.exchange.mode), ranks_);
  if (compressed)
    std::fprintf(csv_, "%g,", config_.exchange.density);
  else
    std::fprintf(csv_, ",");
  if (config_.exchange.mode == CommMode::TopKQ)
    std::fprintf(csv_, "%d,", config_.exchange.bits);
  else
    std::fprintf(csv_, ",");
  std::fprintf(csv_, "%s,%g,%zu,%zu,%zu,%zu,%.4f,%.4f,%.4f,%.4f,%.2f,%.6g,", nn::optimizer_name(config_.optimizer.kind),
               double(optimizer_.config().lr), config_.batch, r.epoch, r.step, r.samples, r.wall_s, r.interval_s,
               r.comm_s, r.interval_s > 0 ? r.comm_s / r.interval_s : 0.0, r.samples_per_s, r.train_loss);
  if (classify)
    std::fprintf(csv_, "%.6g,", r.train_accuracy);
  else
    std::fprintf(csv_, ",");
  if (config_.eval_train)
    std::fprintf(csv_, classify ? "%.6g,%.6g," : "%.6g,,", r.train_eval.loss, r.train_eval.accuracy);
  else
    std::fprintf(csv_, ",,");
  if (test_.count)
    std::fprintf(csv_, classify ? "%.6g,%.6g," : "%.6g,,", r.test.loss, r.test.accuracy);
  else
    std::fprintf(csv_, ",,");
  std::fprintf(csv_, "%d,%.3f\n", r.compressed ? 1 : 0, r.sent_mb);
  std::fflush(csv_);
}

void Trainer::show_progress(size_t epoch, size_t step, size_t steps, bool force) {
  if (rank_ != 0 || !config_.progress) return;
  const double t = now();
  if (!force && last_bar_ >= 0 && t - last_bar_ < 0.25) return;
  last_bar_ = t;
  constexpr int kWidth = 24;
  const int filled = int(double(kWidth) * double(step) / double(steps));
  char bar[kWidth + 1];
  for (int i = 0; i < kWidth; ++i) bar[i] = i < filled ? '=' : i == filled ? '>' : ' ';
  bar[kWidth] = '\0';
  const double comm = exchange_.seconds() - comm_at_row_;
  std::fprintf(stderr, "\repoch %zu/%zu [%s] %zu/%zu loss %.4f", epoch, config_.epochs, bar, step, steps,
               seen_ > 0 ? loss_sum_ / seen_ : 0.0);
  if (task_ == Task::Classify) std::fprintf(stderr, " acc %5.1f%%", seen_ > 0 ? 100 * correct_ / seen_ : 0.0);
  std::fprintf(stderr, " | %.0f samples/s | comm %3.0f%%", interval_ > 0 ? seen_ * ranks_ / interval_ : 0.0,
               interval_ > 0 ? 100 * comm / interval_ : 0.0);
  // Remaining time from the pace so far, evaluations included (wall clock).
  if (step < steps) {
    const double epoch_left = (t - epoch_start_) / double(step) * double(steps - step);
    const double run_left = steps_ < total_steps_ ? (t - run_start_) / double(steps_) * double(total_steps_ - steps_) : 0;
    std::fprintf(stderr, " | ETA epoch %s, run %s ", clock_text(epoch_left).c_str(), clock_text(run_left).c_str());
  } else {
    std::fprintf(stderr, " | epoch took %s, run ETA %s ", clock_text(t - epoch_start_).c_str(),
                 clock_text(steps_ < total_steps_ ? (t - run_start_) / double(steps_) * double(total_steps_ - steps_) : 0)
                     .c_str());
  }
  if (force) std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

}  // namespace train
}  // namespace sparcl
