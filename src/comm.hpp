// SPDX-License-Identifier: BSD-3-Clause
// The communicator behind sparcl_comm_t, the request behind sparcl_request_t,
// and the result behind sparcl_result_t.
//
// The progress engine: a communicator keeps its requests in flight in start
// order. progress() advances every one of them (each is a resumable state
// machine, see operation.hpp), enforces their deadlines and delivers the
// outputs of those that finish. It runs inside test/wait calls and, when
// enabled, on a background thread; a mutex serializes the two.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>

#include "config.hpp"
#include "operation.hpp"
#include "transport/transport.hpp"

struct sparcl_request;

// One locking rule: every mutable member is guarded by the communicator's
// mutex, taken with lock() by every C API call that touches the communicator
// and by the progress thread. Only what is fixed at creation (the transport,
// the configuration, the id and the rounding base) is read without it.
struct sparcl_comm {
 public:
  // `id` and `rounding_base` are the same on every rank: the id is part of
  // every tag and header, the base seeds stochastic rounding.
  sparcl_comm(const sparcl::Config& config, uint32_t id, uint64_t rounding_base)
      : config_(config), id_(id), rounding_base_(rounding_base) {}
  ~sparcl_comm();
  sparcl_comm(const sparcl_comm&) = delete;
  sparcl_comm& operator=(const sparcl_comm&) = delete;

  // --- fixed at creation: read without the lock ---
  sparcl::Transport& transport() const { return *transport_; }
  const sparcl::Config& config() const { return config_; }
  uint32_t id() const { return id_; }
  // Sets the transport: at creation, and by test hooks that wrap it
  // (src/test_hooks.cpp) between collectives, under the lock.
  void set_transport(std::unique_ptr<sparcl::Transport> transport) { transport_ = std::move(transport); }
  std::unique_ptr<sparcl::Transport> take_transport() { return std::move(transport_); }
  // Hosts and the tuning file as the ranks agreed on them (set at creation).
  const sparcl::Placement& placement() const { return placement_; }
  void set_placement(sparcl::Placement placement) { placement_ = std::move(placement); }

  // --- the rest: under the lock ---

  // Takes the mutex for a caller's API call. The progress thread steps aside
  // while such a call waits, so callers are never starved by its spinning.
  std::unique_lock<std::mutex> lock() {
    ++callers_waiting_;
    std::unique_lock<std::mutex> l(mutex_);
    --callers_waiting_;
    return l;
  }

  // Identity of the next collective; every collective call takes one, also
  // one that fails on bad input, so that sequence numbers stay aligned.
  // Float32 vectors get the configured value encoding, float64 ones travel raw.
  sparcl::Identity next_identity(sparcl::Kind kind, uint8_t algorithm, uint64_t dim, uint8_t value_type,
                                 uint8_t index_width);

  // Takes ownership of a started request and puts it in flight.
  sparcl_request* submit(std::unique_ptr<sparcl_request> request);

  // Advances every request in flight once; true if any of them moved.
  bool progress();

  // Blocks until `request` completes (progressing all requests meanwhile).
  // Caller holds `lock`.
  void wait_for(sparcl_request* request, std::unique_lock<std::mutex>& lock);

  // Whether a request the caller still holds is in flight (sparcl_comm_free
  // refuses then).
  bool has_attached_requests() const;
  // Progresses until the requests the caller freed before they completed
  // have ended (each ends by its deadline). Caller holds `lock`.
  void finish_detached_requests(std::unique_lock<std::mutex>& lock);

  // Ends every request in flight at once with SPARCL_ERR_PEER_FAILED and
  // `message`, dropping their transfers (sparcl_comm_abort). The progress
  // thread is stopped.
  void abort_requests(const std::string& message);

  // Forgets a request that is freed (its destructor calls this).
  void forget(sparcl_request* request) { open_requests_.erase(request); }

  // The message of the last error on this communicator (sparcl_comm_last_error).
  const std::string& last_error() const { return last_error_; }
  void set_last_error(const std::string& message) { last_error_ = message; }

  // The traffic counters (sparcl_comm_stats) and their reset.
  sparcl_stats_t stats() const;
  void reset_stats();

  // The collectives layer's state of this communicator (auto's records,
  // the last algorithm: collectives/start.hpp, CommCollectives), opaque here.
  std::shared_ptr<void>& collectives() { return collectives_; }

  // Starts and stops the background progress thread (not under the lock).
  void start_progress_thread();
  void stop_progress_thread();

 private:
  void progress_loop();

  std::unique_ptr<sparcl::Transport> transport_;
  const sparcl::Config config_;
  sparcl::Placement placement_;
  const uint32_t id_;
  const uint64_t rounding_base_;

  std::mutex mutex_;
  uint64_t next_seq_ = 0;  // collectives started so far
  std::string last_error_;
  sparcl::Traffic traffic_;
  uint64_t traffic_since_seq_ = 0;  // next_seq_ when the counters were last reset
  std::shared_ptr<void> collectives_;
  std::list<sparcl_request*> in_flight_;
  // Every request handed out and not yet freed, in flight or completed. When
  // the communicator goes, those the caller still holds forget it (their
  // comm becomes NULL) and can still be waited for or freed.
  std::unordered_set<sparcl_request*> open_requests_;

  std::condition_variable wake_;  // requests were submitted, or stop
  std::thread progress_thread_;
  bool stop_ = false;
  std::atomic<int> callers_waiting_{0};
};

struct sparcl_request {
  ~sparcl_request();
  sparcl_comm* comm = nullptr;  // NULL once the communicator is gone (the request has ended)
  std::unique_ptr<sparcl::Operation> op;
  // Writes the outputs after success; may throw (e.g. out of memory).
  std::function<void()> deliver;
  // Runs once if the request ends without success (its outputs were not
  // written); must not throw.
  std::function<void()> on_failure;
  std::shared_ptr<void> keep;  // storage the operation reads (converted input)
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();

  bool done = false;
  bool detached = false;  // freed by the caller before completion

  // A persistent request (sparcl_allreduce_sparse_init and the like) is a
  // plan, never in flight itself: `start_run` (called under the
  // communicator's lock) begins its next run, an ordinary request of its
  // own, kept in `run` until sparcl_wait or sparcl_test ends it. The
  // request is active while it has a run.
  std::function<sparcl_request*()> start_run;
  sparcl_request* run = nullptr;
  bool persistent() const { return bool(start_run); }
  // Inactive persistent requests count as NULL ones in sparcl_waitall and sparcl_waitany.
  bool inactive() const { return persistent() && !run; }
  sparcl_status_t status = SPARCL_SUCCESS;
  std::string message;

  // A request that completed at once (no operation).
  static std::unique_ptr<sparcl_request> completed(sparcl_comm* comm);
};

struct sparcl_result {
  uint64_t dim = 0;
  uint64_t begin = 0, end = 0;  // the index range it covers (dense: end - begin values)
  bool dense = false;
  sparcl_datatype_t value_type = SPARCL_FLOAT32;
  sparcl_index_type_t index_type = SPARCL_INDEX_U32;
  size_t nnz = 0;
  const void* indices = nullptr;
  const void* values = nullptr;
  std::shared_ptr<const void> storage;  // keeps indices and values alive
};
