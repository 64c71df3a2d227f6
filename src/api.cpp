// SPDX-License-Identifier: BSD-3-Clause
// The C API. Every entry point catches everything: no exception crosses it.
#include <sched.h>

#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <type_traits>

#include "../collectives/auto.hpp"
#include "../collectives/collective.hpp"
#include "../ml/compress/codec.hpp"
#include "../ml/cuda/dispatch.hpp"
#include "comm.hpp"
#include "comm_create.hpp"
#include "guard.hpp"
#include "input.hpp"
#include "start.hpp"
#include "sparcl/sparcl.h"

using namespace sparcl;

std::string& sparcl::thread_last_error() {
  thread_local std::string message;
  return message;
}

namespace {

template <class T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<V>, TypeTag<I>) for the value type and the index width of dim.
template <class F>
void dispatch(uint8_t value_type, uint64_t dim, F&& f) {
  const bool wide = index_width_for(dim) == 8;
  if (value_type == SPARCL_FLOAT32) {
    wide ? f(TypeTag<float>{}, TypeTag<uint64_t>{}) : f(TypeTag<float>{}, TypeTag<uint32_t>{});
  } else if (value_type == SPARCL_FLOAT64) {
    wide ? f(TypeTag<double>{}, TypeTag<uint64_t>{}) : f(TypeTag<double>{}, TypeTag<uint32_t>{});
  } else {
    fail(SPARCL_ERR_INVALID_ARG, "value type must be SPARCL_FLOAT32 or SPARCL_FLOAT64");
  }
}

// An error the other ranks have been told of already.
struct Told : Error {
  using Error::Error;
};

// Runs local checks for collective `id`; if they fail, the other ranks are
// told before the error is returned here, so that no rank waits for us.
template <class F>
void checked(sparcl_comm_t comm, const Identity& id, F&& checks) {
  try {
    checks();
  } catch (const Told&) {
    throw;
  } catch (const Error& e) {
    send_abort_notices(*comm->transport, id, e.status(), e.what());
    throw Told(e.status(), e.what());
  } catch (const std::bad_alloc&) {
    send_abort_notices(*comm->transport, id, SPARCL_ERR_NO_MEMORY, "out of memory");
    throw Told(SPARCL_ERR_NO_MEMORY, "out of memory");
  }
}

// The rest of a collective's start once its identity is taken (building the
// request, submitting it) fails every rank too: out of memory there used to
// fail this rank at once while the others waited for the whole timeout.
template <class F>
sparcl_request* start_checked(sparcl_comm_t comm, const Identity& id, F&& start) {
  sparcl_request* started = nullptr;
  checked(comm, id, [&] { started = start(); });
  return started;
}

template <class V, class I>
sparcl_result* new_result(const Held<V, I>& h) {
  // Results follow SparCML's rule too (an input passed through at P = 1 may not).
  if (!h.view.dense && prefer_dense<V, I>(h.view.nnz, h.view.range.size()))
    return new_result(Held<V, I>::of_stream(to_dense_stream(h.view)));
  // ... both ways: a dense sum (split_dense, dense, or an empty one) with few
  // entries set is returned sparse, -0.0 entries kept.
  if (h.view.dense && !prefer_dense<V, I>(count_set_entries(h.view), h.view.range.size()))
    return new_result(Held<V, I>::of_stream(to_sparse_stream(h.view)));
  auto r = std::make_unique<sparcl_result>();
  r->dim = h.view.range.size();
  r->value_type = sparcl_datatype_t(value_type_code<V>());
  r->index_type = sizeof(I) == 4 ? SPARCL_INDEX_U32 : SPARCL_INDEX_U64;
  r->dense = h.view.dense;
  r->nnz = h.view.nnz;
  if (h.stream) {
    r->storage = h.stream;
  } else if (h.message) {
    r->storage = h.message;
  } else {  // the caller's input: copy it
    auto s = std::make_shared<const Stream<V, I>>(to_stream(h.view));
    r->storage = s;
    r->indices = s->dense ? nullptr : s->idx.data();
    r->values = s->val.data();
    return r.release();
  }
  r->indices = h.view.dense ? nullptr : h.view.idx;
  r->values = h.view.val;
  return r.release();
}

template <class V, class I>
sparcl_result* new_result(const std::vector<Held<V, I>>& pieces, Range whole) {
  if (pieces.size() == 1) return new_result(pieces[0]);
  std::vector<View<V, I>> views;
  for (const auto& p : pieces) views.push_back(p.view);
  return new_result(Held<V, I>::of_stream(concat(views, whole)));
}

template <class V, class I>
void write_pieces(const std::vector<Held<V, I>>& pieces, void* dense) {
  V* out = static_cast<V*>(dense);
  for (const auto& p : pieces) write_dense(p.view, out + p.view.range.begin);
}

sparcl_status_t null_comm() { return record(nullptr, SPARCL_ERR_INVALID_ARG, "communicator is NULL"); }

std::shared_ptr<AutoState> auto_state_of(sparcl_comm* comm) {
  if (!comm->auto_state) comm->auto_state = std::make_shared<AutoState>(comm->config.auto_params, comm->config.auto_tune);
  return comm->auto_state;
}

// The place of an allreduce of `dim` values of `value_type` in auto's
// records (empty unless the communicator's algorithm is auto).
AutoTicket auto_ticket(sparcl_comm* comm, uint64_t dim, uint8_t value_type) {
  if (comm->config.algorithm == SPARCL_ALGO_DENSE) {
    AutoTicket t;
    t.native = auto_state_of(comm)->native_slot();
    return t;
  }
  if (comm->config.algorithm != SPARCL_ALGO_AUTO) return AutoTicket{};
  return auto_state_of(comm)->start(dim, value_type, value_size(value_type), comm->transport->size());
}

// The operation of an allreduce: auto's, or the configured algorithm.
template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_allreduce_op(sparcl_comm* comm, const Identity& id, const View<V, I>& input,
                                                     AutoTicket& ticket) {
  if (comm->config.algorithm == SPARCL_ALGO_AUTO)
    return make_auto_allreduce<V, I>(*comm->transport, id, input, auto_state_of(comm), std::move(ticket));
  return make_allreduce<V, I>(comm->config.algorithm, *comm->transport, id, input, std::move(ticket.native));
}

}  // namespace

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
  if (st != SPARCL_SUCCESS) (r->comm ? r->comm->last_error : thread_last_error()) = r->message;
  delete r;
  return st;
}

// Waits for a request a blocking call started, frees it, and throws its error.
void run_to_end(sparcl_request* r, std::unique_lock<std::mutex>& lock) {
  r->comm->wait_for(r, lock);
  std::unique_ptr<sparcl_request> owned(r);
  if (r->status != SPARCL_SUCCESS) throw Error(r->status, r->message);
}

// `request_slot` is where the caller wants the request (checked for NULL so
// that a missing pointer fails on every rank like any other bad argument).
void fail_allreduce_start(sparcl_comm* comm, uint64_t dim, uint8_t value_type, sparcl_status_t status,
                          const std::string& message) {
  const Identity id = comm->next_identity(Kind::Allreduce, uint8_t(comm->config.algorithm), dim, value_type,
                                          index_width_for(dim));
  auto_ticket(comm, dim, value_type).fail();
  send_abort_notices(*comm->transport, id, status, message);
}

sparcl_request* start_allreduce_sparse(sparcl_comm* comm, const sparcl_sparse_t* send, void* dense_recv,
                                       sparcl_result_t* result, const void* request_slot,
                                       const CompressedCall* compressed) {
  // GPU buffers (CUDA builds): ml/cuda/ stages them through host memory and comes back here.
  if (cuda::any_device_buffer(send, dense_recv))
    return cuda::start_allreduce_sparse(comm, send, dense_recv, result, request_slot, nullptr, compressed);
  if (result) *result = nullptr;
  const uint64_t dim = send ? send->dim : 0;
  const uint8_t vt = send ? uint8_t(raw(send->value_type)) : 0;
  Identity id = comm->next_identity(Kind::Allreduce, uint8_t(comm->config.algorithm), dim, vt, index_width_for(dim));
  // Taken before the checks: a call that fails here still has its place (its ticket marks it failed).
  AutoTicket ticket;
  checked(comm, id, [&] { ticket = auto_ticket(comm, dim, vt); });
  if (compressed) {
    id.encoding = compressed->encoding;
    id.bucket = compressed->bucket;
  }
  checked(comm, id, [&] {
    require(request_slot != nullptr, SPARCL_ERR_INVALID_ARG, "request is NULL");
    check_sparse_header(send);
    require((dense_recv != nullptr) != (result != nullptr), SPARCL_ERR_INVALID_ARG,
            "pass exactly one of dense_recv and result");
    if (compressed)
      require(vt == SPARCL_FLOAT32 && dim < (uint64_t(1) << 32), SPARCL_ERR_INTERNAL,
              "a compressed allreduce of other than float32 values with 32-bit indices");
  });
  return start_checked(comm, id, [&] {
    auto request = std::make_unique<sparcl_request>();
    dispatch(vt, dim, [&](auto v, auto i) {
      using V = typename decltype(v)::type;
      using I = typename decltype(i)::type;
      auto in = std::make_shared<Input<V, I>>();
      checked(comm, id, [&] { make_input(*send, *in); });
      auto op = make_allreduce_op<V, I>(comm, id, in->view, ticket);
      if constexpr (std::is_same<V, float>::value)
        if (compressed) op->report_input_sent(compressed->input_sent);
      const AllreduceOp<V, I>* reduce = op.get();
      request->deliver = [comm, reduce, dense_recv, result, dim] {
        if (dense_recv)
          write_pieces(reduce->pieces(), dense_recv);
        else
          *result = new_result(reduce->pieces(), Range{0, dim});
        comm->last_algorithm = sparcl_algorithm_t(reduce->identity().algorithm);
        comm->last_choice = reduce->choice();
      };
      request->op = std::move(op);
      request->keep = in;
    });
    return comm->submit(std::move(request));
  });
}

sparcl_request* start_allgather_sparse(sparcl_comm* comm, const sparcl_sparse_t* send, sparcl_result_t* results,
                                       sparcl_result_t* merged, const void* request_slot) {
  const int p = comm->transport->size();
  if (results)
    for (int k = 0; k < p; ++k) results[k] = nullptr;
  if (merged) *merged = nullptr;
  const uint64_t dim = send ? send->dim : 0;
  const uint8_t vt = send ? uint8_t(raw(send->value_type)) : 0;
  const Identity id = comm->next_identity(Kind::Allgather, 0, dim, vt, index_width_for(dim));
  checked(comm, id, [&] {
    require(request_slot != nullptr, SPARCL_ERR_INVALID_ARG, "request is NULL");
    check_sparse_header(send);
    require(results != nullptr, SPARCL_ERR_INVALID_ARG, "results is NULL");
    cuda::require_host_buffers(send->indices, send->values, "sparcl_allgather_sparse");
  });
  return start_checked(comm, id, [&] {
    auto request = std::make_unique<sparcl_request>();
    dispatch(vt, dim, [&](auto v, auto i) {
      using V = typename decltype(v)::type;
      using I = typename decltype(i)::type;
      auto in = std::make_shared<Input<V, I>>();
      checked(comm, id, [&] { make_input(*send, *in); });
      auto op = std::make_unique<AllgatherOp<V, I>>(*comm->transport, id, in->view);
      const AllgatherOp<V, I>* gather = op.get();
      request->deliver = [gather, results, merged, p] {
        std::vector<std::unique_ptr<sparcl_result>> out;
        for (const auto& h : gather->vectors()) out.emplace_back(new_result(h));
        std::unique_ptr<sparcl_result> sum;
        if (merged) {
          std::vector<View<V, I>> views;
          for (const auto& h : gather->vectors()) views.push_back(h.view);
          sum.reset(new_result(Held<V, I>::of_stream(merge_all(views))));
        }
        for (int k = 0; k < p; ++k) results[k] = out[size_t(k)].release();
        if (merged) *merged = sum.release();
      };
      request->op = std::move(op);
      request->keep = in;
    });
    return comm->submit(std::move(request));
  });
}

sparcl_request* start_allreduce(sparcl_comm* comm, const void* sendbuf, void* recvbuf, size_t count,
                                sparcl_datatype_t datatype, sparcl_op_t op, const void* request_slot) {
  const int type = raw(datatype), reduction = raw(op);
  const bool sparse_path = reduction == SPARCL_SUM && (type == SPARCL_FLOAT32 || type == SPARCL_FLOAT64);
  const void* src = sendbuf == SPARCL_IN_PLACE ? recvbuf : sendbuf;
  if (count == 0) return comm->submit(sparcl_request::completed(comm));
  if (!sparse_path) {
    require(request_slot != nullptr, SPARCL_ERR_INVALID_ARG, "request is NULL");
    require(recvbuf && src, SPARCL_ERR_INVALID_ARG, "sendbuf or recvbuf is NULL");
    cuda::require_host_buffers(src, recvbuf, "sparcl_allreduce");
    require(value_size(type) != 0, SPARCL_ERR_INVALID_ARG, "unknown datatype");
    require(reduction >= SPARCL_SUM && reduction <= SPARCL_MIN, SPARCL_ERR_INVALID_ARG, "unknown reduction op");
    comm->transport->native_allreduce(src, recvbuf, count, datatype, op);
    return comm->submit(sparcl_request::completed(comm));
  }
  const Identity id = comm->next_identity(Kind::Allreduce, uint8_t(comm->config.algorithm), count, uint8_t(type),
                                          index_width_for(count));
  AutoTicket ticket;
  checked(comm, id, [&] { ticket = auto_ticket(comm, count, uint8_t(type)); });
  checked(comm, id, [&] {
    require(request_slot != nullptr, SPARCL_ERR_INVALID_ARG, "request is NULL");
    require(recvbuf && src, SPARCL_ERR_INVALID_ARG, "sendbuf or recvbuf is NULL");
    cuda::require_host_buffers(src, recvbuf, "sparcl_allreduce");
  });
  return start_checked(comm, id, [&] {
    auto request = std::make_unique<sparcl_request>();
    dispatch(uint8_t(type), count, [&](auto v, auto i) {
      using V = typename decltype(v)::type;
      using I = typename decltype(i)::type;
      auto in = std::make_shared<Input<V, I>>();
      make_dense_input(static_cast<const V*>(src), count, *in);
      auto reduce_op = make_allreduce_op<V, I>(comm, id, in->view, ticket);
      const AllreduceOp<V, I>* reduce = reduce_op.get();
      request->deliver = [comm, reduce, recvbuf] {
        write_pieces(reduce->pieces(), recvbuf);
        comm->last_algorithm = sparcl_algorithm_t(reduce->identity().algorithm);
        comm->last_choice = reduce->choice();
      };
      request->op = std::move(reduce_op);
      request->keep = in;
    });
    return comm->submit(std::move(request));
  });
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
    for (const sparcl_request* r : comm->in_flight)
      if (!r->detached)
        return record(comm, SPARCL_ERR_INVALID_ARG, "communicator has requests in flight: wait for them first");
  }
  // The communicator is gone afterwards whatever happens: a close that
  // timed out (a peer never called sparcl_comm_free) is reported, but the
  // handle is freed all the same.
  std::unique_ptr<sparcl_comm> owned(comm);
  return guarded(nullptr, [&] {
    // Detached requests finish first (progress deletes each as it ends; each
    // ends by its deadline); the transport closes only after that.
    auto lock = comm->lock();
    while (!comm->in_flight.empty()) {
      comm->progress();
      lock.unlock();
      sched_yield();
      lock.lock();
    }
    lock.unlock();
    comm->stop_progress_thread();
    comm->transport->close();
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
    comm->transport->abort();
    delete comm;
  });
}

sparcl_status_t sparcl_comm_rank(sparcl_comm_t comm, int* rank) {
  if (!comm) return null_comm();
  if (!rank) return record(comm, SPARCL_ERR_INVALID_ARG, "rank is NULL");
  *rank = comm->transport->rank();
  return SPARCL_SUCCESS;
}

sparcl_status_t sparcl_comm_size(sparcl_comm_t comm, int* size) {
  if (!comm) return null_comm();
  if (!size) return record(comm, SPARCL_ERR_INVALID_ARG, "size is NULL");
  *size = comm->transport->size();
  return SPARCL_SUCCESS;
}

const char* sparcl_comm_last_error(sparcl_comm_t comm) {
  return comm ? comm->last_error.c_str() : thread_last_error().c_str();
}

sparcl_status_t sparcl_comm_stats(sparcl_comm_t comm, sparcl_stats_t* stats) {
  if (!comm) return null_comm();
  if (!stats) return record(comm, SPARCL_ERR_INVALID_ARG, "stats is NULL");
  stats->collectives = comm->next_seq - comm->traffic_since_seq;
  stats->messages_sent = comm->traffic.messages;
  stats->bytes_sent = comm->traffic.bytes;
  return SPARCL_SUCCESS;
}

sparcl_status_t sparcl_comm_last_algorithm(sparcl_comm_t comm, sparcl_algorithm_t* algorithm) {
  if (!comm) return null_comm();
  if (!algorithm) return record(comm, SPARCL_ERR_INVALID_ARG, "algorithm is NULL");
  auto lock = comm->lock();
  *algorithm = comm->last_algorithm;
  return SPARCL_SUCCESS;
}

const char* sparcl_algorithm_name(sparcl_algorithm_t algorithm) {
  const int a = int(algorithm);
  return a >= SPARCL_ALGO_AUTO && a <= SPARCL_ALGO_DENSE ? sparcl::algorithm_name(algorithm) : nullptr;
}

const char* sparcl_encoding_name(sparcl_value_encoding_t encoding) {
  return sparcl::compress::is_value_codec(int(encoding)) ? sparcl::encoding_name(encoding) : nullptr;
}

sparcl_status_t sparcl_comm_last_choice(sparcl_comm_t comm, sparcl_choice_t* choice) {
  if (!comm) return null_comm();
  if (!choice) return record(comm, SPARCL_ERR_INVALID_ARG, "choice is NULL");
  auto lock = comm->lock();
  *choice = comm->last_choice;
  return SPARCL_SUCCESS;
}

const char* sparcl_comm_auto_model(sparcl_comm_t comm) {
  if (!comm) return "";
  auto lock = comm->lock();
  try {
    comm->auto_model_text = auto_state_of(comm)->describe();
  } catch (...) {
    comm->auto_model_text = "(out of memory)";
  }
  return comm->auto_model_text.c_str();
}

sparcl_status_t sparcl_comm_reset_stats(sparcl_comm_t comm) {
  if (!comm) return null_comm();
  comm->traffic = Traffic{};
  comm->traffic_since_seq = comm->next_seq;
  return SPARCL_SUCCESS;
}

// --- collectives: each is started as a request; the blocking call waits for it ---

sparcl_status_t sparcl_iallreduce_sparse(const sparcl_sparse_t* send, void* dense_recv, sparcl_result_t* result,
                                         sparcl_comm_t comm, sparcl_request_t* request) {
  if (!comm) return null_comm();
  auto lock = comm->lock();
  return guarded(comm, [&] { *request = start_allreduce_sparse(comm, send, dense_recv, result, request); });
}

sparcl_status_t sparcl_allreduce_sparse(const sparcl_sparse_t* send, void* dense_recv, sparcl_result_t* result,
                                        sparcl_comm_t comm) {
  if (!comm) return null_comm();
  auto lock = comm->lock();
  return guarded(comm, [&] { run_to_end(start_allreduce_sparse(comm, send, dense_recv, result, &dense_recv), lock); });
}

sparcl_status_t sparcl_iallgather_sparse(const sparcl_sparse_t* send, sparcl_result_t* results,
                                         sparcl_result_t* merged, sparcl_comm_t comm, sparcl_request_t* request) {
  if (!comm) return null_comm();
  auto lock = comm->lock();
  return guarded(comm, [&] { *request = start_allgather_sparse(comm, send, results, merged, request); });
}

sparcl_status_t sparcl_allgather_sparse(const sparcl_sparse_t* send, sparcl_result_t* results,
                                        sparcl_result_t* merged, sparcl_comm_t comm) {
  if (!comm) return null_comm();
  auto lock = comm->lock();
  return guarded(comm, [&] { run_to_end(start_allgather_sparse(comm, send, results, merged, &results), lock); });
}

sparcl_status_t sparcl_iallreduce(const void* sendbuf, void* recvbuf, size_t count, sparcl_datatype_t datatype,
                                  sparcl_op_t op, sparcl_comm_t comm, sparcl_request_t* request) {
  if (!comm) return null_comm();
  auto lock = comm->lock();
  return guarded(comm, [&] { *request = start_allreduce(comm, sendbuf, recvbuf, count, datatype, op, request); });
}

sparcl_status_t sparcl_allreduce(const void* sendbuf, void* recvbuf, size_t count, sparcl_datatype_t datatype,
                                 sparcl_op_t op, sparcl_comm_t comm) {
  if (!comm) return null_comm();
  auto lock = comm->lock();
  return guarded(comm, [&] { run_to_end(start_allreduce(comm, sendbuf, recvbuf, count, datatype, op, &recvbuf), lock); });
}

// --- completion ---

sparcl_status_t sparcl_test(sparcl_request_t* request, int* completed) {
  if (!request || !completed) return record(nullptr, SPARCL_ERR_INVALID_ARG, "request or completed is NULL");
  *completed = 0;
  if (!*request) {
    *completed = 1;
    return SPARCL_SUCCESS;
  }
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
  if (!comm) return release(request);  // its communicator is gone; it ended then
  auto lock = comm->lock();
  comm->wait_for(*request, lock);
  return release(request);
}

sparcl_status_t sparcl_waitall(size_t count, sparcl_request_t* requests, sparcl_status_t* statuses) {
  if (count && !requests) return record(nullptr, SPARCL_ERR_INVALID_ARG, "requests is NULL");
  sparcl_status_t first = SPARCL_SUCCESS;
  for (size_t k = 0; k < count; ++k) {
    const sparcl_status_t st = sparcl_wait(&requests[k]);
    if (statuses) statuses[k] = st;
    if (first == SPARCL_SUCCESS) first = st;
  }
  return first;
}

sparcl_status_t sparcl_waitany(size_t count, sparcl_request_t* requests, size_t* index) {
  if (!index || (count && !requests)) return record(nullptr, SPARCL_ERR_INVALID_ARG, "requests or index is NULL");
  *index = count;
  for (;;) {
    bool any = false;
    for (size_t k = 0; k < count; ++k) {
      if (!requests[k]) continue;
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
int sparcl_result_is_dense(sparcl_result_t r) { return r && r->dense ? 1 : 0; }
size_t sparcl_result_nnz(sparcl_result_t r) { return r ? r->nnz : 0; }
sparcl_datatype_t sparcl_result_value_type(sparcl_result_t r) { return r ? r->value_type : SPARCL_FLOAT32; }
sparcl_index_type_t sparcl_result_index_type(sparcl_result_t r) { return r ? r->index_type : SPARCL_INDEX_U32; }
const void* sparcl_result_indices(sparcl_result_t r) { return r ? r->indices : nullptr; }
const void* sparcl_result_values(sparcl_result_t r) { return r ? r->values : nullptr; }

sparcl_status_t sparcl_result_to_dense(sparcl_result_t r, void* dense) {
  if (!r || !dense) return record(nullptr, SPARCL_ERR_INVALID_ARG, "result or dense is NULL");
  return guarded(nullptr, [&] {
    dispatch(uint8_t(r->value_type), r->dim, [&](auto v, auto i) {
      using V = typename decltype(v)::type;
      using I = typename decltype(i)::type;
      View<V, I> view{Range{0, r->dim}, r->dense, r->nnz, static_cast<const I*>(r->indices),
                      static_cast<const V*>(r->values)};
      write_dense(view, static_cast<V*>(dense));
    });
  });
}

}  // extern "C"
