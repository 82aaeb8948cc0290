// Hopper warpgroup MMA (wgmma, sm_90a) helpers for the attention kernels: shared-memory matrix
// descriptors for 128-byte-swizzled bf16 tiles, the fences and group commits, and the
// m64nNk16 bf16 -> fp32 instructions the backward uses. Only compiled into sm_90a code: callers
// guard their kernel bodies with SK_HAS_WGMMA.
//
// Tiles: rows of 64 bf16 (128 bytes), 16-byte chunk c of row r stored at chunk c ^ (r % 8), tile
// start 1024-byte aligned. That is flash_tile.cuh's swz<64> layout and also the hardware's
// 128-byte swizzle (address bits [4,7) xor bits [7,10)), so the same tile serves ldmatrix and wgmma.
// Wider rows (head dim 128) are kept as 64-column panels of this layout, one after the other
// (flash_tile.cuh swz_panel): a K-major operand's k-steps 4-7 start in the second panel, and an
// N-major operand 128 wide is read as two 64-wide products, one per panel.
// Read as an operand of a 64 x N x 16 product it is either
//   K-major (rows are M or N, the 16 k-columns contiguous): start + 32 bytes per k-step of 16;
//     stride byte offset (SBO) = 1024 (the next 8 rows);
//   MN-major (rows are k, M or N contiguous along the row): start + 2048 bytes per k-step (16
//     rows); SBO = 1024 (the next 8 k-rows); the leading byte offset (LBO) would step to the next
//     64 M/N columns, which these tiles (64 wide) never need.
// Accumulator layout of m64nNk16 (per warp w of the warpgroup, g = lane / 4, t = lane % 4):
// d[4j + 0..1] = rows 16w + g, columns 8j + 2t..2t+1; d[4j + 2..3] = row 16w + g + 8 (the
// mma.m16n8k16 C layout, repeated over N / 8 column chunks). A from registers uses the
// mma.m16n8k16 A layout per warp, so an accumulator converted to bf16 feeds the next product.
#pragma once

#include <cstdint>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define SK_HAS_WGMMA 1
#else
#define SK_HAS_WGMMA 0
#endif

namespace sk_wgmma {

// Matrix descriptor of a 128-byte-swizzled operand starting at shared address `addr`.
__device__ __forceinline__ uint64_t desc_sw128(uint32_t addr, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  uint64_t d = static_cast<uint64_t>((addr & 0x3FFFF) >> 4);
  d |= static_cast<uint64_t>((lbo_bytes & 0x3FFFF) >> 4) << 16;
  d |= static_cast<uint64_t>((sbo_bytes & 0x3FFFF) >> 4) << 32;
  d |= static_cast<uint64_t>(1) << 62;  // layout type 1: 128-byte swizzle
  return d;
}
__device__ __forceinline__ uint64_t desc_k_major(uint32_t addr) { return desc_sw128(addr, 16, 1024); }
// LBO (the step to the next 64 M/N columns) is never used by 64-wide tiles; it is set equal to SBO
// so that the descriptor reads the same under either reading of the two fields.
__device__ __forceinline__ uint64_t desc_mn_major(uint32_t addr) { return desc_sw128(addr, 1024, 1024); }

__device__ __forceinline__ void fence() {
#if SK_HAS_WGMMA
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void commit() {
#if SK_HAS_WGMMA
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wait() {
#if SK_HAS_WGMMA
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
// Shared memory written by ordinary stores (or cp.async) and read next by wgmma: each writing
// thread fences before the barrier that publishes the writes.
__device__ __forceinline__ void fence_proxy_async() {
#if SK_HAS_WGMMA
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
// Keeps the compiler from moving accesses of accumulator registers across wait().
template <int N>
__device__ __forceinline__ void fence_operand(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// fence_operand over each of P accumulators (the per-panel dK / dV of the hd-128 backward).
template <int P, int N>
__device__ __forceinline__ void fence_accumulators(float (&d)[P][N]) {
#pragma unroll
  for (int i = 0; i < P; ++i) fence_operand(d[i]);
}

// Keeps A fragments in their registers until after the wait() that retires the products reading
// them (the compiler sees the wgmma asm consume them at issue and could reuse the registers).
template <int N>
__device__ __forceinline__ void keep_alive_fragments(uint32_t (&a)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+r"(a[i][e])::"memory");
}

#if SK_HAS_WGMMA
// D (64 x 64, fp32) (+)= A (64 x 16, shared) * B (16 x 64, shared); TA / TB: the operand is M- / N-major.
template <int TA, int TB>
__device__ __forceinline__ void wgmma_m64n64k16_ss(float (&d)[32], uint64_t desc_a, uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, %35, %36;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(TA), "n"(TB));
}

// D (64 x 64, fp32) (+)= A (64 x 16, registers: the mma.m16n8k16 A fragment per warp) * B (16 x 64, shared).
template <int TB>
__device__ __forceinline__ void wgmma_m64n64k16_rs(float (&d)[32], const uint32_t (&a)[4], uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate), "n"(TB));
}

// D (64 x 32, fp32) (+)= A (64 x 16, shared) * B (16 x 32, shared); TA / TB: the operand is M- / N-major.
template <int TA, int TB>
__device__ __forceinline__ void wgmma_m64n32k16_ss(float (&d)[16], uint64_t desc_a, uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1, %19, %20;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(TA), "n"(TB));
}

#endif  // SK_HAS_WGMMA

}  // namespace sk_wgmma
