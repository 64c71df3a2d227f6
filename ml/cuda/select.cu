// SPDX-License-Identifier: BSD-3-Clause
// Selections on the GPU (kernels.hpp). The top-k follows select_by_magnitude
// of ml/compress/select.cpp step for step, with the same plan (sample size,
// sample positions, ranks, retries, subsample), so that exact and
// approximate top-k return what the CPU returns, bit for bit:
//   sample        one kernel gathers the stratified sample;
//   radix select  per digit (bits 30..20, 19..9, 8..0 of the magnitude key)
//                 a histogram kernel (per-block shared histograms merged with
//                 atomics) and a one-warp kernel that finds the bin and
//                 narrows the state; the state stays on the device;
//   compaction    cub::DeviceSelect::If over the positions (one pass over
//                 the input, order kept, decoupled look-back), its output
//                 written through a bounded tabulate iterator;
//   ties          when the k-th key is shared by more entries than fit, a
//                 first compaction finds the index of the last tie taken, so
//                 that the cut is a stateless predicate: key > K, or key == K
//                 and index <= that index (lower indices win, as on the CPU).
// The host reads back a count (and a cut) where the CPU's algorithm decides
// between branches: two synchronisations on the usual path.
#include <cub/device/device_select.cuh>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/tabulate_output_iterator.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "kernels.hpp"
#include "src/codec/scalar.hpp"
#include "ml/compress/select.hpp"

namespace sparcl {
namespace cuda {

namespace {

using codec::magnitude_key;

constexpr int kBins = 2048;
constexpr int kThreads = 256;
constexpr size_t kCandidateSlack = size_t(1) << 16;  // room beyond the expected number of candidates

// The digits of the radix select, as in select.cpp: bits 30..20, 19..9, 8..0.
__host__ __device__ constexpr int digit_shift(int d) { return d == 0 ? 20 : d == 1 ? 9 : 0; }
__host__ __device__ constexpr int digit_width(int d) { return d == 2 ? 9 : 11; }

int grid_for(size_t n) { return int(std::min<size_t>((n + kThreads - 1) / kThreads, size_t(1) << 30)); }

__global__ void init_cut(CutState* st, unsigned long long k, unsigned long long kmax) {
  CutState s{};
  s.k = k;
  s.kmax = kmax;
  s.tie_last = 0xFFFFFFFFu;
  *st = s;
}

__global__ void set_cut(CutState* st, uint32_t key) {
  CutState s{};
  s.key = key;
  s.tie_last = 0xFFFFFFFFu;
  s.done = 1;
  *st = s;
}

// hist[d] += number of v[0, n) whose key has the state's prefix above digit
// `digit` and digit value d.
__global__ void __launch_bounds__(kThreads)
    cut_histogram(const float* v, uint64_t n, int digit, const CutState* st, uint32_t* hist) {
  __shared__ uint32_t h[kBins];
  if (st->done) return;  // the same for every thread of the block
  const int shift = digit_shift(digit), high = shift + digit_width(digit);
  const uint32_t mask = (1u << digit_width(digit)) - 1, want = st->prefix >> high;
  for (int b = threadIdx.x; b < kBins; b += blockDim.x) h[b] = 0;
  __syncthreads();
  const uint64_t stride = uint64_t(gridDim.x) * blockDim.x;
  for (uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint32_t key = magnitude_key(v[i]);
    if ((key >> high) == want) atomicAdd(&h[(key >> shift) & mask], 1u);
  }
  __syncthreads();
  for (int b = threadIdx.x; b < kBins; b += blockDim.x)
    if (h[b]) atomicAdd(&hist[b], h[b]);
}

// One warp: the bin of digit `digit` that holds the state's k-th largest
// key, and radix_cut's decision of select.cpp (stop early when the bin's
// lower boundary leaves a count in [k, kmax], unless exact_key; at the last
// digit, limit the ties when they do not all fit).
__global__ void cut_find(int digit, const uint32_t* hist, CutState* st, int exact_key) {
  if (st->done) return;
  const int bins = 1 << digit_width(digit), per = bins / 32, lane = int(threadIdx.x);
  const int top = bins - lane * per;  // lane 0 holds the highest bins
  unsigned long long sum = 0;
  for (int b = top - per; b < top; ++b) sum += hist[b];
  unsigned long long incl = sum;
  for (int o = 1; o < 32; o <<= 1) {
    const unsigned long long v = __shfl_up_sync(0xFFFFFFFFu, incl, o);
    if (lane >= o) incl += v;
  }
  const unsigned long long k = st->k;
  const unsigned ballot = __ballot_sync(0xFFFFFFFFu, incl >= k);
  if (ballot == 0) {
    if (lane == 0) {
      st->error = 1;
      st->done = 1;
    }
    return;
  }
  if (lane != __ffs(ballot) - 1) return;
  unsigned long long above = incl - sum;
  int b = top - 1;
  while (above + hist[b] < k) above += hist[b--];
  const unsigned long long h = hist[b];
  const int shift = digit_shift(digit);
  CutState s = *st;
  if (digit < 2) {
    if (!exact_key && above + h <= s.kmax) {
      s.key = s.prefix | (uint32_t(b) << shift);
      s.selected = s.above + above + h;
      s.done = 1;
    } else {
      s.prefix |= uint32_t(b) << shift;
      s.k = k - above;
      s.kmax -= above;
      s.above += above;
    }
  } else {
    s.key = s.prefix | uint32_t(b);
    if (above + h <= s.kmax) {
      s.selected = s.above + above + h;
    } else {
      s.limit_ties = 1;
      s.ties = k - above;
      s.selected = s.above + k;
    }
    s.done = 1;
  }
  *st = s;
}

__global__ void take_sample(const float* x, uint64_t step, codec::Key32 key, uint64_t s, float* out) {
  const uint64_t j = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < s) out[j] = x[codec::stratified_position(step, key, j)];
}

// refine_by_subsample's strided subsample of the c candidates' values.
__global__ void take_subsample(const float* v, uint64_t c, uint64_t s, float* out) {
  const uint64_t j = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < s) out[j] = v[j * c / s];
}

__global__ void take_all(const float* x, uint64_t n, uint32_t* idx, float* val) {
  const uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    idx[i] = uint32_t(i);
    val[i] = x[i];
  }
}

__global__ void take_at(const float* x, const uint32_t* idx, uint64_t m, float* val) {
  const uint64_t j = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < m) val[j] = x[idx[j]];
}

// --- what the compactions read and write ---

struct DenseSource {  // a vector: the index of entry i is i
  const float* x;
  __device__ uint32_t index(uint32_t i) const { return i; }
  __device__ float value(uint32_t i) const { return x[i]; }
};

struct PairSource {  // candidates: (index, value) pairs sorted by index
  const uint32_t* idx;
  const float* val;
  __device__ uint32_t index(uint32_t i) const { return idx[i]; }
  __device__ float value(uint32_t i) const { return val[i]; }
};

// Entries passing the cut: key > K, and key == K unless ties are limited
// (then only up to the last selected tie). Without `ties`, key >= K.
template <class Src>
struct PassesCut {
  Src src;
  const CutState* cut;
  bool ties;
  __device__ bool operator()(uint32_t i) const {
    const uint32_t key = magnitude_key(src.value(i)), k = cut->key;
    return key > k || (key == k && (!ties || !cut->limit_ties || src.index(i) <= cut->tie_last));
  }
};

// The entries at the cut's key, when only some of them are selected.
template <class Src>
struct IsLimitedTie {
  Src src;
  const CutState* cut;
  __device__ bool operator()(uint32_t i) const { return cut->limit_ties && magnitude_key(src.value(i)) == cut->key; }
};

template <class Src>
struct WritePair {
  Src src;
  uint32_t* idx;
  float* val;
  unsigned long long capacity;
  template <class J, class I>
  __device__ void operator()(J j, I i) const {
    if ((unsigned long long)j < capacity) {
      idx[j] = src.index(uint32_t(i));
      val[j] = src.value(uint32_t(i));
    }
  }
};

// Of the ties in index order, records the index of the last one selected.
template <class Src>
struct NoteLastTie {
  Src src;
  CutState* cut;
  template <class J, class I>
  __device__ void operator()(J j, I i) const {
    if ((unsigned long long)j + 1 == cut->ties) cut->tie_last = src.index(uint32_t(i));
  }
};

}  // namespace

Selector::Selector() {
  int device = 0, sms = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  blocks_ = std::max(1, 4 * sms);
  hist_.reserve(3 * kBins);
  cuts_.reserve(kSlots);
  count_.reserve(1);
  readback_.reserve(1);
}

void* Selector::temp(size_t bytes) {
  temp_.reserve(bytes);
  return temp_.get();
}

void Selector::reserve_pairs(int which, size_t n) {
  idx_[which].reserve(n);
  val_[which].reserve(n);
}

// cub::DeviceSelect::If over the positions [0, n) with `pred`, into `out`;
// the number selected goes to count_.
template <class Pred, class Out>
void Selector::select_into(const Pred& pred, const Out& out, size_t n) {
  size_t bytes = 0;
  const thrust::counting_iterator<uint32_t> positions(0);
  check(cub::DeviceSelect::If(nullptr, bytes, positions, out, count_.get(), int64_t(n), pred, stream_),
        "cub::DeviceSelect::If (temporary storage)");
  void* storage = temp(bytes);
  check(cub::DeviceSelect::If(storage, bytes, positions, out, count_.get(), int64_t(n), pred, stream_),
        "cub::DeviceSelect::If");
}

Selector::Readback Selector::read_back(Slot slot) {
  Readback* r = readback_.get();
  check(cudaMemcpyAsync(&r->count, count_.get(), sizeof r->count, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync");
  check(cudaMemcpyAsync(&r->cut, cuts_.get() + slot, sizeof r->cut, cudaMemcpyDeviceToHost, stream_),
        "cudaMemcpyAsync");
  check(cudaStreamSynchronize(stream_), "GPU selection");
  if (r->cut.error) fail(SPARCL_ERR_INTERNAL, "GPU radix select: the histograms hold fewer entries than k");
  return *r;
}

void Selector::radix_cut(const float* d_v, size_t n, size_t k, size_t kmax, bool exact_key, Slot slot) {
  CutState* st = cuts_.get() + slot;
  check(cudaMemsetAsync(hist_.get(), 0, 3 * kBins * sizeof(uint32_t), stream_), "cudaMemsetAsync");
  init_cut<<<1, 1, 0, stream_>>>(st, k, kmax);
  const int blocks = int(std::min<size_t>(size_t(blocks_), (n + 16 * kThreads - 1) / (16 * kThreads)));
  for (int d = 0; d < 3; ++d) {
    cut_histogram<<<blocks, kThreads, 0, stream_>>>(d_v, n, d, st, hist_.get() + d * kBins);
    cut_find<<<1, 32, 0, stream_>>>(d, hist_.get() + d * kBins, st, exact_key ? 1 : 0);
  }
  check(cudaGetLastError(), "GPU radix select");
}

void Selector::fixed_cut(uint32_t key, Slot slot) {
  set_cut<<<1, 1, 0, stream_>>>(cuts_.get() + slot, key);
  check(cudaGetLastError(), "GPU threshold");
}

size_t Selector::compact_dense(const float* d_x, size_t n, Slot slot, int to, size_t capacity, bool ties) {
  reserve_pairs(to, capacity);
  CutState* cut = cuts_.get() + slot;
  const DenseSource src{d_x};
  if (ties)
    select_into(IsLimitedTie<DenseSource>{src, cut}, thrust::make_tabulate_output_iterator(NoteLastTie<DenseSource>{src, cut}), n);
  select_into(PassesCut<DenseSource>{src, cut, ties},
              thrust::make_tabulate_output_iterator(WritePair<DenseSource>{src, idx_[to].get(), val_[to].get(), capacity}), n);
  return size_t(read_back(slot).count);
}

size_t Selector::compact_pairs(int from, size_t n, Slot slot, int to, size_t capacity, bool ties) {
  reserve_pairs(to, capacity);
  CutState* cut = cuts_.get() + slot;
  const PairSource src{idx_[from].get(), val_[from].get()};
  if (ties)
    select_into(IsLimitedTie<PairSource>{src, cut}, thrust::make_tabulate_output_iterator(NoteLastTie<PairSource>{src, cut}), n);
  select_into(PassesCut<PairSource>{src, cut, ties},
              thrust::make_tabulate_output_iterator(WritePair<PairSource>{src, idx_[to].get(), val_[to].get(), capacity}), n);
  return size_t(read_back(slot).count);
}

// The radix cut in kFinalCut applied (ties limited) to x (from < 0) or to
// pair buffer `from`, into pair buffer 1.
size_t Selector::finish_cut(const float* d_x, int from, size_t n, size_t kmax) {
  const size_t m = from < 0 ? compact_dense(d_x, n, kFinalCut, 1, std::min(n, kmax), true)
                            : compact_pairs(from, n, kFinalCut, 1, std::min(n, kmax), true);
  if (m != readback_.get()->cut.selected || m > kmax)
    fail(SPARCL_ERR_INTERNAL, "GPU top-k selected " + std::to_string(m) + " entries, the cut promised " +
                                  std::to_string(readback_.get()->cut.selected));
  out_ = 1;
  return m;
}

bool Selector::refine_by_subsample(size_t c, size_t k, size_t kmax, size_t& count) {
  size_t s = 0, rank = 0;
  if (!compress::topk_subsample_plan(c, k, kmax, s, rank)) return false;
  sample_.reserve(s);
  take_subsample<<<grid_for(s), kThreads, 0, stream_>>>(val_[0].get(), c, s, sample_.get());
  radix_cut(sample_.get(), s, rank, rank, true, kSubsampleCut);
  const size_t m = compact_pairs(0, c, kSubsampleCut, 1, kmax, false);
  if (m < k || m > kmax) return false;
  out_ = 1;
  count = m;
  return true;
}

size_t Selector::topk(const float* d_x, size_t n, size_t k, size_t kmax, cudaStream_t stream) {
  stream_ = stream;
  if (k == 0) return 0;
  if (k >= n) return all(d_x, n, stream);
  const size_t s = compress::topk_sample_size(n);
  if (s == 0) {  // small vectors: a radix select over all of x
    radix_cut(d_x, n, k, kmax, false, kFinalCut);
    return finish_cut(d_x, -1, n, kmax);
  }
  sample_.reserve(s);
  take_sample<<<grid_for(s), kThreads, 0, stream_>>>(d_x, (uint64_t(n) << 32) / s, compress::topk_sample_key(), s,
                                                     sample_.get());
  check(cudaGetLastError(), "GPU top-k sample");
  for (int attempt = 0; attempt < compress::kTopkSampleAttempts; ++attempt) {
    const double rank = compress::topk_sample_rank(n, s, k, kmax, attempt);
    if (rank >= double(s)) break;
    // The candidates: every entry with a key >= the sample's cut at `rank`.
    radix_cut(sample_.get(), s, size_t(rank), size_t(rank), false, kSampleCut);
    size_t capacity = std::min(n, size_t(std::min(double(n), rank / double(s) * double(n) * 1.05)) + kCandidateSlack);
    size_t c = compact_dense(d_x, n, kSampleCut, 0, capacity, false);
    if (readback_.get()->cut.key == 0) break;  // every entry would be a candidate
    if (c > capacity) c = compact_dense(d_x, n, kSampleCut, 0, c, false);
    if (c < k) continue;  // unlucky sample: lower the threshold
    if (c <= kmax) {
      out_ = 0;
      return c;
    }
    // Every entry outside the candidates has a smaller key than every
    // candidate, so the cut among the candidates is the cut of x.
    size_t count = 0;
    if (kmax > k && refine_by_subsample(c, k, kmax, count)) return count;
    radix_cut(val_[0].get(), c, k, kmax, false, kFinalCut);
    return finish_cut(nullptr, 0, c, kmax);
  }
  radix_cut(d_x, n, k, kmax, false, kFinalCut);
  return finish_cut(d_x, -1, n, kmax);
}

size_t Selector::threshold(const float* d_x, size_t n, float t, cudaStream_t stream) {
  stream_ = stream;
  out_ = 1;
  if (n == 0) return 0;
  fixed_cut(magnitude_key(t), kFinalCut);
  const size_t capacity = std::min(n, n / 64 + kCandidateSlack);
  const size_t m = compact_dense(d_x, n, kFinalCut, 1, capacity, false);
  return m <= capacity ? m : compact_dense(d_x, n, kFinalCut, 1, m, false);
}

size_t Selector::all(const float* d_x, size_t n, cudaStream_t stream) {
  stream_ = stream;
  out_ = 1;
  reserve_pairs(1, n);
  if (n == 0) return 0;
  take_all<<<grid_for(n), kThreads, 0, stream_>>>(d_x, n, idx_[1].get(), val_[1].get());
  check(cudaGetLastError(), "GPU select all");
  return n;
}

size_t Selector::gather(const float* d_x, const uint32_t* host_idx, size_t m, cudaStream_t stream) {
  stream_ = stream;
  out_ = 1;
  reserve_pairs(1, m);
  if (m == 0) return 0;
  host_idx_.reserve(m);
  std::memcpy(host_idx_.get(), host_idx, m * sizeof(uint32_t));
  check(cudaMemcpyAsync(idx_[1].get(), host_idx_.get(), m * sizeof(uint32_t), cudaMemcpyHostToDevice, stream_),
        "cudaMemcpyAsync");
  take_at<<<grid_for(m), kThreads, 0, stream_>>>(d_x, idx_[1].get(), m, val_[1].get());
  check(cudaGetLastError(), "GPU gather");
  check(cudaStreamSynchronize(stream_), "GPU gather");  // host_idx_ is reused by the next call
  return m;
}

}  // namespace cuda
}  // namespace sparcl
