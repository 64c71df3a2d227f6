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
//    it chooses. Without measurement it does not wait where the model gives
//    the same choice at every density. Without a record: 1% per rank
//    (kDefaultDensity).
//  - The machine parameters: the first large call (kCalibrationBytes) of a
//    communicator measures them in a few rounds of its own before its
//    algorithm, and rank 0's figures travel to all ranks; calls started
//    after it use them once it has them. SPARCL_AUTO_PARAMS fixes them
//    instead. Before calibration: default_machine_params().
//
//  - Measurement (SPARCL_AUTO_TUNE, on by default): the model ranks the
//    algorithms, but on shared or unusual machines it can be far off, so
//    auto also times them. Calls are grouped by (dim, value type, index
//    width) and the density class of their result (half octaves of the
//    union's density: a number all ranks share). While a group explores,
//    each call runs the candidate tried least so far (the algorithms the
//    model predicts within kCandidateSpread of its cheapest, cheapest
//    first) and times it on each rank. Once every candidate has
//    kTrialsPerCandidate trials, the next call of the group begins with a
//    vote round (each rank sends, per candidate, its trial times relative to
//    each round's: TuneGroup::votes), and every rank ranks the candidates by
//    their sum over ranks: the same numbers everywhere, so the same ranking.
//    The first vote keeps kFinalists, which get kFinalTrials more trials
//    each, and the contenders; the second one chooses, and the group runs
//    that algorithm from then on, until its re-check (kRecheckAfter): the
//    choice and one contender get kRecheckTrials fresh trials each, and a
//    final vote chooses again.
//
// After a failure. A collective can fail on some ranks and succeed on others
// (a rank that had all it needed returns before another rank's fault is
// known), so their records can differ afterwards. Ranks cannot learn that
// without one more round of messages per call, which auto does not spend.
// Instead:
//  - every message of an auto collective carries the algorithm and a digest
//    of what it was chosen from (Identity::choice_digest): ranks whose records
//    differ fail that collective at once with SPARCL_ERR_MISMATCH, on every
//    rank, even where they would have chosen the same algorithm;
//  - a rank on which any collective of an auto communicator fails forgets
//    all auto learned (records, measurements, calibrated parameters:
//    AutoState::forget(), called by the start-and-fail path in start.cpp),
//    so the calls it starts afterwards begin afresh.
// So after a collective that failed on some ranks only, at most the next auto
// collective fails (on every rank, SPARCL_ERR_MISMATCH) and the one after it
// is exact; after one that failed on every rank, the next is exact. Never a
// wrong sum, never a wait for the timeout.
#pragma once

#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "collective.hpp"
#include "cost_model.hpp"
#include "tune_file.hpp"

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
  // The latest call of this (dim, type) whose algorithm saw every input:
  // the nonzeros of all inputs together and of their union (0, 0: none).
  // overlap() is computed from them only when a choice needs it (the model),
  // not in every call.
  uint64_t seen_inputs_nnz = 0, seen_union_nnz = 0;
  // Nonzeros of all inputs together / those of independent inputs with the
  // same union (1 without a call that saw every input).
  double overlap(uint64_t dim, int ranks) const;
};

// The machine parameters as one large auto allreduce leaves them.
// Measurement (see above).
constexpr int kTrialsPerCandidate = 2;
constexpr size_t kFinalists = 3;
constexpr int kFinalTrials = 3;
// A group unused for this many collectives of the communicator counts as
// gone (it measures afresh), so that memory stays bounded however many dims
// come and go.
constexpr uint64_t kGroupWindow = 4096;
constexpr double kCandidateSpread = 16.0;
// A chosen algorithm is checked again after this many calls: it and one
// contender (the candidates whose first vote was within kContenderSpread of
// the best, in turn) get kRecheckTrials trials each, and a vote keeps the
// faster. Early trials pay for connections and buffers, and a machine's load
// changes. Once every contender has been checked without a change, the
// interval doubles (up to kRecheckLongest). A change is checked again soon
// (kRecheckAfterChange calls later, against the choice it replaced), so
// that a fluke of a noisy machine does not last; then the turns start again.
constexpr uint64_t kRecheckAfter = 256;
constexpr uint64_t kRecheckLongest = uint64_t(1) << 16;
constexpr uint64_t kRecheckAfterChange = 64;
// A re-check replaces the choice only when the contender's votes are lower
// by more than this fraction (a change costs new buffers and another order
// of summation).
constexpr double kRecheckMargin = 0.1;
// Trials of each side in a re-check (more than kFinalTrials: a change must
// stand out of the noise of a busy machine).
constexpr int kRecheckTrials = 5;
constexpr double kContenderSpread = 2.0;
// Contenders of a choice read from SPARCL_TUNE_FILE (no vote ranked them):
// the model's first candidates.
constexpr size_t kFileContenders = 3;

// The density class of a result of `union_nnz` nonzeros in `dim` entries:
// floor(2 log2(union_nnz / dim)), computed in integers (no libm that could
// round differently on another host); INT32_MIN for an empty result.
int density_class(uint64_t union_nnz, uint64_t dim);

// (The index width follows from dim.)
struct TuneKey {
  uint64_t dim;
  uint8_t value_type;
  Encoding encoding;  // compressed calls set theirs per call
  uint32_t bucket;
  int density_class;
  bool operator<(const TuneKey& o) const;
};

// One group's measurements. All fields but the values in times_s are the same on every
// rank (they change only in call order, from shared numbers).
struct TuneGroup {
  std::vector<sparcl_algorithm_t> candidates;  // the model's order
  std::vector<size_t> active;                  // candidates still in the running (first vote: all)
  std::vector<std::vector<double>> times_s;    // this rank's trial times per candidate (their counts: the same everywhere)
  int target = kTrialsPerCandidate;            // trials each active candidate needs before the vote
  bool final_vote = false;                     // the next vote chooses
  std::optional<sparcl_algorithm_t> chosen;    // after the final vote, or from the tuning file
  bool from_file = false;                      // chosen is SPARCL_TUNE_FILE's
  uint64_t last_seq = 0;                       // the collective that last used it
  // The re-check (kRecheckAfter): the contenders (indices into candidates,
  // best first), whose turn is next, the calls that ran `chosen` since it was
  // chosen, and how many start the next check.
  std::vector<size_t> contenders;
  size_t turn = 0;
  std::optional<size_t> replaced;  // after a change: the choice it replaced, the next challenger
  uint64_t uses = 0;
  uint64_t recheck_at = kRecheckAfter;
  std::optional<sparcl_algorithm_t> checking;  // during a re-check: the choice it checks
  bool explored() const;      // every active candidate has its trials
  size_t next_trial() const;  // the active candidate tried least (first of equals)
  // After a call that ran `chosen`: counts it, and begins the re-check when it is due.
  void used();
  // The contenders other than `a`, which take turns to challenge it.
  std::vector<size_t> challengers_of(sparcl_algorithm_t a) const;
  // The first vote ranked `ranked` (summed votes and candidate indices,
  // fastest first): keeps the finalists and the contenders.
  void shortlist(const std::vector<std::pair<double, size_t>>& ranked);
  // The final vote ranked `ranked`: keeps the fastest (in a re-check: the
  // contender only when faster by more than kRecheckMargin).
  void choose(const std::vector<std::pair<double, size_t>>& ranked);
  // What this rank votes for each active candidate, in the order of
  // `active` (lower is better): over the rounds of trials (the k-th trial of
  // every active candidate, run in consecutive calls), the lower median of
  // its time relative to the round's geometric mean. Relative to its round,
  // because a shared machine's load drifts between rounds far more than
  // between neighbouring calls; the lower median, because the first call of
  // an algorithm pays for its buffers.
  std::vector<double> votes() const;
  // The position of `a` in candidates.
  size_t index_of(sparcl_algorithm_t a) const;
};

struct ParamsRecord {
  bool done = false;
  bool calibrated = false;  // params holds calibrated (or fixed) parameters
  MachineParams params;
};

// What an auto allreduce was handed at its start. Destroyed unused (the call
// failed before its operation existed), it marks its records as failed. (The
// forgetting that follows any failure is the start-and-fail path's:
// collectives/start.cpp.)
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
  // fixed_params: SPARCL_AUTO_PARAMS, or "" to calibrate; tune: SPARCL_AUTO_TUNE;
  // tune_file: SPARCL_TUNE_FILE's choices, written by `stores` (rank 0).
  AutoState(const std::string& fixed_params, bool tune, TuneFile tune_file = {}, bool stores = false);

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

  bool tuning() const { return tune_; }
  // The group of `key` for collective `seq`, made with `candidates()` if new
  // or unused for more than kGroupWindow collectives. Whether it is, depends
  // only on numbers all ranks share (the seq of this call and of the group's
  // last, earlier call of the same dim), never on which other groups this
  // rank has made or pruned by now: those happen in orders that differ
  // between ranks.
  template <class Candidates>
  std::shared_ptr<TuneGroup> group(const TuneKey& key, uint64_t seq, Candidates&& candidates) {
    if (++lookups_ % kGroupWindow == 0) prune(seq);
    auto it = groups_.find(key);
    if (it != groups_.end() && seq - it->second->last_seq <= kGroupWindow) {
      it->second->last_seq = seq;
      return it->second;
    }
    auto g = std::make_shared<TuneGroup>();
    g->last_seq = seq;
    g->candidates = candidates();
    for (size_t i = 0; i < g->candidates.size(); ++i) g->active.push_back(i);
    g->times_s.resize(g->candidates.size());
    sparcl_algorithm_t stored;
    if (g->candidates.size() == 1)
      g->chosen = g->candidates[0];
    else if (tune_file_.find(file_key(key), stored)) {
      g->chosen = stored, g->from_file = true;
      for (size_t i = 0; i < std::min(kFileContenders, g->candidates.size()); ++i) g->contenders.push_back(i);
    }
    return groups_[key] = g;
  }
  // Keeps the choice a vote settled for `key` in SPARCL_TUNE_FILE (rank 0).
  void chosen_by_vote(const TuneKey& key, sparcl_algorithm_t algorithm) {
    if (stores_) tune_file_.store(file_key(key), algorithm);
  }
  // Forgets every group of (dim, value type): after a call that failed here.
  // It may have succeeded on other ranks and changed their groups there; the
  // next call then differs between ranks and fails everywhere with
  // SPARCL_ERR_MISMATCH, after which every rank has dropped them.
  void drop_groups(uint64_t dim, uint8_t value_type);
  // After an auto collective failed on this rank: forgets every record,
  // measurement and calibrated parameter, so that the calls started from now
  // on begin afresh (see the top of this file). Fixed parameters stay.
  void forget() noexcept;

 private:
  std::map<std::pair<uint64_t, uint8_t>, std::shared_ptr<DensityRecord>> latest_;
  std::shared_ptr<ParamsRecord> params_head_;
  // Records of a call that failed, made in advance for when there is no memory to make one.
  std::shared_ptr<DensityRecord> failed_density_ = std::make_shared<DensityRecord>(DensityRecord{true, false, 0, 0, 0});
  std::shared_ptr<ParamsRecord> failed_params_ = std::make_shared<ParamsRecord>(ParamsRecord{true, false, {}});
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
  // Drops the groups unused for more than kGroupWindow collectives before `seq`.
  void prune(uint64_t seq);
  static TuneEntryKey file_key(const TuneKey& key);
  bool tune_;
  TuneFile tune_file_;
  bool stores_;
  std::map<TuneKey, std::shared_ptr<TuneGroup>> groups_;
  uint64_t lookups_ = 0;
};

// The auto allreduce of `input`: an operation that chooses its algorithm
// when it is ready (Operation::ready()) and runs it.
template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_auto_allreduce(Transport& t, const Identity& id, const View<V, I>& input,
                                                       std::shared_ptr<AutoState> state, AutoTicket ticket);

}  // namespace sparcl
