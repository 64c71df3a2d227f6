// SPDX-License-Identifier: BSD-3-Clause
// sparcl_allreduce_compressed with global selection (run with 1, 3 and 4
// ranks, and over other transports): against a reference computed from
// every rank's selection (gathered with MPI), the exact mode keeps exactly
// the top-k of the sum and the sampled mode exactly the entries at or above
// one threshold; results are bitwise identical on every rank; the residual
// accounts for everything (input + old residual == kept contribution + new
// residual); blocking and non-blocking agree; bad input or disagreeing
// configurations on one rank fail every rank and the next call is exact;
// balanced and hashed owner ranges (SPARCL_PARTITION, or chosen by a test)
// give the same results and spread skewed selections over the owners.
//
// Gradients hold small integers, so every sum is exact in float32 whatever
// the order of additions, and the reference is bit for bit.
//
// Every rank runs every test; checks use EXPECT so that no rank skips a
// collective the others still call.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
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

struct Comm {
  Comm() {
    sparcl_config_t config = SPARCL_CONFIG_INIT;
    config.timeout_ms = 120000;
    status = sparcl_comm_create_mpi(MPI_COMM_WORLD, &config, &comm);
  }
  ~Comm() {
    if (comm) sparcl_comm_free(comm);
  }
  sparcl_comm_t comm = nullptr;
  sparcl_status_t status;
};

struct Compressor {
  Compressor(const sparcl_compressor_config_t& cfg, uint64_t dim) { status = sparcl_compressor_create(&cfg, dim, &c); }
  ~Compressor() { sparcl_compressor_free(c); }
  sparcl_compressor_t c = nullptr;
  sparcl_status_t status;
};

sparcl_compressor_config_t global_config(uint64_t k, bool exact, sparcl_value_encoding_t values = SPARCL_VALUES_RAW) {
  sparcl_compressor_config_t cfg = SPARCL_COMPRESSOR_CONFIG_INIT;
  cfg.k = k;
  cfg.values = values;
  cfg.selection = SPARCL_SELECTION_GLOBAL;
  cfg.global_threshold = exact ? SPARCL_THRESHOLD_EXACT : SPARCL_THRESHOLD_SAMPLED;
  cfg.threshold_reuse = 3;
  return cfg;
}

// Rank r's gradient at step t: integers in [-2^15, 2^15] (sums over 4
// ranks and a few steps of residual stay exact in float32), 8 times larger
// on a few indices shared by all ranks, so that selections overlap.
std::vector<float> gradient(uint64_t dim, int rank, int step) {
  std::mt19937_64 rng(uint64_t(rank) * 1000003 + uint64_t(step) * 7919 + 11);
  std::uniform_int_distribution<int> small(-32768, 32768);
  std::vector<float> g(dim);
  for (uint64_t i = 0; i < dim; ++i) g[i] = float(small(rng) * (i % 97 == 0 ? 8 : 1));
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

// What a compressor with local selection sends for `g` (a twin of the
// global one: the same local selection and residual), as dense values.
std::vector<float> sent_dense(sparcl_compressor_t twin, const std::vector<float>& g) {
  sparcl_sparse_t s;
  EXPECT_EQ(sparcl_compress(twin, g.data(), &s), SPARCL_SUCCESS);
  std::vector<float> d(g.size());
  EXPECT_EQ(sparcl_decompress(&s, d.data()), SPARCL_SUCCESS);
  return d;
}

// The sum over ranks of every rank's dense vector (exact: integers).
std::vector<float> sum_over_ranks(const std::vector<float>& v) {
  std::vector<float> s(v.size());
  MPI_Allreduce(v.data(), s.data(), int(v.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  return s;
}

uint32_t key(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b & 0x7FFFFFFFu;
}

// The exact top-k of `sum` by (|sum| desc, index asc), zeros never kept.
std::vector<bool> reference_topk(const std::vector<float>& sum, uint64_t k) {
  std::vector<uint32_t> order;
  for (uint32_t i = 0; i < sum.size(); ++i)
    if (key(sum[i]) != 0) order.push_back(i);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return key(sum[a]) != key(sum[b]) ? key(sum[a]) > key(sum[b]) : a < b;
  });
  std::vector<bool> kept(sum.size(), false);
  for (size_t j = 0; j < order.size() && j < k; ++j) kept[order[j]] = true;
  return kept;
}

// One step of `c` (global) beside its local twin: checks the residual
// accounting and returns (result, reference sum of the selections).
struct Step {
  std::vector<float> out, sum, sent;
};
Step run_step(sparcl_comm_t comm, sparcl_compressor_t c, sparcl_compressor_t twin, const std::vector<float>& g,
              bool nonblocking = false) {
  const uint64_t dim = g.size();
  std::vector<float> acc(g);  // input + old residual
  const float* old = sparcl_compressor_residual(c);
  for (uint64_t i = 0; i < dim; ++i) acc[i] += old[i];
  Step s;
  s.sent = sent_dense(twin, g);
  s.sum = sum_over_ranks(s.sent);
  s.out.assign(dim, -1.0f);
  if (nonblocking) {
    sparcl_request_t req = nullptr;
    EXPECT_EQ(sparcl_iallreduce_compressed(comm, c, g.data(), s.out.data(), &req), SPARCL_SUCCESS)
        << sparcl_comm_last_error(comm);
    EXPECT_EQ(sparcl_wait(&req), SPARCL_SUCCESS) << sparcl_comm_last_error(comm);
  } else {
    EXPECT_EQ(sparcl_allreduce_compressed(comm, c, g.data(), s.out.data()), SPARCL_SUCCESS)
        << sparcl_comm_last_error(comm);
  }
  // input + old residual == kept contribution + new residual, bit for bit.
  const float* res = sparcl_compressor_residual(c);
  size_t bad = 0;
  for (uint64_t i = 0; i < dim; ++i) {
    const bool kept = s.out[i] != 0.0f && s.sent[i] != 0.0f;
    const float contribution = kept ? s.sent[i] : 0.0f;
    bad += contribution + res[i] != acc[i];
  }
  EXPECT_EQ(bad, 0u) << "residual accounting";
  // The twin's residual follows: it must see what the global one keeps.
  std::memcpy(sparcl_compressor_residual(twin), res, dim * sizeof(float));
  EXPECT_TRUE(same_on_all_ranks(s.out.data(), dim * sizeof(float)));
  return s;
}

TEST(GlobalSelection, ExactModeKeepsTheTopKOfTheSum) {
  Comm comm;
  ASSERT_EQ(comm.status, SPARCL_SUCCESS);
  const int r = world_rank();
  for (const uint64_t dim : {uint64_t(3001), uint64_t(20000)}) {
    const uint64_t k = dim / 50;
    Compressor c(global_config(k, true), dim);
    sparcl_compressor_config_t local = global_config(k, true);
    local.selection = SPARCL_SELECTION_LOCAL;
    Compressor twin(local, dim);
    ASSERT_EQ(c.status, SPARCL_SUCCESS);
    for (int step = 0; step < 4; ++step) {
      Step s = run_step(comm.comm, c.c, twin.c, gradient(dim, r, step), step % 2 == 1);
      const std::vector<bool> want = reference_topk(s.sum, k);
      size_t wrong = 0;
      for (uint64_t i = 0; i < dim; ++i) {
        const float expect = want[i] ? s.sum[i] : 0.0f;
        wrong += std::memcmp(&expect, &s.out[i], 4) != 0;
      }
      EXPECT_EQ(wrong, 0u) << "dim " << dim << " step " << step;
    }
  }
}

// Sampled mode: the kept set is exactly the entries of the sum at or above
// one magnitude (the agreed threshold): about k of them on the steps that
// estimate it (every threshold_reuse = 3 steps), k/2 to 2k in between.
TEST(GlobalSelection, SampledModeKeepsEverythingAboveOneThreshold) {
  Comm comm;
  ASSERT_EQ(comm.status, SPARCL_SUCCESS);
  const int r = world_rank();
  const uint64_t dim = 50000, k = 500;
  Compressor c(global_config(k, false), dim);
  sparcl_compressor_config_t local = global_config(k, false);
  local.selection = SPARCL_SELECTION_LOCAL;
  Compressor twin(local, dim);
  for (int step = 0; step < 6; ++step) {
    Step s = run_step(comm.comm, c.c, twin.c, gradient(dim, r, step));
    float smallest = INFINITY;
    size_t kept = 0, union_size = 0;
    for (uint64_t i = 0; i < dim; ++i) {
      union_size += s.sum[i] != 0.0f;
      if (s.out[i] == 0.0f) continue;
      ++kept;
      EXPECT_EQ(s.out[i], s.sum[i]);
      smallest = std::min(smallest, std::fabs(s.out[i]));
    }
    size_t above = 0;
    for (uint64_t i = 0; i < dim; ++i) above += s.sum[i] != 0.0f && std::fabs(s.sum[i]) >= smallest;
    EXPECT_EQ(above, kept) << "step " << step << ": not every entry at or above the threshold was kept";
    if (union_size <= k) {
      EXPECT_EQ(kept, union_size) << "step " << step;
    } else if (step % 3 == 0) {  // a scheduled estimate: about k
      EXPECT_GE(double(kept), 0.7 * double(k)) << "step " << step;
      EXPECT_LE(double(kept), 1.3 * double(k)) << "step " << step;
    } else {  // reused, or estimated early when the reused one would leave [k/2, 2k]
      EXPECT_GE(double(kept), 0.5 * double(k)) << "step " << step;
      EXPECT_LE(double(kept), 2.0 * double(k)) << "step " << step;
    }
  }
}

// A reused threshold that would keep more than 2k entries (gradients 4x
// larger; possible from 3 ranks on: the sum of 2 selections has at most 2k)
// or fewer than k/2 (then 16x smaller) is re-estimated at once: about k
// entries, though threshold_reuse is far away.
TEST(GlobalSelection, DriftTriggersAnEarlyEstimate) {
  Comm comm;
  ASSERT_EQ(comm.status, SPARCL_SUCCESS);
  const int r = world_rank(), p = world_size();
  const uint64_t dim = 50000, k = 500;
  sparcl_compressor_config_t cfg = global_config(k, false);
  cfg.threshold_reuse = 100;
  Compressor c(cfg, dim);
  sparcl_compressor_config_t local = cfg;
  local.selection = SPARCL_SELECTION_LOCAL;
  Compressor twin(local, dim);
  for (int step = 0; step < 3; ++step) {
    // Independent integers on every rank (selections overlap little).
    std::mt19937_64 rng(uint64_t(r) * 7 + uint64_t(step) * 1000 + 5);
    std::uniform_int_distribution<int> value(-32768, 32768);
    const int scale = step == 1 ? 4 : 1;
    std::vector<float> g(dim);
    for (float& x : g) x = float(value(rng) * scale) / (step == 2 ? 16.0f : 1.0f);
    Step s = run_step(comm.comm, c.c, twin.c, g);
    size_t kept = 0, union_size = 0;
    for (uint64_t i = 0; i < dim; ++i) {
      kept += s.out[i] != 0.0f;
      union_size += s.sum[i] != 0.0f;
    }
    if (union_size <= k) {
      EXPECT_EQ(kept, union_size) << "step " << step;
    } else if (step > 0 && p < 3) {  // the residuals dominate on 2 ranks: no trigger
      EXPECT_LE(kept, 2 * k) << "step " << step;
    } else {
      EXPECT_GE(double(kept), 0.7 * double(k)) << "step " << step;
      EXPECT_LE(double(kept), 1.3 * double(k)) << "step " << step;
    }
  }
}

// Every value encoding: identical results on every rank, about k entries
// (fp16 runs the exact mode: at most k),
// and error feedback that loses nothing (the sum over ranks of the
// gradients minus the residuals equals the sum of the results, up to the
// rounding of the encodings).
TEST(GlobalSelection, EveryEncodingAgreesAcrossRanks) {
  Comm comm;
  ASSERT_EQ(comm.status, SPARCL_SUCCESS);
  const int r = world_rank();
  const uint64_t dim = 30000, k = 300;
  for (sparcl_value_encoding_t e : {SPARCL_VALUES_RAW, SPARCL_VALUES_FP16, SPARCL_VALUES_BF16, SPARCL_VALUES_QSGD8,
                                    SPARCL_VALUES_QSGD4, SPARCL_VALUES_QSGD2}) {
    Compressor c(global_config(k, e == SPARCL_VALUES_FP16, e), dim);
    ASSERT_EQ(c.status, SPARCL_SUCCESS);
    std::vector<double> total(dim, 0.0);  // sum of results
    std::vector<double> grads(dim, 0.0);  // this rank's gradients
    for (int step = 0; step < 4; ++step) {
      std::vector<float> g = gradient(dim, r, step), out(dim);
      for (uint64_t i = 0; i < dim; ++i) {
        g[i] *= 1.0f / 4096;  // within fp16's range
        grads[i] += g[i];
      }
      ASSERT_EQ(sparcl_allreduce_compressed(comm.comm, c.c, g.data(), out.data()), SPARCL_SUCCESS)
          << sparcl_comm_last_error(comm.comm);
      EXPECT_TRUE(same_on_all_ranks(out.data(), dim * sizeof(float))) << "encoding " << int(e);
      size_t kept = 0;
      for (uint64_t i = 0; i < dim; ++i) {
        kept += out[i] != 0.0f;
        total[i] += out[i];
      }
      // About k on the steps that estimate the threshold, where the values
      // have not been coarsened into ties (bf16) or zeros (4- and 2-bit QSGD).
      const bool fine = e == SPARCL_VALUES_RAW || e == SPARCL_VALUES_QSGD8;
      if (step % 3 == 0 && fine) {
        EXPECT_LE(double(kept), 1.5 * double(k)) << "encoding " << int(e);
        EXPECT_GE(double(kept), 0.5 * double(k)) << "encoding " << int(e);
      }
      if (e == SPARCL_VALUES_FP16) {
        EXPECT_LE(kept, k);
      }
    }
    // sum(gradients) == sum(results) + sum(residuals), up to the encodings' rounding.
    const float* res = sparcl_compressor_residual(c.c);
    std::vector<double> held(dim);
    for (uint64_t i = 0; i < dim; ++i) held[i] = grads[i] - res[i];
    std::vector<double> all(dim);
    MPI_Allreduce(held.data(), all.data(), int(dim), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    double err = 0, drift = 0, mass = 0;
    for (uint64_t i = 0; i < dim; ++i) {
      err += std::fabs(all[i] - total[i]);
      drift += all[i] - total[i];
      mass += std::fabs(total[i]);
    }
    // Raw: exact up to float32 sums. fp16, bf16, 8-bit QSGD: small rounding.
    // 4-bit QSGD: the owners' re-encoding of the kept sums is zero-mean
    // noise as large as the values (not fed back), so only its mean is
    // checked; with 2 bits (levels -1, 0, 1) even that is too noisy here.
    const bool coarse = e == SPARCL_VALUES_QSGD4 || e == SPARCL_VALUES_QSGD2;
    if (!coarse) {
      EXPECT_LE(err, (e == SPARCL_VALUES_RAW ? 1e-6 : 0.1) * mass) << "encoding " << int(e);
    }
    if (e != SPARCL_VALUES_QSGD2) {
      EXPECT_LE(std::fabs(drift), 0.05 * mass) << "encoding " << int(e);
    }
  }
}

// A rank whose step fails (grad NULL) fails every rank; the residual keeps
// the step (raw values: bit for bit) and the next call is exact.
TEST(GlobalSelection, BadInputOnOneRankFailsEverywhere) {
  Comm comm;
  ASSERT_EQ(comm.status, SPARCL_SUCCESS);
  const int r = world_rank(), p = world_size();
  if (p < 2) GTEST_SKIP() << "needs two ranks";
  const uint64_t dim = 4000, k = 80;
  Compressor c(global_config(k, true), dim);
  sparcl_compressor_config_t local = global_config(k, true);
  local.selection = SPARCL_SELECTION_LOCAL;
  Compressor twin(local, dim);
  std::vector<float> g = gradient(dim, r, 1), out(dim);
  const sparcl_status_t st = sparcl_allreduce_compressed(comm.comm, c.c, r == 1 ? nullptr : g.data(), out.data());
  const std::string msg = sparcl_comm_last_error(comm.comm);
  if (r == 1) {
    EXPECT_EQ(st, SPARCL_ERR_INVALID_ARG);
  } else {
    EXPECT_NE(st, SPARCL_SUCCESS);
    EXPECT_NE(msg.find("rank 1"), std::string::npos) << msg;
    const float* res = sparcl_compressor_residual(c.c);
    size_t differ = 0;
    for (uint64_t i = 0; i < dim; ++i) differ += std::memcmp(&res[i], &g[i], 4) != 0;
    EXPECT_EQ(differ, 0u);
  }
  // Start both compressors over and check the next step against the reference.
  sparcl_compressor_reset(c.c);
  sparcl_compressor_reset(twin.c);
  Step s = run_step(comm.comm, c.c, twin.c, gradient(dim, r, 2));
  const std::vector<bool> want = reference_topk(s.sum, k);
  size_t wrong = 0;
  for (uint64_t i = 0; i < dim; ++i) wrong += (want[i] ? s.sum[i] : 0.0f) != s.out[i];
  EXPECT_EQ(wrong, 0u);
}

// Ranks that disagree (one selects locally; another k) fail with
// SPARCL_ERR_MISMATCH; the communicator stays usable.
TEST(GlobalSelection, DisagreeingRanksFailWithMismatch) {
  Comm comm;
  ASSERT_EQ(comm.status, SPARCL_SUCCESS);
  const int r = world_rank(), p = world_size();
  if (p < 2) GTEST_SKIP() << "needs two ranks";
  const uint64_t dim = 4000;
  for (int variant = 0; variant < 3; ++variant) {
    sparcl_compressor_config_t cfg = global_config(40, false);
    if (r == p - 1) {
      if (variant == 0) cfg.selection = SPARCL_SELECTION_LOCAL;
      if (variant == 1) cfg.k = 41;
      if (variant == 2) cfg.global_threshold = SPARCL_THRESHOLD_EXACT;
    }
    Compressor c(cfg, dim);
    std::vector<float> g = gradient(dim, r, variant), out(dim);
    const sparcl_status_t st = sparcl_allreduce_compressed(comm.comm, c.c, g.data(), out.data());
    const std::string msg = sparcl_comm_last_error(comm.comm);
    EXPECT_EQ(st, SPARCL_ERR_MISMATCH) << "variant " << variant << ": " << msg;
    if (variant == 0 && r == 0) {
      EXPECT_NE(msg.find("locally"), std::string::npos) << msg;
    }
    // The next call works.
    Compressor fresh(global_config(40, false), dim);
    EXPECT_EQ(sparcl_allreduce_compressed(comm.comm, fresh.c, g.data(), out.data()), SPARCL_SUCCESS)
        << sparcl_comm_last_error(comm.comm);
  }
}

// Bytes per rank stay within Ok-Topk's bound of 6k(P-1)/P pairs (plus
// headers), however many ranks there are.
TEST(GlobalSelection, VolumeWithinOkTopkBound) {
  Comm comm;
  ASSERT_EQ(comm.status, SPARCL_SUCCESS);
  const int r = world_rank(), p = world_size();
  const uint64_t dim = 100000, k = 1000;
  Compressor c(global_config(k, false), dim);
  std::vector<float> out(dim);
  sparcl_stats_t before, after;
  ASSERT_EQ(sparcl_comm_stats(comm.comm, &before), SPARCL_SUCCESS);
  for (int step = 0; step < 3; ++step) {
    std::vector<float> g = gradient(dim, r, step);
    ASSERT_EQ(sparcl_allreduce_compressed(comm.comm, c.c, g.data(), out.data()), SPARCL_SUCCESS);
  }
  ASSERT_EQ(sparcl_comm_stats(comm.comm, &after), SPARCL_SUCCESS);
  const double pairs_bound = 6.0 * double(k) * double(p - 1) / double(p);
  const double bytes = double(after.bytes_sent - before.bytes_sent) / 3.0;
  const double headers = double(after.messages_sent - before.messages_sent) / 3.0 * 80.0;
  EXPECT_LE(bytes, pairs_bound * 8.0 + headers) << bytes << " bytes per step";
}

// Selections that all fall in the first 1/20 of [0, dim): with equal owner
// ranges one owner receives them all; balanced ranges (cut after the first
// steps) and hashed ones spread them; each keeps exactly the sums at or
// above one threshold (the sampled mode, whose round 1 messages are small:
// the exact mode's best-k lists would hide the owners' imbalance).
TEST(GlobalSelection, PartitionsSpreadSkewedSelections) {
  const int r = world_rank(), p = world_size();
  const char* env = std::getenv("SPARCL_PARTITION");  // this test picks its own
  const std::string saved = env ? env : "";
  unsetenv("SPARCL_PARTITION");
  const uint64_t dim = 20000, k = 400;
  for (const sparcl_partition_t partition :
       {SPARCL_PARTITION_EQUAL, SPARCL_PARTITION_BALANCED, SPARCL_PARTITION_HASHED}) {
    sparcl_config_t config = SPARCL_CONFIG_INIT;
    config.timeout_ms = 120000;
    config.partition = partition;
    sparcl_comm_t comm = nullptr;
    ASSERT_EQ(sparcl_comm_create_mpi(MPI_COMM_WORLD, &config, &comm), SPARCL_SUCCESS);
    Compressor c(global_config(k, false), dim);
    sparcl_compressor_config_t local = global_config(k, false);
    local.selection = SPARCL_SELECTION_LOCAL;
    Compressor twin(local, dim);
    double balance = 0;
    for (int step = 0; step < 5; ++step) {
      std::vector<float> g = gradient(dim, r, step);
      for (uint64_t i = 0; i < dim / 20; ++i) g[i] *= 16;
      sparcl_stats_t before, after;
      ASSERT_EQ(sparcl_comm_stats(comm, &before), SPARCL_SUCCESS);
      Step s = run_step(comm, c.c, twin.c, g, step % 2 == 1);
      ASSERT_EQ(sparcl_comm_stats(comm, &after), SPARCL_SUCCESS);
      float smallest = INFINITY;
      for (uint64_t i = 0; i < dim; ++i)
        if (s.out[i] != 0.0f) smallest = std::min(smallest, std::fabs(s.out[i]));
      size_t wrong = 0;  // the kept set: every sum at or above the smallest kept one
      for (uint64_t i = 0; i < dim; ++i) {
        const float expect = s.sum[i] != 0.0f && std::fabs(s.sum[i]) >= smallest ? s.sum[i] : 0.0f;
        wrong += std::memcmp(&expect, &s.out[i], 4) != 0;
      }
      EXPECT_EQ(wrong, 0u) << "partition " << int(partition) << " step " << step;
      double rx = double(after.bytes_received - before.bytes_received), most = rx, total = rx;
      MPI_Allreduce(MPI_IN_PLACE, &most, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
      balance = most / (total / p);
    }
    // Bytes received per rank in the last step, the most over the mean.
    if (p > 2 && partition == SPARCL_PARTITION_EQUAL) {
      EXPECT_GT(balance, 1.2) << "the input is not skewed enough to tell the partitions apart";
    } else if (p > 2) {
      EXPECT_LT(balance, 1.1) << "partition " << int(partition);
    }
    sparcl_comm_free(comm);
  }
  if (env) setenv("SPARCL_PARTITION", saved.c_str(), 1);
}

// Configuration: SPARCL_SELECTION picks the default; a method without k
// cannot select globally.
TEST(GlobalSelection, Configuration) {
  sparcl_compressor_config_t cfg = SPARCL_COMPRESSOR_CONFIG_INIT;
  cfg.method = SPARCL_COMPRESS_THRESHOLD;
  cfg.threshold = 1.0f;
  cfg.selection = SPARCL_SELECTION_GLOBAL;
  sparcl_compressor_t c = nullptr;
  EXPECT_EQ(sparcl_compressor_create(&cfg, 100, &c), SPARCL_ERR_UNSUPPORTED);
  EXPECT_NE(std::string(sparcl_comm_last_error(nullptr)).find("threshold"), std::string::npos);
  cfg = SPARCL_COMPRESSOR_CONFIG_INIT;
  cfg.threshold_reuse = 0;
  cfg.selection = SPARCL_SELECTION_GLOBAL;
  EXPECT_EQ(sparcl_compressor_create(&cfg, 100, &c), SPARCL_ERR_INVALID_ARG);
  setenv("SPARCL_SELECTION", "sideways", 1);
  EXPECT_EQ(sparcl_compressor_create(nullptr, 100, &c), SPARCL_ERR_INVALID_ARG);
  EXPECT_NE(std::string(sparcl_comm_last_error(nullptr)).find("SPARCL_SELECTION"), std::string::npos);
  // SPARCL_SELECTION=global makes a default compressor select globally:
  // a rank with an explicit local one then disagrees with it.
  setenv("SPARCL_SELECTION", "global", 1);
  Comm comm;
  ASSERT_EQ(comm.status, SPARCL_SUCCESS);
  const int r = world_rank(), p = world_size();
  cfg = SPARCL_COMPRESSOR_CONFIG_INIT;
  if (p > 1 && r == 0) cfg.selection = SPARCL_SELECTION_LOCAL;
  Compressor env_default(cfg, 1000);
  unsetenv("SPARCL_SELECTION");
  ASSERT_EQ(env_default.status, SPARCL_SUCCESS);
  std::vector<float> g = gradient(1000, r, 0), out(1000);
  EXPECT_EQ(sparcl_allreduce_compressed(comm.comm, env_default.c, g.data(), out.data()),
            p > 1 ? SPARCL_ERR_MISMATCH : SPARCL_SUCCESS);
}

}  // namespace
