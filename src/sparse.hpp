// SPDX-License-Identifier: BSD-3-Clause
// Sparse streams: the in-memory form of (a range of) a sparse vector, and the
// operations the collectives build on (slice, merge, concatenate, densify).
//
// A stream covers an index range [begin, end) of a vector of dimension dim and
// is either sparse (sorted unique global indices with their values) or dense
// (end - begin values). SparCML's rule picks the form: dense as soon as the
// sparse form would not be smaller, entries * (sizeof(I) + sizeof(V)) >=
// length * sizeof(V). Every sparse operation costs O(entries); O(length) work
// happens only where the result is dense, or where merge_all adds many
// streams densely because that is faster (its result still follows the rule).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "block_cache.hpp"
#include "error.hpp"
#include "pack.hpp"

namespace sparcl {

struct Range {
  uint64_t begin = 0;
  uint64_t end = 0;
  uint64_t size() const { return end - begin; }
  bool operator==(const Range& o) const { return begin == o.begin && end == o.end; }
  bool operator!=(const Range& o) const { return !(*this == o); }
};

// Range i of [0, dim) split into `parts` nearly equal consecutive ranges.
inline Range split_range(Range whole, uint64_t parts, uint64_t i) {
  const uint64_t n = whole.size();
  const uint64_t base = n / parts, extra = n % parts;
  const uint64_t b = whole.begin + i * base + std::min<uint64_t>(i, extra);
  return Range{b, b + base + (i < extra ? 1 : 0)};
}

// SparCML's switch: true when `entries` (index, value) pairs would take at
// least as many bytes as `length` dense values.
__extension__ typedef unsigned __int128 uint128;  // products of two 64-bit sizes
template <class V, class I>
inline bool prefer_dense(uint64_t entries, uint64_t length) {
  return uint128(entries) * (sizeof(I) + sizeof(V)) >= uint128(length) * sizeof(V);
}

// Non-owning view of a stream.
template <class V, class I>
struct View {
  Range range;
  bool dense = false;
  size_t nnz = 0;  // pairs if sparse; range.size() if dense
  const I* idx = nullptr;
  const V* val = nullptr;
};

// An allocator whose resize() leaves new elements uninitialised: merges and
// densifications overwrite every element they size, and zero-filling first
// cost a quarter of a sparse allreduce's instructions (callgrind).
// Its memory comes from the block cache (block_cache.hpp).
template <class T>
struct UninitializedAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = UninitializedAllocator<U>;
  };
  UninitializedAllocator() = default;
  template <class U>
  UninitializedAllocator(const UninitializedAllocator<U>&) noexcept {}
  T* allocate(size_t n) { return static_cast<T*>(allocate_block(n * sizeof(T))); }
  void deallocate(T* p, size_t n) noexcept { release_block(p, n * sizeof(T)); }
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

template <class T>
using Array = std::vector<T, UninitializedAllocator<T>>;

// A count of entries with a bit set that nobody has taken yet.
constexpr uint64_t kUncounted = ~uint64_t(0);

// Owned stream.
template <class V, class I>
struct Stream {
  Range range;
  bool dense = false;
  Array<I> idx;
  Array<V> val;
  // For a dense stream: how many of its values have a bit set, where the
  // code that built it counted them anyway (merge_all), so that nobody
  // counts them again; else kUncounted.
  uint64_t set_entries = kUncounted;

  View<V, I> view() const {
    return View<V, I>{range, dense, val.size(), dense ? nullptr : idx.data(), val.data()};
  }
};

// The part of `v` inside `r` (r must lie inside v.range). O(log nnz).
template <class V, class I>
View<V, I> slice(const View<V, I>& v, Range r) {
  View<V, I> out;
  out.range = r;
  out.dense = v.dense;
  if (v.dense) {
    out.nnz = r.size();
    out.val = v.val + (r.begin - v.range.begin);
    return out;
  }
  const I* first = std::lower_bound(v.idx, v.idx + v.nnz, r.begin,
                                    [](I a, uint64_t b) { return uint64_t(a) < b; });
  const I* last = std::lower_bound(first, v.idx + v.nnz, r.end,
                                   [](I a, uint64_t b) { return uint64_t(a) < b; });
  out.idx = first;
  out.val = v.val + (first - v.idx);
  out.nnz = static_cast<size_t>(last - first);
  return out;
}

// Entries of v whose value is not zero (NaN counts as nonzero).
template <class V, class I>
uint64_t count_nonzeros(const View<V, I>& v) {
  uint64_t n = 0;
  for (size_t i = 0; i < v.nnz; ++i) n += v.val[i] != V(0);
  return n;
}

// Whether any bit of v is set: -0.0 and NaN count, +0.0 does not.
template <class V>
inline bool has_bits(V v) {
  typename std::conditional<sizeof(V) == 4, uint32_t, uint64_t>::type bits;
  std::memcpy(&bits, &v, sizeof v);
  return bits != 0;
}

template <class V, class I>
uint64_t count_set_entries(const View<V, I>& v) {
  if constexpr (std::is_same<V, float>::value) return count_set_floats(v.val, v.nnz);
  uint64_t n = 0;
  for (size_t i = 0; i < v.nnz; ++i) n += has_bits(v.val[i]);
  return n;
}

// A dense view as a sparse stream of its entries with a bit set, so -0.0 is
// kept and only +0.0 (what write_dense fills in) is left out. `most` bounds
// the number of such entries (exact or not); kUncounted counts them first.
template <class V, class I>
Stream<V, I> to_sparse_stream(const View<V, I>& v, uint64_t most = kUncounted) {
  Stream<V, I> s;
  s.range = v.range;
  const size_t n = size_t(most == kUncounted ? count_set_entries(v) : std::min<uint64_t>(most, v.nnz));
  s.idx.resize(n + kPackSlack);
  s.val.resize(n + kPackSlack);
  I* idx = s.idx.data();
  V* val = s.val.data();
  size_t k = 0;
  const uint64_t base = v.range.begin;
  if constexpr (std::is_same<V, float>::value && std::is_same<I, uint32_t>::value) {
    k = pack_set_entries(v.val, v.nnz, uint32_t(base), idx, val, n);
  } else {
    // Branch-free, as pack_set_entries without vectors.
    for (size_t i = 0; i < v.nnz && k < n; ++i) {
      idx[k] = I(base + i);
      val[k] = v.val[i];
      k += has_bits(v.val[i]);
    }
  }
  s.idx.resize(k);
  s.val.resize(k);
  return s;
}

// acc[i - v.range.begin] += v[i] for the entries of v; acc covers v.range.
template <class V, class I>
void add_into_dense(const View<V, I>& v, V* acc) {
  if (v.dense) {
    for (size_t i = 0; i < v.nnz; ++i) acc[i] += v.val[i];
  } else {
    const uint64_t base = v.range.begin;
    for (size_t i = 0; i < v.nnz; ++i) acc[uint64_t(v.idx[i]) - base] += v.val[i];
  }
}

// Writes v as v.range.size() dense values into out.
template <class V, class I>
void write_dense(const View<V, I>& v, V* out) {
  if (v.dense) {
    if (v.nnz) std::memmove(out, v.val, v.nnz * sizeof(V));
    return;
  }
  std::fill(out, out + v.range.size(), V(0));
  const uint64_t base = v.range.begin;
  for (size_t i = 0; i < v.nnz; ++i) out[uint64_t(v.idx[i]) - base] = v.val[i];
}

template <class V, class I>
Stream<V, I> to_stream(const View<V, I>& v) {
  Stream<V, I> s;
  s.range = v.range;
  s.dense = v.dense;
  s.val.assign(v.val, v.val + v.nnz);
  if (!v.dense) s.idx.assign(v.idx, v.idx + v.nnz);
  return s;
}

template <class V, class I>
Stream<V, I> to_dense_stream(const View<V, I>& v) {
  Stream<V, I> s;
  s.range = v.range;
  s.dense = true;
  s.val.resize(v.range.size());
  write_dense(v, s.val.data());
  return s;
}

// Which of two sparse streams a dense sum starts from: the entries of the
// first are copied, those of the second added, so a -0.0 of the second where
// the first has no entry becomes +0.0 (+0.0 + -0.0). Both ranks that hold a
// pair, in either order, pick the same one (by content), so their sums are
// bitwise alike. O(1) unless the index sets are equal.
template <class V, class I>
bool sparse_goes_first(const View<V, I>& a, const View<V, I>& b) {
  if (a.nnz != b.nnz) return a.nnz < b.nnz;
  for (size_t i = 0; i < a.nnz; ++i)
    if (a.idx[i] != b.idx[i]) return a.idx[i] < b.idx[i];
  return a.nnz == 0 || std::memcmp(a.val, b.val, a.nnz * sizeof(V)) <= 0;
}

// Sum of two streams over the same range. The result is dense when either
// input is, or when the upper bound of the merged size, a.nnz + b.nnz,
// already meets SparCML's rule (tested before merging, as SparCML does).
template <class V, class I>
Stream<V, I> merge(const View<V, I>& a, const View<V, I>& b) {
  if (a.range != b.range) fail(SPARCL_ERR_INTERNAL, "merge of streams over different ranges");
  if (a.dense || b.dense || prefer_dense<V, I>(uint64_t(a.nnz) + b.nnz, a.range.size())) {
    const bool a_first = a.dense || (!b.dense && sparse_goes_first(a, b));
    const View<V, I>& first = a_first ? a : b;
    const View<V, I>& second = a_first ? b : a;
    Stream<V, I> s = to_dense_stream(first);
    add_into_dense(second, s.val.data());
    return s;
  }
  Stream<V, I> s;
  s.range = a.range;
  s.idx.resize(a.nnz + b.nnz);
  s.val.resize(a.nnz + b.nnz);
  I* oi = s.idx.data();
  V* ov = s.val.data();
  size_t i = 0, j = 0, n = 0;
  while (i < a.nnz && j < b.nnz) {
    const I ia = a.idx[i], ib = b.idx[j];
    if (ia < ib) {
      oi[n] = ia; ov[n++] = a.val[i++];
    } else if (ib < ia) {
      oi[n] = ib; ov[n++] = b.val[j++];
    } else {
      oi[n] = ia; ov[n++] = a.val[i++] + b.val[j++];
    }
  }
  for (; i < a.nnz; ++i, ++n) { oi[n] = a.idx[i]; ov[n] = a.val[i]; }
  for (; j < b.nnz; ++j, ++n) { oi[n] = b.idx[j]; ov[n] = b.val[j]; }
  s.idx.resize(n);
  s.val.resize(n);
  return s;
}

// Whether merge_all sums `parts` streams of `entries` entries in all over a
// range of `length` as a dense vector. A dense sum costs a pass over the
// range and a scattered add per entry; the merge tree costs a (branchy)
// merge per entry and level, about ten times a pass element while the dense
// vector stays in cache (the cost model's merge_s against pass_s). So dense
// wins well before the result would be smaller dense: from entries >=
// length / (8 levels), e.g. 6% of the range for 4 parts. A dense vector of
// more than kDenseSumCachedBytes is passed over from memory, about four
// times slower (bench/kernels MergeAll at 8M floats: the dense sum took
// 1.2-1.5x the tree's time at 4 parts of 2% and 8 parts of 1-2%), so there
// dense starts from entries >= length / (2 levels). Or where prefer_dense
// says so. Sizes alone decide, so every rank that merges the same parts
// takes the same way (the two add in different orders).
constexpr uint64_t kDenseSumCachedBytes = uint64_t(16) << 20;
template <class V, class I>
inline bool merge_all_is_dense(uint64_t entries, uint64_t length, size_t parts) {
  uint64_t levels = 0;
  while ((size_t(1) << levels) < parts) ++levels;
  const uint64_t per_level = uint128(length) * sizeof(V) <= kDenseSumCachedBytes ? 8 : 2;
  return uint128(entries) * per_level * levels >= uint128(length) || prefer_dense<V, I>(entries, length);
}

// merge_all's two ways (merge_all chooses; bench/kernels compares them).
// Dense: the parts added into a dense vector over the range, starting from
// the first part, not from +0.0 (+0.0 + -0.0 is +0.0, so a sum of -0.0
// inputs would lose its sign: -0.0 is the additive identity). Unless
// `keep_dense`, the sum goes back to sparse where the rule says so;
// `entries` (the parts' entries together) bounds the union: below the
// switch the sum is sparse without counting (one pass); above it, count,
// and compact only if still below.
template <class V, class I>
Stream<V, I> merge_all_dense(const std::vector<View<V, I>>& parts, uint64_t entries, bool keep_dense) {
  const Range range = parts[0].range;
  Stream<V, I> s;
  s.range = range;
  s.dense = true;
  s.val.resize(range.size());
  write_dense(parts[0], s.val.data());
  for (size_t k = 1; k < parts.size(); ++k) add_into_dense(parts[k], s.val.data());
  if (keep_dense) return s;
  const View<V, I> sum = s.view();
  if (!prefer_dense<V, I>(entries, range.size())) return to_sparse_stream(sum, entries);
  const uint64_t set = count_set_entries(sum);
  if (!prefer_dense<V, I>(set, range.size())) return to_sparse_stream(sum, set);
  s.set_entries = set;
  return s;
}

// Tree: pairwise merges in a balanced tree, (0+1)+(2+3)...: O(entries log
// parts), where a left fold would cost O(entries * parts).
template <class V, class I>
Stream<V, I> merge_all_tree(const std::vector<View<V, I>>& parts) {
  std::vector<Stream<V, I>> level;
  for (size_t k = 0; k + 1 < parts.size(); k += 2) level.push_back(merge(parts[k], parts[k + 1]));
  if (parts.size() % 2) level.push_back(to_stream(parts.back()));
  while (level.size() > 1) {
    std::vector<Stream<V, I>> next;
    for (size_t k = 0; k + 1 < level.size(); k += 2) next.push_back(merge(level[k].view(), level[k + 1].view()));
    if (level.size() % 2) next.push_back(std::move(level.back()));
    level = std::move(next);
  }
  return std::move(level[0]);
}

// Sum of several streams over the same range, added in an order fixed by
// their positions (so the same inputs always give bitwise the same result).
//
// The result follows SparCML's rule on its own entries, whichever way it was
// summed: a dense sum of sparse parts (merge_all_is_dense) whose entries with
// a bit set are fewer than the rule's switch goes back to sparse (+0.0 where
// values cancelled is left out; -0.0 is kept). A sum with a dense part stays
// dense. `dense_result` asks for a dense result whatever its entries (the
// dense split algorithm densifies its range anyway).
template <class V, class I>
Stream<V, I> merge_all(const std::vector<View<V, I>>& parts, bool dense_result = false) {
  if (parts.empty()) fail(SPARCL_ERR_INTERNAL, "merge of no streams");
  const Range range = parts[0].range;
  uint64_t entries = 0;
  bool any_dense = false;
  for (const auto& p : parts) {
    if (p.range != range) fail(SPARCL_ERR_INTERNAL, "merge of streams over different ranges");
    entries += p.nnz;
    any_dense |= p.dense;
  }
  if (parts.size() == 1) return dense_result && !parts[0].dense ? to_dense_stream(parts[0]) : to_stream(parts[0]);
  const bool keep_dense = dense_result || any_dense;
  if (keep_dense || merge_all_is_dense<V, I>(entries, range.size(), parts.size()))
    return merge_all_dense(parts, entries, keep_dense);
  return merge_all_tree(parts);
}

// Joins disjoint pieces, sorted by range, that together cover `whole`.
template <class V, class I>
Stream<V, I> concat(const std::vector<View<V, I>>& pieces, Range whole) {
  uint64_t entries = 0, pos = whole.begin;
  for (const auto& p : pieces) {
    if (p.range.begin != pos) fail(SPARCL_ERR_INTERNAL, "concatenated pieces do not tile the range");
    pos = p.range.end;
    entries += p.nnz;
  }
  if (pos != whole.end) fail(SPARCL_ERR_INTERNAL, "concatenated pieces do not tile the range");
  Stream<V, I> s;
  s.range = whole;
  if (prefer_dense<V, I>(entries, whole.size())) {
    s.dense = true;
    s.val.resize(whole.size());
    for (const auto& p : pieces) write_dense(p, s.val.data() + (p.range.begin - whole.begin));
    return s;
  }
  s.idx.reserve(entries);
  s.val.reserve(entries);
  for (const auto& p : pieces) {
    if (p.dense) {
      for (uint64_t k = 0; k < p.nnz; ++k) s.idx.push_back(I(p.range.begin + k));
    } else {
      s.idx.insert(s.idx.end(), p.idx, p.idx + p.nnz);
    }
    s.val.insert(s.val.end(), p.val, p.val + p.nnz);
  }
  return s;
}

}  // namespace sparcl
