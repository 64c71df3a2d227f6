// SPDX-License-Identifier: BSD-3-Clause
#include "algorithms.hpp"

#include <type_traits>

#include "src/algorithm_catalog.hpp"

namespace sparcl {

namespace {

// clang-format off
constexpr AlgorithmEntry kAlgorithms[] = {
  {SPARCL_ALGO_AUTO, "auto",
   "chooses per call from the cost model and measurements", {}, nullptr, false},
  {SPARCL_ALGO_RECURSIVE_DOUBLING, "recursive_doubling",
   "log2(P) rounds exchanging whole sparse vectors (latency-bound sizes)",
   SPARCL_FACTORIES(make_recursive_doubling), cost_recursive_doubling, true},
  {SPARCL_ALGO_SPLIT_ALLGATHER, "split_allgather",
   "sparse reduce-scatter over P ranges, then a sparse allgather",
   SPARCL_FACTORIES(make_split_allgather), cost_split_allgather, true},
  {SPARCL_ALGO_SPLIT_DENSE, "split_dense",
   "sparse reduce-scatter, then a dense allgather (dense sums)",
   SPARCL_FACTORIES(make_split_dense), cost_split_dense, true},
  {SPARCL_ALGO_RING, "ring",
   "sparse ring reduce-scatter and allgather, 2(P-1) steps",
   SPARCL_FACTORIES(make_ring), cost_ring, true},
  {SPARCL_ALGO_HALVING_DOUBLING, "halving_doubling",
   "recursive halving reduce-scatter, recursive doubling allgather",
   SPARCL_FACTORIES(make_halving_doubling), cost_halving_doubling, true},
  {SPARCL_ALGO_ALLGATHER, "allgather",
   "every rank gathers every input and sums them",
   SPARCL_FACTORIES(make_allgather_allreduce), cost_allgather, true},
  {SPARCL_ALGO_DENSE, "dense",
   "densify, then the transport's own allreduce (MPI) or a dense ring",
   SPARCL_FACTORIES(make_dense), cost_dense, true},
  {SPARCL_ALGO_HIERARCHICAL, "hierarchical",
   "node-aware: sparse reduce-scatter within each host, slices summed across hosts, allgather within the host",
   SPARCL_FACTORIES(make_hierarchical), cost_hierarchical, true},
  // The model sees uniform indices, where the hashed rows only add sorts:
  // auto picks them by measurement, where skewed indices overload owners.
  {SPARCL_ALGO_SPLIT_ALLGATHER_HASHED, "split_allgather_hashed",
   "split_allgather over equal ranges of permuted indices (skewed indices spread over all owners)",
   SPARCL_FACTORIES(make_split_allgather_hashed), cost_split_allgather_hashed, true},
  // The same for halving_doubling, whose equal halves put skewed indices in
  // one half: its hot half's owners fill their messages densely.
  {SPARCL_ALGO_HALVING_DOUBLING_HASHED, "halving_doubling_hashed",
   "halving_doubling over equal halves of permuted indices (skewed indices spread over both halves)",
   SPARCL_FACTORIES(make_halving_doubling_hashed), cost_halving_doubling_hashed, true},
};
// clang-format on

constexpr bool ids_are_positions() {
  for (size_t i = 0; i < sizeof kAlgorithms / sizeof kAlgorithms[0]; ++i)
    if (int(kAlgorithms[i].id) != int(i)) return false;
  return true;
}
static_assert(ids_are_positions(), "kAlgorithms lists sparcl_algorithm_t in order, without gaps");

}  // namespace

template <class V, class I>
AllreduceFactory<V, I> AllreduceFactories::get() const {
  constexpr bool f32 = std::is_same<V, float>::value, i32 = std::is_same<I, uint32_t>::value;
  if constexpr (f32 && i32)
    return f32_i32;
  else if constexpr (f32)
    return f32_i64;
  else if constexpr (i32)
    return f64_i32;
  else
    return f64_i64;
}

const AlgorithmEntry* algorithm_table(size_t& count) {
  count = sizeof kAlgorithms / sizeof kAlgorithms[0];
  return kAlgorithms;
}

const AlgorithmEntry* find_algorithm(int algorithm) {
  size_t n = 0;
  const AlgorithmEntry* table = algorithm_table(n);
  return algorithm >= 0 && size_t(algorithm) < n ? &table[algorithm] : nullptr;
}

sparcl_algorithm_t parse_algorithm(const std::string& text) {
  std::string names;
  for (const AlgorithmEntry& a : kAlgorithms) {
    if (text == a.name) return a.id;
    names += names.empty() ? "" : ", ";
    names += a.name;
  }
  fail(SPARCL_ERR_INVALID_ARG, "unknown algorithm '" + text + "' (expected one of " + names + ")");
}

const char* algorithm_name(sparcl_algorithm_t algorithm) {
  const AlgorithmEntry* a = find_algorithm(int(algorithm));
  return a ? a->name : "unknown";
}

template <class V, class I>
std::unique_ptr<AllreduceOp<V, I>> make_allreduce(sparcl_algorithm_t algorithm, Transport& t,
                                                  const Identity& id, const View<V, I>& input,
                                                  NativeSlot native) {
  const AlgorithmEntry* a = find_algorithm(int(algorithm));
  if (!a || !a->concrete()) fail(SPARCL_ERR_INTERNAL, "no allreduce algorithm of this name");
  return a->make.get<V, I>()(t, id, input, std::move(native));
}

namespace {
bool valid_algorithm(int value) { return find_algorithm(value) != nullptr; }
void check_auto_params(const std::string& text) { parse_machine_params(text); }

const AlgorithmCatalog kCatalog{parse_algorithm, algorithm_name, valid_algorithm, check_auto_params};
// The core learns the algorithms when the library loads (src/algorithm_catalog.hpp).
[[maybe_unused]] const bool kCatalogRegistered = register_algorithm_catalog(&kCatalog);
}  // namespace

#define SPARCL_INSTANTIATE(V, I)                                                                            \
  template AllreduceFactory<V, I> AllreduceFactories::get<V, I>() const;                                   \
  template std::unique_ptr<AllreduceOp<V, I>> make_allreduce(sparcl_algorithm_t, Transport&, const Identity&, \
                                                             const View<V, I>&, NativeSlot);
SPARCL_FOR_EACH_TYPE(SPARCL_INSTANTIATE)

}  // namespace sparcl
