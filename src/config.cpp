// SPDX-License-Identifier: BSD-3-Clause
#include "config.hpp"

#include <cerrno>
#include <cstdint>
#include <cstddef>
#include <cstdlib>

#include "algorithm_catalog.hpp"
#include "error.hpp"
#include "src/codec/codec.hpp"

namespace sparcl {

namespace {
const AlgorithmCatalog* registered_catalog = nullptr;
}  // namespace

bool register_algorithm_catalog(const AlgorithmCatalog* catalog) {
  registered_catalog = catalog;
  return true;
}

const AlgorithmCatalog& algorithm_catalog() {
  if (!registered_catalog) fail(SPARCL_ERR_INTERNAL, "no allreduce algorithms are built into this library");
  return *registered_catalog;
}

sparcl_transport_t parse_transport(const std::string& text) {
  if (text == "mpi") return SPARCL_TRANSPORT_MPI;
  if (text == "ofi") return SPARCL_TRANSPORT_OFI;
  if (text == "ucx") return SPARCL_TRANSPORT_UCX;
  fail(SPARCL_ERR_INVALID_ARG, "unknown transport '" + text + "' (expected mpi, ofi or ucx)");
}

const char* transport_name(sparcl_transport_t transport) {
  switch (transport) {
    case SPARCL_TRANSPORT_DEFAULT: return "default";
    case SPARCL_TRANSPORT_MPI: return "mpi";
    case SPARCL_TRANSPORT_OFI: return "ofi";
    case SPARCL_TRANSPORT_UCX: return "ucx";
  }
  return "unknown";
}

int64_t parse_timeout_ms(const std::string& text) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || v < 0)
    fail(SPARCL_ERR_INVALID_ARG, "timeout '" + text + "' is not a number of milliseconds >= 0");
  return v;
}

std::chrono::steady_clock::time_point deadline_after(int64_t timeout_ms) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point now = Clock::now();
  // Compared in milliseconds: converting a huge timeout to the clock's
  // nanoseconds would overflow.
  const int64_t room = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::time_point::max() - now).count();
  if (timeout_ms <= 0 || timeout_ms >= room) return Clock::time_point::max();
  return now + std::chrono::milliseconds(timeout_ms);
}

namespace {
constexpr const char* kEncodingChoices = "raw, fp16, bf16, qsgd8, qsgd4 or qsgd2";

// field = parse(value of `var`) if it is set; errors name the variable.
template <class T, class Parse>
void env_value(const char* var, T& field, Parse parse) {
  const char* v = std::getenv(var);
  if (!v) return;
  try {
    field = parse(v);
  } catch (const Error& e) {
    fail(e.status(), std::string(var) + ": " + e.what());
  }
}

// A variable that is 0 or 1.
void env_flag(const char* var, bool& field) {
  const char* v = std::getenv(var);
  if (!v) return;
  const std::string t = v;
  if (t != "0" && t != "1") fail(SPARCL_ERR_INVALID_ARG, std::string(var) + ": '" + t + "' is not 0 or 1");
  field = t == "1";
}
}  // namespace

sparcl_value_encoding_t parse_encoding(const std::string& text) {
  for (int e = SPARCL_VALUES_RAW; e <= SPARCL_VALUES_QSGD2; ++e)
    if (text == codec::value_codec_name(codec::ValueCodec(e))) return sparcl_value_encoding_t(e);
  fail(SPARCL_ERR_INVALID_ARG, "unknown value encoding '" + text + "' (expected " + kEncodingChoices + ")");
}

const char* encoding_name(sparcl_value_encoding_t encoding) {
  const int e = raw(encoding);
  return codec::is_value_codec(e) ? codec::value_codec_name(codec::ValueCodec(e)) : "unknown";
}

uint32_t parse_quantization_bucket(const std::string& text) {
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 || v < 1 || v > UINT32_MAX)
    fail(SPARCL_ERR_INVALID_ARG, "bucket size '" + text + "' is not a number of values in [1, 4294967295]");
  return uint32_t(v);
}

sparcl_partition_t parse_partition(const std::string& text) {
  for (int k = SPARCL_PARTITION_EQUAL; k <= SPARCL_PARTITION_HASHED; ++k)
    if (text == partition_name(sparcl_partition_t(k))) return sparcl_partition_t(k);
  fail(SPARCL_ERR_INVALID_ARG, "unknown partition '" + text + "' (expected equal, balanced or hashed)");
}

const char* partition_name(sparcl_partition_t partition) {
  switch (partition) {
    case SPARCL_PARTITION_EQUAL: return "equal";
    case SPARCL_PARTITION_BALANCED: return "balanced";
    case SPARCL_PARTITION_HASHED: return "hashed";
  }
  return "unknown";
}

Config resolve_config(const sparcl_config_t* user) {
  Config c;
  if (user) {
    // Programs built against an older header pass a shorter struct: fields
    // past its end keep their defaults.
    constexpr size_t kOldest = offsetof(sparcl_config_t, timeout_ms) + sizeof(int64_t);
    if (user->struct_size < kOldest)
      fail(SPARCL_ERR_INVALID_ARG, "config.struct_size is too small: initialise it with SPARCL_CONFIG_INIT");
    auto has = [&](size_t offset, size_t bytes) { return user->struct_size >= offset + bytes; };
    if (!algorithm_catalog().valid(raw(user->algorithm)))
      fail(SPARCL_ERR_INVALID_ARG, "config.algorithm is not a sparcl_algorithm_t");
    if (raw(user->transport) < SPARCL_TRANSPORT_DEFAULT || raw(user->transport) > SPARCL_TRANSPORT_UCX)
      fail(SPARCL_ERR_INVALID_ARG, "config.transport is not a sparcl_transport_t");
    if (user->timeout_ms < 0) fail(SPARCL_ERR_INVALID_ARG, "config.timeout_ms is negative");
    c.algorithm = user->algorithm;
    c.transport = user->transport;
    c.timeout_ms = user->timeout_ms;
    const bool has_progress = has(offsetof(sparcl_config_t, progress_thread), sizeof(int));
    if (has_progress && user->progress_thread != 0 && user->progress_thread != 1)
      fail(SPARCL_ERR_INVALID_ARG, "config.progress_thread must be 0 or 1");
    c.progress_thread = has_progress && user->progress_thread == 1;
    if (has(offsetof(sparcl_config_t, ofi_provider), sizeof(const char*)) && user->ofi_provider) {
      if (!*user->ofi_provider) fail(SPARCL_ERR_INVALID_ARG, "config.ofi_provider is empty");
      c.ofi_provider = user->ofi_provider;
    }
    if (has(offsetof(sparcl_config_t, encoding), sizeof(int))) {
      if (!codec::is_value_codec(raw(user->encoding)))
        fail(SPARCL_ERR_INVALID_ARG, "config.encoding is not a sparcl_value_encoding_t");
      c.encoding = user->encoding;
    }
    if (has(offsetof(sparcl_config_t, quantization_bucket), sizeof(size_t))) {
      if (user->quantization_bucket < 1 || user->quantization_bucket > UINT32_MAX)
        fail(SPARCL_ERR_INVALID_ARG, "config.quantization_bucket must lie in [1, 4294967295]");
      c.quantization_bucket = uint32_t(user->quantization_bucket);
    }
    if (has(offsetof(sparcl_config_t, checksum), sizeof(int))) {
      if (user->checksum != 0 && user->checksum != 1) fail(SPARCL_ERR_INVALID_ARG, "config.checksum must be 0 or 1");
      c.checksum = user->checksum == 1;
    }
    if (has(offsetof(sparcl_config_t, partition), sizeof(int))) {
      if (raw(user->partition) < SPARCL_PARTITION_EQUAL || raw(user->partition) > SPARCL_PARTITION_HASHED)
        fail(SPARCL_ERR_INVALID_ARG, "config.partition is not a sparcl_partition_t");
      c.partition = user->partition;
    }
  }
  env_value("SPARCL_ALGORITHM", c.algorithm, algorithm_catalog().parse);
  env_value("SPARCL_TIMEOUT_MS", c.timeout_ms, parse_timeout_ms);
  env_value("SPARCL_TRANSPORT", c.transport, parse_transport);
  env_flag("SPARCL_PROGRESS_THREAD", c.progress_thread);
  env_value("SPARCL_ENCODING", c.encoding, parse_encoding);
  env_value("SPARCL_QSGD_BUCKET", c.quantization_bucket, parse_quantization_bucket);
  env_flag("SPARCL_CHECKSUM", c.checksum);
  env_value("SPARCL_PARTITION", c.partition, parse_partition);
  env_flag("SPARCL_AUTO_TUNE", c.auto_tune);
  env_flag("SPARCL_INDEX_CODING", c.index_coding);
  if (const char* v = std::getenv("SPARCL_AUTO_PARAMS")) {
    try {
      algorithm_catalog().check_auto_params(v);
    } catch (const Error& e) {
      fail(e.status(), std::string("SPARCL_AUTO_PARAMS: ") + e.what());
    }
    c.auto_params = v;
  }
  if (const char* v = std::getenv("SPARCL_TUNE_FILE")) c.tune_file = v;
  if (const char* v = std::getenv("SPARCL_RANKS_PER_HOST")) {
    char* end = nullptr;
    const long n = std::strtol(v, &end, 10);
    if (!*v || *end || n < 1 || n > (1L << 24))
      fail(SPARCL_ERR_INVALID_ARG, std::string("SPARCL_RANKS_PER_HOST: '") + v + "' is not a number of ranks >= 1");
    c.ranks_per_host = int(n);
  }
  if (const char* v = std::getenv("SPARCL_OFI_PROVIDER")) {
    if (!*v) fail(SPARCL_ERR_INVALID_ARG, "SPARCL_OFI_PROVIDER is empty");
    c.ofi_provider = v;
  }
  return c;
}

}  // namespace sparcl
