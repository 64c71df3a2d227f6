// SPDX-License-Identifier: BSD-3-Clause
#include "ml/nn/layers.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "ml/nn/blas.hpp"

namespace sparcl {
namespace nn {

std::string Shape::str() const {
  if (h == 1 && w == 1) return std::to_string(c);
  return std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w);
}

namespace {

void he_uniform(float* w, size_t n, size_t fan_in, Rng& rng) {
  const float bound = std::sqrt(6.0f / float(fan_in));
  for (size_t i = 0; i < n; ++i) w[i] = rng.uniform(-bound, bound);
}

}  // namespace

// ---------------------------------------------------------------- Linear

Linear::Linear(size_t out_features) : out_(out_features) {
  if (out_features == 0) throw std::invalid_argument("linear: output size must be at least 1");
}

std::string Linear::name() const { return "linear " + std::to_string(in_) + "->" + std::to_string(out_); }

Shape Linear::setup(const Shape& in, size_t max_batch) {
  (void)max_batch;
  in_ = in.size();
  params_.assign(out_ * in_ + out_, 0.0f);
  grads_.assign(params_.size(), 0.0f);
  return Shape{out_, 1, 1};
}

void Linear::init(Rng& rng) {
  he_uniform(params_.data(), out_ * in_, in_, rng);
  std::fill(params_.begin() + std::ptrdiff_t(out_ * in_), params_.end(), 0.0f);
}

void Linear::forward(const float* x, float* y, size_t batch) {
  const float* w = params_.data();
  const float* b = w + out_ * in_;
  for (size_t s = 0; s < batch; ++s) std::copy(b, b + out_, y + s * out_);
  gemm(false, true, batch, out_, in_, 1.0f, x, in_, w, in_, 1.0f, y, out_);  // y += x W^T
}

void Linear::backward(const float* x, const float* y, const float* dy, float* dx, size_t batch) {
  (void)y;
  const float* w = params_.data();
  float* dw = grads_.data();
  float* db = dw + out_ * in_;
  gemm(true, false, out_, in_, batch, 1.0f, dy, out_, x, in_, 0.0f, dw, in_);  // dW = dy^T x
  std::fill(db, db + out_, 0.0f);
  for (size_t s = 0; s < batch; ++s)
    for (size_t j = 0; j < out_; ++j) db[j] += dy[s * out_ + j];
  if (dx) gemm(false, false, batch, in_, out_, 1.0f, dy, out_, w, in_, 0.0f, dx, in_);  // dx = dy W
}

// ---------------------------------------------------------------- Conv2d

Conv2d::Conv2d(size_t out_channels, size_t kernel, size_t stride, size_t pad)
    : k_(kernel), stride_(stride), pad_(pad) {
  if (out_channels == 0 || kernel == 0 || stride == 0)
    throw std::invalid_argument("conv2d: out_channels, kernel and stride must be at least 1");
  out_.c = out_channels;
}

std::string Conv2d::name() const {
  return "conv2d " + in_.str() + "->" + out_.str() + " k" + std::to_string(k_) + " s" + std::to_string(stride_) +
         " p" + std::to_string(pad_);
}

Shape Conv2d::setup(const Shape& in, size_t max_batch) {
  (void)max_batch;
  if (in.h + 2 * pad_ < k_ || in.w + 2 * pad_ < k_)
    throw std::invalid_argument("conv2d: kernel " + std::to_string(k_) + " is larger than the padded input " +
                                in.str());
  in_ = in;
  out_.h = (in.h + 2 * pad_ - k_) / stride_ + 1;
  out_.w = (in.w + 2 * pad_ - k_) / stride_ + 1;
  const size_t ckk = in.c * k_ * k_, ohw = out_.h * out_.w;
  params_.assign(out_.c * ckk + out_.c, 0.0f);
  grads_.assign(params_.size(), 0.0f);
  col_.assign(ckk * ohw, 0.0f);
  dcol_.assign(ckk * ohw, 0.0f);
  return out_;
}

void Conv2d::init(Rng& rng) {
  const size_t ckk = in_.c * k_ * k_;
  he_uniform(params_.data(), out_.c * ckk, ckk, rng);
  std::fill(params_.begin() + std::ptrdiff_t(out_.c * ckk), params_.end(), 0.0f);
}

// col[(c, ki, kj)][(oh, ow)] = x[c][oh*stride - pad + ki][ow*stride - pad + kj], 0 outside.
void Conv2d::im2col(const float* x, float* col) const {
  const size_t oh_n = out_.h, ow_n = out_.w;
  for (size_t c = 0; c < in_.c; ++c)
    for (size_t ki = 0; ki < k_; ++ki)
      for (size_t kj = 0; kj < k_; ++kj) {
        float* row = col + ((c * k_ + ki) * k_ + kj) * oh_n * ow_n;
        for (size_t oh = 0; oh < oh_n; ++oh) {
          float* dst = row + oh * ow_n;
          const ptrdiff_t ih = ptrdiff_t(oh * stride_ + ki) - ptrdiff_t(pad_);
          if (ih < 0 || ih >= ptrdiff_t(in_.h)) {
            std::fill(dst, dst + ow_n, 0.0f);
            continue;
          }
          const float* src = x + (c * in_.h + size_t(ih)) * in_.w;
          for (size_t ow = 0; ow < ow_n; ++ow) {
            const ptrdiff_t iw = ptrdiff_t(ow * stride_ + kj) - ptrdiff_t(pad_);
            dst[ow] = (iw < 0 || iw >= ptrdiff_t(in_.w)) ? 0.0f : src[iw];
          }
        }
      }
}

// The adjoint of im2col: every col entry is added back where it came from.
void Conv2d::col2im(const float* col, float* x) const {
  const size_t oh_n = out_.h, ow_n = out_.w;
  std::fill(x, x + in_.size(), 0.0f);
  for (size_t c = 0; c < in_.c; ++c)
    for (size_t ki = 0; ki < k_; ++ki)
      for (size_t kj = 0; kj < k_; ++kj) {
        const float* row = col + ((c * k_ + ki) * k_ + kj) * oh_n * ow_n;
        for (size_t oh = 0; oh < oh_n; ++oh) {
          const ptrdiff_t ih = ptrdiff_t(oh * stride_ + ki) - ptrdiff_t(pad_);
          if (ih < 0 || ih >= ptrdiff_t(in_.h)) continue;
          float* dst = x + (c * in_.h + size_t(ih)) * in_.w;
          const float* src = row + oh * ow_n;
          for (size_t ow = 0; ow < ow_n; ++ow) {
            const ptrdiff_t iw = ptrdiff_t(ow * stride_ + kj) - ptrdiff_t(pad_);
            if (iw >= 0 && iw < ptrdiff_t(in_.w)) dst[iw] += src[ow];
          }
        }
      }
}

void Conv2d::forward(const float* x, float* y, size_t batch) {
  const size_t ckk = in_.c * k_ * k_, ohw = out_.h * out_.w;
  const float* w = params_.data();
  const float* b = w + out_.c * ckk;
  for (size_t s = 0; s < batch; ++s) {
    float* ys = y + s * out_.size();
    im2col(x + s * in_.size(), col_.data());
    for (size_t oc = 0; oc < out_.c; ++oc) std::fill(ys + oc * ohw, ys + (oc + 1) * ohw, b[oc]);
    gemm(false, false, out_.c, ohw, ckk, 1.0f, w, ckk, col_.data(), ohw, 1.0f, ys, ohw);  // y += W col
  }
}

void Conv2d::backward(const float* x, const float* y, const float* dy, float* dx, size_t batch) {
  (void)y;
  const size_t ckk = in_.c * k_ * k_, ohw = out_.h * out_.w;
  const float* w = params_.data();
  float* dw = grads_.data();
  float* db = dw + out_.c * ckk;
  std::fill(grads_.begin(), grads_.end(), 0.0f);
  for (size_t s = 0; s < batch; ++s) {
    const float* dys = dy + s * out_.size();
    im2col(x + s * in_.size(), col_.data());
    gemm(false, true, out_.c, ckk, ohw, 1.0f, dys, ohw, col_.data(), ohw, 1.0f, dw, ckk);  // dW += dy col^T
    for (size_t oc = 0; oc < out_.c; ++oc) {
      float sum = 0.0f;
      for (size_t p = 0; p < ohw; ++p) sum += dys[oc * ohw + p];
      db[oc] += sum;
    }
    if (dx) {
      gemm(true, false, ckk, ohw, out_.c, 1.0f, w, ckk, dys, ohw, 0.0f, dcol_.data(), ohw);  // dcol = W^T dy
      col2im(dcol_.data(), dx + s * in_.size());
    }
  }
}

// ---------------------------------------------------------------- MaxPool2d

MaxPool2d::MaxPool2d(size_t kernel, size_t stride) : k_(kernel), stride_(stride ? stride : kernel) {
  if (kernel == 0) throw std::invalid_argument("maxpool2d: kernel must be at least 1");
}

std::string MaxPool2d::name() const {
  return "maxpool2d " + in_.str() + "->" + out_.str() + " k" + std::to_string(k_) + " s" + std::to_string(stride_);
}

Shape MaxPool2d::setup(const Shape& in, size_t max_batch) {
  if (in.h < k_ || in.w < k_)
    throw std::invalid_argument("maxpool2d: window " + std::to_string(k_) + " is larger than the input " + in.str());
  if (in.size() > std::numeric_limits<uint32_t>::max())
    throw std::invalid_argument("maxpool2d: input of " + std::to_string(in.size()) + " values is too large");
  in_ = in;
  out_ = Shape{in.c, (in.h - k_) / stride_ + 1, (in.w - k_) / stride_ + 1};
  argmax_.assign(max_batch * out_.size(), 0);
  return out_;
}

void MaxPool2d::forward(const float* x, float* y, size_t batch) {
  if (batch * out_.size() > argmax_.size())
    throw std::invalid_argument("maxpool2d: batch larger than the one it was set up for");
  for (size_t s = 0; s < batch; ++s) {
    const float* xs = x + s * in_.size();
    float* ys = y + s * out_.size();
    uint32_t* am = argmax_.data() + s * out_.size();
    for (size_t c = 0; c < in_.c; ++c)
      for (size_t oh = 0; oh < out_.h; ++oh)
        for (size_t ow = 0; ow < out_.w; ++ow) {
          size_t best = (c * in_.h + oh * stride_) * in_.w + ow * stride_;
          for (size_t ki = 0; ki < k_; ++ki)
            for (size_t kj = 0; kj < k_; ++kj) {
              const size_t at = (c * in_.h + oh * stride_ + ki) * in_.w + ow * stride_ + kj;
              if (xs[at] > xs[best]) best = at;
            }
          const size_t o = (c * out_.h + oh) * out_.w + ow;
          ys[o] = xs[best];
          am[o] = uint32_t(best);
        }
  }
}

void MaxPool2d::backward(const float* x, const float* y, const float* dy, float* dx, size_t batch) {
  (void)x;
  (void)y;
  if (!dx) return;
  std::fill(dx, dx + batch * in_.size(), 0.0f);
  for (size_t s = 0; s < batch; ++s) {
    const uint32_t* am = argmax_.data() + s * out_.size();
    const float* dys = dy + s * out_.size();
    float* dxs = dx + s * in_.size();
    for (size_t o = 0; o < out_.size(); ++o) dxs[am[o]] += dys[o];
  }
}

// ---------------------------------------------------------------- activations

Shape Activation::setup(const Shape& in, size_t max_batch) {
  (void)max_batch;
  n_ = in.size();
  return in;
}

void ReLU::forward(const float* x, float* y, size_t batch) {
  for (size_t i = 0; i < batch * n_; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void ReLU::backward(const float* x, const float* y, const float* dy, float* dx, size_t batch) {
  (void)y;
  if (!dx) return;
  for (size_t i = 0; i < batch * n_; ++i) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

void Sigmoid::forward(const float* x, float* y, size_t batch) {
  for (size_t i = 0; i < batch * n_; ++i) {
    // exp of a non-positive number only: no overflow for any input.
    if (x[i] >= 0.0f) {
      y[i] = 1.0f / (1.0f + std::exp(-x[i]));
    } else {
      const float e = std::exp(x[i]);
      y[i] = e / (1.0f + e);
    }
  }
}

void Sigmoid::backward(const float* x, const float* y, const float* dy, float* dx, size_t batch) {
  (void)x;
  if (!dx) return;
  for (size_t i = 0; i < batch * n_; ++i) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

}  // namespace nn
}  // namespace sparcl
