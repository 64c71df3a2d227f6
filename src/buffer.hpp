// SPDX-License-Identifier: BSD-3-Clause
// A byte buffer for messages: allocated without zero-filling (receive buffers
// are overwritten in full) and 16-byte aligned, so that decoded payloads can
// be read in place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

#include "error.hpp"

namespace sparcl {

class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t size) : size_(size) {
    if (size == 0) return;
    data_.reset(new (std::nothrow) uint8_t[size]);
    if (!data_) fail(SPARCL_ERR_NO_MEMORY, "cannot allocate a message buffer");
  }
  uint8_t* data() { return data_.get(); }
  const uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  std::unique_ptr<uint8_t[]> data_;
  size_t size_ = 0;
};

using SharedBuffer = std::shared_ptr<Buffer>;

}  // namespace sparcl
