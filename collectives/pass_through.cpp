// SPDX-License-Identifier: BSD-3-Clause
// The allreduce of ops other than SPARCL_SUM and of integer values: the
// transport's own (MPI_Iallreduce with the op), after a NativeBarrier that
// checks the call on every rank (collective.hpp). Once native is retired on
// the communicator: every rank's vector to every other, reduced in rank
// order on each (P - 1 messages of the whole vector per rank: the price of
// exact results after a failure, paid by ops that sparcl does not reduce
// sparsely).
#include <cstring>

#include "../src/input.hpp"
#include "collective.hpp"

namespace sparcl {

namespace {

template <class T>
void combine_typed(T* acc, const T* in, size_t n, int op) {
  switch (op) {
    case SPARCL_SUM:
      for (size_t i = 0; i < n; ++i) acc[i] = T(acc[i] + in[i]);
      break;
    case SPARCL_PROD:
      for (size_t i = 0; i < n; ++i) acc[i] = T(acc[i] * in[i]);
      break;
    case SPARCL_MAX:
      for (size_t i = 0; i < n; ++i) acc[i] = in[i] > acc[i] ? in[i] : acc[i];
      break;
    case SPARCL_MIN:
      for (size_t i = 0; i < n; ++i) acc[i] = in[i] < acc[i] ? in[i] : acc[i];
      break;
    default: fail(SPARCL_ERR_INTERNAL, "unknown reduction op");
  }
}

// acc = acc (op) in, elementwise, for `n` values of `type`.
void combine(void* acc, const void* in, size_t n, int type, int op) {
  switch (type) {
    case SPARCL_FLOAT32: return combine_typed(static_cast<float*>(acc), static_cast<const float*>(in), n, op);
    case SPARCL_FLOAT64: return combine_typed(static_cast<double*>(acc), static_cast<const double*>(in), n, op);
    case SPARCL_INT32: return combine_typed(static_cast<int32_t*>(acc), static_cast<const int32_t*>(in), n, op);
    case SPARCL_INT64: return combine_typed(static_cast<int64_t*>(acc), static_cast<const int64_t*>(in), n, op);
    default: fail(SPARCL_ERR_INTERNAL, "unknown datatype");
  }
}

}  // namespace

PassThroughAllreduce::PassThroughAllreduce(Transport& t, const Identity& id, const void* send, size_t count,
                                           int type, int op, NativeSlot native)
    : Operation(t, id), buffers_(std::make_shared<Buffers>()), count_(count), type_(type), op_(op),
      native_(std::move(native)), order_(native_.order()), barrier_(t.size()) {
  const size_t bytes = count * value_size(type);
  buffers_->send = Buffer(bytes);
  buffers_->recv = Buffer(bytes);
  if (bytes) std::memcpy(buffers_->send.data(), send, bytes);
}

const void* PassThroughAllreduce::result() const {
  return size() == 1 ? buffers_->send.data() : buffers_->recv.data();
}

bool PassThroughAllreduce::ready() {
  if (size() == 1) native_.release();
  return native_.first();
}

int PassThroughAllreduce::rounds() const { return size() == 1 ? 0 : barrier_.rounds() + 1; }

void PassThroughAllreduce::post(int round, RoundIO& io) {
  const int p = size(), r = rank();
  if (round < barrier_.rounds()) {
    barrier_.post(id_, round, r, p, order_.get(), io);
    return;
  }
  if (!gather_) {
    const uint64_t bytes = 2 * uint64_t(p - 1) * (count_ / uint64_t(p)) * value_size(type_);
    io.await(transport_.native_iallreduce(buffers_->send.data(), buffers_->recv.data(), count_,
                                          sparcl_datatype_t(type_), sparcl_op_t(op_), buffers_),
             2 * uint64_t(p - 1), bytes);
    started_native_ = true;
    if (order_) ++order_->started;
    native_.release();
    return;
  }
  // The whole vector, raw, as one dense message over [0, count).
  WireHeader h = make_header(id_, uint16_t(round));
  h.flags = uint8_t(h.flags | kFlagDense);
  h.begin = 0;
  h.end = h.nnz = count_;
  const size_t bytes = buffers_->send.size();
  auto msg = std::make_shared<Buffer>(sizeof h + bytes + (id_.checksum ? kChecksumBytes : 0));
  std::memcpy(msg->data(), &h, sizeof h);
  if (bytes) std::memcpy(msg->data() + sizeof h, buffers_->send.data(), bytes);
  if (id_.checksum) seal(*msg);
  for (int j = 1; j < p; ++j) {
    io.send((r + j) % p, msg);
    io.recv((r + p - j) % p);
  }
}

void PassThroughAllreduce::consume(int round, std::vector<Received>& messages) {
  if (round < barrier_.rounds()) {
    barrier_.consume(messages);
    if (round + 1 == barrier_.rounds() && !barrier_.native_ok()) {
      if (order_) order_->retired = true;
      native_.release();
      gather_ = true;
      gathered_.assign(size_t(size()), nullptr);
    }
    return;
  }
  if (!gather_) return;
  const size_t trailer = id_.checksum ? kChecksumBytes : 0;
  for (auto& m : messages) {
    const WireHeader& h = m.header;
    if (!(h.flags & kFlagDense) || h.begin != 0 || h.end != count_ || h.nnz != count_ ||
        m.buffer->size() != sizeof(WireHeader) + buffers_->send.size() + trailer)
      fail(SPARCL_ERR_CORRUPT, "malformed vector in a message from rank " + std::to_string(m.peer));
    gathered_[size_t(m.peer)] = m.buffer;
  }
}

void PassThroughAllreduce::finish() {
  if (!gather_) return;
  // In rank order on every rank, so that all get the same bits.
  auto values_of = [&](int k) -> const uint8_t* {
    return k == rank() ? buffers_->send.data() : gathered_[size_t(k)]->data() + sizeof(WireHeader);
  };
  if (buffers_->recv.size()) std::memcpy(buffers_->recv.data(), values_of(0), buffers_->recv.size());
  for (int k = 1; k < size(); ++k) combine(buffers_->recv.data(), values_of(k), count_, type_, op_);
  gathered_.clear();
}

void PassThroughAllreduce::failed() noexcept {
  if (started_native_ && order_) order_->retired = true;
  native_.release();
}

}  // namespace sparcl
