// SPDX-License-Identifier: BSD-3-Clause
#include "wire.hpp"

#include "crc32c.hpp"

namespace sparcl {

namespace {
const char* kind_name(uint8_t k) {
  switch (k) {
    case uint8_t(Kind::Allreduce): return "allreduce";
    case uint8_t(Kind::Allgather): return "allgather";
    case uint8_t(Kind::ReduceScatter): return "reduce-scatter";
    default: return "unknown collective";
  }
}

std::string type_name(uint8_t t) {
  switch (t) {
    case SPARCL_FLOAT32: return "float32";
    case SPARCL_FLOAT64: return "float64";
    case SPARCL_INT32: return "int32";
    case SPARCL_INT64: return "int64";
    default: return std::to_string(t);
  }
}

// The op of an allreduce, from its algorithm field (sparcl's own algorithms sum).
const char* op_name(uint8_t algorithm) {
  if (!is_pass_through(algorithm)) return "SPARCL_SUM";
  switch (algorithm - kPassThroughAlgorithm) {
    case SPARCL_SUM: return "SPARCL_SUM";
    case SPARCL_PROD: return "SPARCL_PROD";
    case SPARCL_MAX: return "SPARCL_MAX";
    case SPARCL_MIN: return "SPARCL_MIN";
    default: return "unknown";
  }
}

// The second CRC of the trailer covers the header and the payload's CRC, so
// that a forwarder that rewrites the step recomputes 68 bytes, not the payload.
uint32_t header_crc(const Buffer& msg, uint32_t payload_crc) {
  return crc32c(&payload_crc, sizeof payload_crc, crc32c(msg.data(), sizeof(WireHeader)));
}
}  // namespace

WireHeader make_header(const Identity& id, uint16_t step) {
  WireHeader h{};
  h.magic = kWireMagic;
  h.version = kWireVersion;
  h.flags = id.checksum ? kFlagChecksum : 0;
  h.index_width = id.index_width;
  h.value_type = id.value_type;
  h.encoding = uint8_t(id.encoding);
  h.kind = uint8_t(id.kind);
  h.algorithm = id.algorithm;
  h.step = uint16_t(id.step_base + step);
  h.comm_id = id.comm_id;
  h.bucket = id.bucket;
  h.seq = id.seq;
  h.dim = id.dim;
  h.choice_digest = id.choice_digest;
  return h;
}

void seal(Buffer& msg) {
  uint8_t* trailer = msg.data() + msg.size() - kChecksumBytes;
  const uint32_t payload = crc32c(msg.data() + sizeof(WireHeader), msg.size() - sizeof(WireHeader) - kChecksumBytes);
  const uint32_t header = header_crc(msg, payload);
  std::memcpy(trailer, &payload, 4);
  std::memcpy(trailer + 4, &header, 4);
}

void set_step(Buffer& msg, uint16_t step) {
  std::memcpy(msg.data() + offsetof(WireHeader, step), &step, sizeof step);
  if (!(msg.data()[offsetof(WireHeader, flags)] & kFlagChecksum)) return;
  uint32_t payload;
  std::memcpy(&payload, msg.data() + msg.size() - kChecksumBytes, 4);
  const uint32_t header = header_crc(msg, payload);
  std::memcpy(msg.data() + msg.size() - 4, &header, 4);
}

void verify_checksum(const Buffer& msg, int peer) {
  const std::string from = " in a message from rank " + std::to_string(peer);
  if (msg.size() < sizeof(WireHeader) + kChecksumBytes)
    fail(SPARCL_ERR_CORRUPT, "message too short for the header and its checksums" + from);
  uint32_t payload, header;
  std::memcpy(&payload, msg.data() + msg.size() - kChecksumBytes, 4);
  std::memcpy(&header, msg.data() + msg.size() - 4, 4);
  if (header_crc(msg, payload) != header)
    fail(SPARCL_ERR_CORRUPT, "CRC32C mismatch in the header" + from + " (corrupted in transit)");
  if (crc32c(msg.data() + sizeof(WireHeader), msg.size() - sizeof(WireHeader) - kChecksumBytes) != payload)
    fail(SPARCL_ERR_CORRUPT, "CRC32C mismatch in the payload" + from + " (corrupted in transit)");
}

SharedBuffer encode_ack(const Identity& id, uint16_t step) {
  const WireHeader h = make_header(id, step);
  auto buf = std::make_shared<Buffer>(sizeof h + (id.checksum ? kChecksumBytes : 0));
  std::memcpy(buf->data(), &h, sizeof h);
  if (id.checksum) seal(*buf);
  return buf;
}

void check_ack(const Buffer& msg, const WireHeader& h, int peer) {
  const size_t trailer = (h.flags & kFlagChecksum) ? kChecksumBytes : 0;
  if ((h.flags & kFlagDense) || h.begin != 0 || h.end != 0 || h.nnz != 0 || msg.size() != sizeof h + trailer)
    fail(SPARCL_ERR_CORRUPT, "malformed acknowledgement from rank " + std::to_string(peer));
}

SharedBuffer encode_native_ack(const Identity& id, uint16_t step, const NativeTally& tally) {
  WireHeader h = make_header(id, step);
  h.nnz = kNativeTallyBytes;
  auto buf = std::make_shared<Buffer>(sizeof h + kNativeTallyBytes + (id.checksum ? kChecksumBytes : 0));
  const uint64_t words[3] = {tally.min_started, tally.max_started, tally.retired ? uint64_t(1) : 0};
  std::memcpy(buf->data(), &h, sizeof h);
  std::memcpy(buf->data() + sizeof h, words, sizeof words);
  if (id.checksum) seal(*buf);
  return buf;
}

NativeTally read_native_ack(const Buffer& msg, const WireHeader& h, int peer) {
  const size_t trailer = (h.flags & kFlagChecksum) ? kChecksumBytes : 0;
  uint64_t words[3] = {1, 0, 2};
  if (!(h.flags & kFlagDense) && h.begin == 0 && h.end == 0 && h.nnz == kNativeTallyBytes &&
      msg.size() == sizeof h + kNativeTallyBytes + trailer)
    std::memcpy(words, msg.data() + sizeof h, sizeof words);
  if (words[0] > words[1] || words[2] > 1)
    fail(SPARCL_ERR_CORRUPT, "malformed acknowledgement from rank " + std::to_string(peer));
  return NativeTally{words[0], words[1], words[2] == 1};
}

SharedBuffer encode_abort(const Identity& id, sparcl_status_t status, const std::string& text) {
  WireHeader h = make_header(id, 0);
  h.flags = uint8_t(h.flags | kFlagAbort);
  h.status = status;
  h.nnz = text.size();
  auto buf = std::make_shared<Buffer>(sizeof h + text.size() + (id.checksum ? kChecksumBytes : 0));
  std::memcpy(buf->data(), &h, sizeof h);
  if (!text.empty()) std::memcpy(buf->data() + sizeof h, text.data(), text.size());
  if (id.checksum) seal(*buf);
  return buf;
}

WireHeader read_header(const Buffer& msg) {
  WireHeader h;
  if (msg.size() < sizeof h) fail(SPARCL_ERR_CORRUPT, "message shorter than the sparcl header");
  std::memcpy(&h, msg.data(), sizeof h);
  if (h.magic != kWireMagic) fail(SPARCL_ERR_CORRUPT, "message without the sparcl magic number");
  if (h.version != kWireVersion)
    fail(SPARCL_ERR_MISMATCH, "peer speaks wire version " + std::to_string(h.version) +
                                  ", this library " + std::to_string(kWireVersion));
  if (h.flags & ~(kFlagDense | kFlagAbort | kFlagChecksum)) fail(SPARCL_ERR_CORRUPT, "unknown header flags");
  if (h.index_coding > kIndicesCoded) fail(SPARCL_ERR_CORRUPT, "unknown index coding " + std::to_string(h.index_coding));
  if (!codec::is_value_codec(h.encoding))
    fail(SPARCL_ERR_CORRUPT, "unknown value encoding " + std::to_string(h.encoding));
  if (!(h.flags & kFlagAbort)) {
    const bool qsgd = codec::qsgd_bits(Encoding(h.encoding)) != 0;
    if (qsgd ? h.bucket == 0 : h.bucket != 0)
      fail(SPARCL_ERR_CORRUPT, qsgd ? "QSGD message with a bucket size of 0" : "bucket size set for an encoding without buckets");
  }
  return h;
}

void check_identity(const WireHeader& h, const Identity& id, uint16_t step, int peer) {
  const std::string who = "rank " + std::to_string(peer);
  auto mismatch = [&](const std::string& what, uint64_t theirs, uint64_t ours) {
    fail(SPARCL_ERR_MISMATCH, who + " called with " + what + " " + std::to_string(theirs) +
                                  ", this rank with " + std::to_string(ours));
  };
  if (h.comm_id != id.comm_id) mismatch("communicator id", h.comm_id, id.comm_id);
  if (h.seq != id.seq) mismatch("collective sequence number", h.seq, id.seq);
  if (h.kind != uint8_t(id.kind))
    fail(SPARCL_ERR_MISMATCH, who + " called " + kind_name(h.kind) + ", this rank " +
                                  kind_name(uint8_t(id.kind)));
  // The caller's arguments before the algorithm: auto derives its choice from
  // them, so ranks with different dims also differ in the algorithm, and the
  // dim is what the caller has to fix.
  if (h.dim != id.dim) mismatch("dim", h.dim, id.dim);
  if (h.value_type != id.value_type)
    fail(SPARCL_ERR_MISMATCH, who + " called with value type " + type_name(h.value_type) + ", this rank with " +
                                  type_name(id.value_type));
  if ((is_pass_through(h.algorithm) || is_pass_through(id.algorithm)) && h.algorithm != id.algorithm)
    fail(SPARCL_ERR_MISMATCH, who + " called with reduction op " + op_name(h.algorithm) + ", this rank with " +
                                  op_name(id.algorithm));
  if (h.index_width != id.index_width) mismatch("index width", h.index_width, id.index_width);
  if (h.encoding != uint8_t(id.encoding))
    fail(SPARCL_ERR_MISMATCH, who + " sends " + codec::value_codec_name(Encoding(h.encoding)) +
                                  " values, this rank expects " + codec::value_codec_name(id.encoding) +
                                  " (value encoding: SPARCL_ENCODING, or the compressors' values)");
  // The compressors' selection before auto's records (a global call has none).
  if ((h.algorithm == kGlobalSelectAlgorithm) != (id.algorithm == kGlobalSelectAlgorithm))
    fail(SPARCL_ERR_MISMATCH, who + " selects " + (h.algorithm == kGlobalSelectAlgorithm ? "globally" : "locally") +
                                  ", this rank " + (id.algorithm == kGlobalSelectAlgorithm ? "globally" : "locally") +
                                  " (the compressors' selection, SPARCL_SELECTION)");
  // (auto's records first: ranks with other records may choose other algorithms.)
  if (!(h.flags & kFlagAbort) && h.choice_digest != id.choice_digest)
    fail(SPARCL_ERR_MISMATCH, who + " chose the algorithm from other records than this rank (auto, after a collective "
                                    "that failed on some ranks only); every rank has now reset them, and the next "
                                    "collective is exact");
  if (h.algorithm != id.algorithm)
    mismatch(id.kind == Kind::ReduceScatter ? "partition" : "algorithm", h.algorithm, id.algorithm);
  if (!(h.flags & kFlagAbort) && h.bucket != id.bucket) mismatch("QSGD bucket size", h.bucket, id.bucket);
  if (bool(h.flags & kFlagChecksum) != id.checksum)
    fail(SPARCL_ERR_MISMATCH, who + (id.checksum ? " sends no checksums, this rank expects them"
                                                 : " sends checksums, this rank does not expect them") +
                                  " (SPARCL_CHECKSUM)");
  // With equal identities, a later step means a message of this peer never
  // came: each step's message takes the place of the one before (same tag).
  if (h.step > step)
    fail(SPARCL_ERR_MISMATCH, who + " sent its message of step " + std::to_string(h.step) + " where step " +
                                  std::to_string(step) + " was expected: its message of step " +
                                  std::to_string(step) + " never arrived");
  if (h.step != step) mismatch("step", h.step, step);
}

std::string abort_text(const Buffer& msg, const WireHeader& h) {
  const size_t trailer = (h.flags & kFlagChecksum) ? kChecksumBytes : 0;
  if (msg.size() < sizeof(WireHeader) + trailer) return "(malformed abort message)";
  const size_t n = msg.size() - sizeof(WireHeader) - trailer;
  if (h.nnz != n) return "(malformed abort message)";
  return std::string(reinterpret_cast<const char*>(msg.data() + sizeof(WireHeader)), n);
}

}  // namespace sparcl
