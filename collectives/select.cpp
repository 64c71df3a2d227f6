// SPDX-License-Identifier: BSD-3-Clause
// Choosing an allreduce algorithm.
//
// SPARCL_ALGO_AUTO looks only at what every rank shares (dim, value size, P),
// never at this rank's nonzeros, so that all ranks make the same choice:
//   - dense size <= 256 KiB: recursive doubling (log2 P rounds; latency-bound);
//   - otherwise, P <= 16: split-allgather (two rounds; the fastest of sparcl's
//     algorithms at 0.1-10% density on P = 4 in bench/results/shm-p4.txt);
//   - otherwise: sparse ring (bandwidth-optimal, one peer per step instead of
//     P - 1 at once).
// A cost model that also weighs the density (which needs the ranks to agree
// on it first) is future work.
#include "collective.hpp"

namespace sparcl {

constexpr uint64_t kSmallVectorBytes = 256 * 1024;
constexpr int kMaxSplitRanks = 16;

sparcl_algorithm_t resolve_algorithm(sparcl_algorithm_t requested, uint64_t dim, size_t value_size,
                                     int ranks) {
  if (requested != SPARCL_ALGO_AUTO) return requested;
  if (dim * value_size <= kSmallVectorBytes) return SPARCL_ALGO_RECURSIVE_DOUBLING;
  return ranks <= kMaxSplitRanks ? SPARCL_ALGO_SPLIT_ALLGATHER : SPARCL_ALGO_RING;
}

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_allreduce(sparcl_algorithm_t algorithm, Transport& t,
                                                  const Identity& id, const View<V, I>& input) {
  switch (resolve_algorithm(algorithm, id.dim, sizeof(V), t.size())) {
    case SPARCL_ALGO_RECURSIVE_DOUBLING: return make_recursive_doubling(t, id, input);
    case SPARCL_ALGO_SPLIT_ALLGATHER: return make_split_allgather(t, id, input, false);
    case SPARCL_ALGO_SPLIT_DENSE: return make_split_allgather(t, id, input, true);
    case SPARCL_ALGO_RING: return make_ring(t, id, input);
    case SPARCL_ALGO_HALVING_DOUBLING: return make_halving_doubling(t, id, input);
    default: fail(SPARCL_ERR_INVALID_ARG, "unknown allreduce algorithm");
  }
}

#define SPARCL_INSTANTIATE(V, I)                                                                  \
  template std::unique_ptr<AllreduceOp<V, I>> make_allreduce(sparcl_algorithm_t, Transport&, \
                                                             const Identity&, const View<V, I>&);
SPARCL_FOR_EACH_TYPE(SPARCL_INSTANTIATE)

}  // namespace sparcl
