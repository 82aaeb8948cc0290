// sparsek CUDA kernels: rotary position embeddings (rotary.h), forward and backward.
//
// One thread per output element (grid-stride). The angle is computed in double exactly as the CPU
// reference computes it (p * pow(base, -2i/R), then cos/sin in double, rounded to fp32), so the
// rotation matrix is the reference's to ~1 ulp at any position; the rotation itself is fp32 math
// with one rounding on store. The double math costs little: the kernel is memory-bound (one read
// and one write per element).
// Checked by tests/nn/test_rotary_cuda.cpp (CudaParity.rotary) against src/nn/rotary.cpp.
#include "kernels/nn/rotary.h"

#include "kernels/common/device_utils.cuh"

namespace {

using namespace sk_kern;

template <typename T>
__global__ void rotary_kernel(T* __restrict__ out, const T* __restrict__ x, int64_t n, int64_t H, int64_t T_,
                              int64_t D, int64_t sb, int64_t sh, int64_t st, int64_t R, double base, int64_t offset,
                              double sign) {
  const int64_t half = R / 2;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = e % D, row = e / D;
    const int64_t t = row % T_, bh = row / T_, h = bh % H, b = bh / H;
    const T* xr = x + b * sb + h * sh + t * st;
    if (d >= R) {
      out[e] = xr[d];
      continue;
    }
    const int64_t i = d < half ? d : d - half;
    const double theta = double(t + offset) * pow(base, -2.0 * double(i) / double(R));
    double sd, cd;
    sincos(theta, &sd, &cd);
    const float c = float(cd), s = float(sign * sd);
    const float a = load_f32(xr + i), bb = load_f32(xr + i + half);
    store_f32(out + e, d < half ? a * c - bb * s : bb * c + a * s);
  }
}

template <typename T>
int launch(void* out, const void* x, int64_t B, int64_t H, int64_t T_, int64_t D, int64_t sb, int64_t sh, int64_t st,
           int64_t R, double base, int64_t offset, double sign, cudaStream_t s) {
  const int64_t n = B * H * T_ * D;
  if (n == 0) return SK_KERNEL_OK;
  constexpr int kThreads = 256;
  const int grid = streaming_grid(ceil_div(n, kThreads));
  rotary_kernel<T><<<grid, kThreads, 0, s>>>(static_cast<T*>(out), static_cast<const T*>(x), n, H, T_, D, sb, sh, st,
                                             R, base, offset, sign);
  return launch_status();
}

int dispatch(void* out, const void* x, int64_t B, int64_t H, int64_t T_, int64_t D, int64_t sb, int64_t sh, int64_t st,
             int64_t R, double base, int64_t offset, double sign, int dtype, cudaStream_t s) {
  if (!out || !x || B < 0 || H < 0 || T_ < 0 || D < 0 || R < 0 || R > D || R % 2 != 0 || offset < 0 || !(base > 0))
    return SK_KERNEL_BAD_ARG;
  switch (dtype) {
    case SK_KDT_F32: return launch<float>(out, x, B, H, T_, D, sb, sh, st, R, base, offset, sign, s);
    case SK_KDT_BF16: return launch<__nv_bfloat16>(out, x, B, H, T_, D, sb, sh, st, R, base, offset, sign, s);
    default: return SK_KERNEL_UNSUPPORTED_DTYPE;
  }
}

}  // namespace

extern "C" int sk_cuda_rotary_forward(void* out, const void* x, int64_t B, int64_t H, int64_t T, int64_t D, int64_t sb,
                                      int64_t sh, int64_t st, int64_t rotary_dims, double base, int64_t position_offset,
                                      int dtype, cudaStream_t s) {
  return dispatch(out, x, B, H, T, D, sb, sh, st, rotary_dims, base, position_offset, 1.0, dtype, s);
}

extern "C" int sk_cuda_rotary_backward(void* dx, const void* dy, int64_t B, int64_t H, int64_t T, int64_t D,
                                       int64_t sb, int64_t sh, int64_t st, int64_t rotary_dims, double base,
                                       int64_t position_offset, int dtype, cudaStream_t s) {
  return dispatch(dx, dy, B, H, T, D, sb, sh, st, rotary_dims, base, position_offset, -1.0, dtype, s);
}
