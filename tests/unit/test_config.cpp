// SPDX-License-Identifier: BSD-3-Clause
// Configuration: parsing of single values and resolve_config() with the
// SPARCL_* environment variables (src/config.hpp, src/config.cpp), and the
// algorithm names of the table (collectives/algorithms.cpp).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "collectives/algorithms.hpp"
#include "config.hpp"
#include "unit_types.hpp"

namespace {

using namespace sparcl_unit;

TEST(ParseAlgorithm, EveryName) {
  EXPECT_EQ(sparcl::parse_algorithm("auto"), SPARCL_ALGO_AUTO);
  EXPECT_EQ(sparcl::parse_algorithm("recursive_doubling"), SPARCL_ALGO_RECURSIVE_DOUBLING);
  EXPECT_EQ(sparcl::parse_algorithm("split_allgather"), SPARCL_ALGO_SPLIT_ALLGATHER);
  EXPECT_EQ(sparcl::parse_algorithm("split_dense"), SPARCL_ALGO_SPLIT_DENSE);
  EXPECT_EQ(sparcl::parse_algorithm("ring"), SPARCL_ALGO_RING);
  EXPECT_EQ(sparcl::parse_algorithm("halving_doubling"), SPARCL_ALGO_HALVING_DOUBLING);
  EXPECT_EQ(sparcl::parse_algorithm("allgather"), SPARCL_ALGO_ALLGATHER);
  EXPECT_EQ(sparcl::parse_algorithm("dense"), SPARCL_ALGO_DENSE);
  EXPECT_EQ(sparcl::parse_algorithm("hierarchical"), SPARCL_ALGO_HIERARCHICAL);
  EXPECT_EQ(sparcl::parse_algorithm("split_allgather_hashed"), SPARCL_ALGO_SPLIT_ALLGATHER_HASHED);
  EXPECT_EQ(sparcl::parse_algorithm("halving_doubling_hashed"), SPARCL_ALGO_HALVING_DOUBLING_HASHED);
}

TEST(ParseAlgorithm, NamesRoundTrip) {
  for (int a = SPARCL_ALGO_AUTO; a <= SPARCL_ALGO_HALVING_DOUBLING_HASHED; ++a) {
    const auto alg = sparcl_algorithm_t(a);
    const std::string name = sparcl::algorithm_name(alg);
    EXPECT_NE(name, "unknown") << a;
    EXPECT_EQ(sparcl::parse_algorithm(name), alg) << name;
  }
  EXPECT_STREQ(sparcl::algorithm_name(sparcl_algorithm_t(SPARCL_ALGO_HALVING_DOUBLING_HASHED + 1)), "unknown");
  EXPECT_STREQ(sparcl::algorithm_name(sparcl_algorithm_t(99)), "unknown");
}

// The table lists every sparcl_algorithm_t in order; every row but auto
// has a factory for every type and a cost.
TEST(AlgorithmTable, RowsAreComplete) {
  size_t n = 0;
  const sparcl::AlgorithmEntry* table = sparcl::algorithm_table(n);
  ASSERT_EQ(n, size_t(SPARCL_ALGO_HALVING_DOUBLING_HASHED) + 1);
  for (size_t i = 0; i < n; ++i) {
    const sparcl::AlgorithmEntry& a = table[i];
    EXPECT_EQ(size_t(a.id), i) << a.name;
    EXPECT_NE(std::string(a.summary), "") << a.name;
    if (a.id == SPARCL_ALGO_AUTO) {
      EXPECT_FALSE(a.concrete());
      continue;
    }
    EXPECT_TRUE(a.concrete()) << a.name;
    EXPECT_TRUE(a.make.f32_i32 && a.make.f32_i64 && a.make.f64_i32 && a.make.f64_i64) << a.name;
  }
  EXPECT_EQ(sparcl_algorithm_count(), int(n));
}

TEST(ParseAlgorithm, UnknownNames) {
  for (const char* bad : {"", "Ring", "RING", "ring ", " ring", "rings", "bogus", "recursive-doubling", "0", "4"}) {
    const std::string msg = expect_error([&] { sparcl::parse_algorithm(bad); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(msg.find("unknown algorithm '" + std::string(bad) + "'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("halving_doubling"), std::string::npos) << msg;  // lists the choices
  }
}

TEST(ParseTransport, Names) {
  EXPECT_EQ(sparcl::parse_transport("mpi"), SPARCL_TRANSPORT_MPI);
  EXPECT_EQ(sparcl::parse_transport("ofi"), SPARCL_TRANSPORT_OFI);
  EXPECT_EQ(sparcl::parse_transport("ucx"), SPARCL_TRANSPORT_UCX);
  for (auto t : {SPARCL_TRANSPORT_MPI, SPARCL_TRANSPORT_OFI, SPARCL_TRANSPORT_UCX})
    EXPECT_EQ(sparcl::parse_transport(sparcl::transport_name(t)), t);
  EXPECT_STREQ(sparcl::transport_name(SPARCL_TRANSPORT_DEFAULT), "default");
  for (const char* bad : {"", "MPI", "tcp", "default", "mpi "}) {
    const std::string msg = expect_error([&] { sparcl::parse_transport(bad); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(msg.find("'" + std::string(bad) + "'"), std::string::npos) << msg;
  }
}

TEST(ParseEncoding, NamesRoundTrip) {
  const char* names[] = {"raw", "fp16", "bf16", "qsgd8", "qsgd4", "qsgd2"};
  for (int e = SPARCL_VALUES_RAW; e <= SPARCL_VALUES_QSGD2; ++e) {
    EXPECT_EQ(sparcl::parse_encoding(names[e]), sparcl_value_encoding_t(e));
    EXPECT_STREQ(sparcl::encoding_name(sparcl_value_encoding_t(e)), names[e]);
  }
  EXPECT_STREQ(sparcl::encoding_name(sparcl_value_encoding_t(6)), "unknown");
  for (const char* bad : {"", "RAW", "fp32", "qsgd", "qsgd16", "fp16 ", "4"}) {
    const std::string msg = expect_error([&] { sparcl::parse_encoding(bad); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(msg.find("'" + std::string(bad) + "'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("qsgd2"), std::string::npos) << msg;  // lists the choices
  }
}

// The public names (sparcl_algorithm_name, sparcl_encoding_name) are the
// ones the environment variables accept, and NULL beyond the enums.
TEST(PublicNames, AreTheParsedNames) {
  int algorithms = 0;
  for (; const char* n = sparcl_algorithm_name(sparcl_algorithm_t(algorithms)); ++algorithms)
    EXPECT_EQ(sparcl::parse_algorithm(n), sparcl_algorithm_t(algorithms)) << n;
  EXPECT_EQ(algorithms, SPARCL_ALGO_HALVING_DOUBLING_HASHED + 1);
  EXPECT_EQ(sparcl_algorithm_name(sparcl_algorithm_t(-1)), nullptr);
  int encodings = 0;
  for (; const char* n = sparcl_encoding_name(sparcl_value_encoding_t(encodings)); ++encodings)
    EXPECT_EQ(sparcl::parse_encoding(n), sparcl_value_encoding_t(encodings)) << n;
  EXPECT_EQ(encodings, SPARCL_VALUES_QSGD2 + 1);
  EXPECT_EQ(sparcl_encoding_name(sparcl_value_encoding_t(-1)), nullptr);
}

TEST(ParseQuantizationBucket, Values) {
  EXPECT_EQ(sparcl::parse_quantization_bucket("1"), 1u);
  EXPECT_EQ(sparcl::parse_quantization_bucket("512"), 512u);
  EXPECT_EQ(sparcl::parse_quantization_bucket("4294967295"), 4294967295u);
  for (const char* bad : {"", "0", "-1", "4294967296", "99999999999999999999", "1k", "2.5", " 8"}) {
    const std::string msg = expect_error([&] { sparcl::parse_quantization_bucket(bad); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(msg.find("'" + std::string(bad) + "'"), std::string::npos) << msg;
  }
}

TEST(ParseTimeout, GoodValues) {
  EXPECT_EQ(sparcl::parse_timeout_ms("0"), 0);
  EXPECT_EQ(sparcl::parse_timeout_ms("1"), 1);
  EXPECT_EQ(sparcl::parse_timeout_ms("1800000"), 1800000);
  EXPECT_EQ(sparcl::parse_timeout_ms("9223372036854775807"), INT64_MAX);
  EXPECT_EQ(sparcl::parse_timeout_ms("007"), 7);
}

TEST(ParseTimeout, BadValues) {
  for (const char* bad : {"", "-1", "-9223372036854775808", "abc", "10ms", "1.5", "1e3", "5 ", "0x10x",
                          "9223372036854775808", "99999999999999999999999"}) {
    const std::string msg = expect_error([&] { sparcl::parse_timeout_ms(bad); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(msg.find("timeout '" + std::string(bad) + "'"), std::string::npos) << msg;
  }
}

// Stores any int in a C enum field, as a C caller may.
template <class E>
void set_raw(E& field, int value) {
  static_assert(sizeof(E) == sizeof(int), "C enums are int-sized");
  std::memcpy(&field, &value, sizeof value);
}

// Sets or clears the SPARCL_* variables for one test and restores them after.
class ResolveConfig : public ::testing::Test {
 protected:
  static constexpr const char* kVars[] = {"SPARCL_ALGORITHM", "SPARCL_TIMEOUT_MS", "SPARCL_TRANSPORT",
                                          "SPARCL_OFI_PROVIDER", "SPARCL_PROGRESS_THREAD", "SPARCL_ENCODING",
                                          "SPARCL_QSGD_BUCKET", "SPARCL_CHECKSUM"};
  void SetUp() override {
    for (const char* v : kVars) {
      const char* old = std::getenv(v);
      saved_.push_back(old ? std::make_pair(true, std::string(old)) : std::make_pair(false, std::string()));
      unsetenv(v);
    }
  }
  void TearDown() override {
    for (size_t i = 0; i < saved_.size(); ++i) {
      if (saved_[i].first) setenv(kVars[i], saved_[i].second.c_str(), 1);
      else unsetenv(kVars[i]);
    }
  }
  std::vector<std::pair<bool, std::string>> saved_;
};

TEST_F(ResolveConfig, DefaultsWithoutConfigOrEnvironment) {
  const sparcl_config_t init = SPARCL_CONFIG_INIT;
  EXPECT_EQ(init.struct_size, sizeof(sparcl_config_t));
  EXPECT_EQ(init.algorithm, SPARCL_ALGO_AUTO);
  EXPECT_EQ(init.timeout_ms, 1800000);

  const sparcl::Config c = sparcl::resolve_config(nullptr);
  EXPECT_EQ(c.algorithm, SPARCL_ALGO_AUTO);
  EXPECT_EQ(c.transport, init.transport);
  EXPECT_EQ(c.timeout_ms, 1800000);

  const sparcl::Config c2 = sparcl::resolve_config(&init);
  EXPECT_EQ(c2.algorithm, c.algorithm);
  EXPECT_EQ(c2.transport, c.transport);
  EXPECT_EQ(c2.timeout_ms, c.timeout_ms);
  EXPECT_EQ(c2.ofi_provider, c.ofi_provider);
  EXPECT_EQ(init.progress_thread, 0);
  EXPECT_FALSE(c.progress_thread);
  EXPECT_FALSE(c2.progress_thread);
}

TEST_F(ResolveConfig, UserFields) {
  sparcl_config_t cfg = SPARCL_CONFIG_INIT;
  cfg.algorithm = SPARCL_ALGO_RING;
  cfg.transport = SPARCL_TRANSPORT_MPI;
  cfg.timeout_ms = 0;
  cfg.ofi_provider = "verbs;ofi_rxm";
  const sparcl::Config c = sparcl::resolve_config(&cfg);
  EXPECT_EQ(c.algorithm, SPARCL_ALGO_RING);
  EXPECT_EQ(c.transport, SPARCL_TRANSPORT_MPI);
  EXPECT_EQ(c.timeout_ms, 0);
  EXPECT_EQ(c.ofi_provider, "verbs;ofi_rxm");
  EXPECT_FALSE(c.progress_thread);
  cfg.progress_thread = 1;
  EXPECT_TRUE(sparcl::resolve_config(&cfg).progress_thread);
  cfg.progress_thread = 0;

  for (int a = SPARCL_ALGO_AUTO; a <= SPARCL_ALGO_HALVING_DOUBLING_HASHED; ++a) {
    cfg.algorithm = sparcl_algorithm_t(a);
    EXPECT_EQ(sparcl::resolve_config(&cfg).algorithm, sparcl_algorithm_t(a));
  }
  cfg.algorithm = SPARCL_ALGO_AUTO;
  for (auto t : {SPARCL_TRANSPORT_DEFAULT, SPARCL_TRANSPORT_MPI, SPARCL_TRANSPORT_OFI, SPARCL_TRANSPORT_UCX}) {
    cfg.transport = t;
    EXPECT_EQ(sparcl::resolve_config(&cfg).transport, t);
  }

  // A larger struct (from a newer caller) is accepted.
  struct Bigger {
    sparcl_config_t base;
    int64_t extra;
  } big{SPARCL_CONFIG_INIT, 5};
  big.base.struct_size = sizeof(Bigger);
  big.base.algorithm = SPARCL_ALGO_SPLIT_DENSE;
  EXPECT_EQ(sparcl::resolve_config(&big.base).algorithm, SPARCL_ALGO_SPLIT_DENSE);
}

TEST_F(ResolveConfig, BadUserFields) {
  sparcl_config_t cfg = SPARCL_CONFIG_INIT;
  for (size_t size : {size_t(0), size_t(8)}) {
    cfg = SPARCL_CONFIG_INIT;
    cfg.struct_size = size;
    const std::string msg = expect_error([&] { sparcl::resolve_config(&cfg); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(msg.find("struct_size"), std::string::npos) << msg;
  }
  // Out-of-range enum values, as a C caller may store them.
  for (int bad : {-1, SPARCL_ALGO_HALVING_DOUBLING_HASHED + 1, 99, int(0x80000000u)}) {
    cfg = SPARCL_CONFIG_INIT;
    set_raw(cfg.algorithm, bad);
    const std::string msg = expect_error([&] { sparcl::resolve_config(&cfg); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(msg.find("algorithm"), std::string::npos) << msg;
  }
  for (int bad : {-1, 4, 7, 99}) {
    cfg = SPARCL_CONFIG_INIT;
    set_raw(cfg.transport, bad);
    const std::string msg = expect_error([&] { sparcl::resolve_config(&cfg); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(msg.find("transport"), std::string::npos) << msg;
  }

  cfg = SPARCL_CONFIG_INIT;
  cfg.timeout_ms = -1;
  std::string msg = expect_error([&] { sparcl::resolve_config(&cfg); }, SPARCL_ERR_INVALID_ARG);
  EXPECT_NE(msg.find("timeout_ms"), std::string::npos) << msg;

  for (int bad : {2, -1, 100}) {
    cfg = SPARCL_CONFIG_INIT;
    cfg.progress_thread = bad;
    msg = expect_error([&] { sparcl::resolve_config(&cfg); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(msg.find("progress_thread"), std::string::npos) << msg;
  }

  cfg = SPARCL_CONFIG_INIT;
  cfg.ofi_provider = "";
  msg = expect_error([&] { sparcl::resolve_config(&cfg); }, SPARCL_ERR_INVALID_ARG);
  EXPECT_NE(msg.find("ofi_provider"), std::string::npos) << msg;
}

TEST_F(ResolveConfig, EnvironmentOverridesFields) {
  sparcl_config_t cfg = SPARCL_CONFIG_INIT;
  cfg.algorithm = SPARCL_ALGO_RING;
  cfg.timeout_ms = 5000;
  cfg.transport = SPARCL_TRANSPORT_MPI;

  setenv("SPARCL_ALGORITHM", "halving_doubling", 1);
  sparcl::Config c = sparcl::resolve_config(&cfg);
  EXPECT_EQ(c.algorithm, SPARCL_ALGO_HALVING_DOUBLING);
  EXPECT_EQ(c.timeout_ms, 5000);
  EXPECT_EQ(sparcl::resolve_config(nullptr).algorithm, SPARCL_ALGO_HALVING_DOUBLING);

  setenv("SPARCL_TIMEOUT_MS", "250", 1);
  c = sparcl::resolve_config(&cfg);
  EXPECT_EQ(c.algorithm, SPARCL_ALGO_HALVING_DOUBLING);
  EXPECT_EQ(c.timeout_ms, 250);
  setenv("SPARCL_TIMEOUT_MS", "0", 1);
  EXPECT_EQ(sparcl::resolve_config(&cfg).timeout_ms, 0);

  setenv("SPARCL_TRANSPORT", "ucx", 1);
  EXPECT_EQ(sparcl::resolve_config(&cfg).transport, SPARCL_TRANSPORT_UCX);
  setenv("SPARCL_TRANSPORT", "ofi", 1);
  EXPECT_EQ(sparcl::resolve_config(&cfg).transport, SPARCL_TRANSPORT_OFI);
  setenv("SPARCL_TRANSPORT", "mpi", 1);
  EXPECT_EQ(sparcl::resolve_config(nullptr).transport, SPARCL_TRANSPORT_MPI);

  setenv("SPARCL_OFI_PROVIDER", "shm", 1);
  cfg.ofi_provider = "tcp";
  EXPECT_EQ(sparcl::resolve_config(&cfg).ofi_provider, "shm");

  setenv("SPARCL_PROGRESS_THREAD", "1", 1);
  EXPECT_TRUE(sparcl::resolve_config(&cfg).progress_thread);
  cfg.progress_thread = 1;
  setenv("SPARCL_PROGRESS_THREAD", "0", 1);
  EXPECT_FALSE(sparcl::resolve_config(&cfg).progress_thread);
  cfg.progress_thread = 0;

  unsetenv("SPARCL_ALGORITHM");
  unsetenv("SPARCL_TIMEOUT_MS");
  unsetenv("SPARCL_TRANSPORT");
  unsetenv("SPARCL_OFI_PROVIDER");
  unsetenv("SPARCL_PROGRESS_THREAD");
  c = sparcl::resolve_config(&cfg);
  EXPECT_EQ(c.algorithm, SPARCL_ALGO_RING);
  EXPECT_EQ(c.timeout_ms, 5000);
  EXPECT_EQ(c.transport, SPARCL_TRANSPORT_MPI);
  EXPECT_EQ(c.ofi_provider, "tcp");
}

TEST_F(ResolveConfig, EncodingAndChecksum) {
  sparcl_config_t cfg = SPARCL_CONFIG_INIT;
  EXPECT_EQ(cfg.encoding, SPARCL_VALUES_RAW);
  EXPECT_EQ(cfg.quantization_bucket, 512u);
  EXPECT_EQ(cfg.checksum, 0);
  sparcl::Config c = sparcl::resolve_config(nullptr);
  EXPECT_EQ(c.encoding, SPARCL_VALUES_RAW);
  EXPECT_EQ(c.quantization_bucket, 512u);
  EXPECT_FALSE(c.checksum);

  cfg.encoding = SPARCL_VALUES_QSGD4;
  cfg.quantization_bucket = 1024;
  cfg.checksum = 1;
  c = sparcl::resolve_config(&cfg);
  EXPECT_EQ(c.encoding, SPARCL_VALUES_QSGD4);
  EXPECT_EQ(c.quantization_bucket, 1024u);
  EXPECT_TRUE(c.checksum);

  setenv("SPARCL_ENCODING", "bf16", 1);
  setenv("SPARCL_QSGD_BUCKET", "64", 1);
  setenv("SPARCL_CHECKSUM", "0", 1);
  c = sparcl::resolve_config(&cfg);
  EXPECT_EQ(c.encoding, SPARCL_VALUES_BF16);
  EXPECT_EQ(c.quantization_bucket, 64u);
  EXPECT_FALSE(c.checksum);
  setenv("SPARCL_CHECKSUM", "1", 1);
  EXPECT_TRUE(sparcl::resolve_config(nullptr).checksum);

  for (const char* var : {"SPARCL_ENCODING", "SPARCL_QSGD_BUCKET", "SPARCL_CHECKSUM"}) {
    setenv(var, "bogus", 1);
    const std::string msg = expect_error([] { sparcl::resolve_config(nullptr); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(msg.find(var), std::string::npos) << msg;
    unsetenv(var);
  }

  // Bad fields, each named.
  auto expect_rejected = [](const sparcl_config_t& b, const char* field) {
    const std::string msg = expect_error([&] { sparcl::resolve_config(&b); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(msg.find(field), std::string::npos) << msg;
  };
  for (int bad : {-1, 6, 99}) {
    sparcl_config_t b = SPARCL_CONFIG_INIT;
    set_raw(b.encoding, bad);
    expect_rejected(b, "config.encoding");
  }
  for (size_t bad : {size_t(0), size_t(1) << 32}) {
    sparcl_config_t b = SPARCL_CONFIG_INIT;
    b.quantization_bucket = bad;
    expect_rejected(b, "config.quantization_bucket");
  }
  for (int bad : {2, -1}) {
    sparcl_config_t b = SPARCL_CONFIG_INIT;
    b.checksum = bad;
    expect_rejected(b, "config.checksum");
  }

  // A struct from an older header (ending before the encoding) keeps the
  // defaults, whatever lies beyond its end.
  sparcl_config_t old = SPARCL_CONFIG_INIT;
  old.struct_size = offsetof(sparcl_config_t, encoding);
  set_raw(old.encoding, 99);
  old.quantization_bucket = 0;
  old.checksum = 7;
  c = sparcl::resolve_config(&old);
  EXPECT_EQ(c.encoding, SPARCL_VALUES_RAW);
  EXPECT_EQ(c.quantization_bucket, 512u);
  EXPECT_FALSE(c.checksum);
}

TEST_F(ResolveConfig, BadEnvironment) {
  setenv("SPARCL_ALGORITHM", "fastest", 1);
  std::string msg = expect_error([] { sparcl::resolve_config(nullptr); }, SPARCL_ERR_INVALID_ARG);
  EXPECT_NE(msg.find("SPARCL_ALGORITHM"), std::string::npos) << msg;
  EXPECT_NE(msg.find("fastest"), std::string::npos) << msg;
  setenv("SPARCL_ALGORITHM", "", 1);
  expect_error([] { sparcl::resolve_config(nullptr); }, SPARCL_ERR_INVALID_ARG);
  unsetenv("SPARCL_ALGORITHM");

  for (const char* bad : {"-5", "soon", "", "1s"}) {
    setenv("SPARCL_TIMEOUT_MS", bad, 1);
    msg = expect_error([] { sparcl::resolve_config(nullptr); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(msg.find("SPARCL_TIMEOUT_MS"), std::string::npos) << msg;
  }
  unsetenv("SPARCL_TIMEOUT_MS");

  for (const char* bad : {"libfabric", "MPI", "", "tcp"}) {
    setenv("SPARCL_TRANSPORT", bad, 1);
    msg = expect_error([] { sparcl::resolve_config(nullptr); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(msg.find("SPARCL_TRANSPORT"), std::string::npos) << msg;
  }
  unsetenv("SPARCL_TRANSPORT");

  setenv("SPARCL_OFI_PROVIDER", "", 1);
  msg = expect_error([] { sparcl::resolve_config(nullptr); }, SPARCL_ERR_INVALID_ARG);
  EXPECT_NE(msg.find("SPARCL_OFI_PROVIDER"), std::string::npos) << msg;
  unsetenv("SPARCL_OFI_PROVIDER");

  for (const char* bad : {"yes", "", "2", "true", " 1"}) {
    setenv("SPARCL_PROGRESS_THREAD", bad, 1);
    msg = expect_error([] { sparcl::resolve_config(nullptr); }, SPARCL_ERR_INVALID_ARG);
    EXPECT_NE(msg.find("SPARCL_PROGRESS_THREAD"), std::string::npos) << msg;
  }
  unsetenv("SPARCL_PROGRESS_THREAD");
  EXPECT_NO_THROW(sparcl::resolve_config(nullptr));

  // A bad struct is reported even when the environment would override its field.
  sparcl_config_t cfg = SPARCL_CONFIG_INIT;
  cfg.struct_size = 0;
  setenv("SPARCL_ALGORITHM", "ring", 1);
  expect_error([&] { sparcl::resolve_config(&cfg); }, SPARCL_ERR_INVALID_ARG);
}

// Deadlines of operations: 0 and timeouts past the clock's range mean never
// (a timeout of INT64_MAX ms once overflowed the clock into the past).
TEST(DeadlineAfter, ZeroAndHugeTimeoutsNeverExpire) {
  using Clock = std::chrono::steady_clock;
  EXPECT_EQ(sparcl::deadline_after(0), Clock::time_point::max());
  EXPECT_EQ(sparcl::deadline_after(std::numeric_limits<int64_t>::max()), Clock::time_point::max());
  EXPECT_EQ(sparcl::deadline_after(sparcl::parse_timeout_ms("9223372036854775807")), Clock::time_point::max());
  const auto before = Clock::now();
  const auto d = sparcl::deadline_after(1500);
  EXPECT_GE(d, before + std::chrono::milliseconds(1500));
  EXPECT_LE(d, Clock::now() + std::chrono::milliseconds(1500));
  // A century is still a real deadline on a monotonic clock of 292 years.
  const int64_t century = int64_t(100) * 365 * 24 * 3600 * 1000;
  EXPECT_LT(sparcl::deadline_after(century), Clock::time_point::max());
}

}  // namespace
