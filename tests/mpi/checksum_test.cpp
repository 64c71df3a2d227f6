// SPDX-License-Identifier: BSD-3-Clause
// Why checksums exist. A test-only hook (src/test_hooks.hpp) flips one bit
// of one message rank 0 sends, on its way to the peer, in the last byte of
// its payload: the most significant byte of a value. With checksums on
// (config.checksum, SPARCL_CHECKSUM=1) every rank fails with
// SPARCL_ERR_CORRUPT naming rank 0 as the sender, and the communicator goes
// on working. Without them the message is still a valid message (any bit
// pattern is a float), so the collective succeeds with wrong values: nothing
// else can see the corruption.
#include <memory>

#include "mpi_test.hpp"
#include "test_hooks.hpp"

using namespace sparcl_testing;

namespace {

class Checksums : public ::testing::TestWithParam<sparcl_algorithm_t> {};

sparcl_config_t config_of(sparcl_algorithm_t a, bool checksum) {
  sparcl_config_t c = SPARCL_CONFIG_INIT;
  c.algorithm = a;
  c.checksum = checksum ? 1 : 0;
  c.timeout_ms = 60000;
  return c;
}

const Case kCase{20000, 0.05, Pattern::Overlapping, /*integer_values=*/true, 41};

// A communicator over which rank 0's next message will be corrupted.
std::unique_ptr<Comm> corrupting_comm(sparcl_algorithm_t a, bool checksum) {
  auto comm = std::make_unique<Comm>(config_of(a, checksum));
  if (comm->status() == SPARCL_SUCCESS && world_rank() == 0) sparcl::testing::corrupt_next_message(comm->get());
  return comm;
}

// Runs the allreduce of kCase; returns the status and the wrong values of this rank.
sparcl_status_t run(const Comm& comm, size_t& wrong) {
  SparseVec<float> mine = make_vector<float>(kCase, world_rank(), world_size());
  sparcl_sparse_t in = mine.as_input();
  std::vector<float> out(kCase.dim);
  const sparcl_status_t st = sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get());
  wrong = st == SPARCL_SUCCESS ? count_wrong<float>(kCase, world_size(), out) : 0;
  return st;
}

TEST_P(Checksums, CorruptionFailsEveryRankNamingTheSender) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  auto owned = corrupting_comm(GetParam(), true);
  const Comm& comm = *owned;
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
  size_t wrong = 0;
  EXPECT_EQ(run(comm, wrong), SPARCL_ERR_CORRUPT) << comm.error();
  const std::string msg = comm.error();
  EXPECT_NE(msg.find("CRC32C"), std::string::npos) << msg;
  EXPECT_NE(msg.find("from rank 0"), std::string::npos) << msg;
  all_ranks(true);
  // The next collective is intact.
  EXPECT_EQ(run(comm, wrong), SPARCL_SUCCESS) << comm.error();
  EXPECT_EQ(wrong, 0u);
}

TEST_P(Checksums, WithoutChecksumsCorruptionGoesUnnoticed) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  auto owned = corrupting_comm(GetParam(), false);
  const Comm& comm = *owned;
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
  size_t wrong = 0;
  EXPECT_EQ(run(comm, wrong), SPARCL_SUCCESS) << comm.error();
  unsigned long long total = wrong;
  MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
  EXPECT_GT(total, 0u) << "the flipped bit should have changed a value of the sum";
  EXPECT_EQ(run(comm, wrong), SPARCL_SUCCESS) << comm.error();
  EXPECT_EQ(wrong, 0u);
}

// Checksums change nothing else: every algorithm gives the exact sum.
TEST_P(Checksums, ResultsAreExact) {
  Comm comm(config_of(GetParam(), true));
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
  for (uint64_t dim : {1ull, 100ull, 5000ull}) {
    const Case c{dim, 0.3, Pattern::Overlapping, true, dim};
    SparseVec<float> mine = make_vector<float>(c, world_rank(), world_size());
    sparcl_sparse_t in = mine.as_input();
    std::vector<float> out(dim);
    EXPECT_EQ(sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
    EXPECT_EQ(count_wrong<float>(c, world_size(), out), 0u);
    std::vector<sparcl_result_t> results(static_cast<size_t>(world_size()));
    EXPECT_EQ(sparcl_allgather_sparse(&in, results.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
    for (auto& res : results) sparcl_result_free(res);
  }
}

INSTANTIATE_TEST_SUITE_P(Algorithms, Checksums, ::testing::ValuesIn(kAllAlgorithms),
                         [](const ::testing::TestParamInfo<sparcl_algorithm_t>& p) { return algorithm_label(p.param); });

}  // namespace
