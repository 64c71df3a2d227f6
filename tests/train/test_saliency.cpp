// SPDX-License-Identifier: BSD-3-Clause
// Node saliency (AUC-based separation of two classes) and rank agreement.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "ml/nn/rng.hpp"
#include "ml/train/saliency.hpp"

using namespace sparcl::train;

TEST(Saliency, SeparationExtremes) {
  // 3 nodes, 6 samples (labels 1 = positive, 0 = negative, 2 = ignored).
  const std::vector<int> labels{1, 1, 0, 0, 2, 1};
  const std::vector<float> act{
      0.9f, 0.1f, 0.5f,  //
      0.8f, 0.2f, 0.5f,  //
      0.1f, 0.9f, 0.5f,  //
      0.2f, 0.8f, 0.5f,  //
      0.0f, 0.0f, 0.0f,  // ignored
      0.7f, 0.3f, 0.5f};
  const auto s = node_saliency(act.data(), 6, 3, labels, 1, 0);
  EXPECT_DOUBLE_EQ(s[0].auc, 1.0);  // positives above: perfect
  EXPECT_DOUBLE_EQ(s[0].saliency, 1.0);
  EXPECT_DOUBLE_EQ(s[1].auc, 0.0);  // positives below: perfect the other way round
  EXPECT_DOUBLE_EQ(s[1].saliency, 1.0);
  EXPECT_DOUBLE_EQ(s[2].auc, 0.5);  // constant: no information
  EXPECT_DOUBLE_EQ(s[2].saliency, 0.0);
  EXPECT_EQ(s[0].rank, 1u);
  EXPECT_EQ(s[1].rank, 2u);
  EXPECT_EQ(s[2].rank, 3u);
  EXPECT_NEAR(s[0].mean_positive, 0.8, 1e-6);
  EXPECT_NEAR(s[0].mean_negative, 0.15, 1e-6);
  EXPECT_THROW(node_saliency(act.data(), 6, 3, labels, 1, 5), std::invalid_argument);
}

TEST(Saliency, AucEqualsPairCounting) {
  sparcl::nn::Rng rng(5);
  const size_t samples = 40, nodes = 6;
  std::vector<int> labels(samples);
  std::vector<float> act(samples * nodes);
  for (size_t i = 0; i < samples; ++i) labels[i] = int(rng.below(3));
  // Coarse values, so that ties occur.
  for (float& a : act) a = float(rng.below(5)) / 4.0f;
  const auto s = node_saliency(act.data(), samples, nodes, labels, 1, 0);
  for (size_t j = 0; j < nodes; ++j) {
    double wins = 0, pairs = 0;
    for (size_t p = 0; p < samples; ++p)
      for (size_t q = 0; q < samples; ++q)
        if (labels[p] == 1 && labels[q] == 0) {
          const float a = act[p * nodes + j], b = act[q * nodes + j];
          wins += a > b ? 1.0 : a == b ? 0.5 : 0.0;
          pairs += 1;
        }
    EXPECT_NEAR(s[j].auc, wins / pairs, 1e-12) << "node " << j;
    EXPECT_NEAR(s[j].saliency, std::fabs(2 * wins / pairs - 1), 1e-12);
  }
}

TEST(Saliency, SpearmanAndOverlap) {
  EXPECT_DOUBLE_EQ(spearman({1, 2, 3, 4}, {10, 20, 30, 40}), 1.0);
  EXPECT_DOUBLE_EQ(spearman({1, 2, 3, 4}, {4, 3, 2, 1}), -1.0);
  EXPECT_NEAR(spearman({1, 2, 2, 3}, {1, 2, 3, 4}), 0.9486832980505138, 1e-12);  // ties get average ranks
  EXPECT_TRUE(std::isnan(spearman({1, 1, 1}, {1, 2, 3})));
  std::vector<NodeSaliency> a(4), b(4);
  const size_t ra[] = {1, 2, 3, 4}, rb[] = {2, 4, 1, 3};
  for (size_t j = 0; j < 4; ++j) a[j].rank = ra[j], b[j].rank = rb[j];
  EXPECT_EQ(top_overlap(a, b, 2), 1u);  // node 0 is in both top-2 sets
  EXPECT_EQ(top_overlap(a, b, 4), 4u);
}

TEST(Saliency, CsvRoundTrip) {
  const std::vector<int> labels{1, 0, 1, 0};
  const std::vector<float> act{0.1f, 0.9f, 0.2f, 0.3f, 0.3f, 0.7f, 0.4f, 0.6f};
  const auto s = node_saliency(act.data(), 4, 2, labels, 1, 0);
  char path[] = "/tmp/sparcl-saliency-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  write_saliency_csv(path, s);
  const auto back = read_saliency_csv(path);
  ASSERT_EQ(back.size(), 2u);
  for (size_t j = 0; j < 2; ++j) {
    EXPECT_EQ(back[j].node, j);
    EXPECT_NEAR(back[j].auc, s[j].auc, 1e-6);
    EXPECT_EQ(back[j].rank, s[j].rank);
  }
  std::FILE* f = std::fopen(path, "w");
  std::fputs("a,b\n", f);
  std::fclose(f);
  EXPECT_THROW(read_saliency_csv(path), std::runtime_error);
  std::remove(path);
}
