// sparsek CUDA kernels: GELU forward / backward, erf ("exact") and tanh-approximation forms.
//
// Shapes: flat tensors of n elements. Dtypes: fp32 or bf16, fp32 math (accurate erff/tanhf/expf,
// no fast-math intrinsics), one rounding on store.
// Design: the generic vectorized kernel of kernels/common/device_utils.cuh (16-byte loads/stores,
// 4 vectors in flight per thread for forward, 2+2 for backward, one tile per block; scalar
// head/tail for any alignment or odd n). One read of x (+dy) and one write: memory-bound.
// Deterministic. dx may alias dy (each element is read and written by the same thread).
//
// Derivatives:
//   erf:  gelu'(x) = Phi(x) + x phi(x),  Phi(x) = 0.5 (1 + erf(x/sqrt2)), phi(x) = exp(-x^2/2)/sqrt(2 pi)
//   tanh: u = k (x + c x^3), t = tanh(u), k = sqrt(2/pi), c = 0.044715
//         gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2)
//
// Checked by tests/cuda/test_cuda_parity.cpp against the CPU reference in src/ops/gelu.cpp.
#include "kernels/ops/gelu.h"

#include "kernels/common/device_utils.cuh"

namespace {

using namespace sk_kern;

constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;
constexpr float kSqrt2OverPi = 0.79788456080286535588f;
constexpr float kTanhC = 0.044715f;

struct GeluErfFwd {
  __device__ __forceinline__ float operator()(float x, float) const {
    return 0.5f * x * (1.0f + erff(x * kInvSqrt2));
  }
};
// The tanh form through the identity 0.5 (1 + tanh u) = sigmoid(2u) = 1 / (1 + exp(-2u)): one
// fast exponential and one division instead of tanhf (fewer instructions per element; the
// kernel streams at the copy ceiling, so issue slots matter). exp overflowing to inf for very
// negative u gives sigmoid 0, as it should.
__device__ __forceinline__ float sigmoid_2u(float u) { return __fdividef(1.0f, 1.0f + __expf(-2.0f * u)); }

struct GeluTanhFwd {
  __device__ __forceinline__ float operator()(float x, float) const {
    const float u = kSqrt2OverPi * (x + kTanhC * x * x * x);
    return x * sigmoid_2u(u);
  }
};
struct GeluErfBwd {  // op(dy, x)
  __device__ __forceinline__ float operator()(float dy, float x) const {
    const float cdf = 0.5f * (1.0f + erff(x * kInvSqrt2));
    const float pdf = kInvSqrt2Pi * expf(-0.5f * x * x);
    return dy * (cdf + x * pdf);
  }
};
struct GeluTanhBwd {  // op(dy, x)
  __device__ __forceinline__ float operator()(float dy, float x) const {
    const float x2 = x * x;
    const float u = kSqrt2OverPi * (x + kTanhC * x2 * x);
    const float sg = sigmoid_2u(u);  // = 0.5 (1 + tanh u); 0.5 (1 - tanh^2 u) = 2 sg (1 - sg)
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kTanhC * x2);
    return dy * (sg + 2.0f * x * sg * (1.0f - sg) * du);
  }
};

}  // namespace

extern "C" int sk_cuda_gelu_forward(void* y, const void* x, int64_t n, int approximate_tanh, int dtype,
                                    cudaStream_t s) {
  if (approximate_tanh) return dispatch_elementwise<1>(y, x, nullptr, n, dtype, GeluTanhFwd{}, s);
  return dispatch_elementwise<1>(y, x, nullptr, n, dtype, GeluErfFwd{}, s);
}

extern "C" int sk_cuda_gelu_backward(void* dx, const void* dy, const void* x, int64_t n, int approximate_tanh,
                                     int dtype, cudaStream_t s) {
  if (approximate_tanh) return dispatch_elementwise<2>(dx, dy, x, n, dtype, GeluTanhBwd{}, s);
  return dispatch_elementwise<2>(dx, dy, x, n, dtype, GeluErfBwd{}, s);
}
