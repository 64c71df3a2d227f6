// SPDX-License-Identifier: BSD-3-Clause
// Node saliency of an autoencoder's bottleneck: how well each hidden node's
// activation separates two classes (cancer from normal), and how much two
// such rankings agree (docs/trainer.md, "Node saliency").
//
// Measure: for node j, AUC_j = P(a_j(cancer sample) > a_j(normal sample)),
// ties counting one half (the Mann-Whitney statistic over all pairs), and
// saliency_j = |2 AUC_j - 1| in [0, 1]: 0 when the activations of the two
// classes are interleaved at random, 1 when a threshold on the node alone
// separates them perfectly (either way round). Rank-based, so it does not
// depend on the scale of the activations.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace sparcl {
namespace train {

struct NodeSaliency {
  size_t node = 0;
  double auc = 0.5;
  double saliency = 0;
  double mean_positive = 0, mean_negative = 0;
  size_t rank = 0;  ///< 1 = most salient (ties: lower node first)
};

/// `act` holds samples x nodes activations; samples whose label is neither
/// `positive` nor `negative` are ignored. Throws std::invalid_argument when
/// either class has no sample.
std::vector<NodeSaliency> node_saliency(const float* act, size_t samples, size_t nodes, const std::vector<int>& labels,
                                        int positive, int negative);

/// Spearman's rank correlation (average ranks for ties); NaN if either side is constant.
double spearman(const std::vector<double>& a, const std::vector<double>& b);

/// Number of nodes among the k most salient of both rankings.
size_t top_overlap(const std::vector<NodeSaliency>& a, const std::vector<NodeSaliency>& b, size_t k);

/// CSV with columns node,auc,saliency,rank,mean_cancer,mean_normal (one row per node, by node).
void write_saliency_csv(const std::string& path, const std::vector<NodeSaliency>& s);
std::vector<NodeSaliency> read_saliency_csv(const std::string& path);

}  // namespace train
}  // namespace sparcl
