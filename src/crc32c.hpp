// SPDX-License-Identifier: BSD-3-Clause
// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of
// iSCSI, ext4 and SCTP, used over sparcl's messages when checksums are on.
// The SSE4.2 `crc32` instruction is used where the CPU has it (detected at
// run time); elsewhere a table-driven version (slicing by 8) gives the same
// results.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sparcl {

// CRC32C of data[0, n), continuing from `crc` (the CRC of what came before;
// 0 to start): crc32c(b, crc32c(a)) == crc32c(a followed by b).
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);

// The two implementations behind crc32c(), for tests and benchmarks.
uint32_t crc32c_portable(const void* data, size_t n, uint32_t crc = 0);
// Only callable when crc32c_hardware_available().
uint32_t crc32c_hardware(const void* data, size_t n, uint32_t crc = 0);

// True when the CPU has SSE4.2 (x86-64) and this build can use it.
bool crc32c_hardware_available();

// Whether crc32c() uses the instruction: initially crc32c_hardware_available();
// tests set it to false to run the portable code.
bool& crc32c_use_hardware();

}  // namespace sparcl
