// SPDX-License-Identifier: BSD-3-Clause
// Hooks for tests only. They are not part of the C API: the symbols are
// hidden in libsparcl.so, so only programs linked against the library's
// objects (sparcl_objects) reach them.
#pragma once

#include <cstdint>

#include "sparcl/sparcl.h"

namespace sparcl {
namespace testing {

// Makes the next data message this rank sends on `comm` that has a payload
// leave with one bit flipped in the last byte of its payload (the most
// significant byte of a raw value), as if corrupted on the way. The sender's
// own buffer is not touched: a copy is sent. Later messages go out intact.
// Call it between collectives (no request in flight).
void corrupt_next_message(sparcl_comm_t comm);

// --- Fault injection (tests/faults) ---
//
// inject_faults() puts a decorator around the communicator's transport (any
// backend: it wraps the Transport interface). Each message this rank sends
// then meets, with the probabilities set, one of:
//   flip:  one random bit of the message (header, payload or checksum
//          trailer) is flipped in a copy that is sent instead;
//   drop:  the message is never sent (its send request completes at once);
//   delay: the message is held back for a random time in
//          [delay_min_ms, delay_max_ms], and later messages to the same peer
//          wait behind it (a transport keeps per-peer order).
// `budget` faults at most are injected, then messages pass untouched until
// the next arm(). Random choices come from a generator seeded by `seed`.
struct FaultOdds {
  double flip = 0, drop = 0, delay = 0;
  int delay_min_ms = 1, delay_max_ms = 50;
};

// Where a flipped bit landed (raw encoding layouts; see wire.hpp).
enum class FlipSite : int { Header, Index, Value, Trailer, AbortNotice, Count };

struct FaultCounts {
  uint64_t flips = 0, drops = 0, delays = 0, allocation_failures = 0;
  uint64_t flips_at[int(FlipSite::Count)] = {};
};

class FaultInjector {
 public:
  virtual ~FaultInjector() = default;
  virtual void arm(const FaultOdds& odds, int budget) = 0;
  virtual void disarm() = 0;
  virtual FaultCounts counts() const = 0;
  // Messages the decorator still holds back (delay).
  virtual size_t held() const = 0;
  // Sends every held message now (the delay is over; later messages no
  // longer queue behind them).
  virtual void flush() = 0;
};

// Wraps the transport of `comm` (once; later calls return the same
// injector). The injector lives as long as the communicator. Call it between
// collectives (no request in flight).
FaultInjector& inject_faults(sparcl_comm_t comm, uint64_t seed);

// Allocation failures. A program that replaces the global operator new (the
// library's objects linked in, so every allocation sparcl makes goes through
// it) asks should_fail_allocation() on each call and throws std::bad_alloc
// when it says so. After arm_allocation_failure(n), the n-th allocation from
// then on fails (once), except allocations made inside the wrapped
// transport's own calls (the backends' internals are not the subject).
// count_allocations() says how many allocations were asked about since the
// last arm or reset (to size the next n).
void arm_allocation_failure(uint64_t nth);
void disarm_allocation_failure();
bool should_fail_allocation() noexcept;
uint64_t count_allocations() noexcept;
void reset_allocation_count() noexcept;
// True when the armed failure has fired since the last arm.
bool allocation_failure_fired() noexcept;

}  // namespace testing
}  // namespace sparcl
