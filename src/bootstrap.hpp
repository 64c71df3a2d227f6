// SPDX-License-Identifier: BSD-3-Clause
// How the ranks of a new communicator find each other: an allgather of small
// blobs (transport addresses, configurations), over MPI or over a caller's
// callback. Used only while a communicator is created.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "sparcl/sparcl.h"

namespace sparcl {

class Bootstrap {
 public:
  virtual ~Bootstrap() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Every rank passes `bytes` bytes; the result holds size() * bytes bytes,
  // rank i's at offset i * bytes. Throws Error on failure.
  virtual std::vector<uint8_t> allgather(const void* data, size_t bytes) = 0;

  // Blobs of any length: result[i] is rank i's blob.
  std::vector<std::vector<uint8_t>> allgatherv(const std::vector<uint8_t>& mine);
};

// A bootstrap over the caller's sparcl_bootstrap_allgather_fn.
class CallbackBootstrap final : public Bootstrap {
 public:
  CallbackBootstrap(int rank, int size, sparcl_bootstrap_allgather_fn fn, void* ctx);
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::vector<uint8_t> allgather(const void* data, size_t bytes) override;

 private:
  int rank_, size_;
  sparcl_bootstrap_allgather_fn fn_;
  void* ctx_;
};

}  // namespace sparcl
