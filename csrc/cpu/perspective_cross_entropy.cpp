// CPU row kernels of perspective_cross_entropy and its registration for the CPU dispatch key.
// Rows run in parallel (at::parallel_for); within a row, branch-free loops with an inline
// polynomial exp vectorise (`omp simd`), compiled once per ISA and picked at load time.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>

#include "build_info.h"
#include "perspective_cross_entropy.h"
#include "simd.h"
#include "vocab_major.h"

namespace mindcore {
namespace {
using namespace cpu;  // NOLINT: the shared kernel helpers

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

// ---- 16-bit inputs with fast 16-bit GEMMs: logits arrive as hi + res (see rows_outer_lowp) ----

// One row: x = hi + res (+ bias) in fp32 scratch, lse and target logit, then (if grad) hi becomes
// g * (softmax - onehot) rounded once. Inlined into per-ISA wrappers below.
template <class T>
__attribute__((always_inline)) inline void lowp_row(typename T::raw* h, const typename T::raw* q, const float* bias,
                                                   float* x, int64_t cols, int64_t t, float g, bool grad,
                                                   float* lse, float* target_logit) {
  float m = kNegInf;
  if (bias) {
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < cols; ++j) {
      x[j] = T::load(h[j]) + T::load(q[j]) + bias[j];
      m = std::max(m, x[j]);
    }
  } else {
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < cols; ++j) {
      x[j] = T::load(h[j]) + T::load(q[j]);
      m = std::max(m, x[j]);
    }
  }
  const bool has_t = t >= 0 && t < cols;
  *target_logit = has_t ? x[t] : 0.0f;
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < cols; ++j) {
    x[j] = vexp(x[j] - m);
    s += x[j];
  }
  *lse = m + std::log(s);
  if (!grad) return;
  const float f = g / s;
#pragma omp simd
  for (int64_t j = 0; j < cols; ++j) h[j] = T::store(f * x[j]);
  if (has_t) h[t] = T::store(f * x[t] - g);
}

using LowpRowFn = void (*)(void*, const void*, const float*, float*, int64_t, int64_t, float, bool, float*, float*);

#define MC_LOWP_ROW(NAME, T, ATTR)                                                                          \
  ATTR void NAME(void* h, const void* q, const float* bias, float* x, int64_t cols, int64_t t, float g,     \
                 bool grad, float* lse, float* tl) {                                                        \
    lowp_row<T>(static_cast<T::raw*>(h), static_cast<const T::raw*>(q), bias, x, cols, t, g, grad, lse, tl); \
  }
MC_LOWP_ROW(lowp_row_bf16, Bf16, )
MC_LOWP_ROW(lowp_row_f16, F16, )
#if MC_HAVE_CLONES
MC_LOWP_ROW(lowp_row_bf16_avx512, Bf16, MC_AVX512_F16C)
MC_LOWP_ROW(lowp_row_f16_avx512, F16, MC_AVX512_F16C)
#endif

LowpRowFn pick_lowp_row(at::ScalarType dtype) {
  static const bool avx512 = have_avx512_f16c();
  const bool half = dtype == at::kHalf;
#if MC_HAVE_CLONES
  if (avx512) return half ? lowp_row_f16_avx512 : lowp_row_bf16_avx512;
#endif
  return half ? lowp_row_f16 : lowp_row_bf16;
}

void lowp_rows(at::ScalarType dtype, void* hi, const void* res, const float* bias, int64_t rows, int64_t cols,
               const int64_t* targets, const float* scale, float gscale, bool grad, float* lse,
               float* target_logit) {
  TORCH_CHECK(dtype == at::kBFloat16 || dtype == at::kHalf, "lowp_rows: 16-bit dtype expected, got ", dtype);
  const LowpRowFn row = pick_lowp_row(dtype);
  auto* h = static_cast<uint16_t*>(hi);  // both formats are 2 bytes wide
  const auto* q = static_cast<const uint16_t*>(res);
  at::parallel_for(0, rows, grain(cols), [&](int64_t begin, int64_t end) {
    std::unique_ptr<float[]> x(new float[cols]);  // fp32 row scratch: stays in L2 across the passes
    for (int64_t r = begin; r < end; ++r) {
      row(h + r * cols, q + r * cols, bias, x.get(), cols, targets[r], gscale * scale[r], grad, lse + r,
          target_logit + r);
    }
  });
}

// Where this CPU's 16-bit GEMMs (oneDNN behind at::mm) beat fp32 ones: matrix units or dot-product
// instructions for the dtype. MINDCORE_CPU_LOWP_GEMM=0/1 overrides (tests run both paths anywhere).
int lowp_env() {
  const char* env = std::getenv("MINDCORE_CPU_LOWP_GEMM");
  if (!env || !*env) return -1;
  return env[0] == '0' ? 0 : 1;
}

bool lowp_hw(at::ScalarType dtype) {
#if defined(__GNUC__) && defined(__x86_64__)
  __builtin_cpu_init();
  if (dtype == at::kBFloat16) return __builtin_cpu_supports("amx-bf16") || __builtin_cpu_supports("avx512bf16");
  if (dtype == at::kHalf) return __builtin_cpu_supports("avx512fp16");
#endif
  (void)dtype;
  return false;
}

bool lowp_fast(at::ScalarType dtype) {
  if (dtype != at::kBFloat16 && dtype != at::kHalf) return false;
  const int env = lowp_env();
  return env >= 0 ? env == 1 : lowp_hw(dtype);
}

constexpr RowKernels kCpuKernels{full_rows, block_stats, block_grad, full_cols, lowp_fast, lowp_rows, lowp_cols};

PCEOutputs cpu_impl(const at::Tensor& hidden, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                    const at::Tensor& targets, const at::Tensor& path_ids, const at::Tensor& path_weights,
                    const at::Tensor& inertia_value, const at::Tensor& inertia_count, const at::Tensor& path_slots,
                    int64_t ignore_index, double momentum, std::array<bool, 3> output_mask) {
  return perspective_cross_entropy(kCpuKernels, hidden, weight, bias, targets, path_ids, path_weights,
                                   inertia_value, inertia_count, path_slots, ignore_index, momentum, output_mask);
}

}  // namespace

std::string cpu_lowp_gemm() {
  std::string out;
  for (auto [name, dt] : {std::pair{"bfloat16", at::kBFloat16}, std::pair{"float16", at::kHalf}}) {
    if (!out.empty()) out += "; ";
    out += std::string(name) + ": " + (lowp_fast(dt) ? "16-bit GEMMs, fp32-grade logits (hi + residual)"
                                                    : "fp32 GEMMs on converted vocab blocks");
    if (lowp_env() >= 0) out += " (MINDCORE_CPU_LOWP_GEMM)";
  }
  return out;
}

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
