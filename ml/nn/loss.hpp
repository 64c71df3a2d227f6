// SPDX-License-Identifier: BSD-3-Clause
// Losses: value and gradient in one call. `scale` multiplies the gradient
// (and is how a data-parallel step averages: scale = 1 / global batch), the
// returned value is the unscaled sum over the batch.
#pragma once

#include <cstddef>

namespace sparcl {
namespace nn {

struct ClassifyResult {
  double loss_sum = 0.0;  ///< sum over rows of -log softmax(logits)[label]
  size_t correct = 0;     ///< rows whose largest logit is the label's (first one on ties)
};

/// Softmax cross-entropy of `batch` rows of `classes` logits. Writes
/// grad = scale * (softmax(logits) - onehot(label)) when grad is not null.
/// Throws std::invalid_argument for a label outside [0, classes).
ClassifyResult softmax_cross_entropy(const float* logits, const int* labels, size_t batch, size_t classes,
                                     float scale, float* grad);

/// Sum of squared differences over n values; writes grad = 2 * scale * (pred - target)
/// when grad is not null. (The mean squared error is the sum / n.)
double squared_error(const float* pred, const float* target, size_t n, float scale, float* grad);

}  // namespace nn
}  // namespace sparcl
