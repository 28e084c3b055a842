// Launcher API of the CUDA row kernels of perspective_cross_entropy. Raw pointers and a stream only:
// no torch header, so the .cu compiles with plain nvcc (and is compile-checked without a GPU).
// Layout: fp32 logits, row-major, leading dimension = cols; int64 targets; one entry per row.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace mindcore::cuda {

// Whole rows: lse, target logit; if `grad`, logits <- scale * (softmax - onehot(target)) in place.
cudaError_t launch_full_rows(float* logits, int64_t rows, int64_t cols, const int64_t* targets, const float* scale,
                             bool grad, float* lse, float* target_logit, cudaStream_t stream);

// Column block [col0, col0 + cols): online-softmax merge into (row_max, row_sum), target logit pick-up.
cudaError_t launch_block_stats(const float* logits, int64_t rows, int64_t cols, int64_t col0,
                               const int64_t* targets, float* row_max, float* row_sum, float* target_logit,
                               cudaStream_t stream);

// Column block with the final lse: logits <- scale * (exp(logit - lse) - onehot) in place.
cudaError_t launch_block_grad(float* logits, int64_t rows, int64_t cols, int64_t col0, const int64_t* targets,
                              const float* lse, const float* scale, cudaStream_t stream);

// bfloat16 rows whose logits are hi + res (+ bias[col], fp32; may be null), both (rows, cols): lse and
// target logit in fp32; if `grad`, hi <- bf16(gscale * scale * (softmax - onehot)).
cudaError_t launch_lowp_rows_bf16(void* hi, const void* res, const float* bias, int64_t rows, int64_t cols,
                                  const int64_t* targets, const float* scale, float gscale, bool grad, float* lse,
                                  float* target_logit, cudaStream_t stream);

}  // namespace mindcore::cuda
