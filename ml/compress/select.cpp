// SPDX-License-Identifier: BSD-3-Clause
#include "select.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include "src/codec/common.hpp"
#if defined(SPARCL_X86_DISPATCH)
#include <immintrin.h>
#endif

#include "src/error.hpp"

namespace sparcl {
namespace compress {

namespace {

constexpr size_t kChunk = 16384;            // entries per compaction chunk
constexpr size_t kSmall = size_t(1) << 16;  // below this, select without sampling
constexpr size_t kMinSample = 4096;         // sample at least this many entries...
constexpr unsigned kSampleShift = 8;        // ...or one in 2^kSampleShift
constexpr double kSampleSigmas = 3.0;       // margin of the sampled threshold, in standard deviations
constexpr uint64_t kSampleSeed = 0x53414D504C455321ull;  // fixed: selections are deterministic

void check_size(size_t n) {
  if (uint64_t(n) > uint64_t(UINT32_MAX))
    fail(SPARCL_ERR_UNSUPPORTED, "compression supports vectors of fewer than 2^32 entries, got " +
                                     std::to_string(uint64_t(n)));
}

// --- compaction: append the entries whose key passes a cut ---

// A cut selects every key > `key`, and of the keys == `key` either all
// (limit_ties false) or the first `ties` in index order.
struct Cut {
  uint32_t key = 0;
  bool limit_ties = false;
  size_t ties = 0;
};

// Writes (index, value) of the entries of x[0, len) with key >= t to oi/ov
// (room for len entries) and returns their number. The index of entry i is
// ix[i] when kIndexed, else base + i. Keys are < 2^31, so signed compares
// against t - 1 (-1 when t == 0) decide key >= t. Blocks of 16 entries with
// nothing selected cost one test.
template <bool kIndexed>
size_t compact_ge_sse2(const float* x, const uint32_t* ix, size_t len, uint32_t t, uint32_t base, uint32_t* oi,
                       float* ov) {
  size_t c = 0, i = 0;
#if defined(__SSE2__)
  const __m128i abs_mask = _mm_set1_epi32(0x7FFFFFFF);
  const __m128i below = _mm_set1_epi32(int32_t(t) - 1);
  for (; i + 16 <= len; i += 16) {
    const __m128i* p = reinterpret_cast<const __m128i*>(x + i);
    const __m128i a = _mm_cmpgt_epi32(_mm_and_si128(_mm_loadu_si128(p), abs_mask), below);
    const __m128i b = _mm_cmpgt_epi32(_mm_and_si128(_mm_loadu_si128(p + 1), abs_mask), below);
    const __m128i d = _mm_cmpgt_epi32(_mm_and_si128(_mm_loadu_si128(p + 2), abs_mask), below);
    const __m128i e = _mm_cmpgt_epi32(_mm_and_si128(_mm_loadu_si128(p + 3), abs_mask), below);
    unsigned m = unsigned(_mm_movemask_ps(_mm_castsi128_ps(a))) | unsigned(_mm_movemask_ps(_mm_castsi128_ps(b))) << 4 |
                 unsigned(_mm_movemask_ps(_mm_castsi128_ps(d))) << 8 | unsigned(_mm_movemask_ps(_mm_castsi128_ps(e))) << 12;
    while (m) {
      const unsigned j = unsigned(__builtin_ctz(m));
      m &= m - 1;
      oi[c] = kIndexed ? ix[i + j] : base + uint32_t(i + j);
      ov[c] = x[i + j];
      ++c;
    }
  }
#endif
  for (; i < len; ++i) {  // branch-free: always write, advance when selected
    oi[c] = kIndexed ? ix[i] : base + uint32_t(i);
    ov[c] = x[i];
    c += magnitude_key(x[i]) >= t;
  }
  return c;
}

#if defined(SPARCL_X86_DISPATCH)
// lanes[m] = the positions of the set bits of m, in order, one per byte.
struct LaneTable {
  uint64_t lanes[256];
  LaneTable() {
    for (unsigned m = 0; m < 256; ++m) {
      uint64_t v = 0;
      unsigned n = 0;
      for (unsigned j = 0; j < 8; ++j)
        if (m & (1u << j)) v |= uint64_t(j) << (8 * n++);
      lanes[m] = v;
    }
  }
};
const LaneTable kLanes;

// The same with AVX2: the selected lanes of each 8 are packed with one
// permutation (from kLanes) and stored whole; the output pointer advances by
// their number. The stores may write up to 8 entries past the selected
// ones, never past room for len entries.
template <bool kIndexed>
SPARCL_TARGET_AVX2 size_t compact_ge_avx2(const float* x, const uint32_t* ix, size_t len,
                                                               uint32_t t, uint32_t base, uint32_t* oi, float* ov) {
  size_t c = 0, i = 0;
  const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF);
  const __m256i below = _mm256_set1_epi32(int32_t(t) - 1);
  const __m256i eight = _mm256_set1_epi32(8);
  __m256i pos = _mm256_add_epi32(_mm256_set1_epi32(int32_t(base)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  for (; i + 16 <= len; i += 16) {
    const __m256i va = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    const __m256i vb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 8));
    const unsigned ma = unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_and_si256(va, abs_mask), below))));
    const unsigned mb = unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_and_si256(vb, abs_mask), below))));
    if ((ma | mb) == 0) {
      if (!kIndexed) pos = _mm256_add_epi32(pos, _mm256_add_epi32(eight, eight));
      continue;
    }
    const __m256i pa = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(kLanes.lanes[ma])));
    const __m256i ia = kIndexed ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ix + i)) : pos;
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(ov + c), _mm256_permutevar8x32_epi32(va, pa));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(oi + c), _mm256_permutevar8x32_epi32(ia, pa));
    c += unsigned(__builtin_popcount(ma));
    if (!kIndexed) pos = _mm256_add_epi32(pos, eight);
    const __m256i pb = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(kLanes.lanes[mb])));
    const __m256i ib = kIndexed ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ix + i + 8)) : pos;
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(ov + c), _mm256_permutevar8x32_epi32(vb, pb));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(oi + c), _mm256_permutevar8x32_epi32(ib, pb));
    c += unsigned(__builtin_popcount(mb));
    if (!kIndexed) pos = _mm256_add_epi32(pos, eight);
  }
  for (; i < len; ++i) {
    oi[c] = kIndexed ? ix[i] : base + uint32_t(i);
    ov[c] = x[i];
    c += magnitude_key(x[i]) >= t;
  }
  return c;
}

// With AVX-512: one compress instruction packs the selected lanes of 16.
template <bool kIndexed>
SPARCL_TARGET_AVX512 size_t compact_ge_avx512(const float* x, const uint32_t* ix, size_t len, uint32_t t,
                                              uint32_t base, uint32_t* oi, float* ov) {
  size_t c = 0, i = 0;
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  const __m512i below = _mm512_set1_epi32(int32_t(t) - 1);
  const __m512i sixteen = _mm512_set1_epi32(16);
  __m512i pos = _mm512_add_epi32(_mm512_set1_epi32(int32_t(base)),
                                 _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  for (; i + 16 <= len; i += 16) {
    const __m512i v = _mm512_loadu_si512(x + i);
    const __mmask16 m = _mm512_cmpgt_epi32_mask(_mm512_and_si512(v, abs_mask), below);
    if (m) {
      const __m512i ids = kIndexed ? _mm512_loadu_si512(ix + i) : pos;
      _mm512_storeu_si512(ov + c, _mm512_maskz_compress_epi32(m, v));
      _mm512_storeu_si512(oi + c, _mm512_maskz_compress_epi32(m, ids));
      c += unsigned(__builtin_popcount(unsigned(m)));
    }
    if (!kIndexed) pos = _mm512_add_epi32(pos, sixteen);
  }
  for (; i < len; ++i) {
    oi[c] = kIndexed ? ix[i] : base + uint32_t(i);
    ov[c] = x[i];
    c += magnitude_key(x[i]) >= t;
  }
  return c;
}
#endif

template <bool kIndexed>
size_t compact_ge(const float* x, const uint32_t* ix, size_t len, uint32_t t, uint32_t base, uint32_t* oi,
                  float* ov) {
#if defined(SPARCL_X86_DISPATCH)
  if (avx2_enabled()) {
    if (avx512_enabled()) return compact_ge_avx512<kIndexed>(x, ix, len, t, base, oi, ov);
    return compact_ge_avx2<kIndexed>(x, ix, len, t, base, oi, ov);
  }
#endif
  return compact_ge_sse2<kIndexed>(x, ix, len, t, base, oi, ov);
}

// As compact_ge with cut.key, but keys equal to it only while ties_left > 0.
template <bool kIndexed>
size_t compact_ties(const float* x, const uint32_t* ix, size_t len, uint32_t t, uint32_t base, uint32_t* oi,
                    float* ov, size_t& ties_left) {
  // Compact key >= t first (in place in oi/ov), then drop the surplus ties.
  const size_t c = compact_ge<kIndexed>(x, ix, len, t, base, oi, ov);
  size_t w = 0;
  for (size_t r = 0; r < c; ++r) {
    const uint32_t key = magnitude_key(ov[r]);
    if (key == t) {
      if (ties_left == 0) continue;
      --ties_left;
    }
    oi[w] = oi[r];
    ov[w] = ov[r];
    ++w;
  }
  return w;
}

// Appends to `out` the entries of x[0, n) (indices ix, or positions) that pass `cut`.
template <bool kIndexed>
void append_cut(const float* x, const uint32_t* ix, size_t n, const Cut& cut, Selection& out) {
  size_t ties_left = cut.ties;
  for (size_t s = 0; s < n; s += kChunk) {
    const size_t len = std::min(kChunk, n - s);
    size_t c = out.size();
    out.reserve(c + len);
    const uint32_t* cix = kIndexed ? ix + s : nullptr;
    if (cut.limit_ties)
      c += compact_ties<kIndexed>(x + s, cix, len, cut.key, uint32_t(s), out.idx.data() + c, out.val.data() + c,
                                  ties_left);
    else
      c += compact_ge<kIndexed>(x + s, cix, len, cut.key, uint32_t(s), out.idx.data() + c, out.val.data() + c);
    out.resize(c);
  }
}

// --- radix select on magnitude keys ---

constexpr size_t kBins = 2048;  // 11-bit digits: bits 30..20 and 19..9; then 9 bits 8..0

// hist[d] = number of entries of x[0, n) whose key >> 20 is d.
void histogram_high(const float* x, size_t n, uint32_t* hist, uint32_t* scratch /* 4 * kBins */) {
  std::fill(scratch, scratch + 4 * kBins, 0u);
  uint32_t* h0 = scratch;
  uint32_t* h1 = scratch + kBins;
  uint32_t* h2 = scratch + 2 * kBins;
  uint32_t* h3 = scratch + 3 * kBins;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {  // four tables: repeated digits do not serialise on one counter
    ++h0[magnitude_key(x[i]) >> 20];
    ++h1[magnitude_key(x[i + 1]) >> 20];
    ++h2[magnitude_key(x[i + 2]) >> 20];
    ++h3[magnitude_key(x[i + 3]) >> 20];
  }
  for (; i < n; ++i) ++h0[magnitude_key(x[i]) >> 20];
  for (size_t d = 0; d < kBins; ++d) hist[d] = h0[d] + h1[d] + h2[d] + h3[d];
}

// The bin holding the k-th largest entry, walking from the top bin down;
// `above` receives the number of entries in higher bins (above < k <= above + hist[bin]).
size_t find_bin(const uint32_t* hist, size_t bins, size_t k, size_t& above) {
  above = 0;
  for (size_t b = bins; b-- > 0;) {
    if (above + hist[b] >= k) return b;
    above += hist[b];
  }
  fail(SPARCL_ERR_INTERNAL, "radix select: fewer entries than k");
}

// A cut of x[0, n) that selects between k and kmax entries (1 <= k <= n,
// k <= kmax): stops at the first digit whose bin boundary gives a count in
// range; after the last digit the cut is exact, limiting ties if needed.
// With exact_key, no early stop: the cut's key is the k-th largest key.
Cut radix_cut(const float* x, size_t n, size_t k, size_t kmax, SelectWorkspace& ws, bool exact_key = false) {
  ws.hist.resize(6 * kBins);
  uint32_t* h = ws.hist.data();
  uint32_t* scratch = h + 2 * kBins;
  histogram_high(x, n, h, scratch);
  size_t above = 0;
  const size_t b1 = find_bin(h, kBins, k, above);
  if (above + h[b1] <= kmax && !exact_key) return Cut{uint32_t(b1) << 20, false, 0};

  // Digit 2: the keys of bin b1, gathered (branch-free) into ws.keys.
  const size_t m = h[b1];
  ws.keys.resize(m + 1);
  uint32_t* keys = ws.keys.data();
  size_t c = 0;
  const uint32_t top = uint32_t(b1);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t key = magnitude_key(x[i]);
    keys[c] = key;
    c += (key >> 20) == top;
  }
  uint32_t* h2 = h + kBins;
  std::fill(h2, h2 + kBins, 0u);
  for (size_t i = 0; i < m; ++i) ++h2[(keys[i] >> 9) & 0x7FF];
  const size_t k2 = k - above, kmax2 = kmax - above;
  size_t above2 = 0;
  const size_t b2 = find_bin(h2, kBins, k2, above2);
  const uint32_t prefix = uint32_t(b1) << 20 | uint32_t(b2) << 9;
  if (above2 + h2[b2] <= kmax2 && !exact_key) return Cut{prefix, false, 0};

  // Digit 3: the low 9 bits of the keys sharing the 22-bit prefix.
  uint32_t* h3 = h;  // digit 1's table is no longer needed
  std::fill(h3, h3 + 512, 0u);
  for (size_t i = 0; i < m; ++i)
    if ((keys[i] >> 9) == (prefix >> 9)) ++h3[keys[i] & 0x1FF];
  const size_t k3 = k2 - above2, kmax3 = kmax2 - above2;
  size_t above3 = 0;
  const size_t b3 = find_bin(h3, 512, k3, above3);
  const uint32_t key = prefix | uint32_t(b3);
  if (above3 + h3[b3] <= kmax3) return Cut{key, false, 0};
  return Cut{key, true, k3 - above3};
}

// Number of keys[0, len) >= t (keys and t < 2^31).
SPARCL_ALWAYS_INLINE size_t count_ge_kernel(const uint32_t* keys, size_t len, uint32_t t) {
  uint32_t c = 0;
  const int32_t below = int32_t(t) - 1;
  for (size_t i = 0; i < len; ++i) c += int32_t(keys[i]) > below ? 1u : 0u;
  return c;
}
size_t count_ge_base(const uint32_t* keys, size_t len, uint32_t t) { return count_ge_kernel(keys, len, t); }
#if defined(SPARCL_X86_DISPATCH)
SPARCL_TARGET_AVX2 size_t count_ge_avx2(const uint32_t* keys, size_t len, uint32_t t) {
  return count_ge_kernel(keys, len, t);
}
#endif
size_t count_ge(const uint32_t* keys, size_t len, uint32_t t) {
#if defined(SPARCL_X86_DISPATCH)
  if (avx2_enabled()) return count_ge_avx2(keys, len, t);
#endif
  return count_ge_base(keys, len, t);
}

// Buckets up to this size are searched with an exponent histogram and 23
// counts over the keys in L1; larger ones with the radix select.
constexpr size_t kBucketSearchMax = 8192;

// Entries passing the cut, from a dense vector (indices = positions).
void select_dense_cut(const float* x, size_t n, size_t k, size_t kmax, Selection& out, SelectWorkspace& ws) {
  const Cut cut = radix_cut(x, n, k, kmax, ws);
  out.clear();
  out.reserve(std::min(n, kmax));
  append_cut<false>(x, nullptr, n, cut, out);
}

// Stratified sample of x (stratified_position of scalar.hpp; the positions
// are fixed, so selections are deterministic).
void take_sample(const float* x, size_t n, size_t s, PodArray<float>& sample) {
  sample.resize(s);
  float* out = sample.data();
  const uint64_t step = (uint64_t(n) << 32) / s;
  const Key32 key = topk_sample_key();
  for (size_t j = 0; j < s; ++j) out[j] = x[stratified_position(step, key, j)];
}

// Approximate top-k among c > kmax candidates: a threshold from an evenly
// strided subsample of the candidates (topk_subsample_plan) aims at the middle
// of [k, kmax]; one compaction of the candidates applies it. Returns false
// (out unspecified) if the subsample is too small for the window or the count
// misses it.
bool refine_by_subsample(const Selection& cand, size_t k, size_t kmax, Selection& out, SelectWorkspace& ws) {
  const size_t c = cand.size();
  size_t s = 0, r = 0;
  if (!topk_subsample_plan(c, k, kmax, s, r)) return false;
  ws.keys.resize(s);
  uint32_t* keys = ws.keys.data();
  for (size_t j = 0; j < s; ++j) keys[j] = magnitude_key(cand.val[size_t(uint64_t(j) * c / s)]);
  std::nth_element(keys, keys + (r - 1), keys + s, std::greater<uint32_t>());
  out.clear();
  out.reserve(c);
  append_cut<true>(cand.val.data(), cand.idx.data(), c, Cut{keys[r - 1], false, 0}, out);
  return out.size() >= k && out.size() <= kmax;
}

// Top-k by magnitude with the count in [k, kmax] (kmax == k: exact).
void select_by_magnitude(const float* x, size_t n, size_t k, size_t kmax, Selection& out, SelectWorkspace& ws) {
  check_size(n);
  out.clear();
  if (k == 0) return;
  if (k >= n) {
    select_all(x, n, out);
    return;
  }
  if (n < kSmall) {
    select_dense_cut(x, n, k, kmax, out, ws);
    return;
  }
  const size_t s = topk_sample_size(n);
  take_sample(x, n, s, ws.sample);
  Selection& cand = ws.candidates;
  for (int attempt = 0; attempt < kTopkSampleAttempts; ++attempt) {
    const double rank = topk_sample_rank(n, s, k, kmax, attempt);
    if (rank >= double(s)) break;
    // A cut of the sample at `rank` (its key is at most the rank-th largest).
    const uint32_t t = radix_cut(ws.sample.data(), s, size_t(rank), size_t(rank), ws).key;
    if (t == 0) break;  // every entry would be a candidate
    cand.clear();
    cand.reserve(size_t(std::min(double(n), rank / double(s) * double(n) * 1.05)) + kChunk);
    append_cut<false>(x, nullptr, n, Cut{t, false, 0}, cand);
    const size_t c = cand.size();
    if (c < k) continue;  // unlucky sample: lower the threshold
    if (c <= kmax) {
      out.swap(cand);
      return;
    }
    // Every entry outside the candidates has a smaller key than every
    // candidate, so the cut among the candidates is the cut of x.
    if (kmax > k && refine_by_subsample(cand, k, kmax, out, ws)) return;
    const Cut cut = radix_cut(cand.val.data(), c, k, kmax, ws);
    out.clear();
    out.reserve(std::min(c, kmax));
    append_cut<true>(cand.val.data(), cand.idx.data(), c, cut, out);
    return;
  }
  select_dense_cut(x, n, k, kmax, out, ws);
}

}  // namespace

size_t topk_sample_size(size_t n) { return n < kSmall ? 0 : std::max(kMinSample, n >> kSampleShift); }

Key32 topk_sample_key() { return key32(kSampleSeed); }

uint64_t topk_sample_position(size_t n, size_t s, size_t j) {
  return stratified_position((uint64_t(n) << 32) / s, topk_sample_key(), j);
}

double topk_sample_rank(size_t n, size_t s, size_t k, size_t kmax, int attempt) {
  const double mu = double(k) * double(s) / double(n);  // expected sample entries at or above the k-th
  const double slack = double(kmax - k) / double(k);    // relative room above k
  // Aim for a count a few standard deviations above k (so that it is
  // rarely below), and for the middle of [k, kmax] when that is higher.
  const double sigmas = kSampleSigmas * (attempt + 1);
  const double margin = std::max(sigmas * std::sqrt(mu), mu * slack / 2) + 1 + 4 * attempt;
  return std::ceil(mu + margin);
}

bool topk_subsample_plan(size_t c, size_t k, size_t kmax, size_t& s, size_t& rank) {
  s = std::min<size_t>(c, 4096);
  const double target = (double(k) + double(kmax)) / 2;
  const double r = std::round(target * double(s) / double(c));
  // Standard deviation of the resulting count: binomial on the subsample.
  const double p = r / double(s);
  const double sd = std::sqrt(double(s) * p * (1 - p)) * double(c) / double(s);
  if (r < 1 || 3 * sd > double(kmax - k) / 2) return false;
  rank = size_t(r);
  return true;
}

size_t approx_topk_max_count(size_t k, double tolerance) {
  return k + size_t(std::floor(double(k) * tolerance));
}

uint32_t kth_largest_key(const float* x, size_t n, size_t k, SelectWorkspace& ws) {
  if (k == 0 || k > n) fail(SPARCL_ERR_INTERNAL, "kth_largest_key: k out of range");
  return radix_cut(x, n, k, k, ws, true).key;
}

void select_topk(const float* x, size_t n, size_t k, Selection& out, SelectWorkspace& ws) {
  select_by_magnitude(x, n, k, k, out, ws);
}

void select_approx_topk(const float* x, size_t n, size_t k, Selection& out, SelectWorkspace& ws, double tolerance) {
  if (!(tolerance >= 0.0 && tolerance <= 1.0))
    fail(SPARCL_ERR_INVALID_ARG, "approximate top-k tolerance must lie in [0, 1]");
  select_by_magnitude(x, n, k, approx_topk_max_count(k, tolerance), out, ws);
}

size_t bucket_quota(size_t k, size_t n, size_t len) {
  if (n == 0) return 0;
  __extension__ typedef unsigned __int128 u128;
  const u128 q = (u128(k) * len + n - 1) / n;
  return q > len ? len : size_t(q);
}

void select_topk_bucketed(const float* x, size_t n, size_t k, size_t bucket, Selection& out, SelectWorkspace& ws) {
  check_size(n);
  if (bucket == 0) fail(SPARCL_ERR_INVALID_ARG, "top-k bucket size must be at least 1");
  out.clear();
  if (k == 0) return;
  out.reserve(std::min(n, k + (n + bucket - 1) / bucket) + std::min(n, bucket));
  for (size_t b = 0; b < n; b += bucket) {
    const size_t len = std::min(bucket, n - b);
    const size_t q = bucket_quota(k, n, len);
    if (q == 0) continue;
    const float* xb = x + b;
    const size_t c = out.size();
    out.reserve(c + len);  // the compactions may write up to len entries
    uint32_t* oi = out.idx.data() + c;
    float* ov = out.val.data() + c;
    Cut cut;
    if (q == len) {
      cut = Cut{0, false, 0};  // everything
    } else if (len > kBucketSearchMax) {
      cut = radix_cut(xb, len, q, q, ws);  // large buckets: as whole vectors
    } else {
      // Small buckets: the exponent (8 bits) of the q-th largest key by a
      // histogram, then its 23 mantissa bits one by one, each decided by a
      // (vectorised) count over the keys with that exponent.
      ws.keys.resize(2 * len + 1);
      uint32_t* keys = ws.keys.data();
      uint32_t* same = keys + len;
      uint32_t hist[256] = {};
      for (size_t i = 0; i < len; ++i) {
        keys[i] = magnitude_key(xb[i]);
        ++hist[keys[i] >> 23];
      }
      size_t above = 0;
      const uint32_t e = uint32_t(find_bin(hist, 256, q, above));
      size_t m = 0;
      for (size_t i = 0; i < len; ++i) {
        same[m] = keys[i];
        m += (keys[i] >> 23) == e;
      }
      const size_t q2 = q - above;
      uint32_t t = e << 23;
      for (uint32_t bit = uint32_t(1) << 22; bit; bit >>= 1)
        if (count_ge(same, m, t | bit) >= q2) t |= bit;
      const size_t greater = t == 0x7FFFFFFFu ? 0 : count_ge(keys, len, t + 1);
      const size_t equal = count_ge(keys, len, t) - greater;
      cut = greater + equal == q ? Cut{t, false, 0} : Cut{t, true, q - greater};
    }
    size_t ties = cut.ties;
    const size_t w = cut.limit_ties ? compact_ties<false>(xb, nullptr, len, cut.key, uint32_t(b), oi, ov, ties)
                                    : compact_ge<false>(xb, nullptr, len, cut.key, uint32_t(b), oi, ov);
    if (w != q) fail(SPARCL_ERR_INTERNAL, "bucketed top-k selected the wrong count");
    out.resize(c + w);
  }
}

void select_threshold(const float* x, size_t n, float t, Selection& out) {
  check_size(n);
  if (!(t >= 0.0f)) fail(SPARCL_ERR_INVALID_ARG, "threshold must be >= 0 (and not NaN)");
  out.clear();
  append_cut<false>(x, nullptr, n, Cut{magnitude_key(t), false, 0}, out);
}

void randomk_indices(size_t n, size_t k, uint64_t seed, uint64_t step, uint32_t* out, SelectWorkspace& ws) {
  check_size(n);
  if (k == 0 || k >= n) fail(SPARCL_ERR_INTERNAL, "randomk_indices: k out of range");
  // Floyd's algorithm: for j = n-k .. n-1 draw t in [0, j]; take t, or j if
  // t is already taken. Every k-subset is equally likely; O(k) draws, and a
  // bitmap of n bits gives the indices in order.
  const size_t words = (n + 63) / 64;
  ws.bitmap.resize(words);
  uint64_t* bits = ws.bitmap.data();
  std::fill(bits, bits + words, uint64_t(0));
  const uint64_t key = derive_seed(seed, step, 0x52414E444B);
  for (uint64_t j = n - k; j < n; ++j) {
    const uint64_t t = below(mix64(key + j), j + 1);
    const uint64_t pick = (bits[t >> 6] >> (t & 63)) & 1 ? j : t;
    bits[pick >> 6] |= uint64_t(1) << (pick & 63);
  }
  size_t c = 0;
  for (size_t w = 0; w < words; ++w) {
    uint64_t m = bits[w];
    while (m) {
      out[c++] = uint32_t(w * 64 + size_t(__builtin_ctzll(m)));
      m &= m - 1;
    }
  }
  if (c != k) fail(SPARCL_ERR_INTERNAL, "random-k selected the wrong count");
}

void select_randomk(const float* x, size_t n, size_t k, uint64_t seed, uint64_t step, Selection& out,
                    SelectWorkspace& ws) {
  check_size(n);
  out.clear();
  if (k == 0) return;
  if (k >= n) {
    select_all(x, n, out);
    return;
  }
  out.resize(k);
  uint32_t* oi = out.idx.data();
  randomk_indices(n, k, seed, step, oi, ws);
  float* ov = out.val.data();
  for (size_t j = 0; j < k; ++j) ov[j] = x[oi[j]];
}

void select_all(const float* x, size_t n, Selection& out) {
  check_size(n);
  out.resize(n);
  uint32_t* oi = out.idx.data();
  for (size_t i = 0; i < n; ++i) oi[i] = uint32_t(i);
  if (n) std::memcpy(out.val.data(), x, n * sizeof(float));
}

}  // namespace compress
}  // namespace sparcl
