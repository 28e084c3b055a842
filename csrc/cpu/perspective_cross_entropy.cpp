// CPU row kernels of perspective_cross_entropy and its registration for the CPU dispatch key.
// Rows run in parallel (at::parallel_for); within a row, branch-free loops with an inline
// polynomial exp vectorise (`omp simd`), compiled once per ISA and picked at load time.
#include <ATen/Parallel.h>
#include <c10/util/Half.h>
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

// ---- vocab-major float32 chunks: tokens are the columns of a (V, rows) matrix ----
// Every token is a lane of a whole (contiguous) vocab row, so both passes stream memory in order.
// Vocab parts of kColPart rows run in parallel: pass 1 keeps per-lane running max and rescaled sum
// (one rescale per tile of kColTile rows; the tile is re-read from L1), the parts' stats merge in a
// fixed order (results do not depend on the thread count), pass 2 writes the gradient.
constexpr int64_t kColPart = 2048, kColTile = 16;

// Stats of vocab rows [0, nv) of x (leading dim ld = lanes) into m, s; tm is lanes of scratch.
MC_CLONES void col_stats(const float* x, int64_t ld, int64_t nv, float* m, float* s, float* tm) {
  for (int64_t j = 0; j < ld; ++j) m[j] = kNegInf, s[j] = 0.0f;
  for (int64_t v0 = 0; v0 < nv; v0 += kColTile) {
    const int64_t v1 = std::min(nv, v0 + kColTile);
    std::copy(m, m + ld, tm);
    for (int64_t v = v0; v < v1; ++v) {
      const float* row = x + v * ld;
#pragma omp simd
      for (int64_t j = 0; j < ld; ++j) tm[j] = std::max(tm[j], row[j]);
    }
#pragma omp simd
    for (int64_t j = 0; j < ld; ++j) {
      const float sh = tm[j] == kNegInf ? 0.0f : tm[j];  // all -inf so far: any finite shift keeps s = 0
      s[j] *= vexp(m[j] - sh);
      m[j] = tm[j];
      tm[j] = sh;
    }
    for (int64_t v = v0; v < v1; ++v) {
      const float* row = x + v * ld;
#pragma omp simd
      for (int64_t j = 0; j < ld; ++j) s[j] += vexp(row[j] - tm[j]);
    }
  }
}

MC_CLONES void col_grad(float* x, int64_t ld, int64_t nv, const float* shift, const float* f) {
  for (int64_t v = 0; v < nv; ++v) {
    float* row = x + v * ld;
#pragma omp simd
    for (int64_t j = 0; j < ld; ++j) row[j] = f[j] * vexp(row[j] - shift[j]);
  }
}

void full_cols(float* logits_t, int64_t rows, int64_t cols, const int64_t* targets, const float* scale, bool grad,
               float* lse, float* target_logit) {
  const int64_t ld = rows, parts = (cols + kColPart - 1) / kColPart;
  std::unique_ptr<float[]> stats(new float[2 * parts * ld]);  // per part: m (ld), then s (ld)
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    std::unique_ptr<float[]> tm(new float[ld]);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t v0 = p * kColPart;
      col_stats(logits_t + v0 * ld, ld, std::min(kColPart, cols - v0), stats.get() + 2 * p * ld,
                stats.get() + (2 * p + 1) * ld, tm.get());
    }
  });
  std::unique_ptr<float[]> shift(new float[2 * ld]);
  float* f = shift.get() + ld;
  for (int64_t j = 0; j < ld; ++j) {
    float m = kNegInf, s = 0.0f;
    for (int64_t p = 0; p < parts; ++p) m = std::max(m, stats[2 * p * ld + j]);
    const float sh = m == kNegInf ? 0.0f : m;
    for (int64_t p = 0; p < parts; ++p) s += stats[(2 * p + 1) * ld + j] * vexp(stats[2 * p * ld + j] - sh);
    const int64_t t = targets[j];
    target_logit[j] = t >= 0 && t < cols ? logits_t[t * ld + j] : 0.0f;
    lse[j] = m + std::log(s);
    shift[j] = sh;
    f[j] = scale[j] / s;
  }
  if (!grad) return;
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t v0 = p * kColPart;
      col_grad(logits_t + v0 * ld, ld, std::min(kColPart, cols - v0), shift.get(), f);
    }
  });
  for (int64_t j = 0; j < ld; ++j) {
    const int64_t t = targets[j];
    if (t >= 0 && t < cols) logits_t[t * ld + j] -= scale[j];
  }
}

// ---- 16-bit inputs with fast 16-bit GEMMs: logits arrive as hi + res (see rows_outer_lowp) ----

struct Bf16 {  // bfloat16 as raw bits: widening is a shift, narrowing rounds to nearest even
  using raw = uint16_t;
  static float load(uint16_t b) {
    const uint32_t u = uint32_t{b} << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  }
  static uint16_t store(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    const uint16_t rounded = static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    return f != f ? uint16_t{0x7FC0} : rounded;  // keep NaN a NaN (rounding could carry it to inf)
  }
};

struct F16 {  // float16: the compiler's conversions (F16C instructions where the clone has them)
#if defined(__FLT16_MAX__)
  using raw = _Float16;
  static float load(_Float16 h) { return static_cast<float>(h); }
  static _Float16 store(float f) { return static_cast<_Float16>(f); }
#else
  using raw = c10::Half;
  static float load(c10::Half h) { return static_cast<float>(h); }
  static c10::Half store(float f) { return c10::Half(f); }
#endif
};

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
// target_clones cannot name avx512f + f16c together, and GCC 12 does not vectorise _Float16 under
// arch=sapphirerapids: an explicit AVX-512 + F16C version, picked at run time.
#define MC_AVX512_F16C __attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma")))
MC_LOWP_ROW(lowp_row_bf16_avx512, Bf16, MC_AVX512_F16C)
MC_LOWP_ROW(lowp_row_f16_avx512, F16, MC_AVX512_F16C)
#endif

bool have_avx512_f16c() {
#if MC_HAVE_CLONES
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

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

constexpr RowKernels kCpuKernels{full_rows, block_stats, block_grad, full_cols, lowp_fast, lowp_rows};

PCEOutputs cpu_impl(const at::Tensor& hidden, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                    const at::Tensor& targets, const at::Tensor& path_ids, const at::Tensor& path_weights,
                    const at::Tensor& inertia_value, const at::Tensor& inertia_count, const at::Tensor& path_slots,
                    int64_t ignore_index, double momentum, bool compute_grad) {
  return perspective_cross_entropy(kCpuKernels, hidden, weight, bias, targets, path_ids, path_weights,
                                   inertia_value, inertia_count, path_slots, ignore_index, momentum, compute_grad);
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
