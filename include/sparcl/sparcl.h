/*
 * sparcl: sparse collective communication for distributed deep learning.
 * SPDX-License-Identifier: BSD-3-Clause
 */
/**
 * @file sparcl.h
 * @brief The sparcl C API: communicators, sparse allreduce and allgather, and
 *        a drop-in replacement for a SUM allreduce.
 *
 * Conventions (as in MPI):
 * - every rank of a communicator calls the same collectives in the same order
 *   with the same dimension, value type and configuration;
 * - every function returns a ::sparcl_status_t; on failure the message of the
 *   last error of the communicator is available from sparcl_comm_last_error();
 * - a failed collective fails on every rank of the communicator (the rank that
 *   detects the error tells the others), never with a silent wrong result.
 *
 * Threading model:
 * - calls on one communicator and on its requests are made by one thread at
 *   a time (the caller serializes them, like MPI_THREAD_SERIALIZED); distinct
 *   communicators may be used concurrently from different threads;
 * - with the progress thread enabled (config.progress_thread or
 *   SPARCL_PROGRESS_THREAD=1), sparcl moves outstanding operations forward
 *   in the background; it synchronizes with the caller's calls internally.
 *   Over the MPI transport it calls MPI concurrently with the application,
 *   so MPI must be initialised with MPI_THREAD_MULTIPLE (checked at creation);
 * - sparcl_strerror() and the version queries are thread-safe.
 *
 * Non-blocking operations: sparcl_i*() start a collective and return a
 * request; sparcl_test/wait/waitall/waitany complete it. Until then the
 * caller keeps every buffer it passed (input arrays, output buffer, result
 * handle locations) alive and unchanged. Blocking calls are start + wait.
 */
#ifndef SPARCL_SPARCL_H
#define SPARCL_SPARCL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every declaration below is part of the library's exported ABI. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/** @name Version */
/** @{ */
#define SPARCL_VERSION_MAJOR 0
#define SPARCL_VERSION_MINOR 1
#define SPARCL_VERSION_PATCH 0
/** Single integer for comparisons: major*10000 + minor*100 + patch. */
#define SPARCL_VERSION_CODE \
  (SPARCL_VERSION_MAJOR * 10000 + SPARCL_VERSION_MINOR * 100 + SPARCL_VERSION_PATCH)
/** @} */

/** Status of every sparcl call. 0 is success; errors are negative. */
typedef enum sparcl_status {
  SPARCL_SUCCESS = 0,
  SPARCL_ERR_INVALID_ARG = -1, /**< NULL pointer, out-of-range or unsorted index, bad size... */
  SPARCL_ERR_MISMATCH = -2,    /**< ranks disagree (dim, value type, collective, configuration) */
  SPARCL_ERR_TRANSPORT = -3,   /**< the transport (MPI, libfabric, UCX) reported an error */
  SPARCL_ERR_NO_MEMORY = -4,   /**< an allocation failed */
  SPARCL_ERR_UNSUPPORTED = -5, /**< valid request that this build or transport cannot do */
  SPARCL_ERR_TIMEOUT = -6,     /**< the operation did not complete within the timeout */
  SPARCL_ERR_CORRUPT = -7,     /**< a message from a peer failed validation or its checksum */
  SPARCL_ERR_PEER_FAILED = -8, /**< a peer reported a failure of its own */
  SPARCL_ERR_INTERNAL = -9     /**< a bug in sparcl; please report it */
} sparcl_status_t;

/** Value types. */
typedef enum sparcl_datatype {
  SPARCL_FLOAT32 = 1,
  SPARCL_FLOAT64 = 2,
  SPARCL_INT32 = 3, /**< drop-in allreduce only (passed through to the transport) */
  SPARCL_INT64 = 4  /**< drop-in allreduce only (passed through to the transport) */
} sparcl_datatype_t;

/** Index types of a sparse vector given by the caller. */
typedef enum sparcl_index_type { SPARCL_INDEX_U32 = 1, SPARCL_INDEX_U64 = 2 } sparcl_index_type_t;

/** Reduction operations of the drop-in allreduce. Only SUM has a sparse path. */
typedef enum sparcl_op { SPARCL_SUM = 1, SPARCL_PROD = 2, SPARCL_MAX = 3, SPARCL_MIN = 4 } sparcl_op_t;

/** Allreduce algorithms (see the README's algorithm table). */
typedef enum sparcl_algorithm {
  SPARCL_ALGO_AUTO = 0,               /**< the fastest as measured, ranked by a cost model (docs/algorithms.md) */
  SPARCL_ALGO_RECURSIVE_DOUBLING = 1, /**< SparCML SSAR_Recursive_double */
  SPARCL_ALGO_SPLIT_ALLGATHER = 2,    /**< SparCML SSAR_Split_allgather */
  SPARCL_ALGO_SPLIT_DENSE = 3,        /**< SparCML DSAR_Split_allgather (dense result) */
  SPARCL_ALGO_RING = 4,               /**< sparse ring reduce-scatter + allgather */
  SPARCL_ALGO_HALVING_DOUBLING = 5,   /**< recursive halving reduce-scatter + doubling allgather */
  SPARCL_ALGO_ALLGATHER = 6,          /**< every rank's vector to every rank, summed locally */
  SPARCL_ALGO_DENSE = 7,              /**< densify, then the transport's own allreduce (MPI) or a dense ring */
  SPARCL_ALGO_HIERARCHICAL = 8,       /**< node-aware: within each host, across hosts per slice, within the host */
  SPARCL_ALGO_SPLIT_ALLGATHER_HASHED = 9, /**< split_allgather over equal ranges of permuted indices (the
                                               hashed partition): skewed indices spread over all owners */
  SPARCL_ALGO_HALVING_DOUBLING_HASHED = 10 /**< halving_doubling over equal halves of permuted indices (the
                                                hashed partition): skewed indices spread over both halves */
} sparcl_algorithm_t;

/** Transports. Only the ones compiled in are available (SPARCL_ERR_UNSUPPORTED otherwise). */
typedef enum sparcl_transport {
  SPARCL_TRANSPORT_DEFAULT = 0, /**< MPI from sparcl_comm_create_mpi(); otherwise UCX, else libfabric */
  SPARCL_TRANSPORT_MPI = 1, /**< MPI point-to-point (needs a communicator from sparcl_comm_create_mpi) */
  SPARCL_TRANSPORT_OFI = 2, /**< libfabric tagged messages on RDM endpoints */
  SPARCL_TRANSPORT_UCX = 3  /**< UCX (ucp) tagged messages */
} sparcl_transport_t;

/**
 * How the algorithms that give each rank an owner range of [0, dim) cut it:
 * split_allgather, split_dense, ring (its segments), halving_doubling (its
 * halves), the reduce-scatter and global selection's reduce-scatter
 * (docs/algorithms.md, docs/compression.md).
 * Equal ranges suit indices spread evenly; with skewed indices (a few hot
 * regions) equal ranges overload the owners of the hot ones.
 */
typedef enum sparcl_partition {
  SPARCL_PARTITION_EQUAL = 0,    /**< P consecutive ranges of equal width (+-1) */
  SPARCL_PARTITION_BALANCED = 1, /**< consecutive ranges cut so that each owner would have received as many
                                      entries in the previous call of the same collective and dim (equal
                                      ranges for the first); costs one round of small messages per call
                                      (split algorithms, reduce-scatter), or none (ring and halving_doubling
                                      cut where the previous result's entries are even) */
  SPARCL_PARTITION_HASHED = 2    /**< equal ranges of a fixed permutation of the indices: each owner gets
                                      indices spread over all of [0, dim) */
} sparcl_partition_t;

/**
 * How values travel on the wire (and, for compressors, how selected values
 * are represented). Lossy encodings apply to float32 vectors; every
 * reduction is done in float32 after decoding, and partial sums are
 * re-encoded at each hop (QSGD stochastically, so the expected result is the
 * exact sum). Results stay bitwise identical on every rank. Float64 vectors
 * always travel raw.
 */
typedef enum sparcl_value_encoding {
  SPARCL_VALUES_RAW = 0,   /**< the values themselves (float32 or float64) */
  SPARCL_VALUES_FP16 = 1,  /**< IEEE half, round to nearest even (overflow: +-Inf) */
  SPARCL_VALUES_BF16 = 2,  /**< bfloat16, round to nearest even */
  SPARCL_VALUES_QSGD8 = 3, /**< QSGD, 8 bits per value (levels -127..127), per-bucket max-norm scale */
  SPARCL_VALUES_QSGD4 = 4, /**< QSGD, 4 bits per value (levels -7..7) */
  SPARCL_VALUES_QSGD2 = 5  /**< QSGD, 2 bits per value (levels -1, 0, 1) */
} sparcl_value_encoding_t;

/**
 * Communicator configuration. Initialise with ::SPARCL_CONFIG_INIT, then set
 * fields. Environment variables (SPARCL_ALGORITHM, SPARCL_TIMEOUT_MS,
 * SPARCL_TRANSPORT, SPARCL_OFI_PROVIDER, SPARCL_PROGRESS_THREAD,
 * SPARCL_ENCODING, SPARCL_QSGD_BUCKET, SPARCL_CHECKSUM, SPARCL_PARTITION) override the fields;
 * SPARCL_AUTO_PARAMS fixes the cost model's machine parameters (see
 * sparcl_comm_auto_model()). The README lists them. All ranks must pass equal
 * configurations (checked when the communicator is created: SPARCL_ERR_MISMATCH).
 */
typedef struct sparcl_config {
  size_t struct_size;             /**< sizeof(sparcl_config_t), for ABI growth */
  sparcl_algorithm_t algorithm;   /**< allreduce algorithm; default SPARCL_ALGO_AUTO */
  sparcl_transport_t transport;   /**< default SPARCL_TRANSPORT_DEFAULT */
  int64_t timeout_ms;             /**< bound of every wait for other ranks (each collective, communicator
                                       creation over MPI, sparcl_comm_free): SPARCL_ERR_TIMEOUT after this
                                       many milliseconds; 0 waits forever; default 1800000 (30 min) */
  const char *ofi_provider;       /**< libfabric provider, e.g. "tcp;ofi_rxm" (the default when NULL) */
  int progress_thread;            /**< 1: a background thread progresses operations; default 0 */
  sparcl_value_encoding_t encoding; /**< values of float32 vectors on the wire; default SPARCL_VALUES_RAW */
  size_t quantization_bucket;     /**< QSGD encodings: values per scale, 1..2^32-1; default 512 */
  int checksum;                   /**< 1: a CRC32C over every message, so that corruption in transit
                                       fails with SPARCL_ERR_CORRUPT on every rank (costs 8 bytes per
                                       message and a closing barrier of ceil(log2 P) empty messages
                                       per collective); default 0 */
  int reserved;                   /**< 0; keeps the fields below past the end of older (56-byte) configs,
                                       whose last 4 bytes were padding: they get the defaults */
  sparcl_partition_t partition;   /**< how split_allgather, split_dense, ring and halving_doubling (when
                                       configured as the algorithm), the reduce-scatter and global selection (compressors
                                       with SPARCL_SELECTION_GLOBAL) cut [0, dim) into owner ranges;
                                       default SPARCL_PARTITION_EQUAL */
} sparcl_config_t;

/** Default configuration. */
#define SPARCL_CONFIG_INIT \
  { sizeof(sparcl_config_t), SPARCL_ALGO_AUTO, SPARCL_TRANSPORT_DEFAULT, 1800000, NULL, 0, SPARCL_VALUES_RAW, 512, 0, \
    0, SPARCL_PARTITION_EQUAL }

/** Flags of a sparse input vector. */
enum {
  /** Indices may be unsorted and repeated: sparcl sorts them and sums duplicates.
   *  Without it, indices must be strictly increasing (else SPARCL_ERR_INVALID_ARG). */
  SPARCL_SPARSE_UNSORTED = 1u << 0
};

/**
 * A sparse vector given by the caller: `nnz` (index, value) pairs of a vector
 * of dimension `dim`. The arrays are read during the call only.
 */
typedef struct sparcl_sparse {
  uint64_t dim;                   /**< dimension; >= 1 */
  size_t nnz;                     /**< number of pairs; <= dim unless SPARCL_SPARSE_UNSORTED */
  sparcl_index_type_t index_type; /**< type of `indices` */
  const void *indices;            /**< nnz indices, each < dim (may be NULL when nnz == 0) */
  sparcl_datatype_t value_type;   /**< SPARCL_FLOAT32 or SPARCL_FLOAT64 */
  const void *values;             /**< nnz values (may be NULL when nnz == 0) */
  uint32_t flags;                 /**< SPARCL_SPARSE_* flags */
} sparcl_sparse_t;

/** Opaque communicator. */
typedef struct sparcl_comm *sparcl_comm_t;

/**
 * Opaque result of a sparse collective, owned by the library until
 * sparcl_result_free(). It is sparse (sorted unique indices, values) or dense
 * (dim values), by SparCML's rule: dense when nnz*(index+value bytes) >= dim*value bytes.
 * A sparse result may hold explicit zeros where values cancelled.
 */
typedef struct sparcl_result *sparcl_result_t;

/** Text of a status code (static storage). */
const char *sparcl_strerror(sparcl_status_t status);

/** Runtime version as SPARCL_VERSION_CODE of the library that is linked. */
int sparcl_version(void);

/** Fills `config` with the defaults (same as ::SPARCL_CONFIG_INIT). */
sparcl_status_t sparcl_config_init(sparcl_config_t *config);

/**
 * Allgather that a launcher provides to bootstrap a communicator without MPI:
 * each rank passes `bytes` bytes in `send`; on return `recv` holds
 * size * bytes bytes, rank i's contribution at offset i * bytes. Returns 0 on
 * success, anything else on failure. sparcl calls it only inside
 * sparcl_comm_create(), the same number of times on every rank.
 */
typedef int (*sparcl_bootstrap_allgather_fn)(const void *send, void *recv, size_t bytes, void *ctx);

/**
 * Creates a communicator of `size` ranks without MPI (collective over them).
 * The ranks exchange transport addresses through `allgather`, so the
 * transport must be one that does not need MPI (SPARCL_TRANSPORT_OFI or
 * SPARCL_TRANSPORT_UCX); with SPARCL_TRANSPORT_MPI this returns
 * SPARCL_ERR_UNSUPPORTED (use sparcl_comm_create_mpi() from sparcl_mpi.h).
 * sparcl cannot interrupt the launcher's allgather: it must bound its own
 * waits (and return non-zero) if a rank may never arrive.
 *
 * @param rank       this rank, 0 <= rank < size
 * @param size       number of ranks
 * @param allgather  the launcher's allgather
 * @param ctx        passed to allgather
 * @param config     configuration, or NULL for the defaults
 * @param comm       receives the new communicator
 */
sparcl_status_t sparcl_comm_create(int rank, int size, sparcl_bootstrap_allgather_fn allgather, void *ctx,
                                   const sparcl_config_t *config, sparcl_comm_t *comm);

/**
 * Frees a communicator. Collective: every rank calls it, once no operation is
 * in flight (requests freed with sparcl_request_free() are finished first),
 * so that transports can close their connections in order. Returns
 * SPARCL_ERR_TIMEOUT if not every rank called it within the timeout; the
 * communicator is freed in every case except SPARCL_ERR_INVALID_ARG (requests
 * still in flight), and its handle must not be used again. After a peer
 * failure use sparcl_comm_abort() instead. Requests that completed but were
 * not yet waited for stay valid (sparcl_wait() returns their status and frees
 * them).
 */
sparcl_status_t sparcl_comm_free(sparcl_comm_t comm);

/**
 * Aborts a communicator: frees it without waiting for the other ranks. Local,
 * not collective. Use it after a collective failed with SPARCL_ERR_PEER_FAILED,
 * SPARCL_ERR_TRANSPORT or SPARCL_ERR_TIMEOUT (a rank died, hung or cannot be
 * reached), when sparcl_comm_free() would wait for ranks that will not come;
 * the other ranks may abort too, or go on until their own timeout.
 *
 * Every request still in flight on `comm` ends with SPARCL_ERR_PEER_FAILED
 * (its outputs are not written; one of sparcl_iallreduce_compressed() puts
 * its step back into the residual); its handle stays valid until
 * sparcl_wait(), sparcl_test() or sparcl_request_free(). The progress thread
 * is stopped, messages still arriving are dropped, and the transport is torn
 * down without a closing exchange, within a few seconds at most.
 *
 * @return SPARCL_SUCCESS, or SPARCL_ERR_INVALID_ARG if `comm` is NULL.
 */
sparcl_status_t sparcl_comm_abort(sparcl_comm_t comm);

/** Rank of the caller in `comm`. */
sparcl_status_t sparcl_comm_rank(sparcl_comm_t comm, int *rank);

/** Number of ranks of `comm`. */
sparcl_status_t sparcl_comm_size(sparcl_comm_t comm, int *size);

/** The message of the last error on `comm` ("" if none); valid until the next call on comm. */
const char *sparcl_comm_last_error(sparcl_comm_t comm);

/** Traffic counters of a communicator (this rank only), for benchmarks. */
typedef struct sparcl_stats {
  uint64_t collectives;    /**< collectives started */
  uint64_t messages_sent;  /**< messages this rank sent */
  uint64_t bytes_sent;     /**< bytes of those messages, headers included */
  uint64_t bytes_sent_off_host; /**< of bytes_sent, those to ranks on other hosts (hosts as found at creation,
                                     or SPARCL_RANKS_PER_HOST); the transport's own collectives count whole */
  uint64_t messages_received; /**< messages this rank received (abort notices aside) */
  uint64_t bytes_received;    /**< bytes of those messages, headers included */
} sparcl_stats_t;

/** Reads the counters of `comm` into `stats`. */
sparcl_status_t sparcl_comm_stats(sparcl_comm_t comm, sparcl_stats_t *stats);

/** Sets the counters of `comm` to zero. */
sparcl_status_t sparcl_comm_reset_stats(sparcl_comm_t comm);

/**
 * The transport `comm` runs on, as SPARCL_TRANSPORT spells it ("mpi", "ofi"
 * or "ucx"): the one chosen at creation, also where the configuration left
 * the choice to sparcl. NULL for a NULL communicator.
 */
const char *sparcl_comm_transport(sparcl_comm_t comm);

/**
 * The algorithm that the most recent successful allreduce on `comm` ran (what
 * SPARCL_ALGO_AUTO chose for it; the configured algorithm otherwise), or
 * SPARCL_ALGO_AUTO if none has completed. The same on every rank for the same
 * call (with several non-blocking calls in flight, the most recent to
 * complete may differ between ranks).
 */
sparcl_status_t sparcl_comm_last_algorithm(sparcl_comm_t comm, sparcl_algorithm_t *algorithm);

/**
 * The name of `algorithm` as SPARCL_ALGORITHM spells it ("auto", "ring", ...),
 * or NULL if it is none of sparcl_algorithm_t. Thread-safe.
 */
const char *sparcl_algorithm_name(sparcl_algorithm_t algorithm);

/**
 * The number of values of sparcl_algorithm_t: the algorithms are 0 ..
 * sparcl_algorithm_count() - 1 (SPARCL_ALGO_AUTO first), so that a program can
 * list them with sparcl_algorithm_name(). Thread-safe.
 */
int sparcl_algorithm_count(void);

/**
 * A one-line description of `algorithm`, for help texts, or NULL if it is
 * none of sparcl_algorithm_t. Thread-safe.
 */
const char *sparcl_algorithm_summary(sparcl_algorithm_t algorithm);

/**
 * The algorithm that SPARCL_ALGORITHM would name `name` ("ring" ->
 * SPARCL_ALGO_RING). SPARCL_ERR_INVALID_ARG if `name` is none (the message,
 * from sparcl_comm_last_error(NULL), lists the names).
 */
sparcl_status_t sparcl_algorithm_parse(const char *name, sparcl_algorithm_t *algorithm);

/**
 * The name of `encoding` as SPARCL_ENCODING spells it ("raw", "fp16", ...),
 * or NULL if it is none of sparcl_value_encoding_t. Thread-safe.
 */
const char *sparcl_encoding_name(sparcl_value_encoding_t encoding);

/** How the algorithm of an allreduce was chosen (sparcl_comm_last_choice()). */
typedef enum sparcl_choice {
  SPARCL_CHOSEN_BY_CONFIG = 0,      /**< not SPARCL_ALGO_AUTO: the configured algorithm */
  SPARCL_CHOSEN_BY_MODEL = 1,       /**< auto's cost model alone (no measurements for such calls yet, or
                                         SPARCL_AUTO_TUNE=0) */
  SPARCL_CHOSEN_AS_TRIAL = 2,       /**< auto timing one of its candidates for such calls */
  SPARCL_CHOSEN_BY_MEASUREMENT = 3, /**< the candidate the ranks measured to be the fastest */
  SPARCL_CHOSEN_FROM_TUNE_FILE = 4  /**< the choice an earlier run measured and stored in SPARCL_TUNE_FILE */
} sparcl_choice_t;

/**
 * How the algorithm of the most recent successful allreduce on `comm` was
 * chosen (SPARCL_CHOSEN_BY_CONFIG if none has completed); like
 * sparcl_comm_last_algorithm(), the same on every rank for the same call. A benchmark of auto's steady state calls until it is no longer
 * SPARCL_CHOSEN_AS_TRIAL.
 */
sparcl_status_t sparcl_comm_last_choice(sparcl_comm_t comm, sparcl_choice_t *choice);

/**
 * Text describing the cost model's machine parameters of `comm` (what
 * SPARCL_ALGO_AUTO uses): whether they are the defaults, fixed by
 * SPARCL_AUTO_PARAMS or calibrated by this communicator, and their values,
 * e.g. "calibrated: round 24.1 us, message 3.2 us, 0.310 ns/B, merge 4.2 ns,
 * pass 0.9 ns"; with SPARCL_TUNE_FILE, a second line says what the
 * communicator made of that file. Valid until the next call on comm; "" for
 * a NULL comm.
 */
const char *sparcl_comm_auto_model(sparcl_comm_t comm);

/**
 * Sum of the ranks' sparse vectors.
 *
 * The result goes to exactly one of `dense_recv` (dim values of `send->value_type`,
 * written in full) or `result` (a new library-owned result). With raw values
 * (the default encoding) sums of values that are exactly representable are
 * exact; with a lossy config.encoding (float32 vectors) every hop rounds, within
 * the bounds of docs/compression.md. Either way the result is bitwise
 * identical on every rank.
 *
 * @param send        this rank's vector
 * @param dense_recv  dense output, or NULL
 * @param result      result output, or NULL
 * @param comm        communicator
 */
sparcl_status_t sparcl_allreduce_sparse(const sparcl_sparse_t *send, void *dense_recv,
                                        sparcl_result_t *result, sparcl_comm_t comm);

/**
 * Every rank receives every rank's sparse vector. With a lossy
 * config.encoding (float32 vectors) each vector is rounded once, by its rank,
 * and every rank, that one included, receives the rounded form.
 *
 * @param send      this rank's vector
 * @param results   array of comm-size handles; results[i] receives rank i's vector
 * @param merged    if not NULL, receives the sum of all vectors
 * @param comm      communicator
 */
sparcl_status_t sparcl_allgather_sparse(const sparcl_sparse_t *send, sparcl_result_t *results,
                                        sparcl_result_t *merged, sparcl_comm_t comm);

/**
 * Sparse reduce-scatter: each rank receives the sum of every rank's vector
 * over its own part of [0, dim), as in MPI_Reduce_scatter. The parts follow
 * config.partition (SPARCL_PARTITION):
 * - SPARCL_PARTITION_EQUAL: rank r owns [begin, end) with
 *   begin = r*(dim/P) + min(r, dim%P) and end - begin = dim/P + (r < dim%P);
 * - SPARCL_PARTITION_BALANCED: a consecutive range cut so that every owner
 *   received about the same number of entries in the previous
 *   reduce-scatter of this dim (equal ranges for the first); such calls of
 *   one dim complete in the order they were started;
 * - SPARCL_PARTITION_HASHED: the indices i with a*i mod dim in the equal
 *   range r, for a fixed a coprime with dim.
 *
 * The result goes to exactly one of `dense_recv` or `result`, as in
 * sparcl_allreduce_sparse(). `dense_recv` (equal partition only, else
 * SPARCL_ERR_UNSUPPORTED) receives the end - begin values of this rank's
 * range. `result` receives the part sparse (global indices) or dense (its
 * range's values) by SparCML's rule over its range; sparcl_result_range()
 * tells the range ([0, dim) with the hashed partition, whose parts are
 * sparse over all of [0, dim)). With raw values (the default encoding) the
 * values are bitwise those of the same indices in sparcl_allreduce_sparse()'s
 * result with SPARCL_ALGO_SPLIT_ALLGATHER and the same partition (and exact
 * for exactly representable sums); with a lossy config.encoding every other
 * rank's contribution is rounded once on the wire.
 *
 * @param send        this rank's vector
 * @param dense_recv  dense output of this rank's range, or NULL
 * @param result      result output, or NULL
 * @param comm        communicator
 */
sparcl_status_t sparcl_reduce_scatter_sparse(const sparcl_sparse_t *send, void *dense_recv,
                                             sparcl_result_t *result, sparcl_comm_t comm);

/** In-place marker for sparcl_allreduce() (as MPI_IN_PLACE). */
#define SPARCL_IN_PLACE ((const void *)1)

/**
 * Drop-in for MPI_Allreduce. For SUM on float types the library finds the
 * nonzeros of `sendbuf` and uses the sparse algorithms (switching to dense as
 * they fill in); other ops and types are passed to the transport's own
 * allreduce (SPARCL_ERR_UNSUPPORTED if it has none).
 */
sparcl_status_t sparcl_allreduce(const void *sendbuf, void *recvbuf, size_t count,
                                 sparcl_datatype_t datatype, sparcl_op_t op, sparcl_comm_t comm);

/** @name Non-blocking operations */
/** @{ */

/** Opaque handle of an operation in flight. */
typedef struct sparcl_request *sparcl_request_t;

/** Starts sparcl_allreduce_sparse(); outputs are written when the request completes
 *  (`dense_recv` may be zeroed while it is in flight). */
sparcl_status_t sparcl_iallreduce_sparse(const sparcl_sparse_t *send, void *dense_recv,
                                         sparcl_result_t *result, sparcl_comm_t comm,
                                         sparcl_request_t *request);

/** Starts sparcl_allgather_sparse(); `results` (comm-size handles) and `merged` are written on completion. */
sparcl_status_t sparcl_iallgather_sparse(const sparcl_sparse_t *send, sparcl_result_t *results,
                                         sparcl_result_t *merged, sparcl_comm_t comm,
                                         sparcl_request_t *request);

/** Starts sparcl_reduce_scatter_sparse(); outputs are written when the request completes. */
sparcl_status_t sparcl_ireduce_scatter_sparse(const sparcl_sparse_t *send, void *dense_recv,
                                              sparcl_result_t *result, sparcl_comm_t comm,
                                              sparcl_request_t *request);

/** Starts sparcl_allreduce(). Ops and types without a sparse path run at once
 *  (blocking, on the transport's own allreduce) and return a completed request.
 *  Unless in place, `recvbuf` may be zeroed while the request is in flight. */
sparcl_status_t sparcl_iallreduce(const void *sendbuf, void *recvbuf, size_t count,
                                  sparcl_datatype_t datatype, sparcl_op_t op, sparcl_comm_t comm,
                                  sparcl_request_t *request);

/**
 * Progresses the operations of the request's communicator and checks the
 * request. If it has completed, `*completed` is set to 1, the request is
 * freed, `*request` becomes NULL and the operation's status is returned;
 * otherwise `*completed` is 0 and SPARCL_SUCCESS is returned. A NULL
 * `*request` counts as completed. A persistent request (see
 * sparcl_start()) is not freed: it becomes inactive and `*request` stays;
 * testing an inactive one is SPARCL_ERR_INVALID_ARG.
 */
sparcl_status_t sparcl_test(sparcl_request_t *request, int *completed);

/** Waits for the request to complete, frees it, sets `*request` to NULL and
 *  returns the operation's status. A persistent request (see sparcl_start())
 *  becomes inactive instead and `*request` stays; waiting for an inactive
 *  one is SPARCL_ERR_INVALID_ARG. */
sparcl_status_t sparcl_wait(sparcl_request_t *request);

/**
 * Waits for all `count` requests (NULL entries and inactive persistent requests are skipped). Each completed
 * request is freed and set to NULL. `statuses` (may be NULL) receives each
 * operation's status. Returns SPARCL_SUCCESS if all succeeded, else the
 * status of the first (lowest index) that failed.
 */
sparcl_status_t sparcl_waitall(size_t count, sparcl_request_t *requests, sparcl_status_t *statuses);

/**
 * Waits until one of the `count` requests completes; `*index` receives its
 * position, the request is freed and set to NULL (a persistent one becomes
 * inactive instead), and its status is returned. If all entries are NULL or
 * inactive persistent requests, `*index` is `count` and SPARCL_SUCCESS is returned.
 */
sparcl_status_t sparcl_waitany(size_t count, sparcl_request_t *requests, size_t *index);

/**
 * Releases a request. A request that has not completed goes on in the
 * background and delivers its outputs; its status is then lost. Its buffers
 * must stay valid until it completes, which is certain once the communicator
 * has been freed. `*request` becomes NULL.
 */
sparcl_status_t sparcl_request_free(sparcl_request_t *request);
/** @} */

/**
 * @name Persistent collectives
 *
 * As MPI-4's MPI_Allreduce_init: plan an allreduce once, then run it many
 * times with sparcl_start() and complete each run with sparcl_wait(),
 * sparcl_test(), sparcl_waitall() or sparcl_waitany(). The request stays
 * valid across runs: completing a run makes it inactive (it is not freed and
 * `*request` is not set to NULL); sparcl_request_free() releases the plan
 * once it is inactive.
 *
 * The plan keeps the algorithm: the configured one, or on a
 * SPARCL_ALGO_AUTO communicator the one auto settles on for the plan's
 * calls: measured, or read from SPARCL_TUNE_FILE (until then each start
 * lets auto choose, measuring as usual; a
 * start that fails returns the plan to auto). A plan therefore stops
 * following changes of its vectors' density: make a new plan to have auto
 * choose again. Creating a plan is local; every start is a collective like
 * sparcl_iallreduce_sparse(): every rank starts its plans in the same order,
 * interleaved with its other collectives alike, and a rank whose start has
 * bad input makes that run fail on every rank (the next start is unaffected).
 * Plans whose dim, value type or encoding differ between ranks fail each run
 * with SPARCL_ERR_MISMATCH on every rank.
 *
 * Errors without side effects (SPARCL_ERR_INVALID_ARG, nothing started, no
 * other rank involved): sparcl_start() of an active request or of one that
 * is not persistent, sparcl_wait() or sparcl_test() of an inactive one,
 * sparcl_request_free() of an active one, a start whose vector no longer has
 * the plan's dim, value type or index type.
 */
/** @{ */

/**
 * Plans sparcl_allreduce_sparse() of `*send` into `dense_recv` or `result`
 * (exactly one of them). The buffers are bound: `send` (the struct itself,
 * not a copy) is read at every sparcl_start(), so the caller changes
 * `send->nnz`, `send->indices`, `send->values` and `send->flags` between runs
 * as it likes; `send->dim`, `send->value_type` and `send->index_type` must
 * stay what they were here. Each run writes the sum into `dense_recv`, or a
 * new result into `*result` (one the caller frees, every run). Everything
 * bound stays valid, and unchanged while a run is active, until the request
 * is freed.
 *
 * @param send        this rank's vector, read at each start
 * @param dense_recv  dense output, or NULL
 * @param result      result output, or NULL
 * @param comm        communicator
 * @param request     receives the persistent request, inactive
 */
sparcl_status_t sparcl_allreduce_sparse_init(const sparcl_sparse_t *send, void *dense_recv,
                                             sparcl_result_t *result, sparcl_comm_t comm,
                                             sparcl_request_t *request);

/**
 * Starts a run of the persistent request `*request` (which must be
 * inactive). A run that cannot start on this rank (bad input in the bound
 * vector, out of memory) returns its error here, leaves the request
 * inactive, and fails on every other rank too.
 */
sparcl_status_t sparcl_start(sparcl_request_t *request);

/** sparcl_start() of each of the `count` requests in order, also after one
 *  fails (so that every rank starts the same collectives); returns the status
 *  of the first that failed, else SPARCL_SUCCESS. */
sparcl_status_t sparcl_startall(size_t count, sparcl_request_t *requests);
/** @} */

/** @name Results */
/** @{ */
sparcl_status_t sparcl_result_free(sparcl_result_t result);
/** Dimension of the vector. */
uint64_t sparcl_result_dim(sparcl_result_t result);
/**
 * The index range [*begin, *end) the result covers: [0, dim) for every
 * collective but sparcl_reduce_scatter_sparse(), whose result covers this
 * rank's range. A dense result holds end - begin values.
 */
sparcl_status_t sparcl_result_range(sparcl_result_t result, uint64_t *begin, uint64_t *end);
/** 1 if the result is stored densely (dim values, no indices), 0 if sparse. */
int sparcl_result_is_dense(sparcl_result_t result);
/** Number of stored values: nnz if sparse, end - begin (sparcl_result_range()) if dense. */
size_t sparcl_result_nnz(sparcl_result_t result);
/** Value type of the result. */
sparcl_datatype_t sparcl_result_value_type(sparcl_result_t result);
/** Index type: SPARCL_INDEX_U32 when dim < 2^32, else SPARCL_INDEX_U64. */
sparcl_index_type_t sparcl_result_index_type(sparcl_result_t result);
/** Sorted unique indices (NULL if dense); owned by the result. */
const void *sparcl_result_indices(sparcl_result_t result);
/** Values (nnz of them if sparse, dim if dense); owned by the result. */
const void *sparcl_result_values(sparcl_result_t result);
/** Writes the result as end - begin dense values of its value type into `dense`
 *  (sparcl_result_range(): dim values for every collective but the reduce-scatter). */
sparcl_status_t sparcl_result_to_dense(sparcl_result_t result, void *dense);
/** @} */

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* SPARCL_SPARCL_H */
