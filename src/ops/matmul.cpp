// Matrix products: matmul (2-D and batched 3-D) and linear (x W^T + b).
//   CPU reference: the strided triple loop below (double accumulation).
//   CUDA: cuBLASLt (src/ops/cublaslt_matmul.cpp): bf16 or f32 in, fp32 compute, bias fused into
//   the epilogue for linear. Operands that are transposed views of the last two dims are passed
//   to the library with a transpose flag instead of being copied.
//   Backward: dA = dC B^T, dB = A^T dC (summed over the batch when B was broadcast);
//   linear: dx = dy W, dW = dy^T x, db = sum_rows(dy).
//   Tests: tests/ops/test_matmul.cpp (Gradcheck.matmul/batched_matmul/linear), CUDA parity.
#include "ops/matmul_impl.h"

#include <thread>

#include "autograd/node.h"
#include "ops/op_common.h"
#include "ops/ops.h"

namespace sk::ops {

MatrixOperand describe_operand(const Tensor& t) {
  const int64_t r = t.size(-2), c = t.size(-1);
  const int64_t sr = t.strides()[t.ndim() - 2], sc = t.strides()[t.ndim() - 1];
  MatrixOperand m;
  m.rows = r;
  m.cols = c;
  m.batch_stride = t.ndim() == 3 ? t.strides()[0] : 0;
  if (sc == 1 && (sr >= c || r == 1)) {
    m.transposed = false;
    m.ld = std::max<int64_t>(std::max<int64_t>(sr, c), 1);
    m.ok = true;
  } else if (sr == 1 && (sc >= r || c == 1)) {
    m.transposed = true;
    m.ld = std::max<int64_t>(std::max<int64_t>(sc, r), 1);
    m.ok = true;
  }
  return m;
}

namespace {

// out (Bt, M, N) = a (Bt|1, M, K) @ b (Bt|1, K, N), strided CPU loops.
void matmul_cpu(const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& bias) {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  const int64_t Bt = out.ndim() == 3 ? out.size(0) : 1;
  const int64_t asb = a.ndim() == 3 ? a.strides()[0] : 0, bsb = b.ndim() == 3 ? b.strides()[0] : 0;
  const int64_t am = a.strides()[a.ndim() - 2], ak = a.strides()[a.ndim() - 1];
  const int64_t bk = b.strides()[b.ndim() - 2], bn = b.strides()[b.ndim() - 1];
  dispatch_cpu_float(a.dtype(), "matmul", [&]<typename T>() {
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    const T* pbias = bias.defined() ? bias.data<T>() : nullptr;
    T* po = out.data<T>();
    // Output rows r = bt * M + i in [r0, r1). Three loop orders, same sums in double:
    //  - B's rows contiguous (bn == 1): accumulate scaled rows of B (contiguous inner loop);
    //  - B's columns contiguous (bk == 1, e.g. linear's W^T): dot products along K, 4 partial sums;
    //  - anything else: the strided loop.
    auto rows = [&](int64_t r0, int64_t r1) {
      std::vector<double> row(N);
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t bt = r / M, i = r % M;
        const T* arow = pa + bt * asb + i * am;
        const T* bbase = pb + bt * bsb;
        if (bk == 1 && bn != 1 && ak == 1) {
          for (int64_t j = 0; j < N; ++j) {
            const T* bcol = bbase + j * bn;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int64_t k = 0;
            for (; k + 4 <= K; k += 4) {
              s0 += double(arow[k]) * double(bcol[k]);
              s1 += double(arow[k + 1]) * double(bcol[k + 1]);
              s2 += double(arow[k + 2]) * double(bcol[k + 2]);
              s3 += double(arow[k + 3]) * double(bcol[k + 3]);
            }
            for (; k < K; ++k) s0 += double(arow[k]) * double(bcol[k]);
            row[j] = (s0 + s1) + (s2 + s3);
          }
        } else {
          std::fill(row.begin(), row.end(), 0.0);
          for (int64_t k = 0; k < K; ++k) {
            const double av = arow[k * ak];
            const T* brow = bbase + k * bk;
            if (bn == 1)
              for (int64_t j = 0; j < N; ++j) row[j] += av * double(brow[j]);
            else
              for (int64_t j = 0; j < N; ++j) row[j] += av * double(brow[j * bn]);
          }
        }
        for (int64_t j = 0; j < N; ++j) po[r * N + j] = T(row[j] + (pbias ? double(pbias[j]) : 0.0));
      }
    };
    // Large products split their rows over the cores (each row is computed by one thread, so
    // the result does not depend on the thread count).
    const int64_t R = Bt * M;
    const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    const int64_t threads = double(R) * double(N) * double(K) < 4e6 ? 1 : std::min<int64_t>(hw, R);
    if (threads <= 1) {
      rows(0, R);
    } else {
      std::vector<std::thread> pool;
      for (int64_t t = 0; t < threads; ++t) pool.emplace_back(rows, R * t / threads, R * (t + 1) / threads);
      for (std::thread& th : pool) th.join();
    }
  });
}

}  // namespace

Tensor matmul_forward(const Tensor& a_in, const Tensor& b_in, const Tensor& bias) {
  Tensor a = a_in, b = b_in;
  if (!describe_operand(a).ok) a = a.contiguous();
  if (!describe_operand(b).ok) b = b.contiguous();
  const int64_t M = a.size(-2), N = b.size(-1);
  Shape out_shape = a.ndim() == 3 ? Shape{a.size(0), M, N} : (b.ndim() == 3 ? Shape{b.size(0), M, N} : Shape{M, N});
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  if (out.numel() == 0) return out;
  if (a.device().is_cpu()) {
    matmul_cpu(out, a, b, bias);
  } else {
    check_cuda_dtype("matmul", a);
    cublaslt_matmul(out, a, b, bias);
  }
  return out;
}

namespace {

void check_matmul_args(const Tensor& a, const Tensor& b) {
  check_floating("matmul", "a", a);
  check_floating("matmul", "b", b);
  check_same_device("matmul", "a", a, "b", b);
  check_same_dtype("matmul", "a", a, "b", b);
  SK_CHECK((a.ndim() == 2 || a.ndim() == 3) && (b.ndim() == 2 || b.ndim() == 3), "matmul: operands must be 2-D or 3-D, got ",
           shape_str(a.shape()), " and ", shape_str(b.shape()));
  SK_CHECK(a.size(-1) == b.size(-2), "matmul: inner dimensions differ: a ", shape_str(a.shape()), " has K = ", a.size(-1),
           ", b ", shape_str(b.shape()), " has K = ", b.size(-2));
  SK_CHECK(!(a.ndim() == 2 && b.ndim() == 3), "matmul: a 2-D a with a batched b is not supported (a ",
           shape_str(a.shape()), ", b ", shape_str(b.shape()), ")");
  if (a.ndim() == 3 && b.ndim() == 3)
    SK_CHECK(a.size(0) == b.size(0), "matmul: batch sizes differ: ", a.size(0), " vs ", b.size(0));
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  check_matmul_args(a_in, b_in);
  Tensor a = a_in.detach(), b = b_in.detach();
  Tensor out = matmul_forward(a, b, Tensor());
  if (autograd::needs_grad({&a_in, &b_in})) {
    const bool b_broadcast = a.ndim() == 3 && b.ndim() == 2;
    autograd::record(a.ndim() == 3 ? "batched_matmul" : "matmul", {a_in, b_in}, {out},
                     [a, b, b_broadcast](const std::vector<Tensor>& g, const std::vector<bool>& needs) {
                       Tensor dc = g[0];
                       Tensor da, db;
                       if (needs[0]) da = matmul_forward(dc, b.transpose(-2, -1), Tensor());
                       if (needs[1]) {
                         if (b_broadcast) {
                           const int64_t rows = a.size(0) * a.size(1);
                           db = matmul_forward(a.reshape({rows, a.size(2)}).transpose(0, 1),
                                               dc.reshape({rows, dc.size(2)}), Tensor());
                         } else {
                           db = matmul_forward(a.transpose(-2, -1), dc, Tensor());
                         }
                       }
                       return std::vector<Tensor>{da, db};
                     });
  }
  return out;
}

Tensor linear(const Tensor& x_in, const Tensor& w_in, const Tensor& bias_in) {
  check_floating("linear", "x", x_in);
  check_floating("linear", "weight", w_in);
  check_same_device("linear", "x", x_in, "weight", w_in);
  check_same_dtype("linear", "x", x_in, "weight", w_in);
  SK_CHECK(w_in.ndim() == 2, "linear: weight must be (out, in), got ", shape_str(w_in.shape()));
  SK_CHECK(x_in.ndim() >= 1 && x_in.size(-1) == w_in.size(1), "linear: input ", shape_str(x_in.shape()),
           " last dim does not match weight ", shape_str(w_in.shape()), " in_features ", w_in.size(1));
  const int64_t in = w_in.size(1), outf = w_in.size(0);
  if (bias_in.defined()) {
    check_same_device("linear", "x", x_in, "bias", bias_in);
    check_same_dtype("linear", "x", x_in, "bias", bias_in);
    SK_CHECK(bias_in.shape() == Shape{outf}, "linear: bias has shape ", shape_str(bias_in.shape()), ", expected (",
             outf, ",)");
  }
  const int64_t N = in == 0 ? 0 : x_in.numel() / in;
  Tensor x = x_in.detach().contiguous().view({N, in});
  Tensor w = w_in.detach();
  Tensor bias = bias_in.defined() ? bias_in.detach().contiguous() : Tensor();
  Tensor out2 = matmul_forward(x, w.transpose(0, 1), bias);
  Shape out_shape = x_in.shape();
  out_shape.back() = outf;
  Tensor out = out2.view(out_shape);
  if (autograd::needs_grad({&x_in, &w_in, &bias_in})) {
    Shape xshape = x_in.shape();
    autograd::record("linear", {x_in, w_in, bias_in}, {out},
                     [x, w, xshape, N, outf](const std::vector<Tensor>& g, const std::vector<bool>& needs) {
                       Tensor dy = g[0].contiguous().view({N, outf});
                       Tensor dx, dw, db;
                       if (needs[0]) dx = matmul_forward(dy, w, Tensor()).view(xshape);
                       if (needs[1]) dw = matmul_forward(dy.transpose(0, 1), x, Tensor());
                       if (needs[2]) db = sum_rows(dy);
                       return std::vector<Tensor>{dx, dw, db};
                     });
  }
  return out;
}

}  // namespace sk::ops
