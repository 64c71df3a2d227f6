// SPDX-License-Identifier: BSD-3-Clause
// Gradient exchange of the data-parallel trainer: sums each layer's
// gradient tensor over the ranks, in place, with one of four methods:
//
//   dense-mpi  MPI_Iallreduce (the baseline)
//   dense      sparcl_iallreduce (sparcl's drop-in allreduce)
//   topk       exact top-k at `density` with error feedback, one compressor
//              and one persistent allreduce (sparcl_allreduce_compressed_init)
//              per tensor
//   topk-q     the same with QSGD values of `bits` bits (4 or 8)
//
// Every method is non-blocking: start() is called for a tensor as soon as
// its backward pass has produced it, progress() between layers, wait_all()
// before the optimizer step. Tensors smaller than `dense_below` entries go
// through the dense sparcl allreduce in the compressed modes (as DGC leaves
// small layers uncompressed: 1 MiB costs ~12 ms at 1 Gbit/s, and top-k of a
// small layer such as the autoencoder's bottleneck slows convergence most),
// and set_compression(false) sends everything dense (warm-up epochs).
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sparcl/compress.h"
#include "sparcl/sparcl.h"

namespace sparcl {
namespace train {

enum class CommMode { DenseMpi, Dense, TopK, TopKQ };

/// "dense-mpi", "dense", "topk", "topk-q"; throws std::invalid_argument otherwise.
CommMode comm_mode(const std::string& name);
const char* comm_mode_name(CommMode mode);

struct ExchangeConfig {
  CommMode mode = CommMode::DenseMpi;
  double density = 0.01;     ///< topk, topk-q
  int bits = 8;              ///< topk-q: 4 or 8
  size_t dense_below = 262144;  ///< compressed modes: smaller tensors go dense (1 MiB of floats)
  bool global_selection = false;  ///< compressed modes: keep about k entries of the sum (Ok-Topk)
  /// compressed modes: each rank writes the indices its compressors select,
  /// per step and tensor, to record_trace.<rank> (ml/train/trace.hpp); "" for none
  std::string record_trace;
};

/// The CSV's and the summary's name of the exchange: the mode, and
/// "+global" for global selection.
std::string exchange_name(const ExchangeConfig& config);

class GradientExchange {
 public:
  /// `tensor_sizes`: entries of each tensor, indexed as start() is called.
  /// Throws std::invalid_argument (bad config) or std::runtime_error (sparcl).
  GradientExchange(const ExchangeConfig& config, MPI_Comm mpi, sparcl_comm_t comm,
                   const std::vector<size_t>& tensor_sizes);
  /// Frees the compressors. After an error with operations still in flight
  /// it leaves them and their buffers alone (the program is expected to abort).
  ~GradientExchange();
  GradientExchange(const GradientExchange&) = delete;
  GradientExchange& operator=(const GradientExchange&) = delete;

  /// Starts summing tensor t (`grad`, tensor_sizes[t] floats) over the ranks.
  /// Every rank starts the same tensors in the same order; `grad` stays
  /// untouched by the caller until wait_all().
  void start(size_t t, float* grad);
  /// Where the sum of tensor t is after wait_all(): `grad` itself (sparcl
  /// sums in place), or for dense-mpi a buffer of the exchange's own
  /// (MPI_Iallreduce out of place: Open MPI's libnbc runs its ring algorithm
  /// only then; in place it falls back to a binomial tree, 2x slower at 1 Gbit/s).
  const float* sum(size_t t) const;
  /// Lets the operations in flight advance (tests them once).
  void progress();
  /// Waits for every operation started since the last wait_all().
  void wait_all();
  /// Compressed modes: false sends every tensor dense (warm-up), true compresses.
  void set_compression(bool on) { compress_ = on; }
  bool compressing() const { return compress_ && compressed_mode(); }
  bool compressed_mode() const { return config_.mode == CommMode::TopK || config_.mode == CommMode::TopKQ; }
  /// Seconds spent inside start/progress/wait_all (compression included).
  double seconds() const { return seconds_; }
  /// Bytes this rank sent: sparcl's counters, or for dense-mpi the
  /// bandwidth-optimal allreduce's 2 (P-1)/P * 4 n per tensor (MPI does not count).
  uint64_t bytes_sent() const;
  /// Whether tensor t is compressed in the compressed modes.
  bool compresses_tensor(size_t t) const { return compressors_[t] != nullptr; }

 private:
  void check(sparcl_status_t st, const char* what) const;
  ExchangeConfig config_;
  MPI_Comm mpi_;
  sparcl_comm_t comm_;
  int ranks_ = 1;
  std::vector<size_t> sizes_;
  std::vector<sparcl_compressor_t> compressors_;
  struct Plan {
    sparcl_request_t request = nullptr;  // persistent: started at each step of its tensor
    const float* grad = nullptr;         // the gradient buffer it is bound to
  };
  std::vector<Plan> plans_;
  std::vector<MPI_Request> mpi_requests_;
  std::vector<std::vector<float>> mpi_sums_;  // dense-mpi: receive buffers
  std::vector<float*> started_;               // grad of each tensor's last start()
  std::vector<std::vector<float>>* mpi_sums_leaked_on_error_ = nullptr;  // see the destructor
  std::vector<sparcl_request_t> requests_;
  bool compress_ = true;
  std::unique_ptr<class TraceWriter> trace_;  // --record-trace
  uint32_t step_ = 0;                         // wait_all() calls so far: the trace's step
  double seconds_ = 0.0;
  uint64_t mpi_bytes_ = 0;
};

}  // namespace train
}  // namespace sparcl
