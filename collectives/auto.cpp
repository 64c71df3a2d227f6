// SPDX-License-Identifier: BSD-3-Clause
// SPARCL_ALGO_AUTO (see auto.hpp): the per-communicator state, the
// calibration rounds, and the operation that chooses and runs an algorithm.
#include "auto.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <tuple>

#include "algorithms.hpp"
#include "src/codec/codec.hpp"

namespace sparcl {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> x) {
  if (x.empty()) return 0;
  std::sort(x.begin(), x.end());
  const size_t m = x.size() / 2;
  return x.size() % 2 ? x[m] : 0.5 * (x[m - 1] + x[m]);
}

// Sum of the nonzeros of P vectors at independent uniform positions whose
// union holds u of dim entries.
double independent_inputs_nonzeros(double u, double dim, int ranks) {
  if (dim <= 0 || u <= 0) return 0;
  const double rho = 1 - std::pow(std::max(0.0, 1 - u / dim), 1.0 / ranks);
  return ranks * rho * dim;
}

// Bytes per value on the wire in `id`'s encoding.
template <class V>
double wire_value_bytes(const Identity& id) {
  if (id.encoding == Encoding::Raw) return double(sizeof(V));
  const size_t n = size_t(1) << 20;
  return double(codec::encoded_values_size(id.encoding, n, id.bucket ? id.bucket : 1)) / double(n);
}

// Seconds per merged entry and per element of a dense pass on this rank:
// two interleaved sparse streams of 128K entries each (indices split between
// them by a hash bit, so that branches are as unpredictable as in real
// merges), and a dense add of 256K values. Best of three.
void measure_local_speed(double& merge_s, double& pass_s) {
  constexpr size_t n = size_t(1) << 17;
  Stream<float, uint32_t> a, b;
  a.range = b.range = Range{0, 8 * n};  // a quarter full: the merge stays sparse
  uint64_t h = 0x9e3779b97f4a7c15ULL;
  for (uint32_t i = 0; i < uint32_t(2 * n); ++i) {
    h ^= h << 13, h ^= h >> 7, h ^= h << 17;
    Stream<float, uint32_t>& s = (h & 1) ? a : b;
    s.idx.push_back(4 * i + uint32_t((h >> 1) & 3));
    s.val.push_back(1.0f);
  }
  Array<float> x(2 * n), acc(2 * n);
  std::fill(x.begin(), x.end(), 1.0f);
  std::fill(acc.begin(), acc.end(), 0.0f);
  const View<float, uint32_t> dense{Range{0, 2 * n}, true, 2 * n, nullptr, x.data()};
  double best_merge = INFINITY, best_pass = INFINITY;
  for (int rep = 0; rep < 3; ++rep) {
    const double t0 = now_s();
    const Stream<float, uint32_t> m = merge(a.view(), b.view());
    const double t1 = now_s();
    add_into_dense(dense, acc.data());
    const double t2 = now_s();
    if (m.val.size() != 2 * n) fail(SPARCL_ERR_INTERNAL, "calibration merge lost entries");
    best_merge = std::min(best_merge, t1 - t0);
    best_pass = std::min(best_pass, t2 - t1);
  }
  merge_s = best_merge / double(2 * n);
  pass_s = best_pass / double(2 * n);
}

}  // namespace

// ------------------------------------------------------------------ state --

AutoTicket::~AutoTicket() { fail(); }

void AutoTicket::fail() {
  if (own && !own->done) own->done = true, own->known = false;
  if (params_own && !params_own->done) params_own->done = true, params_own->calibrated = false;
  own.reset();
  params_own.reset();
  native.release();
}

double DensityRecord::overlap(uint64_t dim, int ranks) const {
  if (seen_inputs_nnz == 0) return 1.0;
  const double independent = independent_inputs_nonzeros(double(seen_union_nnz), double(dim), ranks);
  return independent > 0 ? double(seen_inputs_nnz) / independent : 1.0;
}

namespace {

__extension__ typedef unsigned __int128 u128;

int bit_length(u128 x) {
  const uint64_t high = uint64_t(x >> 64), low = uint64_t(x);
  return high ? 128 - __builtin_clzll(high) : low ? 64 - __builtin_clzll(low) : 0;
}

}  // namespace

int density_class(uint64_t union_nnz, uint64_t dim) {
  if (union_nnz == 0 || dim == 0) return INT32_MIN;
  // The largest c with 2^c <= u^2 / d^2: for c = -m, u^2 >= ceil(d^2 / 2^m).
  const u128 u2 = u128(union_nnz) * union_nnz, d2 = u128(dim) * dim;
  if (u2 >= d2) return u2 >= 4 * d2 ? 2 : u2 >= 2 * d2 ? 1 : 0;  // u <= d in a sum; kept total
  // u^2 / d^2 > 2^(bits(u^2) - 1 - bits(d^2)): no m below bits(d^2) - bits(u^2) qualifies.
  for (int m = std::max(1, bit_length(d2) - bit_length(u2)); m < 128; ++m) {
    const u128 need = (d2 >> m) + ((d2 & ((u128(1) << m) - 1)) != 0);
    if (u2 >= need) return -m;
  }
  return -128;
}

bool TuneKey::operator<(const TuneKey& o) const {
  return std::tie(dim, value_type, encoding, bucket, density_class) <
         std::tie(o.dim, o.value_type, o.encoding, o.bucket, o.density_class);
}

void AutoState::prune(uint64_t seq) {
  for (auto it = groups_.begin(); it != groups_.end();)
    it = seq > it->second->last_seq && seq - it->second->last_seq > kGroupWindow ? groups_.erase(it) : std::next(it);
}

void AutoState::drop_groups(uint64_t dim, uint8_t value_type) {
  for (auto it = groups_.begin(); it != groups_.end();)
    it = it->first.dim == dim && it->first.value_type == value_type ? groups_.erase(it) : std::next(it);
}

void AutoState::forget() noexcept {
  for (auto& slot : latest_) slot.second = failed_density_;
  params_head_ = failed_params_;
  if (source_ == "calibrated") settled_.reset(), source_ = "default";
  groups_.clear();
}

bool TuneGroup::explored() const {
  return std::all_of(active.begin(), active.end(), [&](size_t i) { return int(times_s[i].size()) >= target; });
}

size_t TuneGroup::index_of(sparcl_algorithm_t a) const {
  return size_t(std::find(candidates.begin(), candidates.end(), a) - candidates.begin());
}

std::vector<double> TuneGroup::votes() const {
  size_t rounds = active.empty() ? 0 : SIZE_MAX;
  for (size_t j : active) rounds = std::min(rounds, times_s[j].size());
  std::vector<std::vector<double>> relative(active.size());
  for (size_t k = 0; k < rounds; ++k) {
    double log_sum = 0;
    for (size_t j : active) log_sum += std::log(std::max(times_s[j][k], 1e-9));
    const double round_mean = std::exp(log_sum / double(active.size()));
    for (size_t a = 0; a < active.size(); ++a)
      relative[a].push_back(std::max(times_s[active[a]][k], 1e-9) / round_mean);
  }
  std::vector<double> out;
  for (auto& r : relative) {
    std::sort(r.begin(), r.end());
    out.push_back(r.empty() ? INFINITY : r[(r.size() - 1) / 2]);  // the lower median
  }
  return out;
}

std::vector<size_t> TuneGroup::challengers_of(sparcl_algorithm_t a) const {
  std::vector<size_t> others;
  for (size_t i : contenders)
    if (candidates[i] != a) others.push_back(i);
  return others;
}

void TuneGroup::used() {
  if (!chosen || ++uses < recheck_at) return;
  const size_t current = index_of(*chosen);
  const std::vector<size_t> others = challengers_of(*chosen);
  if (others.empty() || current == candidates.size()) return;
  size_t challenger;
  if (replaced && *replaced != current)
    challenger = *replaced;
  else
    challenger = others[turn++ % others.size()];
  replaced.reset();
  checking = chosen;
  chosen.reset();
  from_file = false;
  active = {current, challenger};
  times_s[current].clear();
  times_s[challenger].clear();
  target = kRecheckTrials;
  final_vote = true;
}

void TuneGroup::shortlist(const std::vector<std::pair<double, size_t>>& ranked) {
  active.clear();
  for (size_t i = 0; i < std::min(kFinalists, ranked.size()); ++i) active.push_back(ranked[i].second);
  contenders.clear();
  for (const auto& [votes, i] : ranked)
    if (votes <= kContenderSpread * ranked.front().first) contenders.push_back(i);
  target += kFinalTrials;
  final_vote = true;
}

void TuneGroup::choose(const std::vector<std::pair<double, size_t>>& ranked) {
  size_t first = ranked.front().second;
  if (checking && ranked.size() > 1 && candidates[ranked[1].second] == *checking &&
      !(ranked.front().first < (1 - kRecheckMargin) * ranked[1].first))
    first = ranked[1].second;  // the contender did not win by the margin: the choice stays
  chosen = candidates[first];
  if (checking) {
    const bool kept = *checking == *chosen;
    const size_t others = challengers_of(*chosen).size();
    if (!kept) {
      replaced = index_of(*checking);
      recheck_at = kRecheckAfterChange, turn = 0;
    } else if (recheck_at < kRecheckAfter) {
      recheck_at = kRecheckAfter;  // a change that held
    }
    if (kept && others && turn > 0 && turn % others == 0)  // every contender checked: wait longer
      recheck_at = std::min(2 * recheck_at, kRecheckLongest);
  }
  checking.reset();
  uses = 0;
}

size_t TuneGroup::next_trial() const {
  size_t best = active.front();
  for (size_t i : active)
    if (times_s[i].size() < times_s[best].size()) best = i;
  return best;
}

TuneEntryKey AutoState::file_key(const TuneKey& key) {
  const char* encoding = sparcl_encoding_name(sparcl_value_encoding_t(key.encoding));
  return TuneEntryKey{key.value_type == SPARCL_FLOAT64 ? "float64" : "float32", encoding ? encoding : "unknown",
                      key.bucket, dim_class(key.dim), key.density_class};
}

AutoState::AutoState(const std::string& fixed_params, bool tune, TuneFile tune_file, bool stores)
    : tune_(tune), tune_file_(std::move(tune_file)), stores_(stores) {
  if (!fixed_params.empty()) {
    settled_ = parse_machine_params(fixed_params);
    source_ = "SPARCL_AUTO_PARAMS";
  }
}

AutoTicket AutoState::start(uint64_t dim, uint8_t value_type, size_t value_size, int ranks) {
  AutoTicket t;
  auto& slot = latest_[{dim, value_type}];
  const bool large = ranks > 1 && value_size && dim >= kCalibrationBytes / value_size;
  // Out of memory here fails the call on every rank, and the failure makes
  // every rank forget (forget(): records made in advance), so none keeps a
  // record of this call that the others lack.
  auto own = std::make_shared<DensityRecord>();
  auto params_own = large ? std::make_shared<ParamsRecord>() : nullptr;
  t.previous = slot;
  t.own = std::move(own);
  slot = t.own;
  t.params_before = params_head_;
  t.settled = settled_;
  t.native = NativeSlot(native_order_);
  if (large) {
    t.params_own = std::move(params_own);
    params_head_ = t.params_own;
  }
  return t;
}

bool AutoState::ShapeKey::operator<(const ShapeKey& o) const {
  return std::tie(dim, ranks, value_bytes, wire_value_bytes, native, params.round_s, params.message_s, params.byte_s,
                  params.merge_s, params.pass_s) < std::tie(o.dim, o.ranks, o.value_bytes, o.wire_value_bytes,
                                                             o.native, o.params.round_s, o.params.message_s,
                                                             o.params.byte_s, o.params.merge_s, o.params.pass_s);
}

bool AutoState::depends_on_density(const MachineParams& p, const Workload& w) {
  const ShapeKey key{w.dim, w.ranks, w.value_bytes, w.wire_value_bytes, w.native_dense, p};
  auto it = depends_.find(key);
  if (it != depends_.end()) return it->second;
  if (depends_.size() > 4096) depends_.clear();  // a cache, not a record: bounded
  return depends_[key] = choice_depends_on_density(p, w);
}

std::string AutoState::describe() const {
  std::string s = source_ + ": " + sparcl::describe(settled_ ? *settled_ : default_machine_params());
  if (tune_file_.enabled()) s += "\n" + tune_file_.note();
  return s;
}

// -------------------------------------------------------------- operation --

namespace {

// Calibration rounds (all ranks take part; rank 0 times them):
//   kSmallRing rounds: each rank sends an empty message to r+1, receives from r-1;
//   kAllToAll rounds:  each rank sends an empty message to every other;
//   kLargeRing rounds: a dense message of kLargeBytes to r+1;
//   one round:         rank 0 measures its merge and pass speeds and sends all five figures to every rank.
// The first small round absorbs the ranks' skew and is not used.
constexpr int kSmallRing = 6, kAllToAll = 3, kLargeRing = 3;
constexpr int kCalibrationRounds = kSmallRing + kAllToAll + kLargeRing + 1;
constexpr size_t kLargeBytes = 256 * 1024;
constexpr size_t kFigures = 5;

}  // namespace

// The auto allreduce. Its rounds come in up to three phases, each decided
// before its first round, in values all ranks share:
//
//   [calibration]  kCalibrationRounds rounds: the first large call of a
//                  communicator measures the machine (decided in ready())
//   [vote]         one round: a measuring group that has its trials pools
//                  them (decided in choose())
//   algorithm      the chosen algorithm's rounds, run inside this operation
//
// While the algorithm is not chosen yet (during calibration or the vote), one
// round stands for it. Calibration and vote messages travel raw, whatever
// the call's encoding (round_identity()).
template <class V, class I>
class AutoAllreduce final : public AllreduceOp<V, I> {
  using Base = AllreduceOp<V, I>;

 public:
  AutoAllreduce(Transport& t, const Identity& id, const View<V, I>& input, std::shared_ptr<AutoState> state,
                AutoTicket ticket)
      : Base(t, id, input), state_(std::move(state)), ticket_(std::move(ticket)) {}

  uint64_t inputs_nonzeros() const override { return inner_ ? inner_->inputs_nonzeros() : 0; }

 protected:
  bool ready() override {
    if (inner_) return inner_->ready();
    if (has_phase(Phase::Calibration)) return true;
    if (!params_ready_ && !resolve_params()) return false;
    if (calibrate_) {
      // The choice comes after the calibration rounds: the density record
      // must be complete by then.
      if (ticket_.previous && !ticket_.previous->done) return false;
      // It may choose the native dense algorithm after calibrating, with no
      // wait between: wait for its NativeOrder turn first.
      if (!ticket_.native.first()) return false;
      const auto& r = ticket_.previous;
      set_digest({1, record_words(), r && r->known ? r->union_nnz : 0, r && r->known ? r->seen_inputs_nnz : 0,
                  r && r->known ? r->seen_union_nnz : 0});
      begin_calibration();
      return true;
    }
    return choose();
  }

  int rounds() const override {
    const int own = first_algorithm_round();
    return own + (inner_ ? inner_->rounds() : own > 0 ? 1 : 0);
  }

  void post(int round, RoundIO& io) override {
    const PhaseSpan span = phase_of(round);
    switch (span.phase) {
      case Phase::Calibration: return calibration_post(round - span.first, io);
      case Phase::Vote: return vote_post(io);
      case Phase::Algorithm: return inner_->post(round - span.first, io);
    }
  }

  void consume(int round, std::vector<Received>& messages) override {
    const PhaseSpan span = phase_of(round);
    switch (span.phase) {
      case Phase::Calibration: return calibration_consume(round - span.first, messages);
      case Phase::Vote: return vote_consume(messages);
      case Phase::Algorithm: return inner_->consume(round - span.first, messages);
    }
  }

  Identity round_identity(int round) const override {
    return phase_of(round).phase == Phase::Algorithm ? this->id_ : raw_identity();
  }

  sparcl_choice_t choice() const override { return choice_; }

  void finish() override {
    inner_->finish();
    // The group changes only here, once the call has succeeded: a vote
    // whose call then fails leaves it as it was.
    if (voted_) {
      *group_ = std::move(*voted_);
      if (group_->chosen) state_->chosen_by_vote(key_, *group_->chosen);
    } else if (group_ && !trial_) {
      group_->used();
    }
    if (trial_) {  // counted in the group it was chosen for; the count is the same everywhere
      group_->times_s[group_->index_of(*trial_)].push_back(now_s() - inner_started_);
    }
    this->pieces_ = inner_->pieces();
    // What the next call of this (dim, type) learns: the union (entries of
    // the result with a bit set, which is bitwise alike on every rank) and,
    // where the algorithm saw every input, how much they overlapped. Counts
    // the algorithm made are used as they are; those made here stay with the
    // pieces, so that the result's own form is decided without a new pass.
    DensityRecord& rec = *ticket_.own;
    uint64_t u = 0;
    for (auto& p : this->pieces_) u += p.set_entries = set_entries(p);
    rec.union_nnz = u;
    const uint64_t inputs = inner_->inputs_nonzeros();
    if (inputs > 0 && u > 0) {
      rec.seen_inputs_nnz = inputs, rec.seen_union_nnz = u;
    } else if (used_record_ && ticket_.previous->known) {
      rec.seen_inputs_nnz = ticket_.previous->seen_inputs_nnz, rec.seen_union_nnz = ticket_.previous->seen_union_nnz;
    }
    rec.known = true;
    rec.done = true;
    ticket_.own.reset();
  }

  void failed() noexcept override {
    ticket_.fail();
    if (inner_) inner_->failed();
  }

 private:
  enum class Phase { Calibration, Vote, Algorithm };
  struct PhaseSpan {
    Phase phase;
    int first;   // its first round
    int rounds;  // (the algorithm's: whatever it has)
  };

  // Appends a phase of `rounds` rounds before the algorithm's.
  void add_phase(Phase phase, int rounds) {
    phases_.push_back(PhaseSpan{phase, first_algorithm_round(), rounds});
  }
  bool has_phase(Phase phase) const {
    return std::any_of(phases_.begin(), phases_.end(), [&](const PhaseSpan& p) { return p.phase == phase; });
  }
  int first_algorithm_round() const { return phases_.empty() ? 0 : phases_.back().first + phases_.back().rounds; }
  PhaseSpan phase_of(int round) const {
    for (const PhaseSpan& p : phases_)
      if (round < p.first + p.rounds) return p;
    return PhaseSpan{Phase::Algorithm, first_algorithm_round(), 0};
  }
  // Sets the digest of what this call chooses from (Identity::choice_digest),
  // once, before its first message: FNV-1a over the inputs of the choice, a
  // 64-bit word at a time.
  void set_digest(std::initializer_list<uint64_t> words) {
    if (digest_set_) return;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (uint64_t w : words) h = (h ^ w) * 0x100000001b3ULL;
    if (group_) {
      const TuneGroup& g = *group_;
      const uint64_t head[] = {g.chosen ? uint64_t(*g.chosen) + 1 : 0, uint64_t(g.target), g.final_vote ? 1u : 0u,
                               g.from_file ? 1u : 0u, g.uses, g.recheck_at,
                               g.turn, g.contenders.size(), g.replaced ? uint64_t(*g.replaced) + 1 : 0};
      for (uint64_t w : head) h = (h ^ w) * 0x100000001b3ULL;
      for (size_t i = 0; i < g.candidates.size(); ++i)
        h = (h ^ (uint64_t(g.candidates[i]) << 32 | g.times_s[i].size())) * 0x100000001b3ULL;
      for (size_t i : g.active) h = (h ^ (uint64_t(i) + 0x9e37)) * 0x100000001b3ULL;
    }
    this->id_.choice_digest = uint16_t((h >> 48) ^ (h >> 32) ^ (h >> 16) ^ h) | 1;  // never 0 (a fixed algorithm's)
    digest_set_ = true;
  }
  static uint64_t bits(double x) {
    uint64_t b;
    std::memcpy(&b, &x, sizeof b);
    return b;
  }
  // Whether the previous call's record is known (no record and a failed one
  // lead to the same choice, so they count alike).
  uint64_t record_words() const {
    const auto& r = ticket_.previous;
    return r && r->known ? 1 : 0;
  }

  // The identity of calibration and vote messages: raw values.
  Identity raw_identity() const {
    Identity id = this->id_;
    id.encoding = Encoding::Raw;
    id.bucket = 0;
    return id;
  }

  // Settles the machine parameters this call uses: false while it waits for
  // an earlier large call that may be calibrating.
  bool resolve_params() {
    if (ticket_.settled) {
      set_params(*ticket_.settled, true);
      return true;
    }
    const auto& before = ticket_.params_before;
    if (before && !before->done) return false;
    if (before && before->calibrated) {
      set_params(before->params, true);
      return true;
    }
    if (ticket_.params_own) {  // a large call and nobody has calibrated: this one does
      calibrate_ = true;
      params_ready_ = true;
      return true;
    }
    set_params(default_machine_params(), false);
    return true;
  }

  void set_params(const MachineParams& p, bool calibrated) {
    params_ = p;
    params_ready_ = true;
    if (ticket_.params_own) {
      ticket_.params_own->params = p;
      ticket_.params_own->calibrated = calibrated;
      ticket_.params_own->done = true;
      ticket_.params_own.reset();
    }
  }

  // The model's view of this call from the previous call's record.
  Workload workload(bool use_record) const {
    const double dim = double(this->id_.dim);
    const int p = this->size();
    const bool native = dense_is_native(this->transport_, inner_identity(SPARCL_ALGO_DENSE));
    const double wire = wire_value_bytes<V>(inner_identity(SPARCL_ALGO_DENSE));
    const auto& rec = ticket_.previous;
    Workload w;
    if (!use_record || !rec || !rec->known) {
      w = independent_workload(p, this->id_.dim, double(sizeof(V)), wire, kDefaultDensity * dim, native);
      w.ranks_per_host = this->transport_.ranks_per_host();
      return w;
    }
    w = independent_workload(p, this->id_.dim, double(sizeof(V)), wire, 0, native);
    w.ranks_per_host = this->transport_.ranks_per_host();
    const double u = double(rec->union_nnz);
    const double inputs =
        std::clamp(rec->overlap(this->id_.dim, p) * independent_inputs_nonzeros(u, dim, p), u, double(p) * u);
    w.rank_nnz = inputs / p;
    w.union_nnz = u;
    return w;
  }

  Identity inner_identity(sparcl_algorithm_t algorithm) const {
    Identity id = this->id_;
    id.algorithm = uint8_t(algorithm);
    id.step_base = uint16_t(first_algorithm_round());
    return id;
  }

  // Chooses and builds the algorithm; false while the choice waits for the
  // previous call's density.
  bool choose() {
    const auto& previous = ticket_.previous;
    // Whether to use the record is decided from values all ranks share, not
    // from whether it happens to be complete here already. Measuring needs
    // the record's density class (and the group's state after the previous
    // call), so it always waits. A calibrating call does not measure: its
    // time would include the calibration.
    const bool tune = state_->tuning() && previous && this->size() > 1 && !has_phase(Phase::Calibration);
    const bool use_record = previous && (tune || state_->depends_on_density(params_, workload(false)));
    if (use_record && !previous->done) return false;
    used_record_ = use_record;
    if (tune && !previous->known && !group_) state_->drop_groups(this->id_.dim, this->id_.value_type);
    if (tune && previous->known) {
      if (!group_) {
        key_ = TuneKey{this->id_.dim, this->id_.value_type, this->id_.encoding, this->id_.bucket,
                       density_class(previous->union_nnz, this->id_.dim)};
        // The model ranks the candidates only for a new group: most calls run a group's choice.
        group_ = state_->group(key_, this->id_.seq,
                               [&] { return ranked_algorithms(params_, workload(true), kCandidateSpread); });
      }
      set_digest({2, bits(params_.round_s), bits(params_.message_s), bits(params_.byte_s), bits(params_.merge_s),
                  bits(params_.pass_s), record_words(), previous->union_nnz});
      if (group_->chosen)
        return run(*group_->chosen, group_->from_file ? SPARCL_CHOSEN_FROM_TUNE_FILE : SPARCL_CHOSEN_BY_MEASUREMENT);
      if (!group_->explored()) {
        trial_ = group_->candidates[group_->next_trial()];
        return run(*trial_, SPARCL_CHOSEN_AS_TRIAL);
      }
      // The vote may choose the native dense algorithm with no wait between.
      if (!ticket_.native.first()) return false;
      begin_vote();
      return true;
    }
    const Workload w = workload(use_record);
    set_digest({3, bits(params_.round_s), bits(params_.message_s), bits(params_.byte_s), bits(params_.merge_s),
                bits(params_.pass_s), bits(w.rank_nnz), bits(w.union_nnz)});
    return run(cheapest_algorithm(params_, w), SPARCL_CHOSEN_BY_MODEL);
  }

  // Builds algorithm `a` and starts its clock.
  bool run(sparcl_algorithm_t a, sparcl_choice_t how) {
    this->id_.algorithm = uint8_t(a);
    choice_ = how;
    inner_ = make_allreduce<V, I>(a, this->transport_, inner_identity(a), this->input_, std::move(ticket_.native));
    if (this->input_sent_) inner_->report_input_sent(this->input_sent_);
    this->dense_pieces_ = inner_->pieces_dense();
    inner_started_ = now_s();
    return inner_->ready();
  }

  // The vote round: every rank's median trial time per candidate to every other.
  // Times travel raw, as the calibration's figures do.
  void begin_vote() { add_phase(Phase::Vote, 1); }

  void vote_post(RoundIO& io) {
    const int p = this->size(), r = this->rank();
    const size_t n = group_->active.size();
    const std::vector<double> votes = group_->votes();
    votes_.assign(n, V(0));
    for (size_t i = 0; i < n; ++i) votes_[i] = V(votes[i]);
    const View<V, I> v{Range{0, n}, true, n, nullptr, votes_.data()};
    const SharedBuffer msg = encode(raw_identity(), 0, v);
    for (int j = 1; j < p; ++j) {
      io.send((r + j) % p, msg);
      io.recv((r + p - j) % p);
    }
  }

  void vote_consume(std::vector<Received>& messages) {
    const int p = this->size();
    voted_ = std::make_unique<TuneGroup>(*group_);  // applied in finish()
    TuneGroup& g = *voted_;
    const size_t n = g.active.size();
    std::vector<Held<V, I>> held;
    std::vector<const V*> of_rank(size_t(p), nullptr);
    of_rank[size_t(this->rank())] = votes_.data();
    for (const auto& m : messages) {
      held.push_back(Held<V, I>::of_message(m, Range{0, n}));
      const View<V, I>& v = held.back().view;
      if (!v.dense || v.nnz != n) fail(SPARCL_ERR_CORRUPT, "a vote of auto's measurements is not dense");
      of_rank[size_t(m.peer)] = v.val;
    }
    // Summed in rank order, from the values as sent: the same sums, so the
    // same ranking (ties: the order of `active`), on every rank.
    std::vector<std::pair<double, size_t>> ranked;
    for (size_t i = 0; i < n; ++i) {
      double total = 0;
      for (int q = 0; q < p; ++q) total += double(of_rank[size_t(q)][i]);
      ranked.emplace_back(total, g.active[i]);
    }
    std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    if (g.final_vote) {
      g.choose(ranked);
      run(*g.chosen, SPARCL_CHOSEN_BY_MEASUREMENT);
      return;
    }
    // The first vote: the finalists get more trials; this call is the first of them.
    g.shortlist(ranked);
    trial_ = g.candidates[g.next_trial()];
    run(*trial_, SPARCL_CHOSEN_AS_TRIAL);
  }

  void begin_calibration() {
    // Calibration messages travel raw: the figures must arrive exactly.
    add_phase(Phase::Calibration, kCalibrationRounds);
    large_values_ = std::max<size_t>(kFigures, std::min<size_t>(size_t(this->id_.dim), kLargeBytes / sizeof(V)));
    zeros_.assign(large_values_, V(0));
    started_.assign(kCalibrationRounds, 0);
    took_.assign(kCalibrationRounds, 0);
  }

  void calibration_post(int round, RoundIO& io) {
    const int p = this->size(), r = this->rank();
    started_[size_t(round)] = now_s();
    if (round < kSmallRing) {
      io.send((r + 1) % p, encode_ack(raw_identity(), uint16_t(round)));
      io.recv((r + p - 1) % p);
    } else if (round < kSmallRing + kAllToAll) {
      for (int j = 1; j < p; ++j) {
        io.send((r + j) % p, encode_ack(raw_identity(), uint16_t(round)));
        io.recv((r + p - j) % p);
      }
    } else if (round < kSmallRing + kAllToAll + kLargeRing) {
      const View<V, I> zeros{Range{0, large_values_}, true, large_values_, nullptr, zeros_.data()};
      io.send((r + 1) % p, encode(raw_identity(), uint16_t(round), zeros));
      io.recv((r + p - 1) % p);
    } else if (r == 0) {
      V figures[kFigures];
      measure(figures);
      const View<V, I> v{Range{0, kFigures}, true, kFigures, nullptr, figures};
      SharedBuffer msg = encode(raw_identity(), uint16_t(round), v);
      for (int j = 1; j < p; ++j) io.send(j, msg);
      figures_ = as_received<V, I>(msg, Range{0, kFigures}, r);  // exactly what the others get
    } else {
      io.recv(0);
    }
  }

  void calibration_consume(int round, std::vector<Received>& messages) {
    took_[size_t(round)] = now_s() - started_[size_t(round)];
    const int last = kCalibrationRounds - 1;
    for (const auto& m : messages) {
      if (round < kSmallRing + kAllToAll) {
        check_ack(*m.buffer, m.header, m.peer);
      } else if (round < last) {
        (void)Held<V, I>::of_message(m, Range{0, large_values_});  // validated, then dropped
      } else {
        figures_ = Held<V, I>::of_message(m, Range{0, kFigures});
      }
    }
    if (round != last) return;
    const V* f = figures_.view.val;
    MachineParams p;
    p.round_s = double(f[0]), p.message_s = double(f[1]), p.byte_s = double(f[2]);
    p.merge_s = double(f[3]), p.pass_s = double(f[4]);
    state_->settle(p);
    set_params(p, true);
    choose();  // the density record was complete before calibration started
  }

  // Rank 0: the figures from its timings.
  void measure(V* figures) const {
    const int p = this->size();
    auto durations = [&](int first, int count) {
      return std::vector<double>(took_.begin() + first, took_.begin() + first + count);
    };
    const double round = median(durations(1, kSmallRing - 1));
    const double all = median(durations(kSmallRing, kAllToAll));
    const double large = median(durations(kSmallRing + kAllToAll, kLargeRing));
    const double bytes = double(sizeof(WireHeader) + large_values_ * sizeof(V));
    double merge_s = 0, pass_s = 0;
    measure_local_speed(merge_s, pass_s);
    const double floor = 1e-12;
    figures[0] = V(std::max(round, 1e-7));
    figures[1] = V(p > 2 ? std::max((all - round) / (p - 2), floor) : floor);
    figures[2] = V(std::max((large - round) / bytes, floor));
    figures[3] = V(std::max(merge_s, floor));
    figures[4] = V(std::max(pass_s, floor));
  }

  std::shared_ptr<AutoState> state_;
  AutoTicket ticket_;
  std::unique_ptr<AllreduceOp<V, I>> inner_;
  MachineParams params_;
  bool params_ready_ = false;
  bool calibrate_ = false;    // this call calibrates (decided in ready())
  std::vector<PhaseSpan> phases_;  // its own phases before the algorithm's (calibration, vote), in order
  bool used_record_ = false;  // the choice waited for (and used) the previous call's record
  bool digest_set_ = false;   // this->id_.choice_digest is final (messages may carry it)
  sparcl_choice_t choice_ = SPARCL_CHOSEN_BY_MODEL;
  std::shared_ptr<TuneGroup> group_;             // when measuring: this call's group
  TuneKey key_{};                                // ... and its key
  std::unique_ptr<TuneGroup> voted_;             // the group after this call's vote, until finish()
  std::optional<sparcl_algorithm_t> trial_;      // a trial of this candidate
  Array<V> votes_;
  double inner_started_ = 0;
  size_t large_values_ = 0;
  Array<V> zeros_;
  std::vector<double> started_, took_;
  Held<V, I> figures_;
};

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_auto_allreduce(Transport& t, const Identity& id, const View<V, I>& input,
                                                       std::shared_ptr<AutoState> state, AutoTicket ticket) {
  return std::make_unique<AutoAllreduce<V, I>>(t, id, input, std::move(state), std::move(ticket));
}

#define SPARCL_INSTANTIATE(V, I)                                                                            \
  template std::unique_ptr<AllreduceOp<V, I>> make_auto_allreduce(Transport&, const Identity&,            \
                                                                  const View<V, I>&, std::shared_ptr<AutoState>, \
                                                                  AutoTicket);
SPARCL_FOR_EACH_TYPE(SPARCL_INSTANTIATE)

}  // namespace sparcl
