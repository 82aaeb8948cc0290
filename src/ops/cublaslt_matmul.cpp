// cuBLASLt backend of matmul/linear: row-major C (M, N) = A (M, K) B (K, N) [+ bias (N)] is
// computed as the column-major product C^T (N, M) = B^T A^T, so B goes first. bf16 or f32
// operands, fp32 compute (CUBLAS_COMPUTE_32F: no TF32 for f32 tensors, so f32 results match the
// CPU reference closely), bias fused through CUBLASLT_EPILOGUE_BIAS. The chosen algorithm is
// cached per problem; pointer alignments are passed as preferences so odd shapes (K = 17) work.
// cublaslt_matmul_epilogue adds the GELU / dGELU / bias-gradient epilogues (matmul_impl.h).
// In a CPU-only build this file only defines a stub that throws.
#include "ops/matmul_impl.h"
#include "util/check.h"

#ifdef SPARSEK_HAS_CUDA
#include <cublasLt.h>

#include <map>
#include <mutex>
#include <tuple>

#include "backend/cuda_context.h"
#include "backend/cuda_device.h"

namespace sk::ops {

namespace {

int pointer_alignment(const void* p) {
  auto v = reinterpret_cast<uintptr_t>(p);
  int a = 16;
  while (a > 1 && (v % a) != 0) a /= 2;
  return a;
}

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                                   int64_t batch_stride) {
  cublasLtMatrixLayout_t l;
  SK_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, rows, cols, ld));
  if (batch > 1) {
    int32_t bc = static_cast<int32_t>(batch);
    SK_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
    SK_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &batch_stride,
                                                     sizeof batch_stride));
  }
  return l;
}

using AlgoKey = std::tuple<int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int, int, int, int,
                           int, int64_t, int64_t>;

}  // namespace

namespace {

// What the descriptor gets beyond the operands: an epilogue and its pointers (nullptr: none).
struct EpilogueArgs {
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;  // bias input
  void* aux = nullptr;         // GELU input (written by GELU_AUX, read by DGELU)
  int64_t aux_ld = 0;
};

// out = a @ b with the epilogue; false when cuBLASLt finds no algorithm and `allow_none` (else throws).
bool run_matmul(const Tensor& out, const Tensor& a, const Tensor& b, const EpilogueArgs& e, bool allow_none) {
  cuda::set_device(out.device().index);
  MatrixOperand A = describe_operand(a), B = describe_operand(b);
  SK_CHECK(A.ok && B.ok, "cublaslt_matmul: operands must be row- or column-major");
  const int64_t M = A.rows, K = A.cols, N = B.cols;
  const int64_t batch = out.ndim() == 3 ? out.size(0) : 1;
  const cudaDataType_t type = out.dtype() == DType::BF16 ? CUDA_R_16BF : CUDA_R_32F;

  // cuBLAS operand 1 = B^T (N x K column-major), operand 2 = A^T (K x M column-major).
  const cublasOperation_t op1 = B.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op2 = A.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int64_t r1 = B.transposed ? K : N, c1 = B.transposed ? N : K;
  const int64_t r2 = A.transposed ? M : K, c2 = A.transposed ? K : M;

  cublasLtMatmulDesc_t desc;
  SK_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  SK_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op1, sizeof op1));
  SK_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &op2, sizeof op2));
  if (e.epilogue != CUBLASLT_EPILOGUE_DEFAULT)
    SK_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &e.epilogue, sizeof e.epilogue));
  if (e.bias)
    SK_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &e.bias, sizeof e.bias));
  if (e.aux) {
    SK_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &e.aux, sizeof e.aux));
    SK_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &e.aux_ld, sizeof e.aux_ld));
  }
  cublasLtMatrixLayout_t l1 = make_layout(type, r1, c1, B.ld, batch, B.batch_stride);
  cublasLtMatrixLayout_t l2 = make_layout(type, r2, c2, A.ld, batch, A.batch_stride);
  cublasLtMatrixLayout_t lc = make_layout(type, N, M, N, batch, M * N);
  auto destroy = [&] {
    cublasLtMatrixLayoutDestroy(l1);
    cublasLtMatrixLayoutDestroy(l2);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(desc);
  };

  size_t ws_bytes = 0;
  void* ws = cuda::cublas_workspace(&ws_bytes);
  const int al1 = pointer_alignment(b.data_ptr()), al2 = pointer_alignment(a.data_ptr());
  const int alc = pointer_alignment(out.data_ptr()), alb = e.bias ? pointer_alignment(e.bias) : 16;

  static std::mutex mu;
  static std::map<AlgoKey, std::pair<bool, cublasLtMatmulAlgo_t>> cache;  // found?, algorithm
  AlgoKey key{static_cast<int>(type), M, N, K, batch, A.ld, B.ld, A.batch_stride, int(op1), int(op2),
              int(e.epilogue), al1, al2, alc * 100 + alb, B.batch_stride, cuda::current_device()};
  std::pair<bool, cublasLtMatmulAlgo_t> entry{};
  bool have = false;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) {
      entry = it->second;
      have = true;
    }
  }
  if (!have) {
    cublasLtMatmulPreference_t pref;
    SK_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t wsb = ws_bytes;
    uint32_t a1 = al1, a2 = al2, ac = alc;
    SK_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb));
    SK_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a1, sizeof a1));
    SK_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &a2, sizeof a2));
    SK_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac, sizeof ac));
    SK_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ac, sizeof ac));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(cuda::cublaslt(), desc, l1, l2, lc, lc, pref, 1, &res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS && !(allow_none && st == CUBLAS_STATUS_NOT_SUPPORTED)) SK_CUBLAS_CHECK(st);
    entry = {st == CUBLAS_STATUS_SUCCESS && found > 0, res.algo};
    std::lock_guard<std::mutex> lock(mu);
    cache[key] = entry;
  }
  if (!entry.first) {
    destroy();
    SK_CHECK(allow_none, "cuBLASLt found no algorithm for ", M, "x", K, " @ ", K, "x", N, " (batch ", batch, ", ",
             dtype_name(out.dtype()), ")");
    return false;
  }
  const float alpha = 1.0f, beta = 0.0f;
  SK_CUBLAS_CHECK(cublasLtMatmul(cuda::cublaslt(), desc, &alpha, b.data_ptr(), l1, a.data_ptr(), l2, &beta,
                                 out.data_ptr(), lc, out.data_ptr(), lc, &entry.second, ws, ws_bytes, cuda::stream()));
  destroy();
  return true;
}

}  // namespace

void cublaslt_matmul(const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& bias) {
  EpilogueArgs e;
  if (bias.defined()) {
    e.epilogue = CUBLASLT_EPILOGUE_BIAS;
    e.bias = bias.data_ptr();
  }
  run_matmul(out, a, b, e, /*allow_none=*/false);
}

bool cublaslt_matmul_epilogue(const Tensor& out, const Tensor& a, const Tensor& b, const MatmulEpilogue& m) {
  SK_CHECK(out.ndim() == 2 && a.ndim() == 2 && b.ndim() == 2 && out.is_contiguous(),
           "cublaslt_matmul_epilogue: 2-D operands and a contiguous output expected");
  const int64_t M = out.size(0), N = out.size(1);
  auto expect = [&](const Tensor& t, const Shape& s, const char* what) {
    SK_CHECK(t.defined() && t.shape() == s && t.is_contiguous() && t.dtype() == out.dtype() &&
                 t.device() == out.device(),
             "cublaslt_matmul_epilogue: ", what, " must be a contiguous ", shape_str(s), " ", dtype_name(out.dtype()),
             " tensor on ", out.device().str());
  };
  // The epilogue kernels read and write aux and bias vectors in 16-byte packs: keep to shapes and
  // pointers where that holds (GPT shapes do); anything else takes the unfused path.
  auto aligned = [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; };
  if (N % 8 != 0 || M % 8 != 0 || !aligned(out)) return false;
  EpilogueArgs e;
  switch (m.kind) {
    case MatmulEpilogueKind::GeluTanhBias:
      expect(m.bias, {N}, "bias");
      expect(m.aux, {M, N}, "aux");
      if (!aligned(m.aux) || !aligned(m.bias)) return false;
      e.epilogue = CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
      e.bias = m.bias.data_ptr();
      e.aux = m.aux.data_ptr();
      e.aux_ld = N;
      break;
    case MatmulEpilogueKind::DGeluTanh:
      expect(m.aux, {M, N}, "aux");
      if (!aligned(m.aux)) return false;
      e.epilogue = CUBLASLT_EPILOGUE_DGELU;
      e.aux = m.aux.data_ptr();
      e.aux_ld = N;
      break;
  }
  return run_matmul(out, a, b, e, /*allow_none=*/true);
}

}  // namespace sk::ops

#else

namespace sk::ops {
void cublaslt_matmul(const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  SK_FAIL("matmul on CUDA: this build has no CUDA");
}
bool cublaslt_matmul_epilogue(const Tensor&, const Tensor&, const Tensor&, const MatmulEpilogue&) { return false; }
}  // namespace sk::ops

#endif
