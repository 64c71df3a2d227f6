// SPDX-License-Identifier: BSD-3-Clause
// Fuzz harness: the header of a received message (src/wire.hpp read_header,
// check_identity, abort_text), as a collective's receive path applies them.
//
// Input: the message itself (header and payload), as it arrives from a peer.
// Properties: a header that read_header accepts has the magic, the version,
// only known flags, a known encoding and a bucket exactly when QSGD needs one;
// check_identity accepts exactly the receiver's own identity and step (the
// receiver expects the header's encoding and checksum flag, and a QSGD bucket
// of 512); verify_checksum accepts a message sealed anew; an abort notice's text is the payload when the header's
// length matches it; and encode_abort -> read_header -> abort_text gives the
// text back (the input reused as text).
#include <string>

#include "fuzz_util.hpp"
#include "wire.hpp"

using namespace sparcl;
using sparcl_fuzz::accepts;
using sparcl_fuzz::check;

namespace {
constexpr uint16_t kStep = sparcl_fuzz::kReceiverStep;
constexpr int kPeer = 3;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Buffer msg(size);
  if (size) std::memcpy(msg.data(), data, size);

  WireHeader h{};
  if (!accepts([&] { h = read_header(msg); })) return 0;
  check(h.magic == kWireMagic && h.version == kWireVersion, "read_header accepted a foreign header");
  check((h.flags & ~(kFlagDense | kFlagAbort | kFlagChecksum)) == 0, "read_header accepted unknown flags");
  check(codec::is_value_codec(h.encoding), "read_header accepted an unknown encoding");
  const bool qsgd = codec::qsgd_bits(Encoding(h.encoding)) != 0;
  if (!(h.flags & kFlagAbort)) check(qsgd == (h.bucket != 0), "read_header accepted a bucket that does not fit");

  if ((h.flags & kFlagChecksum) && size >= sizeof(WireHeader) + kChecksumBytes) {
    accepts([&] { verify_checksum(msg, kPeer); });
    Buffer sealed(size);
    std::memcpy(sealed.data(), data, size);
    seal(sealed);
    check(accepts([&] { verify_checksum(sealed, kPeer); }), "verify_checksum rejects a freshly sealed message");
  }

  if (h.flags & kFlagAbort) {
    const std::string text = abort_text(msg, h);
    const size_t trailer = (h.flags & kFlagChecksum) ? kChecksumBytes : 0;
    const size_t n = size - sizeof(WireHeader);  // read_header checked size >= sizeof(WireHeader)
    if (n >= trailer && h.nnz == n - trailer)
      check(text == std::string(reinterpret_cast<const char*>(data + sizeof(WireHeader)), n - trailer),
            "abort_text differs from the payload");
  }

  // The identity the receiver would hold if it agreed on dim and value type:
  // accepted iff every other field matches too.
  const auto encoding = Encoding(h.encoding);
  const Identity id = sparcl_fuzz::receiver_identity(h.dim, h.value_type, encoding, qsgd ? 512 : 0,
                                                     (h.flags & kFlagChecksum) != 0);
  const bool same = h.comm_id == id.comm_id && h.seq == id.seq && h.kind == uint8_t(id.kind) &&
                    h.algorithm == id.algorithm && h.index_width == id.index_width &&
                    ((h.flags & kFlagAbort) || h.bucket == id.bucket) &&
                    ((h.flags & kFlagAbort) || h.choice_digest == id.choice_digest) && h.step == kStep;
  const bool ok = accepts([&] { check_identity(h, id, kStep, kPeer); });
  check(ok == same, "check_identity disagrees with a field-by-field comparison");

  // Round trip of an abort notice carrying the input as its text.
  const std::string text(reinterpret_cast<const char*>(data), size);
  const SharedBuffer notice = encode_abort(id, SPARCL_ERR_CORRUPT, text);
  const WireHeader back = read_header(*notice);
  check((back.flags & kFlagAbort) && back.status == SPARCL_ERR_CORRUPT, "abort notice header lost its fields");
  check(abort_text(*notice, back) == text, "abort notice text does not round-trip");
  return 0;
}
