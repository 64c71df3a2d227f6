// SPDX-License-Identifier: BSD-3-Clause
// The allreduce algorithm of a name. SPARCL_ALGO_AUTO is not one: it is an
// operation that chooses among these (auto.cpp, cost_model.cpp).
#include "collective.hpp"

namespace sparcl {

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_allreduce(sparcl_algorithm_t algorithm, Transport& t,
                                                  const Identity& id, const View<V, I>& input,
                                                  NativeSlot native) {
  switch (algorithm) {
    case SPARCL_ALGO_RECURSIVE_DOUBLING: return make_recursive_doubling(t, id, input);
    case SPARCL_ALGO_SPLIT_ALLGATHER: return make_split_allgather(t, id, input, false);
    case SPARCL_ALGO_SPLIT_DENSE: return make_split_allgather(t, id, input, true);
    case SPARCL_ALGO_RING: return make_ring(t, id, input);
    case SPARCL_ALGO_HALVING_DOUBLING: return make_halving_doubling(t, id, input);
    case SPARCL_ALGO_ALLGATHER: return make_allgather_allreduce(t, id, input);
    case SPARCL_ALGO_DENSE: return make_dense(t, id, input, std::move(native));
    default: fail(SPARCL_ERR_INTERNAL, "no allreduce algorithm of this name");
  }
}

#define SPARCL_INSTANTIATE(V, I)                                                                  \
  template std::unique_ptr<AllreduceOp<V, I>> make_allreduce(sparcl_algorithm_t, Transport&, \
                                                             const Identity&, const View<V, I>&, NativeSlot);
SPARCL_FOR_EACH_TYPE(SPARCL_INSTANTIATE)

}  // namespace sparcl
