// SPDX-License-Identifier: BSD-3-Clause
// Sparsifiers: which entries of a float32 gradient to send.
//
// Every sparsifier writes a Selection: sorted, unique uint32 indices and the
// values at them (copied bit for bit). Vectors have fewer than 2^32 entries.
//
// Order and ties. Entries are ranked by magnitude through their magnitude key
// (the float's bits without the sign, see common.hpp): -0.0 and +0.0 are
// equal, +Inf and -Inf rank above every finite value, and NaN ranks above
// +Inf (so a NaN gradient is always sent, never hidden in a residual). Among
// equal magnitudes the lower index wins. With these rules exact top-k has
// exactly one answer, which the tests compare against a sort.
//
// Algorithms (docs/compression.md has the details and the measurements):
// - select_topk: exact. A stratified sample of the magnitudes gives a
//   threshold a little below the k-th largest; one pass over the vector
//   collects the candidates above it (about k of them); a radix select on
//   the candidates' keys (11, 11 and 9 bits) finds the exact k-th key. If the
//   sample was unlucky (fewer than k candidates) a second pass uses a lower
//   threshold, and a third falls back to a radix select over the whole
//   vector, so the answer is always exact.
// - select_approx_topk: the same, but it stops as soon as the selected count
//   lies in [k, k + floor(tolerance * k)]; the selection is always "closed":
//   every selected entry has a magnitude >= every unselected one.
// - select_topk_bucketed: exact top-k inside each bucket of consecutive entries.
// - select_threshold: every entry with |x| >= t.
// - select_randomk: k distinct indices, uniform over all k-subsets, a pure
//   function of (seed, step), so every rank picks the same indices.
#pragma once

#include <cstddef>
#include <cstdint>

#include "src/codec/common.hpp"

namespace sparcl {
namespace compress {

// The compressors are built on the core's codec kernels (src/codec/).
using namespace ::sparcl::codec;

// Output of a sparsifier.
struct Selection {
  PodArray<uint32_t> idx;
  PodArray<float> val;

  size_t size() const { return idx.size(); }
  void clear() {
    idx.clear();
    val.clear();
  }
  void reserve(size_t n) {
    idx.reserve(n);
    val.reserve(n);
  }
  void resize(size_t n) {
    idx.resize(n);
    val.resize(n);
  }
  void swap(Selection& o) noexcept {
    idx.swap(o.idx);
    val.swap(o.val);
  }
};

// Scratch space of the sparsifiers, reused between calls (keep one per
// compressor or per thread; not thread-safe).
struct SelectWorkspace {
  Selection candidates;
  PodArray<float> sample;
  PodArray<uint32_t> keys;
  PodArray<uint32_t> hist;
  PodArray<uint64_t> bitmap;
};

// Approximate top-k returns between k and k + floor(kApproxTolerance * k)
// entries unless another tolerance is passed.
constexpr double kApproxTolerance = 0.10;

// Largest count select_approx_topk may return for k (and n >= that count).
size_t approx_topk_max_count(size_t k, double tolerance = kApproxTolerance);

// The k entries of largest magnitude (all n if k >= n).
void select_topk(const float* x, size_t n, size_t k, Selection& out, SelectWorkspace& ws);

// Between k and approx_topk_max_count(k, tolerance) entries of largest
// magnitude (all n if k >= n). tolerance in [0, 1].
void select_approx_topk(const float* x, size_t n, size_t k, Selection& out, SelectWorkspace& ws,
                        double tolerance = kApproxTolerance);

// Entries to keep from a bucket of `len` entries of a vector of n entries
// when k are wanted in all: ceil(k * len / n), at most len.
size_t bucket_quota(size_t k, size_t n, size_t len);

// Exact top-k in each bucket of `bucket` consecutive entries (the last
// bucket may be shorter), keeping bucket_quota(k, n, len) in each: about k in
// all, at most k + (number of buckets).
void select_topk_bucketed(const float* x, size_t n, size_t k, size_t bucket, Selection& out, SelectWorkspace& ws);

// Every entry with |x| >= t (t >= 0, not NaN; NaN entries are always selected).
void select_threshold(const float* x, size_t n, float t, Selection& out);

// k distinct indices drawn uniformly (every k-subset equally likely) from the
// stream (seed, step); the same on every rank for the same arguments.
void select_randomk(const float* x, size_t n, size_t k, uint64_t seed, uint64_t step, Selection& out,
                    SelectWorkspace& ws);

// Every entry.
void select_all(const float* x, size_t n, Selection& out);

// The k-th largest magnitude key of x[0..n) (1 <= k <= n), by radix select.
uint32_t kth_largest_key(const float* x, size_t n, size_t k, SelectWorkspace& ws);

// The k indices select_randomk picks (0 < k < n), sorted, into out[0, k).
void randomk_indices(size_t n, size_t k, uint64_t seed, uint64_t step, uint32_t* out, SelectWorkspace& ws);

// The plan of the sampled top-k, shared with the GPU's (ml/cuda/) so that
// both make the same choices: the number of sampled entries for a vector of
// n entries (0 when n is small enough to select without sampling), the key
// of the sample's positions and the position of sample j of s; the rank in
// the sample whose key is the candidates' threshold at each attempt; and, for
// approximate top-k among c > kmax candidates, the strided subsample of s
// candidates and the rank in it aimed at the middle of [k, kmax] (false when
// the subsample cannot resolve the window).
constexpr int kTopkSampleAttempts = 2;
size_t topk_sample_size(size_t n);
Key32 topk_sample_key();
uint64_t topk_sample_position(size_t n, size_t s, size_t j);
double topk_sample_rank(size_t n, size_t s, size_t k, size_t kmax, int attempt);
bool topk_subsample_plan(size_t c, size_t k, size_t kmax, size_t& s, size_t& rank);

}  // namespace compress
}  // namespace sparcl
