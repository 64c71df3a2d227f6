// SPDX-License-Identifier: BSD-3-Clause
#include "comm.hpp"

#include <algorithm>
#include <chrono>
#include <sched.h>

#include "codec/scalar.hpp"

namespace {
using Clock = std::chrono::steady_clock;

// Ends `r`: records the operation's outcome and delivers its outputs.
void finish(sparcl_request& r) {
  r.status = r.op->status();
  r.message = r.op->message();
  if (r.status == SPARCL_SUCCESS && r.deliver) {
    try {
      r.deliver();
    } catch (const sparcl::Error& e) {
      r.status = e.status();
      r.message = e.what();
    } catch (const std::bad_alloc&) {
      r.status = SPARCL_ERR_NO_MEMORY;
      r.message = "out of memory while delivering a result";
    } catch (const std::exception& e) {  // finish() runs on the progress thread too: nothing may escape it
      r.status = SPARCL_ERR_INTERNAL;
      r.message = std::string("delivering a result: ") + e.what();
    } catch (...) {
      r.status = SPARCL_ERR_INTERNAL;
      r.message = "delivering a result: unknown exception";
    }
  }
  if (r.status != SPARCL_SUCCESS && r.on_failure) r.on_failure();
  r.done = true;
}
}  // namespace

std::unique_ptr<sparcl_request> sparcl_request::completed(sparcl_comm* comm) {
  auto r = std::make_unique<sparcl_request>();
  r->comm = comm;
  r->done = true;
  return r;
}

sparcl_request::~sparcl_request() {
  delete run;  // a persistent request is freed only without a run in flight
  if (comm) comm->forget(this);
}

sparcl_comm::~sparcl_comm() {
  stop_progress_thread();
  for (sparcl_request* r : in_flight_) delete r;  // only detached ones can be left
  for (sparcl_request* r : open_requests_) r->comm = nullptr;
}

sparcl::Identity sparcl_comm::next_identity(sparcl::Kind kind, uint8_t algorithm, uint64_t dim,
                                            uint8_t value_type, uint8_t index_width) {
  sparcl::Identity ident;
  ident.comm_id = id_;
  ident.seq = next_seq_++;
  ident.kind = kind;
  ident.algorithm = algorithm;
  ident.dim = dim;
  ident.value_type = value_type;
  ident.index_width = index_width;
  if (value_type == SPARCL_FLOAT32) {
    ident.encoding = sparcl::Encoding(config_.encoding);
    ident.bucket = sparcl::codec::qsgd_bits(ident.encoding) ? config_.quantization_bucket : 0;
  }
  ident.checksum = config_.checksum;
  ident.index_coding = config_.index_coding;
  ident.rounding_key = sparcl::codec::derive_seed(rounding_base_, ident.seq);
  return ident;
}

sparcl_request* sparcl_comm::submit(std::unique_ptr<sparcl_request> request) {
  request->comm = this;
  open_requests_.insert(request.get());
  if (request->done) return request.release();
  request->op->count_traffic_in(&traffic_);
  request->deadline = sparcl::deadline_after(config_.timeout_ms);
  in_flight_.push_back(request.get());  // before release: if it throws, the request is freed
  sparcl_request* r = request.release();
  // Start it right away: its first sends go out before the caller computes.
  r->op->advance();
  wake_.notify_one();
  return r;
}

bool sparcl_comm::progress() {
  try {
    transport_->progress();
  } catch (const std::exception& e) {
    // The transport failed under every request in flight (this also runs on
    // the progress thread, which nothing may escape): each ends with the
    // error and tells its peers.
    for (sparcl_request* r : in_flight_)
      r->op->abort(SPARCL_ERR_TRANSPORT, std::string("progressing the transport: ") + e.what());
  }
  const auto now = Clock::now();
  bool moved = false;
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    sparcl_request* r = *it;
    const uint64_t moves = r->op->moves();
    const bool ended = r->op->advance();
    moved = moved || r->op->moves() != moves;
    if (!ended && now > r->deadline)
      r->op->abort(SPARCL_ERR_TIMEOUT, "collective did not complete within " + std::to_string(config_.timeout_ms) +
                                           " ms (SPARCL_TIMEOUT_MS)");
    if (!r->op->done()) {
      ++it;
      continue;
    }
    finish(*r);
    it = in_flight_.erase(it);
    if (r->detached) delete r;
    moved = true;
  }
  return moved;
}

void sparcl_comm::abort_requests(const std::string& message) {
  for (sparcl_request* r : in_flight_) {
    r->op.reset();  // its transfers are dropped while the transport still exists
    r->status = SPARCL_ERR_PEER_FAILED;
    r->message = message;
    if (r->on_failure) r->on_failure();
    r->done = true;
    if (r->detached) delete r;
  }
  in_flight_.clear();
}

bool sparcl_comm::has_attached_requests() const {
  for (const sparcl_request* r : in_flight_)
    if (!r->detached) return true;
  return false;
}

void sparcl_comm::finish_detached_requests(std::unique_lock<std::mutex>& lock) {
  while (!in_flight_.empty()) {
    progress();
    lock.unlock();
    sched_yield();
    lock.lock();
  }
}

sparcl_stats_t sparcl_comm::stats() const {
  sparcl_stats_t st{};
  st.collectives = next_seq_ - traffic_since_seq_;
  st.messages_sent = traffic_.messages;
  st.bytes_sent = traffic_.bytes;
  st.bytes_sent_off_host = traffic_.off_host_bytes;
  st.messages_received = traffic_.messages_received;
  st.bytes_received = traffic_.bytes_received;
  return st;
}

void sparcl_comm::reset_stats() {
  traffic_ = sparcl::Traffic{};
  traffic_since_seq_ = next_seq_;
}

void sparcl_comm::wait_for(sparcl_request* request, std::unique_lock<std::mutex>& lock) {
  while (!request->done) {
    progress();
    if (request->done) break;
    // Let other ranks (and the progress thread) run when cores are shared.
    lock.unlock();
    sched_yield();
    lock.lock();
  }
}

void sparcl_comm::start_progress_thread() { progress_thread_ = std::thread([this] { progress_loop(); }); }

void sparcl_comm::stop_progress_thread() {
  if (!progress_thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> g(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  progress_thread_.join();
}

void sparcl_comm::progress_loop() {
  // While nothing moves (the data is on the wire, or a peer is late), the
  // thread first spins a little, then sleeps for growing intervals, so that a
  // caller computing on the same core keeps it; a submit or a stop wakes it at
  // once. The cap bounds the extra latency of background progress; a caller
  // that waits progresses on its own thread without any sleep.
  constexpr int kSpinPasses = 64;
  constexpr auto kFirstSleep = std::chrono::microseconds(16);
  constexpr auto kMaxSleep = std::chrono::microseconds(256);
  std::unique_lock<std::mutex> lock(mutex_);
  int idle_passes = 0;
  auto sleep = kFirstSleep;
  while (!stop_) {
    if (in_flight_.empty()) {
      wake_.wait(lock, [this] { return stop_ || !in_flight_.empty(); });
      continue;
    }
    if (progress()) {
      idle_passes = 0;
      sleep = kFirstSleep;
    } else if (++idle_passes > kSpinPasses) {
      const size_t before = in_flight_.size();
      wake_.wait_for(lock, sleep, [&] { return stop_ || in_flight_.size() != before; });
      sleep = std::min(sleep * 2, kMaxSleep);
      continue;
    }
    // Yield only to a caller waiting for the lock: a thread that yields on
    // every pass loses its core to a computing caller for a whole time slice,
    // and communication then barely moves while the caller computes
    // (bench/overlap.cpp, sparcl-overlap, measures how much moves).
    lock.unlock();
    if (callers_waiting_.load(std::memory_order_relaxed) > 0) sched_yield();
    lock.lock();
  }
}
