// SPDX-License-Identifier: BSD-3-Clause
// The NN library: every layer's backward pass against finite differences of
// its forward pass, forward passes against direct formulas, losses,
// optimizers, seeded initialisation and the Sequential container.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <vector>

#include "ml/nn/blas.hpp"
#include "ml/nn/layers.hpp"
#include "ml/nn/loss.hpp"
#include "ml/nn/model.hpp"
#include "ml/train/trainer.hpp"
#include "ml/nn/optim.hpp"
#include "ml/train/workloads.hpp"

using namespace sparcl::nn;

namespace {

std::vector<float> random_vector(size_t n, Rng& rng, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> v(n);
  for (float& x : v) x = rng.uniform(lo, hi);
  return v;
}

// Inputs whose values are all at least `gap` apart (a shuffled grid), so that
// no finite-difference step can reorder two of them (max-pooling) or cross
// zero (ReLU: the grid avoids 0).
std::vector<float> separated_vector(size_t n, Rng& rng, float gap) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = (float(i) - float(n) / 2.0f + 0.5f) * gap;
  rng.shuffle(v);
  return v;
}

// f(x, params) = sum_i r_i * y_i in double, for the finite differences.
double objective(Layer& layer, const std::vector<float>& x, const std::vector<float>& r, size_t batch,
                 std::vector<float>& y) {
  layer.forward(x.data(), y.data(), batch);
  double f = 0;
  for (size_t i = 0; i < y.size(); ++i) f += double(r[i]) * double(y[i]);
  return f;
}

// Central differences of every input and parameter (or a strided sample of
// them when there are many) against backward(). Tolerance: relative 2e-2
// with an absolute floor of 2e-3, for float forward passes with h = 1e-2 (the
// layers here are at most quadratic in each coordinate between kinks, so the
// truncation error is small; the rounding error of f is ~1e-6 / h).
void gradient_check(Layer& layer, const Shape& in, size_t batch, std::vector<float> x, uint64_t seed = 7) {
  Rng rng(seed);
  const Shape out = layer.setup(in, batch);
  layer.init(rng);
  for (float& p : layer.params()) p += rng.uniform(-0.1f, 0.1f);  // non-zero biases too
  std::vector<float> y(batch * out.size()), r = random_vector(batch * out.size(), rng);
  std::vector<float> dx(x.size(), 0.0f);
  objective(layer, x, r, batch, y);
  layer.backward(x.data(), y.data(), r.data(), dx.data(), batch);
  const std::vector<float> grads = layer.grads();
  const float h = 1e-2f;
  const auto close = [](double numeric, double analytic) {
    return std::fabs(numeric - analytic) <= std::max(2e-3, 2e-2 * std::fabs(analytic));
  };
  // The central difference of f in one coordinate v (an input or a parameter).
  const auto numeric = [&](float& v) {
    const float keep = v;
    v = keep + h;
    const double fp = objective(layer, x, r, batch, y);
    v = keep - h;
    const double fm = objective(layer, x, r, batch, y);
    v = keep;
    return (fp - fm) / (2.0 * double(h));
  };
  const size_t xstride = std::max<size_t>(1, x.size() / 60);
  for (size_t i = 0; i < x.size(); i += xstride)
    EXPECT_PRED2(close, numeric(x[i]), dx[i]) << layer.name() << ": d/dx[" << i << "]";
  std::vector<float>& p = layer.params();
  const size_t pstride = std::max<size_t>(1, p.size() / 60);
  for (size_t i = 0; i < p.size(); i += pstride)
    EXPECT_PRED2(close, numeric(p[i]), grads[i]) << layer.name() << ": d/dparam[" << i << "]";
  // Biases are at the end: check the last ones whatever the stride skipped.
  for (size_t i = p.size() - std::min<size_t>(p.size(), 4); i < p.size(); ++i)
    EXPECT_PRED2(close, numeric(p[i]), grads[i]) << layer.name() << ": d/dbias[" << i << "]";
}

}  // namespace

TEST(GradientCheck, Linear) {
  Rng rng(1);
  Linear l(5);
  gradient_check(l, Shape{7, 1, 1}, 3, random_vector(3 * 7, rng));
}

TEST(GradientCheck, LinearOnImageInput) {
  Rng rng(2);
  Linear l(4);
  gradient_check(l, Shape{2, 3, 3}, 2, random_vector(2 * 18, rng));
}

TEST(GradientCheck, Conv2dPadded) {
  Rng rng(3);
  Conv2d c(3, 3, 1, 1);
  gradient_check(c, Shape{2, 5, 6}, 2, random_vector(2 * 2 * 5 * 6, rng));
}

TEST(GradientCheck, Conv2dStridedUnpadded) {
  Rng rng(4);
  Conv2d c(2, 3, 2, 0);
  gradient_check(c, Shape{3, 7, 7}, 2, random_vector(2 * 3 * 7 * 7, rng));
}

TEST(GradientCheck, Conv2dKernel5Pad2) {  // the CNN's blocks
  Rng rng(5);
  Conv2d c(2, 5, 1, 2);
  gradient_check(c, Shape{1, 6, 6}, 2, random_vector(2 * 36, rng));
}

TEST(GradientCheck, MaxPool2d) {
  Rng rng(6);
  MaxPool2d p(2);
  gradient_check(p, Shape{2, 5, 6}, 2, separated_vector(2 * 2 * 5 * 6, rng, 0.05f));
}

TEST(GradientCheck, MaxPool2dOverlapping) {
  Rng rng(7);
  MaxPool2d p(3, 2);
  gradient_check(p, Shape{1, 7, 7}, 2, separated_vector(2 * 49, rng, 0.05f));
}

TEST(GradientCheck, ReLU) {
  Rng rng(8);
  ReLU a;
  gradient_check(a, Shape{10, 1, 1}, 3, separated_vector(30, rng, 0.05f));
}

TEST(GradientCheck, Sigmoid) {
  Rng rng(9);
  Sigmoid a;
  gradient_check(a, Shape{10, 1, 1}, 3, random_vector(30, rng, -4.0f, 4.0f));
}

TEST(GradientCheck, SoftmaxCrossEntropy) {
  Rng rng(10);
  const size_t batch = 4, classes = 5;
  std::vector<float> z = random_vector(batch * classes, rng, -3.0f, 3.0f), g(z.size());
  const std::vector<int> labels{0, 4, 2, 2};
  const float scale = 0.25f;
  softmax_cross_entropy(z.data(), labels.data(), batch, classes, scale, g.data());
  for (size_t i = 0; i < z.size(); ++i) {
    const float keep = z[i], h = 1e-2f;
    z[i] = keep + h;
    const double fp = softmax_cross_entropy(z.data(), labels.data(), batch, classes, 1, nullptr).loss_sum;
    z[i] = keep - h;
    const double fm = softmax_cross_entropy(z.data(), labels.data(), batch, classes, 1, nullptr).loss_sum;
    z[i] = keep;
    EXPECT_NEAR(scale * (fp - fm) / (2 * h), g[i], 1e-3) << i;
  }
}

TEST(GradientCheck, SquaredError) {
  Rng rng(11);
  std::vector<float> p = random_vector(20, rng), t = random_vector(20, rng), g(20);
  const float scale = 0.1f;
  squared_error(p.data(), t.data(), 20, scale, g.data());
  for (size_t i = 0; i < p.size(); ++i) {
    const float keep = p[i], h = 1e-2f;
    p[i] = keep + h;
    const double fp = squared_error(p.data(), t.data(), 20, 1, nullptr);
    p[i] = keep - h;
    const double fm = squared_error(p.data(), t.data(), 20, 1, nullptr);
    p[i] = keep;
    EXPECT_NEAR(scale * (fp - fm) / (2 * h), g[i], 1e-4) << i;
  }
}

TEST(Forward, LinearMatchesFormula) {
  Rng rng(12);
  Linear l(3);
  l.setup(Shape{4, 1, 1}, 2);
  l.init(rng);
  std::vector<float>& p = l.params();
  for (size_t j = 0; j < 3; ++j) p[12 + j] = 0.5f * float(j);  // biases
  const std::vector<float> x = random_vector(8, rng);
  std::vector<float> y(6);
  l.forward(x.data(), y.data(), 2);
  for (size_t s = 0; s < 2; ++s)
    for (size_t j = 0; j < 3; ++j) {
      double want = p[12 + j];
      for (size_t i = 0; i < 4; ++i) want += double(p[j * 4 + i]) * x[s * 4 + i];
      EXPECT_NEAR(y[s * 3 + j], want, 1e-5);
    }
}

TEST(Forward, Conv2dMatchesDirectConvolution) {
  Rng rng(13);
  const size_t cin = 2, cout = 3, k = 3, stride = 2, pad = 1, h = 6, w = 5, batch = 2;
  Conv2d c(cout, k, stride, pad);
  const Shape out = c.setup(Shape{cin, h, w}, batch);
  ASSERT_EQ(out, (Shape{cout, 3, 3}));
  c.init(rng);
  std::vector<float>& p = c.params();
  for (size_t o = 0; o < cout; ++o) p[cout * cin * k * k + o] = 0.1f * float(o + 1);
  const std::vector<float> x = random_vector(batch * cin * h * w, rng);
  std::vector<float> y(batch * out.size());
  c.forward(x.data(), y.data(), batch);
  for (size_t s = 0; s < batch; ++s)
    for (size_t o = 0; o < cout; ++o)
      for (size_t oh = 0; oh < out.h; ++oh)
        for (size_t ow = 0; ow < out.w; ++ow) {
          double want = p[cout * cin * k * k + o];
          for (size_t ci = 0; ci < cin; ++ci)
            for (size_t ki = 0; ki < k; ++ki)
              for (size_t kj = 0; kj < k; ++kj) {
                const long ih = long(oh * stride + ki) - long(pad), iw = long(ow * stride + kj) - long(pad);
                if (ih < 0 || iw < 0 || ih >= long(h) || iw >= long(w)) continue;
                want += double(p[((o * cin + ci) * k + ki) * k + kj]) * x[((s * cin + ci) * h + size_t(ih)) * w + size_t(iw)];
              }
          EXPECT_NEAR(y[((s * cout + o) * out.h + oh) * out.w + ow], want, 1e-5);
        }
}

TEST(Forward, MaxPoolPicksTheMaximumAndDropsThePartialWindow) {
  MaxPool2d p(2);
  ASSERT_EQ(p.setup(Shape{1, 3, 5}, 1), (Shape{1, 1, 2}));
  const std::vector<float> x{1, 9, 2, 3, 7,  //
                             4, 5, 8, 6, 7,  //
                             99, 99, 99, 99, 99};
  std::vector<float> y(2), dx(15, -1.0f);
  p.forward(x.data(), y.data(), 1);
  EXPECT_EQ(y, (std::vector<float>{9, 8}));
  const std::vector<float> dy{1.5f, 2.5f};
  p.backward(x.data(), y.data(), dy.data(), dx.data(), 1);
  std::vector<float> want(15, 0.0f);
  want[1] = 1.5f;
  want[7] = 2.5f;
  EXPECT_EQ(dx, want);
}

TEST(Forward, SigmoidIsStableForLargeInputs) {
  Sigmoid s;
  s.setup(Shape{4, 1, 1}, 1);
  const std::vector<float> x{-1000.0f, -20.0f, 20.0f, 1000.0f};
  std::vector<float> y(4);
  s.forward(x.data(), y.data(), 1);
  for (float v : y) EXPECT_TRUE(std::isfinite(v));
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[3], 1.0f);
  EXPECT_NEAR(y[1], 2.06e-9f, 1e-10f);
}

TEST(Loss, SoftmaxCrossEntropyValuesAndErrors) {
  const std::vector<float> z{0, 0, 0, 10, -10, 0};
  const std::vector<int> labels{1, 0};
  const auto r = softmax_cross_entropy(z.data(), labels.data(), 2, 3, 1, nullptr);
  EXPECT_NEAR(r.loss_sum, std::log(3.0) + (10 - 0 + std::log(1 + std::exp(-20.0) + std::exp(-10.0))) - 10, 1e-6);
  EXPECT_EQ(r.correct, 1u);  // row 0 ties: the first class wins, label 1 loses; row 1 is right
  const std::vector<int> bad{1, 3};
  EXPECT_THROW(softmax_cross_entropy(z.data(), bad.data(), 2, 3, 1, nullptr), std::invalid_argument);
}

TEST(Optimizer, SgdWithMomentumFollowsItsRecurrence) {
  OptimizerConfig c;
  c.kind = OptimizerConfig::Kind::Sgd;
  c.lr = 0.5f;
  c.momentum = 0.9f;
  Optimizer opt(c, {2});
  std::vector<float> p{1.0f, -2.0f};
  const std::vector<float> g1{0.5f, 1.0f}, g2{-1.0f, 0.25f};
  opt.step(0, p.data(), g1.data());  // v = g1; p -= 0.5 v
  EXPECT_FLOAT_EQ(p[0], 0.75f);
  EXPECT_FLOAT_EQ(p[1], -2.5f);
  opt.step(0, p.data(), g2.data());  // v = 0.9 g1 + g2
  EXPECT_FLOAT_EQ(p[0], 0.75f - 0.5f * (0.45f - 1.0f));
  EXPECT_FLOAT_EQ(p[1], -2.5f - 0.5f * (0.9f + 0.25f));
}

TEST(Optimizer, AdamMatchesAReferenceInDouble) {
  OptimizerConfig c;
  c.kind = OptimizerConfig::Kind::Adam;
  c.lr = 0.01f;
  Optimizer opt(c, {3, 1});
  std::vector<float> p{0.5f, -1.0f, 2.0f};
  std::vector<double> ref(p.begin(), p.end()), m(3, 0), v(3, 0);
  const std::vector<std::vector<float>> grads{{0.1f, -0.2f, 3.0f}, {0.0f, 0.5f, -1.0f}, {1e-3f, -0.2f, 2.0f}};
  for (size_t t = 1; t <= grads.size(); ++t) {
    opt.step(0, p.data(), grads[t - 1].data());
    for (size_t i = 0; i < 3; ++i) {
      const double g = grads[t - 1][i];
      m[i] = 0.9 * m[i] + 0.1 * g;
      v[i] = 0.999 * v[i] + 0.001 * g * g;
      const double mh = m[i] / (1 - std::pow(0.9, double(t))), vh = v[i] / (1 - std::pow(0.999, double(t)));
      ref[i] -= 0.01 * mh / (std::sqrt(vh) + 1e-8);
    }
    for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(p[i], ref[i], 1e-6) << "step " << t << " entry " << i;
  }
  // Each tensor has its own step count: tensor 1's first step is a full-size step.
  std::vector<float> q{0.0f};
  const std::vector<float> gq{4.0f};
  opt.step(1, q.data(), gq.data());
  EXPECT_NEAR(q[0], -0.01f, 1e-7);
}

TEST(Optimizer, RejectsBadSettings) {
  OptimizerConfig c;
  c.lr = 0;
  EXPECT_THROW(Optimizer(c, {1}), std::invalid_argument);
  c.lr = 0.1f;
  c.momentum = 1.0f;
  EXPECT_THROW(Optimizer(c, {1}), std::invalid_argument);
  EXPECT_THROW(optimizer_kind("rmsprop"), std::invalid_argument);
}

TEST(Sequential, SeededInitialisationIsReproducible) {
  auto a = sparcl::train::make_cnn(Shape{1, 8, 8}, {3}, 16, 4);
  auto b = sparcl::train::make_cnn(Shape{1, 8, 8}, {3}, 16, 4);
  auto c = sparcl::train::make_cnn(Shape{1, 8, 8}, {3}, 16, 4);
  a->setup(4, 42);
  b->setup(4, 42);
  c->setup(4, 43);
  for (size_t i : a->trainable()) {
    EXPECT_EQ(a->layer(i).params(), b->layer(i).params());
    EXPECT_NE(a->layer(i).params(), c->layer(i).params());
  }
}

TEST(Sequential, ShapesHooksAndErrors) {
  auto m = sparcl::train::make_cnn(Shape{1, 28, 28}, {16, 32}, 2048, 10);
  m->setup(8, 1);
  EXPECT_EQ(m->output_shape(), (Shape{10, 1, 1}));
  // conv 416 + conv 12832 + fc 1568*2048+2048 + fc 2048*10+10
  EXPECT_EQ(m->param_count(), 416u + 12832u + 3213312u + 20490u);
  Rng rng(3);
  const std::vector<float> x = random_vector(2 * 784, rng);
  m->forward(x.data(), 2);
  std::vector<float> dout(20, 0.1f);
  std::vector<size_t> order;
  m->backward(x.data(), dout.data(), 2, [&](size_t i) { order.push_back(i); });
  std::vector<size_t> want(m->trainable().rbegin(), m->trainable().rend());
  EXPECT_EQ(order, want);  // last layer first
  EXPECT_THROW(m->forward(x.data(), 9), std::invalid_argument);
  auto tiny = sparcl::train::make_cnn(Shape{1, 3, 3}, {4}, 8, 2);  // pooling 2x2 of 3x3 works, 5x5 conv padded 2 too
  EXPECT_NO_THROW(tiny->setup(1, 1));
  auto broken = sparcl::train::make_cnn(Shape{1, 1, 1}, {4}, 8, 2);  // nothing to pool
  EXPECT_THROW(broken->setup(1, 1), std::invalid_argument);
  EXPECT_THROW(sparcl::train::make_autoencoder(10, {}), std::invalid_argument);
}

TEST(Sequential, AutoencoderLayout) {
  auto ae = sparcl::train::make_autoencoder(22283, {1024, 64});
  ae->setup(2, 1);
  EXPECT_EQ(ae->param_count(), 45791051u);  // the 46M-parameter model of docs/trainer.md
  const size_t b = sparcl::train::bottleneck_layer(*ae);
  EXPECT_EQ(ae->output_shape(b), (Shape{64, 1, 1}));
  EXPECT_EQ(ae->output_shape(), (Shape{22283, 1, 1}));
}

// Large-batch training: linear scaling of the learning rate with a warm-up.
TEST(LearningRate, LinearScalingRampsOverTheWarmup) {
  using sparcl::train::scaled_learning_rate;
  EXPECT_DOUBLE_EQ(scaled_learning_rate(0.1, 8, false, 0, 5, 10), 0.1);
  EXPECT_DOUBLE_EQ(scaled_learning_rate(0.1, 8, true, 0, 0, 10), 0.8);
  // 2 warm-up epochs of 10 steps: 0.1 at step 0, halfway at step 10, 0.8 from step 20.
  EXPECT_DOUBLE_EQ(scaled_learning_rate(0.1, 8, true, 2, 0, 10), 0.1);
  EXPECT_DOUBLE_EQ(scaled_learning_rate(0.1, 8, true, 2, 10, 10), 0.45);
  EXPECT_DOUBLE_EQ(scaled_learning_rate(0.1, 8, true, 2, 20, 10), 0.8);
  EXPECT_DOUBLE_EQ(scaled_learning_rate(0.1, 8, true, 2, 99, 10), 0.8);
  EXPECT_DOUBLE_EQ(scaled_learning_rate(0.1, 1, true, 2, 3, 10), 0.1);
}
