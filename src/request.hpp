// SPDX-License-Identifier: BSD-3-Clause
// Ending requests: what the C API's completion calls and the blocking
// collectives share. Callers hold the communicator's lock where there is one.
#pragma once

#include <mutex>

#include "comm.hpp"

namespace sparcl {

// Ends a completed request: frees it, sets *request to NULL and returns its
// status, recording its error on the communicator.
sparcl_status_t release(sparcl_request_t* request);

// Waits for a request that a blocking call started, frees it, and throws its error.
void run_to_end(sparcl_request* r, std::unique_lock<std::mutex>& lock);

}  // namespace sparcl
