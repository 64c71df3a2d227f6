// SPDX-License-Identifier: BSD-3-Clause
// Layers of the mini-trainer: each a forward/backward pair on float buffers
// holding a batch of samples, sample after sample (NCHW for images).
//
// A layer is set up once for its input shape and the largest batch it will
// see (setup allocates everything it needs: no allocation per step), then
// forward(x, y) writes the outputs and backward(x, y, dy, dx) writes the
// input gradient dx (skipped when dx is null) and the parameter gradients
// (overwritten, not accumulated). Parameters of a layer are one contiguous
// block, weights then biases, so that a layer's gradient is one tensor for
// the collectives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ml/nn/rng.hpp"

namespace sparcl {
namespace nn {

/// Shape of one sample: channels x height x width (a vector is c x 1 x 1).
struct Shape {
  size_t c = 1, h = 1, w = 1;
  size_t size() const { return c * h * w; }
  std::string str() const;
  bool operator==(const Shape& o) const { return c == o.c && h == o.h && w == o.w; }
};

class Layer {
 public:
  virtual ~Layer() = default;
  /// Short description, e.g. "linear 784->10".
  virtual std::string name() const = 0;
  /// Prepares the layer for inputs of shape `in` and batches of up to
  /// `max_batch` samples; returns the output shape. Throws
  /// std::invalid_argument for a shape the layer cannot take.
  virtual Shape setup(const Shape& in, size_t max_batch) = 0;
  /// Seeded initialisation of the parameters (nothing for layers without).
  virtual void init(Rng& rng) { (void)rng; }
  virtual void forward(const float* x, float* y, size_t batch) = 0;
  virtual void backward(const float* x, const float* y, const float* dy, float* dx, size_t batch) = 0;

  /// Weights then biases; empty for layers without parameters.
  std::vector<float>& params() { return params_; }
  const std::vector<float>& params() const { return params_; }
  /// Gradients, laid out as params().
  std::vector<float>& grads() { return grads_; }
  const std::vector<float>& grads() const { return grads_; }

 protected:
  std::vector<float> params_;
  std::vector<float> grads_;
};

/// Fully connected: y = W x + b, W is out x in (row-major), in = the input's size.
class Linear : public Layer {
 public:
  explicit Linear(size_t out_features);
  std::string name() const override;
  Shape setup(const Shape& in, size_t max_batch) override;
  /// He-uniform weights (bound sqrt(6 / in)), zero biases.
  void init(Rng& rng) override;
  void forward(const float* x, float* y, size_t batch) override;
  void backward(const float* x, const float* y, const float* dy, float* dx, size_t batch) override;

 private:
  size_t in_ = 0, out_;
};

/// 2-D convolution (cross-correlation) by im2col + GEMM; square kernel,
/// stride and zero padding. W is out_channels x (in_channels * k * k).
class Conv2d : public Layer {
 public:
  Conv2d(size_t out_channels, size_t kernel, size_t stride = 1, size_t pad = 0);
  std::string name() const override;
  Shape setup(const Shape& in, size_t max_batch) override;
  /// He-uniform weights (bound sqrt(6 / (in_channels * k * k))), zero biases.
  void init(Rng& rng) override;
  void forward(const float* x, float* y, size_t batch) override;
  void backward(const float* x, const float* y, const float* dy, float* dx, size_t batch) override;

 private:
  void im2col(const float* x, float* col) const;
  void col2im(const float* col, float* x) const;
  Shape in_, out_;
  size_t k_, stride_, pad_;
  std::vector<float> col_, dcol_;
};

/// Max-pooling over k x k windows with the given stride (no padding; the
/// last partial window is dropped). Ties go to the first maximum.
class MaxPool2d : public Layer {
 public:
  explicit MaxPool2d(size_t kernel, size_t stride = 0);  // stride 0: = kernel
  std::string name() const override;
  Shape setup(const Shape& in, size_t max_batch) override;
  void forward(const float* x, float* y, size_t batch) override;
  void backward(const float* x, const float* y, const float* dy, float* dx, size_t batch) override;

 private:
  Shape in_, out_;
  size_t k_, stride_;
  std::vector<uint32_t> argmax_;  // per output value: offset of its input within the sample
};

/// Element-wise activations: the output has the input's shape.
class Activation : public Layer {
 public:
  Shape setup(const Shape& in, size_t max_batch) override;

 protected:
  size_t n_ = 0;  // values per sample
};

class ReLU : public Activation {
 public:
  std::string name() const override { return "relu"; }
  void forward(const float* x, float* y, size_t batch) override;
  void backward(const float* x, const float* y, const float* dy, float* dx, size_t batch) override;
};

/// 1 / (1 + exp(-x)), computed without overflow for any x.
class Sigmoid : public Activation {
 public:
  std::string name() const override { return "sigmoid"; }
  void forward(const float* x, float* y, size_t batch) override;
  void backward(const float* x, const float* y, const float* dy, float* dx, size_t batch) override;
};

}  // namespace nn
}  // namespace sparcl
