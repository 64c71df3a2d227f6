// SPDX-License-Identifier: BSD-3-Clause
// The core's C API: communicators, requests, results and errors. The
// collectives' entry points are collectives/api.cpp's. Every entry point
// catches everything: no exception crosses it.
#include <sched.h>

#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <unordered_set>
#include <vector>

#include "codec/codec.hpp"
#include "comm.hpp"
#include "comm_create.hpp"
#include "guard.hpp"
#include "input.hpp"
#include "request.hpp"
#include "sparcl/sparcl.h"

using namespace sparcl;

std::string& sparcl::thread_last_error() {
  thread_local std::string message;
  return message;
}

extern "C" {

const char* sparcl_strerror(sparcl_status_t status) {
  switch (status) {
    case SPARCL_SUCCESS: return "success";
    case SPARCL_ERR_INVALID_ARG: return "invalid argument";
    case SPARCL_ERR_MISMATCH: return "ranks disagree on the arguments of a collective";
    case SPARCL_ERR_TRANSPORT: return "transport error";
    case SPARCL_ERR_NO_MEMORY: return "out of memory";
    case SPARCL_ERR_UNSUPPORTED: return "unsupported";
    case SPARCL_ERR_TIMEOUT: return "timed out";
    case SPARCL_ERR_CORRUPT: return "corrupt message from a peer";
    case SPARCL_ERR_PEER_FAILED: return "a peer failed";
    case SPARCL_ERR_INTERNAL: return "internal error";
  }
  return "unknown status";
}

}  // extern "C"

namespace sparcl {

// Ends a completed request: frees it and returns its status, recording its
// error on the communicator.
sparcl_status_t release(sparcl_request_t* request) {
  sparcl_request* r = *request;
  *request = nullptr;
  const sparcl_status_t st = r->status;
  if (st != SPARCL_SUCCESS) {
    if (r->comm)
      r->comm->set_last_error(r->message);
    else
      thread_last_error() = r->message;
  }
  delete r;
  return st;
}

// Waits for a request a blocking call started, frees it, and throws its error.
void run_to_end(sparcl_request* r, std::unique_lock<std::mutex>& lock) {
  r->comm->wait_for(r, lock);
  std::unique_ptr<sparcl_request> owned(r);
  if (r->status != SPARCL_SUCCESS) throw Error(r->status, r->message);
}

}  // namespace sparcl

extern "C" {

int sparcl_version(void) { return SPARCL_VERSION_CODE; }

sparcl_status_t sparcl_config_init(sparcl_config_t* config) {
  if (!config) return record(nullptr, SPARCL_ERR_INVALID_ARG, "config is NULL");
  *config = sparcl_config_t SPARCL_CONFIG_INIT;
  return SPARCL_SUCCESS;
}

sparcl_status_t sparcl_comm_create(int rank, int size, sparcl_bootstrap_allgather_fn allgather, void* ctx,
                                   const sparcl_config_t* config, sparcl_comm_t* comm) {
  if (!comm) return record(nullptr, SPARCL_ERR_INVALID_ARG, "comm is NULL");
  *comm = nullptr;
  return guarded(nullptr, [&] {
    CallbackBootstrap boot(rank, size, allgather, ctx);
    *comm = create_comm(boot, config, nullptr).release();
  });
}

sparcl_status_t sparcl_comm_free(sparcl_comm_t comm) {
  if (!comm) return null_comm();
  {
    auto lock = comm->lock();
    if (comm->has_attached_requests())
      return record(comm, SPARCL_ERR_INVALID_ARG, "communicator has requests in flight: wait for them first");
  }
  // The communicator is gone afterwards whatever happens: a close that
  // timed out (a peer never called sparcl_comm_free) is reported, but the
  // handle is freed all the same.
  std::unique_ptr<sparcl_comm> owned(comm);
  return guarded(nullptr, [&] {
    // Detached requests finish first; the transport closes only after that.
    auto lock = comm->lock();
    comm->finish_detached_requests(lock);
    lock.unlock();
    comm->stop_progress_thread();
    comm->transport().close();
  });
}

sparcl_status_t sparcl_comm_abort(sparcl_comm_t comm) {
  if (!comm) return null_comm();
  return guarded(nullptr, [&] {
    comm->stop_progress_thread();
    {
      auto lock = comm->lock();
      comm->abort_requests("the communicator was aborted (sparcl_comm_abort) before this collective completed");
    }
    comm->transport().abort();
    delete comm;
  });
}

sparcl_status_t sparcl_comm_rank(sparcl_comm_t comm, int* rank) {
  if (!comm) return null_comm();
  if (!rank) return record(comm, SPARCL_ERR_INVALID_ARG, "rank is NULL");
  *rank = comm->transport().rank();
  return SPARCL_SUCCESS;
}

sparcl_status_t sparcl_comm_size(sparcl_comm_t comm, int* size) {
  if (!comm) return null_comm();
  if (!size) return record(comm, SPARCL_ERR_INVALID_ARG, "size is NULL");
  *size = comm->transport().size();
  return SPARCL_SUCCESS;
}

const char* sparcl_comm_transport(sparcl_comm_t comm) { return comm ? comm->transport().name() : nullptr; }

const char* sparcl_comm_last_error(sparcl_comm_t comm) {
  return comm ? comm->last_error().c_str() : thread_last_error().c_str();
}

// The counters change under the communicator's lock (the progress thread
// counts what it sends), so they are read and reset under it too.
sparcl_status_t sparcl_comm_stats(sparcl_comm_t comm, sparcl_stats_t* stats) {
  if (!comm) return null_comm();
  auto lock = comm->lock();
  if (!stats) return record(comm, SPARCL_ERR_INVALID_ARG, "stats is NULL");
  *stats = comm->stats();
  return SPARCL_SUCCESS;
}

const char* sparcl_encoding_name(sparcl_value_encoding_t encoding) {
  return sparcl::codec::is_value_codec(raw(encoding)) ? sparcl::encoding_name(encoding) : nullptr;
}

sparcl_status_t sparcl_comm_reset_stats(sparcl_comm_t comm) {
  if (!comm) return null_comm();
  auto lock = comm->lock();
  comm->reset_stats();
  return SPARCL_SUCCESS;
}

// --- persistent requests ---

}  // extern "C"

namespace {

sparcl_status_t not_active(sparcl_request* r) {
  return record(r->comm, SPARCL_ERR_INVALID_ARG, "the persistent request is not active: sparcl_start it first");
}

// sparcl_test of a persistent request: tests its run, and ends it (the
// request stays, inactive) once it has completed.
sparcl_status_t test_persistent(sparcl_request* r, int* completed) {
  if (!r->run) return not_active(r);
  if (!r->comm) {  // its communicator is gone; the run ended then
    *completed = 1;
    return release(&r->run);
  }
  auto lock = r->comm->lock();
  if (!r->run->done) r->comm->progress();
  if (!r->run->done) return SPARCL_SUCCESS;
  *completed = 1;
  return release(&r->run);
}

}  // namespace

extern "C" {

sparcl_status_t sparcl_start(sparcl_request_t* request) {
  if (!request || !*request) return record(nullptr, SPARCL_ERR_INVALID_ARG, "request is NULL");
  sparcl_request* r = *request;
  if (!r->persistent())
    return record(r->comm, SPARCL_ERR_INVALID_ARG,
                  "sparcl_start needs a persistent request (sparcl_allreduce_sparse_init, "
                  "sparcl_allreduce_compressed_init)");
  if (!r->comm)
    return record(nullptr, SPARCL_ERR_INVALID_ARG, "the communicator of this persistent request was freed");
  auto lock = r->comm->lock();
  if (r->run)
    return record(r->comm, SPARCL_ERR_INVALID_ARG,
                  "the persistent request is active: complete it (sparcl_wait, sparcl_test) before starting it again");
  return guarded(r->comm, [&] { r->run = r->start_run(); });
}

sparcl_status_t sparcl_startall(size_t count, sparcl_request_t* requests) {
  if (count && !requests) return record(nullptr, SPARCL_ERR_INVALID_ARG, "requests is NULL");
  // Every request is started even after one fails, so that all ranks start
  // the same collectives (a run that failed here fails on every rank).
  sparcl_status_t first = SPARCL_SUCCESS;
  for (size_t k = 0; k < count; ++k) {
    const sparcl_status_t st = sparcl_start(&requests[k]);
    if (first == SPARCL_SUCCESS) first = st;
  }
  return first;
}

// --- completion ---

sparcl_status_t sparcl_test(sparcl_request_t* request, int* completed) {
  if (!request || !completed) return record(nullptr, SPARCL_ERR_INVALID_ARG, "request or completed is NULL");
  *completed = 0;
  if (!*request) {
    *completed = 1;
    return SPARCL_SUCCESS;
  }
  if ((*request)->persistent()) return test_persistent(*request, completed);
  sparcl_comm* comm = (*request)->comm;
  if (!comm) {  // its communicator is gone; it ended then
    *completed = 1;
    return release(request);
  }
  auto lock = comm->lock();
  if (!(*request)->done) comm->progress();
  if (!(*request)->done) return SPARCL_SUCCESS;
  *completed = 1;
  return release(request);
}

sparcl_status_t sparcl_wait(sparcl_request_t* request) {
  if (!request) return record(nullptr, SPARCL_ERR_INVALID_ARG, "request is NULL");
  if (!*request) return SPARCL_SUCCESS;
  sparcl_comm* comm = (*request)->comm;
  if ((*request)->persistent()) {  // waits for its run; the request stays
    sparcl_request* r = *request;
    if (!r->run) return not_active(r);
    if (!comm) return release(&r->run);  // its communicator is gone; the run ended then
    auto lock = comm->lock();
    comm->wait_for(r->run, lock);
    return release(&r->run);
  }
  if (!comm) return release(request);  // its communicator is gone; it ended then
  auto lock = comm->lock();
  comm->wait_for(*request, lock);
  return release(request);
}

// Tests every request in turn until all have ended, so that every
// communicator they belong to keeps moving: ranks may wait for the same
// requests in different orders (as MPI_Waitall allows), and waiting for one
// request at a time would leave another rank's first request, on another
// communicator, without progress here.
sparcl_status_t sparcl_waitall(size_t count, sparcl_request_t* requests, sparcl_status_t* statuses) {
  if (count && !requests) return record(nullptr, SPARCL_ERR_INVALID_ARG, "requests is NULL");
  std::vector<sparcl_status_t> outcome(count, SPARCL_SUCCESS);
  std::vector<char> ended(count, 0);
  size_t left = count;
  for (size_t k = 0; k < count; ++k)
    if (requests[k] && requests[k]->inactive()) {  // as a NULL entry
      ended[k] = 1;
      --left;
    }
  while (left > 0) {
    for (size_t k = 0; k < count; ++k) {
      if (ended[k]) continue;
      int completed = 0;
      const sparcl_status_t st = sparcl_test(&requests[k], &completed);
      if (!completed && st == SPARCL_SUCCESS) continue;
      outcome[k] = st;
      ended[k] = 1;
      --left;
    }
    if (left > 0) sched_yield();
  }
  sparcl_status_t first = SPARCL_SUCCESS;
  for (size_t k = 0; k < count; ++k) {
    if (statuses) statuses[k] = outcome[k];
    if (first == SPARCL_SUCCESS) first = outcome[k];
  }
  return first;
}

sparcl_status_t sparcl_waitany(size_t count, sparcl_request_t* requests, size_t* index) {
  if (!index || (count && !requests)) return record(nullptr, SPARCL_ERR_INVALID_ARG, "requests or index is NULL");
  *index = count;
  for (;;) {
    bool any = false;
    for (size_t k = 0; k < count; ++k) {
      if (!requests[k] || requests[k]->inactive()) continue;
      any = true;
      int completed = 0;
      const sparcl_status_t st = sparcl_test(&requests[k], &completed);
      if (completed) {
        *index = k;
        return st;
      }
    }
    if (!any) return SPARCL_SUCCESS;
    sched_yield();
  }
}

sparcl_status_t sparcl_request_free(sparcl_request_t* request) {
  if (!request) return record(nullptr, SPARCL_ERR_INVALID_ARG, "request is NULL");
  if (!*request) return SPARCL_SUCCESS;
  sparcl_request* r = *request;
  if (r->run)
    return record(r->comm, SPARCL_ERR_INVALID_ARG,
                  "the persistent request is active: complete it (sparcl_wait, sparcl_test) before freeing it");
  *request = nullptr;
  if (!r->comm) {  // its communicator is gone; it ended then
    delete r;
    return SPARCL_SUCCESS;
  }
  auto lock = r->comm->lock();
  if (r->done)
    delete r;
  else
    r->detached = true;  // the engine deletes it when it completes
  return SPARCL_SUCCESS;
}

sparcl_status_t sparcl_result_free(sparcl_result_t result) {
  delete result;
  return SPARCL_SUCCESS;
}

uint64_t sparcl_result_dim(sparcl_result_t r) { return r ? r->dim : 0; }
sparcl_status_t sparcl_result_range(sparcl_result_t r, uint64_t* begin, uint64_t* end) {
  if (!r || !begin || !end) return record(nullptr, SPARCL_ERR_INVALID_ARG, "result, begin or end is NULL");
  *begin = r->begin;
  *end = r->end;
  return SPARCL_SUCCESS;
}
int sparcl_result_is_dense(sparcl_result_t r) { return r && r->dense ? 1 : 0; }
size_t sparcl_result_nnz(sparcl_result_t r) { return r ? r->nnz : 0; }
sparcl_datatype_t sparcl_result_value_type(sparcl_result_t r) { return r ? r->value_type : SPARCL_FLOAT32; }
sparcl_index_type_t sparcl_result_index_type(sparcl_result_t r) { return r ? r->index_type : SPARCL_INDEX_U32; }
const void* sparcl_result_indices(sparcl_result_t r) { return r ? r->indices : nullptr; }
const void* sparcl_result_values(sparcl_result_t r) { return r ? r->values : nullptr; }

sparcl_status_t sparcl_result_to_dense(sparcl_result_t r, void* dense) {
  if (!r || !dense) return record(nullptr, SPARCL_ERR_INVALID_ARG, "result or dense is NULL");
  return guarded(nullptr, [&] {
    dispatch_types(uint8_t(r->value_type), r->dim, [&](auto v, auto i) {
      using V = typename decltype(v)::type;
      using I = typename decltype(i)::type;
      View<V, I> view{Range{r->begin, r->end}, r->dense, r->nnz, static_cast<const I*>(r->indices),
                      static_cast<const V*>(r->values)};
      write_dense(view, static_cast<V*>(dense));
    });
  });
}

}  // extern "C"
