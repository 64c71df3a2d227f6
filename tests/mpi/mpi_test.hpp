// SPDX-License-Identifier: BSD-3-Clause
// Shared pieces of the multi-rank tests: a communicator fixture, test
// vectors that every rank can regenerate for every other rank, and the
// reference sum.
//
// Every rank runs every test. Checks use EXPECT (not ASSERT) where a failure
// on one rank must not make it skip collectives that the others still call.
#pragma once

#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "sparcl/sparcl_mpi.h"

namespace sparcl_testing {

inline int world_rank() {
  int r;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
inline int world_size() {
  int s;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

// A sparcl communicator over MPI_COMM_WORLD, freed at scope exit.
class Comm {
 public:
  explicit Comm(sparcl_algorithm_t algorithm = SPARCL_ALGO_AUTO, int64_t timeout_ms = 120000,
                bool progress_thread = false) {
    sparcl_config_t config = SPARCL_CONFIG_INIT;
    config.algorithm = algorithm;
    config.timeout_ms = timeout_ms;
    config.progress_thread = progress_thread ? 1 : 0;
    create(config);
  }
  explicit Comm(const sparcl_config_t& config) { create(config); }
  ~Comm() {
    if (comm_) sparcl_comm_free(comm_);
  }
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;
  sparcl_comm_t get() const { return comm_; }
  sparcl_status_t status() const { return status_; }
  const char* error() const { return sparcl_comm_last_error(comm_); }

 private:
  // A failed creation says why on stderr (the tests that expect one see it
  // too), since a failed assertion on status() alone would not.
  void create(const sparcl_config_t& config) {
    status_ = sparcl_comm_create_mpi(MPI_COMM_WORLD, &config, &comm_);
    if (status_ != SPARCL_SUCCESS)
      std::fprintf(stderr, "[rank %d] sparcl_comm_create_mpi: %s: %s\n", world_rank(), sparcl_strerror(status_),
                   sparcl_comm_last_error(nullptr));
  }

  sparcl_comm_t comm_ = nullptr;
  sparcl_status_t status_;
};

enum class Pattern { Disjoint, Overlapping, Identical };

inline const char* pattern_name(Pattern p) {
  switch (p) {
    case Pattern::Disjoint: return "disjoint";
    case Pattern::Overlapping: return "overlapping";
    case Pattern::Identical: return "identical";
  }
  return "?";
}

struct Case {
  uint64_t dim;
  double density;  // fraction of [0, dim) each rank holds
  Pattern pattern;
  bool integer_values;  // exact sums expected
  uint64_t seed;

  std::string describe() const {
    return "dim=" + std::to_string(dim) + " density=" + std::to_string(density) + " " + pattern_name(pattern) +
           (integer_values ? " integer" : " real") + " seed=" + std::to_string(seed);
  }
};

template <class V>
struct SparseVec {
  uint64_t dim = 0;
  std::vector<uint64_t> idx;
  std::vector<V> val;

  sparcl_sparse_t as_input() const {
    sparcl_sparse_t s{};
    s.dim = dim;
    s.nnz = idx.size();
    s.index_type = SPARCL_INDEX_U64;
    s.indices = idx.data();
    s.value_type = sizeof(V) == 4 ? SPARCL_FLOAT32 : SPARCL_FLOAT64;
    s.values = val.data();
    return s;
  }
};

// Rank `rank`'s vector for case `c`; any rank can compute any rank's vector.
template <class V>
SparseVec<V> make_vector(const Case& c, int rank, int ranks) {
  SparseVec<V> v;
  v.dim = c.dim;
  std::mt19937_64 index_rng(c.seed * 1000003 + (c.pattern == Pattern::Identical ? 0 : uint64_t(rank) + 1));
  std::mt19937_64 value_rng(c.seed * 7919 + uint64_t(rank) * 31 + 5);
  std::uniform_int_distribution<int> ints(-64, 63);
  std::uniform_real_distribution<double> reals(-1.0, 1.0);
  // Disjoint: rank r may hold only indices i with i % ranks == r.
  const uint64_t stride = c.pattern == Pattern::Disjoint ? uint64_t(ranks) : 1;
  const uint64_t first = c.pattern == Pattern::Disjoint ? uint64_t(rank) : 0;
  const double keep = c.pattern == Pattern::Disjoint ? std::min(1.0, c.density * ranks) : c.density;
  if (keep <= 0.0) return v;
  // Skip ahead by geometric gaps: O(nnz) instead of a coin per index.
  std::geometric_distribution<uint64_t> gap(keep);
  for (uint64_t slot = keep < 1.0 ? gap(index_rng) : 0;; ++slot) {
    const uint64_t i = first + slot * stride;
    if (i >= c.dim) break;
    v.idx.push_back(i);
    if (c.integer_values) {
      int x = ints(value_rng);
      v.val.push_back(V(x >= 0 ? x + 1 : x));  // never 0
    } else {
      v.val.push_back(V(reals(value_rng)));
    }
    if (keep < 1.0) slot += gap(index_rng);
  }
  return v;
}

// Sum over all ranks' vectors, in double, and the sum of magnitudes (for the tolerance).
template <class V>
void reference_sum(const Case& c, int ranks, std::vector<double>& sum, std::vector<double>& magnitude) {
  sum.assign(c.dim, 0.0);
  magnitude.assign(c.dim, 0.0);
  for (int r = 0; r < ranks; ++r) {
    SparseVec<V> v = make_vector<V>(c, r, ranks);
    for (size_t k = 0; k < v.idx.size(); ++k) {
      sum[v.idx[k]] += double(v.val[k]);
      magnitude[v.idx[k]] += std::fabs(double(v.val[k]));
    }
  }
}

// Counts the entries of `got` that differ from the reference: exactly for
// integer cases, else beyond ranks * epsilon * sum of magnitudes.
template <class V>
size_t count_wrong(const Case& c, int ranks, const std::vector<V>& got) {
  std::vector<double> sum, magnitude;
  reference_sum<V>(c, ranks, sum, magnitude);
  size_t wrong = 0;
  const double eps = std::numeric_limits<V>::epsilon();
  for (uint64_t i = 0; i < c.dim; ++i) {
    const double g = double(got[i]);
    const bool ok = c.integer_values ? got[i] == V(sum[i])
                                     : std::fabs(g - sum[i]) <= ranks * eps * magnitude[i] + 1e-30;
    wrong += !ok;
  }
  return wrong;
}

// True on every rank iff all ranks hold bitwise the same bytes.
inline bool same_on_all_ranks(const void* data, size_t bytes) {
  uint64_t h = 1469598103934665603ull;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  uint64_t lo = h, hi = h;
  MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  return lo == hi;
}

// True on every rank iff `ok` holds on every rank.
inline bool all_ranks(bool ok) {
  int v = ok ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return v == 1;
}

inline const sparcl_algorithm_t kAllAlgorithms[] = {
    SPARCL_ALGO_AUTO, SPARCL_ALGO_RECURSIVE_DOUBLING, SPARCL_ALGO_SPLIT_ALLGATHER, SPARCL_ALGO_SPLIT_DENSE,
    SPARCL_ALGO_RING, SPARCL_ALGO_HALVING_DOUBLING, SPARCL_ALGO_ALLGATHER, SPARCL_ALGO_DENSE,
    SPARCL_ALGO_HIERARCHICAL, SPARCL_ALGO_SPLIT_ALLGATHER_HASHED, SPARCL_ALGO_HALVING_DOUBLING_HASHED};

inline std::string algorithm_label(sparcl_algorithm_t a) {
  switch (a) {
    case SPARCL_ALGO_AUTO: return "auto";
    case SPARCL_ALGO_RECURSIVE_DOUBLING: return "recursive_doubling";
    case SPARCL_ALGO_SPLIT_ALLGATHER: return "split_allgather";
    case SPARCL_ALGO_SPLIT_DENSE: return "split_dense";
    case SPARCL_ALGO_RING: return "ring";
    case SPARCL_ALGO_HALVING_DOUBLING: return "halving_doubling";
    case SPARCL_ALGO_ALLGATHER: return "allgather";
    case SPARCL_ALGO_DENSE: return "dense";
    case SPARCL_ALGO_HIERARCHICAL: return "hierarchical";
    case SPARCL_ALGO_SPLIT_ALLGATHER_HASHED: return "split_allgather_hashed";
    case SPARCL_ALGO_HALVING_DOUBLING_HASHED: return "halving_doubling_hashed";
  }
  return "unknown";
}

}  // namespace sparcl_testing
