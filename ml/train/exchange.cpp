// SPDX-License-Identifier: BSD-3-Clause
#include "ml/train/exchange.hpp"

#include "ml/train/trace.hpp"

#include <chrono>
#include <stdexcept>

namespace sparcl {
namespace train {

namespace {

class Stopwatch {
 public:
  explicit Stopwatch(double& total) : total_(total), t0_(std::chrono::steady_clock::now()) {}
  ~Stopwatch() { total_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }

 private:
  double& total_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace

CommMode comm_mode(const std::string& name) {
  if (name == "dense-mpi") return CommMode::DenseMpi;
  if (name == "dense") return CommMode::Dense;
  if (name == "topk") return CommMode::TopK;
  if (name == "topk-q") return CommMode::TopKQ;
  throw std::invalid_argument("unknown --comm '" + name + "' (dense-mpi, dense, topk, topk-q)");
}

std::string exchange_name(const ExchangeConfig& config) {
  const bool compressed = config.mode == CommMode::TopK || config.mode == CommMode::TopKQ;
  return std::string(comm_mode_name(config.mode)) + (compressed && config.global_selection ? "+global" : "");
}

const char* comm_mode_name(CommMode mode) {
  switch (mode) {
    case CommMode::DenseMpi: return "dense-mpi";
    case CommMode::Dense: return "dense";
    case CommMode::TopK: return "topk";
    case CommMode::TopKQ: return "topk-q";
  }
  return "?";
}

GradientExchange::GradientExchange(const ExchangeConfig& config, MPI_Comm mpi, sparcl_comm_t comm,
                                   const std::vector<size_t>& tensor_sizes)
    : config_(config),
      mpi_(mpi),
      comm_(comm),
      sizes_(tensor_sizes),
      compressors_(tensor_sizes.size(), nullptr),
      plans_(tensor_sizes.size(), Plan{}),
      started_(tensor_sizes.size(), nullptr) {
  if (!comm_) throw std::invalid_argument("gradient exchange: the sparcl communicator is NULL");
  MPI_Comm_size(mpi_, &ranks_);
  for (size_t n : sizes_)
    if (n == 0 || n > size_t(INT32_MAX))
      throw std::invalid_argument("gradient exchange: tensor of " + std::to_string(n) +
                                  " entries (must be 1 .. 2^31-1)");
  if (config_.mode == CommMode::DenseMpi)
    for (size_t n : sizes_) mpi_sums_.emplace_back(n, 0.0f);
  if (!compressed_mode()) return;
  if (!(config_.density > 0.0 && config_.density <= 1.0))
    throw std::invalid_argument("--density must lie in (0, 1], got " + std::to_string(config_.density));
  if (config_.mode == CommMode::TopKQ && config_.bits != 4 && config_.bits != 8)
    throw std::invalid_argument("--bits must be 4 or 8, got " + std::to_string(config_.bits));
  if (!config_.record_trace.empty()) {
    int rank = 0;
    MPI_Comm_rank(mpi_, &rank);
    std::vector<uint64_t> dims(sizes_.begin(), sizes_.end());
    trace_ = std::make_unique<TraceWriter>(trace_path_of_rank(config_.record_trace, rank), uint32_t(rank),
                                           uint32_t(ranks_), dims);
  }
  sparcl_compressor_config_t cc = SPARCL_COMPRESSOR_CONFIG_INIT;
  cc.method = SPARCL_COMPRESS_TOPK;
  cc.density = config_.density;
  cc.error_feedback = 1;
  cc.selection = config_.global_selection ? SPARCL_SELECTION_GLOBAL : SPARCL_SELECTION_LOCAL;
  if (config_.mode == CommMode::TopKQ) cc.values = config_.bits == 4 ? SPARCL_VALUES_QSGD4 : SPARCL_VALUES_QSGD8;
  for (size_t t = 0; t < sizes_.size(); ++t) {
    if (sizes_[t] < config_.dense_below) continue;
    cc.seed = t + 1;
    const sparcl_status_t st = sparcl_compressor_create(&cc, sizes_[t], &compressors_[t]);
    if (st != SPARCL_SUCCESS) {
      const std::string msg = sparcl_comm_last_error(nullptr);
      for (sparcl_compressor_t c : compressors_) sparcl_compressor_free(c);
      throw std::runtime_error(std::string("sparcl_compressor_create: ") + sparcl_strerror(st) + ": " + msg);
    }
  }
}

GradientExchange::~GradientExchange() {
  if (!mpi_requests_.empty() || !requests_.empty()) {
    // Unwinding after an error with collectives in flight: waiting for them
    // could hang (the peers may never complete them), and freeing what they
    // write into or read from could crash the process before it reports the
    // error. The caller aborts right after; leave both to the exit.
    mpi_sums_leaked_on_error_ = new std::vector<std::vector<float>>(std::move(mpi_sums_));
    return;
  }
  for (Plan& p : plans_) sparcl_request_free(&p.request);  // each before its compressor
  for (sparcl_compressor_t c : compressors_) sparcl_compressor_free(c);
}

void GradientExchange::check(sparcl_status_t st, const char* what) const {
  if (st != SPARCL_SUCCESS)
    throw std::runtime_error(std::string(what) + ": " + sparcl_strerror(st) + ": " + sparcl_comm_last_error(comm_));
}

void GradientExchange::start(size_t t, float* grad) {
  Stopwatch watch(seconds_);
  if (t >= sizes_.size()) throw std::invalid_argument("gradient exchange: no tensor " + std::to_string(t));
  const size_t n = sizes_[t];
  started_[t] = grad;
  if (config_.mode == CommMode::DenseMpi) {
    MPI_Request r;
    MPI_Iallreduce(grad, mpi_sums_[t].data(), int(n), MPI_FLOAT, MPI_SUM, mpi_, &r);
    mpi_requests_.push_back(r);
    mpi_bytes_ += uint64_t(2.0 * double(ranks_ - 1) / double(ranks_) * 4.0 * double(n));
    return;
  }
  sparcl_request_t r = nullptr;
  if (compressing() && compressors_[t]) {
    // A persistent plan per tensor, made at its first step (again if its
    // gradient moved): the algorithm is chosen once, not at every step.
    Plan& plan = plans_[t];
    if (plan.request && plan.grad != grad) check(sparcl_request_free(&plan.request), "sparcl_request_free");
    if (!plan.request) {
      check(sparcl_allreduce_compressed_init(comm_, compressors_[t], grad, grad, &plan.request),
            "sparcl_allreduce_compressed_init");
      plan.grad = grad;
    }
    check(sparcl_start(&plan.request), "sparcl_start");
    r = plan.request;
    if (trace_) {
      sparcl_sparse_t sel{};
      check(sparcl_compressor_selection(compressors_[t], &sel), "sparcl_compressor_selection");
      trace_->add(step_, uint32_t(t), static_cast<const uint32_t*>(sel.indices), sel.nnz);
    }
  } else {
    check(sparcl_iallreduce(SPARCL_IN_PLACE, grad, n, SPARCL_FLOAT32, SPARCL_SUM, comm_, &r), "sparcl_iallreduce");
  }
  requests_.push_back(r);
}

const float* GradientExchange::sum(size_t t) const {
  if (t >= sizes_.size() || !started_[t])
    throw std::invalid_argument("gradient exchange: tensor " + std::to_string(t) + " was not started");
  return config_.mode == CommMode::DenseMpi ? mpi_sums_[t].data() : started_[t];
}

void GradientExchange::progress() {
  Stopwatch watch(seconds_);
  if (!mpi_requests_.empty()) {
    int done = 0;
    MPI_Testall(int(mpi_requests_.size()), mpi_requests_.data(), &done, MPI_STATUSES_IGNORE);
  }
  for (sparcl_request_t& r : requests_) {
    if (!r) continue;
    int done = 0;
    check(sparcl_test(&r, &done), "sparcl_test");
    if (done) r = nullptr;  // a plan's request stays (inactive) in plans_
  }
}

void GradientExchange::wait_all() {
  Stopwatch watch(seconds_);
  if (!mpi_requests_.empty()) {
    MPI_Waitall(int(mpi_requests_.size()), mpi_requests_.data(), MPI_STATUSES_IGNORE);
    mpi_requests_.clear();
  }
  if (!requests_.empty()) {
    const sparcl_status_t st = sparcl_waitall(requests_.size(), requests_.data(), nullptr);
    requests_.clear();
    check(st, "sparcl_waitall");
  }
  ++step_;
}

uint64_t GradientExchange::bytes_sent() const {
  if (config_.mode == CommMode::DenseMpi) return mpi_bytes_;
  sparcl_stats_t s{};
  check(sparcl_comm_stats(comm_, &s), "sparcl_comm_stats");
  return s.bytes_sent;
}

}  // namespace train
}  // namespace sparcl
