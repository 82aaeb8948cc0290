// CPU reference of SparseK attention (../shared/docs/attention-spec.md sections 4.3 and 4.4),
// forward and backward, f32 and f64, dense-masked and written for clarity: the function every
// SparseK CUDA kernel must compute.
//
// Legend: B batch, H heads, T time, D head dim, Hu score heads (H, or 1 with shared_selection).
//   q, k, v: (B, H, T, D); u: (B, Hu, T) selection scores (the scorer's output, slope included).
//   out: (B, H, T, D); lse: (B, H, T) in the inputs' dtype, as attention/reference.h returns it.
// Query i attends in ONE softmax to its window keys [i - w + 1, i] (weight 1; none when w = 0) and
// to Sel_i (the k best keys of the prefix j <= i - w, weight m_ij = clip(u_j - tau_i, 0, 1) > 0).
//   gate_values: o_i = sum_j softmax_j(a_ij) m_ij v_j, lse over the raw logits a_ij = s q_i.k_j.
//   log_mask:    o_i = sum_j softmax_j(a_ij + log m_ij) v_j, lse over the masked logits.
// Backward (spec 4.3 / 4.4), D_i = dO_i . o_i:
//   gate_values: dv_j += P_ij m_ij dO_i;  dm_ij = P_ij dO_i.v_j;  da_ij = P_ij (m_ij dO_i.v_j - D_i)
//   log_mask:    dv_j += P_ij dO_i;  da_ij = P_ij (dO_i.v_j - D_i);  dm_ij = exp(a_ij - lse_i)(dO_i.v_j - D_i)
//   dq_i = s sum_j da_ij k_j;  dk_j = s sum_i da_ij q_i;
//   du_j = sum over queries i where j is fractional of (G_ij - c_i), G_ij = dm_ij on Sel_i (else 0),
//   c_i = mean of G_il over the fractional set of the whole prefix P_i (tau_i moves with those u_l).
// With Hu = 1 every head uses the same selection and du sums over the heads.
// Tests: tests/attention/sparsek/test_sparsek_reference.cpp (fp64 gradcheck of q, k, v, u for both
// mask modes and w in {0, 3}; k >= T and w >= T reduce to full / sliding-window attention).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "attention/sparsek/selection.h"
#include "tensor/tensor.h"

namespace sk::attention::sparsek {

enum class MaskMode { GateValues, LogMask };
// "gate_values" | "log_mask" (the values of config attention.mask_mode); throws naming the key.
MaskMode parse_mask_mode(const std::string& name);
const char* mask_mode_name(MaskMode m);

struct SparsekParams {
  int64_t k = 512;       // selected keys per query (config attention.k), >= 1
  int64_t window = 0;    // w: 0 = pure SparseK, > 0 = SparseK + sliding window of w keys
  MaskMode mask_mode = MaskMode::GateValues;
};

struct SparsekForward {
  Tensor out;                              // (B, H, T, D)
  Tensor lse;                              // (B, H, T)
  std::vector<CausalSelection> selection;  // (B * Hu): tau_i, Sel_i and key states per score row
};
// Without autograd (used by the op below and by kernel tests).
SparsekForward sparsek_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& u,
                                         const SparsekParams& params);
struct SparsekGrads {
  Tensor dq, dk, dv;  // (B, H, T, D)
  Tensor du;          // (B, Hu, T)
};
SparsekGrads sparsek_attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                        const Tensor& u, const SparsekForward& fwd, const SparsekParams& params);

// Cost model: keys attended by the T queries of one sequence, summed over the queries:
// sum_i min(w, i + 1) + min(k, max(0, i - w + 1)) (window keys plus Sel_i).
int64_t sparsek_keys_attended(int64_t T, int64_t k, int64_t window);

// Differentiable (q, k, v, u) -> out.
Tensor sparsek_attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& u,
                                   const SparsekParams& params);

}  // namespace sk::attention::sparsek
