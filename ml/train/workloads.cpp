// SPDX-License-Identifier: BSD-3-Clause
#include "ml/train/workloads.hpp"

#include <stdexcept>

namespace sparcl {
namespace train {

std::unique_ptr<nn::Sequential> make_autoencoder(size_t features, const std::vector<size_t>& hidden) {
  if (features == 0 || hidden.empty()) throw std::invalid_argument("autoencoder: no features or no hidden layers");
  for (size_t h : hidden)
    if (h == 0) throw std::invalid_argument("autoencoder: a hidden layer of size 0");
  auto m = std::make_unique<nn::Sequential>(nn::Shape{features, 1, 1});
  for (size_t i = 0; i < hidden.size(); ++i) {
    m->add(std::make_unique<nn::Linear>(hidden[i]));
    if (i + 1 < hidden.size())
      m->add(std::make_unique<nn::ReLU>());
    else
      m->add(std::make_unique<nn::Sigmoid>());
  }
  for (size_t i = hidden.size() - 1; i-- > 0;) {
    m->add(std::make_unique<nn::Linear>(hidden[i]));
    m->add(std::make_unique<nn::ReLU>());
  }
  m->add(std::make_unique<nn::Linear>(features));
  return m;
}

size_t bottleneck_layer(const nn::Sequential& autoencoder) {
  for (size_t i = 0; i < autoencoder.size(); ++i)
    if (autoencoder.layer(i).name() == "sigmoid") return i;
  throw std::invalid_argument("not an autoencoder of make_autoencoder: no sigmoid layer");
}

std::unique_ptr<nn::Sequential> make_cnn(const nn::Shape& input, const std::vector<size_t>& channels, size_t hidden,
                                         size_t classes) {
  if (hidden == 0 || classes < 2) throw std::invalid_argument("cnn: hidden size 0 or fewer than 2 classes");
  auto m = std::make_unique<nn::Sequential>(input);
  for (size_t c : channels) {
    if (c == 0) throw std::invalid_argument("cnn: a convolution with 0 channels");
    m->add(std::make_unique<nn::Conv2d>(c, 5, 1, 2));
    m->add(std::make_unique<nn::ReLU>());
    m->add(std::make_unique<nn::MaxPool2d>(2));
  }
  m->add(std::make_unique<nn::Linear>(hidden));
  m->add(std::make_unique<nn::ReLU>());
  m->add(std::make_unique<nn::Linear>(classes));
  return m;
}

}  // namespace train
}  // namespace sparcl
