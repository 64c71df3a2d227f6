// SPDX-License-Identifier: BSD-3-Clause
// SPARCL_ALGO_AUTO: each allreduce runs the algorithm that the cost model
// (cost_model.hpp) predicts to be the fastest, from machine parameters and
// the call's density. Both must be the same on every rank, and neither is
// known locally:
//
//  - The density: a rank knows only its own nonzeros, but the result of an
//    allreduce is bitwise identical everywhere, so its nonzeros (the union)
//    are a number all ranks share. Each (dim, value type) keeps the record of
//    its latest allreduce; the next one with that dim uses it (gradients of
//    one tensor repeat every step). Records are handed out in start order,
//    which all ranks share, and a call waits (without blocking the caller:
//    Operation::ready()) until the record it was handed is complete before
//    it chooses. It does not wait where the model gives the same choice at
//    every density. Without a record: 1% per rank (kDefaultDensity).
//  - The machine parameters: the first large call (kCalibrationBytes) of a
//    communicator measures them in a few rounds of its own before its
//    algorithm, and rank 0's figures travel to all ranks; calls started
//    after it use them once it has them. SPARCL_AUTO_PARAMS fixes them
//    instead. Before calibration: default_machine_params().
//
// The choice is the collective's algorithm in every message header, so ranks
// that chose differently (possible only after a collective that failed on
// some ranks and not others) get SPARCL_ERR_MISMATCH, never a wrong sum.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "collective.hpp"
#include "cost_model.hpp"

namespace sparcl {

// Density assumed for a (dim, type) without a record: nonzeros per rank / dim.
constexpr double kDefaultDensity = 0.01;
// Dense size (dim * value bytes) from which a call may calibrate.
constexpr uint64_t kCalibrationBytes = 256 * 1024;

// What one auto allreduce leaves for the next of its (dim, value type).
struct DensityRecord {
  bool done = false;        // the collective ended (successfully or not)
  bool known = false;       // it succeeded and the fields below hold
  uint64_t union_nnz = 0;   // nonzero values of its result
  double overlap = 1.0;     // nonzeros of all inputs together / those of independent inputs with that union
};

// The machine parameters as one large auto allreduce leaves them.
struct ParamsRecord {
  bool done = false;
  bool calibrated = false;  // params holds calibrated (or fixed) parameters
  MachineParams params;
};

// What an auto allreduce was handed at its start. Destroyed unused (the call
// failed before its operation existed), it marks its records as failed.
struct AutoTicket {
  AutoTicket() = default;
  AutoTicket(AutoTicket&&) = default;
  AutoTicket& operator=(AutoTicket&&) = default;
  ~AutoTicket();
  void fail();

  std::shared_ptr<const DensityRecord> previous;  // the latest call of this (dim, type) before, if any
  std::shared_ptr<DensityRecord> own;
  std::shared_ptr<const ParamsRecord> params_before;  // the latest large call before, if any
  std::shared_ptr<ParamsRecord> params_own;           // set for a large call
  // The communicator's settled parameters when the call started, if any.
  // Read at the start, not later: a calibration may settle them on one
  // rank before this call is ready and on another after.
  std::optional<MachineParams> settled;
  NativeSlot native;  // the call's place in the NativeOrder
};

// Per communicator. Used under the communicator's lock only.
class AutoState {
 public:
  explicit AutoState(const std::string& fixed_params);  // SPARCL_AUTO_PARAMS, or "" to calibrate

  // Registers an allreduce in start order (every rank calls it for every
  // allreduce of an auto communicator, also one that then fails on bad input).
  AutoTicket start(uint64_t dim, uint8_t value_type, size_t value_size, int ranks);
  // The place of an allreduce of a dense communicator in the NativeOrder.
  NativeSlot native_slot() { return NativeSlot(native_order_); }

  // The parameters once they are settled for good (fixed, or calibrated).
  const std::optional<MachineParams>& settled() const { return settled_; }
  void settle(const MachineParams& p) { settled_ = p, source_ = "calibrated"; }

  // Whether the choice for this shape waits for the density (cached per shape
  // and parameters).
  bool depends_on_density(const MachineParams& p, const Workload& w);

  // For sparcl_comm_auto_model().
  std::string describe() const;

 private:
  std::map<std::pair<uint64_t, uint8_t>, std::shared_ptr<DensityRecord>> latest_;
  std::shared_ptr<ParamsRecord> params_head_;
  std::shared_ptr<NativeOrder> native_order_ = std::make_shared<NativeOrder>();
  std::optional<MachineParams> settled_;
  std::string source_ = "default";
  struct ShapeKey {
    uint64_t dim;
    int ranks;
    double value_bytes, wire_value_bytes;
    bool native;
    MachineParams params;
    bool operator<(const ShapeKey& o) const;
  };
  std::map<ShapeKey, bool> depends_;
};

// The auto allreduce of `input`: an operation that chooses its algorithm
// when it is ready (Operation::ready()) and runs it.
template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_auto_allreduce(Transport& t, const Identity& id, const View<V, I>& input,
                                                       std::shared_ptr<AutoState> state, AutoTicket ticket);

}  // namespace sparcl
