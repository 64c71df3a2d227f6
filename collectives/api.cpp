// SPDX-License-Identifier: BSD-3-Clause
// The collectives' C API: the allreduce, reduce-scatter and allgather calls (each started
// as a request through start.hpp; a blocking call waits for its own), and
// what the algorithm table and auto tell. Every entry point catches
// everything: no exception crosses it.
#include <string>

#include "algorithms.hpp"
#include "src/codec/codec.hpp"
#include "src/guard.hpp"
#include "start.hpp"

using namespace sparcl;

namespace {

// sparcl_allreduce_sparse() on host or GPU buffers.
sparcl_request* start_sparse_call(sparcl_comm* comm, const sparcl_sparse_t* send, void* dense_recv,
                                  sparcl_result_t* result, const void* request_slot) {
  const uint64_t dim = send ? send->dim : 0;
  const uint8_t vt = send ? uint8_t(raw(send->value_type)) : 0;
  return start_allreduce_sparse(CallStart::allreduce(comm, dim, vt), send, dense_recv, result, request_slot);
}

}  // namespace

extern "C" {

// --- collectives ---

sparcl_status_t sparcl_iallreduce_sparse(const sparcl_sparse_t* send, void* dense_recv, sparcl_result_t* result,
                                         sparcl_comm_t comm, sparcl_request_t* request) {
  return on_comm(comm, [&](auto&) { *request = start_sparse_call(comm, send, dense_recv, result, request); });
}

sparcl_status_t sparcl_allreduce_sparse(const sparcl_sparse_t* send, void* dense_recv, sparcl_result_t* result,
                                        sparcl_comm_t comm) {
  return on_comm(comm,
                 [&](auto& lock) { run_to_end(start_sparse_call(comm, send, dense_recv, result, &dense_recv), lock); });
}

sparcl_status_t sparcl_ireduce_scatter_sparse(const sparcl_sparse_t* send, void* dense_recv, sparcl_result_t* result,
                                              sparcl_comm_t comm, sparcl_request_t* request) {
  return on_comm(comm,
                 [&](auto&) { *request = start_reduce_scatter_sparse(comm, send, dense_recv, result, request); });
}

sparcl_status_t sparcl_reduce_scatter_sparse(const sparcl_sparse_t* send, void* dense_recv, sparcl_result_t* result,
                                             sparcl_comm_t comm) {
  return on_comm(comm, [&](auto& lock) {
    run_to_end(start_reduce_scatter_sparse(comm, send, dense_recv, result, &dense_recv), lock);
  });
}

sparcl_status_t sparcl_iallgather_sparse(const sparcl_sparse_t* send, sparcl_result_t* results,
                                         sparcl_result_t* merged, sparcl_comm_t comm, sparcl_request_t* request) {
  return on_comm(comm, [&](auto&) { *request = start_allgather_sparse(comm, send, results, merged, request); });
}

sparcl_status_t sparcl_allgather_sparse(const sparcl_sparse_t* send, sparcl_result_t* results,
                                        sparcl_result_t* merged, sparcl_comm_t comm) {
  return on_comm(comm,
                 [&](auto& lock) { run_to_end(start_allgather_sparse(comm, send, results, merged, &results), lock); });
}

sparcl_status_t sparcl_iallreduce(const void* sendbuf, void* recvbuf, size_t count, sparcl_datatype_t datatype,
                                  sparcl_op_t op, sparcl_comm_t comm, sparcl_request_t* request) {
  return on_comm(comm,
                 [&](auto&) { *request = start_allreduce(comm, sendbuf, recvbuf, count, datatype, op, request); });
}

sparcl_status_t sparcl_allreduce(const void* sendbuf, void* recvbuf, size_t count, sparcl_datatype_t datatype,
                                 sparcl_op_t op, sparcl_comm_t comm) {
  return on_comm(comm, [&](auto& lock) {
    run_to_end(start_allreduce(comm, sendbuf, recvbuf, count, datatype, op, &recvbuf), lock);
  });
}

// --- the algorithms and auto's choices ---

int sparcl_algorithm_count(void) {
  size_t n = 0;
  algorithm_table(n);
  return int(n);
}

const char* sparcl_algorithm_name(sparcl_algorithm_t algorithm) {
  const AlgorithmEntry* a = find_algorithm(raw(algorithm));
  return a ? a->name : nullptr;
}

const char* sparcl_algorithm_summary(sparcl_algorithm_t algorithm) {
  const AlgorithmEntry* a = find_algorithm(raw(algorithm));
  return a ? a->summary : nullptr;
}

sparcl_status_t sparcl_algorithm_parse(const char* name, sparcl_algorithm_t* algorithm) {
  if (!name || !algorithm) return record(nullptr, SPARCL_ERR_INVALID_ARG, "name or algorithm is NULL");
  return guarded(nullptr, [&] { *algorithm = parse_algorithm(name); });
}

sparcl_status_t sparcl_comm_last_algorithm(sparcl_comm_t comm, sparcl_algorithm_t* algorithm) {
  return on_comm(comm, [&](auto&) {
    require(algorithm != nullptr, SPARCL_ERR_INVALID_ARG, "algorithm is NULL");
    *algorithm = collectives_of(comm).last_algorithm;
  });
}

sparcl_status_t sparcl_comm_last_choice(sparcl_comm_t comm, sparcl_choice_t* choice) {
  return on_comm(comm, [&](auto&) {
    require(choice != nullptr, SPARCL_ERR_INVALID_ARG, "choice is NULL");
    *choice = collectives_of(comm).last_choice;
  });
}

const char* sparcl_comm_auto_model(sparcl_comm_t comm) {
  if (!comm) return "";
  auto lock = comm->lock();
  std::string* text = nullptr;
  try {
    CommCollectives& c = collectives_of(comm);
    text = &c.auto_model_text;
    c.auto_model_text = auto_state_of(comm)->describe();
  } catch (...) {
    if (!text) return "(out of memory)";
    *text = "(out of memory)";
  }
  return text->c_str();
}

}  // extern "C"
