// SPDX-License-Identifier: BSD-3-Clause
// A chain of layers with its activation buffers, allocated once by setup().
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ml/nn/layers.hpp"

namespace sparcl {
namespace nn {

class Sequential {
 public:
  explicit Sequential(const Shape& input) : input_(input) {}

  Sequential& add(std::unique_ptr<Layer> layer);

  /// Infers every layer's shape, allocates the buffers for batches of up to
  /// `max_batch` samples and initialises the parameters from `seed` (the
  /// same seed gives the same model on every rank).
  void setup(size_t max_batch, uint64_t seed);

  /// Runs the batch through every layer; returns the last layer's output.
  const float* forward(const float* x, size_t batch);

  /// Backpropagates `dout` (gradient of the loss w.r.t. the output of the
  /// last forward, which must have had the same x and batch). After the
  /// backward pass of each layer with parameters, `grads_ready(i)` is called
  /// with its index: its gradients are final from then on, while the layers
  /// before it are still to run.
  void backward(const float* x, const float* dout, size_t batch, const std::function<void(size_t)>& grads_ready);

  size_t size() const { return layers_.size(); }
  Layer& layer(size_t i) { return *layers_[i]; }
  const Layer& layer(size_t i) const { return *layers_[i]; }
  const Shape& input_shape() const { return input_; }
  const Shape& output_shape(size_t i) const { return shapes_[i]; }
  const Shape& output_shape() const { return shapes_.back(); }
  /// Output of layer i in the last forward pass (batch x output_shape(i)).
  const float* activation(size_t i) const { return acts_[i].data(); }
  size_t max_batch() const { return max_batch_; }
  /// Indices of the layers that have parameters, in order.
  const std::vector<size_t>& trainable() const { return trainable_; }
  size_t param_count() const;
  /// One line per layer, with parameter counts.
  std::string summary() const;

 private:
  Shape input_;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<Shape> shapes_;
  std::vector<std::vector<float>> acts_;
  std::vector<float> grad_a_, grad_b_;  // ping-pong buffers of activation gradients
  std::vector<size_t> trainable_;
  size_t max_batch_ = 0;
};

}  // namespace nn
}  // namespace sparcl
