// SPDX-License-Identifier: BSD-3-Clause
// Fuzz harness: communicator configuration (src/config.cpp resolve_config
// with the SPARCL_* environment variables, and the parse_* functions).
//
// Input: a sparcl_config_t as a caller's memory holds it (struct_size,
// algorithm, transport, timeout_ms, progress_thread, encoding,
// quantization_bucket, checksum, as raw fields; the struct is allocated with
// exactly struct_size bytes when that is smaller, as a program built against
// an older header passes it), two bytes of flags (bit 0: config is NULL;
// bit 1: ofi_provider is set; bits 2-10: which of the nine variables are
// set), then newline-separated strings: the provider, then the variables'
// values in the order of kVariables.
// Properties: an accepted configuration has valid enums, a timeout >= 0, a
// bucket >= 1 and a non-empty provider; each variable that is set wins over
// the field and equals what its parse_* function returns for it;
// parse_algorithm, parse_transport and parse_encoding accept exactly the names
// they print.
#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "collectives/algorithms.hpp"
#include "config.hpp"
#include "fuzz_util.hpp"
#include "src/codec/codec.hpp"

using namespace sparcl;
using sparcl_fuzz::accepts;
using sparcl_fuzz::check;

namespace {

constexpr const char* kVariables[] = {"SPARCL_ALGORITHM",    "SPARCL_TIMEOUT_MS", "SPARCL_TRANSPORT",
                                      "SPARCL_PROGRESS_THREAD", "SPARCL_OFI_PROVIDER", "SPARCL_ENCODING",
                                      "SPARCL_QSGD_BUCKET",     "SPARCL_CHECKSUM",   "SPARCL_AUTO_TUNE"};
constexpr size_t kVariableCount = sizeof kVariables / sizeof kVariables[0];

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sparcl_fuzz::ByteReader in(data, size);
  sparcl_config_t fields = SPARCL_CONFIG_INIT;
  fields.struct_size = in.take<uint8_t>();  // 0-255 covers every layout up to and past this one
  // Enum fields hold whatever int a C caller stored (not a C++ enum value).
  const int32_t algorithm = in.take<int32_t>(), transport = in.take<int32_t>();
  std::memcpy(&fields.algorithm, &algorithm, sizeof algorithm);
  std::memcpy(&fields.transport, &transport, sizeof transport);
  fields.timeout_ms = in.take<int64_t>();
  fields.progress_thread = in.take<int32_t>();
  const int32_t encoding = in.take<int32_t>();
  std::memcpy(&fields.encoding, &encoding, sizeof encoding);
  fields.quantization_bucket = in.take<uint64_t>();
  fields.checksum = in.take<int32_t>();
  const uint16_t flags = in.take<uint16_t>();
  // C strings: each ends at its first NUL, as the environment and the config see it.
  const std::string provider = in.line().c_str();
  std::vector<std::string> values;
  for (size_t k = 0; k < kVariableCount; ++k) values.push_back(in.line().c_str());

  for (size_t k = 0; k < kVariableCount; ++k) {
    if (flags & (4u << k))
      setenv(kVariables[k], values[k].c_str(), 1);
    else
      unsetenv(kVariables[k]);
  }
  fields.ofi_provider = (flags & 2) ? provider.c_str() : nullptr;
  // The caller's struct: only struct_size bytes of it exist (at least the
  // struct_size field itself, which is always read).
  const size_t bytes = std::max(sizeof(size_t), std::min(fields.struct_size, sizeof(sparcl_config_t)));
  std::vector<unsigned char> memory(bytes);
  std::memcpy(memory.data(), &fields, bytes);
  const auto* user = (flags & 1) ? nullptr : reinterpret_cast<const sparcl_config_t*>(memory.data());

  Config c;
  const bool ok = accepts([&] { c = resolve_config(user); });

  // Single values, parsed on their own.
  for (const std::string& v : values) {
    sparcl_algorithm_t a{};
    if (accepts([&] { a = parse_algorithm(v); })) check(algorithm_name(a) == v, "algorithm name does not round-trip");
    sparcl_transport_t t{};
    if (accepts([&] { t = parse_transport(v); })) check(transport_name(t) == v, "transport name does not round-trip");
    int64_t ms = -1;
    if (accepts([&] { ms = parse_timeout_ms(v); })) check(ms >= 0, "negative timeout accepted");
    sparcl_value_encoding_t e{};
    if (accepts([&] { e = parse_encoding(v); })) check(encoding_name(e) == v, "encoding name does not round-trip");
    uint32_t bucket = 0;
    if (accepts([&] { bucket = parse_quantization_bucket(v); })) check(bucket >= 1, "bucket of 0 accepted");
  }
  if (!ok) return 0;

  check(find_algorithm(int(raw(c.algorithm))) != nullptr,  // a row of the algorithm table
        "resolved algorithm is not a sparcl_algorithm_t");
  check(raw(c.transport) >= SPARCL_TRANSPORT_DEFAULT && raw(c.transport) <= SPARCL_TRANSPORT_UCX,
        "resolved transport is not a sparcl_transport_t");
  check(c.timeout_ms >= 0, "resolved timeout is negative");
  check(!c.ofi_provider.empty(), "resolved provider is empty");
  check(codec::is_value_codec(raw(c.encoding)), "resolved encoding is not a sparcl_value_encoding_t");
  check(c.quantization_bucket >= 1, "resolved bucket is 0");
  if (flags & 4) check(c.algorithm == parse_algorithm(values[0]), "SPARCL_ALGORITHM did not win");
  if (flags & 8) check(c.timeout_ms == parse_timeout_ms(values[1]), "SPARCL_TIMEOUT_MS did not win");
  if (flags & 16) check(c.transport == parse_transport(values[2]), "SPARCL_TRANSPORT did not win");
  if (flags & 32) check(c.progress_thread == (values[3] == "1"), "SPARCL_PROGRESS_THREAD did not win");
  if (flags & 64) check(c.ofi_provider == values[4], "SPARCL_OFI_PROVIDER did not win");
  if (flags & 128) check(c.encoding == parse_encoding(values[5]), "SPARCL_ENCODING did not win");
  if (flags & 256) check(c.quantization_bucket == parse_quantization_bucket(values[6]), "SPARCL_QSGD_BUCKET did not win");
  if (flags & 512) check(c.checksum == (values[7] == "1"), "SPARCL_CHECKSUM did not win");
  if (flags & 1024) check(c.auto_tune == (values[8] == "1"), "SPARCL_AUTO_TUNE did not win");
  return 0;
}
