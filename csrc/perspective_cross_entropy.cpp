// Schema of mindcore::perspective_cross_entropy and its device-generic chunked driver.
//
// The full (N, V) logits never exist. float32 inputs take one token-chunked pass with three GEMMs
// per chunk (logits, grad_hidden, grad_weight += G^T H); the grad_weight output is the fp32
// accumulator. bfloat16/float16 inputs take, where the device says its 16-bit GEMMs are fast
// (RowKernels::lowp_fast: CPUs with AMX / AVX512-BF16; CUDA for bf16), a token-chunked pass of
// 16-bit GEMMs with fp32-grade logits (rows_outer_lowp); elsewhere a vocab-blocked two-pass scheme
// in fp32 (stats pass, then recompute + gradient pass), where only a (block x d) slice of the weight
// and its gradient is ever held in fp32 (not a V x d copy). Token chunks are vocab-major (V, r) where the
// device supplies the column kernels (the CPU: its GEMMs write that layout faster), else row-major.
#include "perspective_cross_entropy.h"

#include <ATen/ATen.h>
#include <ATen/Config.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string_view>

#include "build_info.h"

namespace mindcore {
namespace {

// Logits materialised at once (fp32, or hi + res in 16 bits: 4 bytes each either way) unless
// MINDCORE_CHUNK_ELEMS says otherwise (trade memory for GEMM size and fewer grad_weight passes).
// Defaults keep the chunk under 0.1x eager's extra memory at Qwen-size heads (N = 2048, V = 152k):
// fp32 2^26 (256 MiB, 448 rows) vs eager's ~4 GiB; 16-bit 2^25 (128 MiB, 224 rows) vs eager's 1.5 GiB.
int64_t chunk_elems(int64_t fallback) {
  const char* env = std::getenv("MINDCORE_CHUNK_ELEMS");
  const int64_t v = env ? std::atoll(env) : 0;
  return v > 0 ? v : fallback;
}
constexpr int64_t kChunkElemsF32 = int64_t{1} << 26, kChunkElemsLowp = int64_t{1} << 25;
// GPUs: 4x the 16-bit chunk (hi + res = 512 MiB, ~1000 rows at Llama-3's V = 128k): 4x fewer
// grad_weight read-modify-write passes over V x d, within the 1 GB extra-memory goal there.
// Not yet tuned on hardware.
constexpr int64_t kChunkElemsLowpGpu = int64_t{1} << 27;

// Rows per token chunk: the nearest multiple of 32 (the CPU GEMMs, oneDNN/AMX and MKL, measured
// ~1.5x faster at 224 rows than at 220), at least one row.
int64_t chunk_rows(int64_t n, int64_t v, int64_t elems) {
  const int64_t raw = elems / std::max<int64_t>(v, 1);
  const int64_t rows = raw >= 32 ? (raw + 16) / 32 * 32 : std::max<int64_t>(raw, 1);
  return std::min(rows, n);
}
// 16-bit inputs without fast 16-bit GEMMs: largest weight (bytes as fp32) converted once per call for
// the one-pass scheme; above it, the two-pass vocab-blocked scheme (no V x d fp32 copy).
// MINDCORE_CPU_WEIGHT_COPY_MB overrides (0 = always two-pass).
int64_t weight_copy_bytes() {
  const char* env = std::getenv("MINDCORE_CPU_WEIGHT_COPY_MB");
  return (env ? std::atoll(env) : 1024) << 20;
}
// Narrowest vocab block of the two-pass scheme: keeps its GEMMs efficient for very large N.
constexpr int64_t kMinBlockCols = 4096;

constexpr const char* kOp = "perspective_cross_entropy: ";

void check_inputs(const at::Tensor& hidden, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  const at::Tensor& targets, const at::Tensor& path_ids, const at::Tensor& path_weights,
                  const at::Tensor& inertia_value, const at::Tensor& inertia_count, const at::Tensor& path_slots) {
  TORCH_CHECK(hidden.dim() == 2, kOp, "hidden must be (N, d), got shape ", hidden.sizes());
  const auto dt = hidden.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kBFloat16 || dt == at::kHalf, kOp, "hidden has dtype ", dt,
              "; use float32, bfloat16 or float16");
  const int64_t n = hidden.size(0), d = hidden.size(1);
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == d, kOp, "weight must be (V, d) with d = ", d,
              ", got shape ", weight.sizes());
  TORCH_CHECK(weight.scalar_type() == dt, kOp, "weight has dtype ", weight.scalar_type(), " but hidden has ",
              dt, "; cast both to one dtype");
  if (bias.has_value()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), kOp, "bias must be (V,) = (",
                weight.size(0), ",), got shape ", bias->sizes());
    TORCH_CHECK(bias->scalar_type() == dt, kOp, "bias has dtype ", bias->scalar_type(), "; cast it to ", dt);
  }
  for (auto [name, t] : {std::pair{"targets", &targets}, std::pair{"path_ids", &path_ids}}) {
    TORCH_CHECK(t->dim() == 1 && t->size(0) == n, kOp, name, " must be (N,) = (", n, ",), got shape ", t->sizes());
    TORCH_CHECK(t->scalar_type() == at::kLong, kOp, name, " has dtype ", t->scalar_type(), "; pass int64");
  }
  TORCH_CHECK(path_weights.dim() == 1 && path_weights.size(0) >= 1, kOp,
              "path_weights must be (P,) with P >= 1, got shape ", path_weights.sizes());
  TORCH_CHECK(at::isFloatingType(path_weights.scalar_type()), kOp, "path_weights has dtype ",
              path_weights.scalar_type(), "; pass floating-point weights");
  TORCH_CHECK(path_slots.dim() == 1 && path_slots.size(0) == path_weights.size(0) &&
                  path_slots.scalar_type() == at::kLong,
              kOp, "path_slots must be (P,) = (", path_weights.size(0), ",) int64 (-1 = untracked), got ",
              path_slots.sizes(), " ", path_slots.scalar_type());
  TORCH_CHECK(inertia_value.dim() == 1 && inertia_value.scalar_type() == at::kFloat, kOp,
              "inertia_value must be (S,) float32, got ", inertia_value.sizes(), " ", inertia_value.scalar_type());
  TORCH_CHECK(inertia_count.sizes() == inertia_value.sizes() && inertia_count.scalar_type() == at::kLong, kOp,
              "inertia_count must be (S,) int64 like inertia_value, got ", inertia_count.sizes(), " ",
              inertia_count.scalar_type());
  const auto dev = hidden.device();
  const std::pair<const char*, const at::Tensor*> all[] = {
      {"weight", &weight}, {"targets", &targets}, {"path_ids", &path_ids}, {"path_weights", &path_weights},
      {"inertia_value", &inertia_value}, {"inertia_count", &inertia_count}, {"path_slots", &path_slots}};
  for (const auto& [name, t] : all) {
    TORCH_CHECK(t->device() == dev, kOp, name, " is on ", t->device(), " but hidden is on ", dev,
                "; move all tensors to one device");
  }
  TORCH_CHECK(!bias.has_value() || bias->device() == dev, kOp, "bias is on ", bias->device(),
              " but hidden is on ", dev);
}

float* fptr(const at::Tensor& t, int64_t offset = 0) { return t.data_ptr<float>() + offset; }
const int64_t* lptr(const at::Tensor& t, int64_t offset = 0) { return t.data_ptr<int64_t>() + offset; }

struct Grads {
  at::Tensor hidden, weight, bias;
};

// Which gradients to form (output_mask): a GEMM is skipped when nobody reads its result.
struct Need {
  bool hidden, weight, bias;
  bool any() const { return hidden || weight || bias; }
};

// Gradient dtype: the input's, but float32 for float16 (mindcore.reference...grad_dtype): the loss
// scale is applied in the backward, before the gradient's one rounding to float16.
at::ScalarType grad_dtype(at::ScalarType dt) { return dt == at::kHalf ? at::kFloat : dt; }

// grad_weight (fp32, V x d) += alpha * G^T H from 16-bit GEMMs, one vocab slice at a time: each
// slice's product is rounded to 16 bits once (pre-scaled, so in range) and added in fp32. Bounded
// temporary (slice x d) instead of a second V x d, and any torch (no out_dtype GEMM needed).
constexpr int64_t kSliceRows = 8192;
void add_gemm_f32(at::Tensor& acc, const at::Tensor& Gt, const at::Tensor& Hc, double alpha) {
  const int64_t v = Gt.size(0);
  at::Tensor tmp = at::empty({std::min(kSliceRows, v), Hc.size(1)}, Hc.options());
  for (int64_t v0 = 0; v0 < v; v0 += kSliceRows) {
    const int64_t c = std::min(kSliceRows, v - v0);
    at::Tensor t = tmp.narrow(0, 0, c);
    at::mm_out(t, Gt.narrow(0, v0, c), Hc);
    acc.narrow(0, v0, c).add_(t, alpha);
  }
}

// Vocab-major chunks where the device has the kernel, unless MINDCORE_LOGITS_LAYOUT=rows (A/B runs).
bool vocab_major(bool has_kernel) {
  const char* env = std::getenv("MINDCORE_LOGITS_LAYOUT");
  return has_kernel && !(env && std::string_view(env) == "rows");
}

// float32: token chunks of whole rows; one pass, up to three GEMMs per chunk. L is the chunk's (r, V)
// logits as a view: row-major, or the transpose of a vocab-major buffer (at::mm writes either
// layout directly; the GEMM code below is the same for both).
Grads rows_outer(const RowKernels& k, const at::Tensor& H, const at::Tensor& W, const at::Tensor& B,
                 const at::Tensor& tgt, const at::Tensor& scale, const at::Tensor& lse,
                 const at::Tensor& tlogit, const Need& need) {
  const int64_t n = H.size(0), v = W.size(0);
  const int64_t rows = chunk_rows(n, v, chunk_elems(kChunkElemsF32));
  const bool vmajor = vocab_major(k.full_cols != nullptr);
  const bool grad = need.any();
  at::Tensor buf = at::empty({rows * v}, H.options());
  Grads g;
  if (need.hidden) g.hidden = at::empty_like(H);
  if (need.weight) g.weight = at::empty_like(W);  // the first chunk writes it (beta = 0), later ones accumulate
  if (need.bias) g.bias = at::zeros_like(B);
  for (int64_t s = 0; s < n; s += rows) {
    const int64_t r = std::min(rows, n - s);
    const at::Tensor Hc = H.narrow(0, s, r);
    const at::Tensor flat = buf.narrow(0, 0, r * v);
    at::Tensor L = vmajor ? flat.view({v, r}).t() : flat.view({r, v});
    if (B.defined()) at::addmm_out(L, B, Hc, W.t()); else at::mm_out(L, Hc, W.t());
    (vmajor ? k.full_cols : k.full_rows)(fptr(flat), r, v, lptr(tgt, s), fptr(scale, s), grad,
                                         fptr(lse, s), fptr(tlogit, s));
    if (!grad) continue;
    if (need.hidden) {
      at::Tensor gHc = g.hidden.narrow(0, s, r);
      at::mm_out(gHc, L, W);
    }
    if (need.weight) {
      if (s == 0) at::mm_out(g.weight, L.t(), Hc); else g.weight.addmm_(L.t(), Hc);
    }
    if (need.bias) g.bias.add_(L.sum(0));
  }
  return g;
}

// bfloat16 / float16 where 16-bit GEMMs are fast: token chunks of whole rows (row- or vocab-major
// views, as in rows_outer), one pass, 16-bit GEMMs. Logits keep fp32 grade without an fp32 GEMM:
// hi = round(H W^T), then res = round(H W^T - hi) (addmm with beta = -1 accumulates in fp32 and
// rounds once), and the row kernel softmaxes hi + res in fp32. The gradient is rounded to the input
// dtype once, pre-scaled by a power of two so float16 does not flush small probabilities; the grad
// GEMMs undo it via alpha. grad_weight accumulates in fp32 across chunks (add_gemm_f32; V x d x 4
// bytes, the cost of not rounding the running sum once per chunk), a single chunk writes it directly.
Grads rows_outer_lowp(const RowKernels& k, const at::Tensor& H, const at::Tensor& W, const at::Tensor& B,
                      const at::Tensor& tgt, const at::Tensor& scale, const at::Tensor& lse,
                      const at::Tensor& tlogit, const Need& need) {
  const int64_t n = H.size(0), v = W.size(0);
  const auto dt = H.scalar_type();
  const bool half = dt == at::kHalf;  // its gradients come back in fp32
  const auto f32 = H.options().dtype(at::kFloat);
  const int64_t rows = chunk_rows(n, v, chunk_elems(H.is_cpu() ? kChunkElemsLowp : kChunkElemsLowpGpu));
  const bool vmajor = vocab_major(k.lowp_cols != nullptr);
  const bool grad = need.any();
  const bool acc32 = need.weight && (half || rows < n);
  at::Tensor hi_buf = at::empty({rows * v}, H.options()), res_buf = at::empty({rows * v}, H.options());
  const at::Tensor B32 = B.defined() ? B.to(at::kFloat).contiguous() : at::Tensor();
  const at::Tensor Wt = W.t();
  Grads g;
  at::Tensor gB32, gW32;
  if (need.hidden) g.hidden = half ? at::empty(H.sizes(), f32) : at::empty_like(H);
  if (need.weight) {
    if (acc32) gW32 = at::zeros(W.sizes(), f32); else g.weight = at::empty_like(W);
  }
  if (need.bias) gB32 = at::zeros({v}, f32);
  for (int64_t s = 0; s < n; s += rows) {
    const int64_t r = std::min(rows, n - s);
    const at::Tensor Hc = H.narrow(0, s, r);
    const at::Tensor hi_flat = hi_buf.narrow(0, 0, r * v), res_flat = res_buf.narrow(0, 0, r * v);
    at::Tensor hi = vmajor ? hi_flat.view({v, r}).t() : hi_flat.view({r, v});
    at::Tensor res = vmajor ? res_flat.view({v, r}).t() : res_flat.view({r, v});
    at::mm_out(hi, Hc, Wt);
    at::addmm_out(res, hi, Hc, Wt, /*beta=*/-1, /*alpha=*/1);
    // Power-of-two pre-scale of the gradient (float16 range). Read on the CPU only, where it is a plain
    // memory read; elsewhere it would be a host sync, and other devices take bfloat16 only here
    // (fp32's exponent range: no pre-scale needed).
    float gscale = 1.0f;
    if (H.is_cpu()) {
      float smax = 0.0f;
      for (const float* p = fptr(scale, s); p != fptr(scale, s + r); ++p) smax = std::max(smax, *p);
      gscale = std::isfinite(smax) && smax > 0 ? std::ldexp(1.0f, -std::ilogb(smax)) : 1.0f;
    }
    (vmajor ? k.lowp_cols : k.lowp_rows)(dt, hi.data_ptr(), res.data_ptr(), B.defined() ? fptr(B32) : nullptr, r,
                                         v, lptr(tgt, s), fptr(scale, s), gscale, grad, fptr(lse, s),
                                         fptr(tlogit, s));
    if (!grad) continue;
    const double unscale = 1.0 / gscale;
    if (need.hidden) {
      at::Tensor gHc = g.hidden.narrow(0, s, r);
      if (half) gHc.copy_(at::mm(hi, W)).mul_(unscale);  // pre-scaled fp16 product, unscaled in fp32
      else at::addmm_out(gHc, gHc, hi, W, /*beta=*/0, unscale);
    }
    if (need.weight) {
      if (acc32) add_gemm_f32(gW32, hi.t(), Hc, unscale);
      else at::addmm_out(g.weight, g.weight, hi.t(), Hc, /*beta=*/0, unscale);
    }
    if (need.bias) gB32.add_(at::sum(hi, {0}, false, at::kFloat), unscale);
  }
  if (acc32) g.weight = half ? gW32 : gW32.to(dt);
  if (need.bias) g.bias = half ? gB32 : gB32.to(dt);
  return g;
}

// bfloat16 / float16: vocab blocks converted to fp32 one at a time; pass 1 online softmax stats,
// pass 2 recomputes each block's logits and forms the gradients asked for, all in fp32.
Grads vocab_outer(const RowKernels& k, const at::Tensor& H, const at::Tensor& W, const at::Tensor& B,
                  const at::Tensor& tgt, const at::Tensor& scale, const at::Tensor& lse,
                  const at::Tensor& tlogit, const Need& need) {
  const int64_t n = H.size(0), d = H.size(1), v = W.size(0);
  const auto f32 = H.options().dtype(at::kFloat);
  const auto gdt = grad_dtype(H.scalar_type());
  const int64_t budget = chunk_elems(kChunkElemsLowp);
  const int64_t vb = std::min(v, std::max(kMinBlockCols, budget / n));
  const int64_t rows = std::clamp<int64_t>(budget / vb, 1, n);
  const at::Tensor H32 = H.to(at::kFloat);
  at::Tensor Wb = at::empty({vb, d}, f32), Bb = B.defined() ? at::empty({vb}, f32) : at::Tensor();
  at::Tensor buf = at::empty({rows * vb}, f32);

  auto load_block = [&](int64_t v0, int64_t c) {
    Wb.narrow(0, 0, c).copy_(W.narrow(0, v0, c));
    if (B.defined()) Bb.narrow(0, 0, c).copy_(B.narrow(0, v0, c));
  };
  auto logits = [&](int64_t s, int64_t r, int64_t c) {  // (r, c) fp32, contiguous, leading dim c
    at::Tensor L = buf.narrow(0, 0, r * c).view({r, c});
    if (B.defined()) at::addmm_out(L, Bb.narrow(0, 0, c), H32.narrow(0, s, r), Wb.narrow(0, 0, c).t());
    else at::mm_out(L, H32.narrow(0, s, r), Wb.narrow(0, 0, c).t());
    return L;
  };

  at::Tensor row_max = at::full({n}, -std::numeric_limits<float>::infinity(), f32), row_sum = at::zeros({n}, f32);
  for (int64_t v0 = 0; v0 < v; v0 += vb) {
    const int64_t c = std::min(vb, v - v0);
    load_block(v0, c);
    for (int64_t s = 0; s < n; s += rows) {
      const int64_t r = std::min(rows, n - s);
      k.block_stats(fptr(logits(s, r, c)), r, c, v0, lptr(tgt, s), fptr(row_max, s), fptr(row_sum, s),
                    fptr(tlogit, s));
    }
  }
  at::Tensor lse_out = lse;  // caller-owned buffer, filled in place
  at::add_out(lse_out, row_max, row_sum.log());
  if (!need.any()) return {};

  Grads g;
  at::Tensor gH32 = need.hidden ? at::empty({n, d}, f32) : at::Tensor();
  at::Tensor gWb = need.weight ? at::empty({vb, d}, f32) : at::Tensor();
  at::Tensor gBb = need.bias ? at::empty({vb}, f32) : at::Tensor();
  if (need.weight) g.weight = at::empty(W.sizes(), W.options().dtype(gdt));
  if (need.bias) g.bias = at::empty(B.sizes(), B.options().dtype(gdt));
  for (int64_t v0 = 0; v0 < v; v0 += vb) {
    const int64_t c = std::min(vb, v - v0);
    load_block(v0, c);
    for (int64_t s = 0; s < n; s += rows) {
      const int64_t r = std::min(rows, n - s);
      at::Tensor L = logits(s, r, c);
      k.block_grad(fptr(L), r, c, v0, lptr(tgt, s), fptr(lse, s), fptr(scale, s));
      if (need.hidden) {
        at::Tensor gHc = gH32.narrow(0, s, r);
        if (v0 == 0) at::mm_out(gHc, L, Wb.narrow(0, 0, c)); else gHc.addmm_(L, Wb.narrow(0, 0, c));
      }
      if (need.weight) {
        at::Tensor gWc = gWb.narrow(0, 0, c);
        if (s == 0) at::mm_out(gWc, L.t(), H32.narrow(0, s, r)); else gWc.addmm_(L.t(), H32.narrow(0, s, r));
      }
      if (need.bias) {
        at::Tensor gBc = gBb.narrow(0, 0, c);
        if (s == 0) at::sum_out(gBc, L, {0}); else gBc.add_(L.sum(0));
      }
    }
    if (need.weight) g.weight.narrow(0, v0, c).copy_(gWb.narrow(0, 0, c));
    if (need.bias) g.bias.narrow(0, v0, c).copy_(gBb.narrow(0, 0, c));
  }
  if (need.hidden) g.hidden = gH32.to(gdt);
  return g;
}

// Mirrors mindcore.reference.perspective_cross_entropy.inertia_update (functional).
std::pair<at::Tensor, at::Tensor> inertia_update(const at::Tensor& value, const at::Tensor& count,
                                                 const at::Tensor& path_sum, const at::Tensor& path_tokens,
                                                 const at::Tensor& path_slots, double momentum) {
  const int64_t num_slots = value.size(0);
  if (num_slots == 0) return {value.clone(), count.clone()};
  const at::Tensor tracked = path_slots.ge(0).logical_and(path_tokens.gt(0));
  const at::Tensor slot = at::where(tracked, path_slots, 0);
  const at::Tensor slot_sum = at::zeros({num_slots}, value.options()).index_add_(0, slot, at::where(tracked, path_sum, 0));
  const at::Tensor slot_tok = at::zeros({num_slots}, count.options()).index_add_(0, slot, at::where(tracked, path_tokens, 0));
  const at::Tensor slot_loss = slot_sum / slot_tok.clamp_min(1).to(at::kFloat);
  const at::Tensor upd = slot_tok.gt(0).logical_and(at::isfinite(slot_loss));
  const at::Tensor blended = at::where(count.eq(0), slot_loss, value * momentum + slot_loss * (1.0 - momentum));
  return {at::where(upd, blended, value), count + upd.to(count.scalar_type())};
}

}  // namespace

PCEOutputs perspective_cross_entropy(const RowKernels& kernels, const at::Tensor& hidden,
                                     const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                     const at::Tensor& targets, const at::Tensor& path_ids,
                                     const at::Tensor& path_weights, const at::Tensor& inertia_value,
                                     const at::Tensor& inertia_count, const at::Tensor& path_slots,
                                     int64_t ignore_index, double momentum, std::array<bool, 3> output_mask) {
  check_inputs(hidden, weight, bias, targets, path_ids, path_weights, inertia_value, inertia_count, path_slots);
  const at::Tensor H = hidden.contiguous(), W = weight.contiguous();
  const at::Tensor B = bias.has_value() ? bias->contiguous() : at::Tensor();
  const at::Tensor tgt = targets.contiguous(), pid = path_ids.contiguous();
  const int64_t n = H.size(0), p = path_weights.size(0);
  const auto f32 = H.options().dtype(at::kFloat);

  // Tokens per path first: each token's gradient scale is w[p] / n[p] (0 when ignored).
  const at::Tensor valid = tgt.ne(ignore_index);
  const at::Tensor path_tokens = at::zeros({p}, tgt.options()).index_add_(0, pid, valid.to(at::kLong));
  const at::Tensor w32 = path_weights.to(at::kFloat);
  const at::Tensor per_path = w32 / path_tokens.clamp_min(1).to(at::kFloat);
  const at::Tensor scale = at::where(valid, per_path.index_select(0, pid), 0).contiguous();
  const at::Tensor lse = at::empty({n}, f32), tlogit = at::zeros({n}, f32);

  const Need need{output_mask[0], output_mask[1], output_mask[2] && B.defined()};
  Grads g;
  if (n == 0) {
    const auto gopt = H.options().dtype(grad_dtype(H.scalar_type()));
    if (need.hidden) g.hidden = at::empty(H.sizes(), gopt);
    if (need.weight) g.weight = at::zeros(W.sizes(), gopt);
    if (need.bias) g.bias = at::zeros(B.sizes(), gopt);
  } else if (H.scalar_type() == at::kFloat) {
    g = rows_outer(kernels, H, W, B, tgt, scale, lse, tlogit, need);
  } else if (kernels.lowp_rows && kernels.lowp_fast && kernels.lowp_fast(H.scalar_type())) {
    g = rows_outer_lowp(kernels, H, W, B, tgt, scale, lse, tlogit, need);
  } else if (W.numel() * 4 <= weight_copy_bytes()) {
    // No fast 16-bit GEMMs, a weight small enough to hold once in fp32: the fp32 one-pass scheme on
    // converted copies (3 GEMMs, like fp32 inputs), instead of the two-pass one (4 GEMMs + per-block
    // conversions). Costs the fp32 weight copy (and grad_weight's fp32 accumulator) in memory.
    const auto gdt = grad_dtype(H.scalar_type());
    g = rows_outer(kernels, H.to(at::kFloat), W.to(at::kFloat), B.defined() ? B.to(at::kFloat) : B, tgt, scale,
                   lse, tlogit, need);
    for (at::Tensor* t : {&g.hidden, &g.weight, &g.bias}) {
      if (t->defined()) *t = t->to(gdt);
    }
  } else {
    g = vocab_outer(kernels, H, W, B, tgt, scale, lse, tlogit, need);
  }

  const at::Tensor ce = at::where(valid, lse - tlogit, 0);
  const at::Tensor path_sum = at::zeros({p}, f32).index_add_(0, pid, ce);
  const at::Tensor path_loss = at::where(path_tokens.gt(0), path_sum / path_tokens.clamp_min(1).to(at::kFloat), 0);
  const at::Tensor loss = (w32 * path_loss).sum();
  auto [new_value, new_count] = inertia_update(inertia_value, inertia_count, path_sum, path_tokens,
                                               path_slots, momentum);
  // Not asked for: empty tensors in hidden's dtype (matches fake_outputs).
  auto or_none = [&](const at::Tensor& t) { return t.defined() ? t : H.new_empty({0}); };
  return {loss, path_loss, path_tokens, new_value, new_count, or_none(g.hidden), or_none(g.weight), or_none(g.bias)};
}

const char* parallel_backend() {
#if AT_PARALLEL_OPENMP
  return "openmp (at::parallel_for)";
#elif AT_PARALLEL_NATIVE
  return "native thread pool (at::parallel_for)";
#else
  return "at::parallel_for";
#endif
}

}  // namespace mindcore

TORCH_LIBRARY(mindcore, m) {
  m.def(
      "perspective_cross_entropy(Tensor hidden, Tensor weight, Tensor? bias, Tensor targets, Tensor path_ids, "
      "Tensor path_weights, Tensor inertia_value, Tensor inertia_count, Tensor path_slots, int ignore_index, "
      "float momentum, bool[3] output_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}
