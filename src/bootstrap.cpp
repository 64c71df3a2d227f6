// SPDX-License-Identifier: BSD-3-Clause
#include "bootstrap.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "error.hpp"

namespace sparcl {

std::vector<std::vector<uint8_t>> Bootstrap::allgatherv(const std::vector<uint8_t>& mine) {
  const uint64_t length = mine.size();
  std::vector<uint8_t> lengths = allgather(&length, sizeof length);
  uint64_t longest = 0;
  std::vector<uint64_t> each(static_cast<size_t>(size()));
  for (int i = 0; i < size(); ++i) {
    std::memcpy(&each[size_t(i)], lengths.data() + size_t(i) * sizeof length, sizeof length);
    longest = std::max(longest, each[size_t(i)]);
  }
  std::vector<uint8_t> padded(longest, 0);
  if (length) std::memcpy(padded.data(), mine.data(), length);
  std::vector<uint8_t> all = allgather(padded.data(), longest);
  std::vector<std::vector<uint8_t>> out(static_cast<size_t>(size()));
  for (int i = 0; i < size(); ++i) {
    const uint8_t* p = all.data() + size_t(i) * longest;
    out[size_t(i)].assign(p, p + each[size_t(i)]);
  }
  return out;
}

CallbackBootstrap::CallbackBootstrap(int rank, int size, sparcl_bootstrap_allgather_fn fn, void* ctx)
    : rank_(rank), size_(size), fn_(fn), ctx_(ctx) {
  require(fn != nullptr, SPARCL_ERR_INVALID_ARG, "bootstrap allgather function is NULL");
  require(size >= 1, SPARCL_ERR_INVALID_ARG, "size must be >= 1");
  require(rank >= 0 && rank < size, SPARCL_ERR_INVALID_ARG, "rank must be in [0, size)");
}

std::vector<uint8_t> CallbackBootstrap::allgather(const void* data, size_t bytes) {
  std::vector<uint8_t> out(bytes * size_t(size_));
  const int rc = fn_(data, out.data(), bytes, ctx_);
  if (rc != 0) fail(SPARCL_ERR_TRANSPORT, "bootstrap allgather callback failed with " + std::to_string(rc));
  return out;
}

}  // namespace sparcl
