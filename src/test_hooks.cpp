// SPDX-License-Identifier: BSD-3-Clause
#include "test_hooks.hpp"

#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <utility>
#include <vector>

#include "comm.hpp"
#include "wire.hpp"

namespace sparcl {
namespace testing {

namespace {

// A transport that passes everything on to another one, except that it
// flips one bit of one outgoing data message.
class CorruptingTransport final : public Transport {
 public:
  explicit CorruptingTransport(std::unique_ptr<Transport> inner) : inner_(std::move(inner)) {}
  void arm() { armed_ = true; }

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  const char* name() const override { return inner_->name(); }
  std::unique_ptr<Request> isend(int peer, const Tag& tag, SharedBuffer data) override {
    const size_t trailer = data->size() >= sizeof(WireHeader) &&
                                   (data->data()[offsetof(WireHeader, flags)] & kFlagChecksum)
                               ? kChecksumBytes
                               : 0;
    if (armed_ && !tag.abort && data->size() > sizeof(WireHeader) + trailer) {
      armed_ = false;
      auto copy = std::make_shared<Buffer>(data->size());
      std::memcpy(copy->data(), data->data(), data->size());
      copy->data()[copy->size() - trailer - 1] ^= 0x01;
      data = std::move(copy);
    }
    return inner_->isend(peer, tag, std::move(data));
  }
  std::unique_ptr<RecvRequest> irecv(int peer, const Tag& tag) override { return inner_->irecv(peer, tag); }
  void progress() override { inner_->progress(); }
  bool has_native_iallreduce(uint64_t count) const override { return inner_->has_native_iallreduce(count); }
  std::unique_ptr<Request> native_iallreduce(const void* send, void* recv, size_t count, sparcl_datatype_t type,
                                             sparcl_op_t op, std::shared_ptr<const void> keep) override {
    return inner_->native_iallreduce(send, recv, count, type, op, std::move(keep));
  }
  void close() override { inner_->close(); }
  void abort() override { inner_->abort(); }

 private:
  std::unique_ptr<Transport> inner_;
  bool armed_ = false;
};


// Allocation failures: the countdown to the allocation that fails (-1: none
// armed), and how deep this thread is inside the wrapped transport's calls.
std::atomic<int64_t> g_alloc_countdown{-1};
std::atomic<uint64_t> g_alloc_count{0};
std::atomic<bool> g_alloc_fired{false};
thread_local int t_inside_transport = 0;

struct InsideTransport {
  InsideTransport() { ++t_inside_transport; }
  ~InsideTransport() { --t_inside_transport; }
};

using Clock = std::chrono::steady_clock;

// A send held back: what the request of the original isend reports on.
struct HeldSend {
  std::unique_ptr<Request> inner;  // once released
  bool released = false;
};

class FaultTransport;

class DelayedSend final : public Request {
 public:
  DelayedSend(FaultTransport& t, std::shared_ptr<HeldSend> s) : t_(t), s_(std::move(s)) {}
  bool test() override;

 private:
  FaultTransport& t_;
  std::shared_ptr<HeldSend> s_;
};

// Receives pass through, but the inner calls are marked as the transport's.
class WrappedRecv final : public RecvRequest {
 public:
  explicit WrappedRecv(std::unique_ptr<RecvRequest> inner) : inner_(std::move(inner)) {}
  ~WrappedRecv() override {
    InsideTransport in;
    inner_.reset();
  }
  bool test() override {
    InsideTransport in;
    return inner_->test();
  }
  Buffer take() override {
    InsideTransport in;
    return inner_->take();
  }
  int source() const override { return inner_->source(); }

 private:
  std::unique_ptr<RecvRequest> inner_;
};

class WrappedSend final : public Request {
 public:
  explicit WrappedSend(std::unique_ptr<Request> inner) : inner_(std::move(inner)) {}
  ~WrappedSend() override {
    InsideTransport in;
    inner_.reset();
  }
  bool test() override {
    InsideTransport in;
    return inner_->test();
  }

 private:
  std::unique_ptr<Request> inner_;
};

// Flips, drops and delays messages this rank sends (see test_hooks.hpp).
class FaultTransport final : public Transport, public FaultInjector {
 public:
  FaultTransport(std::unique_ptr<Transport> inner, uint64_t seed) : inner_(std::move(inner)), rng_(seed) {
    set_hosts(inner_->hosts());
  }
  ~FaultTransport() override {
    InsideTransport in;
    queues_.clear();
    inner_.reset();
  }

  // FaultInjector
  void arm(const FaultOdds& odds, int budget) override {
    odds_ = odds;
    budget_ = budget;
  }
  void disarm() override { budget_ = 0; }
  FaultCounts counts() const override { return counts_; }
  void flush() override {
    InsideTransport in;
    release_all();
  }
  size_t held() const override {
    size_t n = 0;
    for (const auto& q : queues_) n += q.second.size();
    return n;
  }

  // Transport
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  const char* name() const override { return inner_->name(); }

  std::unique_ptr<Request> isend(int peer, const Tag& tag, SharedBuffer data) override {
    InsideTransport in;
    release_due();
    if (budget_ > 0) {
      const double u = uniform();
      if (u < odds_.flip) {
        --budget_;
        data = flipped(*data);
      } else if (u < odds_.flip + odds_.drop) {
        --budget_;
        ++counts_.drops;
        return std::make_unique<Dropped>();
      } else if (u < odds_.flip + odds_.drop + odds_.delay) {
        --budget_;
        ++counts_.delays;
        const int ms = odds_.delay_min_ms +
                       int(uniform() * double(std::max(0, odds_.delay_max_ms - odds_.delay_min_ms) + 1));
        return hold(peer, tag, std::move(data), Clock::now() + std::chrono::milliseconds(ms));
      }
    }
    auto q = queues_.find(peer);
    if (q != queues_.end() && !q->second.empty())  // behind a held message: keep the order
      return hold(peer, tag, std::move(data), q->second.back().due);
    return std::make_unique<WrappedSend>(inner_->isend(peer, tag, std::move(data)));
  }
  std::unique_ptr<RecvRequest> irecv(int peer, const Tag& tag) override {
    InsideTransport in;
    return std::make_unique<WrappedRecv>(inner_->irecv(peer, tag));
  }
  void progress() override {
    InsideTransport in;
    release_due();
    inner_->progress();
  }
  bool has_native_iallreduce(uint64_t count) const override { return inner_->has_native_iallreduce(count); }
  std::unique_ptr<Request> native_iallreduce(const void* send, void* recv, size_t count, sparcl_datatype_t type,
                                             sparcl_op_t op, std::shared_ptr<const void> keep) override {
    InsideTransport in;
    return std::make_unique<WrappedSend>(inner_->native_iallreduce(send, recv, count, type, op, std::move(keep)));
  }
  void close() override {
    InsideTransport in;
    release_all();
    inner_->close();
  }
  void abort() override {
    InsideTransport in;
    queues_.clear();
    inner_->abort();
  }

  // Sends the held messages whose time has come, in order per peer.
  void release_due() {
    const auto now = Clock::now();
    for (auto& q : queues_)
      while (!q.second.empty() && q.second.front().due <= now) release_front(q.first, q.second);
  }

 private:
  struct Dropped final : Request {
    bool test() override { return true; }
  };
  struct Pending {
    Clock::time_point due;
    Tag tag;
    SharedBuffer data;
    std::shared_ptr<HeldSend> state;
  };

  void release_front(int peer, std::deque<Pending>& q) {
    Pending p = std::move(q.front());
    q.pop_front();
    p.state->inner = inner_->isend(peer, p.tag, std::move(p.data));
    p.state->released = true;
  }
  void release_all() {
    for (auto& q : queues_)
      while (!q.second.empty()) release_front(q.first, q.second);
  }

  std::unique_ptr<Request> hold(int peer, const Tag& tag, SharedBuffer data, Clock::time_point due) {
    auto state = std::make_shared<HeldSend>();
    queues_[peer].push_back(Pending{due, tag, std::move(data), state});
    return std::make_unique<DelayedSend>(*this, std::move(state));
  }

  double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

  // A copy of `msg` with one random bit flipped; counts where it landed.
  SharedBuffer flipped(const Buffer& msg) {
    ++counts_.flips;
    auto copy = std::make_shared<Buffer>(msg.size());
    if (msg.size() == 0) return copy;
    std::memcpy(copy->data(), msg.data(), msg.size());
    const uint64_t bit = std::uniform_int_distribution<uint64_t>(0, uint64_t(msg.size()) * 8 - 1)(rng_);
    copy->data()[bit / 8] ^= uint8_t(1u << (bit % 8));
    counts_.flips_at[int(site_of(msg, size_t(bit / 8)))]++;
    return copy;
  }

  static FlipSite site_of(const Buffer& msg, size_t byte) {
    if (msg.size() < sizeof(WireHeader) || byte < sizeof(WireHeader)) return FlipSite::Header;
    WireHeader h;
    std::memcpy(&h, msg.data(), sizeof h);
    if (h.flags & kFlagAbort) return FlipSite::AbortNotice;
    const size_t trailer = (h.flags & kFlagChecksum) ? kChecksumBytes : 0;
    if (byte >= msg.size() - trailer) return FlipSite::Trailer;
    // Raw values are the last part of the payload (wire.hpp).
    const size_t value_size = h.value_type == SPARCL_FLOAT32 ? 4 : 8;
    const uint64_t count = (h.flags & kFlagDense) ? h.end - h.begin : h.nnz;
    const size_t payload_end = msg.size() - trailer;
    const uint128 values = uint128(count) * value_size;
    if (values <= payload_end - sizeof(WireHeader) && byte >= payload_end - size_t(values)) return FlipSite::Value;
    return FlipSite::Index;
  }

  friend class DelayedSend;
  std::unique_ptr<Transport> inner_;
  std::mt19937_64 rng_;
  FaultOdds odds_;
  int budget_ = 0;
  FaultCounts counts_;
  std::map<int, std::deque<Pending>> queues_;
};

bool DelayedSend::test() {
  InsideTransport in;
  if (!s_->released) t_.release_due();
  return s_->released && (!s_->inner || s_->inner->test());
}

}  // namespace

void corrupt_next_message(sparcl_comm_t comm) {
  auto lock = comm->lock();
  auto* corrupting = dynamic_cast<CorruptingTransport*>(&comm->transport());
  if (!corrupting) {
    auto wrapper = std::make_unique<CorruptingTransport>(comm->take_transport());
    corrupting = wrapper.get();
    comm->set_transport(std::move(wrapper));
  }
  corrupting->arm();
}

FaultInjector& inject_faults(sparcl_comm_t comm, uint64_t seed) {
  auto lock = comm->lock();
  auto* faults = dynamic_cast<FaultTransport*>(&comm->transport());
  if (!faults) {
    auto wrapper = std::make_unique<FaultTransport>(comm->take_transport(), seed);
    faults = wrapper.get();
    comm->set_transport(std::move(wrapper));
  }
  return *faults;
}

void arm_allocation_failure(uint64_t nth) {
  g_alloc_fired = false;
  g_alloc_count = 0;
  g_alloc_countdown = int64_t(nth);
}

void disarm_allocation_failure() { g_alloc_countdown = -1; }

bool should_fail_allocation() noexcept {
  if (t_inside_transport > 0) return false;
  g_alloc_count.fetch_add(1, std::memory_order_relaxed);
  if (g_alloc_countdown.load(std::memory_order_relaxed) < 0) return false;
  if (g_alloc_countdown.fetch_sub(1) != 1) return false;
  g_alloc_fired = true;
  return true;
}

uint64_t count_allocations() noexcept { return g_alloc_count.load(); }
void reset_allocation_count() noexcept { g_alloc_count = 0; }
bool allocation_failure_fired() noexcept { return g_alloc_fired.load(); }

}  // namespace testing
}  // namespace sparcl
