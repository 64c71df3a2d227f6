// SPDX-License-Identifier: BSD-3-Clause
// The one way a collective starts, and fails, on a communicator.
//
// Every collective call, whatever path it takes (the plain C API, the
// compressed allreduce of ml/compress/, GPU buffers staged by ml/cuda/),
// begins by making a CallStart. It takes the call's identity (its sequence
// number) and, for an allreduce, its place in auto's records and in the
// order of native collectives, before anything can fail: all ranks count
// calls alike whatever happens on each. If the call then fails on this rank
// (a bad argument, out of memory, a compressor or a GPU copy that failed),
// CallStart::fail() marks those places failed and tells every other rank
// the cause (an abort notice), so that no rank waits for this one and the
// next call finds every rank in step. Once the operation exists, it owns the
// places (start()), and the engine reports its outcome.
//
// Callers hold the communicator's lock.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "auto.hpp"
#include "collective.hpp"
#include "partition.hpp"
#include "src/comm.hpp"
#include "src/guard.hpp"
#include "src/request.hpp"

namespace sparcl {

// What a compressed allreduce changes in a sparse allreduce of float32
// values: the compressor's value encoding instead of the communicator's, and
// a report of what each piece of the input became on the wire (see
// AllreduceOp::report_input_sent), so that error feedback keeps exactly what
// was not sent.
struct CompressedCall {
  Encoding encoding = Encoding::Raw;
  uint32_t bucket = 0;  // QSGD values per scale (0 for the other encodings)
  InputSentFn<float> input_sent;
};

class CallStart {
 public:
  // An allreduce of `dim` values of `value_type` (a compressed one if
  // `compressed` is set: its encoding is the call's).
  static CallStart allreduce(sparcl_comm* comm, uint64_t dim, uint8_t value_type,
                             const CompressedCall* compressed = nullptr);
  // The same running `algorithm` instead of the configured one (a persistent
  // allreduce that keeps auto's choice: collectives/persistent.hpp).
  static CallStart allreduce_with(sparcl_comm* comm, sparcl_algorithm_t algorithm, uint64_t dim,
                                  uint8_t value_type, const CompressedCall* compressed);
  static CallStart allgather(sparcl_comm* comm, uint64_t dim, uint8_t value_type);
  // A compressed allreduce with global selection (start_global_select): its
  // own algorithm code, so that ranks that select locally fail with
  // SPARCL_ERR_MISMATCH instead of pairing with it.
  static CallStart global_select(sparcl_comm* comm, uint64_t dim, const CompressedCall& compressed);
  // A reduce-scatter under the communicator's partition (the identity's
  // algorithm field holds it).
  static CallStart reduce_scatter(sparcl_comm* comm, uint64_t dim, uint8_t value_type);
  // sparcl_allreduce() of count 0, or of an op or type without a sparse path
  // (`sparse_op`: SUM of float32 or float64, for count 0).
  static CallStart pass_through(sparcl_comm* comm, uint64_t count, uint8_t value_type, int reduction, bool sparse_op);

  CallStart(CallStart&&) = default;
  CallStart& operator=(CallStart&&) = delete;
  CallStart(const CallStart&) = delete;
  // A call neither started nor failed by then failed (an exception that
  // bypassed the checks): its places are marked failed; peers time out.
  ~CallStart() = default;

  const Identity& identity() const { return id_; }
  sparcl_comm* comm() const { return comm_; }

  // Runs `body` (local checks, input conversion, compression); if it
  // throws, fails the call (see fail()) and rethrows.
  template <class F>
  void check(F&& body) {
    try {
      body();
    } catch (const Error& e) {
      fail(e.status(), e.what());
      throw;
    } catch (const std::bad_alloc&) {
      fail(SPARCL_ERR_NO_MEMORY, "out of memory");
      throw;
    } catch (const std::exception& e) {
      fail(SPARCL_ERR_INTERNAL, e.what());
      throw;
    }
  }

  // This rank cannot run the call: its places are marked failed and every
  // other rank is told `status` and `message`. Idempotent.
  void fail(sparcl_status_t status, const std::string& message);

  // The operation of the allreduce of `input`: auto's, or the configured
  // algorithm's; it takes the call's places.
  template <class V, class I>
  std::unique_ptr<AllreduceOp<V, I>> make_allreduce_op(const View<V, I>& input);
  // The operation of the reduce-scatter of `input`; it takes the call's
  // place among balanced calls.
  template <class V, class I>
  std::unique_ptr<ReduceScatterOp<V, I>> make_reduce_scatter_op(const View<V, I>& input);

  // The call's place among balanced calls, for an operation that cuts its
  // ranges itself (global selection).
  PartitionTicket take_partition() { return std::move(partition_); }

  // Puts the call's request in flight; out of memory there fails the call
  // on every rank too (the request is freed).
  sparcl_request* submit(std::unique_ptr<sparcl_request> request);

 private:
  CallStart(sparcl_comm* comm, const Identity& id) : comm_(comm), id_(id) {}
  sparcl_comm* comm_;
  Identity id_;
  sparcl_algorithm_t algorithm_ = SPARCL_ALGO_AUTO;  // allreduces only
  AutoTicket ticket_;  // allreduces only
  // Balanced partitions: the call's place among those of its collective and
  // dim, taken at the start like the sequence number.
  PartitionTicket partition_;
  bool failed_ = false;
};

// The collectives layer's state of a communicator (kept in the core's
// sparcl_comm as an opaque pointer).
struct CommCollectives {
  std::shared_ptr<AutoState> auto_state;  // made at the first auto or dense allreduce
  sparcl_algorithm_t last_algorithm = SPARCL_ALGO_AUTO;  // of the latest allreduce that succeeded
  sparcl_choice_t last_choice = SPARCL_CHOSEN_BY_CONFIG;  // and how it was chosen
  std::string auto_model_text;                           // sparcl_comm_auto_model()'s storage
  PartitionHistory partitions;                           // the latest balanced call of each dim
};
CommCollectives& collectives_of(sparcl_comm* comm);
// Auto's state of `comm`, made at first use.
std::shared_ptr<AutoState> auto_state_of(sparcl_comm* comm);

// sparcl_allreduce_sparse() on host or GPU buffers: `call` from
// CallStart::allreduce(comm, send->dim, ...). `request_slot` is where the
// caller wants the request (checked for NULL so that a missing pointer fails
// on every rank like any other bad argument). Throws on failure, after
// telling the peers.
sparcl_request* start_allreduce_sparse(CallStart call, const sparcl_sparse_t* send, void* dense_recv,
                                       sparcl_result_t* result, const void* request_slot,
                                       const CompressedCall* compressed = nullptr);
// The same on host buffers only.
sparcl_request* start_allreduce_sparse_on_host(CallStart call, const sparcl_sparse_t* send, void* dense_recv,
                                               sparcl_result_t* result, const void* request_slot,
                                               const CompressedCall* compressed);
sparcl_request* start_reduce_scatter_sparse(sparcl_comm* comm, const sparcl_sparse_t* send, void* dense_recv,
                                            sparcl_result_t* result, const void* request_slot);
sparcl_request* start_allgather_sparse(sparcl_comm* comm, const sparcl_sparse_t* send, sparcl_result_t* results,
                                       sparcl_result_t* merged, const void* request_slot);
sparcl_request* start_allreduce(sparcl_comm* comm, const void* sendbuf, void* recvbuf, size_t count,
                                sparcl_datatype_t datatype, sparcl_op_t op, const void* request_slot);

// Global selection (collectives/global_select.cpp) for the compressed
// allreduce: the sum of every rank's selection, cut to about k entries by a
// threshold that every rank agrees on.
struct GlobalSelectPolicy {
  bool exact = false;          // exact top-k of the sum (else a sampled threshold)
  uint64_t k = 0;              // entries to keep (>= 1)
  uint32_t reuse = 1;          // sampled: steps one estimate serves (only compared across ranks)
  bool refresh = true;         // sampled: this step estimates a new threshold
  uint32_t threshold_key = 0;  // sampled, !refresh: the magnitude key (codec::magnitude_key) in use
};
struct GlobalSelectOutcome {
  bool estimated = false;      // sampled: this step estimated a new threshold (on schedule or early)
  uint32_t threshold_key = 0;  // sampled: the magnitude key this step kept entries at or above
  std::vector<uint32_t> kept;  // the result's indices, sorted
};
// `call` from CallStart::global_select(). Writes the dim values of the result
// to dense_recv and calls on_success on completion; throws on failure, after
// telling the peers.
sparcl_request* start_global_select(CallStart call, const sparcl_sparse_t* send, float* dense_recv,
                                    const void* request_slot, const CompressedCall& compressed,
                                    const GlobalSelectPolicy& policy,
                                    std::function<void(const GlobalSelectOutcome&)> on_success);

// GPU buffers. ml/cuda/ registers how it stages them through host memory
// when the library loads (CUDA builds); without it every buffer is host
// memory.
struct DeviceStaging {
  // Whether the arrays of `send` or `dense_recv` are GPU memory.
  bool (*any_device_buffer)(const sparcl_sparse_t* send, const void* dense_recv);
  // Throws SPARCL_ERR_UNSUPPORTED naming `call` if a or b is GPU memory.
  void (*require_host_buffers)(const void* a, const void* b, const char* call);
  // sparcl_allreduce_sparse() with GPU buffers: stages them (under
  // call.check()) and runs start_allreduce_sparse_on_host() on host copies.
  sparcl_request* (*start_allreduce_sparse)(CallStart call, const sparcl_sparse_t* send, void* dense_recv,
                                            sparcl_result_t* result, const void* request_slot,
                                            const CompressedCall* compressed);
};
bool register_device_staging(const DeviceStaging* staging);
const DeviceStaging* device_staging();  // null if none is registered

// The frame of every C API call on a communicator: the NULL check, the lock
// and the exception boundary (src/guard.hpp).
template <class F>
sparcl_status_t on_comm(sparcl_comm_t comm, F&& body) {
  if (!comm) return null_comm();
  auto lock = comm->lock();
  return guarded(comm, [&] { body(lock); });
}

}  // namespace sparcl
