// SPDX-License-Identifier: BSD-3-Clause
// Fuzz harness: validation of the caller's vectors at the C API
// (src/input.hpp: check_sparse_header, make_input, make_dense_input), with
// the types chosen as sparcl_allreduce_sparse chooses them.
//
// Input: dim (8 bytes), index_type, value_type, flags (4 bytes each, raw, any
// value), nnz (2 bytes), a byte whose bits 0 and 1 make indices or values
// NULL, then the index array and the value array, nnz entries each (nnz is
// cut to what the input holds, as a caller's arrays hold nnz entries; each
// array is copied to an allocation of exactly its size). The dense-input
// check reads the bytes after the flag byte as `count` values of the value type.
// Properties: an accepted input becomes a view over [0, dim) with strictly
// increasing indices below dim; sorted input passes through unchanged;
// unsorted input equals the sum of its duplicates in input order; a dense
// buffer becomes exactly its nonzero entries (or itself, when denser).
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <vector>

#include "fuzz_util.hpp"
#include "input.hpp"

using namespace sparcl;
using sparcl_fuzz::accepts;
using sparcl_fuzz::check;

namespace {

template <class V>
bool same_bits(V a, V b) {
  return std::memcmp(&a, &b, sizeof(V)) == 0 || (std::isnan(a) && std::isnan(b));
}

// An exact-size copy of `bytes` bytes (ASan then sees any read past them).
std::unique_ptr<uint8_t[]> copy_of(const uint8_t* p, size_t bytes) {
  std::unique_ptr<uint8_t[]> out(new uint8_t[bytes ? bytes : 1]);
  if (bytes) std::memcpy(out.get(), p, bytes);
  return out;
}

template <class V, class I, class J>
void check_against_input(const sparcl_sparse_t& s, const View<V, I>& v) {
  const J* idx = static_cast<const J*>(s.indices);
  const V* val = static_cast<const V*>(s.values);
  if (!(s.flags & SPARCL_SPARSE_UNSORTED)) {
    check(v.nnz == s.nnz, "sorted input changed its entry count");
    for (size_t k = 0; k < v.nnz; ++k)
      check(uint64_t(v.idx[k]) == uint64_t(idx[k]) && same_bits(v.val[k], val[k]), "sorted input changed");
    return;
  }
  std::map<uint64_t, V> sum;  // duplicates summed in input order, as documented
  for (size_t k = 0; k < s.nnz; ++k) {
    auto it = sum.find(idx[k]);
    if (it == sum.end())
      sum.emplace(uint64_t(idx[k]), val[k]);
    else
      it->second += val[k];
  }
  check(v.nnz == sum.size(), "unsorted input: wrong number of unique indices");
  size_t k = 0;
  for (const auto& e : sum) {
    check(uint64_t(v.idx[k]) == e.first && same_bits(v.val[k], e.second), "unsorted input: wrong sum");
    ++k;
  }
}

template <class V, class I>
void sparse_case(const sparcl_sparse_t& s) {
  Input<V, I> in;
  if (!accepts([&] { make_input(s, in); })) return;
  const View<V, I>& v = in.view;
  check(v.range == Range{0, s.dim} && !v.dense, "input view has the wrong shape");
  check(v.nnz <= s.dim, "input view has more entries than dim");
  for (size_t k = 0; k < v.nnz; ++k) {
    check(uint64_t(v.idx[k]) < s.dim, "input index >= dim");
    check(k == 0 || v.idx[k] > v.idx[k - 1], "input indices not strictly increasing");
  }
  if (raw(s.index_type) == SPARCL_INDEX_U32)
    check_against_input<V, I, uint32_t>(s, v);
  else
    check_against_input<V, I, uint64_t>(s, v);
}

template <class V, class I>
void dense_case(const uint8_t* p, size_t bytes) {
  const uint64_t count = bytes / sizeof(V);
  if (count == 0) return;
  std::vector<V> x(count);
  std::memcpy(x.data(), p, count * sizeof(V));
  Input<V, I> in;
  if (!accepts([&] { make_dense_input(x.data(), count, in); })) return;
  const View<V, I>& v = in.view;
  check(v.range == Range{0, count}, "dense input view has the wrong range");
  std::vector<V> back(count);
  write_dense(v, back.data());
  // Every value with a bit set is kept bit for bit (-0.0 too); +0.0 may be
  // dropped and reads back as +0.0.
  check(std::memcmp(x.data(), back.data(), count * sizeof(V)) == 0, "dense input lost or changed a value");
  if (!v.dense)
    for (size_t k = 0; k < v.nnz; ++k) check(!std::memcmp(&v.val[k], &x[v.idx[k]], sizeof(V)), "bad dense pick");
}

template <class V>
void run(const sparcl_sparse_t& s) {
  if (index_width_for(s.dim) == 8)
    sparse_case<V, uint64_t>(s);
  else
    sparse_case<V, uint32_t>(s);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sparcl_fuzz::ByteReader in(data, size);
  sparcl_sparse_t s{};
  s.dim = in.take<uint64_t>();
  const int32_t index_type = in.take<int32_t>(), value_type = in.take<int32_t>();
  std::memcpy(&s.index_type, &index_type, sizeof index_type);  // raw ints, as a C caller may store them
  std::memcpy(&s.value_type, &value_type, sizeof value_type);
  s.flags = in.take<uint32_t>();
  const size_t nnz_field = in.take<uint16_t>();
  const uint8_t nulls = in.take<uint8_t>();
  const uint8_t* dense_bytes = in.rest();
  const size_t dense_size = in.left();

  const size_t iw = index_type == SPARCL_INDEX_U32 ? 4 : 8;
  const size_t vw = value_size(value_type) ? value_size(value_type) : 8;
  const size_t nnz = std::min(nnz_field, in.left() / (iw + vw));
  const auto indices = copy_of(in.rest(), nnz * iw);
  const auto values = copy_of(in.rest() + nnz * iw, nnz * vw);
  s.nnz = nnz;
  s.indices = (nulls & 1) ? nullptr : indices.get();
  s.values = (nulls & 2) ? nullptr : values.get();

  // The drop-in allreduce's input (sparcl_allreduce on a dense buffer).
  dense_case<float, uint32_t>(dense_bytes, dense_size);
  dense_case<double, uint32_t>(dense_bytes, dense_size);

  // What sparcl_allreduce_sparse checks before it picks the types.
  if (!accepts([&] { check_sparse_header(&s); })) return 0;
  check(value_type == SPARCL_FLOAT32 || value_type == SPARCL_FLOAT64, "header accepted a bad value type");
  check(index_type == SPARCL_INDEX_U32 || index_type == SPARCL_INDEX_U64, "header accepted a bad index type");
  check(s.dim >= 1, "header accepted dim 0");
  if (value_type == SPARCL_FLOAT32)
    run<float>(s);
  else
    run<double>(s);
  return 0;
}
