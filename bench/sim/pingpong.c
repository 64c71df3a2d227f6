// SPDX-License-Identifier: BSD-3-Clause
// Checks a platform's latency and bandwidth, simulated (SMPI) or real: rank 0
// and the last rank exchange messages of each size (bytes, as arguments;
// default 1 B, 1 KiB and 1 MiB) ten times each, after one untimed exchange,
// and rank 0 prints the one-way time (half a round trip). The same program
// measures the emulated cluster that a platform is calibrated to.
//
//   smpicc -O2 -o pingpong bench/sim/pingpong.c
//   bench/sim/run.sh -np 16 -ppn 1 -- ./pingpong    # rank 0 and rank 15 on two hosts
//   mpicc -O2 -o pingpong bench/sim/pingpong.c
//   tools/emulate-cluster.sh -n 2 -r 1gbit -- ./pingpong 1 1024 65536 1048576 8388608
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int last = size - 1;
  const long defaults[] = {1, 1024, 1 << 20};
  const int sizes = argc > 1 ? argc - 1 : 3;
  long largest = 0;
  for (int k = 0; k < sizes; ++k) {
    const long bytes = argc > 1 ? atol(argv[k + 1]) : defaults[k];
    if (bytes > largest) largest = bytes;
  }
  char* buffer = calloc((size_t)largest + 1, 1);
  for (int k = 0; k < sizes; ++k) {
    const int bytes = (int)(argc > 1 ? atol(argv[k + 1]) : defaults[k]);
    double t0 = 0;
    for (int i = -1; i < 10; ++i) {
      if (i == 0) t0 = MPI_Wtime();
      if (rank == 0) {
        MPI_Send(buffer, bytes, MPI_BYTE, last, 0, MPI_COMM_WORLD);
        MPI_Recv(buffer, bytes, MPI_BYTE, last, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      } else if (rank == last) {
        MPI_Recv(buffer, bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(buffer, bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
      }
    }
    if (rank == 0) printf("%8d B  one way %10.2f us\n", bytes, (MPI_Wtime() - t0) / 20 * 1e6);
  }
  free(buffer);
  MPI_Finalize();
  return 0;
}
