// SPDX-License-Identifier: BSD-3-Clause
// Fault injection. One rank's transport is wrapped (src/test_hooks.hpp) so
// that its outgoing messages get a bit flipped, are dropped or are held back,
// or one of its allocations fails (this program replaces the global operator
// new; the library's objects are linked in, so every allocation sparcl makes
// on that rank can be made to fail). Between faults the program checks the
// library's promise (docs/reliability.md):
//   - a collective never returns SUCCESS with a wrong result on any rank
//     (results are compared bit for bit with a sum every rank computes
//     locally from all ranks' deterministic integer inputs);
//   - after every injected fault the next `--verify` (10) collectives succeed
//     and are exact on every rank (auto after a failure on some ranks only:
//     one of them may fail instead, on every rank, with SPARCL_ERR_MISMATCH);
//   - no call hangs (a watchdog ends the job past --hang-s seconds).
// A flip that lands in a raw value byte cannot be seen without checksums (any
// bit pattern is a float): such silent results are counted apart, as are
// flips of an index that still validates (in range and in order). Failures
// that reach only some ranks are counted ("partial") and reported.
//
//   fault_test [--faults N] [--kinds flip,drop,delay,alloc] [--checksum 0|1|both]
//              [--algos auto,...|all] [--timeout-ms T] [--seed S] [--verify 10]
//              [--skip dense-native,passthrough] [--hang-s 60] [--max-dim 30000]
//   fault_test --storm DIR [--storm-ops N] [--storm-seconds S] [--algos A]  (with storm.sh, which
//              stops and resumes one rank while the ranks run collectives on
//              the first algorithm of --algos)
// Exit status 0 when every assertion held. Rank 0 prints one summary line
// per (checksums, fault kind).
#include <mpi.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "sparcl/sparcl_mpi.h"
#include "test_hooks.hpp"

// --- every allocation of this process asks the hook first ---
namespace {
void* allocate(size_t n) {
  if (sparcl::testing::should_fail_allocation()) throw std::bad_alloc();
  void* p = std::malloc(n ? n : 1);
  if (!p) throw std::bad_alloc();
  return p;
}
void* allocate_aligned(size_t n, std::align_val_t a) {
  if (sparcl::testing::should_fail_allocation()) throw std::bad_alloc();
  const size_t align = std::max(size_t(a), sizeof(void*));
  void* p = nullptr;
  if (posix_memalign(&p, align, n ? n : 1) != 0) throw std::bad_alloc();
  return p;
}
}  // namespace
void* operator new(size_t n) { return allocate(n); }
void* operator new[](size_t n) { return allocate(n); }
void* operator new(size_t n, std::align_val_t a) { return allocate_aligned(n, a); }
void* operator new[](size_t n, std::align_val_t a) { return allocate_aligned(n, a); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  try {
    return allocate(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  try {
    return allocate(n);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

using Clock = std::chrono::steady_clock;
using sparcl::testing::FaultCounts;
using sparcl::testing::FaultOdds;
using sparcl::testing::FlipSite;

int g_rank = 0, g_size = 1;

// --- watchdog: a call that never returns ends the job with a message ---
std::atomic<int64_t> g_call_started_ns{0};
std::atomic<bool> g_stop_watchdog{false};
double g_hang_s = 60;
char g_call_what[160];

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

void watchdog() {
  while (!g_stop_watchdog) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const int64_t t = g_call_started_ns.load();
    if (t != 0 && double(now_ns() - t) * 1e-9 > g_hang_s) {
      std::fprintf(stderr, "HANG: rank %d: a call has not returned after %.0f s: %s\n", g_rank, g_hang_s,
                   g_call_what);
      std::fflush(stderr);
      _exit(3);
    }
  }
}

// Arms the watchdog over `what` for the lifetime of the object.
class WatchdogArm {
 public:
  explicit WatchdogArm(const char* what) {
    std::snprintf(g_call_what, sizeof g_call_what, "%s", what);
    g_call_started_ns = now_ns();
  }
  ~WatchdogArm() { g_call_started_ns = 0; }
  WatchdogArm(const WatchdogArm&) = delete;
  WatchdogArm& operator=(const WatchdogArm&) = delete;
};

// --- deterministic inputs and their exact sum ---

enum class Op : int { SparseToDense, SparseToResult, DropIn, Allgather, PassThrough, Count };
const char* op_name(Op o) {
  switch (o) {
    case Op::SparseToDense: return "allreduce_sparse(dense out)";
    case Op::SparseToResult: return "allreduce_sparse(result)";
    case Op::DropIn: return "sparcl_allreduce";
    case Op::Allgather: return "allgather_sparse";
    case Op::PassThrough: return "sparcl_allreduce(MAX int32)";
    default: return "?";
  }
}

struct Shape {
  Op op;
  uint64_t dim;
  double density;
  bool f64;
  uint64_t seed;
};

template <class V>
struct Vec {
  std::vector<uint64_t> idx;
  std::vector<V> val;
};

// Rank r's input: distinct sorted indices, small nonzero integers (sums are exact in any order).
template <class V>
Vec<V> input_of(const Shape& s, int r) {
  Vec<V> v;
  std::mt19937_64 rng(s.seed * 1000003u + uint64_t(r) * 7919u + 1);
  std::uniform_real_distribution<double> coin(0, 1);
  std::uniform_int_distribution<int> ints(-8, 7);
  for (uint64_t i = 0; i < s.dim; ++i)
    if (coin(rng) < s.density) {
      v.idx.push_back(i);
      const int x = ints(rng);
      v.val.push_back(V(x >= 0 ? x + 1 : x));
    }
  return v;
}

template <class V>
std::vector<V> dense_of(const Vec<V>& v, uint64_t dim) {
  std::vector<V> d(dim, V(0));
  for (size_t k = 0; k < v.idx.size(); ++k) d[v.idx[k]] = v.val[k];
  return d;
}

// The sum in rank order: integers, so every order gives these bits.
template <class V>
std::vector<V> reference(const Shape& s) {
  std::vector<V> sum(s.dim, V(0));
  for (int r = 0; r < g_size; ++r) {
    Vec<V> v = input_of<V>(s, r);
    for (size_t k = 0; k < v.idx.size(); ++k) sum[v.idx[k]] += v.val[k];
  }
  return sum;
}

template <class V>
bool same_bits(const std::vector<V>& a, const std::vector<V>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(V)) == 0;
}

template <class V>
sparcl_sparse_t as_input(const Vec<V>& v, uint64_t dim) {
  sparcl_sparse_t s{};
  s.dim = dim;
  s.nnz = v.idx.size();
  s.index_type = SPARCL_INDEX_U64;
  s.indices = v.idx.data();
  s.value_type = sizeof(V) == 4 ? SPARCL_FLOAT32 : SPARCL_FLOAT64;
  s.values = v.val.data();
  return s;
}

template <class V>
bool result_is(sparcl_result_t res, const std::vector<V>& want) {
  if (!res || sparcl_result_dim(res) != want.size()) return false;
  std::vector<V> got(want.size(), V(-999));
  if (sparcl_result_to_dense(res, got.data()) != SPARCL_SUCCESS) return false;
  return same_bits(got, want);
}

struct Outcome {
  sparcl_status_t status = SPARCL_SUCCESS;
  bool wrong = false;  // SUCCESS with a result that differs from the reference
  double seconds = 0;
  std::string error;
};

// Arms (on the faulty rank) what `before` says right before the call, and
// disarms right after: the program's own allocations never fail.
template <class Call>
sparcl_status_t timed(const char* what, Call&& call, const std::function<void()>& before,
                      const std::function<void()>& after, double& seconds) {
  const auto t0 = Clock::now();
  sparcl_status_t st;
  {
    const WatchdogArm arm(what);
    if (before) before();
    st = call();
    if (after) after();
  }
  seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return st;
}

template <class V>
Outcome run_typed(sparcl_comm_t comm, const Shape& s, const std::function<void()>& before,
                  const std::function<void()>& after) {
  Outcome o;
  const Vec<V> mine = input_of<V>(s, g_rank);
  const sparcl_sparse_t in = as_input(mine, s.dim);
  const std::vector<V> want = reference<V>(s);
  char what[160];
  std::snprintf(what, sizeof what, "%s dim %llu", op_name(s.op), (unsigned long long)s.dim);
  switch (s.op) {
    case Op::SparseToDense: {
      std::vector<V> out(s.dim, V(-999));
      o.status = timed(what, [&] { return sparcl_allreduce_sparse(&in, out.data(), nullptr, comm); }, before, after,
                       o.seconds);
      o.wrong = o.status == SPARCL_SUCCESS && !same_bits(out, want);
      break;
    }
    case Op::SparseToResult: {
      sparcl_result_t res = nullptr;
      o.status = timed(what, [&] { return sparcl_allreduce_sparse(&in, nullptr, &res, comm); }, before, after,
                       o.seconds);
      o.wrong = o.status == SPARCL_SUCCESS && !result_is(res, want);
      if (o.status != SPARCL_SUCCESS && res) o.wrong = true;  // a failed call must leave the handle NULL
      sparcl_result_free(res);
      break;
    }
    case Op::DropIn: {
      std::vector<V> x = dense_of(mine, s.dim), out(s.dim, V(-999));
      o.status = timed(what,
                       [&] {
                         return sparcl_allreduce(x.data(), out.data(), s.dim,
                                                 sizeof(V) == 4 ? SPARCL_FLOAT32 : SPARCL_FLOAT64, SPARCL_SUM, comm);
                       },
                       before, after, o.seconds);
      o.wrong = o.status == SPARCL_SUCCESS && !same_bits(out, want);
      break;
    }
    case Op::Allgather: {
      std::vector<sparcl_result_t> results(size_t(g_size), nullptr);
      sparcl_result_t merged = nullptr;
      o.status = timed(what, [&] { return sparcl_allgather_sparse(&in, results.data(), &merged, comm); }, before,
                       after, o.seconds);
      if (o.status == SPARCL_SUCCESS) {
        o.wrong = !result_is(merged, want);
        for (int r = 0; r < g_size; ++r) o.wrong |= !result_is(results[size_t(r)], dense_of(input_of<V>(s, r), s.dim));
      }
      for (auto& r : results) sparcl_result_free(r);
      sparcl_result_free(merged);
      break;
    }
    case Op::PassThrough: {
      std::vector<int32_t> x(s.dim), out(s.dim, -999), ref(s.dim, INT32_MIN);
      for (int r = 0; r < g_size; ++r) {
        std::vector<V> d = dense_of(input_of<V>(s, r), s.dim);
        for (uint64_t i = 0; i < s.dim; ++i) {
          ref[i] = std::max(ref[i], int32_t(d[i]));
          if (r == g_rank) x[i] = int32_t(d[i]);
        }
      }
      o.status = timed(what, [&] { return sparcl_allreduce(x.data(), out.data(), s.dim, SPARCL_INT32, SPARCL_MAX, comm); },
                       before, after, o.seconds);
      o.wrong = o.status == SPARCL_SUCCESS && out != ref;
      break;
    }
    default: break;
  }
  if (o.status != SPARCL_SUCCESS) o.error = sparcl_comm_last_error(comm);
  return o;
}

Outcome run(sparcl_comm_t comm, const Shape& s, const std::function<void()>& before = {},
            const std::function<void()>& after = {}) {
  return s.f64 ? run_typed<double>(comm, s, before, after) : run_typed<float>(comm, s, before, after);
}

// The same shape on every rank: drawn from a generator every rank seeds alike.
uint64_t g_max_dim = 30000;

Shape draw_shape(std::mt19937_64& rng, bool passthrough) {
  static const uint64_t dims[] = {1, 6, 64, 1000, 5000, 30000};
  static const double densities[] = {0.005, 0.05, 0.3, 0.8};
  Shape s;
  const int ops = passthrough ? int(Op::Count) : int(Op::PassThrough);
  s.op = Op(std::uniform_int_distribution<int>(0, ops - 1)(rng));
  s.dim = std::min(g_max_dim, dims[std::uniform_int_distribution<int>(0, 5)(rng)]);
  s.density = densities[std::uniform_int_distribution<int>(0, 3)(rng)];
  s.f64 = std::uniform_int_distribution<int>(0, 3)(rng) == 0;
  s.seed = rng();
  return s;
}

// --- tallies ---

// KNone injects nothing: a control run, to tell how often collectives fail
// without any fault (a timeout on a loaded machine).
enum Kind { KFlip, KDrop, KDelay, KAlloc, KNone, KCount };
const char* kKindNames[] = {"flip", "drop", "delay", "alloc", "none"};

struct Tally {
  uint64_t attempts = 0, injected = 0;
  uint64_t tolerated = 0;          // every rank succeeded, exact (a delay within the timeout, ...)
  uint64_t failed_everywhere = 0;  // every rank returned an error
  uint64_t partial = 0;            // some ranks failed, the others succeeded exactly
  uint64_t silent_wrong = 0;       // SUCCESS with a wrong result: the promise broken
  uint64_t undetectable_value = 0; // ... from a flipped value byte without checksums
  uint64_t undetectable_index = 0; // ... from a flipped index byte without checksums
  uint64_t recovery_failures = 0;  // one of the next --verify collectives failed or was wrong
  uint64_t auto_resets = 0;        // auto after a partial failure: one call failed on every rank with MISMATCH
  uint64_t verify_calls = 0;
  uint64_t slow_failures = 0;      // out of memory on one rank, and another rank waited for its timeout
  double max_seconds = 0;
  std::map<std::string, uint64_t> statuses;  // of failed calls, all ranks
  std::map<std::string, uint64_t> sites;     // where flips landed
  std::map<std::string, uint64_t> recovery_statuses;  // of the verify calls that failed, all ranks
};

struct Wire {  // what each rank reports after a collective
  int status;
  int wrong;
  double seconds;
};

std::vector<Wire> gather(const Outcome& o) {
  Wire w{int(o.status), o.wrong ? 1 : 0, o.seconds};
  std::vector<Wire> all(static_cast<size_t>(g_size));
  MPI_Allgather(&w, sizeof w, MPI_BYTE, all.data(), sizeof w, MPI_BYTE, MPI_COMM_WORLD);
  return all;
}

std::vector<sparcl_algorithm_t> every_algorithm() {
  std::vector<sparcl_algorithm_t> all;
  for (int x = 0; x < sparcl_algorithm_count(); ++x) all.push_back(sparcl_algorithm_t(x));
  return all;
}

struct Options {
  int faults = 20;
  std::vector<int> kinds{KFlip, KDrop, KDelay, KAlloc};
  std::vector<int> checksums{0, 1};
  std::vector<sparcl_algorithm_t> algos = every_algorithm();
  int64_t timeout_ms = 300;
  uint64_t seed = 1;
  int verify = 10;
  std::vector<std::string> skip;
  std::string storm_dir;
  int storm_ops = 200;
  double storm_seconds = 60;  // the storm ends after this long even if storm_ops were not all run
  bool verbose = false;
};

bool skipped(const Options& o, const char* name) {
  return std::find(o.skip.begin(), o.skip.end(), name) != o.skip.end();
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t comma = s.find(',', pos);
    const std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (!item.empty()) out.push_back(item);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

sparcl_algorithm_t parse_algo(const std::string& a) {
  for (int x = 0; x < sparcl_algorithm_count(); ++x)
    if (a == sparcl_algorithm_name(sparcl_algorithm_t(x))) return sparcl_algorithm_t(x);
  std::fprintf(stderr, "unknown algorithm %s\n", a.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--faults") o.faults = std::atoi(next().c_str());
    else if (a == "--timeout-ms") o.timeout_ms = std::atoll(next().c_str());
    else if (a == "--seed") o.seed = std::strtoull(next().c_str(), nullptr, 10);
    else if (a == "--verify") o.verify = std::atoi(next().c_str());
    else if (a == "--hang-s") g_hang_s = std::atof(next().c_str());
    else if (a == "--max-dim") g_max_dim = std::strtoull(next().c_str(), nullptr, 10);
    else if (a == "--skip") o.skip = split(next());
    else if (a == "--storm") o.storm_dir = next();
    else if (a == "--storm-ops") o.storm_ops = std::atoi(next().c_str());
    else if (a == "--storm-seconds") o.storm_seconds = std::atof(next().c_str());
    else if (a == "--verbose") o.verbose = true;
    else if (a == "--checksum") {
      const std::string v = next();
      o.checksums = v == "both" ? std::vector<int>{0, 1} : std::vector<int>{std::atoi(v.c_str())};
    } else if (a == "--kinds") {
      o.kinds.clear();
      for (const auto& k : split(next())) {
        int found = -1;
        for (int j = 0; j < KCount; ++j)
          if (k == kKindNames[j]) found = j;
        if (found < 0) {
          std::fprintf(stderr, "unknown fault kind %s\n", k.c_str());
          std::exit(2);
        }
        o.kinds.push_back(found);
      }
    } else if (a == "--algos") {
      const std::string v = next();
      if (v != "all") {
        o.algos.clear();
        for (const auto& x : split(v)) o.algos.push_back(parse_algo(x));
      }
    } else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      std::exit(2);
    }
  }
  return o;
}

std::string transport_label() {
  const char* t = std::getenv("SPARCL_TRANSPORT");
  std::string s = t && *t ? t : "mpi";
  if (s == "ofi") {
    const char* p = std::getenv("SPARCL_OFI_PROVIDER");
    s += std::string("/") + (p ? p : "tcp;ofi_rxm");
  } else if (s == "ucx") {
    const char* p = std::getenv("UCX_TLS");
    s += std::string("/") + (p ? p : "default");
  }
  return s;
}

// Creation is bounded by the same short timeout as the collectives; on a
// loaded machine a connecting transport (libfabric tcp) may need longer, so
// creation is retried, each time over a fresh duplicate of MPI_COMM_WORLD (a
// creation that timed out may leave an exchange pending on its communicator).
sparcl_comm_t make_comm(const Options& opt, sparcl_algorithm_t algo, int checksum) {
  sparcl_config_t c = SPARCL_CONFIG_INIT;
  c.algorithm = algo;
  c.checksum = checksum;
  c.timeout_ms = opt.timeout_ms;
  for (int attempt = 0; attempt < 20; ++attempt) {
    MPI_Comm world;
    MPI_Comm_dup(MPI_COMM_WORLD, &world);
    sparcl_comm_t comm = nullptr;
    const sparcl_status_t st = sparcl_comm_create_mpi(world, &c, &comm);
    int ok = st == SPARCL_SUCCESS, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (all_ok) return comm;  // sparcl keeps a duplicate of its own; `world` may stay
    if (comm) sparcl_comm_free(comm);
    if (st != SPARCL_SUCCESS && st != SPARCL_ERR_TIMEOUT) {
      std::fprintf(stderr, "rank %d: sparcl_comm_create_mpi: %s\n", g_rank, sparcl_comm_last_error(nullptr));
      break;
    }
  }
  std::fprintf(stderr, "rank %d: sparcl_comm_create_mpi failed 20 times: %s\n", g_rank, sparcl_comm_last_error(nullptr));
  MPI_Abort(MPI_COMM_WORLD, 2);
  return nullptr;
}

std::string status_name(int st) { return sparcl_strerror(sparcl_status_t(st)); }

// Runs the fault loop on one communicator; adds to tallies[kind].
void fault_block(const Options& opt, sparcl_algorithm_t algo, int checksum, Tally* tallies, int& problems) {
  const bool mpi = transport_label() == "mpi";
  const bool passthrough = mpi && !skipped(opt, "passthrough");
  sparcl_comm_t comm = make_comm(opt, algo, checksum);
  const int faulty = int((opt.seed + uint64_t(algo) + uint64_t(checksum)) % uint64_t(g_size));
  sparcl::testing::FaultInjector* inj = nullptr;
  if (g_rank == faulty) inj = &sparcl::testing::inject_faults(comm, opt.seed * 31 + uint64_t(algo));
  std::mt19937_64 shared(opt.seed * 1000 + uint64_t(algo) * 10 + uint64_t(checksum));  // alike on every rank
  std::mt19937_64 local(opt.seed * 7 + uint64_t(g_rank));
  std::map<int, uint64_t> allocations_seen;  // per op: allocations of its last clean call (faulty rank)
  auto clean = [&](const Shape& s) {
    const bool count = g_rank == faulty;
    return run(
        comm, s, [&] { if (count) sparcl::testing::reset_allocation_count(); },
        [&] {
          if (count) allocations_seen[int(s.op)] = std::max(allocations_seen[int(s.op)], sparcl::testing::count_allocations());
        });
  };
  // Warm-up: auto's measuring and every shape's first call settle before faults.
  for (int i = 0; i < 20; ++i) {
    const Shape s = draw_shape(shared, passthrough);
    const Outcome o = clean(s);
    const auto all = gather(o);
    for (int r = 0; r < g_size; ++r)
      if (all[size_t(r)].status != SPARCL_SUCCESS || all[size_t(r)].wrong) {
        if (g_rank == 0)
          std::printf("warm-up failure: %s %s checksum=%d rank %d: %s%s\n", sparcl_algorithm_name(algo),
                      op_name(s.op), checksum, r, status_name(all[size_t(r)].status).c_str(),
                      all[size_t(r)].wrong ? " (wrong result)" : "");
        ++problems;
      }
  }
  for (int f = 0; f < opt.faults; ++f) {
    const int kind = opt.kinds[size_t(f) % opt.kinds.size()];
    Tally& t = tallies[kind];
    const Shape s = draw_shape(shared, passthrough);
    FaultCounts before{};
    if (inj) before = inj->counts();
    std::function<void()> arm, disarm;
    if (g_rank == faulty) {
      if (kind == KNone) {
      } else if (kind == KAlloc) {
        const uint64_t n = std::max<uint64_t>(1, allocations_seen[int(s.op)]);
        const uint64_t nth = 1 + std::uniform_int_distribution<uint64_t>(0, n - 1)(local);
        arm = [nth] { sparcl::testing::arm_allocation_failure(nth); };
        disarm = [] { sparcl::testing::disarm_allocation_failure(); };
      } else {
        FaultOdds odds;
        if (kind == KFlip) odds.flip = 0.5;
        if (kind == KDrop) odds.drop = 0.5;
        if (kind == KDelay) {
          odds.delay = 0.5;
          odds.delay_min_ms = 1;
          odds.delay_max_ms = int(2 * opt.timeout_ms);
        }
        inj->arm(odds, 1);
        disarm = [inj] { inj->disarm(); };
      }
    }
    const Outcome o = run(comm, s, arm, disarm);
    // The fault is over: a held message goes out now (late for its
    // collective), so the verify collectives do not queue behind it.
    if (inj) inj->flush();
    // What was injected (on the faulty rank), told to all.
    int fault[3] = {0, -1, 0};  // injected, flip site, 0
    if (g_rank == faulty) {
      const FaultCounts after = inj->counts();
      if (kind == KNone) {
        fault[0] = 1;
      } else if (kind == KAlloc) {
        fault[0] = sparcl::testing::allocation_failure_fired() ? 1 : 0;
      } else {
        fault[0] = int((after.flips - before.flips) + (after.drops - before.drops) + (after.delays - before.delays));
        for (int site = 0; site < int(FlipSite::Count); ++site)
          if (after.flips_at[site] != before.flips_at[site]) fault[1] = site;
      }
    }
    MPI_Bcast(fault, 3, MPI_INT, faulty, MPI_COMM_WORLD);
    const auto all = gather(o);
    ++t.attempts;
    if (!fault[0]) continue;  // nothing hit this collective (fewer messages or allocations than drawn)
    ++t.injected;
    static const char* kSites[] = {"header", "index", "value", "trailer", "abort-notice"};
    if (kind == KFlip && fault[1] >= 0) ++t.sites[kSites[fault[1]]];
    int failed = 0, wrong = 0;
    for (const auto& w : all) {
      failed += w.status != SPARCL_SUCCESS;
      wrong += w.wrong;
      t.max_seconds = std::max(t.max_seconds, w.seconds);
      if (w.status != SPARCL_SUCCESS) ++t.statuses[status_name(w.status)];
    }
    // Out of memory is told to the other ranks at once: none may wait for its timeout.
    if (kind == KAlloc && failed > 0)
      for (const auto& w : all)
        if (w.seconds * 1000 >= 0.9 * double(opt.timeout_ms)) {
          ++t.slow_failures;
          ++problems;
          break;
        }
    const char* verdict;
    if (wrong) {
      const bool value_flip = kind == KFlip && !checksum && fault[1] == int(FlipSite::Value);
      const bool index_flip = kind == KFlip && !checksum && fault[1] == int(FlipSite::Index);
      if (value_flip) {
        ++t.undetectable_value;
        verdict = "undetectable (value flip, no checksums)";
      } else if (index_flip) {
        ++t.undetectable_index;
        verdict = "undetectable (index flip, no checksums)";
      } else {
        ++t.silent_wrong;
        ++problems;
        verdict = "SILENT WRONG RESULT";
      }
    } else if (failed == g_size) {
      ++t.failed_everywhere;
      verdict = "failed everywhere";
    } else if (failed == 0) {
      ++t.tolerated;
      verdict = "tolerated";
    } else {
      ++t.partial;
      verdict = "partial failure";
    }
    if (g_rank == 0 && (opt.verbose || (wrong && !std::strstr(verdict, "undetectable")))) {
      std::printf("fault %s on rank %d (%s), %s %s checksum=%d dim=%llu: %s; statuses:", kKindNames[kind], faulty,
                  kind == KFlip && fault[1] >= 0 ? kSites[fault[1]] : "-", sparcl_algorithm_name(algo), op_name(s.op),
                  checksum, (unsigned long long)s.dim, verdict);
      for (const auto& w : all) std::printf(" %s%s", status_name(w.status).c_str(), w.wrong ? "(wrong)" : "");
      std::printf("\n");
    }
    if (!o.error.empty() && opt.verbose) std::printf("  rank %d: %s\n", g_rank, o.error.c_str());
    // The next collectives are exact on every rank. Except for auto after a
    // failure on some ranks only: its records may then differ between ranks,
    // and one call may fail instead, on every rank with SPARCL_ERR_MISMATCH
    // (collectives/auto.hpp); the calls after it are exact.
    bool reset_allowed = algo == SPARCL_ALGO_AUTO && failed > 0 && failed < g_size;
    for (int v = 0; v < opt.verify; ++v) {
      const Shape vs = draw_shape(shared, passthrough);
      const Outcome vo = clean(vs);
      const auto vall = gather(vo);
      ++t.verify_calls;
      bool bad = false, reset = reset_allowed;
      for (const auto& w : vall) {
        bad |= w.status != SPARCL_SUCCESS || w.wrong;
        reset &= w.status == SPARCL_ERR_MISMATCH && !w.wrong;
      }
      if (!bad) continue;
      if (reset) {
        ++t.auto_resets;
        reset_allowed = false;
        continue;
      }
      ++t.recovery_failures;
      ++problems;
      for (const auto& w : vall)
        ++t.recovery_statuses[w.wrong ? "wrong result" : status_name(w.status)];
      if (g_rank == 0) {
        std::printf("RECOVERY FAILURE: collective %d after a %s fault (%s, %s checksum=%d); now %s dim=%llu:",
                    v + 1, kKindNames[kind], verdict, sparcl_algorithm_name(algo), checksum, op_name(vs.op),
                    (unsigned long long)vs.dim);
        for (const auto& w : vall) std::printf(" %s%s", status_name(w.status).c_str(), w.wrong ? "(wrong)" : "");
        std::printf("\n");
      }
      if (vo.status != SPARCL_SUCCESS) std::printf("  rank %d: %s\n", g_rank, vo.error.c_str());
      std::fflush(stdout);
    }
  }
  // Messages still held back go out before the communicator is freed.
  MPI_Barrier(MPI_COMM_WORLD);
  const sparcl_status_t st = sparcl_comm_free(comm);
  if (st != SPARCL_SUCCESS && g_rank == 0) std::printf("note: sparcl_comm_free: %s\n", sparcl_strerror(st));
}

int faults_main(const Options& opt) {
  const std::string transport = transport_label();
  int problems = 0;
  const auto t0 = Clock::now();
  for (int checksum : opt.checksums) {
    Tally tallies[KCount];
    for (sparcl_algorithm_t algo : opt.algos) {
      // Known, not yet fixed: the dense algorithm's native MPI_Iallreduce
      // (MPI transport, no checksums) goes out of step after a failed barrier.
      if (algo == SPARCL_ALGO_DENSE && !checksum && transport == "mpi" && skipped(opt, "dense-native")) continue;
      fault_block(opt, algo, checksum, tallies, problems);
    }
    if (g_rank == 0)
      for (int kind : opt.kinds) {
        const Tally& t = tallies[kind];
        std::printf(
            "transport=%s P=%d checksum=%d kind=%s: injected %llu (of %llu tries); failed everywhere %llu, "
            "partial %llu, tolerated %llu; silent wrong %llu; undetectable without checksums: value %llu, index "
            "%llu; recovery failures %llu (of %llu verify calls); auto resets %llu; failures that waited for the "
            "timeout %llu; "
            "slowest call %.3f s",
            transport.c_str(), g_size, checksum, kKindNames[kind], (unsigned long long)t.injected,
            (unsigned long long)t.attempts, (unsigned long long)t.failed_everywhere, (unsigned long long)t.partial,
            (unsigned long long)t.tolerated, (unsigned long long)t.silent_wrong,
            (unsigned long long)t.undetectable_value, (unsigned long long)t.undetectable_index,
            (unsigned long long)t.recovery_failures, (unsigned long long)t.verify_calls,
            (unsigned long long)t.auto_resets,
            (unsigned long long)(kind == KAlloc ? t.slow_failures : 0), t.max_seconds);
        if (!t.sites.empty()) {
          std::printf("; flips at");
          for (const auto& s : t.sites) std::printf(" %s:%llu", s.first.c_str(), (unsigned long long)s.second);
        }
        if (!t.recovery_statuses.empty()) {
          std::printf("; verify statuses after failures");
          for (const auto& s : t.recovery_statuses)
            std::printf(" [%s]:%llu", s.first.c_str(), (unsigned long long)s.second);
        }
        if (!t.statuses.empty()) {
          std::printf("; statuses");
          for (const auto& s : t.statuses) std::printf(" [%s]:%llu", s.first.c_str(), (unsigned long long)s.second);
        }
        std::printf("\n");
      }
    std::fflush(stdout);
  }
  int all_problems = 0;
  MPI_Allreduce(&problems, &all_problems, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (g_rank == 0)
    std::printf("transport=%s P=%d: %s (hangs 0; %.1f s)\n", transport.c_str(), g_size,
                all_problems ? "FAILED" : "all assertions held",
                std::chrono::duration<double>(Clock::now() - t0).count());
  return all_problems ? 1 : 0;
}

// Where this rank is, in DIR/phase.<rank>: storm.sh prints these files when
// the job outlives its limit, so that a hang outside a call says where it is.
void storm_phase(const std::string& dir, const std::string& what) {
  const std::string file = dir + "/phase." + std::to_string(g_rank);
  if (FILE* f = std::fopen((file + ".tmp").c_str(), "w")) {
    std::fprintf(f, "rank %d: %s\n", g_rank, what.c_str());
    std::fclose(f);
    std::rename((file + ".tmp").c_str(), file.c_str());
  }
}

// Arms the watchdog over a step of the storm that is not a sparcl call (a
// barrier, the wait for storm.sh, freeing the communicator), and says so in
// the phase file.
class WatchedStep {
 public:
  WatchedStep(const std::string& dir, const char* what) : arm_(what) { storm_phase(dir, what); }

 private:
  WatchdogArm arm_;
};

// The storm: storm.sh stops and resumes rank 1 (SIGSTOP/SIGCONT) while the
// ranks run collectives under a short timeout; any status is allowed then,
// but never SUCCESS with a wrong result. Then 10 collectives must be exact.
int storm_main(const Options& opt) {
  const std::string dir = opt.storm_dir;
  {
    const std::string pidfile = dir + "/pid." + std::to_string(g_rank);
    FILE* f = std::fopen((pidfile + ".tmp").c_str(), "w");
    if (!f) {
      std::perror("pid file");
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
    std::fprintf(f, "%d\n", int(getpid()));
    std::fclose(f);
    std::rename((pidfile + ".tmp").c_str(), pidfile.c_str());
  }
  sparcl_comm_t comm = make_comm(opt, opt.algos.front(), opt.checksums.back());
  MPI_Barrier(MPI_COMM_WORLD);
  std::mt19937_64 shared(opt.seed);
  const bool passthrough = transport_label() == "mpi" && !skipped(opt, "passthrough");
  int wrong = 0, failed = 0, problems = 0;
  double slowest = 0;
  // Every call may wait for its timeout while rank 1 is stopped: on a slow
  // machine (a sanitizer build) the calls would take storm_ops x the timeout.
  // Every 25 calls the ranks agree (the longest time so far) whether the
  // storm's time is up, so that all stop after the same call.
  const auto storm_start = Clock::now();
  int ran = 0;
  for (; ran < opt.storm_ops; ++ran) {
    if (ran % 25 == 0) {
      double elapsed = std::chrono::duration<double>(Clock::now() - storm_start).count(), longest = 0;
      MPI_Allreduce(&elapsed, &longest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      if (longest > opt.storm_seconds) break;
    }
    if (ran % 50 == 0)
      storm_phase(dir, "storm collective " + std::to_string(ran) + " of " + std::to_string(opt.storm_ops));
    const Outcome o = run(comm, draw_shape(shared, passthrough));
    wrong += o.wrong;
    failed += o.status != SPARCL_SUCCESS;
    slowest = std::max(slowest, o.seconds);
  }
  {
    WatchedStep step(dir, "MPI_Barrier after the storm");
    MPI_Barrier(MPI_COMM_WORLD);
  }
  if (g_rank == 0) {
    WatchedStep step(dir, "waiting for storm.sh to resume rank 1 for good");
    FILE* f = std::fopen((dir + "/done").c_str(), "w");
    if (f) std::fclose(f);
    struct stat st;
    const auto give_up = Clock::now() + std::chrono::seconds(30);
    while (stat((dir + "/ack").c_str(), &st) != 0 && Clock::now() < give_up)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  {
    WatchedStep step(dir, "MPI_Barrier before the checks");
    MPI_Barrier(MPI_COMM_WORLD);
  }
  int recovery = 0;
  for (int v = 0; v < opt.verify; ++v) {
    storm_phase(dir, "check " + std::to_string(v) + " of " + std::to_string(opt.verify));
    const Outcome o = run(comm, draw_shape(shared, passthrough));
    const auto all = gather(o);
    for (const auto& w : all) recovery += w.status != SPARCL_SUCCESS || w.wrong;
    if (o.status != SPARCL_SUCCESS) std::printf("rank %d after the storm: %s\n", g_rank, o.error.c_str());
  }
  int totals[3] = {wrong, failed, 0}, sums[3];
  MPI_Allreduce(totals, sums, 3, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  double slowest_all = 0;
  MPI_Allreduce(&slowest, &slowest_all, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  problems = sums[0] + recovery;
  if (g_rank == 0)
    std::printf("storm transport=%s P=%d: %d collectives x %d ranks, %d calls failed, %d silent wrong; "
                "slowest call %.3f s; after the storm %d of %d collectives failed on some rank: %s\n",
                transport_label().c_str(), g_size, ran, g_size, sums[1], sums[0], slowest_all,
                recovery / std::max(1, g_size), opt.verify, problems ? "FAILED" : "all assertions held");
  {
    WatchedStep step(dir, "sparcl_comm_free");
    sparcl_comm_free(comm);
  }
  storm_phase(dir, "MPI_Finalize");
  return problems ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  setvbuf(stdout, nullptr, _IOLBF, 0);
  const Options opt = parse(argc, argv);
  std::thread dog(watchdog);
  int rc;
  if (g_size < 2) {
    if (g_rank == 0) std::printf("needs at least 2 ranks\n");
    rc = 2;
  } else {
    rc = opt.storm_dir.empty() ? faults_main(opt) : storm_main(opt);
  }
  g_stop_watchdog = true;
  dog.join();
  MPI_Finalize();
  return rc;
}
