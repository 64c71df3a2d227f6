// SPDX-License-Identifier: BSD-3-Clause
// Soak test: a long stream of non-blocking collectives of mixed kinds and
// sizes, `--in-flight` of them outstanding at any time, every result checked
// exactly, and this process's memory (VmRSS) sampled at intervals: after the
// warm-up it must stay within `--rss-growth-mib` of what it was then.
//
//   mpirun -np 2 sparcl-soak [--ops 100000] [--in-flight 16] [--progress-thread]
//                            [--max-dim 16384] [--warmup 0.1] [--rss-growth-mib 8]
//
// Kinds, drawn in the same sequence on every rank: sparse allreduce into a
// dense buffer, sparse allreduce into a result handle, sparse allgather
// (every rank's vector and the merged sum), the drop-in allreduce on a dense
// buffer (in place or not), and, over the MPI transport, the drop-in's
// passthrough (MAX of int32). Dimensions are log-uniform in [1, max-dim],
// densities 0.1% to 60%; every 100th operation is a large sparse one
// (dims up to 8 x max-dim, densities 0.1% and 1%), which `auto` runs with
// split-allgather instead of recursive doubling. Values are small nonzero
// integers, so sums are exact.
// Exit code: 0 if every rank saw only exact results and bounded memory.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "sparcl/sparcl_mpi.h"

namespace {

struct Options {
  long ops = 100000;
  int in_flight = 16;
  bool progress_thread = false;
  uint64_t max_dim = 16384;
  double warmup = 0.1;
  double rss_growth_mib = 8;
};

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--ops N] [--in-flight K] [--progress-thread] [--max-dim D] [--warmup F] "
               "[--rss-growth-mib M]\n",
               argv0);
  MPI_Abort(MPI_COMM_WORLD, 2);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage(argv[0]);
      return argv[++i];
    };
    if (a == "--ops") o.ops = std::atol(value());
    else if (a == "--in-flight") o.in_flight = std::atoi(value());
    else if (a == "--progress-thread") o.progress_thread = true;
    else if (a == "--max-dim") o.max_dim = std::strtoull(value(), nullptr, 10);
    else if (a == "--warmup") o.warmup = std::atof(value());
    else if (a == "--rss-growth-mib") o.rss_growth_mib = std::atof(value());
    else usage(argv[0]);
  }
  if (o.ops < 1 || o.in_flight < 1 || o.max_dim < 1 || o.warmup < 0 || o.warmup >= 1) usage(argv[0]);
  return o;
}

// A field of /proc/self/status in MiB (VmRSS: resident now; VmHWM: peak).
double status_mib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(in, line))
    if (line.compare(0, key.size(), key) == 0) return std::atof(line.c_str() + key.size()) / 1024.0;
  return -1;
}

enum Kind { kDenseOut, kResultOut, kGather, kDropIn, kDropInPlace, kPassthrough, kKinds };
const char* const kKindNames[] = {"allreduce->dense", "allreduce->result", "allgather", "drop-in",
                                  "drop-in in place", "drop-in MAX int32"};

// What every rank can compute about operation `k`: its kind, dim, density.
struct Shape {
  Kind kind;
  uint64_t dim;
  double density;
};

Shape shape_of(long k, const Options& o, bool passthrough) {
  std::mt19937_64 rng(uint64_t(k) * 0x9E3779B97F4A7C15ull + 17);
  Shape s;
  s.kind = Kind(rng() % (passthrough ? kKinds : kKinds - 1));
  const bool large = k % 100 == 99;
  const double lo = large ? std::log(double(o.max_dim)) : 0, hi = std::log(double(o.max_dim) * (large ? 8 : 1));
  // (Soak's constructor sizes the test's buffers for these 8 x max_dim.)
  s.dim = std::max<uint64_t>(1, uint64_t(std::exp(std::uniform_real_distribution<double>(lo, hi)(rng))));
  const double densities[] = {0.001, 0.01, 0.05, 0.2, 0.6};
  s.density = densities[rng() % (large ? 2 : 5)];
  return s;
}

// Rank r's vector of operation k: sorted unique indices, nonzero integer values.
void vector_of(long k, int r, const Shape& s, std::vector<uint32_t>& idx, std::vector<float>& val) {
  idx.clear();
  val.clear();
  std::mt19937_64 rng(uint64_t(k) * 1000003 + uint64_t(r) * 7919 + 1);
  std::geometric_distribution<uint64_t> gap(s.density);
  std::uniform_int_distribution<int> ints(-64, 63);
  for (uint64_t i = gap(rng); i < s.dim; i += 1 + gap(rng)) {
    idx.push_back(uint32_t(i));
    const int x = ints(rng);
    val.push_back(float(x >= 0 ? x + 1 : x));
  }
}

// One slot of the window: an operation in flight and its buffers.
struct Slot {
  long k = -1;
  Shape shape{};
  sparcl_request_t request = nullptr;
  std::vector<uint32_t> idx;
  std::vector<float> val;
  std::vector<float> dense, send;  // outputs (and the drop-in's input)
  std::vector<int32_t> ints, int_out;
  sparcl_result_t result = nullptr;
  std::vector<sparcl_result_t> gathered;

  // Grows every buffer to `dim` entries and touches it, so that the test's
  // own memory is at its peak before the warm-up ends: RSS growth after it
  // is the library's.
  void reserve(uint64_t dim) {
    for (auto* v : {&val, &dense, &send}) v->assign(dim, 0.0f);
    idx.assign(dim, 0);
    for (auto* v : {&ints, &int_out}) v->assign(dim, 0);
    for (auto* v : {&val, &dense, &send}) v->clear();
    idx.clear();
    ints.clear();
    int_out.clear();
  }
};

class Soak {
 public:
  Soak(const Options& o, sparcl_comm_t comm, int rank, int size, bool passthrough)
      : o_(o), comm_(comm), rank_(rank), size_(size), passthrough_(passthrough), slots_(size_t(o.in_flight)) {
    const uint64_t largest = o.max_dim * 8;
    for (auto& s : slots_) s.reserve(largest);
    for (auto* v : {&sum_, &got_, &one_, &ref_val_}) {
      v->assign(largest, 0.0f);
      v->clear();
    }
    ref_idx_.assign(largest, 0);
    ref_idx_.clear();
  }

  void start(Slot& s, long k) {
    s.k = k;
    s.shape = shape_of(k, o_, passthrough_);
    vector_of(k, rank_, s.shape, s.idx, s.val);
    const uint64_t dim = s.shape.dim;
    sparcl_sparse_t in{dim, s.idx.size(), SPARCL_INDEX_U32, s.idx.data(), SPARCL_FLOAT32, s.val.data(), 0};
    sparcl_status_t st = SPARCL_SUCCESS;
    switch (s.shape.kind) {
      case kDenseOut:
        s.dense.assign(dim, -1.0f);  // every entry must be overwritten
        st = sparcl_iallreduce_sparse(&in, s.dense.data(), nullptr, comm_, &s.request);
        break;
      case kResultOut:
        st = sparcl_iallreduce_sparse(&in, nullptr, &s.result, comm_, &s.request);
        break;
      case kGather:
        s.gathered.assign(size_t(size_) + 1, nullptr);
        st = sparcl_iallgather_sparse(&in, s.gathered.data(), &s.gathered.back(), comm_, &s.request);
        break;
      case kDropIn:
      case kDropInPlace:
        s.send.assign(dim, 0.0f);
        for (size_t j = 0; j < s.idx.size(); ++j) s.send[s.idx[j]] = s.val[j];
        if (s.shape.kind == kDropIn) {
          s.dense.assign(dim, -1.0f);
          st = sparcl_iallreduce(s.send.data(), s.dense.data(), dim, SPARCL_FLOAT32, SPARCL_SUM, comm_, &s.request);
        } else {
          s.dense = s.send;
          st = sparcl_iallreduce(SPARCL_IN_PLACE, s.dense.data(), dim, SPARCL_FLOAT32, SPARCL_SUM, comm_, &s.request);
        }
        break;
      case kPassthrough:
        s.ints.assign(dim, 0);
        for (uint64_t i = 0; i < dim; ++i) s.ints[i] = int32_t((uint64_t(k) + i) % 1000) * (rank_ + 1);
        s.int_out.assign(dim, -1);
        st = sparcl_iallreduce(s.ints.data(), s.int_out.data(), dim, SPARCL_INT32, SPARCL_MAX, comm_, &s.request);
        break;
      case kKinds: break;
    }
    if (st != SPARCL_SUCCESS) fail(s, "start", st);
  }

  // Checks a completed slot's outputs against the sum every rank can compute.
  void check(Slot& s) {
    const uint64_t dim = s.shape.dim;
    if (s.shape.kind == kPassthrough) {
      const int32_t top = size_;
      for (uint64_t i = 0; i < dim; ++i)
        wrong_ += s.int_out[i] != int32_t((uint64_t(s.k) + i) % 1000) * top;
      return;
    }
    sum_.assign(dim, 0.0f);
    for (int r = 0; r < size_; ++r) {
      vector_of(s.k, r, s.shape, ref_idx_, ref_val_);
      for (size_t j = 0; j < ref_idx_.size(); ++j) sum_[ref_idx_[j]] += ref_val_[j];
      if (s.shape.kind == kGather) {  // rank r's own vector, as gathered
        got_.assign(dim, 0.0f);
        one_.assign(dim, 0.0f);
        for (size_t j = 0; j < ref_idx_.size(); ++j) one_[ref_idx_[j]] = ref_val_[j];
        to_dense(s.gathered[size_t(r)], dim);
        wrong_ += count_diff(got_, one_);
      }
    }
    switch (s.shape.kind) {
      case kDenseOut:
      case kDropIn:
      case kDropInPlace: wrong_ += count_diff(s.dense, sum_); break;
      case kResultOut:
        to_dense(s.result, dim);
        wrong_ += count_diff(got_, sum_);
        sparcl_result_free(s.result);
        s.result = nullptr;
        break;
      case kGather:
        to_dense(s.gathered.back(), dim);
        wrong_ += count_diff(got_, sum_);
        for (auto& r : s.gathered) sparcl_result_free(r);
        s.gathered.clear();
        break;
      default: break;
    }
  }

  bool run() {
    const long warm = long(double(o_.ops) * o_.warmup);
    const long every = std::max(1L, o_.ops / 20);
    rss_start_ = status_mib("VmRSS");
    const auto t0 = std::chrono::steady_clock::now();
    long started = 0, completed = 0;
    for (auto& s : slots_)
      if (started < o_.ops) start(s, started++);
    std::vector<sparcl_request_t> requests(slots_.size());
    while (completed < o_.ops) {
      for (size_t i = 0; i < slots_.size(); ++i) requests[i] = slots_[i].request;
      size_t index = slots_.size();
      // Mostly waitany; every 7th completion polls with sparcl_test instead.
      sparcl_status_t st;
      if (completed % 7 == 3) {
        int done = 0;
        for (index = 0;; index = (index + 1) % slots_.size()) {
          if (!requests[index]) continue;
          st = sparcl_test(&requests[index], &done);
          if (done || st != SPARCL_SUCCESS) break;
        }
      } else {
        st = sparcl_waitany(requests.size(), requests.data(), &index);
      }
      if (index >= slots_.size()) {
        std::fprintf(stderr, "[rank %d] waitany found no request in flight\n", rank_);
        return false;
      }
      Slot& s = slots_[index];
      s.request = nullptr;
      if (st != SPARCL_SUCCESS) fail(s, "complete", st);
      check(s);
      ++completed;
      if (completed == warm) rss_warm_ = status_mib("VmRSS");
      if (completed % every == 0 || completed == o_.ops) {
        const double rss = status_mib("VmRSS");
        if (completed >= warm) rss_max_after_warm_ = std::max(rss_max_after_warm_, rss);
        if (rank_ == 0) {
          const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          std::printf("  %ld operations, %.1f s: VmRSS %.1f MiB\n", completed, elapsed, rss);
          std::fflush(stdout);
        }
      }
      if (started < o_.ops) start(s, started++);
    }
    seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (warm == 0) rss_warm_ = rss_start_;
    rss_end_ = status_mib("VmRSS");
    hwm_ = status_mib("VmHWM");
    return true;
  }

  long wrong() const { return wrong_; }
  double growth() const { return rss_max_after_warm_ - rss_warm_; }
  double rss_start_ = 0, rss_warm_ = 0, rss_end_ = 0, rss_max_after_warm_ = 0, hwm_ = 0, seconds_ = 0;

 private:
  void to_dense(sparcl_result_t r, uint64_t dim) {
    got_.assign(dim, -1.0f);
    if (sparcl_result_dim(r) != dim || sparcl_result_to_dense(r, got_.data()) != SPARCL_SUCCESS) ++wrong_;
  }
  static long count_diff(const std::vector<float>& a, const std::vector<float>& b) {
    long n = 0;
    for (size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
    return n + long(a.size() != b.size());
  }
  [[noreturn]] void fail(const Slot& s, const char* what, sparcl_status_t st) {
    std::fprintf(stderr, "[rank %d] operation %ld (%s, dim %llu): %s: %s: %s\n", rank_, s.k,
                 kKindNames[s.shape.kind], (unsigned long long)s.shape.dim, what, sparcl_strerror(st),
                 sparcl_comm_last_error(comm_));
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::exit(1);
  }

  Options o_;
  sparcl_comm_t comm_;
  int rank_, size_;
  bool passthrough_;
  std::vector<Slot> slots_;
  std::vector<float> sum_, got_, one_, ref_val_;
  std::vector<uint32_t> ref_idx_;
  long wrong_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const Options o = parse(argc, argv);
  const char* transport = std::getenv("SPARCL_TRANSPORT");
  const bool over_mpi = !transport || std::string(transport) == "mpi";

  sparcl_config_t config = SPARCL_CONFIG_INIT;
  config.timeout_ms = 120000;
  config.progress_thread = o.progress_thread ? 1 : 0;
  sparcl_comm_t comm = nullptr;
  const sparcl_status_t st = sparcl_comm_create_mpi(MPI_COMM_WORLD, &config, &comm);
  if (st != SPARCL_SUCCESS) {
    std::fprintf(stderr, "[rank %d] sparcl_comm_create_mpi: %s: %s\n", rank, sparcl_strerror(st),
                 sparcl_comm_last_error(nullptr));
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (rank == 0)
    std::printf("sparcl soak: %d ranks, transport %s, %ld operations, %d in flight, progress thread %s, "
                "dims 1..%llu (every 100th up to %llu); rank 0's VmRSS:\n",
                size, transport ? transport : "mpi", o.ops, o.in_flight, o.progress_thread ? "on" : "off",
                (unsigned long long)o.max_dim, (unsigned long long)o.max_dim * 8);
  Soak soak(o, comm, rank, size, over_mpi);
  const bool ran = soak.run();
  const sparcl_status_t freed = sparcl_comm_free(comm);

  long wrong = soak.wrong(), all_wrong = 0;
  double growth = soak.growth(), worst_growth = 0;
  int ok = ran && freed == SPARCL_SUCCESS ? 1 : 0, all_ok = 0;
  MPI_Reduce(&wrong, &all_wrong, 1, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
  MPI_Reduce(&growth, &worst_growth, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  int pass = 0;
  if (rank == 0) {
    const bool bounded = worst_growth <= o.rss_growth_mib;
    std::printf("rank 0 RSS: start %.1f MiB, after warm-up (%ld ops) %.1f MiB, end %.1f MiB, peak (VmHWM) %.1f MiB\n",
                soak.rss_start_, long(double(o.ops) * o.warmup), soak.rss_warm_, soak.rss_end_, soak.hwm_);
    std::printf("largest RSS growth after warm-up over all ranks: %.1f MiB (bound %.1f MiB): %s\n", worst_growth,
                o.rss_growth_mib, bounded ? "ok" : "EXCEEDED");
    std::printf("%ld operations in %.2f s (%.1f us each); wrong values over all ranks: %ld\n", o.ops, soak.seconds_,
                1e6 * soak.seconds_ / double(o.ops), all_wrong);
    pass = all_ok && all_wrong == 0 && bounded;
    std::printf("%s\n", pass ? "PASS" : "FAIL");
  }
  MPI_Bcast(&pass, 1, MPI_INT, 0, MPI_COMM_WORLD);
  MPI_Finalize();
  return pass ? 0 : 1;
}
