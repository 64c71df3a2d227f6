/*
 * sparcl: sparse collective communication for distributed deep learning.
 * SPDX-License-Identifier: BSD-3-Clause
 */
/**
 * @file compress.h
 * @brief Gradient compression: sparsifiers (top-k, approximate top-k,
 *        threshold, random-k), error feedback with optional momentum
 *        correction, low-precision values, and a compressed allreduce.
 *
 * A compressor belongs to one gradient tensor of a fixed dimension (it keeps
 * that tensor's residual): create one per tensor, or per flattened group of
 * tensors that is always compressed together. Each step,
 *
 *     acc  = residual + grad            (error feedback on; else acc = grad)
 *     S    = the entries the method selects from acc
 *     sent = acc on S, rounded through the value encoding
 *     residual = acc - sent on S, acc elsewhere
 *
 * so that sent + residual == acc (bit for bit with SPARCL_VALUES_RAW). In
 * sparcl_allreduce_compressed() the values are rounded where they go on the
 * wire instead, and `sent` is what the receivers decode (see there).
 *
 * Ranking and ties: entries are ranked by magnitude; -0.0 equals +0.0, +-Inf
 * rank above every finite value and NaN above +-Inf (a NaN is always sent,
 * never hidden in the residual); among equal magnitudes the lower index wins.
 *
 * Vectors must have fewer than 2^32 entries (SPARCL_ERR_UNSUPPORTED
 * otherwise). Gradients are float32. docs/compression.md has the algorithms,
 * bounds and measurements.
 *
 * Threading: a compressor is used by one thread at a time. Functions that
 * take no communicator record their error message for
 * sparcl_comm_last_error(NULL) (per thread).
 */
#ifndef SPARCL_COMPRESS_H
#define SPARCL_COMPRESS_H

#include "sparcl/sparcl.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/** Which entries a compressor sends. */
typedef enum sparcl_compress_method {
  /** Every entry (only the value encoding and its error feedback apply). */
  SPARCL_COMPRESS_NONE = 0,
  /** Exactly the k entries of largest magnitude. */
  SPARCL_COMPRESS_TOPK = 1,
  /** Exactly ceil(k * len / dim) entries of largest magnitude in each bucket
   *  of `bucket_size` consecutive entries (the last may be shorter): about k
   *  in all, at most k + number of buckets. */
  SPARCL_COMPRESS_TOPK_BUCKET = 2,
  /** Between k and k + floor(k / 10) entries, every one with a magnitude
   *  >= every entry left out (DGC-style sampled threshold, refined). */
  SPARCL_COMPRESS_APPROX_TOPK = 3,
  /** Every entry with |acc| >= threshold. */
  SPARCL_COMPRESS_THRESHOLD = 4,
  /** k distinct indices drawn uniformly from (seed, step): every rank with
   *  the same seed picks the same indices at the same step. */
  SPARCL_COMPRESS_RANDOMK = 5
} sparcl_compress_method_t;

/* sparcl_value_encoding_t, the value encodings, is declared in sparcl.h. */

/** What sparcl_allreduce_compressed() returns: the sum of what every rank
 *  selected (local selection), or about k entries of that sum (global). */
typedef enum sparcl_selection {
  /** From the environment variable SPARCL_SELECTION (`local` or `global`),
   *  read when the compressor is created; local if it is unset. */
  SPARCL_SELECTION_DEFAULT = 0,
  /** The exact sum of every rank's selection (its support is the union of
   *  the ranks' selections, up to P * k entries). */
  SPARCL_SELECTION_LOCAL = 1,
  /** Global top-k (Ok-Topk): each rank selects k entries as with local
   *  selection; owners of index ranges (cut by the communicator's
   *  config.partition: equal, balanced or hashed) sum what they receive and keep
   *  only the entries of the sum whose magnitude reaches a threshold that all
   *  ranks agree on, so that about k entries survive; the kept entries are
   *  gathered by every rank. What a rank selected but was not kept goes back
   *  into its residual. Needs a method that keeps k entries (top-k,
   *  bucketed or approximate top-k, random-k) and a compressor in host memory. */
  SPARCL_SELECTION_GLOBAL = 2
} sparcl_selection_t;

/** How global selection finds its threshold. */
typedef enum sparcl_global_threshold {
  /** Estimated from a sample of the sum's magnitudes (about k/P per range
   *  owner, 64 to 1024) every `threshold_reuse` steps and reused in between: about k
   *  entries are kept, more or fewer as magnitudes drift between estimates. */
  SPARCL_THRESHOLD_SAMPLED = 0,
  /** Exactly the k entries of largest |sum| every step (ties: lower index);
   *  moves up to k (magnitude, index) pairs per rank more. For testing. */
  SPARCL_THRESHOLD_EXACT = 1
} sparcl_global_threshold_t;

/**
 * Compressor configuration. Initialise with ::SPARCL_COMPRESSOR_CONFIG_INIT
 * (or sparcl_compressor_config_init()), then set fields. Every rank that
 * compresses the same tensor should use the same configuration.
 */
typedef struct sparcl_compressor_config {
  size_t struct_size;              /**< sizeof(sparcl_compressor_config_t), for ABI growth */
  sparcl_compress_method_t method; /**< default SPARCL_COMPRESS_TOPK */
  double density;   /**< fraction of entries to keep when k == 0: k = max(1, round(density * dim)),
                         density in (0, 1]; default 0.01 */
  uint64_t k;       /**< entries to keep (TOPK, TOPK_BUCKET, APPROX_TOPK, RANDOMK); 0: use density;
                         more than dim means dim; default 0 */
  float threshold;  /**< THRESHOLD: keep |acc| >= threshold (>= 0); default 0 */
  size_t bucket_size; /**< TOPK_BUCKET: entries per selection bucket (>= 1); default 512 */
  sparcl_value_encoding_t values; /**< value encoding; default SPARCL_VALUES_RAW */
  size_t quantization_bucket; /**< QSGD: values per scale (>= 1); default 512 */
  int error_feedback;         /**< 1: keep the residual and add it to the next gradient (default); 0: drop it */
  float momentum;   /**< DGC momentum correction factor in [0, 1) (needs error feedback); 0: off (default).
                         With it, use plain SGD without momentum in the optimizer. */
  uint64_t seed;    /**< random-k indices, and sparcl_compress()'s stochastic rounding; the same on
                         every rank; default 0 */
  uint32_t rounding_stream; /**< sparcl_compress(): stream of the stochastic rounding (QSGD), mixed
                                 with seed and step; give each rank its own (e.g. its rank) so that
                                 rounding noise is independent across ranks. Random-k ignores it;
                                 sparcl_allreduce_compressed() rounds on the wire instead, with draws
                                 from (communicator, sequence number, rank, step). */
  /* Added later: configs with a smaller struct_size get these defaults. */
  sparcl_selection_t selection; /**< sparcl_allreduce_compressed(): local or global selection;
                                     default SPARCL_SELECTION_DEFAULT (environment, else local) */
  sparcl_global_threshold_t global_threshold; /**< global selection: sampled (default) or exact */
  uint32_t threshold_reuse; /**< global selection, sampled threshold: steps one estimate serves (>= 1);
                                 default 32 */
} sparcl_compressor_config_t;

/** Default compressor configuration: exact top-1%, raw values, error feedback, no momentum. */
#define SPARCL_COMPRESSOR_CONFIG_INIT \
  { sizeof(sparcl_compressor_config_t), SPARCL_COMPRESS_TOPK, 0.01, 0, 0.0f, 512, SPARCL_VALUES_RAW, 512, 1, 0.0f, 0, 0, \
    SPARCL_SELECTION_DEFAULT, SPARCL_THRESHOLD_SAMPLED, 32 }

/** Opaque compressor. */
typedef struct sparcl_compressor *sparcl_compressor_t;

/** Fills `config` with the defaults (same as ::SPARCL_COMPRESSOR_CONFIG_INIT). */
sparcl_status_t sparcl_compressor_config_init(sparcl_compressor_config_t *config);

/**
 * Creates a compressor for tensors of `dim` entries (1 <= dim < 2^32).
 *
 * @param config      configuration, or NULL for the defaults
 * @param dim         number of entries of the tensor
 * @param compressor  receives the new compressor
 * @return SPARCL_ERR_INVALID_ARG for a bad field (the message names it),
 *         SPARCL_ERR_UNSUPPORTED for dim >= 2^32
 */
sparcl_status_t sparcl_compressor_create(const sparcl_compressor_config_t *config, uint64_t dim,
                                         sparcl_compressor_t *compressor);

/** Frees a compressor (NULL is allowed). */
sparcl_status_t sparcl_compressor_free(sparcl_compressor_t compressor);

/**
 * One compression step: selects from residual + grad (or grad), rounds the
 * selected values through the value encoding, updates the residual.
 *
 * @param compressor  the tensor's compressor
 * @param grad        dim float32 values
 * @param out         receives the sent vector: dim, nnz, SPARCL_INDEX_U32
 *                    sorted unique indices, SPARCL_FLOAT32 values (already
 *                    rounded through the value encoding), flags 0. The arrays
 *                    belong to the compressor and stay valid until its next
 *                    compress call or its free. `out` can be passed as is to
 *                    sparcl_allreduce_sparse() or sparcl_allgather_sparse().
 * @return SPARCL_ERR_INVALID_ARG also when a QSGD encoding meets NaN or Inf.
 *         After a failure nothing was sent and the gradient stays in the
 *         residual (after a NaN, clear it with sparcl_compressor_reset()).
 */
sparcl_status_t sparcl_compress(sparcl_compressor_t compressor, const float *grad, sparcl_sparse_t *out);

/**
 * Writes a sparse float32 vector as `sparse->dim` dense values: zeros, and
 * the values at their indices (summed where SPARCL_SPARSE_UNSORTED allows
 * repeats). The input is validated like a collective's input.
 */
sparcl_status_t sparcl_decompress(const sparcl_sparse_t *sparse, float *dense);

/**
 * Compressed allreduce: sparcl_compress() of `grad`, then
 * sparcl_allreduce_sparse() of the result into `out`, which receives dim
 * values: the sum over the ranks of what each rank sent (divide by the
 * number of ranks for the mean). Collective over `comm`; every rank passes a
 * compressor of the same dim and configuration.
 *
 * The values travel encoded on the wire in the compressor's value encoding
 * and bucket (4-bit QSGD: half a byte per value plus a float32 scale per
 * bucket), whatever the communicator's own encoding; they are decoded and
 * summed in float32, and partial sums are re-encoded at each hop (QSGD
 * stochastically, unbiased, with draws from the communicator, the sequence
 * number, the rank and the step, so runs are reproducible). The compressor
 * does not round first: for every piece of its selection that goes out
 * encoded on its own, the residual keeps acc minus what the receivers
 * decode, exactly what the wire lost; pieces added raw into a partial sum
 * on this rank lose nothing. The rounding of later hops (of sums of several
 * ranks' values) is zero-mean noise and is not fed back. The result is
 * bitwise identical on every rank. Ranks whose compressors use different
 * encodings fail with SPARCL_ERR_MISMATCH.
 *
 * With global selection (config.selection, or SPARCL_SELECTION=global) the
 * result is not the whole sum but about k of its entries (Ok-Topk): the
 * entries of the sum whose magnitude is at or above a threshold that every
 * rank computes alike (see sparcl_global_threshold_t; zero sums are never
 * kept). Entries this rank selected that the result does not hold go back
 * into its residual whole (with raw values: input + old residual == what
 * reached the result + new residual, bit for bit). Each rank sends about
 * 2k(P-1)/P pairs (plus a sample of k/P magnitudes per P-1 peers on the steps
 * that estimate the threshold) instead of the up to P*k of the whole sum.
 * Every encoding and transport works; ranks that disagree on the selection,
 * k, the threshold mode or threshold_reuse (or that were reset at different
 * steps) fail with SPARCL_ERR_MISMATCH. Not available for compressors whose
 * state lives on a GPU (SPARCL_ERR_UNSUPPORTED).
 *
 * If the collective fails, the values of this step are put back into the
 * residual (with error feedback: it holds acc again, exactly), so a retried
 * step loses nothing.
 *
 * If compression fails on a rank (a NULL argument, NaN or Inf under QSGD...),
 * that rank still takes part in the collective so that every rank fails
 * instead of waiting: the failing rank returns its own error, the others a
 * failure naming that rank.
 *
 * @param comm        communicator
 * @param compressor  this rank's compressor for the tensor
 * @param grad        dim float32 values
 * @param out         dim float32 values, written in full (may be grad)
 */
sparcl_status_t sparcl_allreduce_compressed(sparcl_comm_t comm, sparcl_compressor_t compressor, const float *grad,
                                            float *out);

/**
 * Starts sparcl_allreduce_compressed() and returns a request that
 * sparcl_test(), sparcl_wait() and the other completion calls of sparcl.h
 * complete. Compression happens in this call; `out` is written when the
 * request completes. Until then the caller keeps `out` alive and does not use
 * the compressor (no compress, reset or residual access): the message being
 * sent lives in it, and a failed request puts its values back into the
 * residual when it completes. Collectives on `comm` are started in the same
 * order on every rank, as always.
 *
 * @param comm        communicator
 * @param compressor  this rank's compressor for the tensor
 * @param grad        dim float32 values (read during this call only)
 * @param out         dim float32 values, written in full on completion
 * @param request     receives the request
 */
sparcl_status_t sparcl_iallreduce_compressed(sparcl_comm_t comm, sparcl_compressor_t compressor, const float *grad,
                                             float *out, sparcl_request_t *request);

/**
 * Plans sparcl_iallreduce_compressed() of `grad` into `out` with
 * `compressor` as a persistent request (see "Persistent collectives" in
 * sparcl.h): each sparcl_start() compresses what `grad` holds then (with
 * error feedback, as sparcl_iallreduce_compressed() does) and starts the
 * allreduce; sparcl_wait() or sparcl_test() complete the run, `out` written.
 * The plan keeps the algorithm as sparcl_allreduce_sparse_init() does. The
 * compressor, `grad` and `out` stay bound until the request is freed: free
 * the request before the compressor, and use the compressor for nothing
 * else while a run is active.
 *
 * @param comm        communicator
 * @param compressor  this rank's compressor for the tensor (host state)
 * @param grad        dim float32 values, read at each start
 * @param out         dim float32 values, written in full when a run completes (may be grad)
 * @param request     receives the persistent request, inactive
 */
sparcl_status_t sparcl_allreduce_compressed_init(sparcl_comm_t comm, sparcl_compressor_t compressor,
                                                 const float *grad, float *out, sparcl_request_t *request);

/** The compressor's residual (dim values), or NULL without error feedback. It
 *  may be read or written between steps, e.g. to checkpoint it. For a
 *  compressor of sparcl_compressor_create_cuda() (sparcl_cuda.h) it is device
 *  memory that the steps write on their CUDA stream: after a `_stream` call,
 *  access it in that stream's order (from work queued on it, or after
 *  cudaStreamSynchronize()); a call without a stream has written it when it
 *  returns (a request: when it completes). */
float *sparcl_compressor_residual(sparcl_compressor_t compressor);

/**
 * The entries the compressor's last step selected (sparcl_compress() or a
 * compressed allreduce, also one that failed): `out` receives dim, nnz,
 * SPARCL_INDEX_U32 sorted unique indices and SPARCL_FLOAT32 values as the
 * selection took them (before any value encoding). The arrays belong to the
 * compressor and stay valid until its next step or its free; while a
 * non-blocking compressed allreduce is in flight they may be read, not
 * written. SPARCL_ERR_INVALID_ARG before the first step. For recording which
 * entries each rank selects (gradient traces).
 */
sparcl_status_t sparcl_compressor_selection(sparcl_compressor_t compressor, sparcl_sparse_t *out);

/** Zeroes the residual and the momentum, and restarts the step count. */
sparcl_status_t sparcl_compressor_reset(sparcl_compressor_t compressor);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* SPARCL_COMPRESS_H */
