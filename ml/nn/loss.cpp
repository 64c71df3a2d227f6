// SPDX-License-Identifier: BSD-3-Clause
#include "ml/nn/loss.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace sparcl {
namespace nn {

ClassifyResult softmax_cross_entropy(const float* logits, const int* labels, size_t batch, size_t classes,
                                     float scale, float* grad) {
  ClassifyResult r;
  for (size_t s = 0; s < batch; ++s) {
    const float* z = logits + s * classes;
    const int label = labels[s];
    if (label < 0 || size_t(label) >= classes)
      throw std::invalid_argument("softmax_cross_entropy: label " + std::to_string(label) + " of sample " +
                                  std::to_string(s) + " is outside [0, " + std::to_string(classes) + ")");
    size_t arg = 0;
    for (size_t j = 1; j < classes; ++j)
      if (z[j] > z[arg]) arg = j;
    // log-sum-exp around the largest logit: no overflow.
    const double zmax = z[arg];
    double sum = 0.0;
    for (size_t j = 0; j < classes; ++j) sum += std::exp(double(z[j]) - zmax);
    const double log_sum = std::log(sum);
    r.loss_sum += zmax + log_sum - double(z[label]);
    if (arg == size_t(label)) ++r.correct;
    if (grad) {
      float* g = grad + s * classes;
      for (size_t j = 0; j < classes; ++j) {
        const double p = std::exp(double(z[j]) - zmax - log_sum);
        g[j] = float(scale * (p - (j == size_t(label) ? 1.0 : 0.0)));
      }
    }
  }
  return r;
}

double squared_error(const float* pred, const float* target, size_t n, float scale, float* grad) {
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const float d = pred[i] - target[i];
    sum += double(d) * double(d);
    if (grad) grad[i] = 2.0f * scale * d;
  }
  return sum;
}

}  // namespace nn
}  // namespace sparcl
