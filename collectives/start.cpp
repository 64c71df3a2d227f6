// SPDX-License-Identifier: BSD-3-Clause
// The one start-and-fail path of collectives (start.hpp), and the starts of
// the allreduce and allgather calls.
#include "start.hpp"

#include <cstring>
#include <type_traits>

#include "algorithms.hpp"
#include "src/input.hpp"

namespace sparcl {

namespace {

const DeviceStaging* registered_staging = nullptr;

// The place of an allreduce of `dim` values of `value_type` running
// `algorithm` in auto's records (empty unless it is auto), or, for the dense
// algorithm, in the order of native collectives.
AutoTicket auto_ticket(sparcl_comm* comm, sparcl_algorithm_t algorithm, uint64_t dim, uint8_t value_type) {
  if (algorithm == SPARCL_ALGO_DENSE) {
    AutoTicket t;
    t.native = auto_state_of(comm)->native_slot();
    return t;
  }
  if (algorithm != SPARCL_ALGO_AUTO) return AutoTicket{};
  return auto_state_of(comm)->start(dim, value_type, value_size(value_type), comm->transport().size());
}

// A result object that holds `h` as it is.
template <class V, class I>
sparcl_result* wrap_result(const Held<V, I>& h) {
  auto r = std::make_unique<sparcl_result>();
  r->dim = h.view.range.size();
  r->begin = h.view.range.begin;
  r->end = h.view.range.end;
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

// The result of disjoint pieces, sorted by range, that tile `whole`, in the
// form SparCML's rule gives its entries: a sparse piece's entries (explicit
// zeros included) and a dense piece's entries with a bit set (-0.0 kept).
// A dense sum with few entries set (split_dense, dense, or an empty one) is
// returned sparse, and sparse pieces that together reach the switch (or an
// input passed through at P = 1) dense. Dense pieces are counted once (or
// not at all where the algorithm counted them) and written once.
template <class V, class I>
sparcl_result* new_result(const std::vector<Held<V, I>>& pieces, Range whole) {
  std::vector<uint64_t> counts(pieces.size());
  uint64_t entries = 0;
  for (size_t k = 0; k < pieces.size(); ++k) {
    const View<V, I>& v = pieces[k].view;
    counts[k] = v.dense ? set_entries(pieces[k]) : v.nnz;
    entries += counts[k];
  }
  const bool dense = prefer_dense<V, I>(entries, whole.size());
  if (pieces.size() == 1 && pieces[0].view.dense == dense) return wrap_result(pieces[0]);
  Stream<V, I> s;
  s.range = whole;
  s.dense = dense;
  if (dense) {
    s.val.resize(whole.size());
    for (const auto& p : pieces) write_dense(p.view, s.val.data() + (p.view.range.begin - whole.begin));
    return wrap_result(Held<V, I>::of_stream(std::move(s)));
  }
  s.idx.resize(entries + 1);  // one slot spare for the branchless copy below
  s.val.resize(entries + 1);
  I* idx = s.idx.data();
  V* val = s.val.data();
  size_t n = 0;
  for (size_t k = 0; k < pieces.size(); ++k) {
    const View<V, I>& v = pieces[k].view;
    if (!v.dense) {
      std::copy(v.idx, v.idx + v.nnz, idx + n);
      std::copy(v.val, v.val + v.nnz, val + n);
      n += v.nnz;
      continue;
    }
    // Every entry is written at the next slot, which advances only for
    // entries with a bit set.
    const size_t last = n + counts[k];
    for (size_t i = 0; i < v.nnz && n < last; ++i) {
      idx[n] = I(v.range.begin + i);
      val[n] = v.val[i];
      n += has_bits(v.val[i]);
    }
  }
  s.idx.resize(n);
  s.val.resize(n);
  return wrap_result(Held<V, I>::of_stream(std::move(s)));
}

template <class V, class I>
sparcl_result* new_result(const Held<V, I>& h) {
  return new_result(std::vector<Held<V, I>>{h}, h.view.range);
}

// Writes the pieces into the dense output, whose first `zeroed` values are
// zero already (AllreduceOp::prepare_dense_output): a sparse piece there
// only scatters its entries, one beyond zeroes the rest of its range first.
template <class V, class I>
void write_pieces(const std::vector<Held<V, I>>& pieces, void* dense, uint64_t zeroed) {
  V* out = static_cast<V*>(dense);
  for (const auto& p : pieces) {
    const View<V, I>& v = p.view;
    if (v.dense) {
      write_dense(v, out + v.range.begin);
      continue;
    }
    if (v.range.end > zeroed) std::fill(out + std::max(v.range.begin, zeroed), out + v.range.end, V(0));
    for (size_t k = 0; k < v.nnz; ++k) out[uint64_t(v.idx[k])] = v.val[k];
  }
}

// Whether [a, a + a_bytes) and [b, b + b_bytes) share a byte.
bool overlap(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return a_bytes && b_bytes && x < y + b_bytes && y < x + a_bytes;
}

// What every allreduce delivers besides its sum: which algorithm ran.
template <class V, class I>
void record_algorithm(sparcl_comm* comm, const AllreduceOp<V, I>& reduce) {
  CommCollectives& c = collectives_of(comm);
  c.last_algorithm = sparcl_algorithm_t(reduce.identity().algorithm);
  c.last_choice = reduce.choice();
}

}  // namespace

CommCollectives& collectives_of(sparcl_comm* comm) {
  if (!comm->collectives()) comm->collectives() = std::make_shared<CommCollectives>();
  return *std::static_pointer_cast<CommCollectives>(comm->collectives());
}

std::shared_ptr<AutoState> auto_state_of(sparcl_comm* comm) {
  CommCollectives& c = collectives_of(comm);
  if (!c.auto_state) {
    const Placement& where = comm->placement();
    const TuneContext context{where.first_host, transport_name(comm->config().transport), comm->transport().size(),
                              where.ranks_per_host};
    c.auto_state = std::make_shared<AutoState>(
        comm->config().auto_params, comm->config().auto_tune,
        TuneFile(comm->config().tune_file, where.tune_text, context, where.tune_note), comm->transport().rank() == 0);
  }
  return c.auto_state;
}

bool register_device_staging(const DeviceStaging* staging) {
  registered_staging = staging;
  return true;
}

const DeviceStaging* device_staging() { return registered_staging; }

// ---------------------------------------------------------------- CallStart --

CallStart CallStart::allreduce(sparcl_comm* comm, uint64_t dim, uint8_t value_type,
                               const CompressedCall* compressed) {
  return allreduce_with(comm, comm->config().algorithm, dim, value_type, compressed);
}

CallStart CallStart::allreduce_with(sparcl_comm* comm, sparcl_algorithm_t algorithm, uint64_t dim,
                                    uint8_t value_type, const CompressedCall* compressed) {
  Identity id = comm->next_identity(Kind::Allreduce, uint8_t(algorithm), dim, value_type, index_width_for(dim));
  if (compressed) {
    id.encoding = compressed->encoding;
    id.bucket = compressed->bucket;
  }
  CallStart call(comm, id);
  call.algorithm_ = algorithm;
  // Out of memory for auto's records fails the call on every rank too.
  call.check([&] {
    call.ticket_ = auto_ticket(comm, algorithm, dim, value_type);
    if (comm->config().partition == SPARCL_PARTITION_BALANCED && partitioned_algorithm(algorithm))
      call.partition_ = collectives_of(comm).partitions.take(call.id_);
  });
  return call;
}

CallStart CallStart::reduce_scatter(sparcl_comm* comm, uint64_t dim, uint8_t value_type) {
  const sparcl_partition_t partition = comm->config().partition;
  CallStart call(comm, comm->next_identity(Kind::ReduceScatter, uint8_t(partition), dim, value_type,
                                           index_width_for(dim)));
  call.check([&] {
    if (partition == SPARCL_PARTITION_BALANCED)
      call.partition_ = collectives_of(comm).partitions.take(call.id_);
  });
  return call;
}

CallStart CallStart::pass_through(sparcl_comm* comm, uint64_t count, uint8_t value_type, int reduction,
                                  bool sparse_op) {
  // The op travels in the algorithm field, so that ranks that called with
  // other arguments all fail instead of pairing later calls.
  Identity id = comm->next_identity(Kind::Allreduce,
                                    sparse_op ? uint8_t(comm->config().algorithm) : pass_through_algorithm(reduction),
                                    count, value_type, index_width_for(count));
  id.encoding = Encoding::Raw;
  id.bucket = 0;
  return CallStart(comm, id);
}

CallStart CallStart::global_select(sparcl_comm* comm, uint64_t dim, const CompressedCall& compressed) {
  Identity id = comm->next_identity(Kind::Allreduce, kGlobalSelectAlgorithm, dim, SPARCL_FLOAT32, index_width_for(dim));
  id.encoding = compressed.encoding;
  id.bucket = compressed.bucket;
  CallStart call(comm, id);
  call.check([&] {
    if (comm->config().partition == SPARCL_PARTITION_BALANCED)
      call.partition_ = collectives_of(comm).partitions.take(call.id_);
  });
  return call;
}

CallStart CallStart::allgather(sparcl_comm* comm, uint64_t dim, uint8_t value_type) {
  return CallStart(comm, comm->next_identity(Kind::Allgather, 0, dim, value_type, index_width_for(dim)));
}

// On an auto communicator, any collective that fails here makes auto forget
// what it learned (auto.hpp, "After a failure"), not only its own allreduces:
// ranks that called different collectives (an op or a count on one rank that
// takes another path) then forget alike.
static void forget_auto_records(sparcl_comm* comm) noexcept {
  if (comm->config().algorithm != SPARCL_ALGO_AUTO) return;
  if (const auto& c = comm->collectives())
    if (const auto& state = std::static_pointer_cast<CommCollectives>(c)->auto_state) state->forget();
}

void CallStart::fail(sparcl_status_t status, const std::string& message) {
  if (failed_) return;
  failed_ = true;
  ticket_.fail();
  partition_.fail();
  forget_auto_records(comm_);
  send_abort_notices(comm_->transport(), id_, status, message);
}

sparcl_request* CallStart::submit(std::unique_ptr<sparcl_request> request) {
  if (comm_->config().algorithm == SPARCL_ALGO_AUTO)
    request->on_failure = [then = std::move(request->on_failure), comm = comm_] {
      if (then) then();
      forget_auto_records(comm);
    };
  sparcl_request* started = nullptr;
  check([&] { started = comm_->submit(std::move(request)); });
  return started;
}

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> CallStart::make_allreduce_op(const View<V, I>& input) {
  if (algorithm_ == SPARCL_ALGO_AUTO)
    return make_auto_allreduce<V, I>(comm_->transport(), id_, input, auto_state_of(comm_), std::move(ticket_));
  const sparcl_partition_t partition = comm_->config().partition;
  if (partition != SPARCL_PARTITION_EQUAL && partitioned_algorithm(algorithm_))
    return make_partitioned<V, I>(algorithm_, comm_->transport(), id_, input, PartitionKind(partition),
                                  std::move(partition_));
  return make_allreduce<V, I>(algorithm_, comm_->transport(), id_, input, std::move(ticket_.native));
}

template <class V, class I>
std::unique_ptr<ReduceScatterOp<V, I>> CallStart::make_reduce_scatter_op(const View<V, I>& input) {
  return std::make_unique<ReduceScatterOp<V, I>>(comm_->transport(), id_, input,
                                                 PartitionKind(comm_->config().partition), std::move(partition_));
}

// ------------------------------------------------------------------ starts --

sparcl_request* start_allreduce_sparse(CallStart call, const sparcl_sparse_t* send, void* dense_recv,
                                       sparcl_result_t* result, const void* request_slot,
                                       const CompressedCall* compressed) {
  const DeviceStaging* staging = device_staging();
  if (staging && staging->any_device_buffer(send, dense_recv))
    return staging->start_allreduce_sparse(std::move(call), send, dense_recv, result, request_slot, compressed);
  return start_allreduce_sparse_on_host(std::move(call), send, dense_recv, result, request_slot, compressed);
}

sparcl_request* start_allreduce_sparse_on_host(CallStart call, const sparcl_sparse_t* send, void* dense_recv,
                                               sparcl_result_t* result, const void* request_slot,
                                               const CompressedCall* compressed) {
  sparcl_comm* comm = call.comm();
  if (result) *result = nullptr;
  const uint64_t dim = call.identity().dim;
  const uint8_t vt = call.identity().value_type;
  call.check([&] {
    require(request_slot != nullptr, SPARCL_ERR_INVALID_ARG, "request is NULL");
    check_sparse_header(send);
    require((dense_recv != nullptr) != (result != nullptr), SPARCL_ERR_INVALID_ARG,
            "pass exactly one of dense_recv and result");
    if (compressed)
      require(vt == SPARCL_FLOAT32 && dim < (uint64_t(1) << 32), SPARCL_ERR_INTERNAL,
              "a compressed allreduce of other than float32 values with 32-bit indices");
  });
  // Everything up to the operation's existence may fail here only (bad
  // input, out of memory): the other ranks are told.
  std::unique_ptr<sparcl_request> request;
  call.check([&] {
    request = std::make_unique<sparcl_request>();
    dispatch_types(vt, dim, [&](auto v, auto i) {
      using V = typename decltype(v)::type;
      using I = typename decltype(i)::type;
      auto in = std::make_shared<Input<V, I>>();
      make_input(*send, *in);
      auto op = call.make_allreduce_op<V, I>(in->view);
      if constexpr (std::is_same<V, float>::value)
        if (compressed) op->report_input_sent(compressed->input_sent);
      // The dense output is zeroed while messages are in flight, unless it
      // shares memory with the input.
      if (dense_recv && !overlap(dense_recv, dim * sizeof(V), send->values, send->nnz * sizeof(V)) &&
          !overlap(dense_recv, dim * sizeof(V), send->indices,
                   send->nnz * (raw(send->index_type) == SPARCL_INDEX_U32 ? 4 : 8)))
        op->prepare_dense_output(static_cast<V*>(dense_recv));
      const AllreduceOp<V, I>* reduce = op.get();
      request->deliver = [comm, reduce, dense_recv, result, dim] {
        if (dense_recv)
          write_pieces(reduce->pieces(), dense_recv, reduce->zeroed_output());
        else
          *result = new_result(reduce->pieces(), Range{0, dim});
        record_algorithm(comm, *reduce);
      };
      request->op = std::move(op);
      request->keep = in;
    });
  });
  return call.submit(std::move(request));
}

sparcl_request* start_reduce_scatter_sparse(sparcl_comm* comm, const sparcl_sparse_t* send, void* dense_recv,
                                            sparcl_result_t* result, const void* request_slot) {
  if (result) *result = nullptr;
  const uint64_t dim = send ? send->dim : 0;
  const uint8_t vt = send ? uint8_t(raw(send->value_type)) : 0;
  CallStart call = CallStart::reduce_scatter(comm, dim, vt);
  call.check([&] {
    require(request_slot != nullptr, SPARCL_ERR_INVALID_ARG, "request is NULL");
    check_sparse_header(send);
    require((dense_recv != nullptr) != (result != nullptr), SPARCL_ERR_INVALID_ARG,
            "pass exactly one of dense_recv and result");
    if (dense_recv && comm->config().partition != SPARCL_PARTITION_EQUAL)
      fail(SPARCL_ERR_UNSUPPORTED, std::string("sparcl_reduce_scatter_sparse with a dense output and the ") +
                                       partition_name(comm->config().partition) +
                                       " partition (a dense output needs equal ranges; pass a result instead)");
    if (const DeviceStaging* staging = device_staging()) {
      staging->require_host_buffers(send->indices, send->values, "sparcl_reduce_scatter_sparse");
      staging->require_host_buffers(dense_recv, nullptr, "sparcl_reduce_scatter_sparse");
    }
  });
  std::unique_ptr<sparcl_request> request;
  call.check([&] {
    request = std::make_unique<sparcl_request>();
    dispatch_types(vt, dim, [&](auto v, auto i) {
      using V = typename decltype(v)::type;
      using I = typename decltype(i)::type;
      auto in = std::make_shared<Input<V, I>>();
      make_input(*send, *in);
      auto op = call.make_reduce_scatter_op<V, I>(in->view);
      const ReduceScatterOp<V, I>* scatter = op.get();
      request->deliver = [scatter, dense_recv, result, dim] {
        const View<V, I>& part = scatter->part().view;
        if (dense_recv) {
          write_dense(part, static_cast<V*>(dense_recv));
          return;
        }
        *result = new_result(scatter->part());
        (*result)->dim = dim;
      };
      request->op = std::move(op);
      request->keep = in;
    });
  });
  return call.submit(std::move(request));
}

sparcl_request* start_allgather_sparse(sparcl_comm* comm, const sparcl_sparse_t* send, sparcl_result_t* results,
                                       sparcl_result_t* merged, const void* request_slot) {
  const int p = comm->transport().size();
  if (results)
    for (int k = 0; k < p; ++k) results[k] = nullptr;
  if (merged) *merged = nullptr;
  const uint64_t dim = send ? send->dim : 0;
  const uint8_t vt = send ? uint8_t(raw(send->value_type)) : 0;
  CallStart call = CallStart::allgather(comm, dim, vt);
  call.check([&] {
    require(request_slot != nullptr, SPARCL_ERR_INVALID_ARG, "request is NULL");
    check_sparse_header(send);
    require(results != nullptr, SPARCL_ERR_INVALID_ARG, "results is NULL");
    if (const DeviceStaging* staging = device_staging())
      staging->require_host_buffers(send->indices, send->values, "sparcl_allgather_sparse");
  });
  std::unique_ptr<sparcl_request> request;
  call.check([&] {
    request = std::make_unique<sparcl_request>();
    dispatch_types(vt, dim, [&](auto v, auto i) {
      using V = typename decltype(v)::type;
      using I = typename decltype(i)::type;
      auto in = std::make_shared<Input<V, I>>();
      make_input(*send, *in);
      auto op = std::make_unique<AllgatherOp<V, I>>(comm->transport(), call.identity(), in->view);
      const AllgatherOp<V, I>* gather = op.get();
      request->deliver = [gather, results, merged, p] {
        // Each result owned at once: a failed allocation in between frees the ones made.
        std::vector<std::unique_ptr<sparcl_result>> out;
        out.reserve(gather->vectors().size());
        for (const auto& h : gather->vectors()) {
          std::unique_ptr<sparcl_result> one(new_result(h));
          out.push_back(std::move(one));
        }
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
  });
  return call.submit(std::move(request));
}

namespace {

// sparcl_allreduce() of count 0, or of an op or type without a sparse path:
// checked across ranks like every collective, then the transport's own
// allreduce (or nothing, for count 0).
sparcl_request* start_pass_through(CallStart call, int type, int reduction, const void* src, void* recvbuf,
                                   const void* request_slot) {
  sparcl_comm* comm = call.comm();
  const Identity& id = call.identity();
  const uint64_t count = id.dim;
  call.check([&] {
    require(request_slot != nullptr, SPARCL_ERR_INVALID_ARG, "request is NULL");
    require(value_size(type) != 0, SPARCL_ERR_INVALID_ARG, "unknown datatype");
    require(reduction >= SPARCL_SUM && reduction <= SPARCL_MIN, SPARCL_ERR_INVALID_ARG, "unknown reduction op");
    if (count == 0) return;
    require(recvbuf && src, SPARCL_ERR_INVALID_ARG, "sendbuf or recvbuf is NULL");
    if (const DeviceStaging* staging = device_staging())
      staging->require_host_buffers(src, recvbuf, "sparcl_allreduce");
    if (!comm->transport().has_native_iallreduce(count))
      fail(SPARCL_ERR_UNSUPPORTED,
           std::strcmp(comm->transport().name(), "mpi") == 0
               ? "count too large for MPI_Iallreduce"
               : std::string("sparcl_allreduce over the ") + comm->transport().name() +
                     " transport supports SPARCL_SUM of float32 and float64; other ops and types need the MPI "
                     "transport (sparcl_comm_create_mpi with SPARCL_TRANSPORT=mpi)");
  });
  std::unique_ptr<sparcl_request> request;
  call.check([&] {
    request = std::make_unique<sparcl_request>();
    if (count == 0) {
      request->op = std::make_unique<EmptyAllreduce>(comm->transport(), id);
      return;
    }
    auto pass = std::make_unique<PassThroughAllreduce>(comm->transport(), id, src, count, type, reduction,
                                                      auto_state_of(comm)->native_slot());
    const PassThroughAllreduce* reduce = pass.get();
    const size_t bytes = count * value_size(type);
    request->deliver = [reduce, recvbuf, bytes] { std::memcpy(recvbuf, reduce->result(), bytes); };
    request->op = std::move(pass);
  });
  return call.submit(std::move(request));
}

}  // namespace

sparcl_request* start_allreduce(sparcl_comm* comm, const void* sendbuf, void* recvbuf, size_t count,
                                sparcl_datatype_t datatype, sparcl_op_t op, const void* request_slot) {
  const int type = raw(datatype), reduction = raw(op);
  const bool sparse_path = reduction == SPARCL_SUM && (type == SPARCL_FLOAT32 || type == SPARCL_FLOAT64);
  const void* src = sendbuf == SPARCL_IN_PLACE ? recvbuf : sendbuf;
  const DeviceStaging* staging = device_staging();
  if (count == 0 || !sparse_path)
    return start_pass_through(CallStart::pass_through(comm, count, uint8_t(type), reduction, sparse_path), type,
                              reduction, src, recvbuf, request_slot);
  CallStart call = CallStart::allreduce(comm, count, uint8_t(type));
  call.check([&] {
    require(request_slot != nullptr, SPARCL_ERR_INVALID_ARG, "request is NULL");
    require(recvbuf && src, SPARCL_ERR_INVALID_ARG, "sendbuf or recvbuf is NULL");
    if (staging) staging->require_host_buffers(src, recvbuf, "sparcl_allreduce");
  });
  std::unique_ptr<sparcl_request> request;
  call.check([&] {
    request = std::make_unique<sparcl_request>();
    dispatch_types(uint8_t(type), count, [&](auto v, auto i) {
      using V = typename decltype(v)::type;
      using I = typename decltype(i)::type;
      auto in = std::make_shared<Input<V, I>>();
      make_dense_input(static_cast<const V*>(src), count, *in);
      auto reduce_op = call.make_allreduce_op<V, I>(in->view);
      // Zeroed while messages are in flight, unless the input is a view of
      // the caller's buffer and that is the output too (in place).
      if (!in->view.dense || !overlap(recvbuf, count * sizeof(V), src, count * sizeof(V)))
        reduce_op->prepare_dense_output(static_cast<V*>(recvbuf));
      const AllreduceOp<V, I>* reduce = reduce_op.get();
      request->deliver = [comm, reduce, recvbuf] {
        write_pieces(reduce->pieces(), recvbuf, reduce->zeroed_output());
        record_algorithm(comm, *reduce);
      };
      request->op = std::move(reduce_op);
      request->keep = in;
    });
  });
  return call.submit(std::move(request));
}

#define SPARCL_INSTANTIATE(V, I)                                                                  \
  template std::unique_ptr<AllreduceOp<V, I>> CallStart::make_allreduce_op<V, I>(const View<V, I>&); \
  template std::unique_ptr<ReduceScatterOp<V, I>> CallStart::make_reduce_scatter_op<V, I>(const View<V, I>&);
SPARCL_FOR_EACH_TYPE(SPARCL_INSTANTIATE)

}  // namespace sparcl
