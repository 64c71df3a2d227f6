// SPDX-License-Identifier: BSD-3-Clause
#include "ml/train/saliency.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <numeric>
#include <sstream>
#include <stdexcept>

namespace sparcl {
namespace train {

namespace {

// 1-based ranks, ties sharing their average rank.
std::vector<double> average_ranks(const std::vector<double>& v) {
  std::vector<size_t> order(v.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> rank(v.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
    const double r = 0.5 * double(i + j) + 1.0;
    for (size_t k = i; k <= j; ++k) rank[order[k]] = r;
    i = j + 1;
  }
  return rank;
}

}  // namespace

std::vector<NodeSaliency> node_saliency(const float* act, size_t samples, size_t nodes, const std::vector<int>& labels,
                                        int positive, int negative) {
  if (labels.size() != samples) throw std::invalid_argument("node_saliency: one label per sample needed");
  std::vector<size_t> used;
  size_t npos = 0, nneg = 0;
  for (size_t i = 0; i < samples; ++i) {
    if (labels[i] == positive) ++npos;
    if (labels[i] == negative) ++nneg;
    if (labels[i] == positive || labels[i] == negative) used.push_back(i);
  }
  if (npos == 0 || nneg == 0) throw std::invalid_argument("node_saliency: a class has no sample");
  std::vector<NodeSaliency> out(nodes);
  std::vector<double> values(used.size());
  for (size_t j = 0; j < nodes; ++j) {
    double sum_pos = 0, sum_neg = 0;
    for (size_t u = 0; u < used.size(); ++u) {
      values[u] = act[used[u] * nodes + j];
      (labels[used[u]] == positive ? sum_pos : sum_neg) += values[u];
    }
    const std::vector<double> rank = average_ranks(values);
    double rank_sum_pos = 0;
    for (size_t u = 0; u < used.size(); ++u)
      if (labels[used[u]] == positive) rank_sum_pos += rank[u];
    // Mann-Whitney: U = R_pos - npos (npos + 1) / 2 pairs where the positive is larger.
    const double u_stat = rank_sum_pos - double(npos) * double(npos + 1) / 2.0;
    NodeSaliency& s = out[j];
    s.node = j;
    s.auc = u_stat / (double(npos) * double(nneg));
    s.saliency = std::fabs(2.0 * s.auc - 1.0);
    s.mean_positive = sum_pos / double(npos);
    s.mean_negative = sum_neg / double(nneg);
  }
  std::vector<size_t> order(nodes);
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return out[a].saliency > out[b].saliency; });
  for (size_t r = 0; r < nodes; ++r) out[order[r]].rank = r + 1;
  return out;
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size() || a.size() < 2) throw std::invalid_argument("spearman: two vectors of one length >= 2");
  const std::vector<double> ra = average_ranks(a), rb = average_ranks(b);
  const double n = double(a.size()), mean = (n + 1.0) / 2.0;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sab += (ra[i] - mean) * (rb[i] - mean);
    saa += (ra[i] - mean) * (ra[i] - mean);
    sbb += (rb[i] - mean) * (rb[i] - mean);
  }
  if (saa == 0 || sbb == 0) return std::numeric_limits<double>::quiet_NaN();
  return sab / std::sqrt(saa * sbb);
}

size_t top_overlap(const std::vector<NodeSaliency>& a, const std::vector<NodeSaliency>& b, size_t k) {
  if (a.size() != b.size()) throw std::invalid_argument("top_overlap: rankings of different sizes");
  size_t both = 0;
  for (size_t j = 0; j < a.size(); ++j)
    if (a[j].rank <= k && b[j].rank <= k) ++both;
  return both;
}

void write_saliency_csv(const std::string& path, const std::vector<NodeSaliency>& s) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw std::runtime_error("cannot write " + path);
  std::fprintf(f, "node,auc,saliency,rank,mean_cancer,mean_normal\n");
  for (const NodeSaliency& n : s)
    std::fprintf(f, "%zu,%.6f,%.6f,%zu,%.6g,%.6g\n", n.node, n.auc, n.saliency, n.rank, n.mean_positive,
                 n.mean_negative);
  if (std::fclose(f) != 0) throw std::runtime_error("cannot write " + path);
}

std::vector<NodeSaliency> read_saliency_csv(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::string line;
  if (!std::getline(in, line) || line.rfind("node,auc,saliency,rank", 0) != 0)
    throw std::runtime_error(path + ": not a saliency file of sparcl-train (header node,auc,saliency,rank,...)");
  std::vector<NodeSaliency> out;
  for (size_t row = 2; std::getline(in, line); ++row) {
    if (line.empty()) continue;
    NodeSaliency n;
    char c1, c2, c3;
    std::istringstream is(line);
    if (!(is >> n.node >> c1 >> n.auc >> c2 >> n.saliency >> c3 >> n.rank) || c1 != ',' || c2 != ',' || c3 != ',' ||
        n.node != out.size())
      throw std::runtime_error(path + ": line " + std::to_string(row) + " is not 'node,auc,saliency,rank,...' in node order");
    out.push_back(n);
  }
  if (out.empty()) throw std::runtime_error(path + ": no nodes");
  return out;
}

}  // namespace train
}  // namespace sparcl
