// SPDX-License-Identifier: BSD-3-Clause
// Turning a caller's sparcl_sparse_t or dense buffer into a stream view,
// validating it on the way. Work is O(nnz) for sparse input (O(nnz log nnz)
// when SPARCL_SPARSE_UNSORTED asks for sorting).
#pragma once

#include <algorithm>
#include <numeric>
#include <string>

#include "sparse.hpp"

namespace sparcl {

// Index width used inside sparcl for a vector of dimension dim.
inline uint8_t index_width_for(uint64_t dim) { return dim < (uint64_t(1) << 32) ? 4 : 8; }

inline size_t value_size(int t) {
  switch (t) {
    case SPARCL_FLOAT32: case SPARCL_INT32: return 4;
    case SPARCL_FLOAT64: case SPARCL_INT64: return 8;
    default: return 0;
  }
}

template <class T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<V>, TypeTag<I>) for the value type and the index width of
// dim: where the C API's run-time types become the templates' types.
template <class F>
void dispatch_types(uint8_t value_type, uint64_t dim, F&& f) {
  const bool wide = index_width_for(dim) == 8;
  if (value_type == SPARCL_FLOAT32) {
    wide ? f(TypeTag<float>{}, TypeTag<uint64_t>{}) : f(TypeTag<float>{}, TypeTag<uint32_t>{});
  } else if (value_type == SPARCL_FLOAT64) {
    wide ? f(TypeTag<double>{}, TypeTag<uint64_t>{}) : f(TypeTag<double>{}, TypeTag<uint32_t>{});
  } else {
    fail(SPARCL_ERR_INVALID_ARG, "value type must be SPARCL_FLOAT32 or SPARCL_FLOAT64");
  }
}

// Checks what can be checked without knowing the value and index types.
inline void check_sparse_header(const sparcl_sparse_t* s) {
  require(s != nullptr, SPARCL_ERR_INVALID_ARG, "sparse input is NULL");
  require(s->dim >= 1, SPARCL_ERR_INVALID_ARG, "sparse input has dim 0");
  require(raw(s->value_type) == SPARCL_FLOAT32 || raw(s->value_type) == SPARCL_FLOAT64, SPARCL_ERR_INVALID_ARG,
          "sparse value type must be SPARCL_FLOAT32 or SPARCL_FLOAT64");
  require(raw(s->index_type) == SPARCL_INDEX_U32 || raw(s->index_type) == SPARCL_INDEX_U64, SPARCL_ERR_INVALID_ARG,
          "sparse index type must be SPARCL_INDEX_U32 or SPARCL_INDEX_U64");
  require((s->flags & ~uint32_t(SPARCL_SPARSE_UNSORTED)) == 0, SPARCL_ERR_INVALID_ARG,
          "unknown sparse input flags");
  if (s->nnz > 0) {
    require(s->indices != nullptr, SPARCL_ERR_INVALID_ARG, "sparse input has nnz > 0 but indices is NULL");
    require(s->values != nullptr, SPARCL_ERR_INVALID_ARG, "sparse input has nnz > 0 but values is NULL");
  }
  if (!(s->flags & SPARCL_SPARSE_UNSORTED))
    require(s->nnz <= s->dim, SPARCL_ERR_INVALID_ARG, "sparse input has nnz > dim");
}

// A validated input: a view, into the caller's arrays or into `owned`.
template <class V, class I>
struct Input {
  View<V, I> view;
  Stream<V, I> owned;
};

template <class V, class I, class J>
void make_sparse_input(const sparcl_sparse_t& s, Input<V, I>& in) {
  const J* idx = static_cast<const J*>(s.indices);
  const V* val = static_cast<const V*>(s.values);
  const Range whole{0, s.dim};
  if (s.flags & SPARCL_SPARSE_UNSORTED) {
    std::vector<size_t> order(s.nnz);
    for (size_t k = 0; k < s.nnz; ++k) {
      if (uint64_t(idx[k]) >= s.dim)
        fail(SPARCL_ERR_INVALID_ARG, "index " + std::to_string(uint64_t(idx[k])) + " at position " +
                                         std::to_string(k) + " is >= dim " + std::to_string(s.dim));
      order[k] = k;
    }
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return idx[a] < idx[b]; });
    Stream<V, I>& o = in.owned;
    o.range = whole;
    for (size_t k : order) {
      if (!o.idx.empty() && uint64_t(o.idx.back()) == uint64_t(idx[k])) {
        o.val.back() += val[k];
      } else {
        o.idx.push_back(I(idx[k]));
        o.val.push_back(val[k]);
      }
    }
    in.view = o.view();
    return;
  }
  for (size_t k = 0; k < s.nnz; ++k) {
    if (uint64_t(idx[k]) >= s.dim)
      fail(SPARCL_ERR_INVALID_ARG, "index " + std::to_string(uint64_t(idx[k])) + " at position " +
                                       std::to_string(k) + " is >= dim " + std::to_string(s.dim));
    if (k > 0 && idx[k] <= idx[k - 1])
      fail(SPARCL_ERR_INVALID_ARG,
           std::string(idx[k] == idx[k - 1] ? "duplicate" : "unsorted") + " index " +
               std::to_string(uint64_t(idx[k])) + " at position " + std::to_string(k) +
               " (indices must be strictly increasing; set SPARCL_SPARSE_UNSORTED to have sparcl sort and sum them)");
  }
  if constexpr (std::is_same<I, J>::value) {
    in.view = View<V, I>{whole, false, s.nnz, idx, val};
  } else {
    in.owned.range = whole;
    in.owned.idx.assign(idx, idx + s.nnz);
    in.owned.val.assign(val, val + s.nnz);
    in.view = in.owned.view();
  }
}

// Validates `s` (value type V, internal index type I) and returns its view.
template <class V, class I>
void make_input(const sparcl_sparse_t& s, Input<V, I>& in) {
  if (raw(s.index_type) == SPARCL_INDEX_U32)
    make_sparse_input<V, I, uint32_t>(s, in);
  else
    make_sparse_input<V, I, uint64_t>(s, in);
}

// A dense buffer as a stream: sparse (gathered nonzeros) when that is
// smaller by SparCML's rule, else a view of the buffer itself. A value is
// nonzero when any bit is set, so -0.0 is kept.
template <class V, class I>
void make_dense_input(const V* x, uint64_t count, Input<V, I>& in) {
  auto nonzero = [](V v) {
    typename std::conditional<sizeof(V) == 4, uint32_t, uint64_t>::type bits;
    std::memcpy(&bits, &v, sizeof v);
    return bits != 0;
  };
  uint64_t nnz = 0;
  for (uint64_t k = 0; k < count; ++k) nnz += nonzero(x[k]);
  const Range whole{0, count};
  if (prefer_dense<V, I>(nnz, count)) {
    in.view = View<V, I>{whole, true, size_t(count), nullptr, x};
    return;
  }
  Stream<V, I>& o = in.owned;
  o.range = whole;
  o.idx.resize(nnz);
  o.val.resize(nnz);
  size_t n = 0;
  for (uint64_t k = 0; k < count; ++k)
    if (nonzero(x[k])) {
      o.idx[n] = I(k);
      o.val[n++] = x[k];
    }
  in.view = o.view();
}

}  // namespace sparcl
