// SPDX-License-Identifier: BSD-3-Clause
#include "codec.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "common.hpp"
#include "src/error.hpp"

namespace sparcl {
namespace codec {

namespace {

[[noreturn]] void corrupt(const std::string& what) { fail(SPARCL_ERR_CORRUPT, "corrupt encoding: " + what); }

constexpr size_t kSegment = 2048;  // values quantised at a time (codes staged on the stack)

// --- float16 / bfloat16: the scalar conversions of scalar.hpp, in bulk ---

// Bulk conversions through a stack buffer (the byte streams may be unaligned).
// Each kernel has a baseline and an AVX2 build (see common.hpp).
SPARCL_ALWAYS_INLINE void fp16_encode_kernel(const float* in, size_t len, uint16_t* out) {
  for (size_t i = 0; i < len; ++i) out[i] = fp16_from_bits(float_bits(in[i]));
}
SPARCL_ALWAYS_INLINE void fp16_decode_kernel(const uint16_t* in, size_t len, float* out) {
  for (size_t i = 0; i < len; ++i) out[i] = bits_float(fp16_to_bits(in[i]));
}
SPARCL_ALWAYS_INLINE void bf16_encode_kernel(const float* in, size_t len, uint16_t* out) {
  for (size_t i = 0; i < len; ++i) out[i] = bf16_from_bits(float_bits(in[i]));
}
void fp16_encode_base(const float* in, size_t len, uint16_t* out) { fp16_encode_kernel(in, len, out); }
void fp16_decode_base(const uint16_t* in, size_t len, float* out) { fp16_decode_kernel(in, len, out); }
void bf16_encode_base(const float* in, size_t len, uint16_t* out) { bf16_encode_kernel(in, len, out); }
#if defined(SPARCL_X86_DISPATCH)
SPARCL_TARGET_AVX2 void fp16_encode_avx2(const float* in, size_t len, uint16_t* out) { fp16_encode_kernel(in, len, out); }
SPARCL_TARGET_AVX2 void fp16_decode_avx2(const uint16_t* in, size_t len, float* out) { fp16_decode_kernel(in, len, out); }
SPARCL_TARGET_AVX2 void bf16_encode_avx2(const float* in, size_t len, uint16_t* out) { bf16_encode_kernel(in, len, out); }
#define SPARCL_DISPATCH(name, ...) (avx2_enabled() ? name##_avx2(__VA_ARGS__) : name##_base(__VA_ARGS__))
#else
#define SPARCL_DISPATCH(name, ...) name##_base(__VA_ARGS__)
#endif

void encode_fp16(const float* in, size_t n, uint8_t* out) {
  uint16_t buf[kSegment];
  for (size_t s = 0; s < n; s += kSegment) {
    const size_t len = std::min(kSegment, n - s);
    SPARCL_DISPATCH(fp16_encode, in + s, len, buf);
    std::memcpy(out + 2 * s, buf, 2 * len);
  }
}

void decode_fp16(const uint8_t* in, size_t n, float* out) {
  uint16_t buf[kSegment];
  for (size_t s = 0; s < n; s += kSegment) {
    const size_t len = std::min(kSegment, n - s);
    std::memcpy(buf, in + 2 * s, 2 * len);
    SPARCL_DISPATCH(fp16_decode, buf, len, out + s);
  }
}

void encode_bf16(const float* in, size_t n, uint8_t* out) {
  uint16_t buf[kSegment];
  for (size_t s = 0; s < n; s += kSegment) {
    const size_t len = std::min(kSegment, n - s);
    SPARCL_DISPATCH(bf16_encode, in + s, len, buf);
    std::memcpy(out + 2 * s, buf, 2 * len);
  }
}

void decode_bf16(const uint8_t* in, size_t n, float* out) {
  uint16_t buf[kSegment];
  for (size_t s = 0; s < n; s += kSegment) {
    const size_t len = std::min(kSegment, n - s);
    std::memcpy(buf, in + 2 * s, 2 * len);
    for (size_t i = 0; i < len; ++i) out[s + i] = bits_float(bf16_to_bits(buf[i]));
  }
}

// --- QSGD ---

size_t bucket_count(size_t n, size_t bucket) { return n == 0 ? 0 : (n - 1) / bucket + 1; }

// Largest magnitude key of x[0, len).
SPARCL_ALWAYS_INLINE uint32_t max_key_kernel(const float* x, size_t len) {
  uint32_t top = 0;
  for (size_t i = 0; i < len; ++i) top = std::max(top, magnitude_key(x[i]));
  return top;
}
uint32_t max_key_base(const float* x, size_t len) { return max_key_kernel(x, len); }
#if defined(SPARCL_X86_DISPATCH)
SPARCL_TARGET_AVX2 uint32_t max_key_avx2(const float* x, size_t len) { return max_key_kernel(x, len); }
#endif

// Levels + s of x[0, len), scaled by inv = s / scale (finite), rounded up
// with probability equal to the fractional part (qsgd_code of scalar.hpp);
// draws from counters c0 + i.
template <int S>
SPARCL_ALWAYS_INLINE void quantize_kernel(const float* x, size_t len, float inv, uint32_t c0, Key32 key,
                                          uint8_t* codes) {
  for (size_t i = 0; i < len; ++i) codes[i] = qsgd_code<S>(float_bits(x[i]), inv, draw32(key, c0 + uint32_t(i)));
}
template <int S>
void quantize_base(const float* x, size_t len, float inv, uint32_t c0, Key32 key, uint8_t* codes) {
  quantize_kernel<S>(x, len, inv, c0, key, codes);
}
#if defined(SPARCL_X86_DISPATCH)
template <int S>
SPARCL_TARGET_AVX2 void quantize_avx2(const float* x, size_t len, float inv, uint32_t c0, Key32 key, uint8_t* codes) {
  quantize_kernel<S>(x, len, inv, c0, key, codes);
}
#endif
template <int S>
void quantize(const float* x, size_t len, float inv, uint32_t c0, Key32 key, uint8_t* codes) {
#if defined(SPARCL_X86_DISPATCH)
  if (avx2_enabled()) return quantize_avx2<S>(x, len, inv, c0, key, codes);
#endif
  quantize_base<S>(x, len, inv, c0, key, codes);
}

// The same in double precision, for scales so small that s / scale overflows a float.
template <int S>
void quantize_tiny_scale(const float* x, size_t len, float scale, uint32_t c0, Key32 key, uint8_t* codes) {
  const double inv = double(S) / double(scale);
  for (size_t i = 0; i < len; ++i) codes[i] = qsgd_code_tiny<S>(x[i], inv, draw32(key, c0 + uint32_t(i)));
}

// ORs codes[0, len) (B bits each) into the code area at value position `pos`.
template <unsigned B>
void pack(const uint8_t* codes, size_t len, size_t pos, uint8_t* area) {
  if (B == 8) {
    std::memcpy(area + pos, codes, len);
    return;
  }
  constexpr unsigned per = 8 / B;
  size_t i = 0;
  for (; i < len && (pos + i) % per; ++i) area[(pos + i) / per] |= uint8_t(codes[i] << (((pos + i) % per) * B));
  uint8_t* dst = area + (pos + i) / per;
  const size_t groups = (len - i) / per;
  for (size_t g = 0; g < groups; ++g) {
    const uint8_t* c = codes + i + g * per;
    if (B == 4)
      dst[g] = uint8_t(c[0] | c[1] << 4);
    else
      dst[g] = uint8_t(c[0] | c[1] << 2 | c[2] << 4 | c[3] << 6);
  }
  i += groups * per;
  for (; i < len; ++i) area[(pos + i) / per] |= uint8_t(codes[i] << (((pos + i) % per) * B));
}

// Reads len codes at value position `pos` of the code area.
template <unsigned B>
void unpack(const uint8_t* area, size_t pos, size_t len, uint8_t* codes) {
  if (B == 8) {
    std::memcpy(codes, area + pos, len);
    return;
  }
  constexpr unsigned per = 8 / B;
  constexpr unsigned mask = (1u << B) - 1;
  size_t i = 0;
  for (; i < len && (pos + i) % per; ++i) codes[i] = uint8_t((area[(pos + i) / per] >> (((pos + i) % per) * B)) & mask);
  const uint8_t* src = area + (pos + i) / per;
  const size_t groups = (len - i) / per;
  for (size_t g = 0; g < groups; ++g) {
    uint8_t* c = codes + i + g * per;
    const unsigned b = src[g];
    if (B == 4) {
      c[0] = uint8_t(b & 15u);
      c[1] = uint8_t(b >> 4);
    } else {
      c[0] = uint8_t(b & 3u);
      c[1] = uint8_t((b >> 2) & 3u);
      c[2] = uint8_t((b >> 4) & 3u);
      c[3] = uint8_t(b >> 6);
    }
  }
  i += groups * per;
  for (; i < len; ++i) codes[i] = uint8_t((area[(pos + i) / per] >> (((pos + i) % per) * B)) & mask);
}

template <unsigned B>
void encode_qsgd(const float* in, size_t n, size_t bucket, uint64_t seed, uint8_t* out) {
  constexpr int S = (1 << (B - 1)) - 1;
  const size_t buckets = bucket_count(n, bucket);
  uint8_t* area = out + 4 * buckets;
  if (B != 8) std::memset(area, 0, (n * B + 7) / 8);
  const Key32 key = key32(seed);
  uint8_t codes[kSegment];
  for (size_t b = 0; b < buckets; ++b) {
    const size_t first = b * bucket, len = std::min(bucket, n - first);
    const float* x = in + first;
    const uint32_t top = SPARCL_DISPATCH(max_key, x, len);
    if (top >= kInfKey) {
      size_t at = 0;
      while (magnitude_key(x[at]) < kInfKey) ++at;
      fail(SPARCL_ERR_INVALID_ARG, "QSGD cannot encode " + std::string(std::isnan(x[at]) ? "NaN" : "Inf") +
                                       " (value at position " + std::to_string(first + at) + ")");
    }
    std::memcpy(out + 4 * b, &top, 4);
    const float scale = bits_float(top);
    const float inv = float(S) / scale;
    for (size_t s = 0; s < len; s += kSegment) {
      const size_t seg = std::min(kSegment, len - s);
      const uint32_t c0 = uint32_t(first + s);
      if (top == 0)
        std::memset(codes, S, seg);
      else if (std::isfinite(inv))
        quantize<S>(x + s, seg, inv, c0, key, codes);
      else
        quantize_tiny_scale<S>(x + s, seg, scale, c0, key, codes);
      pack<B>(codes, seg, first + s, area);
    }
  }
  if (B != 8 && (n * B) % 8) area[(n * B) / 8] = uint8_t(area[(n * B) / 8] | (0xFFu << ((n * B) % 8)));
}

template <unsigned B>
void decode_qsgd(const uint8_t* in, size_t n, size_t bucket, float* out) {
  constexpr int S = (1 << (B - 1)) - 1;
  const size_t buckets = bucket_count(n, bucket);
  const uint8_t* area = in + 4 * buckets;
  uint8_t codes[kSegment];
  for (size_t b = 0; b < buckets; ++b) {
    uint32_t bits;
    std::memcpy(&bits, in + 4 * b, 4);
    if (bits >= kInfKey)  // sign bit set, Inf or NaN
      corrupt("QSGD scale of bucket " + std::to_string(b) + " is negative or not finite");
    const float scale = bits_float(bits);
    const float step = scale / float(S);
    const bool in_double = qsgd_decodes_in_double<S>(scale);
    const size_t first = b * bucket, len = std::min(bucket, n - first);
    for (size_t s = 0; s < len; s += kSegment) {
      const size_t seg = std::min(kSegment, len - s);
      unpack<B>(area, first + s, seg, codes);
      unsigned bad = 0;
      for (size_t i = 0; i < seg; ++i) bad |= codes[i] > 2 * S;
      if (bad) corrupt("QSGD code out of range in bucket " + std::to_string(b));
      float* o = out + first + s;
      if (!in_double)
        for (size_t i = 0; i < seg; ++i) o[i] = qsgd_value<S>(codes[i], step);
      else
        for (size_t i = 0; i < seg; ++i) o[i] = qsgd_value_in_double<S>(codes[i], scale);
    }
  }
  if (B != 8 && (n * B) % 8) {
    const unsigned used = unsigned((n * B) % 8);
    if ((unsigned(area[(n * B) / 8]) >> used) != (0xFFu >> used)) corrupt("QSGD padding bits are not all ones");
  }
}

// --- indices ---

inline size_t varint_size(uint32_t v) {
  return 1 + (v >= (1u << 7)) + (v >= (1u << 14)) + (v >= (1u << 21)) + (v >= (1u << 28));
}

inline uint8_t* put_varint(uint8_t* p, uint32_t v) {
  while (v >= 0x80) {
    *p++ = uint8_t(v | 0x80);
    v >>= 7;
  }
  *p++ = uint8_t(v);
  return p;
}

// The same without branches; writes 8 bytes at p (the varint and junk after it).
inline uint8_t* put_varint8(uint8_t* p, uint32_t v) {
  const uint64_t x = v;
  const size_t len = varint_size(v);
  uint64_t w = (x & 0x7F) | (x & 0x3F80) << 1 | (x & 0x1FC000) << 2 | (x & 0xFE00000) << 3 | (x & 0xF0000000) << 4;
  w |= 0x8080808080ull & ((uint64_t(1) << (8 * (len - 1))) - 1);  // continuation bits
  std::memcpy(p, &w, 8);
  return p + len;
}

void check_index_range(uint64_t begin, uint64_t end) {
  if (begin > end || end > (uint64_t(1) << 32))
    fail(SPARCL_ERR_INVALID_ARG, "index range [" + std::to_string(begin) + ", " + std::to_string(end) +
                                     ") is not a range of uint32 indices");
}

}  // namespace

bool is_value_codec(int code) { return code >= 0 && code <= int(ValueCodec::Qsgd2); }

const char* value_codec_name(ValueCodec codec) {
  switch (codec) {
    case ValueCodec::Raw: return "raw";
    case ValueCodec::Fp16: return "fp16";
    case ValueCodec::Bf16: return "bf16";
    case ValueCodec::Qsgd8: return "qsgd8";
    case ValueCodec::Qsgd4: return "qsgd4";
    case ValueCodec::Qsgd2: return "qsgd2";
  }
  return "unknown";
}

unsigned qsgd_bits(ValueCodec codec) {
  switch (codec) {
    case ValueCodec::Qsgd8: return 8;
    case ValueCodec::Qsgd4: return 4;
    case ValueCodec::Qsgd2: return 2;
    default: return 0;
  }
}

int qsgd_levels(ValueCodec codec) {
  const unsigned b = qsgd_bits(codec);
  return b ? (1 << (b - 1)) - 1 : 0;
}

size_t encoded_values_size(ValueCodec codec, size_t n, size_t bucket) {
  switch (codec) {
    case ValueCodec::Raw: return 4 * n;
    case ValueCodec::Fp16:
    case ValueCodec::Bf16: return 2 * n;
    case ValueCodec::Qsgd8:
    case ValueCodec::Qsgd4:
    case ValueCodec::Qsgd2:
      if (bucket == 0) fail(SPARCL_ERR_INVALID_ARG, "quantisation bucket size must be at least 1");
      return 4 * bucket_count(n, bucket) + (n * qsgd_bits(codec) + 7) / 8;
  }
  fail(SPARCL_ERR_INVALID_ARG, "unknown value codec " + std::to_string(int(codec)));
}

void encode_values(ValueCodec codec, const float* in, size_t n, size_t bucket, uint64_t seed, uint8_t* out) {
  encoded_values_size(codec, n, bucket);  // validates codec and bucket
  if (n == 0) return;
  switch (codec) {
    case ValueCodec::Raw: std::memcpy(out, in, 4 * n); return;
    case ValueCodec::Fp16: encode_fp16(in, n, out); return;
    case ValueCodec::Bf16: encode_bf16(in, n, out); return;
    case ValueCodec::Qsgd8: encode_qsgd<8>(in, n, bucket, seed, out); return;
    case ValueCodec::Qsgd4: encode_qsgd<4>(in, n, bucket, seed, out); return;
    case ValueCodec::Qsgd2: encode_qsgd<2>(in, n, bucket, seed, out); return;
  }
}

void decode_values(ValueCodec codec, const uint8_t* in, size_t bytes, size_t n, size_t bucket, float* out) {
  if (!is_value_codec(int(codec))) corrupt("unknown value codec " + std::to_string(int(codec)));
  if (qsgd_bits(codec) && bucket == 0) fail(SPARCL_ERR_INVALID_ARG, "quantisation bucket size must be at least 1");
  // n is bounded by the bytes before any size arithmetic can overflow.
  if (n > bytes * 4) corrupt(std::to_string(n) + " values cannot fit in " + std::to_string(bytes) + " bytes");
  const size_t expected = encoded_values_size(codec, n, bucket);
  if (bytes != expected)
    corrupt(std::string(value_codec_name(codec)) + " values: " + std::to_string(bytes) + " bytes, expected " +
            std::to_string(expected) + " for " + std::to_string(n) + " values");
  if (n == 0) return;
  switch (codec) {
    case ValueCodec::Raw: std::memcpy(out, in, 4 * n); return;
    case ValueCodec::Fp16: decode_fp16(in, n, out); return;
    case ValueCodec::Bf16: decode_bf16(in, n, out); return;
    case ValueCodec::Qsgd8: decode_qsgd<8>(in, n, bucket, out); return;
    case ValueCodec::Qsgd4: decode_qsgd<4>(in, n, bucket, out); return;
    case ValueCodec::Qsgd2: decode_qsgd<2>(in, n, bucket, out); return;
  }
}

void round_trip_values(ValueCodec codec, float* values, size_t n, size_t bucket, uint64_t seed,
                       std::vector<uint8_t>& scratch) {
  if (codec == ValueCodec::Raw) return;
  const size_t bytes = encoded_values_size(codec, n, bucket);
  if (scratch.size() < bytes) scratch.resize(bytes);
  encode_values(codec, values, n, bucket, seed, scratch.data());
  decode_values(codec, scratch.data(), bytes, n, bucket, values);
}

uint16_t float_to_fp16(float x) { return fp16_from_bits(float_bits(x)); }
float fp16_to_float(uint16_t h) { return bits_float(fp16_to_bits(h)); }
uint16_t float_to_bf16(float x) { return bf16_from_bits(float_bits(x)); }
float bf16_to_float(uint16_t h) { return bits_float(bf16_to_bits(h)); }

IndexPlan plan_indices(const uint32_t* idx, size_t n, uint64_t begin, uint64_t end) {
  check_index_range(begin, end);
  const uint64_t length = end - begin;
  if (n > length) fail(SPARCL_ERR_INVALID_ARG, "more indices than the range holds");
  if (n == 0) return IndexPlan{length == 0 ? IndexCoding::Full : IndexCoding::Varint, 1};
  if (idx[0] < begin || idx[n - 1] >= end) fail(SPARCL_ERR_INVALID_ARG, "index outside the range");
  size_t bytes = 1 + varint_size(uint32_t(idx[0] - begin));
  unsigned bad = 0;
  for (size_t i = 1; i < n; ++i) {
    bad |= idx[i] <= idx[i - 1];
    bytes += varint_size(idx[i] - idx[i - 1] - 1);
  }
  if (bad) fail(SPARCL_ERR_INVALID_ARG, "indices to encode are not strictly increasing");
  if (n == length) return IndexPlan{IndexCoding::Full, 1};
  const uint64_t bitmap = 1 + (length + 7) / 8;
  if (bitmap < bytes) return IndexPlan{IndexCoding::Bitmap, size_t(bitmap)};
  return IndexPlan{IndexCoding::Varint, bytes};
}

void write_indices(const IndexPlan& plan, const uint32_t* idx, size_t n, uint64_t begin, uint64_t end,
                   uint8_t* out) {
  (void)end;
  out[0] = uint8_t(plan.coding);
  uint8_t* p = out + 1;
  switch (plan.coding) {
    case IndexCoding::Full: return;
    case IndexCoding::Bitmap: {
      std::memset(p, 0, plan.bytes - 1);
      for (size_t i = 0; i < n; ++i) {
        const uint64_t bit = idx[i] - begin;
        p[bit >> 3] = uint8_t(p[bit >> 3] | (1u << (bit & 7)));
      }
      return;
    }
    case IndexCoding::Varint: {
      if (n == 0) return;
      uint8_t* const stop = out + plan.bytes;
      uint32_t prev = uint32_t(begin) - 1;  // so that the first gap is idx[0] - begin
      size_t i = 0;
      for (; i < n && stop - p >= 8; ++i) {  // 8 bytes of room: multi-byte varints without branches
        const uint32_t gap = idx[i] - prev - 1;
        if (gap < 0x80)
          *p++ = uint8_t(gap);
        else
          p = put_varint8(p, gap);
        prev = idx[i];
      }
      for (; i < n; ++i) {
        p = put_varint(p, idx[i] - prev - 1);
        prev = idx[i];
      }
      if (size_t(p - out) != plan.bytes) fail(SPARCL_ERR_INTERNAL, "index encoding has the wrong size");
      return;
    }
  }
  fail(SPARCL_ERR_INTERNAL, "unknown index coding");
}

size_t encode_indices(const uint32_t* idx, size_t n, uint64_t begin, uint64_t end, std::vector<uint8_t>& out) {
  const IndexPlan plan = plan_indices(idx, n, begin, end);
  const size_t at = out.size();
  out.resize(at + plan.bytes);
  write_indices(plan, idx, n, begin, end, out.data() + at);
  return plan.bytes;
}

void decode_indices(const uint8_t* in, size_t bytes, size_t n, uint64_t begin, uint64_t end, uint32_t* out) {
  check_index_range(begin, end);
  const uint64_t length = end - begin;
  if (bytes == 0) corrupt("index encoding is empty (no tag)");
  if (n > length) corrupt(std::to_string(n) + " indices cannot lie in a range of " + std::to_string(length));
  const uint8_t* p = in + 1;
  const uint8_t* const stop = in + bytes;
  switch (in[0]) {
    case uint8_t(IndexCoding::Full):
      if (n != length) corrupt("full-range index encoding for " + std::to_string(n) + " of " + std::to_string(length));
      if (bytes != 1) corrupt("full-range index encoding has a payload");
      for (size_t i = 0; i < n; ++i) out[i] = uint32_t(begin + i);
      return;
    case uint8_t(IndexCoding::Bitmap): {
      const uint64_t need = (length + 7) / 8;
      if (bytes - 1 != need) corrupt("index bitmap has " + std::to_string(bytes - 1) + " bytes, expected " +
                                     std::to_string(need));
      if (length % 8 && (p[need - 1] >> (length % 8))) corrupt("index bitmap padding bits are not zero");
      size_t c = 0;
      size_t w = 0;
      for (; w + 8 <= need; w += 8) {
        uint64_t m;
        std::memcpy(&m, p + w, 8);
        if (uint64_t(__builtin_popcountll(m)) > n - c) corrupt("index bitmap holds more than n indices");
        while (m) {
          out[c++] = uint32_t(begin + w * 8 + uint64_t(__builtin_ctzll(m)));
          m &= m - 1;
        }
      }
      for (; w < need; ++w) {
        unsigned m = p[w];
        if (unsigned(__builtin_popcount(m)) > n - c) corrupt("index bitmap holds more than n indices");
        while (m) {
          out[c++] = uint32_t(begin + w * 8 + unsigned(__builtin_ctz(m)));
          m &= m - 1;
        }
      }
      if (c != n) corrupt("index bitmap holds " + std::to_string(c) + " indices, expected " + std::to_string(n));
      return;
    }
    case uint8_t(IndexCoding::Varint): {
      uint64_t next = begin;  // smallest index allowed next
      for (size_t i = 0; i < n; ++i) {
        uint32_t v;
        if (p < stop && *p < 0x80) {
          v = *p++;
        } else if (stop - p >= 8) {  // multi-byte, without branches: it lies in the next 8 bytes
          uint64_t w;
          std::memcpy(&w, p, 8);
          const uint64_t ends = ~w & 0x8080808080ull;  // bytes without a continuation bit, among the first 5
          if (!ends) corrupt("index varint exceeds 32 bits");
          const unsigned len = unsigned(__builtin_ctzll(ends)) / 8 + 1;
          const uint64_t b = w & ((uint64_t(1) << (8 * len)) - 1);
          if ((b >> 36) || (len > 1 && (b >> (8 * (len - 1))) == 0))
            corrupt((b >> 36) ? "index varint exceeds 32 bits" : "over-long index varint");
          v = uint32_t((b & 0x7F) | (b >> 1 & 0x3F80) | (b >> 2 & 0x1FC000) | (b >> 3 & 0xFE00000) |
                       (b >> 4 & 0xF0000000));
          p += len;
        } else {
          v = 0;
          unsigned shift = 0;
          for (;;) {
            if (p == stop) corrupt("index varint runs past the end");
            const uint8_t b = *p++;
            if (shift == 28 && b > 0x0F) corrupt("index varint exceeds 32 bits");
            v |= uint32_t(b & 0x7F) << shift;
            if (!(b & 0x80)) {
              if (b == 0 && shift > 0) corrupt("over-long index varint");
              break;
            }
            shift += 7;
          }
        }
        const uint64_t ix = next + v;
        if (ix >= end) corrupt("index " + std::to_string(ix) + " at position " + std::to_string(i) +
                               " is outside [" + std::to_string(begin) + ", " + std::to_string(end) + ")");
        out[i] = uint32_t(ix);
        next = ix + 1;
      }
      if (p != stop) corrupt("index varints leave " + std::to_string(stop - p) + " bytes unread");
      return;
    }
    default: corrupt("unknown index coding tag " + std::to_string(unsigned(in[0])));
  }
}

}  // namespace codec
}  // namespace sparcl
