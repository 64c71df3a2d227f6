// SPDX-License-Identifier: BSD-3-Clause
// The cost model behind SPARCL_ALGO_AUTO: a predicted time for each allreduce
// algorithm from the shape of the call (ranks, dim, value and index sizes,
// nonzeros per rank and of the sum) and five machine parameters, and the
// choice of the algorithm with the smallest prediction. Pure functions: the
// same inputs give the same choice on every rank. docs/algorithms.md
// derives each formula.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sparcl/sparcl.h"

namespace sparcl {

// Machine parameters, in seconds.
struct MachineParams {
  double round_s = 0;    // a round in which each rank sends one small message and receives one
  double message_s = 0;  // each further message a rank sends (and receives) in the same round
  double byte_s = 0;     // per byte of the larger of what a rank sends and receives in a round
  double merge_s = 0;    // per entry of a sparse merge
  double pass_s = 0;     // per element of a linear pass (densify, dense add, copy, count)
};

// Parameters used before a communicator has calibrated its own (measured on
// the 2-core development VM, Open MPI over shared memory, 4 ranks).
MachineParams default_machine_params();

// "round 24.1 us, message 3.2 us, 0.310 ns/B, merge 4.20 ns, pass 0.90 ns".
std::string describe(const MachineParams& p);

// Parses SPARCL_AUTO_PARAMS: five numbers separated by commas, in the order
// and units of describe() (microseconds, microseconds, nanoseconds per byte,
// nanoseconds per entry, nanoseconds per element), all > 0 and finite.
// Throws SPARCL_ERR_INVALID_ARG.
MachineParams parse_machine_params(const std::string& text);

// One allreduce as the model sees it.
struct Workload {
  int ranks = 1;
  uint64_t dim = 0;
  double value_bytes = 4;       // in memory (float32: 4, float64: 8)
  double index_bytes = 4;       // on the wire and in memory (4 while dim < 2^32)
  double wire_value_bytes = 4;  // per value on the wire in the configured encoding
  double rank_nnz = 0;          // nonzeros of one rank's vector (the ranks' mean)
  double union_nnz = 0;         // nonzeros of the sum
  bool native_dense = false;    // the dense algorithm runs on the transport's own allreduce
  int ranks_per_host = 1;       // equal numbers of ranks on each host; else all ranks (one host)
};

// Each algorithm's predicted seconds for one call (its row in algorithms.cpp).
double cost_recursive_doubling(const MachineParams& p, const Workload& w);
double cost_split_allgather(const MachineParams& p, const Workload& w);
double cost_split_allgather_hashed(const MachineParams& p, const Workload& w);
double cost_split_dense(const MachineParams& p, const Workload& w);
double cost_ring(const MachineParams& p, const Workload& w);
double cost_halving_doubling(const MachineParams& p, const Workload& w);
double cost_halving_doubling_hashed(const MachineParams& p, const Workload& w);
double cost_allgather(const MachineParams& p, const Workload& w);
double cost_dense(const MachineParams& p, const Workload& w);
// Infinite with one host or one rank per host (where it is split_allgather).
double cost_hierarchical(const MachineParams& p, const Workload& w);

// Predicted seconds of one call of `algorithm` (not SPARCL_ALGO_AUTO).
double predicted_seconds(sparcl_algorithm_t algorithm, const MachineParams& p, const Workload& w);

// The candidate of auto with the smallest predicted time (ties: the lower enum value).
sparcl_algorithm_t cheapest_algorithm(const MachineParams& p, const Workload& w);

// Every candidate of auto whose predicted time is at most `spread` times the
// cheapest one's, cheapest first (ties: the lower enum value). What auto
// tries when it measures (auto.hpp).
std::vector<sparcl_algorithm_t> ranked_algorithms(const MachineParams& p, const Workload& w, double spread);

// A workload of `ranks` ranks whose vectors hold `rank_nnz` nonzeros each at
// independent uniform positions (union: dim (1 - (1 - rank_nnz/dim)^ranks)).
Workload independent_workload(int ranks, uint64_t dim, double value_bytes, double wire_value_bytes,
                              double rank_nnz, bool native_dense);

// Whether the choice for this shape depends on the density at all: false when
// cheapest_algorithm() gives the same answer for every per-rank density from
// 0 to 1, so that auto need not wait for the previous call's density.
bool choice_depends_on_density(const MachineParams& p, Workload w);

}  // namespace sparcl
