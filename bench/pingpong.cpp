// SPDX-License-Identifier: BSD-3-Clause
// Point-to-point latency and bandwidth of a sparcl transport backend, beside
// a plain MPI ping-pong in the same run. Two ranks; rank 0 sends a message,
// rank 1 returns it; half the round trip is the one-way time, bytes / that
// time the bandwidth. The transport is chosen as everywhere else
// (SPARCL_TRANSPORT=mpi|ofi|ucx, SPARCL_OFI_PROVIDER, UCX_TLS).
//
//   mpirun -np 2 sparcl-pingpong [-b min_bytes] [-e max_bytes] [-i iterations]
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "comm.hpp"
#include "sparcl/sparcl_mpi.h"

namespace {

using sparcl::Buffer;
using sparcl::Request;
using sparcl::Tag;
using sparcl::Transport;

void wait(Transport& t, Request& r) {
  while (!r.test()) t.progress();
}

// One-way time (s) of `bytes`-byte messages over the sparcl transport.
double sparcl_one_way(Transport& t, size_t bytes, int iterations, uint64_t& seq) {
  auto payload = std::make_shared<Buffer>(bytes);
  std::memset(payload->data(), 1, bytes);
  const int peer = 1 - t.rank();
  double start = 0;
  for (int it = -2; it < iterations; ++it) {  // two warm-up round trips
    if (it == 0) start = MPI_Wtime();
    const Tag tag{7, seq++, false};
    if (t.rank() == 0) {
      auto s = t.isend(peer, tag, payload);
      auto r = t.irecv(peer, tag);
      wait(t, *s);
      wait(t, *r);
    } else {
      auto r = t.irecv(peer, tag);
      wait(t, *r);
      auto s = t.isend(peer, tag, payload);
      wait(t, *s);
    }
  }
  return (MPI_Wtime() - start) / iterations / 2;
}

double mpi_one_way(size_t bytes, int iterations) {
  std::string buffer(bytes, '\1');
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  double start = 0;
  for (int it = -2; it < iterations; ++it) {
    if (it == 0) start = MPI_Wtime();
    if (rank == 0) {
      MPI_Send(buffer.data(), int(bytes), MPI_BYTE, 1, 3, MPI_COMM_WORLD);
      MPI_Recv(buffer.data(), int(bytes), MPI_BYTE, 1, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
      MPI_Recv(buffer.data(), int(bytes), MPI_BYTE, 0, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      MPI_Send(buffer.data(), int(bytes), MPI_BYTE, 0, 3, MPI_COMM_WORLD);
    }
  }
  return (MPI_Wtime() - start) / iterations / 2;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  size_t min_bytes = 8, max_bytes = size_t(4) << 20;
  int iterations = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "-b") min_bytes = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "-e") max_bytes = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "-i") iterations = std::atoi(argv[i + 1]);
  }
  if (ranks != 2 || min_bytes == 0 || min_bytes > max_bytes || iterations <= 0) {
    if (rank == 0) std::fprintf(stderr, "usage: mpirun -np 2 sparcl-pingpong [-b min_bytes] [-e max_bytes] [-i iterations]\n");
    MPI_Finalize();
    return 2;
  }
  sparcl_comm_t comm = nullptr;
  if (sparcl_comm_create_mpi(MPI_COMM_WORLD, nullptr, &comm) != SPARCL_SUCCESS) {
    if (rank == 0) std::fprintf(stderr, "sparcl_comm_create_mpi: %s\n", sparcl_comm_last_error(nullptr));
    MPI_Finalize();
    return 1;
  }
  Transport& t = *comm->transport;
  if (rank == 0) {
    std::printf("# sparcl-pingpong: transport %s, %d iterations per size; one-way latency and bandwidth\n", t.name(),
                iterations);
    std::printf("# %10s %14s %14s %14s %14s %10s\n", "bytes", "sparcl(us)", "sparcl(MB/s)", "MPI(us)", "MPI(MB/s)",
                "sparcl/MPI");
  }
  uint64_t seq = 0;
  for (size_t bytes = min_bytes; bytes <= max_bytes; bytes *= 2) {
    const int iters = bytes >= (size_t(1) << 20) ? std::max(10, iterations / 10) : iterations;
    MPI_Barrier(MPI_COMM_WORLD);
    const double ts = sparcl_one_way(t, bytes, iters, seq);
    MPI_Barrier(MPI_COMM_WORLD);
    const double tm = mpi_one_way(bytes, iters);
    if (rank == 0)
      std::printf("  %10zu %14.2f %14.1f %14.2f %14.1f %10.2f\n", bytes, ts * 1e6, bytes / ts / 1e6, tm * 1e6,
                  bytes / tm / 1e6, tm / ts);
  }
  sparcl_comm_free(comm);
  MPI_Finalize();
  return 0;
}
