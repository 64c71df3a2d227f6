// SPDX-License-Identifier: BSD-3-Clause
// The transport interface on whichever backend SPARCL_TRANSPORT selects,
// under a communicator made by sparcl_comm_create_mpi.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstring>
#include <memory>
#include <vector>

#include "comm.hpp"
#include "config.hpp"
#include "transport/transport.hpp"
#include "sparcl/sparcl_mpi.h"

namespace {

using sparcl::Buffer;
using sparcl::RecvRequest;
using sparcl::Request;
using sparcl::SharedBuffer;
using sparcl::Tag;
using sparcl::Transport;

class TransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sparcl_config_t config = SPARCL_CONFIG_INIT;
    ASSERT_EQ(sparcl_comm_create_mpi(MPI_COMM_WORLD, &config, &comm_), SPARCL_SUCCESS)
        << sparcl_comm_last_error(nullptr);
  }
  void TearDown() override {
    if (comm_) {
      EXPECT_EQ(sparcl_comm_free(comm_), SPARCL_SUCCESS);
    }
  }
  Transport& transport() { return comm_->transport(); }
  sparcl_comm_t comm_ = nullptr;
};

// Sizes on both sides of every backend's protocol switch (eager, rendezvous,
// libfabric's 16 KiB header, chunking), in an order that puts large messages
// right behind small ones.
const size_t kSizes[] = {0, 3, 16 * 1024 - 48, 16 * 1024 + 1, 1, 3 << 20, 200000, 17, 5 << 20, 64 << 10};
constexpr int kCount = int(sizeof kSizes / sizeof kSizes[0]);

// Message k from `from` to `to`: its size and a pattern that names all three.
SharedBuffer message(int from, int to, int k) {
  auto b = std::make_shared<Buffer>(kSizes[k]);
  for (size_t i = 0; i < b->size(); ++i) b->data()[i] = uint8_t(from * 31 + to * 7 + k * 13 + i % 251);
  return b;
}

bool matches(const Buffer& got, int from, int to, int k) {
  SharedBuffer want = message(from, to, k);
  return got.size() == want->size() && (got.size() == 0 || std::memcmp(got.data(), want->data(), got.size()) == 0);
}

// Every rank sends kCount messages with one tag to every other rank, all in
// flight at once, and receives theirs into receives all posted before any
// completes: the k-th receive from a peer must get that peer's k-th message.
TEST_F(TransportTest, EqualTagsInFlightArriveInOrder) {
  Transport& t = transport();
  const int me = t.rank(), p = t.size();
  if (p < 2) GTEST_SKIP() << "needs two ranks";
  const Tag tag{comm_->id(), 1u << 20, false};
  std::vector<std::unique_ptr<RecvRequest>> recvs;
  std::vector<std::unique_ptr<Request>> sends;
  for (int peer = 0; peer < p; ++peer) {
    if (peer == me) continue;
    for (int k = 0; k < kCount; ++k) recvs.push_back(t.irecv(peer, tag));
    for (int k = 0; k < kCount; ++k) sends.push_back(t.isend(peer, tag, message(me, peer, k)));
  }
  std::vector<bool> received(recvs.size(), false);
  size_t left = recvs.size() + sends.size();
  const double deadline = MPI_Wtime() + 60;
  while (left > 0 && MPI_Wtime() < deadline) {
    t.progress();
    for (auto& s : sends)
      if (s && s->test()) {
        s.reset();
        --left;
      }
    for (size_t i = 0; i < recvs.size(); ++i) {
      if (!recvs[i] || !recvs[i]->test()) continue;
      const int from = recvs[i]->source();
      const int k = int(i % kCount);
      const int expected_from = int(i / kCount) < me ? int(i / kCount) : int(i / kCount) + 1;
      EXPECT_EQ(from, expected_from);
      Buffer got = recvs[i]->take();
      EXPECT_TRUE(matches(got, expected_from, me, k))
          << "receive " << k << " from rank " << expected_from << " got " << got.size() << " bytes, expected "
          << kSizes[k];
      recvs[i].reset();
      --left;
    }
  }
  EXPECT_EQ(left, 0u) << "transfers still open after 60 s";
}

// A receive from any peer reports who sent the message.
TEST_F(TransportTest, AnySourceReceiveNamesTheSender) {
  Transport& t = transport();
  const int me = t.rank(), p = t.size();
  if (p < 2) GTEST_SKIP() << "needs two ranks";
  const Tag tag{comm_->id(), 1u << 21, true};
  std::unique_ptr<Request> send;
  if (me != 0) send = t.isend(0, tag, message(me, 0, 5));  // a large one: 3 MiB
  std::vector<bool> heard(size_t(p), false);
  if (me == 0) {
    for (int n = 1; n < p; ++n) {
      auto r = t.irecv(sparcl::kAnyPeer, tag);
      const double deadline = MPI_Wtime() + 60;
      while (!r->test() && MPI_Wtime() < deadline) t.progress();
      ASSERT_TRUE(r->test());
      const int from = r->source();
      ASSERT_TRUE(from > 0 && from < p) << from;
      EXPECT_FALSE(heard[size_t(from)]);
      heard[size_t(from)] = true;
      EXPECT_TRUE(matches(r->take(), from, 0, 5));
    }
  } else {
    const double deadline = MPI_Wtime() + 60;
    while (!send->test() && MPI_Wtime() < deadline) t.progress();
    EXPECT_TRUE(send->test());
  }
}

// Endpoints that carry several communicators of a process (libfabric: one
// per process and provider) hand each id to one live communicator only,
// whatever its bits above those that travel, and take it back when its
// holder goes.
TEST(SharedEndpoint, CommunicatorIdsAreClaimedOncePerProcess) {
  const sparcl::Config config = sparcl::resolve_config(nullptr);
  if (config.transport != SPARCL_TRANSPORT_OFI) GTEST_SKIP() << "only the libfabric endpoint is shared";
  auto first = sparcl::open_endpoint(config);
  auto second = sparcl::open_endpoint(config);
  ASSERT_TRUE(first->shared());
  EXPECT_EQ(first->address(), second->address()) << "one endpoint per process";
  EXPECT_TRUE(first->claim_id(7));
  EXPECT_FALSE(second->claim_id(7));
  EXPECT_FALSE(second->claim_id(7 | (uint32_t(1) << 30)));  // the same id on the wire
  EXPECT_TRUE(second->claim_id(8));
  EXPECT_TRUE(first->claim_id(9));  // gives 7 back
  EXPECT_TRUE(second->claim_id(7));
  first.reset();
  auto third = sparcl::open_endpoint(config);
  EXPECT_TRUE(third->claim_id(9));  // the holder went
  EXPECT_FALSE(third->claim_id(7));
}

}  // namespace
