// CPU kernels for vocab-major logits chunks (see RowKernels::full_cols / lowp_cols).
#pragma once
#include <c10/core/ScalarType.h>

#include <cstdint>

namespace mindcore::cpu {

void full_cols(float* logits_t, int64_t rows, int64_t cols, const int64_t* targets, const float* scale, bool grad,
               float* lse, float* target_logit);

void lowp_cols(at::ScalarType dtype, void* hi, const void* res, const float* bias, int64_t rows, int64_t cols,
               const int64_t* targets, const float* scale, float gscale, bool grad, float* lse, float* target_logit);

}  // namespace mindcore::cpu
