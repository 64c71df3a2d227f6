// SPDX-License-Identifier: BSD-3-Clause
// Persistent against one-shot sparse allreduces, per call, on the same
// vectors: sparcl_allreduce_sparse() each time, or a plan made once
// (sparcl_allreduce_sparse_init) and run with sparcl_start + sparcl_wait.
// Both run on one communicator, so that with auto they run the algorithm
// auto settled on for these calls (the plan keeps it, the one-shot calls
// find it in auto's records); both are warmed up until auto has settled;
// then rounds alternate which method goes first, each round timing `calls`
// calls of each; a call's time is the slowest rank's mean over the round.
// Printed: the median over rounds of each method, and the median over
// rounds of their ratio in the same round (on a shared, loaded machine a
// round's two halves see the same load, so the ratio is steadier than
// either time); how auto chose for the last one-shot call and for the plan.
//
//   mpirun -np 4 sparcl-persistent [-n 65536,1048576] [-d 0.01] [-a auto,ring] [-r rounds] [-c calls]
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "sparcl/sparcl_mpi.h"

namespace {

struct Options {
  std::vector<uint64_t> dims = {65536, 1048576};
  double density = 0.01;
  std::vector<std::string> algorithms = {"auto"};
  int rounds = 41;
  int calls = 5;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

void check(sparcl_status_t st, sparcl_comm_t comm, const char* what) {
  if (st == SPARCL_SUCCESS) return;
  std::fprintf(stderr, "%s: %s: %s\n", what, sparcl_strerror(st), sparcl_comm_last_error(comm));
  MPI_Abort(MPI_COMM_WORLD, 1);
}

double max_over_ranks(double t) {
  MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return t;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

sparcl_comm_t make_comm(sparcl_algorithm_t algorithm) {
  sparcl_config_t config = SPARCL_CONFIG_INIT;
  config.algorithm = algorithm;
  sparcl_comm_t comm = nullptr;
  check(sparcl_comm_create_mpi(MPI_COMM_WORLD, &config, &comm), nullptr, "sparcl_comm_create_mpi");
  return comm;
}

bool settled(sparcl_comm_t comm) {
  sparcl_choice_t how = SPARCL_CHOSEN_AS_TRIAL;
  check(sparcl_comm_last_choice(comm, &how), comm, "sparcl_comm_last_choice");
  return how != SPARCL_CHOSEN_AS_TRIAL;
}

void run(uint64_t dim, sparcl_algorithm_t algorithm, const Options& o, int rank, int ranks) {
  // This rank's vector: density * dim random indices, as a top-k gradient's.
  std::mt19937_64 rng(uint64_t(rank) * 7919 + dim);
  std::vector<uint32_t> idx;
  std::vector<float> val;
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  std::normal_distribution<float> normal;
  for (uint64_t i = 0; i < dim; ++i)
    if (coin(rng) < o.density) {
      idx.push_back(uint32_t(i));
      val.push_back(normal(rng));
    }
  sparcl_sparse_t send{dim, idx.size(), SPARCL_INDEX_U32, idx.data(), SPARCL_FLOAT32, val.data(), 0};
  std::vector<float> out_oneshot(dim), out_planned(dim);

  sparcl_comm_t comm = make_comm(algorithm), oneshot = comm, planned = comm;
  sparcl_request_t plan = nullptr;
  check(sparcl_allreduce_sparse_init(&send, out_planned.data(), nullptr, planned, &plan), planned, "init");
  auto call_oneshot = [&] {
    check(sparcl_allreduce_sparse(&send, out_oneshot.data(), nullptr, oneshot), oneshot, "sparcl_allreduce_sparse");
  };
  auto call_planned = [&] {
    check(sparcl_start(&plan), planned, "sparcl_start");
    check(sparcl_wait(&plan), planned, "sparcl_wait");
  };
  // Warm-up: until auto has chosen for the plan (which keeps its choice from then on), then a few more.
  for (int k = 0; k < 200; ++k) {
    call_planned();
    if (settled(planned)) break;
  }
  for (int k = 0; k < 5; ++k) {
    call_oneshot();
    call_planned();
  }
  std::vector<double> t_oneshot, t_planned, ratio;
  for (int round = 0; round < o.rounds; ++round) {
    for (int turn = 0; turn < 2; ++turn) {
      const bool planned_turn = (turn == 0) == (round % 2 == 0);
      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = MPI_Wtime();
      for (int k = 0; k < o.calls; ++k) planned_turn ? call_planned() : call_oneshot();
      const double per_call = max_over_ranks((MPI_Wtime() - t0) / o.calls);
      (planned_turn ? t_planned : t_oneshot).push_back(per_call);
    }
    ratio.push_back(t_oneshot.back() / t_planned.back());
  }
  sparcl_algorithm_t ran_oneshot = SPARCL_ALGO_AUTO, ran_planned = SPARCL_ALGO_AUTO;
  sparcl_choice_t how_oneshot = SPARCL_CHOSEN_BY_CONFIG, how_planned = SPARCL_CHOSEN_BY_CONFIG;
  call_oneshot();
  sparcl_comm_last_algorithm(oneshot, &ran_oneshot);
  sparcl_comm_last_choice(oneshot, &how_oneshot);
  call_planned();
  sparcl_comm_last_algorithm(planned, &ran_planned);
  sparcl_comm_last_choice(planned, &how_planned);
  const char* how_names[] = {"config", "model", "trial", "measurement", "tune file"};
  const bool same = std::equal(out_oneshot.begin(), out_oneshot.end(), out_planned.begin());
  if (rank == 0)
    std::printf("%d,%llu,%.4g,%s,%s (%s),%s (%s),%.1f,%.1f,%.3f,%s\n", ranks, (unsigned long long)dim, o.density,
                sparcl_algorithm_name(algorithm), sparcl_algorithm_name(ran_oneshot), how_names[how_oneshot],
                sparcl_algorithm_name(ran_planned), how_names[how_planned], median(t_oneshot) * 1e6,
                median(t_planned) * 1e6, median(ratio), same ? "equal" : "DIFFERENT");
  std::fflush(stdout);
  check(sparcl_request_free(&plan), planned, "sparcl_request_free");
  sparcl_comm_free(comm);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "-n") {
      o.dims.clear();
      for (const std::string& d : split(value)) o.dims.push_back(std::strtoull(d.c_str(), nullptr, 10));
    } else if (flag == "-d") {
      o.density = std::atof(value.c_str());
    } else if (flag == "-a") {
      o.algorithms = split(value);
    } else if (flag == "-r") {
      o.rounds = std::max(1, std::atoi(value.c_str()));
    } else if (flag == "-c") {
      o.calls = std::max(1, std::atoi(value.c_str()));
    } else {
      if (rank == 0) std::fprintf(stderr, "usage: sparcl-persistent [-n dims] [-d density] [-a algorithms] [-r rounds] [-c calls]\n");
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
  }
  if (rank == 0)
    std::printf("ranks,dim,density,algorithm,oneshot_ran,persistent_ran,oneshot_us,persistent_us,oneshot_over_persistent_same_round,sums\n");
  for (uint64_t dim : o.dims)
    for (const std::string& name : o.algorithms) {
      sparcl_algorithm_t a;
      if (sparcl_algorithm_parse(name.c_str(), &a) != SPARCL_SUCCESS) {
        if (rank == 0) std::fprintf(stderr, "%s\n", sparcl_comm_last_error(nullptr));
        MPI_Abort(MPI_COMM_WORLD, 2);
      }
      run(dim, a, o, rank, ranks);
    }
  MPI_Finalize();
  return 0;
}
