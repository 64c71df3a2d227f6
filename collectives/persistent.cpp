// SPDX-License-Identifier: BSD-3-Clause
// Persistent sparse allreduces (persistent.hpp) and their C entry point;
// the compressed one is ml/compress/api.cpp's.
#include "persistent.hpp"

#include <string>

#include "src/guard.hpp"
#include "src/input.hpp"

namespace sparcl {

void AllreducePlan::follow(sparcl_request* run, const std::shared_ptr<AllreducePlan>& self) {
  if (comm_->config().algorithm != SPARCL_ALGO_AUTO) return;
  if (algorithm_ != SPARCL_ALGO_AUTO) {
    // Auto's kept choice: reported as auto chose it; a failure returns the plan to auto.
    run->deliver = [then = std::move(run->deliver), self] {
      if (then) then();
      collectives_of(self->comm_).last_choice = self->choice_;
    };
    run->on_failure = [then = std::move(run->on_failure), self] {
      self->algorithm_ = SPARCL_ALGO_AUTO;
      if (then) then();
    };
    return;
  }
  // Auto chooses this run's algorithm; its deliver records the choice on the
  // communicator (the same on every rank), read here right after.
  run->deliver = [then = std::move(run->deliver), self] {
    if (then) then();
    const CommCollectives& c = collectives_of(self->comm_);
    const bool final_choice = c.last_choice == SPARCL_CHOSEN_BY_MEASUREMENT ||
                              c.last_choice == SPARCL_CHOSEN_FROM_TUNE_FILE ||
                              (c.last_choice == SPARCL_CHOSEN_BY_MODEL && !auto_state_of(self->comm_)->tuning());
    if (final_choice) {
      self->algorithm_ = c.last_algorithm;
      self->choice_ = c.last_choice;
    }
  };
}

sparcl_request* new_persistent_request(sparcl_comm* comm, std::function<sparcl_request*()> start_run) {
  auto r = std::make_unique<sparcl_request>();
  r->start_run = std::move(start_run);
  r->done = true;  // never in flight itself: submit() only registers it
  return comm->submit(std::move(r));
}

}  // namespace sparcl

using namespace sparcl;

extern "C" {

sparcl_status_t sparcl_allreduce_sparse_init(const sparcl_sparse_t* send, void* dense_recv, sparcl_result_t* result,
                                             sparcl_comm_t comm, sparcl_request_t* request) {
  if (!comm) return null_comm();
  auto lock = comm->lock();
  return guarded(comm, [&] {
    require(request != nullptr, SPARCL_ERR_INVALID_ARG, "request is NULL");
    *request = nullptr;
    check_sparse_header(send);
    require((dense_recv != nullptr) != (result != nullptr), SPARCL_ERR_INVALID_ARG,
            "pass exactly one of dense_recv and result");
    // What the plan is for; the bound vector must keep them at every start.
    const uint64_t dim = send->dim;
    const sparcl_datatype_t value_type = send->value_type;
    const sparcl_index_type_t index_type = send->index_type;
    auto plan = std::make_shared<AllreducePlan>(comm);
    *request = new_persistent_request(comm, [=] {
      // Checked before the call takes its place: a start with another shape
      // is refused here alone and leaves the plan and the ranks' sequence as
      // they were.
      if (send->dim != dim || send->value_type != value_type || send->index_type != index_type)
        fail(SPARCL_ERR_INVALID_ARG,
             "the persistent request was planned for dim " + std::to_string(dim) +
                 " and the value and index types it had at sparcl_allreduce_sparse_init; its vector now has dim " +
                 std::to_string(send->dim) + (send->value_type != value_type ? " and another value type" : "") +
                 (send->index_type != index_type ? " and another index type" : ""));
      try {
        sparcl_request* run = start_allreduce_sparse(plan->next_call(dim, uint8_t(raw(value_type)), nullptr), send,
                                                     dense_recv, result, plan.get(), nullptr);
        plan->follow(run, plan);
        return run;
      } catch (...) {
        plan->start_failed();
        throw;
      }
    });
  });
}

}  // extern "C"
