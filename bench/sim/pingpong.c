// SPDX-License-Identifier: BSD-3-Clause
// Checks a platform's latency and bandwidth, simulated (SMPI) or real: rank 0
// and the last rank exchange messages of each size (bytes, as arguments;
// default 1 B, 1 KiB and 1 MiB) ten times each, after one untimed exchange,
// and rank 0 prints the one-way time (half a round trip). The same program
// measures the emulated cluster that a platform is calibrated to. With
// "both" as the first argument the two ranks send to each other at the same
// time (MPI_Sendrecv) and rank 0 prints the time of one exchange: how a
// link carries both directions at once.
//
//   smpicc -O2 -o pingpong bench/sim/pingpong.c
//   bench/sim/run.sh -np 16 -ppn 1 -- ./pingpong    # rank 0 and rank 15 on two hosts
//   mpicc -O2 -o pingpong bench/sim/pingpong.c
//   tools/emulate-cluster.sh -n 2 -r 1gbit -- ./pingpong 1 1024 65536 1048576 8388608
//   tools/emulate-cluster.sh -n 2 -r 1gbit -- ./pingpong both 8388608
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int last = size - 1;
  const int both = argc > 1 && strcmp(argv[1], "both") == 0;
  char** given = argv + 1 + both;
  const int count = argc - 1 - both;
  const long defaults[] = {1, 1024, 1 << 20};
  const int sizes = count > 0 ? count : 3;
  long* size_of = calloc((size_t)sizes, sizeof(long));
  long largest = 0;
  for (int k = 0; k < sizes; ++k) {
    size_of[k] = count > 0 ? atol(given[k]) : defaults[k];
    if (size_of[k] > largest) largest = size_of[k];
  }
  char* buffer = calloc((size_t)largest + 1, 1);
  char* incoming = calloc((size_t)largest + 1, 1);
  for (int k = 0; k < sizes; ++k) {
    const int bytes = (int)size_of[k];
    double t0 = 0;
    for (int i = -1; i < 10; ++i) {
      if (i == 0) t0 = MPI_Wtime();
      if (both) {
        if (rank == 0 || rank == last)
          MPI_Sendrecv(buffer, bytes, MPI_BYTE, last - rank, 0, incoming, bytes, MPI_BYTE, last - rank, 0,
                       MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      } else if (rank == 0) {
        MPI_Send(buffer, bytes, MPI_BYTE, last, 0, MPI_COMM_WORLD);
        MPI_Recv(buffer, bytes, MPI_BYTE, last, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      } else if (rank == last) {
        MPI_Recv(buffer, bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(buffer, bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
      }
    }
    if (rank == 0 && both)
      printf("%8d B  both ways at once %10.2f us\n", bytes, (MPI_Wtime() - t0) / 10 * 1e6);
    else if (rank == 0)
      printf("%8d B  one way %10.2f us\n", bytes, (MPI_Wtime() - t0) / 20 * 1e6);
  }
  free(incoming);
  free(buffer);
  free(size_of);
  MPI_Finalize();
  return 0;
}
