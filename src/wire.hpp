// SPDX-License-Identifier: BSD-3-Clause
// The wire format: every message starts with a 64-byte header that identifies
// the collective it belongs to (communicator, sequence number, kind, algorithm,
// step, dim, value type, index width, value encoding) and describes its
// payload (the index range it covers, sparse or dense, number of entries).
// Receivers validate all of it before reading the payload (see
// docs/wire-format.md, which also gives the byte layout).
//
// Payload of a data message:
//   sparse: nnz indices (index_width bytes each), zero-padded to 8 bytes, then
//           the nnz values in the message's encoding;
//   dense:  the (end - begin) values in the message's encoding.
// Encodings (float32 vectors; float64 vectors always travel raw): raw values,
// fp16, bf16, or QSGD 8/4/2-bit with one float32 scale per `bucket` values
// (the layouts of ml/compress/codec.hpp).
// Payload of an abort message: the error text (nnz bytes).
// With checksums on, 8 more bytes follow: CRC32C of the payload, then CRC32C
// of the header followed by that first CRC.
// All fields are little-endian.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>

#include "buffer.hpp"
#include "src/codec/codec.hpp"
#include "src/codec/common.hpp"
#include "sparse.hpp"

namespace sparcl {

constexpr uint32_t kWireMagic = 0x4C435053;  // "SPCL"
constexpr uint8_t kWireVersion = 3;

enum WireFlags : uint8_t { kFlagDense = 1, kFlagAbort = 2, kFlagChecksum = 4 };
// How a sparse payload's indices travel: as index_width-byte integers, or
// (4-byte indices only, where it is smaller) in the index codec of
// src/codec (gaps as varints, or a bitmap), after their byte count.
enum IndexCodingCode : uint8_t { kIndicesPlain = 0, kIndicesCoded = 1 };
// The reduce-scatter's algorithm field holds its sparcl_partition_t.
enum class Kind : uint8_t { Allreduce = 1, Allgather = 2, ReduceScatter = 3 };
// Value encodings: the codecs of ml/compress (same codes as sparcl_value_encoding_t).
using Encoding = codec::ValueCodec;

constexpr size_t kChecksumBytes = 8;

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
  uint8_t index_coding;  // sparse payloads: kIndicesPlain or kIndicesCoded
  uint16_t step;
  uint16_t choice_digest;  // what auto chose its algorithm from (0 for a fixed algorithm)
  uint32_t comm_id;
  union {
    int32_t status;   // abort messages: the sparcl_status_t being reported
    uint32_t bucket;  // data messages: values per QSGD scale (QSGD encodings; else 0)
  };
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
  uint32_t bucket = 0;        // QSGD values per scale; 0 for the other encodings
  bool checksum = false;      // every message carries the CRC32C trailer
  bool index_coding = true;   // sparse messages may code their indices (not compared: receivers take both)
  uint64_t rounding_key = 0;  // seeds this collective's stochastic rounding (not sent)
  // Added to the step of every message (not sent as such): an algorithm that
  // runs after other rounds of the same collective (auto's calibration)
  // numbers its own rounds from 0.
  uint16_t step_base = 0;
  // A digest of what auto derived this collective's algorithm from (its
  // records, parameters and measurements), sent and compared like the
  // algorithm: ranks whose records differ (after a collective that failed on
  // some ranks only) fail at once with SPARCL_ERR_MISMATCH, even where they
  // happen to choose the same algorithm. 0 for a fixed algorithm.
  uint16_t choice_digest = 0;
};

template <class V>
constexpr uint8_t value_type_code();
template <>
constexpr uint8_t value_type_code<float>() { return SPARCL_FLOAT32; }
template <>
constexpr uint8_t value_type_code<double>() { return SPARCL_FLOAT64; }

inline size_t pad8(size_t n) { return (n + 7) & ~size_t(7); }

inline bool is_lossy(Encoding e) { return e != Encoding::Raw; }

// Bytes of n values of type V in encoding `e` (QSGD: `bucket` values per
// scale), in 128 bits: a corrupt header may claim counts whose byte size does
// not fit in 64. Lossy encodings exist for float32 only.
template <class V>
uint128 values_bytes(Encoding e, uint64_t n, uint32_t bucket) {
  if (e == Encoding::Raw) return uint128(n) * sizeof(V);
  // More values than any message holds: a size no message has (and the
  // codec's size_t arithmetic cannot overflow below it).
  if (n > (uint64_t(1) << 56)) return uint128(1) << 100;
  return codec::encoded_values_size(e, size_t(n), bucket);
}

// Payload bytes of a data message (without the checksum trailer).
template <class V>
uint128 payload_bytes(const Identity& id, bool dense, uint64_t nnz, uint64_t length, size_t index_width) {
  if (dense) return values_bytes<V>(id.encoding, length, id.bucket);
  return ((uint128(nnz) * index_width + 7) & ~uint128(7)) + values_bytes<V>(id.encoding, nnz, id.bucket);
}

// Rounding streams of the stochastic encodings (QSGD). The draws of a
// message come from (the collective's rounding_key, step, rounding stream). A piece
// that only its sender holds uses the sender's rank; a piece that several
// ranks hold bitwise identically and each encode in the same step uses a
// stream named after the piece, so that they all send (and keep) the same
// bytes.
inline uint64_t own_stream(int rank) { return uint64_t(uint32_t(rank)); }

// Fewer entries travel with plain indices: coding them would save a few
// bytes at best.
constexpr size_t kMinCodedIndices = 16;
inline uint64_t shared_stream(uint64_t key) { return (uint64_t(1) << 63) | key; }
inline uint64_t rounding_seed(const Identity& id, uint16_t step, uint64_t rounding_stream) {
  return codec::derive_seed(id.rounding_key, step, rounding_stream);
}

WireHeader make_header(const Identity& id, uint16_t step);

// Writes the checksum trailer into the last kChecksumBytes of `msg`.
void seal(Buffer& msg);

// Sets the step of a message being forwarded (its checksum follows).
void set_step(Buffer& msg, uint16_t step);

// Checks the checksum trailer of a message from `peer`. Throws
// SPARCL_ERR_CORRUPT naming the peer.
void verify_checksum(const Buffer& msg, int peer);

// Encodes `v` as one message of `step`; `rounding_stream` picks the rounding stream
// (see own_stream). A sparse view whose sparse form would not be smaller
// than its dense form is sent dense (SparCML's rule, on encoded sizes).
// Throws SPARCL_ERR_INVALID_ARG for values QSGD cannot encode (NaN, Inf).
template <class V, class I>
SharedBuffer encode(const Identity& id, uint16_t step, const View<V, I>& v, uint64_t rounding_stream = 0) {
  const bool lossy = is_lossy(id.encoding);
  if (lossy && !std::is_same<V, float>::value)
    fail(SPARCL_ERR_INTERNAL, "value encodings other than raw are for float32 vectors");
  WireHeader h = make_header(id, step);
  const uint64_t length = v.range.size();
  const uint128 sparse_bytes = uint128(v.nnz) * sizeof(I) + values_bytes<V>(id.encoding, v.nnz, id.bucket);
  const bool dense = v.dense || sparse_bytes >= values_bytes<V>(id.encoding, length, id.bucket);
  h.flags = uint8_t(h.flags | (dense ? kFlagDense : 0));
  h.begin = v.range.begin;
  h.end = v.range.end;
  h.nnz = dense ? length : v.nnz;
  size_t index_bytes = dense ? 0 : pad8(v.nnz * sizeof(I));
  // Coded indices where that is smaller (the plain form's rule above decides
  // sparse or dense, so the rule stays SparCML's whatever the coding).
  codec::IndexPlan plan;
  if constexpr (std::is_same<I, uint32_t>::value) {
    if (!dense && id.index_coding && v.nnz >= kMinCodedIndices) {
      plan = codec::plan_indices(v.idx, v.nnz, v.range.begin, v.range.end);
      if (pad8(4 + plan.bytes) < index_bytes) index_bytes = pad8(4 + plan.bytes), h.index_coding = kIndicesCoded;
    }
  }
  const size_t value_bytes = size_t(values_bytes<V>(id.encoding, h.nnz, id.bucket));
  auto buf = std::make_shared<Buffer>(sizeof(WireHeader) + index_bytes + value_bytes +
                                      (id.checksum ? kChecksumBytes : 0));
  uint8_t* p = buf->data();
  std::memcpy(p, &h, sizeof h);
  p += sizeof h;
  if (h.index_coding == kIndicesCoded) {
    if constexpr (std::is_same<I, uint32_t>::value) {
      const uint32_t coded = uint32_t(plan.bytes);
      std::memcpy(p, &coded, 4);
      codec::write_indices(plan, v.idx, v.nnz, v.range.begin, v.range.end, p + 4);
      std::memset(p + 4 + plan.bytes, 0, index_bytes - 4 - plan.bytes);
      p += index_bytes;
    }
  } else if (!dense) {
    const size_t ib = v.nnz * sizeof(I);
    if (ib) std::memcpy(p, v.idx, ib);
    std::memset(p + ib, 0, index_bytes - ib);
    p += index_bytes;
  }
  if (!lossy) {
    if (dense)
      write_dense(v, reinterpret_cast<V*>(p));
    else if (v.nnz)
      std::memcpy(p, v.val, v.nnz * sizeof(V));
  } else if constexpr (std::is_same<V, float>::value) {
    const uint64_t seed = rounding_seed(id, step, rounding_stream);
    if (dense && !v.dense) {  // encoded dense: stage the zeros too
      Array<float> staged(length);
      write_dense(v, staged.data());
      codec::encode_values(id.encoding, staged.data(), length, id.bucket, seed, p);
    } else {
      codec::encode_values(id.encoding, v.val, h.nnz, id.bucket, seed, p);
    }
  }
  if (id.checksum) seal(*buf);
  return buf;
}

// An acknowledgement: an empty data message over [0, 0) (the barrier that
// ends a collective with checksums).
SharedBuffer encode_ack(const Identity& id, uint16_t step);

// Checks that a data message is an acknowledgement. Throws SPARCL_ERR_CORRUPT.
void check_ack(const Buffer& msg, const WireHeader& h, int peer);

// What the barrier before a transport's own collective (MPI_Iallreduce)
// tells: the fewest and the most such collectives any rank seen so far has
// started on the transport's communicator for them, and whether any of
// those ranks has stopped using it. Merged along a dissemination barrier, it
// covers every rank after ceil(log2 P) rounds.
struct NativeTally {
  uint64_t min_started = 0, max_started = 0;
  bool retired = false;
  void merge(const NativeTally& o) {
    min_started = o.min_started < min_started ? o.min_started : min_started;
    max_started = o.max_started > max_started ? o.max_started : max_started;
    retired = retired || o.retired;
  }
};
constexpr size_t kNativeTallyBytes = 24;

// An acknowledgement that carries a tally: a data message over [0, 0) whose
// payload is min_started, max_started and flags (bit 0: retired), 8 bytes
// each; nnz holds the payload size.
SharedBuffer encode_native_ack(const Identity& id, uint16_t step, const NativeTally& tally);
// Checks such an acknowledgement and returns its tally. Throws SPARCL_ERR_CORRUPT.
NativeTally read_native_ack(const Buffer& msg, const WireHeader& h, int peer);

// The algorithm field of an allreduce that the transport performs itself
// (an op other than SPARCL_SUM, or integer values): kPassThroughAlgorithm +
// the sparcl_op_t. Never a sparcl_algorithm_t.
constexpr uint8_t kPassThroughAlgorithm = 0x40;
inline uint8_t pass_through_algorithm(int op) { return uint8_t(kPassThroughAlgorithm + op); }
inline bool is_pass_through(uint8_t algorithm) { return (algorithm & 0xC0) == kPassThroughAlgorithm; }

// The algorithm field of a compressed allreduce with global selection
// (collectives/global_select.cpp). Never a sparcl_algorithm_t.
constexpr uint8_t kGlobalSelectAlgorithm = 0x80;

// An abort message: tells peers that this collective failed with `status`.
SharedBuffer encode_abort(const Identity& id, sparcl_status_t status, const std::string& text);

// Reads and checks the header of a received message: size, magic, version,
// known flags, zero reserved fields, a known encoding and a bucket that fits
// it. Throws SPARCL_ERR_CORRUPT (version: SPARCL_ERR_MISMATCH).
WireHeader read_header(const Buffer& msg);

// Checks that a header belongs to the collective `id` at `step`. Throws
// SPARCL_ERR_MISMATCH naming the first field that differs.
void check_identity(const WireHeader& h, const Identity& id, uint16_t step, int peer);

// The text of an abort message.
std::string abort_text(const Buffer& msg, const WireHeader& h);

// A validated data message: a view of its entries, into the message itself
// for raw values, else into `stream`, which holds the decoded values (and a
// copy of the indices).
template <class V, class I>
struct Decoded {
  View<V, I> view;
  std::shared_ptr<const Stream<V, I>> stream;
};

// Validates the payload of a data message covering `expected` (its header
// from read_header) and returns its entries: exact size, nnz <= length,
// indices strictly increasing and inside the range, zero padding, and values
// that decode (QSGD scales finite and >= 0, no unused code, padding bits as
// the codec writes them). Throws SPARCL_ERR_CORRUPT (or MISMATCH for another
// range). Needs no transport: a header and payload in a Buffer suffice.
template <class V, class I>
Decoded<V, I> decode(const Buffer& msg, const WireHeader& h, Range expected, int peer) {
  if (h.begin != expected.begin || h.end != expected.end)
    fail(SPARCL_ERR_MISMATCH, "rank " + std::to_string(peer) + " sent index range [" +
                                  std::to_string(h.begin) + ", " + std::to_string(h.end) +
                                  "), expected [" + std::to_string(expected.begin) + ", " +
                                  std::to_string(expected.end) + ")");
  const std::string from = " in a message from rank " + std::to_string(peer);
  const auto encoding = Encoding(h.encoding);
  const bool lossy = is_lossy(encoding);
  if (lossy && !std::is_same<V, float>::value)
    fail(SPARCL_ERR_CORRUPT, std::string(codec::value_codec_name(encoding)) + " values of a float64 vector" + from);
  const bool dense = h.flags & kFlagDense;
  const uint64_t length = expected.size();
  if (dense ? h.nnz != length : h.nnz > length) fail(SPARCL_ERR_CORRUPT, "bad entry count" + from);
  Identity shape;
  shape.encoding = encoding;
  shape.bucket = h.bucket;
  const size_t trailer = (h.flags & kFlagChecksum) ? kChecksumBytes : 0;
  const bool coded = h.index_coding == kIndicesCoded;
  if (coded && (dense || sizeof(I) != 4))
    fail(SPARCL_ERR_CORRUPT, std::string("coded indices in a ") + (dense ? "dense message" : "message of 8-byte indices") +
                                 from);
  if (msg.size() < sizeof(WireHeader) + trailer) fail(SPARCL_ERR_CORRUPT, "message size does not match its header" + from);
  const uint128 payload = coded ? uint128(msg.size() - sizeof(WireHeader) - trailer)
                                : payload_bytes<V>(shape, dense, h.nnz, length, sizeof(I));
  if (msg.size() - sizeof(WireHeader) - trailer != payload)
    fail(SPARCL_ERR_CORRUPT, "message size does not match its header" + from);
  const uint8_t* p = msg.data() + sizeof(WireHeader);
  Decoded<V, I> d;
  View<V, I>& v = d.view;
  v.range = expected;
  v.dense = dense;
  v.nnz = h.nnz;
  size_t index_bytes = 0;
  if (coded) {
    // [u32 coded bytes][the codec's bytes][zeros to a multiple of 8], then the values.
    const uint128 vb = values_bytes<V>(encoding, v.nnz, h.bucket);
    uint32_t cb = 0;
    if (payload < vb + 8 || payload - vb > uint128(SIZE_MAX)) fail(SPARCL_ERR_CORRUPT, "coded indices do not fit" + from);
    index_bytes = size_t(payload - vb);
    std::memcpy(&cb, p, 4);
    if (index_bytes % 8 || pad8(size_t(4) + cb) != index_bytes)
      fail(SPARCL_ERR_CORRUPT, "coded index bytes do not match the message size" + from);
    for (size_t k = 4 + size_t(cb); k < index_bytes; ++k)
      if (p[k]) fail(SPARCL_ERR_CORRUPT, "nonzero padding after the indices" + from);
    auto s = std::make_shared<Stream<V, I>>();
    s->range = expected;
    s->dense = false;
    s->idx.resize(v.nnz);
    if constexpr (sizeof(I) == 4) {
      try {
        codec::decode_indices(p + 4, cb, v.nnz, expected.begin, expected.end, s->idx.data());
      } catch (const Error& e) {
        fail(SPARCL_ERR_CORRUPT, e.what() + from);
      }
    }
    const uint8_t* values = p + index_bytes;
    s->val.resize(v.nnz);
    if (!lossy) {
      if (v.nnz) std::memcpy(s->val.data(), values, v.nnz * sizeof(V));
    } else if constexpr (std::is_same<V, float>::value) {
      try {
        codec::decode_values(encoding, values, size_t(vb), v.nnz, h.bucket, s->val.data());
      } catch (const Error& e) {
        fail(SPARCL_ERR_CORRUPT, e.what() + from);
      }
    }
    d.view = s->view();
    d.stream = std::move(s);
    return d;
  }
  if (!dense) {
    v.idx = reinterpret_cast<const I*>(p);
    uint64_t next = expected.begin;  // smallest index allowed next
    for (size_t k = 0; k < v.nnz; ++k) {
      const uint64_t ix = v.idx[k];
      if (ix < next || ix >= expected.end)
        fail(SPARCL_ERR_CORRUPT, "index out of range or out of order" + from);
      next = ix + 1;
    }
    index_bytes = pad8(v.nnz * sizeof(I));
    for (size_t k = v.nnz * sizeof(I); k < index_bytes; ++k)
      if (p[k]) fail(SPARCL_ERR_CORRUPT, "nonzero padding after the indices" + from);
  }
  const uint8_t* values = p + index_bytes;
  if (!lossy) {
    v.val = reinterpret_cast<const V*>(values);
    return d;
  }
  if constexpr (std::is_same<V, float>::value) {
    auto s = std::make_shared<Stream<V, I>>();
    s->range = expected;
    s->dense = dense;
    if (!dense) s->idx.assign(v.idx, v.idx + v.nnz);
    s->val.resize(v.nnz);
    try {
      codec::decode_values(encoding, values, size_t(payload) - index_bytes, v.nnz, h.bucket, s->val.data());
    } catch (const Error& e) {
      fail(SPARCL_ERR_CORRUPT, e.what() + from);
    }
    d.view = s->view();
    d.stream = std::move(s);
  }
  return d;
}

}  // namespace sparcl
