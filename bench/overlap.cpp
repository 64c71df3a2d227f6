// SPDX-License-Identifier: BSD-3-Clause
// Overlap of communication with computation, measured as OSU's
// osu_iallreduce does, for sparcl's non-blocking sparse allreduce (with and
// without the progress thread) and for MPI_Iallreduce on the same data, in
// the same run:
//   pure  = time of start + wait with nothing in between;
//   then start, compute for `pure` (a busy loop that never calls the
//   library), wait: overall;
//   overlap % = max(0, 100 - (overall - compute) / pure * 100).
//
//   mpirun -np 4 sparcl-overlap [-n elements] [-d density] [-i iterations] [-w warmups]
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "sparcl/sparcl_mpi.h"

namespace {

struct Options {
  uint64_t elements = 16u << 20;
  double density = 0.01;
  int iterations = 10;
  int warmups = 2;
};

// Busy work for `seconds` of wall time, without any call into a library.
double compute_for(double seconds) {
  const double t0 = MPI_Wtime();
  volatile double sink = 0;
  double x = 1.0;
  while (MPI_Wtime() - t0 < seconds) {
    for (int k = 0; k < 1000; ++k) x = x * 1.0000001 + 1e-9;
    sink = x;
  }
  (void)sink;
  return MPI_Wtime() - t0;
}

double mean_over_ranks(double t) {
  double sum = 0;
  int p = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  MPI_Allreduce(&t, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return sum / p;
}

struct Figures {
  double overall = 0, compute = 0, pure = 0;
  double overlap() const { return std::max(0.0, 100.0 - (overall - compute) / pure * 100.0); }
};

// start() begins one operation and returns a callable that waits for it.
template <class Start, class Wait>
Figures measure(const Options& o, Start start, Wait wait) {
  Figures f;
  double pure = 0;
  for (int it = 0; it < o.warmups + o.iterations; ++it) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    start();
    wait();
    if (it >= o.warmups) pure += MPI_Wtime() - t0;
  }
  f.pure = mean_over_ranks(pure / o.iterations);
  double overall = 0, compute = 0;
  for (int it = 0; it < o.warmups + o.iterations; ++it) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double t0 = MPI_Wtime();
    start();
    const double c = compute_for(f.pure);
    wait();
    if (it >= o.warmups) {
      overall += MPI_Wtime() - t0;
      compute += c;
    }
  }
  f.overall = mean_over_ranks(overall / o.iterations);
  f.compute = mean_over_ranks(compute / o.iterations);
  return f;
}

void row(int rank, const char* name, const Figures& f) {
  if (rank == 0)
    std::printf("%-34s %12.1f %12.1f %14.1f %10.1f\n", name, f.overall * 1e6, f.compute * 1e6, f.pure * 1e6,
                f.overlap());
}

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const char* v = argv[i + 1];
    if (a == "-n") o.elements = std::strtoull(v, nullptr, 10);
    else if (a == "-d") o.density = std::atof(v);
    else if (a == "-i") o.iterations = std::atoi(v);
    else if (a == "-w") o.warmups = std::atoi(v);
    else return false;
  }
  return argc % 2 == 1 && o.elements > 0 && o.density >= 0 && o.density <= 1 && o.iterations > 0 && o.warmups >= 0;
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  Options o;
  if (!parse(argc, argv, o)) {
    if (rank == 0) std::fprintf(stderr, "usage: sparcl-overlap [-n elements] [-d density] [-i iterations] [-w warmups]\n");
    MPI_Finalize();
    return 2;
  }

  const uint64_t n = o.elements;
  std::mt19937_64 rng(777 + uint64_t(rank));
  std::bernoulli_distribution keep(o.density);
  std::vector<uint32_t> idx;
  std::vector<float> val;
  for (uint64_t i = 0; i < n; ++i)
    if (keep(rng)) {
      idx.push_back(uint32_t(i));
      val.push_back(float(1 + rng() % 7));
    }
  std::vector<float> dense_in(n, 0.0f), dense_out(n), sparse_out(n);
  for (size_t k = 0; k < idx.size(); ++k) dense_in[idx[k]] = val[k];
  sparcl_sparse_t in{n, idx.size(), SPARCL_INDEX_U32, idx.data(), SPARCL_FLOAT32, val.data(), 0};

  if (rank == 0) {
    std::printf("# sparcl-overlap: %d ranks, %llu float32 elements, density %g%%, %d iterations (+%d warm-up)\n",
                ranks, (unsigned long long)n, o.density * 100, o.iterations, o.warmups);
    std::printf("# MPI thread level provided: %s\n", provided == MPI_THREAD_MULTIPLE ? "MPI_THREAD_MULTIPLE" : "lower");
    std::printf("%-34s %12s %12s %14s %10s\n", "# operation", "Overall(us)", "Compute(us)", "Pure Comm.(us)",
                "Overlap(%)");
  }

  for (int thread = 0; thread <= 1; ++thread) {
    sparcl_config_t config = SPARCL_CONFIG_INIT;
    config.progress_thread = thread;
    sparcl_comm_t comm = nullptr;
    if (sparcl_comm_create_mpi(MPI_COMM_WORLD, &config, &comm) != SPARCL_SUCCESS) {
      if (rank == 0) std::printf("# sparcl (progress thread %d): %s\n", thread, sparcl_comm_last_error(nullptr));
      continue;
    }
    sparcl_request_t req = nullptr;
    const Figures f = measure(
        o,
        [&] {
          if (sparcl_iallreduce_sparse(&in, sparse_out.data(), nullptr, comm, &req) != SPARCL_SUCCESS)
            MPI_Abort(MPI_COMM_WORLD, 1);
        },
        [&] {
          if (sparcl_wait(&req) != SPARCL_SUCCESS) MPI_Abort(MPI_COMM_WORLD, 1);
        });
    row(rank, thread ? "sparcl_iallreduce_sparse +thread" : "sparcl_iallreduce_sparse", f);
    sparcl_comm_free(comm);
  }

  MPI_Request mreq = MPI_REQUEST_NULL;
  const Figures m = measure(
      o, [&] { MPI_Iallreduce(dense_in.data(), dense_out.data(), int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &mreq); },
      [&] { MPI_Wait(&mreq, MPI_STATUS_IGNORE); });
  row(rank, "MPI_Iallreduce (dense)", m);

  uint64_t wrong = 0;
  for (uint64_t i = 0; i < n; ++i) wrong += sparse_out[i] != dense_out[i];
  MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) std::printf("# check: sparcl result %s MPI's (%llu wrong)\n", wrong ? "DIFFERS FROM" : "equals",
                             (unsigned long long)wrong);
  MPI_Finalize();
  return wrong ? 1 : 0;
}
