// SPDX-License-Identifier: BSD-3-Clause
// Sparse allgather on a ring: in step s rank r passes on the vector of rank
// r-s (its own at s = 0) and receives that of rank r-s-1. Received vectors
// are forwarded as they arrived, without re-encoding.
#include "collective.hpp"

namespace sparcl {

template <class V, class I>
AllgatherOp<V, I>::AllgatherOp(Transport& t, const Identity& id, const View<V, I>& input)
    : Operation(t, id), vectors_(size_t(t.size())) {
  vectors_[size_t(t.rank())] = Held<V, I>::of_input(input);
}

template <class V, class I>
void AllgatherOp<V, I>::post(int round, RoundIO& io) {
  const int p = size(), r = rank();
  const Held<V, I>& out = vectors_[size_t((r - round + p) % p)];
  const uint16_t step = uint16_t(round);
  SharedBuffer msg;
  if (out.message) {
    msg = out.message;
    std::memcpy(msg->data() + offsetof(WireHeader, step), &step, sizeof step);
  } else {
    msg = encode(id_, step, out.view);
  }
  io.send((r + 1) % p, std::move(msg));
  io.recv((r + p - 1) % p);
}

template <class V, class I>
void AllgatherOp<V, I>::consume(int round, std::vector<Received>& messages) {
  const int p = size();
  const int origin = (rank() - round - 1 + 2 * p) % p;
  vectors_[size_t(origin)] = Held<V, I>::of_message(messages[0], Range{0, id_.dim});
}

#define SPARCL_INSTANTIATE(V, I) template class AllgatherOp<V, I>;
SPARCL_FOR_EACH_TYPE(SPARCL_INSTANTIATE)

}  // namespace sparcl
