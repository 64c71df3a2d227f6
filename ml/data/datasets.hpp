// SPDX-License-Identifier: BSD-3-Clause
// The trainer's two data sets, read from the files Debian's packages
// install (docs/trainer.md describes the formats and the normalisation):
//  - images and labels in IDX files (Fashion-MNIST, gzip'd or plain),
//  - gene-expression profiles exported by tools/export-bladder.
// Loaders validate everything they read and throw std::runtime_error with
// the file name and what is wrong.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sparcl {
namespace data {

/// Samples of one shape, one after the other, with optional integer labels.
struct Samples {
  size_t count = 0;
  size_t channels = 1, height = 1, width = 1;  // shape of one sample
  std::vector<float> values;                   // count x (channels * height * width)
  std::vector<int> labels;                     // count labels, or empty
  size_t sample_size() const { return channels * height * width; }
  const float* sample(size_t i) const { return values.data() + i * sample_size(); }
};

/// Reads an IDX image file (type ubyte, 3 dimensions) and its IDX label file
/// (ubyte, 1 dimension), each gzip'd or not; keeps the first `limit` samples
/// (0: all). Pixels are scaled to [0, 1].
Samples load_idx(const std::string& images_path, const std::string& labels_path, size_t limit = 0);

/// Fashion-MNIST from its folder ({train,t10k}-{images-idx3,labels-idx1}-ubyte.gz).
Samples load_fashion_mnist(const std::string& dir, bool train, size_t limit = 0);
/// Where Debian's dataset-fashion-mnist installs it.
extern const char* const kFashionMnistDir;

/// Class labels of the bladder data set, as stored by tools/export-bladder.
enum BladderLabel { kNormal = 0, kCancer = 1, kBiopsy = 2 };
const char* bladder_label_name(int label);

/// Gene-expression profiles: one sample per row (genes values, log2
/// expression as exported), labels (BladderLabel) and processing batches.
struct Expression {
  Samples samples;         // channels = genes
  std::vector<int> batch;  // processing batch of each sample
  size_t genes() const { return samples.channels; }
};

/// Reads a file written by tools/export-bladder (format in docs/trainer.md).
Expression load_expression(const std::string& path);

/// Splits sample indices into a training and a held-out part: `heldout`
/// samples, drawn from each label in proportion to its count (largest
/// remainders), chosen by `seed`. Both lists come back sorted.
void split_stratified(const std::vector<int>& labels, size_t heldout, uint64_t seed, std::vector<size_t>* train,
                      std::vector<size_t>* held);

/// Per-feature standardisation: each feature's mean and standard deviation
/// over the samples in `fit` (the training split only, so that the held-out
/// samples stay unseen), then x = (x - mean) / max(sd, min_sd) for every sample.
void standardize_features(Samples& s, const std::vector<size_t>& fit, float min_sd);

}  // namespace data
}  // namespace sparcl
