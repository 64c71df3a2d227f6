// SPDX-License-Identifier: BSD-3-Clause
// Creation and free over MPI when ranks differ: each case must end on every
// rank with a clear status within its bound, and a communicator created
// afterwards must work exactly.
//
//   mpirun -np <ranks> create_free_test progress-thread
//       MPI at MPI_THREAD_SERIALIZED; only the last rank asks for the
//       progress thread: every rank fails the creation with
//       SPARCL_ERR_MISMATCH or SPARCL_ERR_UNSUPPORTED (not a timeout).
//   mpirun -np 2 create_free_test no-memory
//       rank 1's address space is capped, so a large allreduce fails with
//       SPARCL_ERR_NO_MEMORY while rank 0 has sent it a large message: both
//       fail, and sparcl_comm_free succeeds on both (dropping the message
//       must not need its size in memory).
//
// Prints "create_free_test: ok" on rank 0 when every rank passed.
#include <mpi.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "sparcl/sparcl_mpi.h"

namespace {

using Clock = std::chrono::steady_clock;
int rank = 0, ranks = 1;
bool ok = true;

void check(bool cond, const std::string& what) {
  if (cond) return;
  std::fprintf(stderr, "[rank %d] FAILED: %s\n", rank, what.c_str());
  ok = false;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

sparcl_config_t config_with(int64_t timeout_ms, int progress_thread) {
  sparcl_config_t c = SPARCL_CONFIG_INIT;
  c.timeout_ms = timeout_ms;
  c.progress_thread = progress_thread;
  c.algorithm = SPARCL_ALGO_RING;
  return c;
}

// A fresh communicator works exactly and frees cleanly.
void expect_working_comm(const char* after) {
  sparcl_config_t config = config_with(20000, 0);
  sparcl_comm_t comm = nullptr;
  const sparcl_status_t st = sparcl_comm_create_mpi(MPI_COMM_WORLD, &config, &comm);
  check(st == SPARCL_SUCCESS, std::string("creation ") + after + ": " + sparcl_comm_last_error(nullptr));
  if (st != SPARCL_SUCCESS) return;
  std::vector<float> in(1000, float(rank + 1)), out(1000, -1.0f);
  check(sparcl_allreduce(in.data(), out.data(), in.size(), SPARCL_FLOAT32, SPARCL_SUM, comm) == SPARCL_SUCCESS,
        std::string("allreduce ") + after + ": " + sparcl_comm_last_error(comm));
  check(out[0] == float(ranks * (ranks + 1) / 2) && out[999] == out[0], std::string("sum ") + after);
  check(sparcl_comm_free(comm) == SPARCL_SUCCESS, std::string("free ") + after + ": " + sparcl_comm_last_error(nullptr));
}

void progress_thread_case() {
  const bool asks = rank == ranks - 1;
  sparcl_config_t config = config_with(5000, asks ? 1 : 0);
  sparcl_comm_t comm = nullptr;
  const auto t0 = Clock::now();
  const sparcl_status_t st = sparcl_comm_create_mpi(MPI_COMM_WORLD, &config, &comm);
  const std::string error = sparcl_comm_last_error(nullptr);
  std::printf("[rank %d] progress_thread=%d: %s after %.2f s: %s\n", rank, asks ? 1 : 0, sparcl_strerror(st),
              seconds_since(t0), error.c_str());
  check(st == SPARCL_ERR_MISMATCH || st == SPARCL_ERR_UNSUPPORTED, "status " + std::string(sparcl_strerror(st)));
  check(error.find("progress thread") != std::string::npos, "message names the progress thread: " + error);
  check(seconds_since(t0) < 4.0, "failed before the timeout");
  if (comm) sparcl_comm_abort(comm);
  MPI_Barrier(MPI_COMM_WORLD);
  expect_working_comm("after the progress-thread mismatch");
}

long vm_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmSize:", 0) == 0) return std::atol(line.c_str() + 7) * 1024;
  return 0;
}

void no_memory_case() {
  sparcl_config_t config = config_with(10000, 0);
  sparcl_comm_t comm = nullptr;
  check(sparcl_comm_create_mpi(MPI_COMM_WORLD, &config, &comm) == SPARCL_SUCCESS, "creation");
  if (!comm) return;
  const size_t count = size_t(32) << 20;  // 128 MiB of float32; each ring message half of it
  std::vector<float> in(count, float(rank + 1)), out(count);
  if (rank == 1) {
    // Room for 32 MiB more: not for a 64 MiB message.
    rlimit cap{rlim_t(vm_bytes() + (32L << 20)), RLIM_INFINITY};
    check(setrlimit(RLIMIT_AS, &cap) == 0, "setrlimit");
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const sparcl_status_t st = sparcl_allreduce(in.data(), out.data(), count, SPARCL_FLOAT32, SPARCL_SUM, comm);
  std::printf("[rank %d] large allreduce: %s: %s\n", rank, sparcl_strerror(st), sparcl_comm_last_error(comm));
  check(st == SPARCL_ERR_NO_MEMORY, std::string("allreduce status ") + sparcl_strerror(st));
  const auto t0 = Clock::now();
  const sparcl_status_t freed = sparcl_comm_free(comm);
  std::printf("[rank %d] free: %s after %.2f s %s\n", rank, sparcl_strerror(freed), seconds_since(t0),
              freed == SPARCL_SUCCESS ? "" : sparcl_comm_last_error(nullptr));
  check(freed == SPARCL_SUCCESS, std::string("free status ") + sparcl_strerror(freed));
  if (rank == 1) {
    rlimit none{RLIM_INFINITY, RLIM_INFINITY};
    setrlimit(RLIMIT_AS, &none);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  expect_working_comm("after running out of memory");
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  int provided = 0;
  MPI_Init_thread(&argc, &argv, mode == "progress-thread" ? MPI_THREAD_SERIALIZED : MPI_THREAD_SINGLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  if (mode == "progress-thread") {
    if (provided >= MPI_THREAD_MULTIPLE) {
      if (rank == 0) std::printf("create_free_test: MPI gave MPI_THREAD_MULTIPLE; nothing to test: ok\n");
      MPI_Finalize();
      return 0;
    }
    progress_thread_case();
  } else if (mode == "no-memory") {
    no_memory_case();
  } else {
    if (rank == 0) std::fprintf(stderr, "usage: create_free_test progress-thread|no-memory\n");
    ok = false;
  }
  int mine = ok ? 1 : 0, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (rank == 0) std::printf("create_free_test: %s\n", all ? "ok" : "FAILED");
  MPI_Finalize();
  return all ? 0 : 1;
}
