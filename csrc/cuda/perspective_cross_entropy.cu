// CUDA row kernels of perspective_cross_entropy (see perspective_cross_entropy.cuh). One thread
// block per row for the reductions (two passes: max, then sum of exp, so -inf logits stay exact
// and a NaN anywhere in a row makes its lse NaN, as in the reference); the gradient of a column
// block is elementwise over a 2-D grid.
#include <cuda_bf16.h>

#include <cmath>

#include "perspective_cross_entropy.cuh"

namespace mindcore::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kGradCols = 4096;  // columns per block of the elementwise gradient kernel

struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }  // ignores NaN; sums carry it
};
struct Sum {
  __device__ float operator()(float a, float b) const { return a + b; }
};

// Every thread gets the block-wide result; `smem` holds one value per warp.
template <typename Op>
__device__ float block_reduce(float v, Op op, float* smem) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x / 32, warps = blockDim.x / 32;
  if (threadIdx.x % 32 == 0) smem[warp] = v;
  __syncthreads();
  v = smem[0];
  for (int w = 1; w < warps; ++w) v = op(v, smem[w]);
  __syncthreads();  // smem is reused by the next reduction
  return v;
}

// (max, sum of exp(x - max)) of one row segment.
__device__ float2 max_sumexp(const float* x, int64_t cols, float* smem) {
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, x[j]);
  m = block_reduce(m, Max(), smem);
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += __expf(x[j] - m);
  return make_float2(m, block_reduce(s, Sum(), smem));
}

__global__ void full_rows_kernel(float* logits, int64_t cols, const int64_t* targets, const float* scale, bool grad,
                                 float* lse, float* target_logit) {
  __shared__ float smem[32];
  const int64_t r = blockIdx.x;
  float* x = logits + r * cols;
  const float2 ms = max_sumexp(x, cols, smem);
  const float l = ms.x + logf(ms.y);
  const int64_t t = targets[r];
  if (threadIdx.x == 0) {
    lse[r] = l;
    target_logit[r] = (t >= 0 && t < cols) ? x[t] : 0.0f;
  }
  if (!grad) return;
  __syncthreads();  // x[t] is read before it is overwritten
  const float sc = scale[r];
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) x[j] = sc * __expf(x[j] - l) - (j == t ? sc : 0.0f);
}

__global__ void block_stats_kernel(const float* logits, int64_t cols, int64_t col0, const int64_t* targets,
                                   float* row_max, float* row_sum, float* target_logit) {
  __shared__ float smem[32];
  const int64_t r = blockIdx.x;
  const float* x = logits + r * cols;
  const float2 ms = max_sumexp(x, cols, smem);
  if (threadIdx.x != 0) return;
  const int64_t t = targets[r] - col0;
  if (t >= 0 && t < cols) target_logit[r] = x[t];
  const float old_m = row_max[r], m = fmaxf(old_m, ms.x);
  if (m == -INFINITY) return;  // nothing but -inf so far
  const float block = ms.x == -INFINITY ? 0.0f : ms.y * __expf(ms.x - m);
  row_sum[r] = row_sum[r] * __expf(old_m - m) + block;
  row_max[r] = m;
}

__global__ void block_grad_kernel(float* logits, int64_t cols, int64_t col0, const int64_t* targets,
                                  const float* lse, const float* scale) {
  const int64_t r = blockIdx.x;
  const int64_t begin = int64_t(blockIdx.y) * kGradCols;
  const int64_t end = begin + kGradCols < cols ? begin + kGradCols : cols;
  const int64_t t = targets[r] - col0;
  const float l = lse[r], sc = scale[r];
  float* x = logits + r * cols;
  for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) x[j] = sc * __expf(x[j] - l) - (j == t ? sc : 0.0f);
}

// bfloat16 logits as hi + res (+ bias), see rows_outer_lowp: lse and target logit in fp32, then (if
// grad) hi <- round(g * (softmax - onehot)). Each thread rewrites only the hi entries it read.
__global__ void lowp_rows_bf16_kernel(__nv_bfloat16* hi, const __nv_bfloat16* res, const float* bias, int64_t cols,
                                      const int64_t* targets, const float* scale, float gscale, bool grad, float* lse,
                                      float* target_logit) {
  __shared__ float smem[32];
  const int64_t r = blockIdx.x;
  __nv_bfloat16* h = hi + r * cols;
  const __nv_bfloat16* q = res + r * cols;
  auto x = [&](int64_t j) { return __bfloat162float(h[j]) + __bfloat162float(q[j]) + (bias ? bias[j] : 0.0f); };
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, x(j));
  m = block_reduce(m, Max(), smem);
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += __expf(x(j) - m);
  const float l = m + logf(block_reduce(s, Sum(), smem));
  const int64_t t = targets[r];
  const float xt = (t >= 0 && t < cols) ? x(t) : 0.0f;
  if (threadIdx.x == 0) {
    lse[r] = l;
    target_logit[r] = xt;
  }
  if (!grad) return;
  __syncthreads();  // every thread has read hi[t] before its owner overwrites it
  const float g = gscale * scale[r];
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    h[j] = __float2bfloat16_rn(g * __expf(x(j) - l) - (j == t ? g : 0.0f));
  }
}

}  // namespace

cudaError_t launch_lowp_rows_bf16(void* hi, const void* res, const float* bias, int64_t rows, int64_t cols,
                                  const int64_t* targets, const float* scale, float gscale, bool grad, float* lse,
                                  float* target_logit, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  lowp_rows_bf16_kernel<<<dim3(static_cast<unsigned>(rows)), kThreads, 0, stream>>>(
      static_cast<__nv_bfloat16*>(hi), static_cast<const __nv_bfloat16*>(res), bias, cols, targets, scale, gscale,
      grad, lse, target_logit);
  return cudaGetLastError();
}

cudaError_t launch_full_rows(float* logits, int64_t rows, int64_t cols, const int64_t* targets, const float* scale,
                             bool grad, float* lse, float* target_logit, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  full_rows_kernel<<<dim3(static_cast<unsigned>(rows)), kThreads, 0, stream>>>(logits, cols, targets, scale, grad,
                                                                                 lse, target_logit);
  return cudaGetLastError();
}

cudaError_t launch_block_stats(const float* logits, int64_t rows, int64_t cols, int64_t col0,
                               const int64_t* targets, float* row_max, float* row_sum, float* target_logit,
                               cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  block_stats_kernel<<<dim3(static_cast<unsigned>(rows)), kThreads, 0, stream>>>(logits, cols, col0, targets,
                                                                                   row_max, row_sum, target_logit);
  return cudaGetLastError();
}

cudaError_t launch_block_grad(float* logits, int64_t rows, int64_t cols, int64_t col0, const int64_t* targets,
                              const float* lse, const float* scale, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>((cols + kGradCols - 1) / kGradCols));
  block_grad_kernel<<<grid, 256, 0, stream>>>(logits, cols, col0, targets, lse, scale);
  return cudaGetLastError();
}

}  // namespace mindcore::cuda
