// SPDX-License-Identifier: BSD-3-Clause
// The communicator behind sparcl_comm_t and the result behind sparcl_result_t.
#pragma once

#include <memory>
#include <string>

#include "config.hpp"
#include "operation.hpp"
#include "transport/transport.hpp"

struct sparcl_comm {
  std::unique_ptr<sparcl::Transport> transport;
  sparcl::Config config;
  uint32_t id = 0;        // the same on every rank; part of every tag and header
  uint64_t next_seq = 0;  // collectives started so far
  std::string last_error;
  sparcl::Traffic traffic;
  uint64_t traffic_since_seq = 0;  // next_seq when the counters were last reset

  // Identity of the next collective; every collective call takes one, also
  // one that fails on bad input, so that sequence numbers stay aligned.
  sparcl::Identity next_identity(sparcl::Kind kind, uint8_t algorithm, uint64_t dim, uint8_t value_type,
                                 uint8_t index_width);

  // Drives `op` to its end, honouring the timeout. Throws its error.
  void run(sparcl::Operation& op);
};

struct sparcl_result {
  uint64_t dim = 0;
  bool dense = false;
  sparcl_datatype_t value_type = SPARCL_FLOAT32;
  sparcl_index_type_t index_type = SPARCL_INDEX_U32;
  size_t nnz = 0;
  const void* indices = nullptr;
  const void* values = nullptr;
  std::shared_ptr<const void> storage;  // keeps indices and values alive
};
