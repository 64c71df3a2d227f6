// SPDX-License-Identifier: BSD-3-Clause
#include "comm.hpp"

#include <sched.h>

#include <chrono>


sparcl::Identity sparcl_comm::next_identity(sparcl::Kind kind, uint8_t algorithm, uint64_t dim,
                                            uint8_t value_type, uint8_t index_width) {
  sparcl::Identity ident;
  ident.comm_id = id;
  ident.seq = next_seq++;
  ident.kind = kind;
  ident.algorithm = algorithm;
  ident.dim = dim;
  ident.value_type = value_type;
  ident.index_width = index_width;
  return ident;
}

void sparcl_comm::run(sparcl::Operation& op) {
  op.count_traffic_in(&traffic);
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto limit = std::chrono::milliseconds(config.timeout_ms);
  while (!op.advance()) {
    transport->progress();
    if (config.timeout_ms > 0 && Clock::now() - start > limit) {
      op.abort(SPARCL_ERR_TIMEOUT, "collective did not complete within " + std::to_string(config.timeout_ms) +
                                       " ms (SPARCL_TIMEOUT_MS)");
      break;
    }
    // Let other ranks run when there are more ranks than cores.
    sched_yield();
  }
  transport->progress();
  if (op.status() != SPARCL_SUCCESS) throw sparcl::Error(op.status(), op.message());
}
