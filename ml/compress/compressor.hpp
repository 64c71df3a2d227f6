// SPDX-License-Identifier: BSD-3-Clause
// A gradient compressor: sparsifier + value codec + error feedback (with
// optional DGC momentum correction) for one tensor of fixed dimension.
//
// One step, compress(grad):
//   with error feedback:   acc = residual + grad            (momentum m > 0:
//                          u = m*u + grad; acc = residual + u)
//   without:               acc = grad
//   S = sparsifier(acc)                         (indices, sorted)
//   sent[i] = codec round trip of acc[i], i in S (what receivers decode)
//   residual[i] = acc[i] - sent[i] for i in S, acc[i] elsewhere
// When a collective encodes the values itself (compress(..., false), for
// sparcl_allreduce_compressed), the selection keeps acc[i] and sent[i] is
// what the collective reports through sent_as(); entries it never reports
// reached the sum exactly (sent[i] = acc[i]).
//   momentum: u[i] = 0 for i in S (DGC's momentum factor masking)
// So sent + residual == acc, exactly (bit for bit) with raw values, where
// residual[i] is set to 0 for i in S; with a lossy codec, up to one rounding
// of the subtraction. Where that difference is not finite (a value that
// overflows fp16 and is sent as +-Inf; an Inf or NaN that was sent) the
// residual is set to 0 instead, so that one bad step does not poison all
// later ones.
//
// The residual is per compressor: create one compressor per tensor (or per
// flattened group of tensors that is always compressed together).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "src/codec/codec.hpp"
#include "select.hpp"

namespace sparcl {
namespace compress {

// The compressors are built on the core's codec kernels (src/codec/).
using namespace ::sparcl::codec;

enum class Method : uint8_t { None = 0, TopK = 1, TopKBucket = 2, ApproxTopK = 3, Threshold = 4, RandomK = 5 };

const char* method_name(Method m);

struct CompressorOptions {
  Method method = Method::TopK;
  uint64_t k = 0;          // entries to keep (top-k, random-k); 0: use density
  double density = 0.01;   // fraction to keep when k == 0: k = max(1, round(density * dim))
  float threshold = 0.0f;  // Method::Threshold: keep |acc| >= threshold
  size_t bucket = 512;     // Method::TopKBucket: selection bucket
  ValueCodec codec = ValueCodec::Raw;
  size_t quant_bucket = kDefaultQuantBucket;  // QSGD scale bucket
  bool error_feedback = true;
  float momentum = 0.0f;  // DGC momentum correction factor in [0, 1); needs error feedback
  uint64_t seed = 0;      // random-k indices and stochastic rounding
  double tolerance = kApproxTolerance;  // Method::ApproxTopK
  // The compressed allreduce: keep about k entries of the sum (global
  // selection) instead of the sum of every rank's selection.
  bool global = false;
  bool exact_threshold = false;    // global: exact top-k of the sum (else a sampled threshold)
  uint32_t threshold_reuse = 32;   // global, sampled: steps one threshold estimate serves
};

// The seed of a step's stochastic rounding: a function of (seed, step,
// stream), the same wherever the step runs (CPU or GPU).
uint64_t rounding_seed(uint64_t seed, uint64_t step, uint64_t stream);

// The checks of a step whose values a collective encodes, shared with the
// GPU's compressor (ml/cuda/). Before the collective starts: QSGD cannot
// encode NaN or Inf, so `codec` rejects the selection (idx, val)[0, m) with
// SPARCL_ERR_INVALID_ARG naming the index of the first one.
void require_encodable(ValueCodec codec, const uint32_t* idx, const float* val, size_t m);
// A report of sent_as() must name entries [first, first + count) of the
// `selected` entries of a step the collective encodes
// (SPARCL_ERR_INTERNAL otherwise).
void require_reportable(bool collective_encodes, size_t first, size_t count, size_t selected);

class Compressor {
 public:
  // Validates the options (SPARCL_ERR_INVALID_ARG naming the bad one;
  // SPARCL_ERR_UNSUPPORTED for dim >= 2^32). With host_state false the
  // residual and momentum are not allocated (a GPU holds them, ml/cuda/):
  // the compressor then only carries the validated options and k.
  Compressor(const CompressorOptions& options, uint64_t dim, bool host_state = true);

  // One step on grad[0, dim). The selection is valid until the next call.
  // `stream` selects the stochastic rounding stream (e.g. the rank), so
  // ranks round independently; random-k indices depend on (seed, step) only.
  // With round_here false the selected values are left as they are, for a
  // collective that encodes them on the wire and reports through sent_as()
  // (QSGD still rejects NaN and Inf here, with SPARCL_ERR_INVALID_ARG).
  const Selection& compress(const float* grad, uint64_t stream = 0, bool round_here = true);

  // After compress(..., false): selected entries [first, first + count)
  // reached the other ranks as received[0, count): the residual keeps
  // acc - received there (0 where that is not finite).
  void sent_as(size_t first, size_t count, const float* received);

  uint64_t dim() const { return dim_; }
  size_t k() const { return k_; }
  uint64_t step() const { return step_; }  // compress() calls so far
  const CompressorOptions& options() const { return options_; }

  // dim residual values (nullptr without error feedback); may be written
  // between steps (e.g. to restore a checkpoint).
  float* residual() { return residual_.empty() ? nullptr : residual_.data(); }
  // dim momentum values (nullptr without momentum correction).
  float* velocity() { return velocity_.empty() ? nullptr : velocity_.data(); }

  // Zeroes the residual and the momentum and restarts the step count.
  void reset();

  // Adds the last step's sent values back into the residual, for a step
  // whose values never reached the other ranks (a failed collective): with
  // error feedback nothing is lost (the momentum masking is not undone).
  void unsend();

  // After a global selection step (compress(..., false)): `kept[0, n)`
  // (sorted) are the indices the sum kept. Selected entries outside it did
  // not reach the result: the residual takes their whole value back (acc,
  // as unsend() does), so that input + old residual == kept part + new
  // residual.
  void keep_only(const uint32_t* kept, size_t n);

 private:
  CompressorOptions options_;
  uint64_t dim_;
  size_t k_ = 0;
  uint64_t step_ = 0;
  std::vector<float> residual_;
  std::vector<float> velocity_;
  Selection selection_;
  SelectWorkspace workspace_;
  std::vector<uint8_t> scratch_;
  bool rounded_here_ = true;  // how the last step's values were sent
};

}  // namespace compress
}  // namespace sparcl
