// SPDX-License-Identifier: BSD-3-Clause
// Kernel benchmarks of ml/compress/ against baselines on the same data:
//
//   Select/*     top-k of N normal floats at a density: sparcl's exact, approximate,
//                bucketed, threshold and random-k selections, against
//                std::nth_element and std::partial_sort on a copy (the copy is
//                part of their time, and Memcpy/N shows what it costs).
//   Memcpy/N, Read/N   memcpy of the same bytes, and a read-only pass (sum).
//   Values/*     encode and decode of N values per codec; bytes = float32 input
//                (4 N), the same for decode, so GB/s compare with Memcpy/N.
//   Indices/*    delta-varint / bitmap coding of the indices of a top-k
//                selection; bytes = 4 * nnz (the raw uint32 indices).
//   Crc32c/*     the checksum of the wire format (src/crc32c.hpp) over 4 N
//                bytes: the SSE4.2 instruction and the portable tables.
//   MergeAll/Tree, MergeAll/Dense   the sum of `parts` sparse streams of
//                uniform random indices, each holding density_1e4 / 10^4 of a
//                range of n, the two ways merge_all can take (src/sparse.hpp:
//                a tree of pairwise merges, or a dense sum gone back to
//                sparse); bytes = the parts' entries (8 B each); the label
//                says which one merge_all_is_dense picks.
//   ToSparse     a dense vector of n floats with density_1e4 / 10^4 of them
//                set, back to sparse (src/sparse.hpp to_sparse_stream: what a
//                dense sum costs to return sparse); bytes = 4 n, so GB/s
//                compare with Read/N.
//   HostBufferCheck   what the sparse allreduce pays, per call, to learn that
//                its buffers are host memory (DeviceStaging in
//                collectives/start.hpp; in builds without CUDA a null check).
//
// Run with --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// and compare medians: the machine may be shared.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <tuple>
#include <vector>

#include "src/codec/codec.hpp"
#include "ml/compress/select.hpp"
#include "collectives/start.hpp"
#include "src/crc32c.hpp"
#include "src/sparse.hpp"

namespace {

namespace cz = sparcl::compress;

// N(0, 1) floats, generated once per size.
const std::vector<float>& normal_data(size_t n) {
  static std::map<size_t, std::unique_ptr<std::vector<float>>> cache;
  auto& slot = cache[n];
  if (!slot) {
    slot = std::make_unique<std::vector<float>>(n);
    std::mt19937_64 rng(12345 + n);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (auto& v : *slot) v = dist(rng);
  }
  return *slot;
}

size_t k_of(const benchmark::State& state) {
  const size_t n = size_t(state.range(0));
  return std::max<size_t>(1, size_t(std::llround(double(n) * double(state.range(1)) / 1e4)));  // range(1): density in 1e-4
}

bool by_magnitude(float a, float b) { return std::fabs(a) > std::fabs(b); }

void set_bytes(benchmark::State& state, size_t bytes) {
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bytes));
}

// --- baselines ---

void Memcpy(benchmark::State& state) {
  const size_t n = size_t(state.range(0));
  const auto& x = normal_data(n);
  std::vector<float> y(n);
  for (auto _ : state) {
    std::memcpy(y.data(), x.data(), n * sizeof(float));
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, n * sizeof(float));
}

void Read(benchmark::State& state) {
  const size_t n = size_t(state.range(0));
  const auto& x = normal_data(n);
  for (auto _ : state) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      s0 += x[i]; s1 += x[i + 1]; s2 += x[i + 2]; s3 += x[i + 3];
      s4 += x[i + 4]; s5 += x[i + 5]; s6 += x[i + 6]; s7 += x[i + 7];
    }
    float s = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
    benchmark::DoNotOptimize(s);
  }
  set_bytes(state, n * sizeof(float));
}

void NthElement(benchmark::State& state) {
  const size_t n = size_t(state.range(0)), k = k_of(state);
  const auto& x = normal_data(n);
  std::vector<float> work(n);
  for (auto _ : state) {
    std::memcpy(work.data(), x.data(), n * sizeof(float));
    std::nth_element(work.begin(), work.begin() + long(k - 1), work.end(), by_magnitude);
    benchmark::DoNotOptimize(work[k - 1]);
  }
  set_bytes(state, n * sizeof(float));
}

void PartialSort(benchmark::State& state) {
  const size_t n = size_t(state.range(0)), k = k_of(state);
  const auto& x = normal_data(n);
  std::vector<float> work(n);
  for (auto _ : state) {
    std::memcpy(work.data(), x.data(), n * sizeof(float));
    std::partial_sort(work.begin(), work.begin() + long(k), work.end(), by_magnitude);
    benchmark::DoNotOptimize(work[k - 1]);
  }
  set_bytes(state, n * sizeof(float));
}

// --- sparcl's selections ---

template <int kWhich>
void Select(benchmark::State& state) {
  const size_t n = size_t(state.range(0)), k = k_of(state);
  const auto& x = normal_data(n);
  cz::Selection out;
  cz::SelectWorkspace ws;
  float t = 0.0f;
  if (kWhich == 3) {  // a threshold that keeps about k
    cz::select_topk(x.data(), n, k, out, ws);
    t = cz::bits_float(cz::kth_largest_key(x.data(), n, k, ws));
  }
  uint64_t step = 0;
  for (auto _ : state) {
    switch (kWhich) {
      case 0: cz::select_topk(x.data(), n, k, out, ws); break;
      case 1: cz::select_approx_topk(x.data(), n, k, out, ws); break;
      case 2: cz::select_topk_bucketed(x.data(), n, k, 512, out, ws); break;
      case 3: cz::select_threshold(x.data(), n, t, out); break;
      case 4: cz::select_randomk(x.data(), n, k, 7, step++, out, ws); break;
    }
    benchmark::DoNotOptimize(out.idx.data());
  }
  state.counters["selected"] = double(out.size());
  set_bytes(state, n * sizeof(float));
}

void SelectArgs(benchmark::internal::Benchmark* b) {
  for (int64_t n : {int64_t(1) << 20, int64_t(1) << 24})
    for (int64_t d : {10, 100, 1000}) b->Args({n, d});
  b->ArgNames({"n", "density_1e4"})->Unit(benchmark::kMillisecond);
}

// --- value codecs ---

template <cz::ValueCodec kCodec>
void Encode(benchmark::State& state) {
  const size_t n = size_t(state.range(0));
  const auto& x = normal_data(n);
  std::vector<uint8_t> buf(cz::encoded_values_size(kCodec, n, cz::kDefaultQuantBucket));
  uint64_t seed = 1;
  for (auto _ : state) {
    cz::encode_values(kCodec, x.data(), n, cz::kDefaultQuantBucket, seed++, buf.data());
    benchmark::DoNotOptimize(buf.data());
  }
  set_bytes(state, n * sizeof(float));
  state.counters["encoded_bytes"] = double(buf.size());
}

template <cz::ValueCodec kCodec>
void Decode(benchmark::State& state) {
  const size_t n = size_t(state.range(0));
  const auto& x = normal_data(n);
  std::vector<uint8_t> buf(cz::encoded_values_size(kCodec, n, cz::kDefaultQuantBucket));
  cz::encode_values(kCodec, x.data(), n, cz::kDefaultQuantBucket, 1, buf.data());
  std::vector<float> y(n);
  for (auto _ : state) {
    cz::decode_values(kCodec, buf.data(), buf.size(), n, cz::kDefaultQuantBucket, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(state, n * sizeof(float));
}

// --- index coding: the indices of a top-k selection of 16M entries ---

const cz::Selection& topk_indices(size_t n, size_t k) {
  static std::map<std::pair<size_t, size_t>, std::unique_ptr<cz::Selection>> cache;
  auto& slot = cache[{n, k}];
  if (!slot) {
    slot = std::make_unique<cz::Selection>();
    cz::SelectWorkspace ws;
    cz::select_topk(normal_data(n).data(), n, k, *slot, ws);
  }
  return *slot;
}

void IndicesEncode(benchmark::State& state) {
  const size_t n = size_t(state.range(0)), k = k_of(state);
  const auto& sel = topk_indices(n, k);
  const cz::IndexPlan plan = cz::plan_indices(sel.idx.data(), sel.size(), 0, n);
  std::vector<uint8_t> buf(plan.bytes);
  for (auto _ : state) {
    const cz::IndexPlan p = cz::plan_indices(sel.idx.data(), sel.size(), 0, n);
    cz::write_indices(p, sel.idx.data(), sel.size(), 0, n, buf.data());
    benchmark::DoNotOptimize(buf.data());
  }
  set_bytes(state, sel.size() * 4);
  state.counters["encoded_bytes"] = double(plan.bytes);
  state.counters["bitmap"] = plan.coding == cz::IndexCoding::Bitmap ? 1 : 0;
}

void IndicesDecode(benchmark::State& state) {
  const size_t n = size_t(state.range(0)), k = k_of(state);
  const auto& sel = topk_indices(n, k);
  std::vector<uint8_t> buf;
  cz::encode_indices(sel.idx.data(), sel.size(), 0, n, buf);
  std::vector<uint32_t> out(sel.size());
  for (auto _ : state) {
    cz::decode_indices(buf.data(), buf.size(), sel.size(), 0, n, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  set_bytes(state, sel.size() * 4);
}

void IndicesMemcpy(benchmark::State& state) {
  const size_t n = size_t(state.range(0)), k = k_of(state);
  const auto& sel = topk_indices(n, k);
  std::vector<uint32_t> out(sel.size());
  for (auto _ : state) {
    std::memcpy(out.data(), sel.idx.data(), sel.size() * 4);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, sel.size() * 4);
}

void IndexArgs(benchmark::internal::Benchmark* b) {
  for (int64_t d : {10, 100, 1000, 3000}) b->Args({int64_t(1) << 24, d});
  b->ArgNames({"n", "density_1e4"})->Unit(benchmark::kMicrosecond);
}

template <bool kHardware>
void Crc32c(benchmark::State& state) {
  const size_t n = size_t(state.range(0));
  const auto& x = normal_data(n);
  if (kHardware && !sparcl::crc32c_hardware_available()) {
    state.SkipWithError("no SSE4.2");
    return;
  }
  for (auto _ : state)
    benchmark::DoNotOptimize(kHardware ? sparcl::crc32c_hardware(x.data(), n * sizeof(float))
                                       : sparcl::crc32c_portable(x.data(), n * sizeof(float)));
  set_bytes(state, n * sizeof(float));
}

// `parts` index sets of uniform random entries, density d each, over [0, n).
struct MergeParts {
  std::vector<std::vector<uint32_t>> idx;
  std::vector<std::vector<float>> val;
  std::vector<sparcl::View<float, uint32_t>> views;
  uint64_t entries = 0;
};

const MergeParts& merge_parts(size_t n, size_t parts, double d) {
  static std::map<std::tuple<size_t, size_t, double>, MergeParts> cache;
  auto key = std::make_tuple(n, parts, d);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  MergeParts& m = cache[key];
  std::mt19937_64 rng(n * 31 + parts);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  m.idx.resize(parts);
  m.val.resize(parts);
  for (size_t k = 0; k < parts; ++k) {
    for (size_t i = 0; i < n; ++i)
      if (u(rng) < d) m.idx[k].push_back(uint32_t(i)), m.val[k].push_back(float(u(rng)) + 0.5f);
    m.entries += m.idx[k].size();
  }
  for (size_t k = 0; k < parts; ++k)
    m.views.push_back(sparcl::View<float, uint32_t>{sparcl::Range{0, n}, false, m.idx[k].size(), m.idx[k].data(),
                                                    m.val[k].data()});
  return m;
}

template <bool kDense>
void MergeAll(benchmark::State& state) {
  const size_t n = size_t(state.range(0)), parts = size_t(state.range(1));
  const MergeParts& m = merge_parts(n, parts, double(state.range(2)) * 1e-4);
  for (auto _ : state) {
    auto sum = kDense ? sparcl::merge_all_dense(m.views, m.entries, false) : sparcl::merge_all_tree(m.views);
    benchmark::DoNotOptimize(sum.val.data());
  }
  state.SetLabel(sparcl::merge_all_is_dense<float, uint32_t>(m.entries, n, parts) ? "merge_all: dense"
                                                                                 : "merge_all: tree");
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(m.entries) * 8);
}

void ToSparse(benchmark::State& state) {
  const size_t n = size_t(state.range(0));
  const double d = double(state.range(1)) * 1e-4;
  static std::map<std::pair<size_t, double>, std::vector<float>> cache;
  std::vector<float>& dense = cache[{n, d}];
  uint64_t set = 0;
  if (dense.empty()) {
    dense.assign(n, 0.0f);
    std::mt19937_64 rng(n * 7 + size_t(state.range(1)));
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (auto& x : dense)
      if (u(rng) < d) x = float(u(rng)) + 0.5f;
  }
  for (float x : dense) set += x != 0.0f;
  const sparcl::View<float, uint32_t> v{sparcl::Range{0, n}, true, n, nullptr, dense.data()};
  for (auto _ : state) {
    auto s = sparcl::to_sparse_stream(v, set);
    benchmark::DoNotOptimize(s.val.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n) * 4);
}

void ToSparseArgs(benchmark::internal::Benchmark* b) {
  for (int64_t n : {int64_t(1) << 20, int64_t(1) << 24, int64_t(1) << 26})
    for (int64_t d : {100, 1000, 3400}) b->Args({n, d});
  b->ArgNames({"n", "density_1e4"})->Unit(benchmark::kMicrosecond);
}

void MergeArgs(benchmark::internal::Benchmark* b) {
  for (int64_t n : {int64_t(1) << 20, int64_t(1) << 21, int64_t(1) << 22, int64_t(1) << 23})
    for (int64_t parts : {2, 4, 8})
      for (int64_t d : {25, 100, 200, 400, 800}) b->Args({n, parts, d});
  b->ArgNames({"n", "parts", "density_1e4"})->Unit(benchmark::kMicrosecond);
}

void SizeArgs(benchmark::internal::Benchmark* b) {
  for (int64_t n : {int64_t(1) << 20, int64_t(1) << 24}) b->Arg(n);
  b->ArgName("n")->Unit(benchmark::kMicrosecond);
}

}  // namespace

void HostBufferCheck(benchmark::State& state) {
  std::vector<uint32_t> idx(16, 1);
  std::vector<float> val(16, 1.0f), dense(16);
  sparcl_sparse_t s{};
  s.dim = 16;
  s.nnz = 16;
  s.index_type = SPARCL_INDEX_U32;
  s.indices = idx.data();
  s.value_type = SPARCL_FLOAT32;
  s.values = val.data();
  for (auto _ : state) {
    const sparcl::DeviceStaging* staging = sparcl::device_staging();
    benchmark::DoNotOptimize(staging && staging->any_device_buffer(&s, dense.data()));
  }
}

BENCHMARK(HostBufferCheck);
BENCHMARK_TEMPLATE(MergeAll, false)->Name("MergeAll/Tree")->Apply(MergeArgs);
BENCHMARK_TEMPLATE(MergeAll, true)->Name("MergeAll/Dense")->Apply(MergeArgs);
BENCHMARK(ToSparse)->Apply(ToSparseArgs);
BENCHMARK(Memcpy)->Apply(SizeArgs);
BENCHMARK(Read)->Apply(SizeArgs);
BENCHMARK(NthElement)->Apply(SelectArgs);
BENCHMARK(PartialSort)->Apply(SelectArgs);
BENCHMARK_TEMPLATE(Select, 0)->Name("TopK")->Apply(SelectArgs);
BENCHMARK_TEMPLATE(Select, 1)->Name("ApproxTopK")->Apply(SelectArgs);
BENCHMARK_TEMPLATE(Select, 2)->Name("TopKBucket512")->Apply(SelectArgs);
BENCHMARK_TEMPLATE(Select, 3)->Name("Threshold")->Apply(SelectArgs);
BENCHMARK_TEMPLATE(Select, 4)->Name("RandomK")->Apply(SelectArgs);

BENCHMARK_TEMPLATE(Encode, cz::ValueCodec::Fp16)->Name("Values/Encode/fp16")->Apply(SizeArgs);
BENCHMARK_TEMPLATE(Decode, cz::ValueCodec::Fp16)->Name("Values/Decode/fp16")->Apply(SizeArgs);
BENCHMARK_TEMPLATE(Encode, cz::ValueCodec::Bf16)->Name("Values/Encode/bf16")->Apply(SizeArgs);
BENCHMARK_TEMPLATE(Decode, cz::ValueCodec::Bf16)->Name("Values/Decode/bf16")->Apply(SizeArgs);
BENCHMARK_TEMPLATE(Encode, cz::ValueCodec::Qsgd8)->Name("Values/Encode/qsgd8")->Apply(SizeArgs);
BENCHMARK_TEMPLATE(Decode, cz::ValueCodec::Qsgd8)->Name("Values/Decode/qsgd8")->Apply(SizeArgs);
BENCHMARK_TEMPLATE(Encode, cz::ValueCodec::Qsgd4)->Name("Values/Encode/qsgd4")->Apply(SizeArgs);
BENCHMARK_TEMPLATE(Decode, cz::ValueCodec::Qsgd4)->Name("Values/Decode/qsgd4")->Apply(SizeArgs);
BENCHMARK_TEMPLATE(Encode, cz::ValueCodec::Qsgd2)->Name("Values/Encode/qsgd2")->Apply(SizeArgs);
BENCHMARK_TEMPLATE(Decode, cz::ValueCodec::Qsgd2)->Name("Values/Decode/qsgd2")->Apply(SizeArgs);

BENCHMARK_TEMPLATE(Crc32c, true)->Name("Crc32c/sse4.2")->Apply(SizeArgs);
BENCHMARK_TEMPLATE(Crc32c, false)->Name("Crc32c/portable")->Apply(SizeArgs);

BENCHMARK(IndicesEncode)->Name("Indices/Encode")->Apply(IndexArgs);
BENCHMARK(IndicesDecode)->Name("Indices/Decode")->Apply(IndexArgs);
BENCHMARK(IndicesMemcpy)->Name("Indices/Memcpy")->Apply(IndexArgs);

// SPARCL_BENCH_BASELINE=1 runs the baseline x86-64 kernels instead of the
// AVX2 ones (to see what a machine without AVX2 gets).
int main(int argc, char** argv) {
  const char* baseline = std::getenv("SPARCL_BENCH_BASELINE");
  if (baseline && *baseline && *baseline != '0') cz::avx2_enabled() = false;
  benchmark::AddCustomContext("sparcl_kernels", cz::avx2_enabled() ? "avx2" : "baseline x86-64");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
