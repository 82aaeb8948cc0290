// Host side of the fused CUDA attention (flash_attention.h): argument checks, output allocation
// in the (B, T, H, D) layout, and the calls into kernels/attention/flash_*.cu.
#include "attention/flash_attention.h"

#include <algorithm>

#include "attention/cuda_attention_args.h"
#include "util/check.h"
#include "util/env.h"

#ifdef SPARSEK_HAS_CUDA
#include "backend/cuda_context.h"
#include "backend/cuda_device.h"
#include "kernels/attention/flash_attention.h"
#endif

namespace sk::attention {

bool flash_attention_supported(const Tensor& q) { return fused_attention_takes(q); }

#ifdef SPARSEK_HAS_CUDA
namespace {

constexpr const char* kOp = "flash attention";

SkFlashParams params_of(const Tensor& q, const Tensor& k, const Tensor& v, CausalWindow mask) {
  check_fused_attention_q(q, kOp);
  return attention_params(q, k, v, mask.window, kOp);
}

// SPARSEK_FLASH_FWD picks the forward kernel (SkFlashParams::forward_kernel): unset or "auto" (wgmma
// on compute capability 9.0, else mma.sync), "mma", or "wgmma" (flash_forward_sm90.cu: compute
// capability 9.0 only).
int forward_kernel_from_env() {
  return util::env_choice("SPARSEK_FLASH_FWD", {"auto", "mma", "wgmma"});
}

// SPARSEK_FLASH_EXP2 picks the flash kernels' softmax exp2 (SkFlashParams::exp2_ftz): unset or
// "ftz" (one ex2.approx.ftz instruction, no denormal range check: the default since measured on an
// H200, 2026-12-03, docs/perf-notes.md), "accurate" (exp2f). The wgmma backward's non-default
// schedules ignore it (exp2f).
int exp2_ftz_from_env() { return util::env_choice("SPARSEK_FLASH_EXP2", {"ftz", "accurate"}) == 0 ? 1 : 0; }

// A (B, T, H, D) buffer seen as (B, H, T, D).
Tensor bthd_as_bhtd(const Tensor& buf) { return buf.transpose(1, 2); }

}  // namespace
#endif

AttentionForward flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, CausalWindow mask) {
#ifdef SPARSEK_HAS_CUDA
  SkFlashParams p = params_of(q, k, v, mask);
  p.forward_kernel = forward_kernel_from_env();
  p.exp2_ftz = exp2_ftz_from_env();
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  check_wgmma_choice("SPARSEK_FLASH_FWD", p.forward_kernel, D, q.device().index, /*wgmma*/ 2);
  cuda::set_device(q.device().index);
  Tensor out = Tensor::empty({B, T, H, D}, DType::BF16, q.device());
  Tensor lse = Tensor::empty({B, H, T}, DType::F32, q.device());
  SK_KERNEL_CHECK(sk_cuda_flash_forward(&p, out.data_ptr(), lse.data<float>(), cuda::stream()));
  return AttentionForward{bthd_as_bhtd(out), lse};
#else
  (void)q, (void)k, (void)v, (void)mask;
  SK_FAIL("flash attention: this build has no CUDA backend");
#endif
}

WgmmaForwardDump wgmma_forward_dump(const Tensor& q, const Tensor& k, const Tensor& v, CausalWindow mask,
                                    int64_t block) {
#ifdef SPARSEK_HAS_CUDA
  SkFlashParams p = params_of(q, k, v, mask);
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  check_wgmma_choice("wgmma_forward_dump", 2, D, q.device().index);
  const int64_t blocks = (T + 127) / 128;
  SK_CHECK(block >= 0 && block < blocks, "wgmma_forward_dump: block ", block, " out of range [0, ", blocks, ")");
  // The block's key tiles, as the kernel walks them.
  const int64_t m0 = block * 128, m_last = std::min(m0 + 128, T) - 1;
  const int64_t key_lo = mask.window > 0 ? std::max<int64_t>(0, m0 - mask.window + 1) : 0;
  const int64_t first = key_lo / 64, tiles = m_last / 64 + 1 - first;
  cuda::set_device(q.device().index);
  Tensor out = Tensor::empty({B, T, H, D}, DType::BF16, q.device());
  Tensor lse = Tensor::empty({B, H, T}, DType::F32, q.device());
  Tensor q_tile = Tensor::empty({128, 64}, DType::F32, q.device());
  Tensor k_tiles = Tensor::empty({tiles, 64, 64}, DType::F32, q.device());
  Tensor s_tiles = Tensor::empty({tiles, 128, 64}, DType::F32, q.device());
  const SkFlashForwardDump dump{q_tile.data<float>(), k_tiles.data<float>(), s_tiles.data<float>(), static_cast<int>(block)};
  SK_KERNEL_CHECK(sk_cuda_flash_forward_sm90_dump(&p, out.data_ptr(), lse.data<float>(), dump, cuda::stream()));
  return WgmmaForwardDump{AttentionForward{bthd_as_bhtd(out), lse}, q_tile.cpu(), k_tiles.cpu(), s_tiles.cpu(), first};
#else
  (void)q, (void)k, (void)v, (void)mask, (void)block;
  SK_FAIL("wgmma_forward_dump: this build has no CUDA backend");
#endif
}

namespace {

#ifdef SPARSEK_HAS_CUDA
// Runs the backward kernels; dq, dk, dv point at (B, T, H, D) rows grad_row_stride elements apart.
void run_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v, const AttentionForward& fwd,
                  CausalWindow mask, void* dq, void* dk, void* dv, int64_t grad_row_stride) {
  SkFlashParams p = params_of(q, k, v, mask);
  p.grad_row_stride = grad_row_stride;
  p.backward_kernel = flash_backward_kernel_from_env();
  p.exp2_ftz = exp2_ftz_from_env();
  check_attention_input(dout, q, kOp, "dout");
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  check_wgmma_choice("SPARSEK_FLASH_BWD", p.backward_kernel, D, q.device().index, /*wgmma_pipelined*/ 4);
  // The forward's out is a (B, H, T, D) view of a contiguous (B, T, H, D) buffer.
  const Tensor out_bthd = fwd.out.transpose(1, 2);
  SK_CHECK(out_bthd.is_contiguous() && out_bthd.dtype() == DType::BF16,
           "flash attention backward: fwd.out must come from flash_attention_forward");
  SK_CHECK(fwd.lse.is_contiguous() && fwd.lse.dtype() == DType::F32 && fwd.lse.shape() == Shape({B, H, T}),
           "flash attention backward: fwd.lse must be (B, H, T) f32");
  cuda::set_device(q.device().index);
  Tensor delta = Tensor::empty({B, H, T}, DType::F32, q.device());
  Tensor dq_accum = Tensor::empty({B, T, H, D}, DType::F32, q.device());
  SK_KERNEL_CHECK(sk_cuda_flash_backward(&p, dout.data_ptr(), attention_strides(dout, kOp, "dout"), out_bthd.data_ptr(),
                                         fwd.lse.data<float>(), dq, dk, dv, delta.data<float>(),
                                         dq_accum.data<float>(), cuda::stream()));
}
#endif

}  // namespace

AttentionGrads flash_attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                        const AttentionForward& fwd, CausalWindow mask) {
#ifdef SPARSEK_HAS_CUDA
  check_fused_attention_q(q, kOp);
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  Tensor dq = Tensor::empty({B, T, H, D}, DType::BF16, q.device());
  Tensor dk = Tensor::empty({B, T, H, D}, DType::BF16, q.device());
  Tensor dv = Tensor::empty({B, T, H, D}, DType::BF16, q.device());
  run_backward(dout, q, k, v, fwd, mask, dq.data_ptr(), dk.data_ptr(), dv.data_ptr(), 0);
  return AttentionGrads{bthd_as_bhtd(dq), bthd_as_bhtd(dk), bthd_as_bhtd(dv)};
#else
  (void)dout, (void)q, (void)k, (void)v, (void)fwd, (void)mask;
  SK_FAIL("flash attention: this build has no CUDA backend");
#endif
}

void flash_attention_backward_packed(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                     const AttentionForward& fwd, CausalWindow mask, Tensor& dqkv) {
#ifdef SPARSEK_HAS_CUDA
  check_fused_attention_q(q, kOp);
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  SK_CHECK(dqkv.defined() && dqkv.shape() == Shape({B, T, 3, H, D}) && dqkv.is_contiguous() &&
               dqkv.dtype() == DType::BF16 && dqkv.device() == q.device(),
           "flash attention backward: dqkv must be a contiguous (B, T, 3, H, D) = ", shape_str(Shape({B, T, 3, H, D})),
           " bf16 tensor on ", q.device().str(), ", got ", dqkv.str());
  auto* base = static_cast<char*>(dqkv.data_ptr());
  const int64_t part_bytes = H * D * int64_t(sizeof(uint16_t));
  run_backward(dout, q, k, v, fwd, mask, base, base + part_bytes, base + 2 * part_bytes, 3 * H * D);
#else
  (void)dout, (void)q, (void)k, (void)v, (void)fwd, (void)mask, (void)dqkv;
  SK_FAIL("flash attention: this build has no CUDA backend");
#endif
}

}  // namespace sk::attention
