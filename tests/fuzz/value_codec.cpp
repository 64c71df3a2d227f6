// SPDX-License-Identifier: BSD-3-Clause
// Fuzz harness: the value decoders of compressed vectors
// (src/codec/codec.hpp decode_values: raw, fp16, bf16, QSGD 8/4/2 bits).
//
// Input: codec (1 byte, any value: unknown codes must be rejected), bucket
// (2 bytes), n (2 bytes), then the encoded bytes.
// Properties: decoding writes exactly n values; it accepts exactly
// encoded_values_size(codec, n, bucket) bytes; QSGD values are finite and
// within their bucket's scale (to rounding); raw, fp16 and bf16 decode to values that
// encode back to the same bytes (NaN aside, which is made quiet).
#include <cfloat>
#include <cmath>
#include <vector>

#include "fuzz_util.hpp"
#include "src/codec/codec.hpp"

using namespace sparcl::codec;
using sparcl_fuzz::accepts;
using sparcl_fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sparcl_fuzz::ByteReader in(data, size);
  const uint8_t code = in.take<uint8_t>();
  const size_t bucket = in.take<uint16_t>();
  const size_t n = in.take<uint16_t>();
  const uint8_t* bytes = in.rest();
  const size_t length = in.left();
  const auto codec = ValueCodec(code);

  // A guard value past the end: decoding must write n values, no more.
  constexpr float kGuard = -12345.0f;
  std::vector<float> out(n + 1, kGuard);
  if (!accepts([&] { decode_values(codec, bytes, length, n, bucket, out.data()); })) return 0;
  check(is_value_codec(code), "decode_values accepted an unknown codec");
  check(out[n] == kGuard, "decode_values wrote past n values");
  check(length == encoded_values_size(codec, n, bucket), "decode_values accepted a payload of the wrong size");

  if (qsgd_bits(codec)) {
    for (size_t b = 0; b * bucket < n; ++b) {
      float scale;
      std::memcpy(&scale, bytes + 4 * b, 4);
      // level * (scale / levels) is rounded twice: a few ulps above the scale at most.
      const double bound = double(scale) * (1 + 4 * double(FLT_EPSILON));
      for (size_t i = b * bucket; i < n && i < (b + 1) * bucket; ++i)
        check(std::isfinite(out[i]) && std::fabs(double(out[i])) <= bound, "QSGD value outside its bucket's scale",
              std::to_string(out[i]) + " > " + std::to_string(scale));
    }
    return 0;
  }
  // Deterministic codecs: the decoded values encode back to the input bytes.
  std::vector<uint8_t> again(length);
  encode_values(codec, out.data(), n, bucket, 0, again.data());
  const size_t width = length / (n ? n : 1);
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(out[i])) continue;
    check(std::memcmp(again.data() + i * width, bytes + i * width, width) == 0,
          "decoded value does not encode back to its bytes", std::to_string(i));
  }
  return 0;
}
