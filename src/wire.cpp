// SPDX-License-Identifier: BSD-3-Clause
#include "wire.hpp"

namespace sparcl {

namespace {
const char* kind_name(uint8_t k) {
  switch (k) {
    case uint8_t(Kind::Allreduce): return "allreduce";
    case uint8_t(Kind::Allgather): return "allgather";
    default: return "unknown collective";
  }
}
}  // namespace

WireHeader make_header(const Identity& id, uint16_t step) {
  WireHeader h{};
  h.magic = kWireMagic;
  h.version = kWireVersion;
  h.index_width = id.index_width;
  h.value_type = id.value_type;
  h.encoding = uint8_t(id.encoding);
  h.kind = uint8_t(id.kind);
  h.algorithm = id.algorithm;
  h.step = step;
  h.comm_id = id.comm_id;
  h.seq = id.seq;
  h.dim = id.dim;
  return h;
}

SharedBuffer encode_abort(const Identity& id, sparcl_status_t status, const std::string& text) {
  WireHeader h = make_header(id, 0);
  h.flags = kFlagAbort;
  h.status = status;
  h.nnz = text.size();
  auto buf = std::make_shared<Buffer>(sizeof h + text.size());
  std::memcpy(buf->data(), &h, sizeof h);
  if (!text.empty()) std::memcpy(buf->data() + sizeof h, text.data(), text.size());
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
  if (h.flags & ~(kFlagDense | kFlagAbort)) fail(SPARCL_ERR_CORRUPT, "unknown header flags");
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
  if (h.algorithm != id.algorithm) mismatch("algorithm", h.algorithm, id.algorithm);
  if (h.dim != id.dim) mismatch("dim", h.dim, id.dim);
  if (h.value_type != id.value_type) mismatch("value type", h.value_type, id.value_type);
  if (h.index_width != id.index_width) mismatch("index width", h.index_width, id.index_width);
  if (h.encoding != uint8_t(id.encoding)) mismatch("value encoding", h.encoding, uint8_t(id.encoding));
  if (h.step != step) mismatch("step", h.step, step);
}

std::string abort_text(const Buffer& msg, const WireHeader& h) {
  const size_t n = msg.size() - sizeof(WireHeader);
  if (h.nnz != n) return "(malformed abort message)";
  return std::string(reinterpret_cast<const char*>(msg.data() + sizeof(WireHeader)), n);
}

}  // namespace sparcl
