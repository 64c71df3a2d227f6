// SPDX-License-Identifier: BSD-3-Clause
#include "ml/nn/blas.hpp"

#include <cblas.h>

#include <climits>
#include <stdexcept>

namespace sparcl {
namespace nn {

void gemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha, const float* a, size_t lda,
          const float* b, size_t ldb, float beta, float* c, size_t ldc) {
  if (m == 0 || n == 0) return;
  if (m > INT_MAX || n > INT_MAX || k > INT_MAX || lda > INT_MAX || ldb > INT_MAX || ldc > INT_MAX)
    throw std::invalid_argument("gemm: a dimension exceeds the range of a BLAS int");
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, int(m),
              int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

void blas_use_one_thread() { openblas_set_num_threads(1); }

}  // namespace nn
}  // namespace sparcl
