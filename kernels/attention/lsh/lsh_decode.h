// sparsek CUDA kernels for the incremental LSH decode (docs/LSH.md, "Decode and its cost"; host side
// lsh_cuda_decode_step in src/attention/lsh/lsh_cuda.h). Declarations only (kernels in
// lsh_decode.cu). Plain types only.
//
// A decode step appends position t = L - 1 to a prefix whose buckets (for the current bucket count
// NB) and per-round sorted orders are cached, and computes only that position's output:
//   kscale:  (BH, max_t) f32 key scale of every cached position (lsh_attention.h legend)
//   buckets: (BH, R, max_t) int32 bucket of every cached position per round
//   order:   (BH, R, max_t) int32 per round, the cached positions stably sorted by bucket (ties by
//            position); round r's block is the slots r * L .. r * L + L - 1 of the forward's sorted
//            sequence (its sort key is r * NB + bucket)
//   rank:    (BH, R) int32 the new position's index in its round's order
// The new position has the largest position, so it is the last of its bucket: its index is
// #{j < t : bucket(j) <= bucket(t)}, and inserting it shifts the tail of the order by one.
// Its keys are the forward's: the slots of its chunk and of the previous chunk (cyclic) of the
// R * L sorted entries, with the same masks (self -1e5; no later key exists); its output merges the
// rounds by their log-sum-exp. Returns an SkKernelStatus (0 = ok).
#pragma once

#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/common/kernel_dtype.h"

// Largest chunk, rounds and head dim the decode kernels take (the host falls back beyond).
#define SK_LSH_DECODE_MAX_CHUNK 1024
#define SK_LSH_DECODE_MAX_ROUNDS 8
#define SK_LSH_DECODE_MAX_D 128

struct SkLshDecodeParams {
  const void* q;                   // (B, H, max_t, D) cache with strides (q_sb, q_sh, q_st), last dim contiguous
  const void* v;
  int dtype;                       // SK_KDT_BF16 or SK_KDT_F32 (q and v alike)
  int64_t q_sb, q_sh, q_st;
  int64_t v_sb, v_sh, v_st;
  int B, H, D;
  int rounds;                      // R
  int chunk;                       // entries per chunk (L > chunk: hashed, one chunk of look-back)
  int L;                           // prefix length, the new position is L - 1
  int max_t;                       // time stride of kscale, buckets, order
  float* kscale;                   // caches (legend)
  int32_t* buckets;
  int32_t* rank;
};

#ifdef __cplusplus
extern "C" {
#endif

// Caches from a full layout of the prefix (lsh_attention.h: order (BH, R * L) entry ids r L + j,
// layout_buckets (BH, R, L), layout_kscale (BH, L)): kscale, buckets, order_out (the legend's
// order) and rank.
int sk_cuda_lsh_decode_rebuild(const SkLshDecodeParams* p, const int32_t* layout_order, const int32_t* layout_buckets,
                               const float* layout_kscale, int32_t* order_out, cudaStream_t s);

// Appends position L - 1 with its bucket per round new_bucket (BH, R) and key scale new_kscale
// (BH): order_out = order_in with it inserted, and the caches and rank updated. order_in and
// order_out must not overlap.
int sk_cuda_lsh_decode_insert(const SkLshDecodeParams* p, const int32_t* new_bucket, const float* new_kscale,
                              const int32_t* order_in, int32_t* order_out, cudaStream_t s);

// The output of position L - 1: out (B, H, D) contiguous in the dtype of q.
int sk_cuda_lsh_decode_attend(const SkLshDecodeParams* p, const int32_t* order, void* out, cudaStream_t s);

#ifdef __cplusplus
}
#endif
