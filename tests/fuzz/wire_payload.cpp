// SPDX-License-Identifier: BSD-3-Clause
// Fuzz harness: the payload of a data message (src/wire.hpp decode<V, I>:
// plain or coded indices), the
// native barrier's acknowledgement (read_native_ack), and
// what the collectives then do with the view it returns (merge, slice,
// densify, copy). The header's encoding (raw, fp16, bf16, QSGD 8/4/2) picks
// the value decoder; a message with the checksum flag is sealed anew before
// decoding (so that mutations reach the payload checks; verify_checksum is
// wire_header's).
//
// Input: one selector byte, then the message (header and payload).
//   bits 0-1  the receiver's value and index types: 0 float/u32, 1 float/u64,
//             2 double/u32, 3 double/u64 (one decoder per pair, kDecoders);
//   bits 2-4  the range the receiver expects: 0 the header's own range
//             (when it is at most kMaxLength long), 1-7 a range of kPayloadRanges
//             (for u64 indices shifted past 2^32).
// Properties: an accepted view lies inside the expected range with at most
// its length in entries, its indices strictly increasing, and its values
// inside the message (raw) or in the decoded stream (other encodings; QSGD
// values finite); merging it with a fixed stream, slicing it and
// writing it densely agree with each other.
//
// A new value encoding needs no change here, only seeds
// (make_corpus.cpp, kSeedEncodings); a new value or index type gets its own
// entry in kDecoders.
#include <cmath>
#include <vector>

#include "fuzz_util.hpp"
#include "wire.hpp"

using namespace sparcl;
using sparcl_fuzz::accepts;
using sparcl_fuzz::check;

namespace {

constexpr uint64_t kMaxLength = uint64_t(1) << 16;  // bound on dense work per input
constexpr int kPeer = 1;

template <class V, class I>
void exercise(const Buffer& msg, const WireHeader& h, Range expected) {
  Decoded<V, I> d;
  if (!accepts([&] { d = decode<V, I>(msg, h, expected, kPeer); })) return;
  const View<V, I>& v = d.view;
  auto inside = [](const void* p, size_t bytes, const void* lo, size_t size) {
    const auto* b = static_cast<const uint8_t*>(p);
    const auto* l = static_cast<const uint8_t*>(lo);
    return bytes == 0 || (b >= l && b + bytes <= l + size);
  };
  // Raw values with plain indices are read in place; coded indices are decoded into a stream.
  const bool raw_values = Encoding(h.encoding) == Encoding::Raw && h.index_coding == kIndicesPlain;
  check(v.range == expected, "decoded view covers another range");
  check(v.nnz <= expected.size(), "decoded view has more entries than its range");
  if (raw_values) {
    check(!d.stream, "raw values decoded into a copy");
    check(inside(v.val, v.nnz * sizeof(V), msg.data(), msg.size()), "decoded values lie outside the message");
  } else {
    check(d.stream && inside(v.val, v.nnz * sizeof(V), d.stream->val.data(), d.stream->val.size() * sizeof(V)),
          "decoded values lie outside their stream");
    if (codec::qsgd_bits(Encoding(h.encoding)))
      for (size_t k = 0; k < v.nnz; ++k) check(std::isfinite(v.val[k]), "QSGD value decoded to Inf or NaN");
  }
  if (v.dense) {
    check(v.nnz == expected.size(), "dense view with a short value array");
  } else {
    check(inside(v.idx, v.nnz * sizeof(I), msg.data(), msg.size()) ||
              (d.stream && inside(v.idx, v.nnz * sizeof(I), d.stream->idx.data(), d.stream->idx.size() * sizeof(I))),
          "decoded indices lie outside the message and the stream");
    for (size_t k = 0; k < v.nnz; ++k) {
      check(v.idx[k] >= expected.begin && v.idx[k] < expected.end, "decoded index outside the range");
      check(k == 0 || v.idx[k] > v.idx[k - 1], "decoded indices not strictly increasing");
    }
  }
  if (expected.size() > kMaxLength) return;

  // What the algorithms do with a received piece.
  std::vector<V> dense(expected.size());
  write_dense(v, dense.data());
  Stream<V, I> ones;  // a fixed partner: 1 at every third index of the range
  ones.range = expected;
  for (uint64_t i = expected.begin; i < expected.end; i += 3) {
    ones.idx.push_back(I(i));
    ones.val.push_back(V(1));
  }
  const Stream<V, I> sum = merge(v, ones.view());
  std::vector<V> merged(expected.size());
  write_dense(sum.view(), merged.data());
  for (uint64_t i = 0; i < expected.size(); ++i) {
    const V want = dense[i] + V(i % 3 == 0 ? 1 : 0);
    const bool both_nan = std::isnan(want) && std::isnan(merged[i]);
    check(both_nan || merged[i] == want, "merge disagrees with the dense form");
  }
  const Range half{expected.begin, expected.begin + expected.size() / 2};
  const View<V, I> part = slice(v, half);
  std::vector<V> sliced(half.size());
  write_dense(part, sliced.data());
  for (uint64_t i = 0; i < half.size(); ++i)
    check(std::memcmp(&sliced[i], &dense[i], sizeof(V)) == 0, "slice disagrees with the dense form");
  const Stream<V, I> copy = to_stream(v);
  check(copy.val.size() == v.nnz, "to_stream lost entries");
}

using Decoder = void (*)(const Buffer&, const WireHeader&, Range);
constexpr Decoder kDecoders[] = {exercise<float, uint32_t>, exercise<float, uint64_t>,
                                 exercise<double, uint32_t>, exercise<double, uint64_t>};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t selector = data[0];
  Buffer msg(size - 1);
  if (size > 1) std::memcpy(msg.data(), data + 1, size - 1);
  WireHeader h{};
  if (!accepts([&] { h = read_header(msg); })) return 0;
  if (h.flags & kFlagAbort) return 0;  // abort notices are wire_header's
  if ((h.flags & kFlagChecksum) && msg.size() >= sizeof(WireHeader) + kChecksumBytes) seal(msg);

  // The tally of the native barrier's acknowledgements (src/wire.hpp
  // read_native_ack): what it accepts is a consistent tally.
  NativeTally tally{};
  if (accepts([&] { tally = read_native_ack(msg, h, kPeer); }))
    check(tally.min_started <= tally.max_started, "read_native_ack accepted a tally whose fewest exceed its most");

  const unsigned types = selector & 3;
  const unsigned pick = (selector >> 2) & 7;
  const bool wide = types & 1;
  Range expected;
  if (pick == 0) {
    // A receiver with 32-bit indices has dim <= 2^32, so its ranges end there.
    if (h.begin > h.end || h.end - h.begin > kMaxLength || (!wide && h.end > (uint64_t(1) << 32))) return 0;
    expected = Range{h.begin, h.end};
  } else {
    expected = sparcl_fuzz::kPayloadRanges[pick - 1];
    if (wide) {  // u64 indices: the same shapes just past 2^32
      expected.begin += uint64_t(1) << 32;
      expected.end += uint64_t(1) << 32;
    }
  }
  kDecoders[types](msg, h, expected);
  return 0;
}
