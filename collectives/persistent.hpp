// SPDX-License-Identifier: BSD-3-Clause
// Persistent allreduces (sparcl_allreduce_sparse_init,
// sparcl_allreduce_compressed_init): a request planned once and started
// many times (sparcl_start). Each start is an ordinary collective for the
// other ranks: it takes its sequence number and identity through CallStart
// and fails on every rank like any other call. What the plan keeps is the
// algorithm: the configured one, or, on an auto communicator, the one auto
// settled on for the plan's calls (measured, read from SPARCL_TUNE_FILE, or
// the model's where auto does not measure); until then each start runs auto. Every rank starts its plan
// in the same order and learns the same choice from the same call, so the
// plans stay in step; a start that fails anywhere makes the plan return to
// auto, so ranks that disagreed after a partial failure agree again.
#pragma once

#include <functional>
#include <memory>

#include "start.hpp"

namespace sparcl {

class AllreducePlan {
 public:
  explicit AllreducePlan(sparcl_comm* comm) : comm_(comm), algorithm_(comm->config().algorithm) {}

  // The CallStart of the next run of an allreduce of `dim` values of
  // `value_type`.
  CallStart next_call(uint64_t dim, uint8_t value_type, const CompressedCall* compressed) const {
    return CallStart::allreduce_with(comm_, algorithm_, dim, value_type, compressed);
  }
  // Follows `run` (started from next_call()): keeps auto's choice when it is
  // final, returns to auto when the run fails. Call it after the run's own
  // deliver and on_failure are set.
  void follow(sparcl_request* run, const std::shared_ptr<AllreducePlan>& self);
  // A start failed on this rank after next_call() (the run failed on every
  // rank): back to auto, as the other ranks' plans go.
  void start_failed() {
    if (comm_->config().algorithm == SPARCL_ALGO_AUTO) algorithm_ = SPARCL_ALGO_AUTO;
  }

  sparcl_algorithm_t algorithm() const { return algorithm_; }

 private:
  sparcl_comm* comm_;
  sparcl_algorithm_t algorithm_;  // what each start runs; SPARCL_ALGO_AUTO while auto chooses
  sparcl_choice_t choice_ = SPARCL_CHOSEN_BY_CONFIG;  // how auto chose algorithm_
};

// A new persistent request on `comm`, inactive; each sparcl_start calls
// `start_run` under the communicator's lock for the run it begins.
sparcl_request* new_persistent_request(sparcl_comm* comm, std::function<sparcl_request*()> start_run);

}  // namespace sparcl
