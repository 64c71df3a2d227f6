// SPDX-License-Identifier: BSD-3-Clause
#include "compressor.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "src/codec/scalar.hpp"
#include "src/error.hpp"

namespace sparcl {
namespace compress {

const char* method_name(Method m) {
  switch (m) {
    case Method::None: return "none";
    case Method::TopK: return "topk";
    case Method::TopKBucket: return "topk_bucket";
    case Method::ApproxTopK: return "approx_topk";
    case Method::Threshold: return "threshold";
    case Method::RandomK: return "randomk";
  }
  return "unknown";
}

uint64_t rounding_seed(uint64_t seed, uint64_t step, uint64_t stream) {
  return derive_seed(seed, step, stream ^ 0x51554E54ull);
}

void require_encodable(ValueCodec codec, const uint32_t* idx, const float* val, size_t m) {
  if (!qsgd_bits(codec)) return;
  for (size_t j = 0; j < m; ++j)
    if (magnitude_key(val[j]) >= kInfKey)
      fail(SPARCL_ERR_INVALID_ARG, "QSGD cannot encode " + std::string(std::isnan(val[j]) ? "NaN" : "Inf") +
                                       " (value at index " + std::to_string(idx[j]) + ")");
}

void require_reportable(bool collective_encodes, size_t first, size_t count, size_t selected) {
  if (!collective_encodes || first > selected || count > selected - first)
    fail(SPARCL_ERR_INTERNAL, "sent_as() outside the selection of a step the collective encodes");
}

Compressor::Compressor(const CompressorOptions& options, uint64_t dim, bool host_state)
    : options_(options), dim_(dim) {
  const CompressorOptions& o = options_;
  require(dim >= 1, SPARCL_ERR_INVALID_ARG, "compressor dim must be at least 1");
  if (dim > uint64_t(UINT32_MAX))
    fail(SPARCL_ERR_UNSUPPORTED, "compression supports dim < 2^32, got " + std::to_string(dim));
  require(int(o.method) <= int(Method::RandomK), SPARCL_ERR_INVALID_ARG,
          "unknown compression method");
  require(is_value_codec(int(o.codec)), SPARCL_ERR_INVALID_ARG, "unknown value encoding");
  const bool counted = o.method == Method::TopK || o.method == Method::TopKBucket ||
                       o.method == Method::ApproxTopK || o.method == Method::RandomK;
  if (counted) {
    if (o.k > 0) {
      k_ = size_t(std::min<uint64_t>(o.k, dim));
    } else {
      require(o.density > 0.0 && o.density <= 1.0, SPARCL_ERR_INVALID_ARG,
              "density must lie in (0, 1] (or set k)");
      k_ = size_t(std::max<double>(1.0, std::min<double>(double(dim), std::round(o.density * double(dim)))));
    }
  }
  if (o.method == Method::TopKBucket) require(o.bucket >= 1, SPARCL_ERR_INVALID_ARG, "bucket size must be at least 1");
  if (o.method == Method::Threshold)
    require(o.threshold >= 0.0f, SPARCL_ERR_INVALID_ARG, "threshold must be >= 0 (and not NaN)");
  if (o.method == Method::ApproxTopK)
    require(o.tolerance >= 0.0 && o.tolerance <= 1.0, SPARCL_ERR_INVALID_ARG,
            "approximate top-k tolerance must lie in [0, 1]");
  if (qsgd_bits(o.codec))
    require(o.quant_bucket >= 1, SPARCL_ERR_INVALID_ARG, "quantization bucket size must be at least 1");
  require(o.momentum >= 0.0f && o.momentum < 1.0f, SPARCL_ERR_INVALID_ARG, "momentum must lie in [0, 1)");
  require(o.momentum == 0.0f || o.error_feedback, SPARCL_ERR_INVALID_ARG,
          "momentum correction needs error feedback");
  if (o.global) {
    if (!counted)
      fail(SPARCL_ERR_UNSUPPORTED, std::string("global selection keeps k entries of the sum: method ") +
                                       method_name(o.method) +
                                       " has no k (use topk, topk_bucket, approx_topk or randomk)");
    require(o.threshold_reuse >= 1, SPARCL_ERR_INVALID_ARG, "threshold_reuse must be at least 1");
  }
  if (!host_state) return;
  if (o.error_feedback) residual_.assign(size_t(dim), 0.0f);
  if (o.momentum > 0.0f) velocity_.assign(size_t(dim), 0.0f);
}

void Compressor::reset() {
  std::fill(residual_.begin(), residual_.end(), 0.0f);
  std::fill(velocity_.begin(), velocity_.end(), 0.0f);
  step_ = 0;
}

void Compressor::unsend() {
  if (residual_.empty()) return;
  float* r = residual_.data();
  const uint32_t* idx = selection_.idx.data();
  const float* val = selection_.val.data();
  if (rounded_here_) {
    for (size_t j = 0; j < selection_.size(); ++j) r[idx[j]] += val[j];
  } else {  // the selection holds acc itself, and the residual there only this step's error
    for (size_t j = 0; j < selection_.size(); ++j) r[idx[j]] = val[j];
  }
}

void Compressor::keep_only(const uint32_t* kept, size_t n) {
  require(!rounded_here_, SPARCL_ERR_INTERNAL, "keep_only() after a step the collective did not encode");
  if (residual_.empty()) return;
  float* r = residual_.data();
  const uint32_t* idx = selection_.idx.data();
  const float* acc = selection_.val.data();
  size_t at = 0;  // both lists are sorted: one merge walk
  for (size_t j = 0; j < selection_.size(); ++j) {
    while (at < n && kept[at] < idx[j]) ++at;
    if (at < n && kept[at] == idx[j]) continue;
    r[idx[j]] = acc[j];
  }
}

void Compressor::sent_as(size_t first, size_t count, const float* received) {
  require_reportable(!rounded_here_, first, count, selection_.size());
  if (residual_.empty()) return;
  float* r = residual_.data();
  const uint32_t* idx = selection_.idx.data() + first;
  const float* acc = selection_.val.data() + first;
  for (size_t j = 0; j < count; ++j) r[idx[j]] = unsent_part(acc[j], received[j]);
}

const Selection& Compressor::compress(const float* grad, uint64_t stream, bool round_here) {
  require(grad != nullptr, SPARCL_ERR_INVALID_ARG, "gradient is NULL");
  require(!options_.error_feedback || !residual_.empty(), SPARCL_ERR_INTERNAL,
          "this compressor's state lives on a GPU: its steps run there");
  const size_t n = size_t(dim_);
  const CompressorOptions& o = options_;
  const float* acc = grad;
  if (o.error_feedback) {
    float* r = residual_.data();
    if (o.momentum > 0.0f) {
      float* u = velocity_.data();
      const float m = o.momentum;
      for (size_t i = 0; i < n; ++i) {
        u[i] = m * u[i] + grad[i];
        r[i] += u[i];
      }
    } else {
      for (size_t i = 0; i < n; ++i) r[i] += grad[i];
    }
    acc = r;
  }

  Selection& sel = selection_;
  switch (o.method) {
    case Method::None: select_all(acc, n, sel); break;
    case Method::TopK: select_topk(acc, n, k_, sel, workspace_); break;
    case Method::TopKBucket: select_topk_bucketed(acc, n, k_, o.bucket, sel, workspace_); break;
    case Method::ApproxTopK: select_approx_topk(acc, n, k_, sel, workspace_, o.tolerance); break;
    case Method::Threshold: select_threshold(acc, n, o.threshold, sel); break;
    case Method::RandomK: select_randomk(acc, n, k_, o.seed, step_, sel, workspace_); break;
  }

  const size_t m = sel.size();
  const bool rounded = round_here && o.codec != ValueCodec::Raw;
  if (rounded)
    round_trip_values(o.codec, sel.val.data(), m, o.quant_bucket, rounding_seed(o.seed, step_, stream), scratch_);
  if (!round_here) require_encodable(o.codec, sel.idx.data(), sel.val.data(), m);  // before any collective starts
  rounded_here_ = round_here;
  if (o.error_feedback) {
    float* r = residual_.data();
    const uint32_t* idx = sel.idx.data();
    const float* val = sel.val.data();
    if (!rounded) {
      for (size_t j = 0; j < m; ++j) r[idx[j]] = 0.0f;  // sent == acc exactly
    } else {
      for (size_t j = 0; j < m; ++j) r[idx[j]] = unsent_part(r[idx[j]], val[j]);
    }
    if (o.momentum > 0.0f) {
      float* u = velocity_.data();
      for (size_t j = 0; j < m; ++j) u[idx[j]] = 0.0f;
    }
  }
  ++step_;
  return sel;
}

}  // namespace compress
}  // namespace sparcl
