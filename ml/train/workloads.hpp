// SPDX-License-Identifier: BSD-3-Clause
// The two models of the mini-trainer (docs/trainer.md explains the sizes).
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "ml/nn/model.hpp"

namespace sparcl {
namespace train {

/// Autoencoder features -> hidden[0] -> ... -> hidden[k-1] -> ... -> hidden[0] -> features:
/// ReLU after every hidden layer except the bottleneck (hidden[k-1]), which
/// is a sigmoid (activations in (0, 1), read by node saliency); linear output.
/// Throws std::invalid_argument for an empty or zero size.
std::unique_ptr<nn::Sequential> make_autoencoder(size_t features, const std::vector<size_t>& hidden);

/// Index of the bottleneck's activation layer (the sigmoid) of make_autoencoder's model.
size_t bottleneck_layer(const nn::Sequential& autoencoder);

/// CNN: for each entry c of `channels`, conv 5x5 (c channels, padding 2) + ReLU + max-pool 2x2;
/// then fully connected `hidden` + ReLU and fully connected `classes` (logits).
std::unique_ptr<nn::Sequential> make_cnn(const nn::Shape& input, const std::vector<size_t>& channels, size_t hidden,
                                         size_t classes);

}  // namespace train
}  // namespace sparcl
