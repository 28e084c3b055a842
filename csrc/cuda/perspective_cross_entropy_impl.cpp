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

constexpr RowKernels kCudaKernels{full_rows, block_stats, block_grad};

PCEOutputs cuda_impl(const at::Tensor& hidden, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                     const at::Tensor& targets, const at::Tensor& path_ids, const at::Tensor& path_weights,
                     const at::Tensor& inertia_value, const at::Tensor& inertia_count, const at::Tensor& path_slots,
                     int64_t ignore_index, double momentum, bool compute_grad) {
  const c10::cuda::CUDAGuard guard(hidden.device());
  return perspective_cross_entropy(kCudaKernels, hidden, weight, bias, targets, path_ids, path_weights,
                                   inertia_value, inertia_count, path_slots, ignore_index, momentum, compute_grad);
}

}  // namespace
}  // namespace mindcore

TORCH_LIBRARY_IMPL(mindcore, CUDA, m) { m.impl("perspective_cross_entropy", TORCH_FN(mindcore::cuda_impl)); }
