// sparsek CUDA kernels: deterministic reductions — sum, column sums (sum_rows), sum of squares
// accumulate (global gradient norm), and the gradient-clipping coefficient.
//
// Shapes: x flat [n] (sum, sumsq) or [N, C] contiguous (sum_rows, out [C]). Dtypes: x fp32 or
// bf16; accumulation always fp32; scalars (*out, *acc, *coef) fp32 on the device.
// Design (two-stage, bit-deterministic for a given device):
//   * sum / sumsq: stage 1 = P blocks (P depends only on n and the SM count) grid-stride over
//     16-byte packs (4 in flight per thread, one fp32 accumulator per pack lane), fixed-tree block
//     reduction, partial -> scratch[block]; stage 2 = one block sums the P partials in a fixed
//     order and writes *out (or adds to *acc).
//   * sum_rows: stage 1 = grid (column tiles of 32 units, R row chunks), block 32 x 8; each thread
//     owns one 16-byte pack of columns (or one column when rows are not 16-byte aligned) and sums
//     every 8th row of its chunk in row order (4 rows in flight); the 8 row lanes are combined in
//     a fixed order -> scratch[chunk][C];
//     stage 2 = column_reduce_kernel sums the R chunks in a fixed order and writes out in dtype.
//   * clip coefficient: a single-thread kernel, so the host never synchronizes.
//
// Checked by tests/cuda/test_cuda_parity.cpp against the CPU reference in src/ops/reduce.cpp.
#include "kernels/ops/reduce.h"

#include "kernels/common/device_utils.cuh"

namespace {

using namespace sk_kern;

constexpr int kRedBlock = 256;
constexpr int kRedUnroll = 4;
constexpr int kStage2Block = 1024;

// ---- flat reductions -----------------------------------------------------------------------
int64_t flat_blocks(int64_t n) {
  int64_t p = ceil_div(n, 16384);
  const int64_t cap = static_cast<int64_t>(sm_count()) * 4;
  if (p > cap) p = cap;
  if (p < 1) p = 1;
  return p;
}

template <bool SQUARE>
__device__ __forceinline__ float term(float v) {
  return SQUARE ? v * v : v;
}

template <typename T, bool SQUARE>
__global__ void __launch_bounds__(kRedBlock)
    flat_reduce_stage1(float* __restrict__ part, const T* __restrict__ x, int64_t n, int64_t head, int64_t nvec) {
  using P = Pack<T>;
  constexpr int N = P::N;
  __shared__ float red[32];
  const int64_t gtid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t G = static_cast<int64_t>(gridDim.x) * blockDim.x;
  float acc[N];
#pragma unroll
  for (int j = 0; j < N; ++j) acc[j] = 0.f;

  for (int64_t i = gtid; i < head; i += G) acc[0] += term<SQUARE>(load_f32(x + i));
  const T* body = x + head;
  for (int64_t base = gtid; base < nvec; base += G * kRedUnroll) {
    uint4 r[kRedUnroll];
#pragma unroll
    for (int u = 0; u < kRedUnroll; ++u) {
      const int64_t v = base + u * G;
      r[u] = v < nvec ? ld_stream(body + v * N) : make_uint4(0u, 0u, 0u, 0u);  // zeros add nothing
    }
#pragma unroll
    for (int u = 0; u < kRedUnroll; ++u)
#pragma unroll
      for (int j = 0; j < N; ++j) acc[j] += term<SQUARE>(P::get(r[u], j));
  }
  for (int64_t i = head + nvec * N + gtid; i < n; i += G) acc[0] += term<SQUARE>(load_f32(x + i));

  float total = 0.f;
#pragma unroll
  for (int j = 0; j < N; ++j) total += acc[j];
  total = block_sum(total, red);
  if (threadIdx.x == 0) part[blockIdx.x] = total;
}

template <bool ACCUMULATE>
__global__ void __launch_bounds__(kStage2Block) flat_reduce_stage2(float* out, const float* __restrict__ part,
                                                                   int64_t P) {
  __shared__ float red[32];
  float acc = 0.f;
  for (int64_t i = threadIdx.x; i < P; i += blockDim.x) acc += part[i];
  acc = block_sum(acc, red);
  if (threadIdx.x == 0) *out = ACCUMULATE ? *out + acc : acc;
}

template <typename T, bool SQUARE, bool ACCUMULATE>
int flat_reduce_impl(float* out, float* scratch, const void* xv, int64_t n, cudaStream_t s) {
  const T* x = static_cast<const T*>(xv);
  if (!aligned_to(out, 4) || !aligned_to(scratch, 4) || !aligned_to(xv, sizeof(T))) return SK_KERNEL_MISALIGNED;
  constexpr int N = Pack<T>::N;
  int64_t head = static_cast<int64_t>(((16u - misalign16(xv)) & 15u) / sizeof(T));
  if (head > n) head = n;
  const int64_t nvec = (n - head) / N;
  const int64_t P = flat_blocks(n);
  flat_reduce_stage1<T, SQUARE><<<static_cast<unsigned>(P), kRedBlock, 0, s>>>(scratch, x, n, head, nvec);
  int st = launch_status();
  if (st != SK_KERNEL_OK) return st;
  flat_reduce_stage2<ACCUMULATE><<<1, kStage2Block, 0, s>>>(out, scratch, P);
  return launch_status();
}

// ---- sum of squares over many tensors (the global gradient norm) ---------------------------
// One launch for up to kMultiMax tensors of one dtype, so that a model's ~150 gradients cost two
// launches instead of ~300 tiny ones: block b takes chunk b - start[t] (kMultiChunk elements) of
// tensor t, where start holds the prefix sums of the tensors' chunk counts (kernel parameters);
// 16-byte loads when the tensor is 16-byte aligned; fixed-tree block sum -> part[b]. Then
// flat_reduce_stage2 adds all partials, in block order, to *acc: deterministic for a given list.
constexpr int kMultiMax = 96;
constexpr int64_t kMultiChunk = 16384;
struct MultiList {
  const void* ptr[kMultiMax];
  int64_t n[kMultiMax];
  int start[kMultiMax + 1];
  int count;
};

template <typename T>
__global__ void __launch_bounds__(kRedBlock) sumsq_multi_stage1(float* __restrict__ part, const MultiList L) {
  using P = Pack<T>;
  constexpr int N = P::N;
  __shared__ float red[32];
  const int b = static_cast<int>(blockIdx.x);
  int lo = 0, hi = L.count - 1;  // the tensor t with start[t] <= b < start[t + 1] (every tensor has >= 1 chunk)
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (L.start[mid] <= b) lo = mid;
    else hi = mid - 1;
  }
  const T* x = static_cast<const T*>(L.ptr[lo]);
  const int64_t c0 = static_cast<int64_t>(b - L.start[lo]) * kMultiChunk;
  const int64_t c1 = min(c0 + kMultiChunk, L.n[lo]);
  float acc[N];
#pragma unroll
  for (int j = 0; j < N; ++j) acc[j] = 0.f;
  int64_t i = c0;
  if ((reinterpret_cast<uintptr_t>(x) & 15u) == 0) {  // c0 is a multiple of N, so x + c0 is aligned too
    const int64_t nvec = (c1 - c0) / N;
    const T* body = x + c0;
    for (int64_t base = threadIdx.x; base < nvec; base += static_cast<int64_t>(kRedBlock) * kRedUnroll) {
      uint4 r[kRedUnroll];
#pragma unroll
      for (int u = 0; u < kRedUnroll; ++u) {
        const int64_t v = base + u * kRedBlock;
        r[u] = v < nvec ? ld_stream(body + v * N) : make_uint4(0u, 0u, 0u, 0u);
      }
#pragma unroll
      for (int u = 0; u < kRedUnroll; ++u)
#pragma unroll
        for (int j = 0; j < N; ++j) acc[j] += term<true>(P::get(r[u], j));
    }
    i = c0 + nvec * N;
  }
  for (i += threadIdx.x; i < c1; i += kRedBlock) acc[0] += term<true>(load_f32(x + i));
  float total = 0.f;
#pragma unroll
  for (int j = 0; j < N; ++j) total += acc[j];
  total = block_sum(total, red);
  if (threadIdx.x == 0) part[b] = total;
}

// ---- column sums ---------------------------------------------------------------------------
struct RowChunks {
  int64_t rows_per_chunk;
  int64_t chunks;
};

// Row partition of sum_rows: about sm * 2048 / C chunks (so stage 1 has ~1000 blocks of 256
// threads for any C), at least 32 rows per chunk, at most 1024 chunks. Depends only on (N, C) and
// the SM count (not on the dtype), so the scratch size is known before the dtype dispatch.
RowChunks row_chunks(int64_t N, int64_t C) {
  int64_t R = ceil_div(static_cast<int64_t>(sm_count()) * 2048, C < 1 ? 1 : C);
  const int64_t by_rows = ceil_div(N, 32);
  if (R > by_rows) R = by_rows;
  if (R > 1024) R = 1024;
  if (R < 1) R = 1;
  RowChunks rc;
  rc.rows_per_chunk = ceil_div(N, R);
  rc.chunks = ceil_div(N, rc.rows_per_chunk);
  return rc;
}

template <typename T, bool VEC>
__global__ void __launch_bounds__(kRedBlock)
    sum_rows_stage1(float* __restrict__ part, const T* __restrict__ x, int64_t rows, int64_t C,
                    int64_t rows_per_chunk) {
  using P = Pack<T>;
  constexpr int K = VEC ? P::N : 1;  // columns per thread
  constexpr int U = 4;               // rows in flight per thread
  __shared__ float sm[kRedBlock * K];
  const int BX = blockDim.x, BY = blockDim.y;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t unit = static_cast<int64_t>(blockIdx.x) * BX + tx;  // column pack (VEC) or column
  const int64_t units = VEC ? C / K : C;
  const bool valid = unit < units;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  int64_t r1 = r0 + rows_per_chunk;
  if (r1 > rows) r1 = rows;

  float acc[K];
#pragma unroll
  for (int k = 0; k < K; ++k) acc[k] = 0.f;
  if (valid) {
    const T* col = x + unit * K;
    for (int64_t r = r0 + ty; r < r1; r += static_cast<int64_t>(BY) * U) {
      if (VEC) {
        uint4 v[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int64_t rr = r + static_cast<int64_t>(u) * BY;
          v[u] = rr < r1 ? ld_stream(col + rr * C) : make_uint4(0u, 0u, 0u, 0u);
        }
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
          for (int k = 0; k < K; ++k) acc[k] += P::get(v[u], k);
      } else {
        float v[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int64_t rr = r + static_cast<int64_t>(u) * BY;
          v[u] = rr < r1 ? load_f32(col + rr * C) : 0.f;
        }
#pragma unroll
        for (int u = 0; u < U; ++u) acc[0] += v[u];
      }
    }
  }
#pragma unroll
  for (int k = 0; k < K; ++k) sm[(ty * BX + tx) * K + k] = acc[k];
  __syncthreads();
  if (ty == 0 && valid) {
    float* dst = part + static_cast<int64_t>(blockIdx.y) * C + unit * K;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      float r = 0.f;
      for (int i = 0; i < BY; ++i) r += sm[(i * BX + tx) * K + k];
      dst[k] = r;
    }
  }
}

template <typename T>
int sum_rows_impl(void* out, float* scratch, const void* xv, int64_t N, int64_t C, cudaStream_t s) {
  const T* x = static_cast<const T*>(xv);
  if (!aligned_to(out, sizeof(T)) || !aligned_to(xv, sizeof(T)) || !aligned_to(scratch, 4))
    return SK_KERNEL_MISALIGNED;
  constexpr int N8 = Pack<T>::N;
  const bool vec = aligned16(xv) && C % N8 == 0;
  const RowChunks rc = row_chunks(N, C);
  const int64_t units = vec ? C / N8 : C;
  const int bx = 32;  // 32 column units (512 contiguous bytes in the vector path) x 8 row lanes
  const dim3 block(bx, kRedBlock / bx);
  const dim3 grid(static_cast<unsigned>(ceil_div(units, bx)), static_cast<unsigned>(rc.chunks));
  if (vec)
    sum_rows_stage1<T, true><<<grid, block, 0, s>>>(scratch, x, N, C, rc.rows_per_chunk);
  else
    sum_rows_stage1<T, false><<<grid, block, 0, s>>>(scratch, x, N, C, rc.rows_per_chunk);
  const int st = launch_status();
  if (st != SK_KERNEL_OK) return st;
  return launch_column_reduce<T>(static_cast<T*>(out), nullptr, scratch, nullptr, rc.chunks, C, s);
}

__global__ void clip_coef_kernel(float* coef, const float* sumsq, float max_norm) {
  const float c = max_norm / (sqrtf(*sumsq) + 1e-6f);
  *coef = c > 1.0f ? 1.0f : c;  // NaN stays NaN
}

}  // namespace

extern "C" size_t sk_cuda_sum_scratch_floats(int64_t n) {
  return n > 0 ? static_cast<size_t>(flat_blocks(n)) : 0;
}

extern "C" int sk_cuda_sum(float* out, float* scratch, const void* x, int64_t n, int dtype, cudaStream_t s) {
  if (!is_float_dtype(dtype)) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (n < 0 || !out) return SK_KERNEL_BAD_ARG;
  if (n == 0) return cudaMemsetAsync(out, 0, sizeof(float), s) == cudaSuccess ? SK_KERNEL_OK : SK_KERNEL_LAUNCH_FAILED;
  if (!scratch || !x) return SK_KERNEL_BAD_ARG;
  if (dtype == SK_KDT_F32) return flat_reduce_impl<float, false, false>(out, scratch, x, n, s);
  return flat_reduce_impl<__nv_bfloat16, false, false>(out, scratch, x, n, s);
}

extern "C" size_t sk_cuda_sum_rows_scratch_floats(int64_t N, int64_t C) {
  if (N <= 0 || C <= 0) return 0;
  return static_cast<size_t>(row_chunks(N, C).chunks * C);
}

extern "C" int sk_cuda_sum_rows(void* out, float* scratch, const void* x, int64_t N, int64_t C, int dtype,
                                cudaStream_t s) {
  if (!is_float_dtype(dtype)) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (N < 0 || C < 0) return SK_KERNEL_BAD_ARG;
  if (C == 0) return SK_KERNEL_OK;
  if (!out) return SK_KERNEL_BAD_ARG;
  if (N == 0) {
    return cudaMemsetAsync(out, 0, static_cast<size_t>(C) * float_dtype_size(dtype), s) == cudaSuccess
               ? SK_KERNEL_OK
               : SK_KERNEL_LAUNCH_FAILED;
  }
  if (!scratch || !x) return SK_KERNEL_BAD_ARG;
  if (dtype == SK_KDT_F32) return sum_rows_impl<float>(out, scratch, x, N, C, s);
  return sum_rows_impl<__nv_bfloat16>(out, scratch, x, N, C, s);
}

extern "C" size_t sk_cuda_sumsq_scratch_floats(int64_t n) {
  return n > 0 ? static_cast<size_t>(flat_blocks(n)) : 0;
}

extern "C" int sk_cuda_sumsq_accumulate(float* acc, float* scratch, const void* x, int64_t n, int dtype,
                                        cudaStream_t s) {
  if (!is_float_dtype(dtype)) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (n < 0 || !acc) return SK_KERNEL_BAD_ARG;
  if (n == 0) return SK_KERNEL_OK;
  if (!scratch || !x) return SK_KERNEL_BAD_ARG;
  if (dtype == SK_KDT_F32) return flat_reduce_impl<float, true, true>(acc, scratch, x, n, s);
  return flat_reduce_impl<__nv_bfloat16, true, true>(acc, scratch, x, n, s);
}

extern "C" int sk_cuda_clip_coefficient(float* coef, const float* sumsq, float max_norm, cudaStream_t s) {
  if (!coef || !sumsq) return SK_KERNEL_BAD_ARG;
  if (!aligned_to(coef, 4) || !aligned_to(sumsq, 4)) return SK_KERNEL_MISALIGNED;
  clip_coef_kernel<<<1, 1, 0, s>>>(coef, sumsq, max_norm);
  return launch_status();
}

extern "C" size_t sk_cuda_sumsq_multi_scratch_floats(const int64_t* n, int count) {
  size_t chunks = 0;
  for (int t = 0; t < count; ++t) chunks += static_cast<size_t>(ceil_div(n[t], kMultiChunk));
  return chunks;
}

extern "C" int sk_cuda_sumsq_multi_accumulate(float* acc, float* scratch, const void* const* x, const int64_t* n,
                                              int count, int dtype, cudaStream_t s) {
  if (!is_float_dtype(dtype)) return SK_KERNEL_UNSUPPORTED_DTYPE;
  if (count < 0 || !acc || (count > 0 && (!x || !n))) return SK_KERNEL_BAD_ARG;
  if (!aligned_to(acc, 4) || !aligned_to(scratch, 4)) return SK_KERNEL_MISALIGNED;
  const size_t elem = static_cast<size_t>(float_dtype_size(dtype));
  int64_t parts = 0;  // partials written so far (scratch offset)
  MultiList L{};
  auto flush = [&]() -> int {
    if (L.count == 0) return SK_KERNEL_OK;
    const int blocks = L.start[L.count];
    if (dtype == SK_KDT_F32) sumsq_multi_stage1<float><<<blocks, kRedBlock, 0, s>>>(scratch + parts, L);
    else sumsq_multi_stage1<__nv_bfloat16><<<blocks, kRedBlock, 0, s>>>(scratch + parts, L);
    parts += blocks;
    L.count = 0;
    return launch_status();
  };
  for (int t = 0; t < count; ++t) {
    if (n[t] < 0) return SK_KERNEL_BAD_ARG;
    if (n[t] == 0) continue;
    if (!x[t]) return SK_KERNEL_BAD_ARG;
    if (!aligned_to(x[t], elem)) return SK_KERNEL_MISALIGNED;
    const int64_t chunks = ceil_div(n[t], kMultiChunk);
    if (L.count == kMultiMax || static_cast<int64_t>(L.start[L.count]) + chunks > (1 << 30)) {
      const int st = flush();
      if (st != SK_KERNEL_OK) return st;
    }
    if (L.count == 0) L.start[0] = 0;
    L.ptr[L.count] = x[t];
    L.n[L.count] = n[t];
    L.start[L.count + 1] = L.start[L.count] + static_cast<int>(chunks);
    ++L.count;
  }
  const int st = flush();
  if (st != SK_KERNEL_OK) return st;
  if (parts == 0) return SK_KERNEL_OK;
  if (!scratch) return SK_KERNEL_BAD_ARG;
  flat_reduce_stage2<true><<<1, kStage2Block, 0, s>>>(acc, scratch, parts);
  return launch_status();
}
