// SPDX-License-Identifier: BSD-3-Clause
// Fuzz harness: the index decoder of compressed vectors
// (src/codec/codec.hpp decode_indices: delta varint, bitmap, full range).
//
// Input: n (2 bytes), begin (4 bytes), range length (2 bytes; with bit 15 of
// n set, the range ends at 2^32 so that its top end is exercised), then the
// encoded bytes (tag first).
// Properties: decoded indices are n, strictly increasing and inside
// [begin, end); decoding writes nothing past them; and the decoder is the
// inverse of the encoder: writing the same indices in the coding the input
// used, at the input's size, gives back exactly the input (so no two byte
// strings decode to the same indices in one coding).
#include <vector>

#include "fuzz_util.hpp"
#include "src/codec/codec.hpp"

using namespace sparcl::codec;
using sparcl_fuzz::accepts;
using sparcl_fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sparcl_fuzz::ByteReader in(data, size);
  const uint16_t n_field = in.take<uint16_t>();
  const uint64_t begin_field = in.take<uint32_t>();
  const uint64_t length = in.take<uint16_t>();
  const size_t n = n_field & 0x7FFF;
  const bool at_top = n_field & 0x8000;
  const uint64_t end = at_top ? uint64_t(1) << 32 : begin_field + length;
  const uint64_t begin = at_top ? end - length : begin_field;
  const uint8_t* bytes = in.rest();
  const size_t count = in.left();

  constexpr uint32_t kGuard = 0xDEADBEEF;
  std::vector<uint32_t> out(n + 1, kGuard);
  if (!accepts([&] { decode_indices(bytes, count, n, begin, end, out.data()); })) return 0;
  check(out[n] == kGuard, "decode_indices wrote past n indices");
  for (size_t i = 0; i < n; ++i) {
    check(out[i] >= begin && out[i] < end, "decoded index outside the range");
    check(i == 0 || out[i] > out[i - 1], "decoded indices not strictly increasing");
  }
  const auto coding = IndexCoding(bytes[0]);
  check(coding == IndexCoding::Varint || coding == IndexCoding::Bitmap || coding == IndexCoding::Full,
        "decode_indices accepted an unknown tag");

  // The encoder's own choice is never larger than the input's form.
  const IndexPlan best = plan_indices(out.data(), n, begin, end);
  check(best.bytes <= count, "the encoder would choose a form larger than an accepted one");
  // The same coding at the same size reproduces the input byte for byte
  // (write_indices needs 8 bytes of slack for its branch-free varints).
  std::vector<uint8_t> again(count + 8);
  if (!accepts([&] { write_indices(IndexPlan{coding, count}, out.data(), n, begin, end, again.data()); }))
    sparcl_fuzz::finding("write_indices rejected indices that decode_indices accepted");
  check(std::memcmp(again.data(), bytes, count) == 0, "decode then encode does not give back the input");
  return 0;
}
