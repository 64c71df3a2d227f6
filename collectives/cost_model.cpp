// SPDX-License-Identifier: BSD-3-Clause
// Predicted times of the allreduce algorithms (see cost_model.hpp and
// docs/algorithms.md, "The cost model"). Each prediction walks the
// algorithm's rounds: a round costs round_s, message_s per further message,
// and byte_s per byte of the larger of what a rank sends and receives; the
// work between rounds costs merge_s per merged entry or pass_s per element
// of a linear pass. Stream sizes follow the union of independent vectors
// (fill()), capped by the union of the sum.
#include "cost_model.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "../src/error.hpp"
#include "algorithms.hpp"
#include "collective.hpp"

namespace sparcl {

MachineParams default_machine_params() {
  MachineParams p;
  p.round_s = 40e-6;
  p.message_s = 5e-6;
  p.byte_s = 0.4e-9;
  p.merge_s = 5e-9;
  p.pass_s = 1e-9;
  return p;
}

std::string describe(const MachineParams& p) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "round %.2f us, message %.2f us, %.4f ns/B, merge %.3f ns, pass %.3f ns",
                p.round_s * 1e6, p.message_s * 1e6, p.byte_s * 1e9, p.merge_s * 1e9, p.pass_s * 1e9);
  return buf;
}

MachineParams parse_machine_params(const std::string& text) {
  std::vector<double> v;
  const char* s = text.c_str();
  for (;;) {
    errno = 0;
    char* end = nullptr;
    const double x = std::strtod(s, &end);
    if (end == s || errno != 0 || !std::isfinite(x) || !(x > 0)) break;
    v.push_back(x);
    s = end;
    if (*s == ',' && v.size() < 5) {
      ++s;
      continue;
    }
    break;
  }
  if (v.size() != 5 || *s != '\0')
    fail(SPARCL_ERR_INVALID_ARG, "'" + text +
                                     "' is not five positive numbers a,b,c,d,e (round us, message us, ns per byte, "
                                     "merge ns per entry, pass ns per element)");
  MachineParams p;
  p.round_s = v[0] * 1e-6;
  p.message_s = v[1] * 1e-6;
  p.byte_s = v[2] * 1e-9;
  p.merge_s = v[3] * 1e-9;
  p.pass_s = v[4] * 1e-9;
  return p;
}

namespace {

constexpr double kHeaderBytes = 64;

struct Model {
  const MachineParams& m;
  double P, N, w, iw, vb, k, u;

  Model(const MachineParams& params, const Workload& wl)
      : m(params),
        P(double(wl.ranks)),
        N(double(wl.dim)),
        w(wl.value_bytes),
        iw(wl.index_bytes),
        vb(wl.wire_value_bytes),
        k(std::min(wl.rank_nnz, double(wl.dim))),
        u(std::min(std::max(wl.union_nnz, std::min(wl.rank_nnz, double(wl.dim))), double(wl.dim))) {}

  // Entries of the sum of j ranks' vectors: independent positions at the
  // ranks' density, at most the union of all of them.
  double fill(double j) const {
    if (N <= 0 || k <= 0) return 0;
    const double rho = std::min(1.0, k / N);
    return std::min(N * (1 - std::pow(1 - rho, j)), u);
  }
  // A message with `entries` entries of a range of `length`: sparse, or dense
  // when that is not larger (the encoder's rule).
  double message(double entries, double length) const {
    return kHeaderBytes + std::min(entries * (iw + vb), length * vb);
  }
  // Merging streams with `entries` entries in all over a range of `length`
  // in `levels` pairwise levels; dense accumulation past SparCML's switch.
  double merge(double entries, double length, double levels = 1) const {
    if (entries * (iw + w) >= length * w) return (length + entries) * m.pass_s;
    return entries * levels * m.merge_s;
  }
  double round(double messages, double bytes_out, double bytes_in) const {
    return m.round_s + std::max(0.0, messages - 1) * m.message_s + std::max(bytes_out, bytes_in) * m.byte_s;
  }
  double symmetric_round(double messages, double bytes_each) const {
    return round(messages, messages * bytes_each, messages * bytes_each);
  }
  // The result assembled from P disjoint pieces holding u entries in all.
  double assemble() const { return (u * (iw + w) >= N * w ? N : u) * m.pass_s; }

  int levels() const {
    int l = 0;
    while ((2 << l) <= int(P)) ++l;
    return l;
  }

  double recursive_doubling() const {
    const int L = levels();
    const double p2 = double(1 << L), rem = P - p2, g = P / p2;
    double t = 0;
    if (rem > 0) t += symmetric_round(1, message(k, N)) + merge(2 * k, N);
    for (int i = 1; i <= L; ++i) {
      const double e = fill(g * double(1 << (i - 1)));
      t += symmetric_round(1, message(e, N)) + merge(2 * e, N);
    }
    if (rem > 0) t += symmetric_round(1, message(u, N));
    return t;
  }

  double split(bool dense_result) const {
    const double range = N / P;
    double t = symmetric_round(P - 1, message(k / P, range));
    t += merge(k, range, std::ceil(std::log2(P)));
    if (dense_result) {
      t += range * m.pass_s;
      t += symmetric_round(P - 1, message(range, range));
      return t + N * m.pass_s;
    }
    t += symmetric_round(P - 1, message(u / P, range));
    return t + assemble();
  }

  // What the hashed partition adds to an algorithm: its input sorted after
  // the permutation, and the result put back in index order (sorts, counted
  // at a merge step per entry and level). The model's indices are uniform,
  // so the permutation changes nothing else.
  double hashed_sorts() const {
    return (k * std::log2(std::max(k, 2.0)) + u * std::log2(std::max(u, 2.0))) * m.merge_s;
  }

  double ring() const {
    const double range = N / P;
    double t = 0;
    for (int j = 0; j + 1 < int(P); ++j) {
      const double e = fill(j + 1) / P;
      t += symmetric_round(1, message(e, range)) + merge(e + k / P, range);
    }
    t += (P - 1) * symmetric_round(1, message(u / P, range));
    return t + assemble();
  }

  double halving_doubling() const {
    const int L = levels();
    const double p2 = double(1 << L), rem = P - p2, g = P / p2;
    double t = 0;
    if (rem > 0) t += symmetric_round(1, message(k, N)) + merge(2 * k, N);
    double range = N;
    for (int i = 1; i <= L; ++i) {
      range /= 2;
      const double e = fill(g * double(1 << (i - 1))) * range / N;
      t += symmetric_round(1, message(e, range)) + merge(2 * e, range);
    }
    for (int i = 1; i <= L; ++i) {
      const double share = double(1 << (i - 1)) / p2;
      t += symmetric_round(1, message(u * share, N * share)) + 2 * u * share * m.pass_s;
    }
    if (rem > 0) t += symmetric_round(1, message(u, N));
    return t;
  }

  double allgather() const {
    const int ranks = int(P);
    const double msg = message(k, N);
    double t = 0;
    if (gather_is_direct(ranks))
      t = symmetric_round(P - 1, msg);
    else
      t = (P - 1) * symmetric_round(1, msg);
    return t + merge(P * k, N, std::ceil(std::log2(P)));
  }

  double dense(bool native) const {
    const double densify = N * m.pass_s;
    const double count = N * m.pass_s;  // the result's nonzeros, for the next call's choice
    const double shipped = 2 * (P - 1) / P * N;
    if (native) {
      const double barrier = std::ceil(std::log2(P)) * symmetric_round(1, kHeaderBytes);
      const double allreduce = 2 * std::ceil(std::log2(P)) * m.round_s + shipped * w * m.byte_s +
                               (P - 1) / P * N * m.pass_s;
      return densify + barrier + allreduce + count;
    }
    const double range = N / P;
    const double ring = 2 * (P - 1) * symmetric_round(1, message(range, range)) + (P - 1) * range * 2 * m.pass_s;
    return densify + ring + N * m.pass_s + count;
  }

  // L ranks per host, H = P / L hosts. The flat model prices messages within
  // a host like those between hosts, so it credits the algorithm only with
  // its fewer messages and smaller slices, not with cheaper local traffic.
  double hierarchical(double L) const {
    const double H = P / L;
    if (L <= 1 || H <= 1) return INFINITY;
    const double slice = N / L;
    double t = symmetric_round(L - 1, message(k / L, slice)) + merge(k, slice, std::ceil(std::log2(L)));
    const double e = fill(L) / L;  // a host's sum of one slice
    t += symmetric_round(H - 1, message(e, slice)) + merge(H * e, slice, std::ceil(std::log2(H)));
    t += symmetric_round(L - 1, message(u / L, slice));
    return t + assemble();
  }
};

}  // namespace

double cost_recursive_doubling(const MachineParams& p, const Workload& w) { return Model(p, w).recursive_doubling(); }
double cost_split_allgather(const MachineParams& p, const Workload& w) { return Model(p, w).split(false); }
double cost_split_dense(const MachineParams& p, const Workload& w) { return Model(p, w).split(true); }
double cost_split_allgather_hashed(const MachineParams& p, const Workload& w) {
  const Model m(p, w);
  return m.split(false) + m.hashed_sorts();
}
double cost_ring(const MachineParams& p, const Workload& w) { return Model(p, w).ring(); }
double cost_halving_doubling(const MachineParams& p, const Workload& w) { return Model(p, w).halving_doubling(); }
double cost_halving_doubling_hashed(const MachineParams& p, const Workload& w) {
  const Model m(p, w);
  return m.halving_doubling() + m.hashed_sorts();
}
double cost_allgather(const MachineParams& p, const Workload& w) { return Model(p, w).allgather(); }
double cost_dense(const MachineParams& p, const Workload& w) { return Model(p, w).dense(w.native_dense); }
double cost_hierarchical(const MachineParams& p, const Workload& w) {
  return Model(p, w).hierarchical(double(w.ranks_per_host));
}

double predicted_seconds(sparcl_algorithm_t algorithm, const MachineParams& p, const Workload& w) {
  const AlgorithmEntry* a = find_algorithm(int(algorithm));
  if (!a || !a->concrete()) fail(SPARCL_ERR_INTERNAL, "no cost model for this algorithm");
  return w.ranks <= 1 ? 0 : a->cost(p, w);
}

sparcl_algorithm_t cheapest_algorithm(const MachineParams& p, const Workload& w) {
  const std::vector<sparcl_algorithm_t> ranked = ranked_algorithms(p, w, 1.0);
  return ranked.front();
}

std::vector<sparcl_algorithm_t> ranked_algorithms(const MachineParams& p, const Workload& w, double spread) {
  // One rank: nothing moves; recursive doubling returns the input as it is.
  if (w.ranks <= 1) return {SPARCL_ALGO_RECURSIVE_DOUBLING};
  size_t n = 0;
  const AlgorithmEntry* table = algorithm_table(n);
  std::vector<std::pair<double, sparcl_algorithm_t>> all;
  for (size_t i = 0; i < n; ++i)
    if (table[i].concrete() && table[i].auto_candidate) all.emplace_back(table[i].cost(p, w), table[i].id);
  std::stable_sort(all.begin(), all.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<sparcl_algorithm_t> out;
  for (const auto& [t, a] : all)
    if (out.empty() || t <= spread * all.front().first) out.push_back(a);
  return out;
}

Workload independent_workload(int ranks, uint64_t dim, double value_bytes, double wire_value_bytes,
                              double rank_nnz, bool native_dense) {
  Workload w;
  w.ranks = ranks;
  w.dim = dim;
  w.value_bytes = value_bytes;
  w.index_bytes = dim < (uint64_t(1) << 32) ? 4 : 8;
  w.wire_value_bytes = wire_value_bytes;
  w.rank_nnz = std::min(rank_nnz, double(dim));
  const double rho = dim ? w.rank_nnz / double(dim) : 0;
  w.union_nnz = double(dim) * (1 - std::pow(1 - rho, ranks));
  w.native_dense = native_dense;
  return w;
}

bool choice_depends_on_density(const MachineParams& p, Workload w) {
  static const double kDensities[] = {0, 1e-5, 1e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.2, 0.35, 0.5, 0.75, 1};
  bool first = true;
  sparcl_algorithm_t seen = SPARCL_ALGO_AUTO;
  for (double d : kDensities) {
    Workload x =
        independent_workload(w.ranks, w.dim, w.value_bytes, w.wire_value_bytes, d * double(w.dim), w.native_dense);
    x.ranks_per_host = w.ranks_per_host;
    const sparcl_algorithm_t a = cheapest_algorithm(p, x);
    if (!first && a != seen) return true;
    seen = a, first = false;
  }
  return false;
}

}  // namespace sparcl
