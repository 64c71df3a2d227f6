// SPDX-License-Identifier: BSD-3-Clause
// Value encodings on the wire (SPARCL_ENCODING / config.encoding), for every
// algorithm and every lossy encoding: results bitwise identical on all ranks
// (dense output, result object, allgather); fp16 and bf16 results within the
// error of their roundings; QSGD unbiased over repeated runs; float64
// vectors unchanged (they travel raw); ranks that disagree on the encoding,
// its bucket or checksums are told so.
//
// Error bounds. A value passes through at most H roundings on its way to the
// result (H per algorithm below), each of a partial sum whose magnitude is at
// most mag = sum over ranks of |x|. fp16 rounds to nearest with a relative
// error <= 2^-11 (normal range; absolute 2^-25 among subnormals), bf16 <=
// 2^-8; so |out - exact| <= H u mag (+ float additions). A QSGD rounding moves
// a value by less than one level, scale / s, where scale is the largest
// magnitude of the rounded partial sum's bucket; the partial sums rounded at
// one level come from disjoint groups of ranks, so together they move a value
// by less than (sum over ranks of the rank's largest |x|) / s per level.
#include <algorithm>

#include "mpi_test.hpp"
#include "sparcl/compress.h"

using namespace sparcl_testing;

namespace {

const sparcl_value_encoding_t kEncodings[] = {SPARCL_VALUES_FP16, SPARCL_VALUES_BF16, SPARCL_VALUES_QSGD8,
                                              SPARCL_VALUES_QSGD4, SPARCL_VALUES_QSGD2};

const char* encoding_label(sparcl_value_encoding_t e) {
  switch (e) {
    case SPARCL_VALUES_RAW: return "raw";
    case SPARCL_VALUES_FP16: return "fp16";
    case SPARCL_VALUES_BF16: return "bf16";
    case SPARCL_VALUES_QSGD8: return "qsgd8";
    case SPARCL_VALUES_QSGD4: return "qsgd4";
    case SPARCL_VALUES_QSGD2: return "qsgd2";
  }
  return "?";
}

int qsgd_levels(sparcl_value_encoding_t e) {
  return e == SPARCL_VALUES_QSGD8 ? 127 : e == SPARCL_VALUES_QSGD4 ? 7 : e == SPARCL_VALUES_QSGD2 ? 1 : 0;
}

// Roundings a value can pass through (see the top of the file). L = log2 of
// the largest power of two <= P; ranks beyond it fold in and out.
int roundings(sparcl_algorithm_t a, int p) {
  int levels = 0;
  while ((2 << levels) <= p) ++levels;
  const int fold = p != (1 << levels) ? 2 : 0;
  if (p == 1) return 0;
  switch (a) {
    case SPARCL_ALGO_RECURSIVE_DOUBLING: return levels + fold;
    case SPARCL_ALGO_HALVING_DOUBLING:
    case SPARCL_ALGO_HALVING_DOUBLING_HASHED: return 2 * levels + fold;
    case SPARCL_ALGO_RING: return p;   // P-1 reduce-scatter hops, one allgather encoding
    case SPARCL_ALGO_DENSE: return p;  // lossy values: the ring on the densified vector
    case SPARCL_ALGO_ALLGATHER: return 1;
    case SPARCL_ALGO_HIERARCHICAL: return 3;  // the input's slice, the host's sum, the slice's sum
    case SPARCL_ALGO_AUTO: return std::max(p, 2 * levels + fold);  // whichever it chooses
    default: return 2;                 // split: the reduce-scatter, the owner's range
  }
}

struct Param {
  sparcl_algorithm_t algorithm;
  sparcl_value_encoding_t encoding;
};

std::vector<Param> params() {
  std::vector<Param> out;
  for (auto a : kAllAlgorithms)
    for (auto e : kEncodings) out.push_back({a, e});
  return out;
}

constexpr size_t kBucket = 64;  // small, so that short vectors have several scales

sparcl_config_t config_of(const Param& p) {
  sparcl_config_t c = SPARCL_CONFIG_INIT;
  c.algorithm = p.algorithm;
  c.encoding = p.encoding;
  c.quantization_bucket = kBucket;
  c.timeout_ms = 120000;
  return c;
}

class Encodings : public ::testing::TestWithParam<Param> {
 protected:
  // Allowed |out - exact| at one index, from the sum of magnitudes there
  // and the sum over ranks of each rank's largest magnitude.
  double tolerance(double mag, double rank_maxima) const {
    const Param& p = GetParam();
    const int h = roundings(p.algorithm, world_size());
    const double adds = (h + world_size()) * 1.2e-7 * mag;
    switch (p.encoding) {
      case SPARCL_VALUES_FP16: return h * (std::ldexp(1.0, -11) * mag + std::ldexp(1.0, -25)) + adds;
      case SPARCL_VALUES_BF16: return h * std::ldexp(1.0, -8) * mag + adds;
      default: return h * rank_maxima / qsgd_levels(p.encoding) * (1 + 1e-6) + adds;
    }
  }

  // Entries of `got` farther from the exact sum than tolerance().
  size_t count_off(const Case& c, const std::vector<float>& got) const {
    std::vector<double> sum, mag;
    reference_sum<float>(c, world_size(), sum, mag);
    double rank_maxima = 0;
    for (int r = 0; r < world_size(); ++r) {
      const SparseVec<float> v = make_vector<float>(c, r, world_size());
      float m = 0;
      for (float x : v.val) m = std::max(m, std::fabs(x));
      rank_maxima += double(m);
    }
    size_t off = 0;
    for (uint64_t i = 0; i < c.dim; ++i) off += !(std::fabs(double(got[i]) - sum[i]) <= tolerance(mag[i], rank_maxima));
    return off;
  }
};

std::vector<Case> cases() {
  return {Case{1, 1.0, Pattern::Identical, false, 1},       Case{7, 0.5, Pattern::Overlapping, false, 2},
          Case{2000, 0.0, Pattern::Overlapping, false, 3},  Case{2000, 0.03, Pattern::Overlapping, false, 4},
          Case{3001, 0.4, Pattern::Overlapping, false, 5},  Case{4099, 0.02, Pattern::Disjoint, false, 6},
          Case{1500, 0.2, Pattern::Identical, false, 7}};
}

TEST_P(Encodings, IdenticalOnAllRanksAndWithinTheRoundingError) {
  Comm comm(config_of(GetParam()));
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
  const int p = world_size(), r = world_rank();
  for (const Case& c : cases()) {
    SparseVec<float> mine = make_vector<float>(c, r, p);
    sparcl_sparse_t in = mine.as_input();
    std::vector<float> out(c.dim, -1.0f);
    EXPECT_EQ(sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get()), SPARCL_SUCCESS)
        << c.describe() << ": " << comm.error();
    EXPECT_TRUE(same_on_all_ranks(out.data(), c.dim * sizeof(float))) << c.describe();
    EXPECT_EQ(count_off(c, out), 0u) << c.describe();

    sparcl_result_t res = nullptr;
    EXPECT_EQ(sparcl_allreduce_sparse(&in, nullptr, &res, comm.get()), SPARCL_SUCCESS) << comm.error();
    std::vector<float> dense(c.dim, -1.0f);
    EXPECT_EQ(sparcl_result_to_dense(res, dense.data()), SPARCL_SUCCESS);
    EXPECT_TRUE(same_on_all_ranks(dense.data(), c.dim * sizeof(float))) << c.describe();
    EXPECT_EQ(count_off(c, dense), 0u) << c.describe();
    sparcl_result_free(res);

    // The drop-in call on the dense form: the same encoding applies.
    std::vector<float> x(c.dim, 0.0f), y(c.dim);
    for (size_t k = 0; k < mine.idx.size(); ++k) x[mine.idx[k]] = mine.val[k];
    EXPECT_EQ(sparcl_allreduce(x.data(), y.data(), c.dim, SPARCL_FLOAT32, SPARCL_SUM, comm.get()), SPARCL_SUCCESS)
        << comm.error();
    EXPECT_TRUE(same_on_all_ranks(y.data(), c.dim * sizeof(float))) << c.describe();
    EXPECT_EQ(count_off(c, y), 0u) << c.describe();
  }
}

// Every rank receives bitwise the same vectors (its own as the others decode
// it), each within one rounding of what its rank sent.
TEST_P(Encodings, AllgatherIdenticalOnAllRanks) {
  Comm comm(config_of(GetParam()));
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
  const int p = world_size(), r = world_rank();
  const Case c{3000, 0.05, Pattern::Overlapping, false, 11};
  SparseVec<float> mine = make_vector<float>(c, r, p);
  sparcl_sparse_t in = mine.as_input();
  std::vector<sparcl_result_t> results(size_t(p), nullptr);
  sparcl_result_t merged = nullptr;
  ASSERT_EQ(sparcl_allgather_sparse(&in, results.data(), &merged, comm.get()), SPARCL_SUCCESS) << comm.error();
  const Param& prm = GetParam();
  for (int q = 0; q < p; ++q) {
    SparseVec<float> theirs = make_vector<float>(c, q, p);
    std::vector<float> got(c.dim), sent(c.dim, 0.0f);
    EXPECT_EQ(sparcl_result_to_dense(results[size_t(q)], got.data()), SPARCL_SUCCESS);
    EXPECT_TRUE(same_on_all_ranks(got.data(), c.dim * sizeof(float))) << "vector of rank " << q;
    for (size_t k = 0; k < theirs.idx.size(); ++k) sent[theirs.idx[k]] = theirs.val[k];
    float largest = 0;
    for (float v : sent) largest = std::max(largest, std::fabs(v));
    size_t off = 0;
    for (uint64_t i = 0; i < c.dim; ++i) {
      const double a = std::fabs(double(sent[i]));
      const double tol = prm.encoding == SPARCL_VALUES_FP16   ? std::ldexp(a, -11) + std::ldexp(1.0, -25)
                         : prm.encoding == SPARCL_VALUES_BF16 ? std::ldexp(a, -8)
                                                              : largest / qsgd_levels(prm.encoding) * (1 + 1e-6);
      off += !(std::fabs(double(got[i]) - sent[i]) <= tol);
    }
    EXPECT_EQ(off, 0u) << "vector of rank " << q;
    sparcl_result_free(results[size_t(q)]);
  }
  std::vector<float> sum(c.dim);
  EXPECT_EQ(sparcl_result_to_dense(merged, sum.data()), SPARCL_SUCCESS);
  EXPECT_TRUE(same_on_all_ranks(sum.data(), c.dim * sizeof(float)));
  sparcl_result_free(merged);
}

// QSGD is unbiased across hops: over R runs of the same allreduce (each a
// collective of its own, so with its own random draws), the signed total
// error E_t = sum_i sign(exact_i) (out_t - exact)_i has a mean within 5
// standard errors of zero (a t statistic with R - 1 degrees of freedom;
// a rounding that shrank or grew magnitudes would fail it). The draws are
// a function of the communicator, the sequence number, the rank and the
// step, so the test gives the same figures in every run.
TEST_P(Encodings, QsgdUnbiasedOverRuns) {
  const Param& prm = GetParam();
  if (!qsgd_levels(prm.encoding)) GTEST_SKIP() << "deterministic rounding";
  Comm comm(config_of(prm));
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
  const int p = world_size(), r = world_rank();
  const Case c{4000, 0.1, Pattern::Overlapping, false, 21};
  SparseVec<float> mine = make_vector<float>(c, r, p);
  for (float& v : mine.val) v = 0.25f + std::fabs(v);  // magnitudes away from 0, so that the sums do not cancel
  sparcl_sparse_t in = mine.as_input();
  std::vector<double> exact(c.dim, 0.0);
  for (int q = 0; q < p; ++q) {
    SparseVec<float> v = make_vector<float>(c, q, p);
    for (size_t k = 0; k < v.idx.size(); ++k) exact[v.idx[k]] += 0.25 + std::fabs(double(v.val[k]));
  }
  const int runs = 16;
  std::vector<double> totals;
  for (int t = 0; t < runs; ++t) {
    std::vector<float> out(c.dim);
    EXPECT_EQ(sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
    double total = 0;
    for (uint64_t i = 0; i < c.dim; ++i) total += exact[i] > 0 ? double(out[i]) - exact[i] : 0.0;
    totals.push_back(total);
  }
  double mean = 0, var = 0;
  for (double x : totals) mean += x / runs;
  for (double x : totals) var += (x - mean) * (x - mean) / (runs - 1);
  if (p == 1) {
    EXPECT_EQ(var, 0.0);  // nothing is sent, nothing rounded
    return;
  }
  EXPECT_GT(var, 0.0) << "every run should round differently";
  const double t_stat = mean / std::sqrt(var / runs);
  EXPECT_LE(std::fabs(t_stat), 5.0) << "mean total error " << mean << ", sd " << std::sqrt(var);
}

// Float64 vectors are not encoded: sums of integers stay exact.
TEST_P(Encodings, Float64TravelsRaw) {
  Comm comm(config_of(GetParam()));
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS)) << comm.error();
  const Case c{2500, 0.1, Pattern::Overlapping, true, 31};
  SparseVec<double> mine = make_vector<double>(c, world_rank(), world_size());
  sparcl_sparse_t in = mine.as_input();
  std::vector<double> out(c.dim);
  EXPECT_EQ(sparcl_allreduce_sparse(&in, out.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
  EXPECT_EQ(count_wrong<double>(c, world_size(), out), 0u);
}

INSTANTIATE_TEST_SUITE_P(AlgorithmsAndEncodings, Encodings, ::testing::ValuesIn(params()),
                         [](const ::testing::TestParamInfo<Param>& p) {
                           return algorithm_label(p.param.algorithm) + "_" + encoding_label(p.param.encoding);
                         });

// Configurations that differ between ranks are rejected at creation, on
// every rank, naming what differs.
TEST(EncodingConfig, RanksThatDisagreeAreToldAtCreation) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  const bool first = world_rank() == 0;
  struct Variant {
    const char* says;
    void (*set)(sparcl_config_t&, bool first);
  };
  const Variant variants[] = {
      {"encoding", [](sparcl_config_t& c, bool f) { c.encoding = f ? SPARCL_VALUES_FP16 : SPARCL_VALUES_RAW; }},
      {"bucket",
       [](sparcl_config_t& c, bool f) {
         c.encoding = SPARCL_VALUES_QSGD4;
         c.quantization_bucket = f ? 256 : 512;
       }},
      {"checksum", [](sparcl_config_t& c, bool f) { c.checksum = f ? 1 : 0; }},
  };
  for (const Variant& v : variants) {
    sparcl_config_t c = SPARCL_CONFIG_INIT;
    v.set(c, first);
    Comm comm(c);
    EXPECT_EQ(comm.status(), SPARCL_ERR_MISMATCH) << v.says;
    EXPECT_EQ(comm.get(), nullptr);
    const std::string msg = sparcl_comm_last_error(nullptr);
    EXPECT_NE(msg.find(v.says), std::string::npos) << msg;
  }
  // A bucket that no QSGD encoding uses does not have to agree.
  sparcl_config_t c = SPARCL_CONFIG_INIT;
  c.quantization_bucket = first ? 256 : 512;
  Comm comm(c);
  EXPECT_EQ(comm.status(), SPARCL_SUCCESS) << sparcl_comm_last_error(nullptr);
}

// Compressors with different value encodings in one compressed allreduce:
// every rank fails with SPARCL_ERR_MISMATCH naming the encoding, and the
// communicator goes on working.
TEST(EncodingConfig, CompressorsThatDisagreeAreAMismatch) {
  if (world_size() == 1) GTEST_SKIP() << "needs two ranks";
  Comm comm;
  ASSERT_TRUE(all_ranks(comm.status() == SPARCL_SUCCESS));
  const uint64_t dim = 5000;
  sparcl_compressor_config_t cc = SPARCL_COMPRESSOR_CONFIG_INIT;
  cc.values = world_rank() == 0 ? SPARCL_VALUES_FP16 : SPARCL_VALUES_BF16;
  sparcl_compressor_t compressor = nullptr;
  ASSERT_EQ(sparcl_compressor_create(&cc, dim, &compressor), SPARCL_SUCCESS);
  std::vector<float> g(dim), out(dim);
  for (uint64_t i = 0; i < dim; ++i) g[i] = float(std::sin(double(i))) * float(world_rank() + 1);
  EXPECT_EQ(sparcl_allreduce_compressed(comm.get(), compressor, g.data(), out.data()), SPARCL_ERR_MISMATCH);
  EXPECT_NE(std::string(comm.error()).find("encoding"), std::string::npos) << comm.error();
  all_ranks(true);
  sparcl_compressor_free(compressor);
  // Bad input does not end the communicator.
  std::vector<uint64_t> idx = {uint64_t(world_rank())};
  std::vector<float> val = {1.0f};
  sparcl_sparse_t in{64, 1, SPARCL_INDEX_U64, idx.data(), SPARCL_FLOAT32, val.data(), 0};
  std::vector<float> sum(64);
  EXPECT_EQ(sparcl_allreduce_sparse(&in, sum.data(), nullptr, comm.get()), SPARCL_SUCCESS) << comm.error();
}

}  // namespace
