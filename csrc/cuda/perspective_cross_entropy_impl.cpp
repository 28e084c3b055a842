// CUDA dispatch key of mindcore::perspective_cross_entropy: the device-generic driver with the CUDA
// row kernels, launched on torch's current stream (compiled only in CUDA builds).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "cuda/perspective_cross_entropy.cuh"
#include "perspective_cross_entropy.h"

namespace mindcore {
namespace {

cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

void full_rows(float* logits, int64_t rows, int64_t cols, const int64_t* targets, const float* scale, bool grad,
               float* lse, float* target_logit) {
  C10_CUDA_CHECK(cuda::launch_full_rows(logits, rows, cols, targets, scale, grad, lse, target_logit, current_stream()));
}

void block_stats(const float* logits, int64_t rows, int64_t cols, int64_t col0, const int64_t* targets,
                 float* row_max, float* row_sum, float* target_logit) {
  C10_CUDA_CHECK(cuda::launch_block_stats(logits, rows, cols, col0, targets, row_max, row_sum, target_logit,
                                          current_stream()));
}

void block_grad(float* logits, int64_t rows, int64_t cols, int64_t col0, const int64_t* targets, const float* lse,
                const float* scale) {
  C10_CUDA_CHECK(cuda::launch_block_grad(logits, rows, cols, col0, targets, lse, scale, current_stream()));
}

// bfloat16 GEMMs run on the tensor cores: bf16 inputs take the 16-bit-GEMM pass (fp32-grade logits
// as hi + res). float16 keeps the fp32 vocab-blocked pass: its gradient needs a power-of-two pre-scale
// read from the per-token scales, which live on the device (a host sync).
bool lowp_fast(at::ScalarType dtype) { return dtype == at::kBFloat16; }

void lowp_rows(at::ScalarType dtype, void* hi, const void* res, const float* bias, int64_t rows, int64_t cols,
               const int64_t* targets, const float* scale, float gscale, bool grad, float* lse, float* target_logit) {
  TORCH_CHECK(dtype == at::kBFloat16, "perspective_cross_entropy (CUDA): 16-bit GEMM pass is bfloat16 only, got ",
              dtype);
  C10_CUDA_CHECK(cuda::launch_lowp_rows_bf16(hi, res, bias, rows, cols, targets, scale, gscale, grad, lse,
                                             target_logit, current_stream()));
}

constexpr RowKernels kCudaKernels{full_rows, block_stats, block_grad, nullptr, lowp_fast, lowp_rows};

PCEOutputs cuda_impl(const at::Tensor& hidden, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                     const at::Tensor& targets, const at::Tensor& path_ids, const at::Tensor& path_weights,
                     const at::Tensor& inertia_value, const at::Tensor& inertia_count, const at::Tensor& path_slots,
                     int64_t ignore_index, double momentum, std::array<bool, 3> output_mask) {
  const c10::cuda::CUDAGuard guard(hidden.device());
  return perspective_cross_entropy(kCudaKernels, hidden, weight, bias, targets, path_ids, path_weights,
                                   inertia_value, inertia_count, path_slots, ignore_index, momentum, output_mask);
}

}  // namespace
}  // namespace mindcore

TORCH_LIBRARY_IMPL(mindcore, CUDA, m) { m.impl("perspective_cross_entropy", TORCH_FN(mindcore::cuda_impl)); }
