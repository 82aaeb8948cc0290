// sparsek CUDA kernels for LSH attention (../shared/docs/attention-spec.md section 3; the CPU
// reference is src/attention/lsh/lsh_reference.h, the host side src/attention/lsh/lsh_cuda.h).
// Declarations only (kernels in lsh_attention.cu). Plain types only.
//
// Legend: B batch, H heads, T time, D head dim (64 or 128), BH = B * H rows, R rounds (n_hashes,
// or 1 when T <= chunk), NB buckets per round (even), E = R * T entries per row, entry id
// e = r * T + j, chunk entries per chunk (T when T <= chunk), NC = ceil(E / chunk) chunks.
//   q, v:      (B, H, T, D) bf16 or f32 with strides (sb, sh, st) and a contiguous last dim.
//   rot:       (H, D, R, NB / 2) f32 contiguous (only read when T > chunk).
//   kscale:    (BH, T) f32: s_j / sqrt(D), s_j = (mean_d q_jd^2 + 1e-6)^-1/2, so k_j = q_j kscale_j.
//   buckets:   (BH, R, T) int32 in [0, NB) (when T > chunk; not written otherwise).
//   order:     (BH, E) int32 entry ids in sorted order (stable by r * NB + bucket; the identity when
//              T <= chunk).
//   o_rounds:  (BH, E, D) f32 or bf16 (sk_lsh_o_rounds_bf16) each entry's softmax output, indexed
//              by entry id (forward scratch).
//   lse:       (BH, E) f32 each entry's log-sum-exp (natural log).
//   out:       (B, H, T, D) contiguous, q's dtype.
// Backward scratch: w (BH, E) f32 the merge weights, gout (BH, T) f32 dout_i . out_i (written by the
// prep pass; unused by the fused tensor-core backward, which computes both per block: may be null
// when sk_lsh_backward_partials_bf16(p)),
// dq_e, dk_e, dv_e (BH, E, D) f32 or bf16 per-entry partial gradients (each written exactly once: no
// atomics, so the backward is bitwise deterministic); dq, dv (B, H, T, D) contiguous, q's dtype.
// Returns an SkKernelStatus (0 = ok).
#pragma once

#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/common/kernel_dtype.h"

struct SkLshParams {
  const void* q;
  const void* v;
  int dtype;                       // SK_KDT_BF16 or SK_KDT_F32 (q and v alike)
  int64_t q_sb, q_sh, q_st;        // element strides of q (batch, head, time)
  int64_t v_sb, v_sh, v_st;        // of v
  int B, H, T, D;
  int rounds;                      // R (1 when T <= chunk)
  int n_buckets;                   // NB (ignored when T <= chunk)
  int chunk;                       // entries per chunk (T when T <= chunk)
  int look_back;                   // 1: one chunk of cyclic look-back (T > chunk), 0: none
  const float* rot;                // (H, D, R, NB / 2) or null when T <= chunk
  int impl;                        // chunk kernels: 0 auto (tensor cores when they take the inputs:
                                   // bf16, D 64/128, 16-byte aligned rows; else SIMT), 1 SIMT,
                                   // 2 tensor cores (SK_KERNEL_BAD_ARG when they do not take them;
                                   // the fused one-kernel backward when chunk <= 128), 3 tensor
                                   // cores v1 (two-kernel backward: query side, key side)
};

#ifdef __cplusplus
extern "C" {
#endif

// 1 when the chunk kernels take head dim D (64 and 128).
int sk_lsh_supports_head_dim(int D);

// The chunk kernels p->impl selects: 1 SIMT, 2 tensor cores, 3 tensor cores v1, -1 none (impl 2
// or 3 asked for but not possible).
int sk_lsh_chunk_impl(const SkLshParams* p);

// Bytes of temporary storage the sort of sk_cuda_lsh_layout needs (0 when T <= chunk).
int64_t sk_lsh_sort_temp_bytes(const SkLshParams* p);

// Key scales, buckets (T > chunk) and the sorted order. sort_keys/sort_keys_out (BH * E uint32)
// and sort_vals (BH * E int32) are scratch; temp has sk_lsh_sort_temp_bytes(p) bytes.
int sk_cuda_lsh_layout(const SkLshParams* p, float* kscale, int32_t* buckets, uint32_t* sort_keys,
                       uint32_t* sort_keys_out, int32_t* sort_vals, void* temp, int64_t temp_bytes,
                       int32_t* order, cudaStream_t s);

// Key scales (BH, T) and SIMT fp32 buckets (BH, R, T) of the p->T positions of q, without the sort
// (the incremental decode hashes its new token with it; lsh_decode.h). Needs look_back = 1 and the
// rotations; keys and vals (BH * R * T) are scratch.
int sk_cuda_lsh_hash_rows(const SkLshParams* p, float* kscale, int32_t* buckets, uint32_t* keys, int32_t* vals,
                          cudaStream_t s);

// 1 when the forward writes o_rounds in bf16 (the tensor-core forward v2), 0 when in f32.
int sk_lsh_o_rounds_bf16(const SkLshParams* p);

// Chunked attention of every entry (o_rounds in bf16 or f32 as sk_lsh_o_rounds_bf16 says, lse) and
// the merge over rounds (out). o_rounds is scratch: the backward does not read it.
int sk_cuda_lsh_forward(const SkLshParams* p, const float* kscale, const int32_t* order, void* o_rounds, float* lse,
                        void* out, cudaStream_t s);

// Partial gradients per key entry the backward writes: 2 (dk2_e, dv2_e needed: the fused
// tensor-core backward with look-back) or 1.
int sk_lsh_backward_partials(const SkLshParams* p);

// 1 when the backward's per-entry partials (dq_e, dk_e, dv_e, dk2_e, dv2_e) are bf16 (the fused
// tensor-core backward), 0 when they are f32.
int sk_lsh_backward_partials_bf16(const SkLshParams* p);

// Gradients of q and v from dout (B, H, T, D) contiguous in q's dtype, recomputing the softmax
// from lse; out is the forward's merged output (B, H, T, D) in q's dtype (gout_i = dout_i . out_i;
// o_rounds is not needed after the forward). Scratch and outputs as in the legend, except that the partials dq_e, dk_e,
// dv_e and dk2_e, dv2_e (the second per-key partials; may be null when
// sk_lsh_backward_partials(p) == 1) are (BH, E, D) in bf16 or f32 as sk_lsh_backward_partials_bf16 says.
int sk_cuda_lsh_backward(const SkLshParams* p, const float* kscale, const int32_t* order, const void* out,
                         const float* lse, const void* dout, float* w, float* gout, void* dq_e, void* dk_e,
                         void* dv_e, void* dk2_e, void* dv2_e, void* dq, void* dv, cudaStream_t s);

// Per-phase timing for benchmarks (not thread-safe; one stream): while enabled, the launchers
// record a CUDA event after each phase; sk_lsh_phase_read waits for them and writes
// SK_LSH_PHASES times in ms (0 for phases not run since the last read or enable), each from the
// previous recorded mark: [0] key scales + hash (or the identity order), [1] sort, [2] forward
// chunk kernel(s), [3] merge, [4] backward prep (w, gout; empty with the fused backward), [5] backward chunk kernel(s),
// [6] backward final (sum of partials, key-normalisation backward). Host time between phases
// (allocations) lands in the next phase.
#define SK_LSH_PHASES 7
int sk_lsh_phase_timing(int on);
int sk_lsh_phase_read(float* ms);

#ifdef __cplusplus
}
#endif
