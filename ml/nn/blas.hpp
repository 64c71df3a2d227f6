// SPDX-License-Identifier: BSD-3-Clause
// The one GEMM of the trainer (OpenBLAS's cblas_sgemm, row-major), so that
// the layers read as their formulas.
#pragma once

#include <cstddef>

namespace sparcl {
namespace nn {

/// C[M x N] = alpha * op(A) * op(B) + beta * C, row-major; op(X) = X or X^T.
/// lda/ldb/ldc are the row strides of A, B and C as stored.
void gemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha, const float* a, size_t lda,
          const float* b, size_t ldb, float beta, float* c, size_t ldc);

/// Makes OpenBLAS run on the calling thread only: ranks that share a
/// machine's cores must not each start a thread per core.
void blas_use_one_thread();

}  // namespace nn
}  // namespace sparcl
