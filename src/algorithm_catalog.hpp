// SPDX-License-Identifier: BSD-3-Clause
// What the core knows of the allreduce algorithms: nothing but this
// interface. The collectives layer owns them (collectives/algorithms.cpp, the
// table) and registers itself here when the library loads, so that the core
// can parse and check a configuration (SPARCL_ALGORITHM, config.algorithm,
// SPARCL_AUTO_PARAMS) and name algorithms in its messages without depending
// on the layer above it.
#pragma once

#include <string>

#include "sparcl/sparcl.h"

namespace sparcl {

struct AlgorithmCatalog {
  // The algorithm named `text`; throws SPARCL_ERR_INVALID_ARG listing the names.
  sparcl_algorithm_t (*parse)(const std::string& text);
  // Its name, or "unknown" for a value that is no algorithm.
  const char* (*name)(sparcl_algorithm_t algorithm);
  // Whether `value` is a sparcl_algorithm_t.
  bool (*valid)(int value);
  // Throws SPARCL_ERR_INVALID_ARG unless `text` is valid SPARCL_AUTO_PARAMS.
  void (*check_auto_params)(const std::string& text);
};

// The registered catalog. Throws SPARCL_ERR_INTERNAL if none is (a build
// without the collectives layer).
const AlgorithmCatalog& algorithm_catalog();

// Called once, by the collectives layer at load time; returns true.
bool register_algorithm_catalog(const AlgorithmCatalog* catalog);

}  // namespace sparcl
