// SPDX-License-Identifier: BSD-3-Clause
// A byte buffer for messages: allocated without zero-filling (receive buffers
// are overwritten in full), 16-byte aligned so that decoded payloads can be
// read in place, and recycled through the block cache.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

#include <string>

#include "block_cache.hpp"
#include "error.hpp"

namespace sparcl {

// Deleter of a Buffer's block: it needs the block's size.
struct BlockRelease {
  size_t size = 0;
  void operator()(uint8_t* p) const noexcept { release_block(p, size); }
};

class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t size) : size_(size) {
    if (size == 0) return;
    try {
      data_.reset(static_cast<uint8_t*>(allocate_block(size)));
    } catch (const std::bad_alloc&) {
      fail(SPARCL_ERR_NO_MEMORY, "cannot allocate a message buffer of " + std::to_string(size) + " bytes");
    }
    data_.get_deleter().size = size;
  }
  uint8_t* data() { return data_.get(); }
  const uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  std::unique_ptr<uint8_t, BlockRelease> data_;
  size_t size_ = 0;
};

using SharedBuffer = std::shared_ptr<Buffer>;

}  // namespace sparcl
