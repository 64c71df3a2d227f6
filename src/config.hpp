// SPDX-License-Identifier: BSD-3-Clause
// Communicator configuration: the caller's sparcl_config_t with the SPARCL_*
// environment variables applied on top (see docs/configuration.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "sparcl/sparcl.h"

namespace sparcl {

struct Config {
  sparcl_algorithm_t algorithm = SPARCL_ALGO_AUTO;
  sparcl_transport_t transport = SPARCL_TRANSPORT_DEFAULT;  // resolved at communicator creation
  int64_t timeout_ms = 1800000;
  std::string ofi_provider = "tcp;ofi_rxm";
  bool progress_thread = false;
  sparcl_value_encoding_t encoding = SPARCL_VALUES_RAW;  // of float32 vectors on the wire
  uint32_t quantization_bucket = 512;                     // QSGD values per scale
  bool checksum = false;                                  // CRC32C over every message
  sparcl_partition_t partition = SPARCL_PARTITION_EQUAL;  // owner ranges of the split algorithms
  std::string auto_params;  // SPARCL_AUTO_PARAMS: the cost model's parameters ("" = calibrate)
  bool auto_tune = true;    // SPARCL_AUTO_TUNE: auto measures its candidates
  std::string tune_file;    // SPARCL_TUNE_FILE: auto's decisions kept across runs ("" = none)
  int ranks_per_host = 0;   // SPARCL_RANKS_PER_HOST: consecutive ranks per host instead of host names (0)
  bool index_coding = true; // SPARCL_INDEX_CODING: sparse messages code their indices where that is smaller
};

// What the ranks learn about each other at communicator creation, beyond the
// configuration they must share.
struct Placement {
  int ranks_per_host = 1;  // the most ranks that share one host
  std::string first_host;  // rank 0's host name
  // SPARCL_TUNE_FILE's content as every rank read it at creation ("" when
  // unset, missing, or read differently by some rank: then `tune_note` says why).
  std::string tune_text;
  std::string tune_note;
};

// Validates `user` (NULL: defaults) and applies the environment.
// Throws SPARCL_ERR_INVALID_ARG naming the bad field or variable.
Config resolve_config(const sparcl_config_t* user);

// Parsing of single values, shared with tests.
sparcl_transport_t parse_transport(const std::string& text);
const char* transport_name(sparcl_transport_t transport);
int64_t parse_timeout_ms(const std::string& text);
sparcl_value_encoding_t parse_encoding(const std::string& text);
const char* encoding_name(sparcl_value_encoding_t encoding);
uint32_t parse_quantization_bucket(const std::string& text);
sparcl_partition_t parse_partition(const std::string& text);
const char* partition_name(sparcl_partition_t partition);

// The time `timeout_ms` from now: never (time_point::max()) for 0, which
// waits forever, and for a timeout beyond the clock's range.
std::chrono::steady_clock::time_point deadline_after(int64_t timeout_ms);

}  // namespace sparcl
