/*
 * sparcl: sparse collective communication for distributed deep learning.
 * SPDX-License-Identifier: BSD-3-Clause
 */
/**
 * @file sparcl_cuda.h
 * @brief Gradients in GPU memory: compressors whose residual lives on a CUDA
 *        device and whose selection and encoding run there, and
 *        stream-ordered variants of the compressed and sparse allreduce.
 *
 * Only the sparse payload crosses to the host: a device compressor selects
 * (top-k, approximate top-k, threshold, random-k or all entries) on the GPU
 * and copies the indices and values to pinned host memory. In the
 * compressed allreduce the host collective encodes the values on the wire
 * (float32 values cross PCIe), and the residual, on the GPU, keeps what it
 * reports the wire lost; sparcl_compress_stream() encodes them on the GPU
 * (fp16, bf16, QSGD) and only the encoded bytes cross. The sum is written
 * back to device memory from its sparse form (zeros and a scatter) or, when
 * the sum is dense, as one copy. Every step gives the same bits as the host
 * compressor of compress.h on the same data (same selections, ties, NaN
 * ranking, QSGD codes and rounding streams, same residual); see
 * docs/cuda.md.
 *
 * Streams: a `_stream` call is ordered on `stream` like a kernel launched on
 * it: it reads its inputs after the work queued on the stream before the
 * call (it waits for that work, since the network is driven from the host),
 * and the writes to device outputs (the sum, the residual) are queued on the
 * stream, so work queued after the call sees them; the call may return
 * before they have run. A compressor's next step, on any stream, runs after
 * the writes of its last one to the residual. The calls of compress.h and
 * sparcl.h without a stream use the legacy default stream and return (or
 * complete) only once their device outputs are written. The stream must
 * belong to the device of the compressor (or of the buffers).
 *
 * Where sparcl was built without CUDA, or no CUDA driver or device is
 * present, every function here returns SPARCL_ERR_UNSUPPORTED (and
 * sparcl_cuda_device_count() returns 0); the rest of sparcl works as usual.
 *
 * sparcl_allreduce_sparse() and sparcl_iallreduce_sparse() also accept
 * device arrays without a stream (detected with the CUDA driver);
 * sparcl_allgather_sparse() and sparcl_allreduce() take host buffers only
 * and return SPARCL_ERR_UNSUPPORTED for device buffers.
 */
#ifndef SPARCL_SPARCL_CUDA_H
#define SPARCL_SPARCL_CUDA_H

#if defined(SPARCL_CUDA_STREAM_TYPE_ONLY)
/* sparcl's own build without CUDA: only the stream's type is needed. */
typedef struct CUstream_st *cudaStream_t;
#else
#include <cuda_runtime_api.h>
#endif

#include "sparcl/compress.h"
#include "sparcl/sparcl.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/** Number of CUDA devices sparcl can use: 0 if it was built without CUDA or
 *  no driver or device is present. The first call probes (without creating a
 *  CUDA context); later calls return the cached answer. */
int sparcl_cuda_device_count(void);

/**
 * Creates a compressor (see sparcl_compressor_create()) whose residual and
 * momentum live in the memory of CUDA device `device`, and whose steps run
 * on that device. Its `grad` arguments must be memory that device can read
 * (its device memory, managed memory, or pinned host memory); the `out` of
 * its compressed allreduce device memory of that device or managed memory.
 * sparcl_compressor_residual() returns a device pointer for it.
 *
 * Methods: SPARCL_COMPRESS_TOPK_BUCKET is not available on the device
 * (SPARCL_ERR_UNSUPPORTED); every other method and value encoding is.
 *
 * @param config      configuration, or NULL for the defaults
 * @param dim         number of entries of the tensor (1 <= dim < 2^32)
 * @param device      CUDA device ordinal, or -1 for the calling thread's current device
 * @param compressor  receives the new compressor
 * @return SPARCL_ERR_UNSUPPORTED without CUDA or for an unsupported method,
 *         SPARCL_ERR_INVALID_ARG for a bad field or device number,
 *         SPARCL_ERR_NO_MEMORY if the device memory cannot be allocated
 */
sparcl_status_t sparcl_compressor_create_cuda(const sparcl_compressor_config_t *config, uint64_t dim, int device,
                                              sparcl_compressor_t *compressor);

/**
 * sparcl_compress() of a device compressor, ordered on `stream`: selects and
 * encodes on the GPU, updates the device residual, and returns the sent
 * vector in host memory owned by the compressor (valid until its next step).
 * Returns once the vector is on the host.
 */
sparcl_status_t sparcl_compress_stream(sparcl_compressor_t compressor, const float *grad, sparcl_sparse_t *out,
                                       cudaStream_t stream);

/**
 * sparcl_allreduce_compressed() of a device compressor, ordered on `stream`:
 * `grad` and `out` are device memory (dim float32 values each; out may be
 * grad). Returns when the host collective has ended; the writes of `out` and
 * of the residual are then queued on `stream`.
 */
sparcl_status_t sparcl_allreduce_compressed_stream(sparcl_comm_t comm, sparcl_compressor_t compressor,
                                                   const float *grad, float *out, cudaStream_t stream);

/**
 * Starts sparcl_allreduce_compressed_stream(): the compression runs in this
 * call (which waits for it); the collective goes on as a request, and when a
 * completion call (sparcl_test(), sparcl_wait(), ...) completes it, the writes
 * of `out` and of the residual are queued on `stream`. The rules of
 * sparcl_iallreduce_compressed() apply.
 */
sparcl_status_t sparcl_iallreduce_compressed_stream(sparcl_comm_t comm, sparcl_compressor_t compressor,
                                                    const float *grad, float *out, cudaStream_t stream,
                                                    sparcl_request_t *request);

/**
 * sparcl_allreduce_sparse() ordered on `stream`: the index and value arrays
 * of `send` and `dense_recv` may each be device or host memory. Device input
 * arrays are copied to the host after the work queued on `stream`; a device
 * `dense_recv` is written on `stream` (zeros and a scatter of the sum, or
 * one copy when the sum is dense). A `result` is a host result.
 */
sparcl_status_t sparcl_allreduce_sparse_stream(const sparcl_sparse_t *send, void *dense_recv,
                                               sparcl_result_t *result, sparcl_comm_t comm, cudaStream_t stream);

/** Starts sparcl_allreduce_sparse_stream(); a device `dense_recv` is written
 *  on `stream` when a completion call completes the request. */
sparcl_status_t sparcl_iallreduce_sparse_stream(const sparcl_sparse_t *send, void *dense_recv,
                                                sparcl_result_t *result, sparcl_comm_t comm, cudaStream_t stream,
                                                sparcl_request_t *request);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* SPARCL_SPARCL_CUDA_H */
