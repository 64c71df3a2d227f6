// SPDX-License-Identifier: BSD-3-Clause
// What the host collectives (src/api.cpp) ask ml/cuda/ about GPU buffers.
// Free of CUDA headers: the same declarations serve builds with and without
// CUDA (ml/cuda/api.cpp defines them for both).
//
// A pointer is GPU memory when the CUDA driver says so; the driver is asked
// only if the process has already loaded it (an application that holds GPU
// memory has), so a process that never uses CUDA never loads or initialises
// it, and its host buffers cost one check of a cached flag.
#pragma once

#include "sparcl/sparcl.h"

struct sparcl_comm;
struct sparcl_request;

namespace sparcl {

struct StreamArg;
struct CompressedCall;

namespace cuda {

// Whether the arrays of `send` or `dense_recv` are GPU (device) memory.
bool any_device_buffer(const sparcl_sparse_t* send, const void* dense_recv);

// sparcl_allreduce_sparse() with GPU buffers: the input arrays are copied to
// the host, the host collective runs, and dense_recv (if it is device
// memory) is written on the GPU from the sparse or dense sum. Ordered on
// `stream` when one is given; otherwise on the legacy default stream, and
// the request completes only once dense_recv is written. A `result` is a
// host result, as always. `compressed` is passed on to the host collective
// (src/start.hpp).
sparcl_request* start_allreduce_sparse(sparcl_comm* comm, const sparcl_sparse_t* send, void* dense_recv,
                                       sparcl_result_t* result, const void* request_slot, const StreamArg* stream,
                                       const CompressedCall* compressed = nullptr);

// Throws SPARCL_ERR_UNSUPPORTED naming `call` if a or b (either may be NULL)
// is GPU memory: for the collectives that take host buffers only.
void require_host_buffers(const void* a, const void* b, const char* call);

}  // namespace cuda
}  // namespace sparcl
