// SPDX-License-Identifier: BSD-3-Clause
#include "ml/nn/optim.hpp"

#include <cmath>
#include <stdexcept>

namespace sparcl {
namespace nn {

OptimizerConfig::Kind optimizer_kind(const std::string& name) {
  if (name == "sgd") return OptimizerConfig::Kind::Sgd;
  if (name == "adam") return OptimizerConfig::Kind::Adam;
  throw std::invalid_argument("unknown optimizer '" + name + "' (sgd, adam)");
}

const char* optimizer_name(OptimizerConfig::Kind kind) {
  return kind == OptimizerConfig::Kind::Adam ? "adam" : "sgd";
}

Optimizer::Optimizer(const OptimizerConfig& config, const std::vector<size_t>& tensor_sizes)
    : config_(config), sizes_(tensor_sizes) {
  const OptimizerConfig& c = config_;
  if (!(c.lr > 0.0f && std::isfinite(c.lr))) throw std::invalid_argument("optimizer: learning rate must be > 0");
  if (!(c.momentum >= 0.0f && c.momentum < 1.0f)) throw std::invalid_argument("optimizer: momentum must lie in [0, 1)");
  if (!(c.beta1 >= 0.0f && c.beta1 < 1.0f && c.beta2 >= 0.0f && c.beta2 < 1.0f))
    throw std::invalid_argument("optimizer: Adam's betas must lie in [0, 1)");
  if (!(c.eps > 0.0f)) throw std::invalid_argument("optimizer: Adam's eps must be > 0");
  const bool adam = c.kind == OptimizerConfig::Kind::Adam;
  for (size_t n : sizes_) {
    first_.emplace_back(adam || c.momentum > 0.0f ? n : 0, 0.0f);
    second_.emplace_back(adam ? n : 0, 0.0f);
  }
  steps_.assign(sizes_.size(), 0);
}

void Optimizer::step(size_t t, float* params, const float* grads) {
  if (t >= sizes_.size()) throw std::invalid_argument("optimizer: no tensor " + std::to_string(t));
  const size_t n = sizes_[t];
  const OptimizerConfig& c = config_;
  const float lr = c.lr;
  if (c.kind == OptimizerConfig::Kind::Sgd) {
    if (c.momentum == 0.0f) {
      for (size_t i = 0; i < n; ++i) params[i] -= lr * grads[i];
      return;
    }
    float* v = first_[t].data();
    const float mu = c.momentum;
    for (size_t i = 0; i < n; ++i) {
      v[i] = mu * v[i] + grads[i];
      params[i] -= lr * v[i];
    }
    return;
  }
  const uint64_t step = ++steps_[t];
  const float b1 = c.beta1, b2 = c.beta2;
  const float step_size = float(double(lr) / (1.0 - std::pow(double(b1), double(step))));
  const float inv_sqrt_bc2 = float(1.0 / std::sqrt(1.0 - std::pow(double(b2), double(step))));
  const float eps = c.eps;
  float* m = first_[t].data();
  float* v = second_[t].data();
  for (size_t i = 0; i < n; ++i) {
    const float g = grads[i];
    m[i] = b1 * m[i] + (1.0f - b1) * g;
    v[i] = b2 * v[i] + (1.0f - b2) * g * g;
    params[i] -= step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
  }
}

}  // namespace nn
}  // namespace sparcl
