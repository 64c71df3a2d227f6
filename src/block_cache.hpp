// SPDX-License-Identifier: BSD-3-Clause
// Reuse of large memory blocks. Every sparse allreduce allocates buffers of
// the same large sizes (messages, merged streams, dense pieces) on every
// call; handing them back to the system and asking again costs a page fault
// per 4 KiB, which made up a large share of a collective's time on MB-sized
// vectors. Blocks of 64 KiB and more are kept, by power-of-two size class,
// up to a bound, and reused. Thread-safe.
#pragma once

#include <cstddef>

namespace sparcl {

// Memory for `bytes` bytes, 16-byte aligned (64 from 64 KiB on), uninitialised.
// Throws std::bad_alloc.
void* allocate_block(size_t bytes);

// Returns a block from allocate_block(bytes) (the same `bytes`).
void release_block(void* block, size_t bytes) noexcept;

}  // namespace sparcl
