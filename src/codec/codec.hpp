// SPDX-License-Identifier: BSD-3-Clause
// Value and index codecs of compressed sparse vectors: the functions the
// wire format uses to put (index, value) streams into fewer bytes.
//
// Values (float32 only; double values are out of scope and travel raw):
//   Raw    4 bytes per value, the float's bits (little-endian).
//   Fp16   IEEE binary16, round to nearest even. Overflow gives +-Inf; values
//          below half the smallest subnormal give +-0; subnormals are exact
//          where representable; NaN stays NaN (sign and the top 10 payload
//          bits kept, quiet bit set); float subnormals become +-0.
//   Bf16   bfloat16 (the float's top 16 bits), round to nearest even; NaN
//          stays NaN (top 16 bits, quiet bit set); overflow gives +-Inf;
//          subnormals round like normals.
//   QsgdB  (B = 8, 4, 2) QSGD stochastic quantisation with s = 2^(B-1) - 1
//          levels per sign (127, 7, 1): per bucket of `bucket` consecutive
//          values a scale = max |x| (the max norm, not the L2 norm: see
//          docs/compression.md), and each value becomes the integer level
//          l in [-s, s] with x * s / scale rounded up or down at random with
//          the probabilities that make E[l * scale / s] = x. Per value the
//          variance is (scale/s)^2 * f(1-f) <= (scale/s)^2 / 4, f the
//          fractional part of |x| * s / scale. NaN and Inf cannot be
//          encoded (SPARCL_ERR_INVALID_ARG).
//          Layout: ceil(n / bucket) float32 scales, then the n codes
//          l + s, B bits each, packed from the least significant bit of
//          each byte (value j at bit j*B of the code area). The code
//          2^B - 1 is never used; the last byte's unused bits are ones
//          (that code), so that a value count one too high is detected.
//
// The random numbers of the stochastic rounding are a pure function of
// (seed, position of the value in the call): counter-based, so an encoding is
// reproducible from its seed. Draws have 24 bits, so probabilities are exact
// to 2^-24; the counter is 32 bits wide (period 2^32 values per call).
//
// Decoders validate everything they read (exact size, scales finite and
// >= 0, no unused code, padding as written) and throw sparcl::Error with
// SPARCL_ERR_CORRUPT; they never read outside [in, in + bytes).
//
// Indices (strictly increasing uint32 indices inside a range [begin, end)):
// a one-byte tag, then
//   0 Varint  the gaps in LEB128: idx[0] - begin, then idx[i] - idx[i-1] - 1
//             (canonical: no over-long encodings, values < 2^32);
//   1 Bitmap  ceil((end - begin) / 8) bytes, bit (i - begin) set for each
//             index i (bit 0 = least significant bit of byte 0); unused
//             bits zero;
//   2 Full    nothing: the indices are all of [begin, end).
// The encoder picks the smallest (ties: Varint before Bitmap; Full whenever
// it applies). The decoder is told n, begin and end, and checks that the
// payload describes exactly n indices, strictly increasing, inside the range,
// using exactly `bytes` bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sparcl {
namespace codec {

enum class ValueCodec : uint8_t { Raw = 0, Fp16 = 1, Bf16 = 2, Qsgd8 = 3, Qsgd4 = 4, Qsgd2 = 5 };

constexpr size_t kDefaultQuantBucket = 512;

// True if `code` is a ValueCodec.
bool is_value_codec(int code);
const char* value_codec_name(ValueCodec codec);
// Bits per value of the QSGD codecs (8, 4, 2), 0 for the others.
unsigned qsgd_bits(ValueCodec codec);
// Levels per sign s of the QSGD codecs (127, 7, 1), 0 for the others.
int qsgd_levels(ValueCodec codec);

// Bytes of n encoded values. `bucket` (>= 1) matters for the QSGD codecs only.
size_t encoded_values_size(ValueCodec codec, size_t n, size_t bucket);

// Encodes in[0, n) into out[0, encoded_values_size(...)). Stochastic rounding
// (QSGD) is driven by `seed`. Throws SPARCL_ERR_INVALID_ARG for a bucket of 0
// or a non-finite value under QSGD.
void encode_values(ValueCodec codec, const float* in, size_t n, size_t bucket, uint64_t seed, uint8_t* out);

// Decodes n values from in[0, bytes) into out. Throws SPARCL_ERR_CORRUPT if
// the bytes are not a valid encoding of n values.
void decode_values(ValueCodec codec, const uint8_t* in, size_t bytes, size_t n, size_t bucket, float* out);

// values[i] = decode(encode(values))[i]: what a receiver would see.
// `scratch` is reused between calls.
void round_trip_values(ValueCodec codec, float* values, size_t n, size_t bucket, uint64_t seed,
                       std::vector<uint8_t>& scratch);

// --- float16 and bfloat16, one value ---
uint16_t float_to_fp16(float x);
float fp16_to_float(uint16_t h);
uint16_t float_to_bf16(float x);
float bf16_to_float(uint16_t h);

// --- indices ---

enum class IndexCoding : uint8_t { Varint = 0, Bitmap = 1, Full = 2 };

struct IndexPlan {
  IndexCoding coding = IndexCoding::Varint;
  size_t bytes = 0;  // tag included
};

// Chooses the coding of idx[0, n) (strictly increasing, inside [begin, end),
// end <= 2^32) and its size. Throws SPARCL_ERR_INVALID_ARG otherwise.
IndexPlan plan_indices(const uint32_t* idx, size_t n, uint64_t begin, uint64_t end);

// Writes the plan's bytes to out[0, plan.bytes).
void write_indices(const IndexPlan& plan, const uint32_t* idx, size_t n, uint64_t begin, uint64_t end,
                   uint8_t* out);

// plan_indices + write_indices, appended to `out`; returns the bytes appended.
size_t encode_indices(const uint32_t* idx, size_t n, uint64_t begin, uint64_t end, std::vector<uint8_t>& out);

// Decodes n indices from in[0, bytes) into out[0, n). Throws
// SPARCL_ERR_CORRUPT unless the bytes are exactly a valid encoding of n
// strictly increasing indices inside [begin, end).
void decode_indices(const uint8_t* in, size_t bytes, size_t n, uint64_t begin, uint64_t end, uint32_t* out);

}  // namespace codec
}  // namespace sparcl
