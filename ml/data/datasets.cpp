// SPDX-License-Identifier: BSD-3-Clause
#include "ml/data/datasets.hpp"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <numeric>
#include <stdexcept>

#include "ml/nn/rng.hpp"

namespace sparcl {
namespace data {

const char* const kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

namespace {

[[noreturn]] void bad_file(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

// A file read through zlib: gzip'd or plain, both work.
class GzFile {
 public:
  explicit GzFile(const std::string& path) : path_(path), f_(gzopen(path.c_str(), "rb")) {
    if (!f_) bad_file(path, std::string("cannot open: ") + std::strerror(errno));
  }
  ~GzFile() { gzclose(f_); }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;

  void read(void* dst, size_t n, const char* what) {
    auto* p = static_cast<unsigned char*>(dst);
    while (n > 0) {
      const unsigned chunk = unsigned(std::min<size_t>(n, 1u << 30));
      const int got = gzread(f_, p, chunk);
      if (got < 0) {
        int code = 0;
        bad_file(path_, std::string("read error in ") + what + ": " + gzerror(f_, &code));
      }
      if (got == 0) bad_file(path_, std::string("truncated: the file ends inside ") + what);
      p += got;
      n -= size_t(got);
    }
  }

 private:
  std::string path_;
  gzFile f_;
};

uint32_t big_endian32(const unsigned char* b) {
  return uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | uint32_t(b[3]);
}

uint32_t little_endian32(const unsigned char* b) {
  return uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24;
}

// IDX header: two zero bytes, the element type (0x08: unsigned byte), the
// number of dimensions, then each dimension as a big-endian 32-bit count.
std::vector<uint32_t> read_idx_header(GzFile& f, const std::string& path, size_t want_dims) {
  unsigned char magic[4];
  f.read(magic, 4, "the IDX header");
  if (magic[0] != 0 || magic[1] != 0)
    bad_file(path, "not an IDX file (the first two bytes must be zero; is it an image of another format?)");
  if (magic[2] != 0x08)
    bad_file(path, "IDX element type 0x" + std::to_string(magic[2]) + " is not unsigned byte (0x08)");
  if (magic[3] != want_dims)
    bad_file(path, "IDX file has " + std::to_string(magic[3]) + " dimensions, expected " + std::to_string(want_dims));
  std::vector<uint32_t> dims(want_dims);
  for (size_t d = 0; d < want_dims; ++d) {
    unsigned char b[4];
    f.read(b, 4, "the IDX dimensions");
    dims[d] = big_endian32(b);
    if (dims[d] == 0) bad_file(path, "IDX dimension " + std::to_string(d) + " is zero");
  }
  return dims;
}

}  // namespace

Samples load_idx(const std::string& images_path, const std::string& labels_path, size_t limit) {
  GzFile images(images_path), labels(labels_path);
  const auto idims = read_idx_header(images, images_path, 3);
  const auto ldims = read_idx_header(labels, labels_path, 1);
  if (idims[0] != ldims[0])
    bad_file(labels_path, std::to_string(ldims[0]) + " labels for " + std::to_string(idims[0]) + " images in " +
                              images_path);
  if (uint64_t(idims[1]) * idims[2] > (1u << 24))
    bad_file(images_path, "images of " + std::to_string(idims[1]) + "x" + std::to_string(idims[2]) +
                              " pixels are implausibly large");
  Samples s;
  s.count = limit ? std::min<size_t>(limit, idims[0]) : idims[0];
  s.height = idims[1];
  s.width = idims[2];
  const size_t pixels = s.count * s.sample_size();
  std::vector<unsigned char> raw(pixels);
  images.read(raw.data(), pixels, "the pixels");
  s.values.resize(pixels);
  for (size_t i = 0; i < pixels; ++i) s.values[i] = float(raw[i]) * (1.0f / 255.0f);
  raw.resize(s.count);
  labels.read(raw.data(), s.count, "the labels");
  s.labels.assign(raw.begin(), raw.end());
  return s;
}

Samples load_fashion_mnist(const std::string& dir, bool train, size_t limit) {
  const std::string prefix = dir + "/" + (train ? "train" : "t10k");
  return load_idx(prefix + "-images-idx3-ubyte.gz", prefix + "-labels-idx1-ubyte.gz", limit);
}

const char* bladder_label_name(int label) {
  switch (label) {
    case kNormal: return "normal";
    case kCancer: return "cancer";
    case kBiopsy: return "biopsy";
  }
  return "unknown";
}

// Format (tools/export-bladder, docs/trainer.md), all little-endian:
//   "SPXPR001"  8 bytes
//   uint32 samples, uint32 genes
//   int32 label[samples], int32 batch[samples]
//   float32 value[samples][genes]
Expression load_expression(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) bad_file(path, std::string("cannot open: ") + std::strerror(errno) +
                              " (export it with tools/export-bladder " + path + ")");
  in.seekg(0, std::ios::end);
  const uint64_t size = uint64_t(in.tellg());
  in.seekg(0);
  unsigned char head[16];
  if (size < sizeof head || !in.read(reinterpret_cast<char*>(head), sizeof head))
    bad_file(path, "too short for the header (" + std::to_string(size) + " bytes)");
  if (std::memcmp(head, "SPXPR001", 8) != 0)
    bad_file(path, "not an expression file of tools/export-bladder (magic SPXPR001 missing)");
  const uint32_t samples = little_endian32(head + 8), genes = little_endian32(head + 12);
  if (samples == 0 || genes == 0) bad_file(path, "no samples or no genes");
  const uint64_t want = 16 + 8 * uint64_t(samples) + 4 * uint64_t(samples) * genes;
  if (size != want)
    bad_file(path, "size " + std::to_string(size) + " bytes does not match " + std::to_string(samples) +
                       " samples x " + std::to_string(genes) + " genes (" + std::to_string(want) + " bytes)");
  std::vector<unsigned char> raw(size - 16);
  if (!in.read(reinterpret_cast<char*>(raw.data()), std::streamsize(raw.size()))) bad_file(path, "read error");
  Expression e;
  Samples& s = e.samples;
  s.count = samples;
  s.channels = genes;
  s.labels.resize(samples);
  e.batch.resize(samples);
  const unsigned char* p = raw.data();
  for (uint32_t i = 0; i < samples; ++i, p += 4) {
    s.labels[i] = int(int32_t(little_endian32(p)));
    if (s.labels[i] < kNormal || s.labels[i] > kBiopsy)
      bad_file(path, "sample " + std::to_string(i) + " has label " + std::to_string(s.labels[i]) +
                         " (0 normal, 1 cancer, 2 biopsy)");
  }
  for (uint32_t i = 0; i < samples; ++i, p += 4) e.batch[i] = int(int32_t(little_endian32(p)));
  s.values.resize(size_t(samples) * genes);
  for (size_t i = 0; i < s.values.size(); ++i, p += 4) {
    const uint32_t bits = little_endian32(p);
    float v;
    std::memcpy(&v, &bits, 4);
    if (!std::isfinite(v))
      bad_file(path, "value of gene " + std::to_string(i % genes) + " in sample " + std::to_string(i / genes) +
                         " is not finite");
    s.values[i] = v;
  }
  return e;
}

void split_stratified(const std::vector<int>& labels, size_t heldout, uint64_t seed, std::vector<size_t>* train,
                      std::vector<size_t>* held) {
  const size_t n = labels.size();
  if (heldout >= n)
    throw std::invalid_argument("cannot hold out " + std::to_string(heldout) + " of " + std::to_string(n) +
                                " samples: none would be left to train on");
  std::vector<int> classes(labels);
  std::sort(classes.begin(), classes.end());
  classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
  // Quota of each class: its share of `heldout`, largest remainders first.
  std::vector<size_t> count(classes.size(), 0), quota(classes.size(), 0);
  for (int l : labels) ++count[size_t(std::lower_bound(classes.begin(), classes.end(), l) - classes.begin())];
  std::vector<std::pair<double, size_t>> remainder;
  size_t given = 0;
  for (size_t c = 0; c < classes.size(); ++c) {
    const double exact = double(heldout) * double(count[c]) / double(n);
    quota[c] = size_t(exact);
    given += quota[c];
    remainder.emplace_back(exact - double(quota[c]), c);
  }
  std::sort(remainder.begin(), remainder.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  for (size_t j = 0; given < heldout; ++j, ++given) ++quota[remainder[j % remainder.size()].second];
  nn::Rng rng(seed);
  train->clear();
  held->clear();
  for (size_t c = 0; c < classes.size(); ++c) {
    std::vector<size_t> members;
    for (size_t i = 0; i < n; ++i)
      if (labels[i] == classes[c]) members.push_back(i);
    rng.shuffle(members);
    held->insert(held->end(), members.begin(), members.begin() + std::ptrdiff_t(quota[c]));
    train->insert(train->end(), members.begin() + std::ptrdiff_t(quota[c]), members.end());
  }
  std::sort(train->begin(), train->end());
  std::sort(held->begin(), held->end());
}

void standardize_features(Samples& s, const std::vector<size_t>& fit, float min_sd) {
  if (fit.empty()) throw std::invalid_argument("standardize_features: no samples to fit on");
  const size_t f = s.sample_size();
  std::vector<double> sum(f, 0.0), sq(f, 0.0);
  for (size_t i : fit) {
    if (i >= s.count) throw std::invalid_argument("standardize_features: sample index out of range");
    const float* x = s.sample(i);
    for (size_t j = 0; j < f; ++j) sum[j] += x[j];
  }
  const double n = double(fit.size());
  for (size_t j = 0; j < f; ++j) sum[j] /= n;  // now the mean
  for (size_t i : fit) {
    const float* x = s.sample(i);
    for (size_t j = 0; j < f; ++j) sq[j] += (x[j] - sum[j]) * (x[j] - sum[j]);
  }
  std::vector<float> mean(f), inv_sd(f);
  for (size_t j = 0; j < f; ++j) {
    mean[j] = float(sum[j]);
    inv_sd[j] = float(1.0 / std::max(std::sqrt(sq[j] / n), double(min_sd)));
  }
  for (size_t i = 0; i < s.count; ++i) {
    float* x = s.values.data() + i * f;
    for (size_t j = 0; j < f; ++j) x[j] = (x[j] - mean[j]) * inv_sd[j];
  }
}

}  // namespace data
}  // namespace sparcl
