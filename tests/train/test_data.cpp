// SPDX-License-Identifier: BSD-3-Clause
// Data loaders: IDX files (gzip'd and plain, and broken ones), the
// expression file of tools/export-bladder, the split and the normalisation;
// the real files of Debian's packages when they are installed.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "ml/data/datasets.hpp"

using namespace sparcl::data;

namespace {

// A folder of this test's own, removed when the tests end.
class TempDir : public ::testing::Environment {
 public:
  void TearDown() override {
    if (!path.empty()) std::system(("rm -rf '" + path + "'").c_str());
  }
  std::string path;
};
TempDir* const temp_env = static_cast<TempDir*>(::testing::AddGlobalTestEnvironment(new TempDir));

std::string temp_dir() {
  if (temp_env->path.empty()) {
    char tmpl[] = "/tmp/sparcl-train-data-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    temp_env->path = tmpl;
  }
  return temp_env->path;
}

void put_be32(std::vector<unsigned char>& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back((unsigned char)(v >> s));
}

std::vector<unsigned char> idx_images(uint32_t n, uint32_t rows, uint32_t cols) {
  std::vector<unsigned char> b{0, 0, 0x08, 3};
  put_be32(b, n);
  put_be32(b, rows);
  put_be32(b, cols);
  for (uint32_t i = 0; i < n * rows * cols; ++i) b.push_back((unsigned char)(i * 7 % 256));
  return b;
}

std::vector<unsigned char> idx_labels(uint32_t n) {
  std::vector<unsigned char> b{0, 0, 0x08, 1};
  put_be32(b, n);
  for (uint32_t i = 0; i < n; ++i) b.push_back((unsigned char)(i % 10));
  return b;
}

std::string write_file(const std::string& name, const std::vector<unsigned char>& bytes, bool gzip) {
  const std::string path = temp_dir() + "/" + name;
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    EXPECT_NE(f, nullptr);
    EXPECT_EQ(gzwrite(f, bytes.data(), unsigned(bytes.size())), int(bytes.size()));
    gzclose(f);
  } else {
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  }
  return path;
}

// The message of the exception `f` throws ("" if none).
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

void put_le32(std::vector<unsigned char>& b, uint32_t v) {
  for (int s = 0; s < 32; s += 8) b.push_back((unsigned char)(v >> s));
}

std::vector<unsigned char> expression_file(uint32_t samples, uint32_t genes, const std::vector<int>& labels) {
  std::vector<unsigned char> b{'S', 'P', 'X', 'P', 'R', '0', '0', '1'};
  put_le32(b, samples);
  put_le32(b, genes);
  for (uint32_t i = 0; i < samples; ++i) put_le32(b, uint32_t(labels[i]));
  for (uint32_t i = 0; i < samples; ++i) put_le32(b, i % 3 + 1);
  for (uint32_t i = 0; i < samples * genes; ++i) {
    const float v = 2.5f + 0.25f * float(i);
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    put_le32(b, bits);
  }
  return b;
}

}  // namespace

TEST(Idx, ReadsGzipAndPlainFiles) {
  for (bool gz : {true, false}) {
    const std::string img = write_file(gz ? "a.idx3.gz" : "a.idx3", idx_images(5, 3, 4), gz);
    const std::string lab = write_file(gz ? "a.idx1.gz" : "a.idx1", idx_labels(5), gz);
    const Samples s = load_idx(img, lab);
    ASSERT_EQ(s.count, 5u);
    EXPECT_EQ(s.height, 3u);
    EXPECT_EQ(s.width, 4u);
    ASSERT_EQ(s.values.size(), 60u);
    EXPECT_FLOAT_EQ(s.values[13], float(13 * 7 % 256) / 255.0f);
    EXPECT_EQ(s.labels, (std::vector<int>{0, 1, 2, 3, 4}));
    EXPECT_EQ(load_idx(img, lab, 2).count, 2u);
    EXPECT_EQ(load_idx(img, lab, 99).count, 5u);
  }
}

TEST(Idx, RejectsBrokenFiles) {
  const std::string img = write_file("b.idx3.gz", idx_images(4, 2, 2), true);
  const std::string lab = write_file("b.idx1.gz", idx_labels(4), true);
  EXPECT_NE(error_of([&] { load_idx(temp_dir() + "/missing.gz", lab); }).find("cannot open"), std::string::npos);
  EXPECT_NE(error_of([&] { load_idx(lab, lab); }).find("dimensions"), std::string::npos);
  const std::string five = write_file("c.idx1.gz", idx_labels(5), true);
  EXPECT_NE(error_of([&] { load_idx(img, five); }).find("5 labels for 4 images"), std::string::npos);
  auto cut = idx_images(4, 2, 2);
  cut.resize(cut.size() - 3);
  const std::string short_img = write_file("d.idx3.gz", cut, true);
  EXPECT_NE(error_of([&] { load_idx(short_img, lab); }).find("truncated"), std::string::npos);
  auto png = idx_images(4, 2, 2);
  png[0] = 0x89;
  const std::string not_idx = write_file("e.idx3", png, false);
  EXPECT_NE(error_of([&] { load_idx(not_idx, lab); }).find("not an IDX file"), std::string::npos);
  auto ints = idx_images(4, 2, 2);
  ints[2] = 0x0C;
  const std::string int_idx = write_file("f.idx3", ints, false);
  EXPECT_NE(error_of([&] { load_idx(int_idx, lab); }).find("not unsigned byte"), std::string::npos);
}

TEST(Idx, FashionMnistFromDebian) {
  const std::string dir = kFashionMnistDir;
  if (access((dir + "/t10k-images-idx3-ubyte.gz").c_str(), R_OK) != 0)
    GTEST_SKIP() << "dataset-fashion-mnist is not installed (" << dir << ")";
  const Samples s = load_fashion_mnist(dir, false, 500);
  ASSERT_EQ(s.count, 500u);
  EXPECT_EQ(s.height, 28u);
  EXPECT_EQ(s.width, 28u);
  std::set<int> classes(s.labels.begin(), s.labels.end());
  EXPECT_EQ(classes.size(), 10u);
  EXPECT_EQ(*classes.begin(), 0);
  EXPECT_EQ(*classes.rbegin(), 9);
  float lo = 1, hi = 0;
  for (float v : s.values) lo = std::min(lo, v), hi = std::max(hi, v);
  EXPECT_EQ(lo, 0.0f);
  EXPECT_EQ(hi, 1.0f);
}

TEST(Expression, ReadsTheExportFormat) {
  const std::vector<int> labels{kNormal, kCancer, kBiopsy, kCancer};
  const std::string path = write_file("e.bin", expression_file(4, 3, labels), false);
  const Expression e = load_expression(path);
  EXPECT_EQ(e.samples.count, 4u);
  EXPECT_EQ(e.genes(), 3u);
  EXPECT_EQ(e.samples.labels, labels);
  EXPECT_EQ(e.batch, (std::vector<int>{1, 2, 3, 1}));
  EXPECT_FLOAT_EQ(e.samples.sample(2)[1], 2.5f + 0.25f * 7);
}

TEST(Expression, RejectsBrokenFiles) {
  const std::vector<int> labels{0, 1};
  auto b = expression_file(2, 3, labels);
  EXPECT_NE(error_of([&] { load_expression(temp_dir() + "/none.bin"); }).find("tools/export-bladder"), std::string::npos);
  auto longer = b;
  longer.push_back(0);
  EXPECT_NE(error_of([&] { load_expression(write_file("x1.bin", longer, false)); }).find("does not match"),
            std::string::npos);
  auto magic = b;
  magic[3] = 'Q';
  EXPECT_NE(error_of([&] { load_expression(write_file("x2.bin", magic, false)); }).find("magic"), std::string::npos);
  auto label = b;
  label[16] = 7;
  EXPECT_NE(error_of([&] { load_expression(write_file("x3.bin", label, false)); }).find("has label 7"),
            std::string::npos);
  auto nan = b;
  const uint32_t qnan = 0x7fc00000u;
  std::memcpy(nan.data() + nan.size() - 4, &qnan, 4);
  EXPECT_NE(error_of([&] { load_expression(write_file("x4.bin", nan, false)); }).find("not finite"), std::string::npos);
}

TEST(Expression, StratifiedSplit) {
  std::vector<int> labels;
  for (int i = 0; i < 57; ++i) labels.push_back(i < 8 ? kNormal : i < 48 ? kCancer : kBiopsy);
  std::vector<size_t> train, held, train2, held2;
  split_stratified(labels, 12, 1, &train, &held);
  ASSERT_EQ(held.size(), 12u);
  ASSERT_EQ(train.size(), 45u);
  std::set<size_t> all(train.begin(), train.end());
  all.insert(held.begin(), held.end());
  EXPECT_EQ(all.size(), 57u);
  size_t counts[3] = {0, 0, 0};
  for (size_t i : held) ++counts[labels[i]];
  // 12 * 8/57 = 1.68, 12 * 40/57 = 8.42, 12 * 9/57 = 1.89: largest remainders give 2, 8, 2.
  EXPECT_EQ(counts[kNormal], 2u);
  EXPECT_EQ(counts[kCancer], 8u);
  EXPECT_EQ(counts[kBiopsy], 2u);
  split_stratified(labels, 12, 1, &train2, &held2);
  EXPECT_EQ(held, held2);
  split_stratified(labels, 12, 2, &train2, &held2);
  EXPECT_NE(held, held2);
  EXPECT_THROW(split_stratified(labels, 57, 1, &train, &held), std::invalid_argument);
}

TEST(Expression, StandardizeWithTheFitSamplesOnly) {
  Samples s;
  s.count = 4;
  s.channels = 2;
  s.values = {1, 5, 3, 5, 5, 5, 100, -100};  // feature 1 is constant on the fit samples
  standardize_features(s, {0, 1, 2}, 0.1f);
  // Feature 0: mean 3, sd sqrt(8/3); feature 1: mean 5, sd 0 -> floor 0.1.
  const float sd0 = std::sqrt(8.0f / 3.0f);
  EXPECT_FLOAT_EQ(s.values[0], -2 / sd0);
  EXPECT_FLOAT_EQ(s.values[2], 0);
  EXPECT_FLOAT_EQ(s.values[4], 2 / sd0);
  EXPECT_FLOAT_EQ(s.values[1], 0);
  EXPECT_FLOAT_EQ(s.values[6], 97 / sd0);  // the held-out sample uses the training statistics
  EXPECT_FLOAT_EQ(s.values[7], -105 / 0.1f);
}

// The real export: runs tools/export-bladder (about 2 s), skipped without R.
TEST(Expression, BladderbatchExport) {
  const std::string out = temp_dir() + "/bladder.bin";
  const std::string cmd = std::string("bash ") + SPARCL_SOURCE_DIR + "/tools/export-bladder " + out + " >/dev/null";
  const int rc = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(rc));
  if (WEXITSTATUS(rc) == 77) GTEST_SKIP() << "R or r-bioc-bladderbatch is not installed (tools/deps.sh)";
  ASSERT_EQ(WEXITSTATUS(rc), 0);
  const Expression e = load_expression(out);
  EXPECT_EQ(e.samples.count, 57u);
  EXPECT_EQ(e.genes(), 22283u);
  size_t counts[3] = {0, 0, 0};
  for (int l : e.samples.labels) ++counts[l];
  EXPECT_EQ(counts[kNormal], 8u);
  EXPECT_EQ(counts[kCancer], 40u);
  EXPECT_EQ(counts[kBiopsy], 9u);
  float lo = 1e9f, hi = -1e9f;
  for (float v : e.samples.values) lo = std::min(lo, v), hi = std::max(hi, v);
  EXPECT_GT(lo, 2.0f);  // log2 expression, 2.8 .. 14.0
  EXPECT_LT(hi, 15.0f);
  std::remove(out.c_str());
}
