// Vocab-major chunks: the logits of `rows` tokens are a (V, rows) matrix, token j in column j, which
// is the layout the CPU GEMMs write fastest for few tokens and a large vocabulary. Every token is a
// lane of a whole (contiguous) vocab row, so both passes stream memory in order:
//   pass 1, vocab parts of kColPart rows in parallel: per-lane running max and rescaled sum (one
//           rescale per tile of kColTile rows; the tile is re-read from L1);
//   merge:  the parts' stats in a fixed order (results do not depend on the thread count);
//   pass 2: the gradient g * softmax in place (fp32) or rounded into hi (16-bit), then the target.
// Sources: fp32 logits, or hi + res (+ bias) in bfloat16 / float16 (rows_outer_lowp).
#include "vocab_major.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <memory>

#include "simd.h"

namespace mindcore::cpu {
namespace {

constexpr int64_t kColPart = 2048, kColTile = 16;

struct F32Src {  // fp32 logits, gradient written in place
  float* x;
  int64_t ld;
  struct Row {
    float* p;
    float get(int64_t j) const { return p[j]; }
    void put(int64_t j, float y) const { p[j] = y; }
  };
  Row row(int64_t v) const { return {x + v * ld}; }
};

template <class T>
struct LowpSrc {  // logits = hi + res (+ bias[v]); the gradient is rounded into hi
  typename T::raw* h;
  const typename T::raw* q;
  const float* bias;
  int64_t ld;
  struct Row {
    typename T::raw* h;
    const typename T::raw* q;
    float b;
    float get(int64_t j) const { return T::load(h[j]) + T::load(q[j]) + b; }
    void put(int64_t j, float y) const { h[j] = T::store(y); }
  };
  Row row(int64_t v) const { return {h + v * ld, q + v * ld, bias ? bias[v] : 0.0f}; }
};

// Pass 1 over vocab rows [v0, v1): m, s (lanes each) from scratch; tm is lanes of scratch.
template <class Src>
__attribute__((always_inline)) inline void stats_t(const Src& src, int64_t lanes, int64_t v0, int64_t v1, float* m,
                                                  float* s, float* tm) {
  for (int64_t j = 0; j < lanes; ++j) m[j] = kNegInf, s[j] = 0.0f;
  for (int64_t t0 = v0; t0 < v1; t0 += kColTile) {
    const int64_t t1 = std::min(v1, t0 + kColTile);
    std::copy(m, m + lanes, tm);
    for (int64_t v = t0; v < t1; ++v) {
      const auto row = src.row(v);
#pragma omp simd
      for (int64_t j = 0; j < lanes; ++j) {
        const float x = row.get(j);
        tm[j] = tm[j] < x ? x : tm[j];  // std::max, without binding a temporary (which blocks omp simd)
      }
    }
#pragma omp simd
    for (int64_t j = 0; j < lanes; ++j) {
      const float sh = tm[j] == kNegInf ? 0.0f : tm[j];  // all -inf so far: any finite shift keeps s = 0
      s[j] *= vexp(m[j] - sh);
      m[j] = tm[j];
      tm[j] = sh;
    }
    for (int64_t v = t0; v < t1; ++v) {
      const auto row = src.row(v);
#pragma omp simd
      for (int64_t j = 0; j < lanes; ++j) s[j] += vexp(row.get(j) - tm[j]);
    }
  }
}

// Pass 2 over vocab rows [v0, v1): value f * exp(logit - shift) per lane.
template <class Src>
__attribute__((always_inline)) inline void grad_t(const Src& src, int64_t lanes, int64_t v0, int64_t v1,
                                                 const float* shift, const float* f) {
  for (int64_t v = v0; v < v1; ++v) {
    const auto row = src.row(v);
#pragma omp simd
    for (int64_t j = 0; j < lanes; ++j) row.put(j, f[j] * vexp(row.get(j) - shift[j]));
  }
}

template <class Src>
struct Passes {
  void (*stats)(const Src&, int64_t, int64_t, int64_t, float*, float*, float*);
  void (*grad)(const Src&, int64_t, int64_t, int64_t, const float*, const float*);
};

#define MC_PASSES(NAME, SRC, ATTR)                                                                         \
  ATTR void NAME##_stats(const SRC& src, int64_t lanes, int64_t v0, int64_t v1, float* m, float* s,         \
                         float* tm) {                                                                      \
    stats_t(src, lanes, v0, v1, m, s, tm);                                                                 \
  }                                                                                                        \
  ATTR void NAME##_grad(const SRC& src, int64_t lanes, int64_t v0, int64_t v1, const float* sh,             \
                        const float* f) {                                                                  \
    grad_t(src, lanes, v0, v1, sh, f);                                                                     \
  }                                                                                                        \
  constexpr Passes<SRC> NAME{NAME##_stats, NAME##_grad};
MC_PASSES(kF32, F32Src, MC_CLONES)
MC_PASSES(kBf16, LowpSrc<Bf16>, )
MC_PASSES(kF16, LowpSrc<F16>, )
#if MC_HAVE_CLONES
MC_PASSES(kBf16Avx512, LowpSrc<Bf16>, MC_AVX512_F16C)
MC_PASSES(kF16Avx512, LowpSrc<F16>, MC_AVX512_F16C)
#endif

// lse, target logit and (if grad) g * (softmax - onehot) for every lane; g = gscale * scale.
template <class Src>
void run(const Passes<Src>& k, const Src& src, int64_t lanes, int64_t vocab, const int64_t* targets,
         const float* scale, float gscale, bool grad, float* lse, float* target_logit) {
  const int64_t parts = (vocab + kColPart - 1) / kColPart;
  std::unique_ptr<float[]> stats(new float[2 * parts * lanes]);  // per part: m (lanes), then s (lanes)
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    std::unique_ptr<float[]> tm(new float[lanes]);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t v0 = p * kColPart;
      k.stats(src, lanes, v0, std::min(vocab, v0 + kColPart), stats.get() + 2 * p * lanes,
              stats.get() + (2 * p + 1) * lanes, tm.get());
    }
  });
  std::unique_ptr<float[]> buf(new float[2 * lanes]);
  float *shift = buf.get(), *f = buf.get() + lanes;
  for (int64_t j = 0; j < lanes; ++j) {
    float m = kNegInf, s = 0.0f;
    for (int64_t p = 0; p < parts; ++p) m = std::max(m, stats[2 * p * lanes + j]);
    shift[j] = m == kNegInf ? 0.0f : m;
    for (int64_t p = 0; p < parts; ++p) s += stats[(2 * p + 1) * lanes + j] * vexp(stats[2 * p * lanes + j] - shift[j]);
    const int64_t t = targets[j];
    target_logit[j] = t >= 0 && t < vocab ? src.row(t).get(j) : 0.0f;
    lse[j] = m + std::log(s);
    f[j] = gscale * scale[j] / s;
  }
  if (!grad) return;
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t v0 = p * kColPart;
      k.grad(src, lanes, v0, std::min(vocab, v0 + kColPart), shift, f);
    }
  });
  for (int64_t j = 0; j < lanes; ++j) {  // the target entry: f * exp(logit - shift) - g, from the fp32 logit
    const int64_t t = targets[j];
    if (t >= 0 && t < vocab) src.row(t).put(j, f[j] * vexp(target_logit[j] - shift[j]) - gscale * scale[j]);
  }
}

}  // namespace

void full_cols(float* logits_t, int64_t rows, int64_t cols, const int64_t* targets, const float* scale, bool grad,
               float* lse, float* target_logit) {
  run(kF32, F32Src{logits_t, rows}, rows, cols, targets, scale, 1.0f, grad, lse, target_logit);
}

void lowp_cols(at::ScalarType dtype, void* hi, const void* res, const float* bias, int64_t rows, int64_t cols,
               const int64_t* targets, const float* scale, float gscale, bool grad, float* lse, float* target_logit) {
  TORCH_CHECK(dtype == at::kBFloat16 || dtype == at::kHalf, "lowp_cols: 16-bit dtype expected, got ", dtype);
  static const bool avx512 = have_avx512_f16c();
  (void)avx512;
  if (dtype == at::kBFloat16) {
    const LowpSrc<Bf16> src{static_cast<uint16_t*>(hi), static_cast<const uint16_t*>(res), bias, rows};
#if MC_HAVE_CLONES
    if (avx512) return run(kBf16Avx512, src, rows, cols, targets, scale, gscale, grad, lse, target_logit);
#endif
    return run(kBf16, src, rows, cols, targets, scale, gscale, grad, lse, target_logit);
  }
  using H = F16::raw;
  const LowpSrc<F16> src{static_cast<H*>(hi), static_cast<const H*>(res), bias, rows};
#if MC_HAVE_CLONES
  if (avx512) return run(kF16Avx512, src, rows, cols, targets, scale, gscale, grad, lse, target_logit);
#endif
  run(kF16, src, rows, cols, targets, scale, gscale, grad, lse, target_logit);
}

}  // namespace mindcore::cpu
