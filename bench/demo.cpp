// SPDX-License-Identifier: BSD-3-Clause
// The README's demo: P ranks each hold a sparse gradient (default 16M floats
// at 1% density); sparcl sums them with its sparse allreduce, and
// MPI_Allreduce sums the same data densely. Prints both times (median of
// several runs, slowest rank), the speedup, and checks the sparse result
// against MPI's.
//
//   mpirun -np 4 sparcl-demo [-n elements] [-d density] [-r repetitions] [-a algorithm]
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "sparcl/sparcl_mpi.h"

namespace {

struct Options {
  uint64_t elements = 16u << 20;
  double density = 0.01;
  int repetitions = 5;
  std::string algorithm = "auto";
};

void usage() {
  std::fprintf(stderr, "usage: sparcl-demo [-n elements] [-d density] [-r repetitions] [-a algorithm]\n  algorithm:");
  for (int a = 0; a < sparcl_algorithm_count(); ++a) std::fprintf(stderr, " %s", sparcl_algorithm_name(sparcl_algorithm_t(a)));
  std::fprintf(stderr, "\n");
}

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return false;
    const char* v = argv[++i];
    if (a == "-n") o.elements = std::strtoull(v, nullptr, 10);
    else if (a == "-d") o.density = std::atof(v);
    else if (a == "-r") o.repetitions = std::atoi(v);
    else if (a == "-a") o.algorithm = v;
    else return false;
  }
  return o.elements > 0 && o.density >= 0 && o.density <= 1 && o.repetitions > 0;
}

sparcl_algorithm_t algorithm_of(const std::string& name) {
  sparcl_algorithm_t a;
  return sparcl_algorithm_parse(name.c_str(), &a) == SPARCL_SUCCESS ? a : sparcl_algorithm_t(-1);
}

// Slowest rank's time: what the collective costs the job.
double slowest(double t) {
  double m = 0;
  MPI_Allreduce(&t, &m, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return m;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  Options opt;
  if (!parse(argc, argv, opt) || int(algorithm_of(opt.algorithm)) < 0) {
    if (rank == 0) usage();
    MPI_Finalize();
    return 2;
  }

  sparcl_config_t config = SPARCL_CONFIG_INIT;
  config.algorithm = algorithm_of(opt.algorithm);
  sparcl_comm_t comm = nullptr;
  if (sparcl_comm_create_mpi(MPI_COMM_WORLD, &config, &comm) != SPARCL_SUCCESS) {
    std::fprintf(stderr, "sparcl_comm_create_mpi: %s\n", sparcl_comm_last_error(nullptr));
    MPI_Abort(MPI_COMM_WORLD, 1);
  }

  // Each rank picks its own random indices (as top-k of different gradients would).
  const uint64_t n = opt.elements;
  std::mt19937_64 rng(12345 + uint64_t(rank));
  std::vector<uint32_t> idx;
  std::vector<float> val;
  std::bernoulli_distribution keep(opt.density);
  std::uniform_int_distribution<int> small(-8, 8);
  for (uint64_t i = 0; i < n; ++i)
    if (keep(rng)) {
      idx.push_back(uint32_t(i));
      int x = small(rng);
      val.push_back(float(x == 0 ? 1 : x));  // integer values: both sums are exact
    }
  std::vector<float> dense_in(n, 0.0f), dense_out(n), sparse_out(n);
  for (size_t k = 0; k < idx.size(); ++k) dense_in[idx[k]] = val[k];
  sparcl_sparse_t in{n, idx.size(), SPARCL_INDEX_U32, idx.data(), SPARCL_FLOAT32, val.data(), 0};

  if (rank == 0) {
    std::printf("sparcl %d.%d.%d demo: %d ranks, %llu float32 elements, density %.3g%% (%zu nonzeros on rank 0)\n",
                SPARCL_VERSION_MAJOR, SPARCL_VERSION_MINOR, SPARCL_VERSION_PATCH, ranks,
                (unsigned long long)n, opt.density * 100, idx.size());
    std::printf("algorithm: %s; time = median of %d runs, slowest rank\n", opt.algorithm.c_str(), opt.repetitions);
  }

  // Three ways to sum the same data: sparcl into a sparse result object,
  // sparcl into a dense buffer (what a training loop that keeps dense
  // gradients does; adds an O(dim) write), and MPI_Allreduce on dense data.
  std::vector<double> t_result, t_sparse, t_dense;
  auto check = [&](sparcl_status_t st, const char* what) {
    if (st == SPARCL_SUCCESS) return;
    std::fprintf(stderr, "rank %d: %s: %s: %s\n", rank, what, sparcl_strerror(st), sparcl_comm_last_error(comm));
    MPI_Abort(MPI_COMM_WORLD, 1);
  };
  std::vector<float> result_dense(n);
  for (int it = 0; it < opt.repetitions + 1; ++it) {  // the first run warms up
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    sparcl_result_t result = nullptr;
    sparcl_status_t st = sparcl_allreduce_sparse(&in, nullptr, &result, comm);
    const double tr = slowest(MPI_Wtime() - t0);
    check(st, "sparcl_allreduce_sparse (result)");
    check(sparcl_result_to_dense(result, result_dense.data()), "sparcl_result_to_dense");
    sparcl_result_free(result);

    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    st = sparcl_allreduce_sparse(&in, sparse_out.data(), nullptr, comm);
    const double ts = slowest(MPI_Wtime() - t0);
    check(st, "sparcl_allreduce_sparse (dense output)");

    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    MPI_Allreduce(dense_in.data(), dense_out.data(), int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    const double td = slowest(MPI_Wtime() - t0);
    if (it > 0) {
      t_result.push_back(tr);
      t_sparse.push_back(ts);
      t_dense.push_back(td);
    }
  }

  uint64_t wrong = 0, result_nnz = 0;
  for (uint64_t i = 0; i < n; ++i) {
    wrong += (sparse_out[i] != dense_out[i]) + (result_dense[i] != dense_out[i]);
    result_nnz += dense_out[i] != 0.0f;
  }
  MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  const double ms_result = median(t_result) * 1e3, ms_sparse = median(t_sparse) * 1e3,
               ms_dense = median(t_dense) * 1e3;
  if (rank == 0) {
    std::printf("  sparcl, sparse result         : %9.2f ms  (%.2fx faster than MPI_Allreduce)\n", ms_result,
                ms_dense / ms_result);
    std::printf("  sparcl, into a dense buffer   : %9.2f ms  (%.2fx)\n", ms_sparse, ms_dense / ms_sparse);
    std::printf("  MPI_Allreduce, dense          : %9.2f ms\n", ms_dense);
    std::printf("  result nonzeros               : %llu of %llu (%.2f%%)\n", (unsigned long long)result_nnz,
                (unsigned long long)n, 100.0 * double(result_nnz) / double(n));
    std::printf("  check against MPI_Allreduce   : %s (%llu wrong values over all ranks and both outputs)\n",
                wrong ? "FAILED" : "exact", (unsigned long long)wrong);
  }
  sparcl_comm_free(comm);
  MPI_Finalize();
  return wrong ? 1 : 0;
}
