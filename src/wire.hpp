// SPDX-License-Identifier: BSD-3-Clause
// The wire format: every message starts with a 64-byte header that identifies
// the collective it belongs to (communicator, sequence number, kind, algorithm,
// step, dim, value type, index width, encoding) and describes its payload (the
// index range it covers, sparse or dense, number of entries). Receivers
// validate all of it before reading the payload (see docs/wire-format.md).
//
// Payload of a data message:
//   sparse: nnz indices (index_width bytes each), zero-padded to 8 bytes, then nnz values;
//   dense:  (end - begin) values.
// Payload of an abort message: the error text (nnz bytes).
// All fields are little-endian.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "buffer.hpp"
#include "sparse.hpp"

namespace sparcl {

constexpr uint32_t kWireMagic = 0x4C435053;  // "SPCL"
constexpr uint8_t kWireVersion = 1;

enum WireFlags : uint8_t { kFlagDense = 1, kFlagAbort = 2 };
enum class Kind : uint8_t { Allreduce = 1, Allgather = 2 };
enum class Encoding : uint8_t { Raw = 0 };

#pragma pack(push, 1)
struct WireHeader {
  uint32_t magic;
  uint8_t version;
  uint8_t flags;
  uint8_t index_width;
  uint8_t value_type;
  uint8_t encoding;
  uint8_t kind;
  uint8_t algorithm;
  uint8_t reserved0;
  uint16_t step;
  uint16_t reserved1;
  uint32_t comm_id;
  int32_t status;  // abort messages: the sparcl_status_t being reported
  uint64_t seq;
  uint64_t dim;
  uint64_t begin;
  uint64_t end;
  uint64_t nnz;
};
#pragma pack(pop)
static_assert(sizeof(WireHeader) == 64, "wire header must be 64 bytes");
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the wire format is little-endian");

// What every message of one collective shares; the receiver's own copy is
// compared with each incoming header.
struct Identity {
  uint32_t comm_id = 0;
  uint64_t seq = 0;
  Kind kind = Kind::Allreduce;
  uint8_t algorithm = 0;
  uint64_t dim = 0;
  uint8_t value_type = 0;
  uint8_t index_width = 0;
  Encoding encoding = Encoding::Raw;
};

template <class V>
constexpr uint8_t value_type_code();
template <>
constexpr uint8_t value_type_code<float>() { return SPARCL_FLOAT32; }
template <>
constexpr uint8_t value_type_code<double>() { return SPARCL_FLOAT64; }

inline size_t pad8(size_t n) { return (n + 7) & ~size_t(7); }

// Payload bytes of a data message, in 128 bits: a corrupt header may claim
// counts whose byte size does not fit in 64.
inline uint128 payload_bytes(bool dense, uint64_t nnz, uint64_t length, size_t index_width, size_t value_size) {
  if (dense) return uint128(length) * value_size;
  const uint128 index_bytes = uint128(nnz) * index_width;
  return ((index_bytes + 7) & ~uint128(7)) + uint128(nnz) * value_size;
}

WireHeader make_header(const Identity& id, uint16_t step);

// Encodes `v` as one message. A sparse view that would not be smaller than
// its dense form is sent dense (SparCML's rule).
template <class V, class I>
SharedBuffer encode(const Identity& id, uint16_t step, const View<V, I>& v) {
  WireHeader h = make_header(id, step);
  const bool dense = v.dense || prefer_dense<V, I>(v.nnz, v.range.size());
  h.flags = dense ? kFlagDense : 0;
  h.begin = v.range.begin;
  h.end = v.range.end;
  h.nnz = dense ? v.range.size() : v.nnz;
  auto buf = std::make_shared<Buffer>(sizeof(WireHeader) +
                                      size_t(payload_bytes(dense, h.nnz, v.range.size(), sizeof(I), sizeof(V))));
  uint8_t* p = buf->data();
  std::memcpy(p, &h, sizeof h);
  p += sizeof h;
  if (dense) {
    write_dense(v, reinterpret_cast<V*>(p));
  } else {
    const size_t ib = v.nnz * sizeof(I);
    if (ib) std::memcpy(p, v.idx, ib);
    std::memset(p + ib, 0, pad8(ib) - ib);
    if (v.nnz) std::memcpy(p + pad8(ib), v.val, v.nnz * sizeof(V));
  }
  return buf;
}

// An abort message: tells peers that this collective failed with `status`.
SharedBuffer encode_abort(const Identity& id, sparcl_status_t status, const std::string& text);

// Reads and checks the header of a received message: magic, version, known
// flags and a size that can hold it. Throws SPARCL_ERR_CORRUPT.
WireHeader read_header(const Buffer& msg);

// Checks that a header belongs to the collective `id` at `step`. Throws
// SPARCL_ERR_MISMATCH naming the first field that differs.
void check_identity(const WireHeader& h, const Identity& id, uint16_t step, int peer);

// The text of an abort message.
std::string abort_text(const Buffer& msg, const WireHeader& h);

// Validates the payload of a data message covering `expected` and returns a
// view into `msg`: exact size, nnz <= length, indices strictly increasing and
// inside the range. Throws SPARCL_ERR_CORRUPT (or MISMATCH for another range).
template <class V, class I>
View<V, I> decode(const Buffer& msg, const WireHeader& h, Range expected, int peer) {
  if (h.begin != expected.begin || h.end != expected.end)
    fail(SPARCL_ERR_MISMATCH, "rank " + std::to_string(peer) + " sent index range [" +
                                  std::to_string(h.begin) + ", " + std::to_string(h.end) +
                                  "), expected [" + std::to_string(expected.begin) + ", " +
                                  std::to_string(expected.end) + ")");
  const bool dense = h.flags & kFlagDense;
  const uint64_t length = expected.size();
  const std::string from = " in a message from rank " + std::to_string(peer);
  if (dense ? h.nnz != length : h.nnz > length) fail(SPARCL_ERR_CORRUPT, "bad entry count" + from);
  if (msg.size() - sizeof(WireHeader) != payload_bytes(dense, h.nnz, length, sizeof(I), sizeof(V)))
    fail(SPARCL_ERR_CORRUPT, "message size does not match its header" + from);
  const uint8_t* p = msg.data() + sizeof(WireHeader);
  View<V, I> v;
  v.range = expected;
  v.dense = dense;
  v.nnz = h.nnz;
  if (dense) {
    v.val = reinterpret_cast<const V*>(p);
    return v;
  }
  v.idx = reinterpret_cast<const I*>(p);
  v.val = reinterpret_cast<const V*>(p + pad8(h.nnz * sizeof(I)));
  uint64_t next = expected.begin;  // smallest index allowed next
  for (size_t k = 0; k < v.nnz; ++k) {
    const uint64_t ix = v.idx[k];
    if (ix < next || ix >= expected.end)
      fail(SPARCL_ERR_CORRUPT, "index out of range or out of order" + from);
    next = ix + 1;
  }
  return v;
}

}  // namespace sparcl
