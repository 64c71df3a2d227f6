// SPDX-License-Identifier: BSD-3-Clause
// Packing a dense run of values into (index, value) pairs: the step that
// turns a dense sum back into a sparse stream (to_sparse_stream in
// sparse.hpp), and counting the values with a bit set (count_set_entries),
// in an AVX2 build where the CPU has it (bench/kernels ToSparse).
#pragma once

#include <cstddef>
#include <cstdint>

namespace sparcl {

// Entries the output arrays of pack_set_entries need beyond `most`: the
// vector kernel writes whole blocks of 8.
constexpr size_t kPackSlack = 8;

// For each i in [0, len) in order where in[i] has a bit set (-0.0 and NaN
// count, +0.0 does not): idx[k] = first + i, val[k] = in[i], k counting up
// from 0, stopping once k reaches `most`. Returns k. idx and val hold
// most + kPackSlack entries; first + len <= 2^32.
size_t pack_set_entries(const float* in, size_t len, uint32_t first, uint32_t* idx, float* val, size_t most);

// How many of in[0, len) have a bit set (-0.0 and NaN count, +0.0 does not).
uint64_t count_set_floats(const float* in, size_t len);

}  // namespace sparcl
