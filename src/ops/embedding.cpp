// Embedding lookup: out[..., :] = table[idx[...], :].
//   table (V, C) f32/f64/bf16; idx (...) i32 or i64; out (..., C).
//   An index outside [0, V) throws sk::Error naming it (on CUDA the kernel raises a device flag,
//   read at the next host sync: backend/deferred_checks.h).
//   Backward: dtable[v, :] = sum over positions with idx == v of dout (scatter-add). On CUDA the
//   sum is accumulated in fp32 with atomics (order not deterministic) then converted.
//   CPU reference below; CUDA: kernels/ops/embedding.cu.
//   Tests: tests/ops/test_embedding.cpp (Gradcheck.embedding, bad index), CUDA parity.
#include <cstring>

#include "autograd/node.h"
#include "ops/op_common.h"
#include "ops/ops.h"

#ifdef SPARSEK_HAS_CUDA
#include "backend/cuda_context.h"
#include "backend/deferred_checks.h"
#include "kernels/ops/embedding.h"
#endif

namespace sk::ops {

namespace {

Tensor embedding_backward(const Tensor& dout_in, const Tensor& idx, int64_t V, int64_t C, DType dt) {
  const int64_t N = idx.numel();
  Tensor dout = dout_in.contiguous();
  if (dout.device().is_cpu()) {
    Tensor dtable = Tensor::zeros({V, C}, dt, dout.device());
    dispatch_cpu_float(dt, "embedding_backward", [&]<typename T>() {
      T* pd = dtable.data<T>();
      const T* pg = dout.data<T>();
      for (int64_t n = 0; n < N; ++n) {
        int64_t v = index_at(idx, n);
        for (int64_t c = 0; c < C; ++c) pd[v * C + c] += pg[n * C + c];
      }
    });
    return dtable;
  }
#ifdef SPARSEK_HAS_CUDA
  cuda::set_device(dout.device().index);
  Tensor acc = Tensor::zeros({V, C}, DType::F32, dout.device());
  SK_KERNEL_CHECK(sk_cuda_embedding_backward(acc.data<float>(), dout.data_ptr(), idx.data_ptr(), kernel_dtype(idx.dtype()),
                                             N, V, C, kernel_dtype(dt), cuda::stream()));
  return acc.to(dt);
#else
  return Tensor();
#endif
}

}  // namespace

Tensor embedding(const Tensor& table_in, const Tensor& idx_in) {
  check_floating("embedding", "table", table_in);
  check_defined("embedding", "idx", idx_in);
  SK_CHECK(idx_in.dtype() == DType::I32 || idx_in.dtype() == DType::I64, "embedding: idx must be i32 or i64, got ",
           dtype_name(idx_in.dtype()));
  SK_CHECK(table_in.ndim() == 2, "embedding: table must be (V, C), got ", shape_str(table_in.shape()));
  check_same_device("embedding", "table", table_in, "idx", idx_in);
  const int64_t V = table_in.size(0), C = table_in.size(1), N = idx_in.numel();
  Tensor table = table_in.detach().contiguous();
  Tensor idx = idx_in.contiguous();
  Shape out_shape = idx.shape();
  out_shape.push_back(C);
  Tensor out = Tensor::empty(out_shape, table.dtype(), table.device());

  if (table.device().is_cpu()) {
    for (int64_t n = 0; n < N; ++n) {
      int64_t v = index_at(idx, n);
      SK_CHECK(v >= 0 && v < V, "embedding: index ", v, " at position ", n, " is out of range for a table of ", V,
               " rows");
    }
    const size_t row = C * dtype_size(table.dtype());
    for (int64_t n = 0; n < N; ++n)
      std::memcpy(static_cast<char*>(out.data_ptr()) + n * row,
                  static_cast<const char*>(table.data_ptr()) + index_at(idx, n) * row, row);
  } else {
#ifdef SPARSEK_HAS_CUDA
    check_cuda_dtype("embedding", table);
    cuda::set_device(table.device().index);
    Tensor flag = Tensor::zeros({1}, DType::I32, table.device());
    SK_KERNEL_CHECK(sk_cuda_embedding_forward(out.data_ptr(), table.data_ptr(), idx.data_ptr(), kernel_dtype(idx.dtype()),
                                              N, V, C, kernel_dtype(table.dtype()), flag.data<int32_t>(), cuda::stream()));
    // Checked at the next host sync (backend/deferred_checks.h): no wait here.
    cuda::defer_error_check(flag.data<int32_t>(), table.device().index, flag.impl()->storage, [idx, V, N] {
      Tensor host = idx.to(Device::cpu());
      for (int64_t n = 0; n < N; ++n) {
        int64_t v = index_at(host, n);
        SK_CHECK(v >= 0 && v < V, "embedding: index ", v, " at position ", n, " is out of range for a table of ", V,
                 " rows");
      }
    });
#endif
  }
  if (autograd::needs_grad({&table_in})) {
    DType dt = table.dtype();
    autograd::record("embedding", {table_in, Tensor()}, {out},
                     [idx, V, C, dt](const std::vector<Tensor>& g, const std::vector<bool>&) {
                       return std::vector<Tensor>{embedding_backward(g[0], idx, V, C, dt), Tensor()};
                     });
  }
  return out;
}

}  // namespace sk::ops
