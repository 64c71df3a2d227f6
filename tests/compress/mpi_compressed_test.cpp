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

#include <cmath>
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
  Comm() {
    sparcl_config_t config = SPARCL_CONFIG_INIT;
    config.timeout_ms = 120000;
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

// 4-bit QSGD values against raw values at the first step (both compressors
// select the same entries then): the total error E = sum_i (out_q - out_raw)_i
// is a sum of independent zero-mean rounding errors, one per sent value,
// each with variance <= (scale/7)^2 / 4 for its bucket's scale. So the mean
// error E / nnz must lie within 5 sigma = 5 sqrt(V) / nnz, V the sum of
// those bounds over all ranks; the mean squared error may not exceed V / nnz
// by more than 30%; and no entry may be off by more than the sum of the
// ranks' steps (one level each).
TEST(AllreduceCompressed, Qsgd4MeanErrorWithinBound) {
  Comm comm;
  ASSERT_EQ(comm.status(), SPARCL_SUCCESS);
  const uint64_t dim = uint64_t(1) << 18;
  const int r = world_rank();
  for (uint64_t trial = 0; trial < 3; ++trial) {
    sparcl_compressor_config_t cfg = SPARCL_COMPRESSOR_CONFIG_INIT;
    cfg.method = SPARCL_COMPRESS_APPROX_TOPK;
    cfg.density = 0.01;
    cfg.seed = 1000 + trial;
    Compressor raw(cfg, dim), raw_twin(cfg, dim);
    cfg.values = SPARCL_VALUES_QSGD4;
    Compressor q(cfg, dim);
    ASSERT_EQ(q.status(), SPARCL_SUCCESS);
    const auto g = gradient(dim, r, int(trial) + 50);
    std::vector<float> out_q(dim), out_raw(dim);
    EXPECT_EQ(sparcl_allreduce_compressed(comm.get(), q.get(), g.data(), out_q.data()), SPARCL_SUCCESS);
    EXPECT_EQ(sparcl_allreduce_compressed(comm.get(), raw.get(), g.data(), out_raw.data()), SPARCL_SUCCESS);
    // This rank's selected raw values, in order: buckets of 512 give the scales.
    sparcl_sparse_t s;
    ASSERT_EQ(sparcl_compress(raw_twin.get(), g.data(), &s), SPARCL_SUCCESS);
    const float* v = static_cast<const float*>(s.values);
    const uint32_t* idx = static_cast<const uint32_t*>(s.indices);
    double var_bound = 0;
    std::vector<double> max_step(dim, 0.0);
    for (size_t b = 0; b < s.nnz; b += 512) {
      const size_t e = std::min(s.nnz, b + 512);
      double scale = 0;
      for (size_t j = b; j < e; ++j) scale = std::max(scale, std::fabs(double(v[j])));
      const double step = scale / 7;
      var_bound += double(e - b) * step * step / 4;
      for (size_t j = b; j < e; ++j) max_step[idx[j]] = step;
    }
    const double V = sum_over_ranks(var_bound);
    const auto step_sum = sum_over_ranks(max_step);
    const double nnz = sum_over_ranks(double(s.nnz));
    double total = 0, squares = 0;
    size_t beyond = 0;
    for (uint64_t i = 0; i < dim; ++i) {
      const double d = double(out_q[i]) - double(out_raw[i]);
      total += d;
      squares += d * d;
      beyond += std::fabs(d) > step_sum[i] * (1 + 1e-5) + 1e-6;
    }
    EXPECT_EQ(beyond, 0u);
    EXPECT_LE(std::fabs(total) / nnz, 5 * std::sqrt(V) / nnz) << "trial " << trial;
    EXPECT_LE(squares / nnz, 1.3 * V / nnz) << "trial " << trial;
    EXPECT_GT(squares, 0.0);  // the values were quantized
    if (r == 0)
      std::printf("qsgd4 trial %llu: mean error %.3g (bound %.3g), mean squared error %.3g (bound %.3g)\n",
                  static_cast<unsigned long long>(trial), total / nnz, 5 * std::sqrt(V) / nnz, squares / nnz, V / nnz);
  }
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
// compressors fed the same gradients.
TEST(AllreduceCompressed, NonBlockingEqualsBlocking) {
  Comm comm;
  ASSERT_EQ(comm.status(), SPARCL_SUCCESS);
  const int r = world_rank();
  const std::vector<uint64_t> dims = {1000, 65536, 300007};
  sparcl_compressor_config_t cfg = SPARCL_COMPRESSOR_CONFIG_INIT;
  cfg.density = 0.02;
  cfg.values = SPARCL_VALUES_QSGD8;
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
