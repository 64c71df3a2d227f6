// SPDX-License-Identifier: BSD-3-Clause
#include "ml/nn/optim.hpp"

#include <cmath>
#include <stdexcept>

namespace sparcl {
namespace nn {

namespace {

// The update loops, compiled for AVX-512 and AVX2 too (picked at load time
// by the CPU's features): Adam's sqrt and division are most of its cost.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define SPARCL_NN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SPARCL_NN_CLONES
#endif

SPARCL_NN_CLONES void sgd(float* p, const float* g, size_t n, float lr) {
  for (size_t i = 0; i < n; ++i) p[i] -= lr * g[i];
}

SPARCL_NN_CLONES void sgd_momentum(float* p, const float* g, float* v, size_t n, float lr, float mu) {
  for (size_t i = 0; i < n; ++i) {
    v[i] = mu * v[i] + g[i];
    p[i] -= lr * v[i];
  }
}

SPARCL_NN_CLONES void adam(float* p, const float* g, float* m, float* v, size_t n, float b1, float b2, float step_size,
                           float inv_sqrt_bc2, float eps) {
  for (size_t i = 0; i < n; ++i) {
    m[i] = b1 * m[i] + (1.0f - b1) * g[i];
    v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
    p[i] -= step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
  }
}

}  // namespace

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
    if (c.momentum == 0.0f)
      sgd(params, grads, n, lr);
    else
      sgd_momentum(params, grads, first_[t].data(), n, lr, c.momentum);
    return;
  }
  const uint64_t step = ++steps_[t];
  const float b1 = c.beta1, b2 = c.beta2;
  const float step_size = float(double(lr) / (1.0 - std::pow(double(b1), double(step))));
  const float inv_sqrt_bc2 = float(1.0 / std::sqrt(1.0 - std::pow(double(b2), double(step))));
  adam(params, grads, first_[t].data(), second_[t].data(), n, b1, b2, step_size, inv_sqrt_bc2, c.eps);
}

}  // namespace nn
}  // namespace sparcl
