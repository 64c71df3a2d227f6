// SPDX-License-Identifier: BSD-3-Clause
// Sparse allgather on a ring: in step s rank r passes on the vector of rank
// r-s (its own at s = 0) and receives that of rank r-s-1. Received vectors
// are forwarded as they arrived, without re-encoding; a rank's own vector is
// held as the others decode it.
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
  // Its own vector goes out once, encoded (and kept as its receivers will
  // decode it); received ones are forwarded as they came.
  Held<V, I>& out = vectors_[size_t((r - round + p) % p)];
  SharedBuffer msg = send_and_keep(id_, uint16_t(round), out, r, [&](const View<V, I>& v) {
    return encode(id_, uint16_t(round), v, own_stream(r));
  });
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
