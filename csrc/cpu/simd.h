// Shared by the CPU kernels: per-ISA clone attributes, a vectorisable exp, 16-bit load/store.
#pragma once
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define MC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define MC_HAVE_CLONES 1
// target_clones cannot name avx512f + f16c together, and GCC 12 does not vectorise _Float16 under
// arch=sapphirerapids: 16-bit kernels get an explicit AVX-512 + F16C version, picked at run time.
#define MC_AVX512_F16C __attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma")))
#else
#define MC_CLONES
#define MC_HAVE_CLONES 0
#endif

namespace mindcore::cpu {

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

inline bool have_avx512_f16c() {
#if MC_HAVE_CLONES
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

}  // namespace mindcore::cpu
