// sparsek CUDA kernels: CUDA-only helpers shared by the .cu files (never included from g++ code).
//
// What is here:
//   * host side: cached SM count / occupancy per device, alignment tests, the launch-status check
//   * 16-byte "pack" helpers: one uint4 holds 4 fp32 or 8 bf16; load/store/unpack/pack, and
//     compile-time element access (get/set) so a row can live in registers in its storage dtype
//   * deterministic warp/block reductions (xor-butterfly shuffles: every lane ends with the
//     bit-identical value, the order of additions is fixed by the block shape only)
//   * online (max, sum-of-exp) merge used by softmax and cross-entropy
//   * a generic elementwise kernel (head peel + 16-byte vector body + tail) used by the pointwise ops
//   * a deterministic column-reduce kernel (stage 2 of the two-stage reductions through scratch)
//
// Conventions: all arithmetic in fp32; bf16 is converted with round-to-nearest-even on store.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>

#include "kernels/common/kernel_dtype.h"

namespace sk_kern {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kMaxDevices = 64;

// ------------------------------------------------------------------------------------------
// Host helpers
// ------------------------------------------------------------------------------------------

inline int current_device() {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    (void)cudaGetLastError();
    dev = 0;
  }
  return dev;
}

// Number of SMs of the current device, queried once per device and cached.
inline int sm_count() {
  static int cache[kMaxDevices] = {0};
  static std::mutex mu;
  const int dev = current_device();
  if (dev >= 0 && dev < kMaxDevices) {
    std::lock_guard<std::mutex> lock(mu);
    if (cache[dev] > 0) return cache[dev];
  }
  int v = 0;
  if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || v <= 0) {
    (void)cudaGetLastError();
    v = 132;  // H100 SXM; only a sizing hint, never a correctness input
  }
  if (dev >= 0 && dev < kMaxDevices) {
    std::lock_guard<std::mutex> lock(mu);
    cache[dev] = v;
  }
  return v;
}

// Resident blocks per SM of `kernel` at this block size / dynamic smem, cached per
// (device, kernel, threads, smem). Falls back to 1 if the query fails.
template <typename KernelT>
inline int blocks_per_sm(KernelT kernel, int threads, size_t smem) {
  static std::mutex mu;
  static std::map<std::tuple<int, const void*, int, size_t>, int> cache;
  const auto key = std::make_tuple(current_device(), reinterpret_cast<const void*>(kernel), threads, smem);
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  int b = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, kernel, threads, smem) != cudaSuccess || b <= 0) {
    (void)cudaGetLastError();
    b = 1;
  }
  std::lock_guard<std::mutex> lock(mu);
  cache[key] = b;
  return b;
}

// Grid size for a grid-stride kernel: enough blocks to cover `work_blocks`, at most one full wave.
template <typename KernelT>
inline int persistent_grid(KernelT kernel, int threads, size_t smem, int64_t work_blocks) {
  const int64_t cap = static_cast<int64_t>(sm_count()) * blocks_per_sm(kernel, threads, smem);
  int64_t g = work_blocks < cap ? work_blocks : cap;
  if (g < 1) g = 1;
  return static_cast<int>(g);
}

// Grid for streaming kernels: one tile per block, as many blocks as tiles (capped only by the
// grid limit). Measured on H100: one-shot blocks stream ~10% faster than a persistent grid.
inline int streaming_grid(int64_t tiles) {
  if (tiles < 1) tiles = 1;
  if (tiles > 0x7fffffffLL) tiles = 0x7fffffffLL;
  return static_cast<int>(tiles);
}

// Raise a kernel's dynamic shared-memory limit (needed above 48 KB, static smem included) once
// per (device, kernel, size). Returns false if the attribute cannot be set.
template <typename KernelT>
inline bool ensure_dynamic_smem(KernelT kernel, size_t bytes) {
  if (bytes + 1024 <= 48 * 1024) return true;
  static std::mutex mu;
  static std::map<std::pair<int, const void*>, size_t> done;
  const auto key = std::make_pair(current_device(), reinterpret_cast<const void*>(kernel));
  std::lock_guard<std::mutex> lock(mu);
  auto it = done.find(key);
  if (it != done.end() && it->second >= bytes) return true;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)) !=
      cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  done[key] = bytes;
  return true;
}

inline bool aligned_to(const void* p, size_t a) {
  return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0;
}
inline bool aligned16(const void* p) { return aligned_to(p, 16); }
inline unsigned misalign16(const void* p) { return static_cast<unsigned>(reinterpret_cast<uintptr_t>(p) & 15u); }

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Launch error check (after every <<<>>>).
inline int launch_status() {
  return cudaGetLastError() == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
}

inline bool is_float_dtype(int dt) { return dt == SK_KDT_F32 || dt == SK_KDT_BF16; }
inline size_t float_dtype_size(int dt) { return dt == SK_KDT_F32 ? 4 : 2; }

// ------------------------------------------------------------------------------------------
// Scalar conversions
// ------------------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ float to_f32(T v);
template <>
__device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <typename T>
__device__ __forceinline__ float load_f32(const T* p) { return to_f32<T>(*p); }
template <typename T>
__device__ __forceinline__ void store_f32(T* p, float v) { *p = from_f32<T>(v); }

// ------------------------------------------------------------------------------------------
// 16-byte packs
// ------------------------------------------------------------------------------------------

__device__ __forceinline__ uint32_t word_of(const uint4& r, int i) {
  return i == 0 ? r.x : (i == 1 ? r.y : (i == 2 ? r.z : r.w));
}
__device__ __forceinline__ void set_word(uint4& r, int i, uint32_t w) {
  if (i == 0) r.x = w;
  else if (i == 1) r.y = w;
  else if (i == 2) r.z = w;
  else r.w = w;
}

template <typename T>
struct Pack;

template <>
struct Pack<float> {
  static constexpr int N = 4;
  // element j (compile-time after unrolling) as fp32
  __device__ __forceinline__ static float get(const uint4& r, int j) { return __uint_as_float(word_of(r, j)); }
  __device__ __forceinline__ static void unpack(const uint4& r, float* f) {
    f[0] = __uint_as_float(r.x);
    f[1] = __uint_as_float(r.y);
    f[2] = __uint_as_float(r.z);
    f[3] = __uint_as_float(r.w);
  }
  __device__ __forceinline__ static uint4 pack(const float* f) {
    return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]), __float_as_uint(f[3]));
  }
  // raw bits of one element (for building a pack from scalar loads)
  __device__ __forceinline__ static uint32_t load_bits(const float* p) { return __float_as_uint(*p); }
  __device__ __forceinline__ static void set_bits(uint4& r, int j, uint32_t bits) { set_word(r, j, bits); }
};

template <>
struct Pack<__nv_bfloat16> {
  static constexpr int N = 8;
  __device__ __forceinline__ static float lo(uint32_t w) { return __uint_as_float(w << 16); }
  __device__ __forceinline__ static float hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
  __device__ __forceinline__ static float get(const uint4& r, int j) {
    const uint32_t w = word_of(r, j >> 1);
    return (j & 1) ? hi(w) : lo(w);
  }
  __device__ __forceinline__ static void unpack(const uint4& r, float* f) {
    f[0] = lo(r.x); f[1] = hi(r.x);
    f[2] = lo(r.y); f[3] = hi(r.y);
    f[4] = lo(r.z); f[5] = hi(r.z);
    f[6] = lo(r.w); f[7] = hi(r.w);
  }
  __device__ __forceinline__ static uint32_t pack2(float a, float b) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);  // .x = a (low half), .y = b
    return static_cast<uint32_t>(__bfloat16_as_ushort(h.x)) |
           (static_cast<uint32_t>(__bfloat16_as_ushort(h.y)) << 16);
  }
  __device__ __forceinline__ static uint4 pack(const float* f) {
    return make_uint4(pack2(f[0], f[1]), pack2(f[2], f[3]), pack2(f[4], f[5]), pack2(f[6], f[7]));
  }
  __device__ __forceinline__ static uint32_t load_bits(const __nv_bfloat16* p) {
    return static_cast<uint32_t>(__bfloat16_as_ushort(*p));
  }
  __device__ __forceinline__ static void set_bits(uint4& r, int j, uint32_t bits) {
    const uint32_t w = word_of(r, j >> 1);
    set_word(r, j >> 1, (j & 1) ? ((w & 0x0000ffffu) | (bits << 16)) : ((w & 0xffff0000u) | bits));
  }
};

// 16-byte global loads/stores. ld_vec/st_vec: default caching. ld_stream/st_stream: evict-first
// hints for data touched exactly once (still coherent, safe when the output aliases the input).
__device__ __forceinline__ uint4 ld_vec(const void* p) { return *reinterpret_cast<const uint4*>(p); }
__device__ __forceinline__ void st_vec(void* p, const uint4& v) { *reinterpret_cast<uint4*>(p) = v; }
__device__ __forceinline__ uint4 ld_stream(const void* p) { return __ldcs(reinterpret_cast<const uint4*>(p)); }
__device__ __forceinline__ void st_stream(void* p, const uint4& v) { __stcs(reinterpret_cast<uint4*>(p), v); }

// ------------------------------------------------------------------------------------------
// Reductions (deterministic)
// ------------------------------------------------------------------------------------------

// Sum over G consecutive lanes (G a power of two dividing 32), xor butterfly; every lane of the
// warp takes part. G = 32: the whole warp.
template <int G>
__device__ __forceinline__ float group_sum(float v) {
#pragma unroll
  for (int o = G / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_sum(float v) { return group_sum<32>(v); }
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over a 1-D block (blockDim.x a multiple of 32, <= 1024). `smem` holds >= 32 floats.
// Every thread returns the same bit-identical value. Contains two __syncthreads().
__device__ __forceinline__ float block_sum(float v, float* smem) {
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();  // previous users of smem are done
  if (lane == 0) smem[w] = v;
  __syncthreads();
  float r = lane < nw ? smem[lane] : 0.f;
  return warp_sum(r);
}

// Online softmax state merge: (m, s) <- (m, s) (+) (m2, s2), where s = sum exp(x - m).
// Symmetric (merge(a,b) == merge(b,a) bitwise), so xor-butterfly merges agree across lanes.
__device__ __forceinline__ void ms_merge(float& m, float& s, float m2, float s2) {
  const float mn = fmaxf(m, m2);
  if (mn == -INFINITY) {  // both empty / all -inf: nothing to rescale (avoids -inf - -inf)
    s = s + s2;
    m = mn;
    return;
  }
  s = s * exp2f((m - mn) * kLog2e) + s2 * exp2f((m2 - mn) * kLog2e);
  m = mn;
}
__device__ __forceinline__ void warp_ms_merge(float& m, float& s) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    ms_merge(m, s, m2, s2);
  }
}
// Block-wide (m, s) merge; smem holds >= 64 floats. All threads get identical results.
__device__ __forceinline__ void block_ms_merge(float& m, float& s, float* smem) {
  warp_ms_merge(m, s);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) {
    smem[w] = m;
    smem[32 + w] = s;
  }
  __syncthreads();
  m = lane < nw ? smem[lane] : -INFINITY;
  s = lane < nw ? smem[32 + lane] : 0.f;
  warp_ms_merge(m, s);
}

// Splits a row of len elements starting at p into a scalar head (up to the next 16-byte boundary)
// and nv whole 16-byte vectors; the rest is the scalar tail (row kernels: softmax, cross-entropy).
template <typename T>
__device__ __forceinline__ void row_split(const void* p, int64_t len, int64_t& head, int64_t& nv) {
  constexpr int N = Pack<T>::N;
  head = static_cast<int64_t>(((16u - (static_cast<unsigned>(reinterpret_cast<uintptr_t>(p)) & 15u)) & 15u) /
                              sizeof(T));
  if (head > len) head = len;
  nv = (len - head) / N;
}

// ------------------------------------------------------------------------------------------
// Generic elementwise kernel: out[i] = op(in0[i], in1[i]) (in1 unused when NIN == 1), fp32 math.
// Layout of [0, n): [0, head) scalar, [head, head + nvec*N) 16-byte vectors, rest scalar.
// head == n, nvec == 0 gives the all-scalar path (pointers with different 16-byte phase).
// Each element is read and written by the same thread, so out may alias in0/in1.
// ------------------------------------------------------------------------------------------

template <typename T, int NIN, int UNROLL, typename Op>
__global__ void __launch_bounds__(512) ew_kernel(T* out, const T* in0, const T* in1, int64_t n, int64_t head,
                                                 int64_t nvec, Op op) {
  using P = Pack<T>;
  constexpr int N = P::N;
  const int64_t gtid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t G = static_cast<int64_t>(gridDim.x) * blockDim.x;

  // scalar head (also the whole range in the scalar path)
  for (int64_t i = gtid; i < head; i += G) {
    const float a = load_f32(in0 + i);
    const float b = NIN > 1 ? load_f32(in1 + i) : 0.f;
    store_f32(out + i, op(a, b));
  }
  // vector body: block tiles of blockDim * UNROLL consecutive packs, grid-stride over tiles
  const T* v0 = in0 + head;
  const T* v1 = NIN > 1 ? in1 + head : nullptr;
  T* vo = out + head;
  const int64_t tile = static_cast<int64_t>(blockDim.x) * UNROLL;
  for (int64_t t0 = static_cast<int64_t>(blockIdx.x) * tile; t0 < nvec; t0 += static_cast<int64_t>(gridDim.x) * tile) {
    const int64_t base = t0 + threadIdx.x;
    uint4 ra[UNROLL], rb[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int64_t v = base + static_cast<int64_t>(u) * blockDim.x;
      if (v < nvec) {
        ra[u] = ld_vec(v0 + v * N);
        if (NIN > 1) rb[u] = ld_vec(v1 + v * N);
      }
    }
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int64_t v = base + static_cast<int64_t>(u) * blockDim.x;
      if (v < nvec) {
        float fa[N], fb[N], fo[N];
        P::unpack(ra[u], fa);
        if (NIN > 1) P::unpack(rb[u], fb);
#pragma unroll
        for (int j = 0; j < N; ++j) fo[j] = op(fa[j], NIN > 1 ? fb[j] : 0.f);
        st_vec(vo + v * N, P::pack(fo));
      }
    }
  }
  // scalar tail
  const int64_t tail0 = head + nvec * N;
  for (int64_t i = tail0 + gtid; i < n; i += G) {
    const float a = load_f32(in0 + i);
    const float b = NIN > 1 ? load_f32(in1 + i) : 0.f;
    store_f32(out + i, op(a, b));
  }
}

// Host launcher for ew_kernel: checks element alignment, picks the vector path when all
// pointers share the same 16-byte phase, sizes the grid to one wave.
template <typename T, int NIN, typename Op>
inline int launch_elementwise(T* out, const T* in0, const T* in1, int64_t n, Op op, cudaStream_t s) {
  constexpr int N = Pack<T>::N;
  // One 16-byte vector per thread, 512-thread blocks: measured on an H100 (GELU bf16, 100M
  // elements) 0.1368 ms against 0.1382 ms with 4 vectors per thread, 0.1372 with 256 threads,
  // 0.1419 with evict-first loads/stores; PyTorch's kernel took 0.1367 (docs/perf-notes.md).
  constexpr int UNROLL = 1;
  constexpr int kThreads = 512;
  if (n < 0) return SK_KERNEL_BAD_ARG;
  if (n == 0) return SK_KERNEL_OK;
  if (!out || !in0 || (NIN > 1 && !in1)) return SK_KERNEL_BAD_ARG;
  if (!aligned_to(out, sizeof(T)) || !aligned_to(in0, sizeof(T)) || (NIN > 1 && !aligned_to(in1, sizeof(T))))
    return SK_KERNEL_MISALIGNED;
  const unsigned ph = misalign16(out);
  const bool same_phase = misalign16(in0) == ph && (NIN < 2 || misalign16(in1) == ph);
  int64_t head = n, nvec = 0;
  if (same_phase) {
    head = static_cast<int64_t>(((16u - ph) & 15u) / sizeof(T));
    if (head > n) head = n;
    nvec = (n - head) / N;
  }
  const int64_t tail = n - head - nvec * N;
  int64_t work = ceil_div(nvec, kThreads * UNROLL);  // one tile per block
  if (ceil_div(head, kThreads) > work) work = ceil_div(head, kThreads);
  if (ceil_div(tail, kThreads) > work) work = ceil_div(tail, kThreads);
  auto kernel = ew_kernel<T, NIN, UNROLL, Op>;
  const int grid = streaming_grid(work);
  kernel<<<grid, kThreads, 0, s>>>(out, in0, in1, n, head, nvec, op);
  return launch_status();
}

// Dtype switch over launch_elementwise for the f32/bf16 launchers (elementwise.cu, gelu.cu).
template <int NIN, typename Op>
inline int dispatch_elementwise(void* out, const void* a, const void* b, int64_t n, int dtype, Op op,
                                cudaStream_t s) {
  switch (dtype) {
    case SK_KDT_F32:
      return launch_elementwise<float, NIN>(static_cast<float*>(out), static_cast<const float*>(a),
                                            static_cast<const float*>(b), n, op, s);
    case SK_KDT_BF16:
      return launch_elementwise<__nv_bfloat16, NIN>(static_cast<__nv_bfloat16*>(out),
                                                    static_cast<const __nv_bfloat16*>(a),
                                                    static_cast<const __nv_bfloat16*>(b), n, op, s);
    default:
      return SK_KERNEL_UNSUPPORTED_DTYPE;
  }
}

// ------------------------------------------------------------------------------------------
// Stage 2 of the column reductions (sum_rows, LayerNorm dweight/dbias):
//   outK[c] = sum_{p < P} partK[p * C + c]   (K = blockIdx.y in {0, 1}; out1/part1 may be null)
// Fixed order: thread (tx, ty) sums p = ty, ty + 32, ... sequentially, then row ty == 0 adds the
// 32 partials in order. Deterministic for a given (P, C).
// ------------------------------------------------------------------------------------------

constexpr int kColReduceX = 32;
constexpr int kColReduceY = 32;

template <typename T>
__global__ void __launch_bounds__(kColReduceX* kColReduceY)
    column_reduce_kernel(T* out0, T* out1, const float* part0, const float* part1, int64_t P, int64_t C) {
  __shared__ float sm[kColReduceY][kColReduceX + 1];
  T* out = blockIdx.y == 0 ? out0 : out1;
  const float* part = blockIdx.y == 0 ? part0 : part1;
  if (out == nullptr) return;  // uniform across the block
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColReduceX + tx;
  float acc = 0.f;
  if (c < C) {
#pragma unroll 4
    for (int64_t p = ty; p < P; p += kColReduceY) acc += part[p * C + c];
  }
  sm[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && c < C) {
    float r = 0.f;
#pragma unroll
    for (int i = 0; i < kColReduceY; ++i) r += sm[i][tx];
    store_f32(out + c, r);
  }
}

template <typename T>
inline int launch_column_reduce(T* out0, T* out1, const float* part0, const float* part1, int64_t P, int64_t C,
                                cudaStream_t s) {
  if (C <= 0) return SK_KERNEL_OK;
  const dim3 block(kColReduceX, kColReduceY);
  const dim3 grid(static_cast<unsigned>(ceil_div(C, kColReduceX)), out1 ? 2u : 1u);
  column_reduce_kernel<T><<<grid, block, 0, s>>>(out0, out1, part0, part1, P, C);
  return launch_status();
}

}  // namespace sk_kern
