// LSH attention on CUDA (host side of kernels/attention/lsh/lsh_attention.cu): the GPU counterpart
// of lsh_reference.h (the same function; q, v in bf16 or f32, every sum in fp32).
//
//   q, v:       (B, H, T, D) on one CUDA device, bf16 or f32 (both alike), any strides with a
//               contiguous last dim; D in {64, 128}.
//   rotations:  (H, D, R, NB/2), any float dtype, CPU or CUDA (copied to the device in f32); not read
//               when T <= chunk.
//   out:        (B, H, T, D) contiguous, q's dtype.
// Forward state kept for the backward (rows = B * H, R = rounds, 1 when T <= chunk):
//   kscale (B, H, T) f32 key scales, order (B * H, R * T) int32 sorted entry ids (r * T + j),
//   buckets (B, H, R, T) int32 (T > chunk only), lse (B, H, R, T) f32, and out itself (the
//   backward's gout_i = dout_i . out_i). Each entry's softmax output (B, H, R, T, D) f32 lives only
//   inside the forward (the merge reads it).
// Pipeline: key scales + hashing (lsh_cuda_layout), a stable radix sort of (row, round, bucket)
// keys (cub), the chunked attention (tensor cores for bf16, else SIMT fp32; LshCudaKernels), the
// merge over rounds. The backward recomputes each chunk's softmax twice (query side: dq; key side: dk, dv), writes per-entry partial gradients
// (no atomics) and sums the rounds with the key-normalisation backward: bitwise deterministic.
// Tests: tests/attention/lsh/test_lsh_cuda.cpp. Docs: docs/LSH.md (CUDA path).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "attention/lsh/lsh_reference.h"
#include "tensor/tensor.h"

namespace sk::attention::lsh {

// True when the kernels take these inputs (CUDA build, q on CUDA in bf16 or f32, 4-d, D in {64, 128}).
bool lsh_attention_cuda_supported(const Tensor& q);

// Which chunk kernels run: Auto = tensor cores (mma.sync, bf16 with 16-byte aligned rows) when they
// take the inputs, else SIMT fp32; the environment variable SPARSEK_LSH_KERNELS=simt|mma overrides
// Auto (simt: always SIMT; mma: tensor cores, an error where they do not apply).
// TensorCores: the newest tensor-core kernels (fused one-kernel backward when chunk <= 128);
// TensorCoresV1: the first version (two-kernel backward), kept as the fallback
// (SPARSEK_LSH_KERNELS=mma_v1 under Auto).
enum class LshCudaKernels { Auto = 0, Simt = 1, TensorCores = 2, TensorCoresV1 = 3 };

struct LshCudaLayout {
  Tensor kscale, order, buckets;
  int64_t rounds = 1, n_buckets = 0, chunk = 0;  // chunk: entries per chunk (T when T <= chunk)
  bool look_back = false;                        // T > chunk: hashed, one chunk of cyclic look-back
};
// Key scales, buckets and the sorted order of q (the first part of the forward). The hash runs on
// tensor cores with the tensor-core kernels (R split into three bf16 terms, fp32 accumulation: equal
// to lsh_hash on the same f32 values except at near ties), else in SIMT fp32 with the CPU's
// operation order (bit-equal to lsh_hash on the same f32 values).
LshCudaLayout lsh_cuda_layout(const Tensor& q, const Tensor& rotations, int64_t chunk,
                              LshCudaKernels kernels = LshCudaKernels::Auto);

struct LshCudaForward {
  Tensor out, lse, order, kscale, buckets;
  int64_t rounds = 1, n_buckets = 0, chunk = 0;  // chunk: entries per chunk (T when T <= chunk)
  bool look_back = false;
  LshCudaKernels kernels = LshCudaKernels::Auto;  // as asked; the backward uses the same
};
LshCudaForward lsh_cuda_forward(const Tensor& q, const Tensor& v, const Tensor& rotations, int64_t chunk,
                                LshCudaKernels kernels = LshCudaKernels::Auto);

// dq, dv: (B, H, T, D) contiguous in q's dtype. dout: (B, H, T, D) (any dtype, any strides).
LshGrads lsh_cuda_backward(const Tensor& dout, const Tensor& q, const Tensor& v, const LshCudaForward& fwd);

// Per-phase timing for benchmarks (one stream, not thread-safe): lsh_cuda_phase_timing(true)
// before the calls, lsh_cuda_phase_read() after them (waits; then disarms nothing: call
// lsh_cuda_phase_timing(false) to stop). Phases (lsh_cuda_phase_names): hash (key scales + hash),
// sort, fwd_chunks, merge, bwd_prep, bwd_chunks, bwd_final, in ms; 0 for a phase that did not run.
void lsh_cuda_phase_timing(bool on);
std::vector<double> lsh_cuda_phase_read();
std::vector<std::string> lsh_cuda_phase_names();

// Incremental decode (docs/LSH.md, "Decode and its cost"): the caches of one attention layer's
// decode (lsh_decode.h legend), kept between steps. Empty until the first step past `chunk`.
struct LshDecodeState {
  Tensor kscale, buckets, order[2], rank;  // device caches (legend), order ping-pongs between two buffers
  Tensor new_kscale, new_bucket, keys, vals;  // per-step scratch
  int cur = 0;          // which order buffer holds the current order
  int64_t nb = 0;       // the bucket count the caches were hashed with (0: none)
  int64_t len = 0;      // positions in the caches
};
// True when lsh_cuda_decode_step takes these caches: lsh_attention_cuda_supported, D <= 128,
// n_hashes <= 8, chunk <= 1024.
bool lsh_cuda_decode_supported(const Tensor& q_cache, int64_t n_hashes, int64_t chunk);
// The output (B, H, 1, D) of position L - 1 of q_cache, v_cache (B, H, max_t, D), positions [0, L)
// written, L > chunk, rotations (H, D, R, NB/2) for this prefix length (f32 on the device): equal
// to the last row of lsh_cuda_forward over the prefix (SIMT hash) up to fp32 summation order.
// When st holds the prefix L - 1 hashed with the same NB, only position L - 1 is hashed and
// inserted (O(R L) memory traffic, one block per row for its ~2 R chunk keys); else the whole
// prefix is laid out again (lsh_cuda_layout).
Tensor lsh_cuda_decode_step(LshDecodeState& st, const Tensor& q_cache, const Tensor& v_cache, int64_t L,
                            const Tensor& rotations, int64_t chunk);

// Differentiable (q, v) -> out with constant rotations: one autograd node of q and v. Used by the
// `lsh` attention kind when lsh_attention_cuda_supported(q).
Tensor lsh_attention_cuda(const Tensor& q, const Tensor& v, const Tensor& rotations, int64_t chunk);

}  // namespace sk::attention::lsh
