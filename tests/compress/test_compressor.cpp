// SPDX-License-Identifier: BSD-3-Clause
// Error feedback (ml/compress/compressor.*) and the C API of
// include/sparcl/compress.h in one process: sent + kept == input exactly
// (raw values) at every step and for every method, conservation of the sum
// over many steps, DGC momentum correction against a reference, quantized
// values with the rounding error fed back, and argument validation.
#include <gtest/gtest.h>

#include "ml/compress/compressor.hpp"
#include "sparcl/compress.h"
#include "test_util.hpp"

namespace {

using namespace ctest;
using cz::Compressor;
using cz::CompressorOptions;
using cz::Method;
using cz::ValueCodec;

const Method kAllMethods[] = {Method::None, Method::TopK, Method::TopKBucket, Method::ApproxTopK, Method::Threshold,
                              Method::RandomK};

CompressorOptions options(Method m, ValueCodec codec = ValueCodec::Raw) {
  CompressorOptions o;
  o.method = m;
  o.density = 0.02;
  o.threshold = 1.5f;
  o.bucket = 100;
  o.codec = codec;
  o.seed = 99;
  return o;
}

std::vector<float> dense_of(const cz::Selection& s, size_t n) {
  std::vector<float> d(n, 0.0f);
  for (size_t j = 0; j < s.size(); ++j) d[s.idx[j]] = s.val[j];
  return d;
}

// At every step, for every method: acc = residual_before + grad (float add,
// as the compressor does it); afterwards sent[i] + residual[i] == acc[i]
// bit for bit (sent entries leave residual 0, the others keep acc).
TEST(ErrorFeedback, SentPlusKeptEqualsInputExactly) {
  const size_t n = 20000;
  for (Method m : kAllMethods) {
    SCOPED_TRACE(cz::method_name(m));
    Compressor c(options(m), n);
    std::vector<float> residual(n, 0.0f);
    for (int step = 0; step < 6; ++step) {
      const auto g = make_data(step % 2 ? Dist::Normal : Dist::Cauchy, n, uint64_t(step) + 1);
      std::vector<float> acc(n);
      for (size_t i = 0; i < n; ++i) acc[i] = residual[i] + g[i];
      const cz::Selection& sel = c.compress(g.data());
      ASSERT_TRUE(well_formed(sel, acc));  // sent values are acc's, bit for bit
      const float* r = c.residual();
      const auto sent = dense_of(sel, n);
      std::vector<bool> in_s(n, false);
      for (size_t j = 0; j < sel.size(); ++j) in_s[sel.idx[j]] = true;
      for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(cz::float_bits(in_s[i] ? sent[i] : r[i]), cz::float_bits(acc[i])) << "step " << step << " i " << i;
        if (in_s[i]) {
          ASSERT_EQ(r[i], 0.0f);
        }
      }
      residual.assign(r, r + n);
    }
  }
}

// Gradients that are multiples of 2^-12 below 2^6 keep every float sum
// exact, so over many steps sum(sent) + final residual == sum(grads) exactly.
TEST(ErrorFeedback, ConservesTheSumOverManySteps) {
  const size_t n = 5000, steps = 200;
  for (Method m : kAllMethods) {
    SCOPED_TRACE(cz::method_name(m));
    CompressorOptions o = options(m);
    o.threshold = 3.0f;
    Compressor c(o, n);
    std::vector<double> sent_total(n, 0.0), grad_total(n, 0.0);
    std::mt19937 rng(5);
    std::uniform_int_distribution<int> q(-4096, 4096);
    std::vector<float> g(n);
    for (size_t s = 0; s < steps; ++s) {
      for (size_t i = 0; i < n; ++i) {
        g[i] = float(q(rng)) * 0x1p-12f;
        grad_total[i] += g[i];
      }
      const auto& sel = c.compress(g.data());
      for (size_t j = 0; j < sel.size(); ++j) sent_total[sel.idx[j]] += sel.val[j];
    }
    const float* r = c.residual();
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(sent_total[i] + double(r[i]), grad_total[i]) << i;
  }
}

// DGC momentum correction: u = m u + g; v = v + u; select from v; on the
// selected entries both u and v are cleared. Checked against a direct
// implementation of those lines (same float operations, same order).
TEST(ErrorFeedback, MomentumCorrectionMatchesReference) {
  const size_t n = 10000;
  CompressorOptions o = options(Method::TopK);
  o.momentum = 0.9f;
  Compressor c(o, n);
  std::vector<float> u(n, 0.0f), v(n, 0.0f);
  cz::SelectWorkspace ws;
  cz::Selection expected;
  for (int step = 0; step < 8; ++step) {
    const auto g = make_data(Dist::Normal, n, uint64_t(step) + 40);
    for (size_t i = 0; i < n; ++i) {
      u[i] = 0.9f * u[i] + g[i];
      v[i] += u[i];
    }
    cz::select_topk(v.data(), n, c.k(), expected, ws);
    const auto& sel = c.compress(g.data());
    ASSERT_EQ(indices_of(sel), indices_of(expected)) << "step " << step;
    for (size_t j = 0; j < sel.size(); ++j) {
      ASSERT_EQ(sel.val[j], v[sel.idx[j]]);
      u[sel.idx[j]] = 0.0f;
      v[sel.idx[j]] = 0.0f;
    }
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(c.residual()[i], v[i]);
      ASSERT_EQ(c.velocity()[i], u[i]);
    }
  }
}

// With a lossy codec the rounding error stays in the residual: sent + kept
// equals acc up to the rounding of one subtraction.
TEST(ErrorFeedback, QuantizedValuesFeedBackTheirRoundingError) {
  const size_t n = 30000;
  for (ValueCodec codec : {ValueCodec::Fp16, ValueCodec::Bf16, ValueCodec::Qsgd8, ValueCodec::Qsgd4, ValueCodec::Qsgd2}) {
    SCOPED_TRACE(cz::value_codec_name(codec));
    Compressor c(options(Method::ApproxTopK, codec), n);
    std::vector<float> residual(n, 0.0f);
    double sent_total = 0, grad_total = 0;
    for (int step = 0; step < 10; ++step) {
      const auto g = make_data(Dist::Normal, n, uint64_t(step) + 7);
      std::vector<float> acc(n);
      for (size_t i = 0; i < n; ++i) {
        acc[i] = residual[i] + g[i];
        grad_total += g[i];
      }
      const auto& sel = c.compress(g.data(), 3);
      const float* r = c.residual();
      std::vector<bool> in_s(n, false);
      for (size_t j = 0; j < sel.size(); ++j) {
        const uint32_t i = sel.idx[j];
        in_s[i] = true;
        sent_total += sel.val[j];
        const double err = double(sel.val[j]) + double(r[i]) - double(acc[i]);
        ASSERT_LE(std::fabs(err), std::ldexp(std::fabs(double(r[i])), -23) + 1e-30) << i;
      }
      for (size_t i = 0; i < n; ++i)
        if (!in_s[i]) {
          ASSERT_EQ(r[i], acc[i]);
        }
      residual.assign(r, r + n);
    }
    double kept = 0;
    for (float x : residual) kept += x;
    EXPECT_NEAR(sent_total + kept, grad_total, 1e-6 * n);
  }
}

// Values encoded by the collective (compress(..., false), as
// sparcl_allreduce_compressed does): the selection holds acc itself, the
// residual on it is what sent_as() says was lost (acc - received, bit for
// bit, 0 where that is not finite), entries never reported reached the sum
// exactly, and unsend() puts acc back exactly.
TEST(ErrorFeedback, EncodedByTheCollective) {
  const size_t n = 30000;
  for (ValueCodec codec : {ValueCodec::Raw, ValueCodec::Fp16, ValueCodec::Qsgd4}) {
    SCOPED_TRACE(cz::value_codec_name(codec));
    Compressor c(options(Method::TopK, codec), n);
    const auto g = make_data(Dist::Normal, n, 3);
    const cz::Selection& sel = c.compress(g.data(), 0, false);
    ASSERT_TRUE(well_formed(sel, g));  // unrounded: acc's values (acc == g at the first step)
    const float* r = c.residual();
    for (size_t j = 0; j < sel.size(); ++j) ASSERT_EQ(r[sel.idx[j]], 0.0f);
    // The collective reports the first half of the selection as received rounded.
    const size_t half = sel.size() / 2;
    std::vector<float> received(half);
    for (size_t j = 0; j < half; ++j) received[j] = j == 3 ? INFINITY : std::nearbyint(sel.val[j] * 8) / 8;
    c.sent_as(0, half, received.data());
    for (size_t j = 0; j < sel.size(); ++j) {
      const float want = j >= half ? 0.0f : j == 3 ? 0.0f : sel.val[j] - received[j];
      ASSERT_EQ(cz::float_bits(r[sel.idx[j]]), cz::float_bits(want)) << j;
    }
    c.unsend();
    size_t differ = 0;
    for (size_t i = 0; i < n; ++i) differ += cz::float_bits(r[i]) != cz::float_bits(g[i]);
    EXPECT_EQ(differ, 0u);
    EXPECT_EQ(status_of([&] { c.sent_as(half, sel.size(), received.data()); }), SPARCL_ERR_INTERNAL);
  }
  // In the usual mode the compressor rounds, and nothing may be reported.
  Compressor local(options(Method::TopK, ValueCodec::Fp16), n);
  const auto g = make_data(Dist::Normal, n, 4);
  local.compress(g.data());
  float one = 1.0f;
  EXPECT_EQ(status_of([&] { local.sent_as(0, 1, &one); }), SPARCL_ERR_INTERNAL);
  // QSGD still refuses NaN and Inf before anything is sent.
  Compressor q(options(Method::None, ValueCodec::Qsgd8), 100);
  std::vector<float> bad(100, 1.0f);
  bad[42] = NAN;
  EXPECT_EQ(status_of([&] { q.compress(bad.data(), 0, false); }), SPARCL_ERR_INVALID_ARG);
}

TEST(ErrorFeedback, Fp16OverflowLeavesNoInfiniteResidual) {
  CompressorOptions o = options(Method::TopK, ValueCodec::Fp16);
  o.k = 1;
  Compressor c(o, 10);
  std::vector<float> g(10, 0.0f);
  g[3] = 1e6f;
  const auto& sel = c.compress(g.data());
  ASSERT_EQ(sel.size(), 1u);
  EXPECT_EQ(sel.idx[0], 3u);
  EXPECT_TRUE(std::isinf(sel.val[0]));
  EXPECT_EQ(c.residual()[3], 0.0f);
}

TEST(ErrorFeedback, NanIsSentNotKept) {
  CompressorOptions o = options(Method::TopK);
  o.k = 2;
  Compressor c(o, 100);
  std::vector<float> g(100, 1.0f);
  g[42] = std::nanf("");
  const auto& sel = c.compress(g.data());
  EXPECT_EQ(indices_of(sel), (std::vector<uint32_t>{0, 42}));
  EXPECT_EQ(c.residual()[42], 0.0f);
  std::fill(g.begin(), g.end(), 0.0f);
  c.compress(g.data());
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(std::isnan(c.residual()[i]));
}

TEST(Compressor, WithoutErrorFeedbackSendsFromTheGradient) {
  CompressorOptions o = options(Method::TopK);
  o.error_feedback = false;
  Compressor c(o, 1000);
  EXPECT_EQ(c.residual(), nullptr);
  const auto g = make_data(Dist::Normal, 1000, 1);
  for (int step = 0; step < 3; ++step) {
    const auto& sel = c.compress(g.data());
    EXPECT_EQ(indices_of(sel), reference_topk(g, 20));  // the same every step: nothing is remembered
  }
}

TEST(Compressor, RandomKSameIndicesAcrossRanks) {
  CompressorOptions o = options(Method::RandomK);
  Compressor a(o, 5000), b(o, 5000);
  for (int step = 0; step < 4; ++step) {
    const auto ga = make_data(Dist::Normal, 5000, uint64_t(step));
    const auto gb = make_data(Dist::Uniform, 5000, uint64_t(step) + 100);
    EXPECT_EQ(indices_of(a.compress(ga.data(), 0)), indices_of(b.compress(gb.data(), 1)));
  }
}

TEST(Compressor, KFromDensityAndValidation) {
  CompressorOptions o = options(Method::TopK);
  o.density = 0.01;
  EXPECT_EQ(Compressor(o, 1000).k(), 10u);
  EXPECT_EQ(Compressor(o, 10).k(), 1u);  // at least one
  o.k = 5000;
  EXPECT_EQ(Compressor(o, 1000).k(), 1000u);  // at most dim
  auto st = [](CompressorOptions bad, uint64_t dim = 100) { return status_of([&] { Compressor c(bad, dim); }); };
  CompressorOptions bad = options(Method::TopK);
  bad.density = 0;
  EXPECT_EQ(st(bad), SPARCL_ERR_INVALID_ARG);
  bad = options(Method::TopK);
  bad.momentum = 1.0f;
  EXPECT_EQ(st(bad), SPARCL_ERR_INVALID_ARG);
  bad = options(Method::TopK);
  bad.momentum = 0.5f;
  bad.error_feedback = false;
  EXPECT_EQ(st(bad), SPARCL_ERR_INVALID_ARG);
  bad = options(Method::Threshold);
  bad.threshold = -1;
  EXPECT_EQ(st(bad), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(st(options(Method::TopK), 0), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(st(options(Method::TopK), uint64_t(1) << 32), SPARCL_ERR_UNSUPPORTED);
}

// --- C API ---

TEST(CApi, CompressDecompressRoundTrip) {
  sparcl_compressor_config_t cfg = SPARCL_COMPRESSOR_CONFIG_INIT;
  cfg.method = SPARCL_COMPRESS_APPROX_TOPK;
  cfg.density = 0.05;
  sparcl_compressor_t c = nullptr;
  ASSERT_EQ(sparcl_compressor_create(&cfg, 4000, &c), SPARCL_SUCCESS) << sparcl_comm_last_error(nullptr);
  const auto g = make_data(Dist::Normal, 4000, 1);
  sparcl_sparse_t s;
  ASSERT_EQ(sparcl_compress(c, g.data(), &s), SPARCL_SUCCESS);
  EXPECT_EQ(s.dim, 4000u);
  EXPECT_GE(s.nnz, 200u);
  EXPECT_LE(s.nnz, 220u);
  EXPECT_EQ(s.index_type, SPARCL_INDEX_U32);
  EXPECT_EQ(s.value_type, SPARCL_FLOAT32);
  EXPECT_EQ(s.flags, 0u);
  std::vector<float> dense(4000, -1.0f);
  ASSERT_EQ(sparcl_decompress(&s, dense.data()), SPARCL_SUCCESS);
  const float* r = sparcl_compressor_residual(c);
  ASSERT_NE(r, nullptr);
  for (size_t i = 0; i < 4000; ++i) EXPECT_EQ(dense[i] + r[i], g[i]);
  ASSERT_EQ(sparcl_compressor_reset(c), SPARCL_SUCCESS);
  for (size_t i = 0; i < 4000; ++i) EXPECT_EQ(r[i], 0.0f);
  EXPECT_EQ(sparcl_compressor_free(c), SPARCL_SUCCESS);
  EXPECT_EQ(sparcl_compressor_free(nullptr), SPARCL_SUCCESS);
}

TEST(CApi, ConfigInitAndValidation) {
  sparcl_compressor_config_t a, b = SPARCL_COMPRESSOR_CONFIG_INIT;
  std::memset(&a, 0x5A, sizeof a);
  ASSERT_EQ(sparcl_compressor_config_init(&a), SPARCL_SUCCESS);
  EXPECT_EQ(a.struct_size, b.struct_size);
  EXPECT_EQ(a.method, SPARCL_COMPRESS_TOPK);
  EXPECT_EQ(a.density, 0.01);
  EXPECT_EQ(a.bucket_size, 512u);
  EXPECT_EQ(a.quantization_bucket, 512u);
  EXPECT_EQ(a.error_feedback, 1);
  EXPECT_EQ(sparcl_compressor_config_init(nullptr), SPARCL_ERR_INVALID_ARG);

  sparcl_compressor_t c = nullptr;
  EXPECT_EQ(sparcl_compressor_create(nullptr, 100, &c), SPARCL_SUCCESS);  // defaults
  sparcl_compressor_free(c);
  EXPECT_EQ(sparcl_compressor_create(nullptr, 100, nullptr), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(sparcl_compressor_create(nullptr, 0, &c), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(c, nullptr);
  EXPECT_EQ(sparcl_compressor_create(nullptr, uint64_t(1) << 32, &c), SPARCL_ERR_UNSUPPORTED);

  struct Bad {
    const char* field;
    void (*set)(sparcl_compressor_config_t&);
  };
  const Bad bad[] = {
      {"struct_size", [](sparcl_compressor_config_t& x) { x.struct_size = 8; }},
      {"method", [](sparcl_compressor_config_t& x) { int v = 17; std::memcpy(&x.method, &v, sizeof v); }},
      {"values", [](sparcl_compressor_config_t& x) { int v = -1; std::memcpy(&x.values, &v, sizeof v); }},
      {"density", [](sparcl_compressor_config_t& x) { x.density = 1.5; }},
      {"threshold", [](sparcl_compressor_config_t& x) { x.threshold = std::nanf(""); }},
      {"bucket_size", [](sparcl_compressor_config_t& x) { x.bucket_size = 0; }},
      {"quantization_bucket", [](sparcl_compressor_config_t& x) { x.quantization_bucket = 0; }},
      {"error_feedback", [](sparcl_compressor_config_t& x) { x.error_feedback = 2; }},
      {"momentum", [](sparcl_compressor_config_t& x) { x.momentum = -0.5f; }},
      {"momentum", [](sparcl_compressor_config_t& x) { x.momentum = 0.9f; x.error_feedback = 0; }},
  };
  for (const Bad& entry : bad) {
    sparcl_compressor_config_t cfg = SPARCL_COMPRESSOR_CONFIG_INIT;
    entry.set(cfg);
    EXPECT_EQ(sparcl_compressor_create(&cfg, 100, &c), SPARCL_ERR_INVALID_ARG) << entry.field;
    EXPECT_NE(std::string(sparcl_comm_last_error(nullptr)).find(entry.field), std::string::npos)
        << entry.field << ": " << sparcl_comm_last_error(nullptr);
  }
}

TEST(CApi, NullArguments) {
  sparcl_compressor_t c = nullptr;
  ASSERT_EQ(sparcl_compressor_create(nullptr, 100, &c), SPARCL_SUCCESS);
  std::vector<float> g(100, 1.0f);
  sparcl_sparse_t s;
  EXPECT_EQ(sparcl_compress(nullptr, g.data(), &s), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(sparcl_compress(c, nullptr, &s), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(sparcl_compress(c, g.data(), nullptr), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(sparcl_allreduce_compressed(nullptr, c, g.data(), g.data()), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(sparcl_compressor_residual(nullptr), nullptr);
  EXPECT_EQ(sparcl_compressor_reset(nullptr), SPARCL_ERR_INVALID_ARG);
  EXPECT_EQ(sparcl_decompress(nullptr, g.data()), SPARCL_ERR_INVALID_ARG);
  sparcl_compressor_free(c);
}

TEST(CApi, CompressWithQsgdRejectsNan) {
  sparcl_compressor_config_t cfg = SPARCL_COMPRESSOR_CONFIG_INIT;
  cfg.values = SPARCL_VALUES_QSGD4;
  sparcl_compressor_t c = nullptr;
  ASSERT_EQ(sparcl_compressor_create(&cfg, 1000, &c), SPARCL_SUCCESS);
  std::vector<float> g(1000, 1.0f);
  g[10] = std::nanf("");
  sparcl_sparse_t s;
  EXPECT_EQ(sparcl_compress(c, g.data(), &s), SPARCL_ERR_INVALID_ARG);
  EXPECT_NE(std::string(sparcl_comm_last_error(nullptr)).find("NaN"), std::string::npos);
  sparcl_compressor_free(c);
}

TEST(CApi, DecompressValidatesAndSumsUnsorted) {
  const uint32_t idx[3] = {5, 2, 5};
  const float val[3] = {1.0f, 2.0f, 3.0f};
  sparcl_sparse_t s{};
  s.dim = 8;
  s.nnz = 3;
  s.index_type = SPARCL_INDEX_U32;
  s.indices = idx;
  s.value_type = SPARCL_FLOAT32;
  s.values = val;
  std::vector<float> d(8, 9.0f);
  EXPECT_EQ(sparcl_decompress(&s, d.data()), SPARCL_ERR_INVALID_ARG);  // unsorted without the flag
  s.flags = SPARCL_SPARSE_UNSORTED;
  ASSERT_EQ(sparcl_decompress(&s, d.data()), SPARCL_SUCCESS);
  EXPECT_EQ(d, (std::vector<float>{0, 0, 2, 0, 0, 4, 0, 0}));
  const uint64_t idx64[2] = {1, 8};
  s.index_type = SPARCL_INDEX_U64;
  s.indices = idx64;
  s.nnz = 2;
  s.flags = 0;
  EXPECT_EQ(sparcl_decompress(&s, d.data()), SPARCL_ERR_INVALID_ARG);  // 8 >= dim
  s.value_type = SPARCL_FLOAT64;
  EXPECT_EQ(sparcl_decompress(&s, d.data()), SPARCL_ERR_INVALID_ARG);
  s.value_type = SPARCL_FLOAT32;
  s.dim = 9;
  EXPECT_EQ(sparcl_decompress(&s, nullptr), SPARCL_ERR_INVALID_ARG);
}

}  // namespace
