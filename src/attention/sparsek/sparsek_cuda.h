// SparseK attention on CUDA (host side of kernels/attention/sparsek/*.cu): the selection pass,
// per-query-tile candidate lists and the fused forward; the GPU counterpart of
// sparsek_reference.h (same function, bf16 inputs, fp32 accumulation).
//
//   q, k, v: (B, H, T, D) bf16 on CUDA, any strides with the last dim contiguous; D in {64, 128}.
//   u:       (B, Hu, T) scores on the same device, any float dtype (Hu = H or 1).
//   out:     (B, H, T, D) bf16, a view of a contiguous (B, T, H, D) buffer (like flash attention).
//   lse:     (B, H, T) f32, natural log, the reference's convention per mask mode.
//   dq, dk, dv like out; du (B, Hu, T) f32.
// Selection state (R = B * Hu score rows, NT = ceil(T / 64) query tiles, cap = min(k + 63, T)):
//   tau (R, T) f64, ranges (R, T, 5) i32 (enter, frac_from, dead_from, sel_from, sel_to: the
//   KeyRanges of selection.h), cand (R, NT, cap) i32 key lists (the tile's uniform keys ascending,
//   then the others ascending), cand_n (R, NT) i32, cand_uniform (R, NT) i32 (sparsek_attention.h).
// Tests: tests/attention/sparsek/test_sparsek_cuda.cpp.
#pragma once
#include <cstdint>

#include "attention/sparsek/sparsek_reference.h"
#include "tensor/tensor.h"

namespace sk::attention::sparsek {

// True when the fused kernels take these inputs (CUDA build, bf16 on CUDA, D in {64, 128}).
bool sparsek_attention_cuda_supported(const Tensor& q);

struct SparsekCudaSelection {
  int64_t k = 0, window = 0, cap = 0;
  // Query rows per candidate tile (SK_SPARSEK_TILE_Q = 64, or 128 with SPARSEK_SPARSEK_TILE=128:
  // the fused kernels run blocks of this height; kernels/attention/sparsek/sparsek_attention.h).
  int64_t tile_q = 64;
  Tensor u;       // (R, T) f32 contiguous: the scores the selection was made from
  Tensor tau;     // (R, T) f64
  Tensor ranges;  // (R, T, 5) i32
  Tensor cand;    // (R, NT, cap) i32
  Tensor cand_n;  // (R, NT) i32
  Tensor cand_uniform;  // (R, NT) i32: how many of each list come first as uniform keys
  // Chunked pass only (undefined after the sequential one): (R) i32 per row, 0 = the chunk-parallel
  // result verified, else the bits (kFail* in kernels/attention/sparsek/selection_chunked_common.h)
  // of why the row was recomputed by the sequential kernel. chunk_len: the first chunk's length
  // (every chunk's but the last, unless SPARSEK_SELECTION_BALANCE made them balanced); chunks: how many.
  Tensor fallback;
  int64_t chunk_len = 0, chunks = 0;
};

// Which selection pass runs (results are identical; only the time differs):
//   Sequential: one block per score row, the heap walk over all T queries (selection.cu).
//   Chunked:    chunks of chunk_len queries (or balanced chunks: SPARSEK_SELECTION_BALANCE,
//               kernels/attention/sparsek/chunk_schedule.h) in parallel from verified canonical starts, the
//               sequential kernel for rows that do not verify (selection_chunked.cu); k must be
//               <= 2048, else every row runs the sequential kernel (fallback = 16).
//   Auto:       the environment variable SPARSEK_SELECTION = sequential | chunked | auto decides;
//               unset: kSelectionDefault. auto: Chunked when T >= 2 chunk_len and k <= 2048.
// chunk_len 0: SPARSEK_SELECTION_CHUNK if set, else chosen from the GPU's size (>= 256).
enum class SelectionPass { Auto, Sequential, Chunked };
struct SelectionOptions {
  SelectionPass pass = SelectionPass::Auto;
  int64_t chunk_len = 0;
};
// The pass that SelectionPass::Auto means when SPARSEK_SELECTION is unset: Auto (chunked for long
// rows). The chunked pass passed every exact GPU test on an H200 (2026-12-02, commit 015d0ca:
// 170 of 170 in test_attention_sparsek) and ran 7-9x faster (docs/perf-notes.md, "SparseK kernels").
constexpr SelectionPass kSelectionDefault = SelectionPass::Auto;

// u: (B, Hu, T) on CUDA. Builds the selection and the candidate lists.
SparsekCudaSelection sparsek_cuda_selection(const Tensor& u, int64_t k, int64_t window,
                                            const SelectionOptions& options = {});

struct SparsekCudaForward {
  Tensor out, lse;
  SparsekCudaSelection selection;
  int64_t score_heads = 0;  // Hu
};
SparsekCudaForward sparsek_cuda_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& u,
                                        const SparsekParams& params);
// The same from a selection made earlier (sparsek_cuda_selection of the (B, score_heads, T) scores).
SparsekCudaForward sparsek_cuda_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                        const SparsekCudaSelection& selection, int64_t score_heads,
                                        const SparsekParams& params);

struct SparsekCudaGrads {
  Tensor dq, dk, dv;  // (B, H, T, D) bf16 views of contiguous (B, T, H, D) buffers
  Tensor du;          // (B, Hu, T) f32
};
// Backward with recomputation from the forward's out, lse and selection (same q, k, v).
SparsekCudaGrads sparsek_cuda_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                       const SparsekCudaForward& fwd, const SparsekParams& params);

// Differentiable (q, k, v, u) -> out on the fused kernels: one autograd node of q, k, v and u
// (du comes back in u's dtype). Used by the `sparsek` attention kind when
// sparsek_attention_cuda_supported(q).
Tensor sparsek_attention_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& u,
                              const SparsekParams& params);

}  // namespace sk::attention::sparsek
