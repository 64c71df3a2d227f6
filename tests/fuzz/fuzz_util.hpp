// SPDX-License-Identifier: BSD-3-Clause
// What the libFuzzer harnesses share: a reader that splits the fuzzer's bytes
// into the fields a harness needs, and the rule every harness enforces.
//
// The rule: for any bytes, the code under test either succeeds (and then its
// output must satisfy the properties the harness checks) or throws
// sparcl::Error. Anything else (a crash, a sanitizer report, another
// exception, a broken property) is a finding: the harness aborts so that
// libFuzzer saves the input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "error.hpp"
#include "wire.hpp"

namespace sparcl_fuzz {

// The receiver's side of the collective that the wire seeds were made for
// (make_corpus.cpp writes them, wire_header.cpp and wire_payload.cpp check
// against it).
inline sparcl::Identity receiver_identity(uint64_t dim, uint8_t value_type,
                                          sparcl::Encoding encoding = sparcl::Encoding::Raw, uint32_t bucket = 0,
                                          bool checksum = false) {
  sparcl::Identity id;
  id.comm_id = 0xC0FFEE;
  id.seq = 42;
  id.kind = sparcl::Kind::Allreduce;
  id.algorithm = SPARCL_ALGO_RING;
  id.dim = dim;
  id.value_type = value_type;
  id.index_width = dim < (uint64_t(1) << 32) ? 4 : 8;
  id.encoding = encoding;
  id.bucket = bucket;
  id.checksum = checksum;
  return id;
}
constexpr uint16_t kReceiverStep = 5;

// Ranges of a vector of dimension 1000 that the algorithms ask for (whole,
// halves, a split that does not divide, a single entry, empty), which
// wire_payload.cpp's selector picks (1-7) and the seeds use.
constexpr sparcl::Range kPayloadRanges[] = {{0, 1000},   {0, 500}, {500, 1000}, {333, 667},
                                            {999, 1000}, {0, 0},   {17, 18}};

// Reads fixed-size fields from the front of the input; past its end every
// field reads as zero, so that any input is a valid sequence of fields.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : p_(data), left_(size) {}

  template <class T>
  T take() {
    T v{};
    const size_t n = left_ < sizeof(T) ? left_ : sizeof(T);
    if (n) std::memcpy(&v, p_, n);
    p_ += n;
    left_ -= n;
    return v;
  }
  // Up to `max` bytes up to (and without) the next `stop` byte, consumed with it.
  std::string line(char stop = '\n', size_t max = 256) {
    std::string s;
    while (left_ && s.size() < max) {
      const char c = char(*p_++);
      --left_;
      if (c == stop) break;
      s.push_back(c);
    }
    return s;
  }
  const uint8_t* rest() const { return p_; }
  size_t left() const { return left_; }
  bool empty() const { return left_ == 0; }

 private:
  const uint8_t* p_;
  size_t left_;
};

// A broken property: report it and abort (libFuzzer keeps the input).
[[noreturn]] inline void finding(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "fuzz finding: %s%s%s\n", what, detail.empty() ? "" : ": ", detail.c_str());
  std::abort();
}

inline void check(bool ok, const char* what, const std::string& detail = "") {
  if (!ok) finding(what, detail);
}

// Runs `body`; sparcl::Error is an accepted outcome (returns false), any other
// exception is a finding. Returns true when the body succeeded.
template <class F>
bool accepts(F&& body) {
  try {
    body();
    return true;
  } catch (const sparcl::Error& e) {
    // SPARCL_ERR_INTERNAL means a bug in sparcl; anything outside the enum is one too.
    check(e.status() < 0 && e.status() > SPARCL_ERR_INTERNAL, "sparcl::Error with an internal or unknown status",
          e.what());
    check(std::strlen(e.what()) > 0, "sparcl::Error without a message");
    return false;
  } catch (const std::exception& e) {
    finding("exception other than sparcl::Error", e.what());
  }
}

}  // namespace sparcl_fuzz
