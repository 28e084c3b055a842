// Device-generic driver of mindcore::perspective_cross_entropy. Each device supplies three fused
// row kernels over an fp32 logits chunk (row-major, leading dimension = cols); the driver does the
// GEMMs (at::mm on whatever device the tensors live), the per-path sums and the inertia epilogue
// with ATen ops, so no host sync happens on the hot path.
#pragma once
#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <optional>
#include <tuple>

namespace mindcore {

struct RowKernels {
  // Whole rows (cols = V): lse[r], target_logit[r]; if `grad`, logits become in place
  // scale[r] * (softmax - onehot(target[r])). Targets outside [0, cols) pick nothing.
  void (*full_rows)(float* logits, int64_t rows, int64_t cols, const int64_t* targets,
                    const float* scale, bool grad, float* lse, float* target_logit);
  // Column block [col0, col0 + cols): online-softmax merge into (row_max, row_sum); picks the
  // target logit when the target falls in the block.
  void (*block_stats)(const float* logits, int64_t rows, int64_t cols, int64_t col0,
                      const int64_t* targets, float* row_max, float* row_sum, float* target_logit);
  // Column block, final lse known: logits become scale * (exp(logit - lse) - onehot) in place.
  void (*block_grad)(float* logits, int64_t rows, int64_t cols, int64_t col0, const int64_t* targets,
                     const float* lse, const float* scale);

  // Optional (nullptr: row-major chunks only). Same outputs as full_rows for a vocab-major chunk:
  // logits_t is (cols, rows) row-major, token r at column r. CPU GEMMs with few token rows and a
  // large vocabulary write this layout faster (the big operand streams, the small one stays packed).
  void (*full_cols)(float* logits_t, int64_t rows, int64_t cols, const int64_t* targets,
                    const float* scale, bool grad, float* lse, float* target_logit) = nullptr;

  // Optional, for devices whose 16-bit GEMMs beat fp32 ones (nullptr: 16-bit inputs take the fp32
  // vocab-blocked scheme). `lowp_fast(dtype)` decides at run time. `lowp_rows` takes whole rows whose
  // logits are hi + res (+ bias), hi and res two row-major (rows, cols) tensors of `dtype` (bfloat16
  // or float16), and writes lse and the target logit in fp32; if `grad`, hi becomes
  // gscale * scale[r] * (softmax - onehot) rounded once to `dtype`.
  bool (*lowp_fast)(at::ScalarType dtype) = nullptr;
  void (*lowp_rows)(at::ScalarType dtype, void* hi, const void* res, const float* bias, int64_t rows,
                    int64_t cols, const int64_t* targets, const float* scale, float gscale, bool grad,
                    float* lse, float* target_logit) = nullptr;
  // Optional: lowp_rows for a vocab-major chunk (hi, res (cols, rows) row-major; see full_cols).
  void (*lowp_cols)(at::ScalarType dtype, void* hi, const void* res, const float* bias, int64_t rows,
                    int64_t cols, const int64_t* targets, const float* scale, float gscale, bool grad,
                    float* lse, float* target_logit) = nullptr;
};

using PCEOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                              at::Tensor, at::Tensor>;

PCEOutputs perspective_cross_entropy(const RowKernels& kernels, const at::Tensor& hidden,
                                     const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                     const at::Tensor& targets, const at::Tensor& path_ids,
                                     const at::Tensor& path_weights, const at::Tensor& inertia_value,
                                     const at::Tensor& inertia_count, const at::Tensor& path_slots,
                                     int64_t ignore_index, double momentum, std::array<bool, 3> output_mask);

}  // namespace mindcore
