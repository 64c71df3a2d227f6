// SPDX-License-Identifier: BSD-3-Clause
// The table of allreduce algorithms: the one place that lists them. Names,
// parsing, validation, auto's candidates, the cost model's entries and every
// program that lists algorithms (through sparcl_algorithm_count() and
// sparcl_algorithm_name()) derive from it.
//
// To add an algorithm: write its file (a class deriving from AllreduceOp and
// a factory with the AllreduceFactory signature, instantiated for
// SPARCL_FOR_EACH_TYPE), add its value to sparcl_algorithm_t in
// include/sparcl/sparcl.h, one row to kAlgorithms in algorithms.cpp (with
// its cost function from cost_model.hpp), and its name to the algorithm
// lists of the parameterised tests (tests/mpi/).
#pragma once

#include <memory>
#include <string>

#include "collective.hpp"
#include "cost_model.hpp"

namespace sparcl {

template <class V, class I>
using AllreduceFactory = std::unique_ptr<AllreduceOp<V, I>> (*)(Transport&, const Identity&, const View<V, I>&,
                                                                 NativeSlot);

// An algorithm's factory for each value and index type.
struct AllreduceFactories {
  AllreduceFactory<float, uint32_t> f32_i32;
  AllreduceFactory<float, uint64_t> f32_i64;
  AllreduceFactory<double, uint32_t> f64_i32;
  AllreduceFactory<double, uint64_t> f64_i64;

  template <class V, class I>
  AllreduceFactory<V, I> get() const;
};

#define SPARCL_FACTORIES(make) {&make<float, uint32_t>, &make<float, uint64_t>, &make<double, uint32_t>, &make<double, uint64_t>}

struct AlgorithmEntry {
  sparcl_algorithm_t id;
  const char* name;
  const char* summary;  // one line, for help texts
  // Empty for SPARCL_ALGO_AUTO, which is not an algorithm but chooses one
  // (auto.hpp).
  AllreduceFactories make;
  // Predicted seconds of one call (cost_model.hpp); null for auto.
  double (*cost)(const MachineParams&, const Workload&);
  // Whether auto considers it.
  bool auto_candidate;

  bool concrete() const { return cost != nullptr; }
};

// Every row, in sparcl_algorithm_t order (auto first); `count` set to their number.
const AlgorithmEntry* algorithm_table(size_t& count);

// The row of `algorithm`, or null.
const AlgorithmEntry* find_algorithm(int algorithm);

// The algorithm named `text`; throws SPARCL_ERR_INVALID_ARG listing the names.
sparcl_algorithm_t parse_algorithm(const std::string& text);
// Its name, or "unknown".
const char* algorithm_name(sparcl_algorithm_t algorithm);

// The allreduce of a concrete algorithm (not SPARCL_ALGO_AUTO: see
// auto.hpp); `native` is the call's slot in the NativeOrder (used by the
// dense algorithm, released by the others).
template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_allreduce(sparcl_algorithm_t algorithm, Transport& t,
                                                  const Identity& id, const View<V, I>& input,
                                                  NativeSlot native = NativeSlot{});

}  // namespace sparcl
