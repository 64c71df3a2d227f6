// SPDX-License-Identifier: BSD-3-Clause
// Checks a platform's latency and bandwidth under SMPI: rank 0 and the last
// rank exchange 1 B, 1 KiB and 1 MiB messages ten times each and rank 0
// prints the one-way time (half a round trip).
//
//   smpicc -O2 -o pingpong bench/sim/pingpong.c
//   bench/sim/run.sh -np 16 -ppn 1 -- ./pingpong    # rank 0 and rank 15 on two hosts
#include <mpi.h>
#include <stdio.h>

static char buffer[1 << 20];

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int last = size - 1;
  for (int bytes = 1; bytes <= (1 << 20); bytes *= 1024) {
    const double t0 = MPI_Wtime();
    for (int i = 0; i < 10; ++i) {
      if (rank == 0) {
        MPI_Send(buffer, bytes, MPI_BYTE, last, 0, MPI_COMM_WORLD);
        MPI_Recv(buffer, bytes, MPI_BYTE, last, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      } else if (rank == last) {
        MPI_Recv(buffer, bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(buffer, bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
      }
    }
    if (rank == 0) printf("%8d B  one way %8.2f us\n", bytes, (MPI_Wtime() - t0) / 20 * 1e6);
  }
  MPI_Finalize();
  return 0;
}
