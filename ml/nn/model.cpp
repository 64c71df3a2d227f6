// SPDX-License-Identifier: BSD-3-Clause
#include "ml/nn/model.hpp"

#include <algorithm>
#include <stdexcept>

namespace sparcl {
namespace nn {

Sequential& Sequential::add(std::unique_ptr<Layer> layer) {
  if (!layer) throw std::invalid_argument("sequential: null layer");
  if (max_batch_) throw std::logic_error("sequential: add() after setup()");
  layers_.push_back(std::move(layer));
  return *this;
}

void Sequential::setup(size_t max_batch, uint64_t seed) {
  if (layers_.empty()) throw std::invalid_argument("sequential: no layers");
  if (max_batch == 0) throw std::invalid_argument("sequential: max_batch must be at least 1");
  max_batch_ = max_batch;
  shapes_.clear();
  acts_.clear();
  trainable_.clear();
  Shape shape = input_;
  size_t widest = input_.size();
  Rng rng(seed);
  for (size_t i = 0; i < layers_.size(); ++i) {
    shape = layers_[i]->setup(shape, max_batch);
    if (shape.size() == 0) throw std::invalid_argument("sequential: layer " + layers_[i]->name() + " has no output");
    shapes_.push_back(shape);
    acts_.emplace_back(max_batch * shape.size(), 0.0f);
    widest = std::max(widest, shape.size());
    layers_[i]->init(rng);
    if (!layers_[i]->params().empty()) trainable_.push_back(i);
  }
  grad_a_.assign(max_batch * widest, 0.0f);
  grad_b_.assign(max_batch * widest, 0.0f);
}

const float* Sequential::forward(const float* x, size_t batch) {
  if (batch == 0 || batch > max_batch_)
    throw std::invalid_argument("sequential: batch of " + std::to_string(batch) + " outside [1, " +
                                std::to_string(max_batch_) + "] (setup)");
  const float* in = x;
  for (size_t i = 0; i < layers_.size(); ++i) {
    layers_[i]->forward(in, acts_[i].data(), batch);
    in = acts_[i].data();
  }
  return in;
}

void Sequential::backward(const float* x, const float* dout, size_t batch,
                          const std::function<void(size_t)>& grads_ready) {
  if (batch == 0 || batch > max_batch_) throw std::invalid_argument("sequential: batch outside the setup range");
  // Input gradients are needed only down to the first layer with parameters.
  const size_t first_trainable = trainable_.empty() ? layers_.size() : trainable_.front();
  const float* dy = dout;
  float* spare[2] = {grad_a_.data(), grad_b_.data()};
  int next = 0;
  for (size_t i = layers_.size(); i-- > 0;) {
    if (i < first_trainable) break;
    const float* in = i == 0 ? x : acts_[i - 1].data();
    float* dx = i > first_trainable ? spare[next] : nullptr;
    layers_[i]->backward(in, acts_[i].data(), dy, dx, batch);
    if (!layers_[i]->params().empty() && grads_ready) grads_ready(i);
    dy = dx;
    next ^= 1;
  }
}

size_t Sequential::param_count() const {
  size_t n = 0;
  for (const auto& l : layers_) n += l->params().size();
  return n;
}

std::string Sequential::summary() const {
  std::string s = "input " + input_.str() + "\n";
  for (size_t i = 0; i < layers_.size(); ++i) {
    s += "  " + layers_[i]->name();
    if (!layers_[i]->params().empty()) s += "  (" + std::to_string(layers_[i]->params().size()) + " parameters)";
    s += "\n";
  }
  s += "  total " + std::to_string(param_count()) + " parameters\n";
  return s;
}

}  // namespace nn
}  // namespace sparcl
