// SPDX-License-Identifier: BSD-3-Clause
// Starting collectives as requests: what the C API's blocking and
// non-blocking calls share, and what other parts of the library (the
// compressed allreduce) build on. Callers hold the communicator's lock.
#pragma once

#include <mutex>

#include "../collectives/collective.hpp"
#include "comm.hpp"

namespace sparcl {

// Ends a completed request: frees it, sets *request to NULL and returns its
// status, recording its error on the communicator.
sparcl_status_t release(sparcl_request_t* request);

// Waits for a request that a blocking call started, frees it, and throws its error.
void run_to_end(sparcl_request* r, std::unique_lock<std::mutex>& lock);

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

// Starts sparcl_allreduce_sparse(). `request_slot` is where the caller wants
// the request; it is checked for NULL so that a missing pointer fails on every
// rank like any other bad argument. Throws on failure (after telling peers).
sparcl_request* start_allreduce_sparse(sparcl_comm* comm, const sparcl_sparse_t* send, void* dense_recv,
                                       sparcl_result_t* result, const void* request_slot,
                                       const CompressedCall* compressed = nullptr);

}  // namespace sparcl
