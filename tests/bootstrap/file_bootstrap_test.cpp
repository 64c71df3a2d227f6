// SPDX-License-Identifier: BSD-3-Clause
// Communicators without MPI: the test forks P processes that bootstrap
// through files in a temporary directory (each allgather round, every rank
// writes its blob and reads everyone's), then sum sparse vectors over a
// native transport. Usage: file_bootstrap_test <ofi|ucx> <ranks>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "file_exchange.hpp"
#include "sparcl/sparcl.h"

namespace {

using sparcl_testing::file_allgather;
using sparcl_testing::FileExchange;

int fail(int rank, const char* what, sparcl_status_t st, sparcl_comm_t comm) {
  std::fprintf(stderr, "rank %d: %s: %s: %s\n", rank, what, sparcl_strerror(st), sparcl_comm_last_error(comm));
  return 1;
}

// One rank's life: bootstrap, check a sum, free.
int run_rank(const std::string& dir, sparcl_transport_t transport, int rank, int size) {
  FileExchange x{dir, rank, size, 0};
  // The MPI transport cannot work without MPI: a clear error, on every rank.
  {
    sparcl_config_t config = SPARCL_CONFIG_INIT;
    config.transport = SPARCL_TRANSPORT_MPI;
    sparcl_comm_t comm = nullptr;
    const sparcl_status_t st = sparcl_comm_create(rank, size, file_allgather, &x, &config, &comm);
    if (st != SPARCL_ERR_UNSUPPORTED || comm != nullptr) return fail(rank, "MPI transport without MPI", st, nullptr);
  }
  sparcl_config_t config = SPARCL_CONFIG_INIT;
  config.transport = transport;
  config.timeout_ms = 60000;
  sparcl_comm_t comm = nullptr;
  sparcl_status_t st = sparcl_comm_create(rank, size, file_allgather, &x, &config, &comm);
  if (st != SPARCL_SUCCESS) return fail(rank, "sparcl_comm_create", st, nullptr);
  int r = -1, p = -1;
  sparcl_comm_rank(comm, &r);
  sparcl_comm_size(comm, &p);
  if (r != rank || p != size) return fail(rank, "rank/size", SPARCL_ERR_INTERNAL, comm);
  const uint64_t dim = 100000;
  for (int iteration = 0; iteration < 20; ++iteration) {
    // Rank q holds indices q, q + size, ... below dim / 10 (but 7), and index 7
    // with value 1, listed last: sparcl sorts it in (SPARCL_SPARSE_UNSORTED).
    std::vector<uint64_t> idx;
    std::vector<double> val;
    for (uint64_t i = uint64_t(rank); i < dim / 10; i += uint64_t(size)) {
      if (i == 7) continue;
      idx.push_back(i);
      val.push_back(double(i + uint64_t(iteration)));
    }
    idx.push_back(7);
    val.push_back(1.0);
    sparcl_sparse_t in{dim, idx.size(), SPARCL_INDEX_U64, idx.data(), SPARCL_FLOAT64, val.data(),
                       SPARCL_SPARSE_UNSORTED};
    std::vector<double> out(dim);
    st = sparcl_allreduce_sparse(&in, out.data(), nullptr, comm);
    if (st != SPARCL_SUCCESS) return fail(rank, "sparcl_allreduce_sparse", st, comm);
    for (uint64_t i = 0; i < dim; ++i) {
      const double expect = i == 7 ? double(size) : i < dim / 10 ? double(i + uint64_t(iteration)) : 0.0;
      if (out[i] != expect) {
        std::fprintf(stderr, "rank %d: out[%llu] = %g, expected %g\n", rank, (unsigned long long)i, out[i], expect);
        return 1;
      }
    }
  }
  st = sparcl_comm_free(comm);
  if (st != SPARCL_SUCCESS) return fail(rank, "sparcl_comm_free", st, nullptr);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <ofi|ucx> <ranks>\n", argv[0]);
    return 2;
  }
  const std::string name = argv[1];
  const sparcl_transport_t transport = name == "ofi" ? SPARCL_TRANSPORT_OFI : SPARCL_TRANSPORT_UCX;
  const int size = std::atoi(argv[2]);
  char tmpl[] = "/tmp/sparcl-bootstrap.XXXXXX";
  if (!mkdtemp(tmpl)) return 2;
  const std::string dir = tmpl;
  std::vector<pid_t> children;
  for (int rank = 0; rank < size; ++rank) {
    const pid_t pid = fork();
    if (pid == 0) _exit(run_rank(dir, transport, rank, size));
    children.push_back(pid);
  }
  int failures = 0;
  for (pid_t pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
    failures += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  std::system(("rm -rf '" + dir + "'").c_str());
  std::printf("%s: %d ranks bootstrapped through files, %d failed\n", name.c_str(), size, failures);
  return failures ? 1 : 0;
}
