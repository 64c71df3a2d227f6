// SPDX-License-Identifier: BSD-3-Clause
// Hooks for tests only. They are not part of the C API: the symbols are
// hidden in libsparcl.so, so only programs linked against the library's
// objects (sparcl_objects) reach them.
#pragma once

#include "sparcl/sparcl.h"

namespace sparcl {
namespace testing {

// Makes the next data message this rank sends on `comm` that has a payload
// leave with one bit flipped in the last byte of its payload (the most
// significant byte of a raw value), as if corrupted on the way. The sender's
// own buffer is not touched: a copy is sent. Later messages go out intact.
// Call it between collectives (no request in flight).
void corrupt_next_message(sparcl_comm_t comm);

}  // namespace testing
}  // namespace sparcl
