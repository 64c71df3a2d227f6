// SPDX-License-Identifier: BSD-3-Clause
// sparcl_allreduce_compressed on several ranks (run with 4): the result is
// the sum of what each rank sent; error feedback conserves the sum across
// ranks and steps; with 4-bit QSGD values the error against the unquantized
// sum is unbiased and within its variance bound; random-k picks the same
// indices everywhere; a rank whose compression fails makes every rank fail
// (no hang) and the communicator stays usable.
//
// Every rank runs every test; checks use EXPECT so that no rank skips a
// collective the others still call.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "sparcl/compress.h"
#include "sparcl/sparcl_mpi.h"

namespace {

int world_rank() {
  int r;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int s;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

class Comm {
 public:
  explicit Comm(sparcl_algorithm_t algorithm = SPARCL_ALGO_AUTO) {
    sparcl_config_t config = SPARCL_CONFIG_INIT;
    config.timeout_ms = 120000;
    config.algorithm = algorithm;
    status_ = sparcl_comm_create_mpi(MPI_COMM_WORLD, &config, &comm_);
  }
  ~Comm() {
    if (comm_) sparcl_comm_free(comm_);
  }
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;
  sparcl_comm_t get() const { return comm_; }
  sparcl_status_t status() const { return status_; }

 private:
  sparcl_comm_t comm_ = nullptr;
  sparcl_status_t status_;
};

class Compressor {
 public:
  Compressor(const sparcl_compressor_config_t& cfg, uint64_t dim) { status_ = sparcl_compressor_create(&cfg, dim, &c_); }
  ~Compressor() { sparcl_compressor_free(c_); }
  Compressor(const Compressor&) = delete;
  Compressor& operator=(const Compressor&) = delete;
  sparcl_compressor_t get() const { return c_; }
  sparcl_status_t status() const { return status_; }

 private:
  sparcl_compressor_t c_ = nullptr;
  sparcl_status_t status_;
};

// Rank r's gradient at step t: N(0, 1), some entries scaled up (as layers differ).
std::vector<float> gradient(uint64_t dim, int rank, int step) {
  std::mt19937_64 rng(uint64_t(rank) * 1000003 + uint64_t(step) * 7919 + 1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> g(dim);
  for (uint64_t i = 0; i < dim; ++i) g[i] = dist(rng) * (i % 1000 < 10 ? 8.0f : 1.0f);
  return g;
}

bool same_on_all_ranks(const void* data, size_t bytes) {
  uint64_t h = 1469598103934665603ull;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  uint64_t lo = h, hi = h;
  MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  return lo == hi;
}

std::vector<double> sum_over_ranks(const std::vector<double>& v) {
  std::vector<double> s(v.size());
  MPI_Allreduce(v.data(), s.data(), int(v.size()), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return s;
}

double sum_over_ranks(double v) {
  double s;
  MPI_Allreduce(&v, &s, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return s;
}

// What a compressor sent, as dense values (via sparcl_compress on a twin).
std::vector<double> sent_dense(sparcl_compressor_t twin, const std::vector<float>& g) {
  sparcl_sparse_t s;
  EXPECT_EQ(sparcl_compress(twin, g.data(), &s), SPARCL_SUCCESS);
  std::vector<float> d(g.size());
  EXPECT_EQ(sparcl_decompress(&s, d.data()), SPARCL_SUCCESS);
  return std::vector<double>(d.begin(), d.end());
}

// Raw values: the result is the sum over ranks of what each sent (a twin
// compressor fed the same gradients reproduces it), bitwise the same on all
// ranks; over the steps, sum(out) + sum of the residuals == sum of all
// gradients up to float rounding.
TEST(AllreduceCompressed, RawEqualsSumOfSentVectors) {
  Comm comm;
  ASSERT_EQ(comm.status(), SPARCL_SUCCESS);
  const uint64_t dim = 200003;
  const int p = world_size(), r = world_rank();
  for (sparcl_compress_method_t method : {SPARCL_COMPRESS_TOPK, SPARCL_COMPRESS_APPROX_TOPK, SPARCL_COMPRESS_RANDOMK}) {
    SCOPED_TRACE("method " + std::to_string(int(method)));
    sparcl_compressor_config_t cfg = SPARCL_COMPRESSOR_CONFIG_INIT;
    cfg.method = method;
    cfg.density = 0.01;
    cfg.seed = 17;
    Compressor c(cfg, dim), twin(cfg, dim);
    ASSERT_EQ(c.status(), SPARCL_SUCCESS);
    std::vector<double> out_total(dim, 0.0), grad_total(dim, 0.0);
    for (int step = 0; step < 4; ++step) {
      const auto g = gradient(dim, r, step);
      for (uint64_t i = 0; i < dim; ++i) grad_total[i] += g[i];
      std::vector<float> out(dim, -1.0f);
      EXPECT_EQ(sparcl_allreduce_compressed(comm.get(), c.get(), g.data(), out.data()), SPARCL_SUCCESS)
          << sparcl_comm_last_error(comm.get());
      EXPECT_TRUE(same_on_all_ranks(out.data(), out.size() * sizeof(float)));
      const auto sent = sent_dense(twin.get(), g);
      std::vector<double> mag(dim);
      for (uint64_t i = 0; i < dim; ++i) mag[i] = std::fabs(sent[i]);
      const auto expected = sum_over_ranks(sent), magnitude = sum_over_ranks(mag);
      size_t wrong = 0, nonzero = 0;
      for (uint64_t i = 0; i < dim; ++i) {
        wrong += std::fabs(double(out[i]) - expected[i]) > p * 1.2e-7 * magnitude[i];
        nonzero += out[i] != 0.0f;
        out_total[i] += out[i];
      }
      EXPECT_EQ(wrong, 0u) << "step " << step;
      if (method == SPARCL_COMPRESS_RANDOMK) {
        EXPECT_LE(nonzero, size_t(0.01 * dim + 1));  // same indices everywhere
      }
    }
    const float* res = sparcl_compressor_residual(c.get());
    std::vector<double> kept(res, res + dim);
    const auto kept_all = sum_over_ranks(kept), grads_all = sum_over_ranks(grad_total);
    double worst = 0;
    for (uint64_t i = 0; i < dim; ++i)
      worst = std::max(worst, std::fabs(out_total[i] + kept_all[i] - grads_all[i]) / (1 + std::fabs(grads_all[i])));
    EXPECT_LE(worst, 1e-5);
  }
}

// The compressor keeps exactly what the wire lost. On 2 ranks, recursive
// doubling sends each rank's whole selection once, encoded, and both add what
// they decoded, with no further rounding: out == sent_0 + sent_1, where each
// rank's sent values are acc - residual on its selection (acc = grad at the
// first step). Every encoding; the tolerance is a few float roundings, far
// below any quantization step.
TEST(AllreduceCompressed, ResidualKeepsExactlyWhatTheWireLost) {
  if (world_size() % 2) GTEST_SKIP() << "needs an even number of ranks";
  const int r = world_rank();
  MPI_Comm pair;
  MPI_Comm_split(MPI_COMM_WORLD, r / 2, r, &pair);
  sparcl_config_t config = SPARCL_CONFIG_INIT;
  config.algorithm = SPARCL_ALGO_RECURSIVE_DOUBLING;
  config.timeout_ms = 120000;
  sparcl_comm_t comm = nullptr;
  ASSERT_EQ(sparcl_comm_create_mpi(pair, &config, &comm), SPARCL_SUCCESS);
  const uint64_t dim = 50000;
  for (sparcl_value_encoding_t values : {SPARCL_VALUES_FP16, SPARCL_VALUES_BF16, SPARCL_VALUES_QSGD8,
                                         SPARCL_VALUES_QSGD4, SPARCL_VALUES_QSGD2}) {
    SCOPED_TRACE("encoding " + std::to_string(int(values)));
    sparcl_compressor_config_t cfg = SPARCL_COMPRESSOR_CONFIG_INIT;
    cfg.density = 0.05;
    cfg.values = values;
    cfg.quantization_bucket = 256;
    Compressor c(cfg, dim);
    const auto g = gradient(dim, r, 7);
    std::vector<float> out(dim);
    ASSERT_EQ(sparcl_allreduce_compressed(comm, c.get(), g.data(), out.data()), SPARCL_SUCCESS)
        << sparcl_comm_last_error(comm);
    const float* res = sparcl_compressor_residual(c.get());
    std::vector<double> sent(dim), mag(dim);
    size_t lossy = 0;
    for (uint64_t i = 0; i < dim; ++i) {
      sent[i] = double(g[i]) - double(res[i]);  // 0 off the selection (residual == grad there)
      mag[i] = std::fabs(double(g[i])) + std::fabs(double(res[i]));  // bounds |sent| too
      lossy += res[i] != 0.0f && sent[i] != 0.0;
    }
    EXPECT_GT(lossy, 0u) << "the residual should hold the encoding's error";
    std::vector<double> sum(dim), scale(dim);
    MPI_Allreduce(sent.data(), sum.data(), int(dim), MPI_DOUBLE, MPI_SUM, pair);
    MPI_Allreduce(mag.data(), scale.data(), int(dim), MPI_DOUBLE, MPI_SUM, pair);
    size_t wrong = 0;
    for (uint64_t i = 0; i < dim; ++i) wrong += std::fabs(double(out[i]) - sum[i]) > 4 * 6e-8 * scale[i];
    EXPECT_EQ(wrong, 0u);
  }
  sparcl_comm_free(comm);
  MPI_Comm_free(&pair);
}

// QSGD is unbiased across hops. Without error feedback every run sends the
// same selection; 4-bit values are encoded by each rank, and the reduced
// ranges again by their owners (split-allgather), so each result has the
// noise of two roundings. Over R = 24 runs (each its own collective, so its
// own random draws), the signed total error E_t = sum_i sign(x_i) (out_t -
// x)_i, x the raw result, must have a mean within 5 standard errors of 0 (a
// t statistic: a rounding that shrank or grew magnitudes would fail it), and
// no entry may be off by more than two levels of the largest scale (one per
// rounding).
TEST(AllreduceCompressed, QsgdIsUnbiasedAcrossHops) {
  Comm comm;
  ASSERT_EQ(comm.status(), SPARCL_SUCCESS);
  const uint64_t dim = uint64_t(1) << 18;
  const int r = world_rank();
  sparcl_compressor_config_t cfg = SPARCL_COMPRESSOR_CONFIG_INIT;
  cfg.method = SPARCL_COMPRESS_APPROX_TOPK;
  cfg.density = 0.01;
  cfg.error_feedback = 0;
  Compressor raw(cfg, dim);
  cfg.values = SPARCL_VALUES_QSGD4;
  Compressor q(cfg, dim);
  ASSERT_EQ(q.status(), SPARCL_SUCCESS);
  const auto g = gradient(dim, r, 50);
  std::vector<float> exact(dim);
  ASSERT_EQ(sparcl_allreduce_compressed(comm.get(), raw.get(), g.data(), exact.data()), SPARCL_SUCCESS);
  float largest = 0;
  for (float x : g) largest = std::max(largest, std::fabs(x));
  const double bound = 2 * sum_over_ranks(double(largest)) / 7 * (1 + 1e-5);
  const int runs = 24;
  std::vector<double> totals;
  size_t beyond = 0;
  for (int t = 0; t < runs; ++t) {
    std::vector<float> out(dim);
    EXPECT_EQ(sparcl_allreduce_compressed(comm.get(), q.get(), g.data(), out.data()), SPARCL_SUCCESS);
    EXPECT_TRUE(same_on_all_ranks(out.data(), dim * sizeof(float)));
    double total = 0;
    for (uint64_t i = 0; i < dim; ++i) {
      const double d = double(out[i]) - double(exact[i]);
      total += exact[i] > 0 ? d : -d;
      beyond += std::fabs(d) > bound;
    }
    totals.push_back(total);
  }
  double mean = 0, var = 0;
  for (double x : totals) mean += x / runs;
  for (double x : totals) var += (x - mean) * (x - mean) / (runs - 1);
  const double t_stat = mean / std::sqrt(var / runs);
  EXPECT_EQ(beyond, 0u);
  EXPECT_GT(var, 0.0);  // the values were quantized, differently in every run
  EXPECT_LE(std::fabs(t_stat), 5.0) << "mean " << mean << ", sd " << std::sqrt(var);
  if (r == 0) std::printf("qsgd4 over %d runs: signed total error %.3g +- %.3g (t = %.2f)\n", runs, mean, std::sqrt(var), t_stat);
}

// Rank 1 passes a NULL gradient (then a NaN under QSGD): it returns its own
// error, every other rank fails too instead of waiting, their sent values go
// back into their residuals, and the next collective works.
TEST(AllreduceCompressed, FailureOnOneRankFailsAll) {
  Comm comm;
  ASSERT_EQ(comm.status(), SPARCL_SUCCESS);
  const uint64_t dim = 10000;
  const int r = world_rank();
  if (world_size() < 2) GTEST_SKIP() << "needs two ranks";
  for (int round = 0; round < 2; ++round) {
    sparcl_compressor_config_t cfg = SPARCL_COMPRESSOR_CONFIG_INIT;
    cfg.values = round == 0 ? SPARCL_VALUES_RAW : SPARCL_VALUES_QSGD4;
    Compressor c(cfg, dim);
    auto g = gradient(dim, r, 3);
    if (round == 1 && r == 1) g[77] = std::nanf("");
    std::vector<float> out(dim);
    const sparcl_status_t st =
        sparcl_allreduce_compressed(comm.get(), c.get(), round == 0 && r == 1 ? nullptr : g.data(), out.data());
    const std::string msg = sparcl_comm_last_error(comm.get());
    if (r == 1) {
      EXPECT_EQ(st, SPARCL_ERR_INVALID_ARG);
      EXPECT_NE(msg.find(round == 0 ? "grad is NULL" : "NaN"), std::string::npos) << msg;
    } else {
      EXPECT_NE(st, SPARCL_SUCCESS);
      EXPECT_NE(msg.find("rank 1"), std::string::npos) << msg;
      if (round == 0) {  // raw values: the residual holds the whole gradient again, bit for bit
        const float* res = sparcl_compressor_residual(c.get());
        size_t differ = 0;
        for (uint64_t i = 0; i < dim; ++i) differ += std::memcmp(&res[i], &g[i], 4) != 0;
        EXPECT_EQ(differ, 0u);
      }
    }
    // The communicator still works.
    g[77] = 1.0f;
    Compressor fresh(cfg, dim);
    EXPECT_EQ(sparcl_allreduce_compressed(comm.get(), fresh.get(), g.data(), out.data()), SPARCL_SUCCESS)
        << sparcl_comm_last_error(comm.get());
  }
}

// The non-blocking form: several tensors in flight at once, completed in
// reverse order, give bit for bit what the blocking call gives on twin
// compressors fed the same gradients. (fp16 values: the encoding on the wire
// and the error feedback run, but the rounding is deterministic; QSGD's
// draws differ from one collective to the next. One algorithm: auto may
// choose another one between the two calls, as the density it has seen
// changes, and another order of additions.)
TEST(AllreduceCompressed, NonBlockingEqualsBlocking) {
  Comm comm(SPARCL_ALGO_SPLIT_ALLGATHER);
  ASSERT_EQ(comm.status(), SPARCL_SUCCESS);
  const int r = world_rank();
  const std::vector<uint64_t> dims = {1000, 65536, 300007};
  sparcl_compressor_config_t cfg = SPARCL_COMPRESSOR_CONFIG_INIT;
  cfg.density = 0.02;
  cfg.values = SPARCL_VALUES_FP16;
  std::vector<std::unique_ptr<Compressor>> nonblocking, blocking;
  for (uint64_t d : dims) {
    nonblocking.emplace_back(new Compressor(cfg, d));
    blocking.emplace_back(new Compressor(cfg, d));
  }
  for (int step = 0; step < 3; ++step) {
    std::vector<std::vector<float>> g, out;
    std::vector<sparcl_request_t> req(dims.size(), nullptr);
    for (size_t k = 0; k < dims.size(); ++k) {
      g.push_back(gradient(dims[k], r, step * 10 + int(k)));
      out.emplace_back(dims[k], -1.0f);
      EXPECT_EQ(sparcl_iallreduce_compressed(comm.get(), nonblocking[k]->get(), g[k].data(), out[k].data(), &req[k]),
                SPARCL_SUCCESS)
          << sparcl_comm_last_error(comm.get());
    }
    for (size_t k = dims.size(); k-- > 0;) {
      EXPECT_EQ(sparcl_wait(&req[k]), SPARCL_SUCCESS) << sparcl_comm_last_error(comm.get());
      EXPECT_EQ(req[k], nullptr);
    }
    for (size_t k = 0; k < dims.size(); ++k) {
      std::vector<float> expected(dims[k]);
      EXPECT_EQ(sparcl_allreduce_compressed(comm.get(), blocking[k]->get(), g[k].data(), expected.data()),
                SPARCL_SUCCESS);
      EXPECT_EQ(std::memcmp(expected.data(), out[k].data(), dims[k] * sizeof(float)), 0) << "tensor " << k;
    }
  }
}

// A request that fails in the collective (here the ranks disagree on dim)
// puts the step back into the residual when it completes.
TEST(AllreduceCompressed, FailedRequestKeepsTheStep) {
  Comm comm;
  ASSERT_EQ(comm.status(), SPARCL_SUCCESS);
  if (world_size() < 2) GTEST_SKIP() << "needs two ranks";
  const int r = world_rank();
  const uint64_t dim = 5000 + (r == 1 ? 1 : 0);
  sparcl_compressor_config_t cfg = SPARCL_COMPRESSOR_CONFIG_INIT;
  Compressor c(cfg, dim);
  const auto g = gradient(dim, r, 5);
  std::vector<float> out(dim);
  sparcl_request_t req = nullptr;
  EXPECT_EQ(sparcl_iallreduce_compressed(comm.get(), c.get(), g.data(), out.data(), &req), SPARCL_SUCCESS);
  EXPECT_EQ(sparcl_wait(&req), SPARCL_ERR_MISMATCH) << sparcl_comm_last_error(comm.get());
  const float* res = sparcl_compressor_residual(c.get());
  size_t differ = 0;
  for (uint64_t i = 0; i < dim; ++i) differ += std::memcmp(&res[i], &g[i], 4) != 0;
  EXPECT_EQ(differ, 0u);
  // A NULL request pointer fails on every rank, and the communicator still works.
  const sparcl_status_t st =
      sparcl_iallreduce_compressed(comm.get(), c.get(), g.data(), out.data(), r == 1 ? nullptr : &req);
  if (r == 1) {
    EXPECT_EQ(st, SPARCL_ERR_INVALID_ARG);
  } else {
    EXPECT_EQ(st, SPARCL_SUCCESS);
    EXPECT_NE(sparcl_wait(&req), SPARCL_SUCCESS);
  }
  Compressor fresh(cfg, 5000);
  std::vector<float> g2 = gradient(5000, r, 6), out2(5000);
  EXPECT_EQ(sparcl_allreduce_compressed(comm.get(), fresh.get(), g2.data(), out2.data()), SPARCL_SUCCESS)
      << sparcl_comm_last_error(comm.get());
}

}  // namespace
