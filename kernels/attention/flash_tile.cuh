// Tile helpers for the fused attention kernels (flash_forward.cu, flash_backward.cu): cp.async
// copies of (rows x D) bf16 tiles into swizzled shared memory, ldmatrix fragment loads and the
// m16n8k16 bf16 tensor-core MMA (mma.sync, fp32 accumulators).
//
// Shared-memory tiles hold rows of D bf16 (D/8 chunks of 16 bytes); chunk c of row r is stored at
// chunk c ^ (r % 8), so the 8 row addresses of one ldmatrix (same logical chunk, 8 consecutive
// rows) fall in 8 different bank groups.
// Fragment layouts (PTX ISA, mma.m16n8k16, g = lane / 4, t = lane % 4):
//   A (16x16): a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
//   B (16x8):  b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g)
//   C (16x8):  c0,c1 (g, 2t..2t+1), c2,c3 (g+8, 2t..2t+1)
#pragma once

#include <cuda_bf16.h>
#include <cstdint>

#include "kernels/attention/flash_attention.h"

namespace sk_flash {

constexpr float kLog2e = 1.4426950408889634f;

// 2^x for the online softmax: exp2f, or with kFtz one ex2.approx.ftz.f32 (no denormal handling:
// a result below 2^-126 is 0, an input denormal counts as 0). SkFlashParams::exp2_ftz picks.
template <bool kFtz>
__device__ __forceinline__ float softmax_exp2(float x) {
  if constexpr (kFtz) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
  } else {
    return exp2f(x);
  }
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Byte offset of (row, col) in a swizzled tile of rows of D bf16; col is a multiple of 8.
// Rows of >= 8 chunks: chunk ^ (row % 8). Rows of 4 chunks (D = 32; two rows per 128 bytes):
// chunk ^ ((row / 2) % 4), which also spreads 8 consecutive rows over the 8 bank groups.
template <int D>
__device__ __forceinline__ uint32_t swz(int row, int col) {
  static_assert(D >= 64 || D == 32, "swizzle defined for rows of 32 or >= 64 bf16");
  const int sw = D >= 64 ? (row & 7) : ((row >> 1) & 3);
  return static_cast<uint32_t>(row * D * 2 + ((((col >> 3) ^ sw)) << 4));
}

// Byte offset of (row, col) in a tile of ROWS rows x D bf16 kept as D / 64 panels of ROWS x 64
// (128-byte rows, swz<64> inside each panel, panel p at p * ROWS * 128 bytes): the layout the
// wgmma kernels read at any head dim (wgmma.cuh: one 128-byte swizzle row per 64 columns); for
// D = 64 it is swz<64>. col is a multiple of 8.
template <int ROWS>
__device__ __forceinline__ uint32_t swz_panel(int row, int col) {
  return static_cast<uint32_t>((col >> 6) * ROWS * 128) + swz<64>(row, col & 63);
}

__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;  // 0: zero-fill (rows past the end of the sequence)
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Copies rows [row0, row0 + ROWS) of a (T, D) bf16 matrix (row stride `stride` elements) into a
// swizzled tile (kPanels: the swz_panel layout of the wgmma kernels); rows >= T are zero-filled.
// All THREADS threads of the block take part.
template <int ROWS, int D, int THREADS, bool kPanels = false>
__device__ __forceinline__ void load_tile(uint32_t tile, const __nv_bfloat16* base, int64_t stride, int row0, int T) {
  constexpr int kChunks = D / 8;
  constexpr int kTotal = ROWS * kChunks;
  static_assert(kTotal % THREADS == 0, "tile chunks must divide evenly among threads");
#pragma unroll
  for (int i = 0; i < kTotal / THREADS; ++i) {
    const int c = i * THREADS + static_cast<int>(threadIdx.x);
    const int r = c / kChunks, cc = c % kChunks;
    const int gr = row0 + r;
    const bool valid = gr < T;
    const __nv_bfloat16* src = base + (valid ? static_cast<int64_t>(gr) * stride : 0) + cc * 8;
    cp_async_16(tile + (kPanels ? swz_panel<ROWS>(r, cc * 8) : swz<D>(r, cc * 8)), src, valid);
  }
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// d += a * b (16x8x16, bf16 in, fp32 accumulate).
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// d += a * b (16x8x16, fp16 in, fp32 accumulate; the LSH hash's exact split products).
__device__ __forceinline__ void mma_f16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// A-operand fragments (16 rows x 16 cols at (row0, col0)) of a swizzled row-major tile.
template <int D>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], uint32_t tile, int row0, int col0, int lane) {
  const int mi = lane >> 3, r = lane & 7;
  ldmatrix_x4(a, tile + swz<D>(row0 + r + (mi & 1) * 8, col0 + (mi >> 1) * 8));
}
// A-operand fragments of the TRANSPOSE of a swizzled tile: A(m, k) = tile(k0 + k, m0 + m), 16x16.
template <int D>
__device__ __forceinline__ void load_a_trans(uint32_t (&a)[4], uint32_t tile, int m0, int k0, int lane) {
  const int mi = lane >> 3, r = lane & 7;
  ldmatrix_x4_trans(a, tile + swz<D>(k0 + r + (mi >> 1) * 8, m0 + (mi & 1) * 8));
}
// B-operand fragments for two n8 tiles, B(k, n) = tile(n0 + n, k0 + k) (tile rows are n):
// b[0], b[1] for n0..n0+7, b[2], b[3] for n0+8..n0+15; k = k0..k0+15.
template <int D>
__device__ __forceinline__ void load_b(uint32_t (&b)[4], uint32_t tile, int n0, int k0, int lane) {
  const int mi = lane >> 3, r = lane & 7;
  ldmatrix_x4(b, tile + swz<D>(n0 + r + (mi >> 1) * 8, k0 + (mi & 1) * 8));
}
// B-operand fragments for two n8 tiles, B(k, n) = tile(k0 + k, n0 + n) (tile rows are k):
// b[0], b[1] for n0..n0+7, b[2], b[3] for n0+8..n0+15.
template <int D>
__device__ __forceinline__ void load_b_trans(uint32_t (&b)[4], uint32_t tile, int k0, int n0, int lane) {
  const int mi = lane >> 3, r = lane & 7;
  ldmatrix_x4_trans(b, tile + swz<D>(k0 + r + (mi & 1) * 8, n0 + (mi >> 1) * 8));
}

// Host-side argument check shared by the launchers: pointers 16-byte aligned, strides multiples
// of 8 elements (so every row starts on a 16-byte boundary), head dim 64 or 128.
inline bool params_ok(const SkFlashParams* p) {
  if (!p || !p->q || !p->k || !p->v || p->batch < 0 || p->heads <= 0 || p->seq_len < 0 || p->window < 0) return false;
  if (p->head_dim != 64 && p->head_dim != 128) return false;
  const SkFlashStrides st[3] = {p->q_stride, p->k_stride, p->v_stride};
  const void* ptr[3] = {p->q, p->k, p->v};
  for (int i = 0; i < 3; ++i) {
    if (reinterpret_cast<uintptr_t>(ptr[i]) % 16 != 0) return false;
    if (st[i].batch % 8 || st[i].head % 8 || st[i].row % 8) return false;
  }
  return true;
}

}  // namespace sk_flash
