// SPDX-License-Identifier: BSD-3-Clause
// Several communicators of one process alive at once, over the whole world,
// over the world in reverse rank order and over halves of it: collectives
// in flight on all of them together (small and large messages), completed in
// another order than started, and communicators freed in another order than
// created while the others go on. Transports that share one endpoint among
// the communicators of a process (libfabric) must keep their messages apart;
// each communicator sums other vectors, so a message delivered to the wrong
// one shows in the result. With the progress thread on, each communicator's
// thread progresses the shared endpoint beside the caller's calls on the
// others (the ThreadSanitizer build runs that case).
//
// Over libfabric's shm provider: a region that a dead process with this
// process's id left in /dev/shm does not stop communicator creation.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "mpi_test.hpp"

using namespace sparcl_testing;

namespace {

// A sparcl communicator over an MPI communicator of its own (freed with it).
struct SubComm {
  std::string name;
  MPI_Comm mpi = MPI_COMM_NULL;
  sparcl_comm_t comm = nullptr;
  int rank = 0, size = 1;

  SubComm(std::string label, int color, int key, bool progress_thread) : name(std::move(label)) {
    MPI_Comm_split(MPI_COMM_WORLD, color, key, &mpi);
    MPI_Comm_rank(mpi, &rank);
    MPI_Comm_size(mpi, &size);
    sparcl_config_t config = SPARCL_CONFIG_INIT;
    config.timeout_ms = 120000;
    config.progress_thread = progress_thread ? 1 : 0;
    if (sparcl_comm_create_mpi(mpi, &config, &comm) != SPARCL_SUCCESS) comm = nullptr;
  }
  ~SubComm() { release(); }
  SubComm(const SubComm&) = delete;
  SubComm& operator=(const SubComm&) = delete;
  sparcl_status_t release() {
    sparcl_status_t st = SPARCL_SUCCESS;
    if (comm) st = sparcl_comm_free(comm);
    comm = nullptr;
    if (mpi != MPI_COMM_NULL) MPI_Comm_free(&mpi);
    return st;
  }
};

// One allreduce in flight on `sub` and what it must produce.
struct InFlight {
  SubComm* sub;
  Case c;
  SparseVec<float> mine;
  std::vector<float> out;
  sparcl_request_t request = nullptr;
};

// Starts one allreduce on each communicator, each with its own vectors
// (seeded by communicator and round; every other one large enough for the
// libfabric transport's clear-to-send path), and waits for them in reverse
// order.
void run_round(const std::vector<SubComm*>& subs, uint64_t round) {
  std::vector<std::unique_ptr<InFlight>> flights;
  for (size_t i = 0; i < subs.size(); ++i) {
    auto f = std::make_unique<InFlight>();
    f->sub = subs[i];
    const bool large = (i + round) % 2 == 0;
    f->c = Case{large ? uint64_t(40000) : uint64_t(3000), large ? 0.3 : 0.02, Pattern::Overlapping, true,
                1000 * round + 17 * i + 3};
    f->mine = make_vector<float>(f->c, f->sub->rank, f->sub->size);
    f->out.assign(f->c.dim, -1.0f);
    const sparcl_sparse_t in = f->mine.as_input();
    EXPECT_EQ(sparcl_iallreduce_sparse(&in, f->out.data(), nullptr, f->sub->comm, &f->request), SPARCL_SUCCESS)
        << f->sub->name << ": " << sparcl_comm_last_error(f->sub->comm);
    flights.push_back(std::move(f));
  }
  for (auto it = flights.rbegin(); it != flights.rend(); ++it) {
    InFlight& f = **it;
    EXPECT_EQ(sparcl_wait(&f.request), SPARCL_SUCCESS) << f.sub->name << ": " << sparcl_comm_last_error(f.sub->comm);
    EXPECT_EQ(count_wrong<float>(f.c, f.sub->size, f.out), 0u) << f.sub->name << " round " << round << " "
                                                                << f.c.describe();
  }
}

void interleave_and_free_out_of_order(bool progress_thread) {
  const int rank = world_rank(), size = world_size();
  auto world = std::make_unique<SubComm>("world", 0, rank, progress_thread);
  auto reversed = std::make_unique<SubComm>("reversed", 0, size - rank, progress_thread);
  auto half = std::make_unique<SubComm>(rank < size / 2 ? "lower half" : "upper half", rank < size / 2 ? 0 : 1, rank,
                                        progress_thread);
  auto world2 = std::make_unique<SubComm>("second world", 0, rank, progress_thread);
  ASSERT_TRUE(all_ranks(world->comm && reversed->comm && half->comm && world2->comm));

  for (uint64_t round = 0; round < 3; ++round)
    run_round({world.get(), reversed.get(), half.get(), world2.get()}, round);

  // Freed in another order than created; the rest go on after each free.
  EXPECT_EQ(half->release(), SPARCL_SUCCESS);
  run_round({world2.get(), world.get(), reversed.get()}, 3);
  EXPECT_EQ(world->release(), SPARCL_SUCCESS);
  run_round({reversed.get(), world2.get()}, 4);

  // A communicator created after others were freed, beside the survivors.
  auto late = std::make_unique<SubComm>(rank % 2 ? "odd ranks" : "even ranks", rank % 2, rank, progress_thread);
  ASSERT_TRUE(all_ranks(late->comm != nullptr));
  run_round({late.get(), reversed.get(), world2.get()}, 5);

  EXPECT_EQ(reversed->release(), SPARCL_SUCCESS);
  EXPECT_EQ(late->release(), SPARCL_SUCCESS);
  run_round({world2.get()}, 6);
  EXPECT_EQ(world2->release(), SPARCL_SUCCESS);
  all_ranks(true);
}

TEST(MultipleCommunicators, InterleavedOverSubsetsAndFreedOutOfOrder) { interleave_and_free_out_of_order(false); }

TEST(MultipleCommunicators, InterleavedWithProgressThreads) { interleave_and_free_out_of_order(true); }

// libfabric's shm provider names an endpoint's region after the process id
// and maps an existing file of that name; process ids are reused. Empty
// files under this process's id, as a killed process leaves them, made the
// provider's mapping die of SIGBUS; creation must remove them and succeed.
TEST(SharedMemoryRegions, StaleRegionsOfThisProcessIdAreRemoved) {
  const char* transport = std::getenv("SPARCL_TRANSPORT");
  const char* provider = std::getenv("SPARCL_OFI_PROVIDER");
  if (!transport || std::string(transport) != "ofi" || !provider || std::string(provider) != "shm")
    GTEST_SKIP() << "libfabric's shm provider only";
  std::vector<std::string> planted;
  for (const char* suffix : {":0:0", ":0:1"}) {
    const std::string path = "/dev/shm/" + std::to_string(getpid()) + suffix;
    const int fd = open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
    if (fd >= 0) close(fd), planted.push_back(path);
  }
  ASSERT_EQ(planted.size(), 2u) << "no communicator of this process may be open here";
  {
    Comm comm(SPARCL_ALGO_RING);
    ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
    const int p = world_size();
    std::vector<uint32_t> idx{uint32_t(world_rank())};
    std::vector<float> val{1.0f};
    const sparcl_sparse_t in{uint64_t(p), 1, SPARCL_INDEX_U32, idx.data(), SPARCL_FLOAT32, val.data(), 0};
    std::vector<float> out(size_t(p), -1.0f);
    ASSERT_EQ(sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
    EXPECT_EQ(out, std::vector<float>(size_t(p), 1.0f));
  }
  for (const std::string& path : planted) {
    struct stat st;
    EXPECT_TRUE(stat(path.c_str(), &st) != 0 || st.st_size > 0) << path << " was mapped as it was left";
    unlink(path.c_str());
  }
  all_ranks(true);
}

}  // namespace
