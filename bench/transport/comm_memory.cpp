// SPDX-License-Identifier: BSD-3-Clause
// Resident memory per live communicator: creates N communicators over the
// configured transport (SPARCL_TRANSPORT, SPARCL_OFI_PROVIDER, UCX_*), runs
// one small allreduce on each, then frees them all, and prints rank 0's RSS
// (VmRSS of /proc/self/status) at the start, with all N live, and after the
// free.
//
//   mpirun -np 2 sparcl-comm-memory [N]
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "sparcl/sparcl_mpi.h"

namespace {
double rss_mib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return double(std::atol(line.c_str() + 6)) / 1024.0;
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int n = argc > 1 ? std::atoi(argv[1]) : 32;
  std::vector<float> in(1024, 1.0f), out(1024);
  // One communicator created and freed first: what the transport's library
  // loads once per process is not counted per communicator.
  sparcl_comm_t warm = nullptr;
  if (sparcl_comm_create_mpi(MPI_COMM_WORLD, nullptr, &warm) != SPARCL_SUCCESS) {
    std::fprintf(stderr, "creation failed: %s\n", sparcl_comm_last_error(nullptr));
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  sparcl_allreduce(in.data(), out.data(), in.size(), SPARCL_FLOAT32, SPARCL_SUM, warm);
  sparcl_comm_free(warm);
  MPI_Barrier(MPI_COMM_WORLD);
  const double start = rss_mib();
  std::vector<sparcl_comm_t> comms(size_t(n), nullptr);
  for (auto& c : comms) {
    if (sparcl_comm_create_mpi(MPI_COMM_WORLD, nullptr, &c) != SPARCL_SUCCESS) {
      std::fprintf(stderr, "creation failed: %s\n", sparcl_comm_last_error(nullptr));
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (sparcl_allreduce(in.data(), out.data(), in.size(), SPARCL_FLOAT32, SPARCL_SUM, c) != SPARCL_SUCCESS) {
      std::fprintf(stderr, "allreduce failed: %s\n", sparcl_comm_last_error(c));
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const double live = rss_mib();
  for (auto& c : comms) sparcl_comm_free(c);
  MPI_Barrier(MPI_COMM_WORLD);
  const double after = rss_mib();
  if (rank == 0) {
    const char* t = std::getenv("SPARCL_TRANSPORT");
    std::printf("transport %s, %d ranks, %d communicators: RSS start %.1f MiB, live %.1f MiB (%.2f MiB each), "
                "after free %.1f MiB\n",
                t ? t : "default", size, n, start, live, (live - start) / n, after);
  }
  MPI_Finalize();
  return 0;
}
