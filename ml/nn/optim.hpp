// SPDX-License-Identifier: BSD-3-Clause
// Optimizers over a model's parameter tensors (one state per tensor):
// SGD with momentum (v = mu v + g; p -= lr v, as PyTorch's SGD without
// dampening) and Adam (Kingma & Ba, with bias correction, as PyTorch's Adam).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sparcl {
namespace nn {

struct OptimizerConfig {
  enum class Kind { Sgd, Adam };
  Kind kind = Kind::Sgd;
  float lr = 0.01f;
  float momentum = 0.9f;  ///< SGD; 0 = plain SGD
  float beta1 = 0.9f;     ///< Adam
  float beta2 = 0.999f;   ///< Adam
  float eps = 1e-8f;      ///< Adam
};

/// "sgd" or "adam"; throws std::invalid_argument otherwise.
OptimizerConfig::Kind optimizer_kind(const std::string& name);
const char* optimizer_name(OptimizerConfig::Kind kind);

class Optimizer {
 public:
  /// Throws std::invalid_argument for an out-of-range setting.
  Optimizer(const OptimizerConfig& config, const std::vector<size_t>& tensor_sizes);
  /// One update of tensor `t` (params and grads hold tensor_sizes[t] values).
  void step(size_t t, float* params, const float* grads);
  void set_lr(float lr) { config_.lr = lr; }
  const OptimizerConfig& config() const { return config_; }

 private:
  OptimizerConfig config_;
  std::vector<size_t> sizes_;
  std::vector<std::vector<float>> first_;   // SGD velocity or Adam's m
  std::vector<std::vector<float>> second_;  // Adam's v
  std::vector<uint64_t> steps_;             // Adam's t, per tensor
};

}  // namespace nn
}  // namespace sparcl
