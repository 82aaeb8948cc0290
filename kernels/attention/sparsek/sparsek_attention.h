// sparsek CUDA kernels for SparseK attention (../shared/docs/attention-spec.md section 4): the
// causal selection pass, per-query-tile candidate lists and the fused forward (declarations;
// kernels in selection.cu and forward.cu). Plain types only.
//
// Legend: B batch, H heads, T time, D head dim (64 or 128), Hu score heads (H, or 1 when every
// head shares one selection), R = B * Hu score rows, BQ = tile_q queries per tile (64 or 128),
// NT = ceil(T / BQ) query tiles per row.
//   u:        (R, T) fp32 scores, contiguous (slope included).
//   tau:      (R, T) fp64: tau_i, -infinity while |P_i| <= k (selection.h conventions).
//   ranges:   (R, T) SkKeyRange per key (the query ranges of selection.h KeyRanges).
//   scratch:  R x sk_sparsek_select_scratch_bytes(k, T) bytes (16-byte aligned): heap storage of
//             the selection pass when the heaps do not fit in shared memory (else none).
//   cand:     (R, NT, cap) int32 key positions, cap = sk_sparsek_candidate_cap(k, T, BQ): first
//             the tile's uniform keys ascending, then the others ascending (see cand_uniform);
//   cand_n:   (R, NT) int32 number of candidates of each tile (<= cap by spec 4.3 property 3;
//             the true count is stored, only the first cap are written).
//   cand_uniform: (R, NT) int32 how many of the tile's list come first as UNIFORM keys: keys in
//             Sel_i for every query i of a full tile whose state (saturated, fractional or dead)
//             is the same for all of them, so m_ij = sat(u_j - tau_i) with u_j taken as +inf /
//             u_j / -inf, and the kernels skip the per-element membership and state tests on
//             chunks of uniform keys. 0 for the last tile when it is not full.
//   q, k, v:  (B, H, T, D) bf16 with the flash kernels' strides (flash_attention.h).
//   out:      (B, T, H, D) contiguous bf16; lse: (B, H, T) fp32 contiguous.
// Backward (recomputation; D_i = dO_i . O_i):
//   dout:     (B, H, T, D) bf16 with strides dout_stride; out: (B, T, H, D) the forward's output.
//   dq:       (B, T, H, D) bf16 (each query tile is owned by one block: written directly).
//   dk, dv:   (B, T, H, D) bf16, through fp32 scratch dkv_accum (2, B, T, H, D): the window
//             part's dK_w, dV_w stored there by the flash backward (fp32, dK unscaled), the
//             selected keys' terms added by atomics (zeroed first when window == 0).
//   delta:    (B, H, T) fp32 scratch, dq_window: (B, T, H, D) fp32 scratch: the window part's
//             dQ_w (unscaled) from the flash backward (both needed only when window > 0).
//   du:       (R, T) fp32; scratch g_row (R, T) fp32 (sum of G_il over query i's fractional
//             selected keys), g_key (R, T) fp32 (sum of G_ij over the queries where key j is
//             fractional), c_prefix (R, T + 1) fp64, frac_count (R, T + 1) int32.
// Returns an SkKernelStatus (0 = ok).
#pragma once

#include <cstdint>
#include <cuda_runtime_api.h>

#include "kernels/attention/flash_attention.h"
#include "kernels/attention/sparsek/chunk_schedule.h"
#include "kernels/common/kernel_dtype.h"

// Query rows per tile of the fused kernels (the candidate lists are built per tile of this height):
// SK_SPARSEK_TILE_Q, or SK_SPARSEK_TILE_Q_WIDE (each gathered key chunk serves twice the queries:
// half the gathers, metadata loads and dK / dV atomics per query, for a union of candidates up to
// k + 127 instead of k + 63 keys).
#define SK_SPARSEK_TILE_Q 64
#define SK_SPARSEK_TILE_Q_WIDE 128

struct SkKeyRange {
  // Query ranges of one key (KeyRanges in src/attention/sparsek/selection.h), each in [0, T].
  int32_t enter, frac_from, dead_from, sel_from, sel_to;
};

struct SkSparsekSelectParams {
  const float* u;
  int rows, seq_len, k, window;
  int chunked_fcap;  // chunked pass: fractional-heap entries in shared memory (0: SK_SPARSEK_CHUNKED_FCAP)
  int chunked_heap_arity;  // chunked pass: the walk's heaps, 4 = 4-ary (the default), else binary (same results)
  int chunked_dense;       // chunked pass: 1 = the chunk kernel compiled for 8 blocks per SM (the default;
                           // fractional heap default SK_SPARSEK_CHUNKED_FCAP_DENSE), 0 = for 5 (48 registers),
                           // 2 = split: the starts (as 1) and the walks (64-thread blocks) in two launches
};

struct SkSparsekForwardParams {
  SkFlashParams attn;      // q, k, v, strides, shape, window, softmax_scale
  int score_heads;         // Hu: H or 1
  int k;                   // selection budget
  int log_mask;            // 0: gate_values, 1: log_mask
  const float* u;          // (R, T)
  const double* tau;       // (R, T)
  const SkKeyRange* ranges;  // (R, T)
  const int32_t* cand;     // (R, NT, cap)
  const int32_t* cand_n;   // (R, NT)
  const int32_t* cand_uniform;  // (R, NT), or null: no chunk taken as uniform
  int cand_cap;
  int tile_q;              // BQ of the candidate lists and of the kernels' blocks (64 or 128)
  int staged_meta;         // forward: 1 = the tile's candidate list staged in shared memory and each
                           // chunk's key metadata loaded a chunk ahead (forward.cu; SPARSEK_SPARSEK_FWD);
                           // 2 = 1 compiled for 3 blocks per SM at hd 64, 64-query tiles (else as 1;
                           // the default); 0 = metadata loaded right before each chunk
  int bwd_variant;         // backward (backward.cu; SPARSEK_SPARSEK_BWD): 0 = one chunk at a time,
                           // per-element shared atomics for G; 1 = G summed by warp shuffles;
                           // 2 = 1 + the K/V gathers and key metadata double buffered (hd 64 only);
                           // 3 = 2 compiled for 3 blocks per SM (hd 64, 64-query tiles; else as 2;
                           // the default); 4 = 2 with two warps per 16 query rows splitting each
                           // chunk's keys, 2 blocks of 8 warps per SM (hd 64, 64-query tiles; else as 2)
};

#ifdef __cplusplus
extern "C" {
#endif

// Capacity of one tile's candidate list: min(k + BQ - 1, T) (at least 1); BQ = tile_q.
int sk_sparsek_candidate_cap(int k, int seq_len, int tile_q);

// Bytes of selection scratch per score row (a multiple of 16; 0 when the heaps fit in shared
// memory, and then scratch may be null).
int64_t sk_sparsek_select_scratch_bytes(int k, int seq_len);

// tau and the per-key ranges of every score row; scratch as above.
int sk_cuda_sparsek_select(const SkSparsekSelectParams* p, double* tau, SkKeyRange* ranges, void* scratch,
                           cudaStream_t s);

// The same for the rows with only_rows[row] != 0 (all rows when only_rows is null); the other
// rows' tau and ranges are left as they are.
int sk_cuda_sparsek_select_rows(const SkSparsekSelectParams* p, const int* only_rows, double* tau, SkKeyRange* ranges,
                                void* scratch, cudaStream_t s);

// Chunk-parallel selection (selection_chunked.cu), bit-identical to sk_cuda_sparsek_select: rows
// are cut into chunks (the same SkChunkSchedule for every row, chunk_schedule.h) walked in parallel
// from canonical starts, verified against each other; rows that fail are recomputed by the
// sequential kernel (seq_scratch as `scratch` above). failed: (R) int32 out, 0 for a verified row,
// else the kFail* bits of selection_chunked_common.h.
// Plan first: chunk_len 0 = automatic (fills the GPU's resident blocks once, at least
// SK_SPARSEK_CHUNKED_MIN_LEN, for the shared memory of fcap fractional-heap entries, 0 = the
// default, and the chunk kernel of `dense`, SkSparsekSelectParams::chunked_dense); out_chunk_len
// is that uniform length. balance > 0 (with an automatic length only): balanced chunks instead, q =
// balance prefix keys of a canonical start costing one walked query, the shortest chunk
// SK_SPARSEK_CHUNKED_MIN_LEN_BALANCED. Returns the schedule and the bytes of chunk_scratch
// (16-byte aligned). k must be <= SK_SPARSEK_CHUNKED_MAX_K.
#define SK_SPARSEK_CHUNKED_MAX_K 2048
#define SK_SPARSEK_CHUNKED_FCAP 4096
// The dense chunk kernel's default (8 blocks of 256 threads per SM fit in shared memory at k <= 512).
#define SK_SPARSEK_CHUNKED_FCAP_DENSE 2048
#define SK_SPARSEK_CHUNKED_MIN_LEN 256
#define SK_SPARSEK_CHUNKED_MIN_LEN_BALANCED 64
int sk_sparsek_select_chunked_plan(int rows, int k, int seq_len, int window, int chunk_len, int balance, int fcap,
                                   int dense, int* out_chunk_len, SkChunkSchedule* out_schedule,
                                   int64_t* out_scratch_bytes);
int sk_cuda_sparsek_select_chunked(const SkSparsekSelectParams* p, const SkChunkSchedule* schedule, double* tau,
                                   SkKeyRange* ranges, int* failed, void* chunk_scratch, void* seq_scratch,
                                   cudaStream_t s);

// Candidate lists from the key ranges: key j joins the list of tile t when its selected range
// [sel_from, sel_to) meets the tile's queries [t BQ, (t + 1) BQ); uniform keys first (cand_uniform).
// T <= SK_SPARSEK_CANDIDATES_MAX_T (two bits per key in 200 KB of shared memory; else
// SK_KERNEL_BAD_ARG).
#define SK_SPARSEK_CANDIDATES_MAX_T 819200
int sk_cuda_sparsek_candidates(const SkKeyRange* ranges, int rows, int seq_len, int tile_q, int cap, int32_t* cand,
                               int32_t* cand_n, int32_t* cand_uniform, cudaStream_t s);

// Fused forward: out, lse for every (b, h) from the selection of score row b * Hu + (Hu == 1 ? 0 : h).
int sk_cuda_sparsek_forward(const SkSparsekForwardParams* p, void* out, float* lse, cudaStream_t s);

// Fused backward (zeroes its own accumulators; every output fully written): the window keys
// through the flash backward (sk_cuda_flash_backward with this forward's out and lse), the
// selected keys through the gathered candidate chunks (backward.cu).
int sk_cuda_sparsek_backward(const SkSparsekForwardParams* p, const void* dout, SkFlashStrides dout_stride,
                             const void* out, const float* lse, void* dq, void* dk, void* dv, float* du,
                             float* dkv_accum, float* delta, float* dq_window, float* g_row, float* g_key,
                             double* c_prefix, int32_t* frac_count, cudaStream_t s);

#ifdef __cplusplus
}
#endif
