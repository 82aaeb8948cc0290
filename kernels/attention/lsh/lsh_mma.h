// Tensor-core (mma.sync m16n8k16, bf16 in, fp32 accumulate) chunk kernels of LSH attention, called
// by the launchers in lsh_attention.cu when SkLshParams::impl allows (internal; plain types only).
// Same inputs and outputs as the SIMT chunk kernels there (lsh_attention.h legend).
#pragma once

#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/attention/lsh/lsh_attention.h"

// 1 when the tensor-core kernels take p: bf16, D 64 or 128, q and v rows 16-byte aligned (base
// pointers 16-byte aligned, strides multiples of 8 elements).
int sk_lsh_mma_supported(const SkLshParams* p);

// Buckets, sort keys and values of every (bh, round, position) (as the SIMT hash kernel; the argmax
// may differ from the CPU's fp32 lsh_hash at near ties: fp32 accumulation order).
int sk_lsh_mma_hash(const SkLshParams* p, int32_t* buckets, uint32_t* keys, int32_t* vals, cudaStream_t s);

// o_rounds, lse of every entry (the forward's chunk attention; the merge is separate).
int sk_lsh_mma_forward_chunks(const SkLshParams* p, const float* kscale, const int32_t* order, float* o_rounds,
                              float* lse, cudaStream_t s);

// dq_e (query side) and dk_e, dv_e (key side) from dout (contiguous bf16), lse, w, gout.
int sk_lsh_mma_backward_chunks(const SkLshParams* p, const float* kscale, const int32_t* order, const float* lse,
                               const void* dout, const float* w, const float* gout, float* dq_e, float* dk_e,
                               float* dv_e, cudaStream_t s);

// 1 when the fused backward (v2) takes p: sk_lsh_mma_supported and chunk <= 128.
int sk_lsh_mma_fused_backward_ok(const SkLshParams* p);

// Fused backward (v2, one kernel per chunk): dq_e (query side, complete) and two partials per key
// entry: dk_e, dv_e from the block of the entry's own chunk, dk2_e, dv2_e from the block of the
// next chunk (cyclic; written only with look-back and >= 2 chunks). The final pass sums
// dk_e + dk2_e (fixed order). The five partials are bf16 (BH, E, D) rows (fp32 sums rounded once).
// The prep pass is folded in: each block takes its query entries' merge weights from lse and
// gout = dO . out from the merged output out (contiguous bf16 (BH, T, D), 16-byte aligned, as dout).
int sk_lsh_mma_backward_fused(const SkLshParams* p, const float* kscale, const int32_t* order, const float* lse,
                              const void* dout, const void* out, void* dq_e, void* dk_e, void* dv_e, void* dk2_e,
                              void* dv2_e, cudaStream_t s);

// Bytes of device scratch sk_lsh_mma_hash_v2 needs (a power-of-two exponent per (h, r), then the
// scaled rotations split into two fp16 terms, (H, R, 2, D, NB/2 rounded up to 64)); 0 when the
// tensor-core kernels do not take p.
int64_t sk_lsh_mma_hash_scratch_bytes(const SkLshParams* p);

// Buckets as sk_lsh_mma_hash, on fp16 tensor cores: each round's rotations and each q row scaled by
// a power of two (which leaves every row's argmax unchanged) so that q is exact in fp16 and R is
// carried by two fp16 terms (22 significant bits; v1: three bf16 terms, 24). The argmax can
// differ from the CPU's fp32 lsh_hash only at near ties, as v1's. The rotations are split once per
// call into scratch (16-byte aligned, sk_lsh_mma_hash_scratch_bytes) and 128-position blocks
// stream them. Also writes the key scales kscale (BH, T) of every position from the gathered q
// rows (the separate key-scale pass is then not run).
int sk_lsh_mma_hash_v2(const SkLshParams* p, void* scratch, float* kscale, int32_t* buckets, uint32_t* keys,
                       int32_t* vals, cudaStream_t s);

// 1 when the forward v2 takes p: sk_lsh_mma_fused_backward_ok and chunk > 64 (for chunk <= 64 v1
// already runs one 64-row block per chunk, and a 128-row block would idle half its warps).
int sk_lsh_mma_forward_v2_ok(const SkLshParams* p);

// As sk_lsh_mma_forward_chunks with one 128-row block per chunk (sk_lsh_mma_forward_v2_ok: 64 <
// chunk <= 128) and double-buffered key/value gathers; o_rounds (BH, E, D) in bf16 (each entry's
// fp32 output rounded once: half the bytes written here and read by the merge).
int sk_lsh_mma_forward_chunks_v2(const SkLshParams* p, const float* kscale, const int32_t* order, void* o_rounds,
                                 float* lse, cudaStream_t s);
