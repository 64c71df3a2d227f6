/* SPDX-License-Identifier: BSD-3-Clause
 * A program built against an installed sparcl: every rank contributes one
 * nonzero, rank + 1 at index rank, and checks the dense sum. */
#include <sparcl/sparcl_mpi.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define DIM 16

static int fail_status(const char *what, sparcl_status_t st, sparcl_comm_t comm) {
  fprintf(stderr, "consumer: %s failed: %s (%s)\n", what, sparcl_strerror(st),
          comm ? sparcl_comm_last_error(comm) : "");
  MPI_Abort(MPI_COMM_WORLD, 1);
  return 1;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size > DIM) {
    if (rank == 0) fprintf(stderr, "consumer: at most %d ranks\n", DIM);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (sparcl_version() != SPARCL_VERSION_CODE) {
    fprintf(stderr, "consumer: header version %d, library version %d\n", SPARCL_VERSION_CODE,
            sparcl_version());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }

  sparcl_comm_t comm = NULL;
  sparcl_status_t st = sparcl_comm_create_mpi(MPI_COMM_WORLD, NULL, &comm);
  if (st != SPARCL_SUCCESS) return fail_status("sparcl_comm_create_mpi", st, NULL);

  uint32_t index = (uint32_t)rank;
  float value = (float)(rank + 1);
  sparcl_sparse_t send;
  send.dim = DIM;
  send.nnz = 1;
  send.index_type = SPARCL_INDEX_U32;
  send.indices = &index;
  send.value_type = SPARCL_FLOAT32;
  send.values = &value;
  send.flags = 0;

  float dense[DIM];
  for (int i = 0; i < DIM; ++i) dense[i] = -1.0f;
  st = sparcl_allreduce_sparse(&send, dense, NULL, comm);
  if (st != SPARCL_SUCCESS) return fail_status("sparcl_allreduce_sparse", st, comm);

  int errors = 0;
  for (int i = 0; i < DIM; ++i) {
    const float want = i < size ? (float)(i + 1) : 0.0f;
    if (dense[i] != want) {
      fprintf(stderr, "consumer: rank %d: result[%d] = %g, expected %g\n", rank, i, dense[i], want);
      ++errors;
    }
  }

  st = sparcl_comm_free(comm);
  if (st != SPARCL_SUCCESS) return fail_status("sparcl_comm_free", st, NULL);

  int total = 0;
  MPI_Allreduce(&errors, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (total == 0 && rank == 0) printf("consumer OK\n");
  MPI_Finalize();
  return total == 0 ? 0 : 1;
}
