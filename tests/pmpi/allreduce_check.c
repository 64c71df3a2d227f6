/* SPDX-License-Identifier: BSD-3-Clause
 *
 * An ordinary MPI program (no sparcl header, no sparcl library) that
 * libsparcl_pmpi.so must not change the results of. Run it with and without
 * LD_PRELOAD=libsparcl_pmpi.so; run_check.py compares the two.
 *
 *   mpirun -np P allreduce_check OUT_FILE     every case; rank 0 writes the results to OUT_FILE
 *   mpirun -np P allreduce_check --mismatch   ranks pass different counts (erroneous MPI):
 *                                             with the preload each rank must get an error code back
 *   allreduce_check --no-mpi                  never initialises MPI
 *
 * Every rank checks its own results against sums it computes itself (it can
 * generate every rank's data): exactly where the sum is exact whatever the
 * order (integers in floats, MAX, int), within float reordering otherwise.
 * The number of calls of each kind is fixed, so that run_check.py can check
 * where each went (SPARCL_PMPI_VERBOSE=2).
 */
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N (1 << 17) /* above the threshold the tests set (SPARCL_PMPI_MIN_COUNT=65536) */
#define SMALL 1000  /* below it */

static int rank, size, failures;
static int passed_through; /* set around cases MPI computes in both runs: identical bits expected */
static FILE *out;

static uint64_t mix(uint64_t x) { /* splitmix64 */
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* Element i of rank r's vector in case c: 1% nonzeros, values in (-1, 1),
 * or small integers when `integers` (sums exact in any order). */
static double value(int c, int r, int i, int density_percent, int integers) {
  const uint64_t h = mix(((uint64_t)c << 48) ^ ((uint64_t)r << 32) ^ (uint64_t)i);
  if ((int)(h % 100) >= density_percent) return 0.0;
  if (integers) return (double)((int)((h >> 8) % 17) - 8);
  return ((double)(h >> 11) / 9007199254740992.0) * 2.0 - 1.0;
}

static void fail(const char *name, int i, double got, double want) {
  if (failures++ < 10)
    fprintf(stderr, "rank %d: %s: element %d is %.9g, expected %.9g\n", rank, name, i, got, want);
}

/* Rank 0 records each result for the comparison of the two runs:
 * name (32 bytes), exact (int32), element size (int32), count (int32), data. */
static void record(const char *name, int exact, const void *data, int elem_size, int count) {
  if (rank != 0 || !out) return;
  char label[32] = {0};
  strncpy(label, name, sizeof label - 1);
  int32_t head[3] = {exact, elem_size, count};
  fwrite(label, 1, sizeof label, out);
  fwrite(head, sizeof head, 1, out);
  fwrite(data, (size_t)elem_size, (size_t)count, out);
}

/* Checks a float or double SUM of case c against the sum of every rank's data. */
static void check_sum(const char *name, int c, int density, int integers, const void *result, int is_double, int n,
                      int ranks) {
  for (int i = 0; i < n; ++i) {
    double want = 0, magnitude = 0;
    for (int r = 0; r < ranks; ++r) {
      const double v = is_double ? value(c, r, i, density, integers) : (double)(float)value(c, r, i, density, integers);
      want += v;
      magnitude += fabs(v);
    }
    const double got = is_double ? ((const double *)result)[i] : (double)((const float *)result)[i];
    const double tolerance = integers ? 0.0 : (is_double ? 1e-12 : 1e-5) * magnitude;
    if (fabs(got - want) > tolerance) fail(name, i, got, want);
  }
  record(name, integers || passed_through, result, is_double ? 8 : 4, n);
}

static void fill_float(float *v, int c, int r, int n, int density, int integers) {
  for (int i = 0; i < n; ++i) v[i] = (float)value(c, r, i, density, integers);
}
static void fill_double(double *v, int c, int r, int n, int density, int integers) {
  for (int i = 0; i < n; ++i) v[i] = value(c, r, i, density, integers);
}

/* User-defined sum of float pairs, for the derived-datatype case. */
static void pair_sum(void *in, void *inout, int *len, MPI_Datatype *type) {
  (void)type;
  const float *a = in;
  float *b = inout;
  for (int i = 0; i < 2 * *len; ++i) b[i] += a[i];
}

static void run_cases(void) {
  float *fs = malloc(N * sizeof(float)), *fr = malloc(N * sizeof(float));
  double *ds = malloc(N * sizeof(double)), *dr = malloc(N * sizeof(double));
  int *is = malloc(N * sizeof(int)), *ir = malloc(N * sizeof(int));
  float *fs2 = malloc(N * sizeof(float)), *fr2 = malloc(N * sizeof(float));
  if (!fs || !fr || !ds || !dr || !is || !ir || !fs2 || !fr2) MPI_Abort(MPI_COMM_WORLD, 2);

  /* Through sparcl (with the preload): 8 blocking, 5 non-blocking calls on
   * MPI_COMM_WORLD, then 2 per duplicate below. */
  fill_float(fs, 1, rank, N, 1, 0);
  MPI_Allreduce(fs, fr, N, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  check_sum("float sparse", 1, 1, 0, fr, 0, N, size);
  MPI_Allreduce(fs, fr, N, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); /* the same call again */
  check_sum("float sparse again", 1, 1, 0, fr, 0, N, size);

  fill_float(fs, 2, rank, N, 100, 1);
  MPI_Allreduce(fs, fr, N, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  check_sum("float dense integers", 2, 100, 1, fr, 0, N, size);

  fill_float(fr, 3, rank, N, 10, 0);
  MPI_Allreduce(MPI_IN_PLACE, fr, N, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  check_sum("float in place", 3, 10, 0, fr, 0, N, size);

  fill_double(ds, 4, rank, N, 1, 0);
  MPI_Allreduce(ds, dr, N, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  check_sum("double sparse", 4, 1, 0, dr, 1, N, size);

  fill_double(dr, 5, rank, N, 100, 0);
  MPI_Allreduce(MPI_IN_PLACE, dr, N, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  check_sum("double dense in place", 5, 100, 0, dr, 1, N, size);

  memset(fs, 0, N * sizeof(float)); /* all zeros */
  MPI_Allreduce(fs, fr, N, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  for (int i = 0; i < N; ++i)
    if (fr[i] != 0.0f) fail("float zeros", i, fr[i], 0);
  record("float zeros", 1, fr, 4, N);

  fill_float(fs, 6, rank, N, 1, 1);
  MPI_Allreduce(fs, fr, N, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  check_sum("float sparse integers", 6, 1, 1, fr, 0, N, size);

  /* Non-blocking: MPI_Wait; two at once with MPI_Waitall; MPI_Test until done;
   * one in place completed by MPI_Waitany. */
  MPI_Request req[2];
  MPI_Status st[2];
  fill_float(fs, 7, rank, N, 1, 0);
  MPI_Iallreduce(fs, fr, N, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req[0]);
  MPI_Wait(&req[0], &st[0]);
  if (req[0] != MPI_REQUEST_NULL) fail("iallreduce wait: request not freed", 0, 0, 0);
  check_sum("iallreduce wait", 7, 1, 0, fr, 0, N, size);

  fill_float(fs, 8, rank, N, 1, 0);
  fill_float(fs2, 9, rank, N, 5, 0);
  MPI_Iallreduce(fs, fr, N, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req[0]);
  MPI_Iallreduce(fs2, fr2, N, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req[1]);
  if (MPI_Waitall(2, req, st) != MPI_SUCCESS) fail("iallreduce waitall: error", 0, 0, 0);
  check_sum("iallreduce waitall 1", 8, 1, 0, fr, 0, N, size);
  check_sum("iallreduce waitall 2", 9, 5, 0, fr2, 0, N, size);

  fill_double(ds, 10, rank, N, 1, 0);
  MPI_Iallreduce(ds, dr, N, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &req[0]);
  int done = 0;
  while (!done) MPI_Test(&req[0], &done, &st[0]);
  check_sum("iallreduce test", 10, 1, 0, dr, 1, N, size);

  fill_float(fr, 11, rank, N, 1, 0);
  MPI_Iallreduce(MPI_IN_PLACE, fr, N, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req[0]);
  int index = -1;
  MPI_Waitany(1, req, &index, &st[0]);
  if (index != 0) fail("iallreduce waitany: index", 0, index, 0);
  check_sum("iallreduce waitany in place", 11, 1, 0, fr, 0, N, size);

  /* Passed to MPI unchanged: exact in both runs. */
  fill_float(fs, 12, rank, N, 1, 0);
  MPI_Allreduce(fs, fr, N, MPI_FLOAT, MPI_MAX, MPI_COMM_WORLD);
  for (int i = 0; i < N; ++i) {
    float want = (float)value(12, 0, i, 1, 0);
    for (int r = 1; r < size; ++r)
      if ((float)value(12, r, i, 1, 0) > want) want = (float)value(12, r, i, 1, 0);
    if (fr[i] != want) fail("float max", i, fr[i], want);
  }
  record("float max", 1, fr, 4, N);

  for (int i = 0; i < N; ++i) is[i] = (int)value(13, rank, i, 1, 1);
  MPI_Allreduce(is, ir, N, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  for (int i = 0; i < N; ++i) {
    int want = 0;
    for (int r = 0; r < size; ++r) want += (int)value(13, r, i, 1, 1);
    if (ir[i] != want) fail("int sum", i, ir[i], want);
  }
  record("int sum", 1, ir, 4, N);

  MPI_Datatype pair;
  MPI_Op pair_op;
  MPI_Type_contiguous(2, MPI_FLOAT, &pair);
  MPI_Type_commit(&pair);
  MPI_Op_create(pair_sum, 1, &pair_op);
  fill_float(fs, 14, rank, N, 1, 1);
  MPI_Allreduce(fs, fr, N / 2, pair, pair_op, MPI_COMM_WORLD);
  check_sum("derived datatype", 14, 1, 1, fr, 0, N, size);
  MPI_Op_free(&pair_op);
  MPI_Type_free(&pair);

  passed_through = 1;
  fill_float(fs, 15, rank, SMALL, 1, 0);
  MPI_Allreduce(fs, fr, SMALL, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  check_sum("below threshold", 15, 1, 0, fr, 0, SMALL, size);

  fill_float(fr, 16, rank, SMALL, 50, 0);
  MPI_Allreduce(MPI_IN_PLACE, fr, SMALL, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  check_sum("below threshold in place", 16, 50, 0, fr, 0, SMALL, size);
  passed_through = 0;

  fill_float(fs, 17, rank, N, 1, 0);
  MPI_Iallreduce(fs, fr, N, MPI_FLOAT, MPI_MAX, MPI_COMM_WORLD, &req[0]);
  MPI_Wait(&req[0], &st[0]);
  for (int i = 0; i < N; ++i) {
    float want = (float)value(17, 0, i, 1, 0);
    for (int r = 1; r < size; ++r)
      if ((float)value(17, r, i, 1, 0) > want) want = (float)value(17, r, i, 1, 0);
    if (fr[i] != want) fail("iallreduce max", i, fr[i], want);
  }
  record("iallreduce max", 1, fr, 4, N);

  /* Communicators: duplicates freed and made again (each gets a sparcl
   * communicator of its own, freed with it), and halves of the world. */
  for (int k = 0; k < 4; ++k) {
    MPI_Comm dup;
    MPI_Comm_dup(MPI_COMM_WORLD, &dup);
    fill_float(fs, 20 + k, rank, N, 1, 0);
    MPI_Allreduce(fs, fr, N, MPI_FLOAT, MPI_SUM, dup);
    check_sum("dup loop", 20 + k, 1, 0, fr, 0, N, size);
    MPI_Allreduce(MPI_IN_PLACE, fr, N, MPI_FLOAT, MPI_MAX, dup); /* passed through on the same communicator */
    MPI_Iallreduce(fs, fr, N, MPI_FLOAT, MPI_SUM, dup, &req[0]);
    MPI_Wait(&req[0], &st[0]);
    MPI_Comm_free(&dup); /* (Open MPI 4.1 crashes if a collective is still pending here) */
    check_sum("dup loop nonblocking", 20 + k, 1, 0, fr, 0, N, size);
  }
  MPI_Comm half;
  const int color = rank % 2;
  MPI_Comm_split(MPI_COMM_WORLD, color, rank, &half);
  int half_size = 0;
  MPI_Comm_size(half, &half_size);
  fill_float(fs, 30, rank / 2, N, 1, 0); /* rank r is rank r/2 of its half */
  MPI_Allreduce(fs, fr, N, MPI_FLOAT, MPI_SUM, half);
  check_sum(color ? "odd half" : "even half", 30, 1, 0, fr, 0, N, half_size);
  /* MPI_Finalize frees the halves' sparcl communicators (not freed here). */

  free(fs), free(fr), free(ds), free(dr), free(is), free(ir), free(fs2), free(fr2);
}

/* Erroneous MPI on purpose: ranks disagree on the count. sparcl notices and
 * fails on every rank; with MPI_ERRORS_RETURN each rank must get the error
 * back, with a message, instead of a hang or an abort without one. */
static int run_mismatch(void) {
  MPI_Comm comm;
  MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  const int n = N + rank;
  float *s = calloc((size_t)n, sizeof(float)), *r = calloc((size_t)n, sizeof(float));
  s[0] = 1;
  const int rc = MPI_Allreduce(s, r, n, MPI_FLOAT, MPI_SUM, comm);
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  int ok = rc != MPI_SUCCESS && strstr(text, "sparcl") != NULL;
  printf("rank %d: mismatched counts: error %d: %s\n", rank, rc, text);
  /* The communicator is still usable afterwards. */
  for (int i = 0; i < N; ++i) s[i] = (float)value(40, rank, i, 1, 1);
  if (MPI_Allreduce(s, r, N, MPI_FLOAT, MPI_SUM, comm) != MPI_SUCCESS) ok = 0;
  failures = 0;
  check_sum("after the error", 40, 1, 1, r, 0, N, size);
  if (failures) ok = 0;
  free(s), free(r);
  MPI_Comm_free(&comm);
  return ok ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--no-mpi") == 0) {
    puts("no MPI");
    return 0;
  }
  if (argc != 2) {
    fprintf(stderr, "usage: allreduce_check OUT_FILE | --mismatch | --no-mpi\n");
    return 2;
  }
  /* With the thread level sparcl's progress thread needs (run_check.py runs
   * it so with SPARCL_PROGRESS_THREAD=1). */
  if (getenv("CHECK_THREAD_MULTIPLE")) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  } else {
    MPI_Init(&argc, &argv);
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (strcmp(argv[1], "--mismatch") == 0) {
    const int rc = run_mismatch();
    MPI_Finalize();
    return rc;
  }
  if (rank == 0) {
    out = fopen(argv[1], "wb");
    if (!out) {
      perror(argv[1]);
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
  }
  run_cases();
  if (out) fclose(out);
  int total = 0;
  MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) printf("%s: %d ranks, %d failures\n", total ? "FAILED" : "passed", size, total);
  MPI_Finalize();
  return total ? 1 : 0;
}
