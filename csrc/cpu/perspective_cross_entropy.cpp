// CPU row kernels of perspective_cross_entropy and its registration for the CPU dispatch key.
// Rows run in parallel (at::parallel_for); within a row, branch-free loops with an inline
// polynomial exp vectorise (`omp simd`), compiled once per ISA and picked at load time.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "build_info.h"
#include "perspective_cross_entropy.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define MC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define MC_HAVE_CLONES 1
#else
#define MC_CLONES
#define MC_HAVE_CLONES 0
#endif

namespace mindcore {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// exp(x): Cephes-style range reduction + degree-6 polynomial (~2 ulp), branch-free so it vectorises.
// NaN propagates; arguments below -87 give ~1e-38 instead of a denormal (harmless in softmax sums).
__attribute__((always_inline)) inline float vexp(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = (x - k * 0.693359375f) - k * -2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(k) + 127) << 23;
  float pow2;
  std::memcpy(&pow2, &bits, sizeof pow2);
  return y * pow2;
}

MC_CLONES float row_max(const float* x, int64_t n) {
  float m = kNegInf;
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < n; ++j) m = std::max(m, x[j]);
  return m;
}

MC_CLONES float row_sum_exp(const float* x, int64_t n, float m) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += vexp(x[j] - m);
  return s;
}

// x <- exp(x - m) in place, returns the sum (the row is then one multiply away from its gradient).
MC_CLONES float row_exp_sum(float* x, int64_t n, float m) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) {
    x[j] = vexp(x[j] - m);
    s += x[j];
  }
  return s;
}

MC_CLONES void row_scale(float* x, int64_t n, float f) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) x[j] *= f;
}

MC_CLONES void row_softmax_scaled(float* x, int64_t n, float lse, float scale) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) x[j] = scale * vexp(x[j] - lse);
}

int64_t grain(int64_t cols) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1)); }

void full_rows(float* logits, int64_t rows, int64_t cols, const int64_t* targets, const float* scale, bool grad,
               float* lse, float* target_logit) {
  at::parallel_for(0, rows, grain(cols), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* x = logits + r * cols;
      const int64_t t = targets[r];
      const bool has_t = t >= 0 && t < cols;
      target_logit[r] = has_t ? x[t] : 0.0f;
      const float m = row_max(x, cols);
      const float s = grad ? row_exp_sum(x, cols, m) : row_sum_exp(x, cols, m);
      lse[r] = m + std::log(s);
      if (grad) {
        row_scale(x, cols, scale[r] / s);
        if (has_t) x[t] -= scale[r];
      }
    }
  });
}

void block_stats(const float* logits, int64_t rows, int64_t cols, int64_t col0, const int64_t* targets,
                 float* row_max_io, float* row_sum_io, float* target_logit) {
  at::parallel_for(0, rows, grain(cols), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* x = logits + r * cols;
      const int64_t t = targets[r] - col0;
      if (t >= 0 && t < cols) target_logit[r] = x[t];
      const float old_m = row_max_io[r];
      const float m = std::max(old_m, row_max(x, cols));
      if (m == kNegInf) continue;  // nothing but -inf so far
      row_sum_io[r] = row_sum_io[r] * vexp(old_m - m) + row_sum_exp(x, cols, m);
      row_max_io[r] = m;
    }
  });
}

void block_grad(float* logits, int64_t rows, int64_t cols, int64_t col0, const int64_t* targets, const float* lse,
                const float* scale) {
  at::parallel_for(0, rows, grain(cols), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* x = logits + r * cols;
      row_softmax_scaled(x, cols, lse[r], scale[r]);
      const int64_t t = targets[r] - col0;
      if (t >= 0 && t < cols) x[t] -= scale[r];
    }
  });
}

constexpr RowKernels kCpuKernels{full_rows, block_stats, block_grad};

PCEOutputs cpu_impl(const at::Tensor& hidden, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                    const at::Tensor& targets, const at::Tensor& path_ids, const at::Tensor& path_weights,
                    const at::Tensor& inertia_value, const at::Tensor& inertia_count, const at::Tensor& path_slots,
                    int64_t ignore_index, double momentum, bool compute_grad) {
  return perspective_cross_entropy(kCpuKernels, hidden, weight, bias, targets, path_ids, path_weights,
                                   inertia_value, inertia_count, path_slots, ignore_index, momentum, compute_grad);
}

}  // namespace

const char* cpu_isa() {
#if MC_HAVE_CLONES
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "avx512f";
  if (__builtin_cpu_supports("avx2")) return "avx2";
  return "baseline x86-64";
#else
  return "generic (compiler auto-vectorisation)";
#endif
}

}  // namespace mindcore

TORCH_LIBRARY_IMPL(mindcore, CPU, m) { m.impl("perspective_cross_entropy", TORCH_FN(mindcore::cpu_impl)); }
