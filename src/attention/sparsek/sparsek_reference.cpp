// SparseK attention CPU reference (sparsek_reference.h). Plain loops over (b, h, i, visible keys);
// attention arithmetic in the tensors' type (f64 for gradchecks), selection (tau, masks) in double.
// The score gradient goes through a dense (T, T) matrix G of dL/dm_ij per score row, summed over
// the heads that share the row, then du_j = sum_i [j fractional at i] (G_ij - c_i).
#include "attention/sparsek/sparsek_reference.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/node.h"
#include "ops/op_common.h"
#include "util/check.h"

namespace sk::attention::sparsek {

namespace {

void check_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& u, const SparsekParams& p) {
  ops::check_floating("sparsek attention", "q", q);
  ops::check_same_shape("sparsek attention", "q", q, "k", k);
  ops::check_same_shape("sparsek attention", "q", q, "v", v);
  ops::check_same_dtype("sparsek attention", "q", q, "k", k);
  ops::check_same_dtype("sparsek attention", "q", q, "v", v);
  ops::check_same_dtype("sparsek attention", "q", q, "u", u);
  SK_CHECK(q.ndim() == 4, "sparsek attention: q, k, v must be (B, H, T, D), got ", shape_str(q.shape()));
  SK_CHECK(u.ndim() == 3 && u.size(0) == q.size(0) && (u.size(1) == q.size(1) || u.size(1) == 1) &&
               u.size(2) == q.size(2),
           "sparsek attention: scores u must be (B, H, T) or (B, 1, T) for q ", shape_str(q.shape()), ", got ",
           shape_str(u.shape()));
  SK_CHECK(q.device().is_cpu() && u.device().is_cpu(), "sparsek_attention_reference runs on the CPU, got ",
           q.device().str());
  SK_CHECK(p.k >= 1, "sparsek attention: k must be >= 1 (config attention.k), got ", p.k);
  SK_CHECK(p.window >= 0, "sparsek attention: window must be >= 0 (config attention.window), got ", p.window);
}

// One key a query sees: a window key (m = 1, no score gradient) or a selected key (m_ij).
struct VisibleKey {
  int64_t j;
  double m;
  bool selected;
};

std::vector<VisibleKey> visible_keys(const CausalSelection& sel, const std::vector<double>& u, int64_t i) {
  std::vector<VisibleKey> keys;
  if (sel.window > 0)
    for (int64_t j = std::max<int64_t>(0, i - sel.window + 1); j <= i; ++j) keys.push_back({j, 1.0, false});
  for (int64_t j : sel.selected_keys(i)) keys.push_back({j, sel.mask(i, j, u[j]), true});
  return keys;
}

std::vector<double> score_row(const Tensor& u, int64_t row) {
  const int64_t T = u.size(2);
  std::vector<double> r(static_cast<size_t>(T));
  ops::dispatch_cpu_float(u.dtype(), "sparsek attention", [&]<typename F>() {
    for (int64_t j = 0; j < T; ++j) r[j] = double(u.data<F>()[row * T + j]);
  });
  return r;
}

// Logit of a visible key: a_ij, plus log m_ij in log_mask mode.
template <typename F>
F masked_logit(F a, const VisibleKey& key, MaskMode mode) {
  return mode == MaskMode::LogMask ? a + F(std::log(key.m)) : a;
}

}  // namespace

MaskMode parse_mask_mode(const std::string& name) {
  if (name == "gate_values") return MaskMode::GateValues;
  if (name == "log_mask") return MaskMode::LogMask;
  SK_FAIL("attention.mask_mode = \"", name, "\" is not one of: gate_values, log_mask");
}

const char* mask_mode_name(MaskMode m) { return m == MaskMode::LogMask ? "log_mask" : "gate_values"; }

int64_t sparsek_keys_attended(int64_t T, int64_t k, int64_t window) {
  int64_t keys = 0;
  for (int64_t i = 0; i < T; ++i)
    keys += std::min(window, i + 1) + std::min(k, std::max<int64_t>(0, i - window + 1));
  return keys;
}

SparsekForward sparsek_attention_forward(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                         const Tensor& u_in, const SparsekParams& params) {
  check_inputs(q_in, k_in, v_in, u_in, params);
  Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous(), u = u_in.contiguous();
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), Hu = u.size(1);
  SparsekForward f{Tensor::empty(q.shape(), q.dtype()), Tensor::empty({B, H, T}, q.dtype()), {}};
  std::vector<std::vector<double>> scores;
  for (int64_t r = 0; r < B * Hu; ++r) {
    scores.push_back(score_row(u, r));
    f.selection.push_back(causal_selection(scores.back().data(), T, params.k, params.window));
  }
  ops::dispatch_cpu_float(q.dtype(), "sparsek_attention_reference", [&]<typename F>() {
    const F s = F(1) / std::sqrt(F(D));
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < H; ++h) {
        const int64_t bh = b * H + h, row = b * Hu + (Hu == 1 ? 0 : h);
        const CausalSelection& sel = f.selection[row];
        const F *Q = q.data<F>() + bh * T * D, *K = k.data<F>() + bh * T * D, *V = v.data<F>() + bh * T * D;
        F* O = f.out.data<F>() + bh * T * D;
        F* L = f.lse.data<F>() + bh * T;
        for (int64_t i = 0; i < T; ++i) {
          const std::vector<VisibleKey> keys = visible_keys(sel, scores[row], i);
          std::vector<F> logit(keys.size());
          F mx = -std::numeric_limits<F>::infinity();
          for (size_t n = 0; n < keys.size(); ++n) {
            F dot = 0;
            for (int64_t d = 0; d < D; ++d) dot += Q[i * D + d] * K[keys[n].j * D + d];
            logit[n] = masked_logit(s * dot, keys[n], params.mask_mode);
            mx = std::max(mx, logit[n]);
          }
          F sum = 0;
          for (size_t n = 0; n < keys.size(); ++n) sum += std::exp(logit[n] - mx);
          const F lse = mx + std::log(sum);
          L[i] = lse;
          for (int64_t d = 0; d < D; ++d) O[i * D + d] = 0;
          for (size_t n = 0; n < keys.size(); ++n) {
            F w = std::exp(logit[n] - lse);
            if (params.mask_mode == MaskMode::GateValues) w *= F(keys[n].m);
            for (int64_t d = 0; d < D; ++d) O[i * D + d] += w * V[keys[n].j * D + d];
          }
        }
      }
    }
  });
  return f;
}

SparsekGrads sparsek_attention_backward(const Tensor& dout_in, const Tensor& q_in, const Tensor& k_in,
                                        const Tensor& v_in, const Tensor& u_in, const SparsekForward& fwd,
                                        const SparsekParams& params) {
  check_inputs(q_in, k_in, v_in, u_in, params);
  Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous(), u = u_in.contiguous();
  Tensor dout = dout_in.contiguous();
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), Hu = u.size(1);
  SK_CHECK(int64_t(fwd.selection.size()) == B * Hu, "sparsek attention backward: forward state has ",
           fwd.selection.size(), " selections, expected ", B * Hu);
  SparsekGrads g{Tensor::zeros(q.shape(), q.dtype()), Tensor::zeros(q.shape(), q.dtype()),
                 Tensor::zeros(q.shape(), q.dtype()), Tensor::zeros(u.shape(), u.dtype())};
  ops::dispatch_cpu_float(q.dtype(), "sparsek_attention_reference_backward", [&]<typename F>() {
    const F s = F(1) / std::sqrt(F(D));
    std::vector<double> G(size_t(T * T));  // dL/dm_ij of one score row, summed over its heads
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t hu = 0; hu < Hu; ++hu) {
        const int64_t row = b * Hu + hu;
        const CausalSelection& sel = fwd.selection[row];
        const std::vector<double> scores = score_row(u, row);
        std::fill(G.begin(), G.end(), 0.0);
        for (int64_t h = (Hu == 1 ? 0 : hu); h < (Hu == 1 ? H : hu + 1); ++h) {
          const int64_t off = (b * H + h) * T * D;
          const F *Q = q.data<F>() + off, *K = k.data<F>() + off, *V = v.data<F>() + off;
          const F *O = fwd.out.data<F>() + off, *dO = dout.data<F>() + off, *L = fwd.lse.data<F>() + (b * H + h) * T;
          F *dQ = g.dq.data<F>() + off, *dK = g.dk.data<F>() + off, *dV = g.dv.data<F>() + off;
          for (int64_t i = 0; i < T; ++i) {
            F Di = 0;
            for (int64_t d = 0; d < D; ++d) Di += dO[i * D + d] * O[i * D + d];
            for (const VisibleKey& key : visible_keys(sel, scores, i)) {
              const int64_t j = key.j;
              F dot = 0, dp = 0;
              for (int64_t d = 0; d < D; ++d) {
                dot += Q[i * D + d] * K[j * D + d];
                dp += dO[i * D + d] * V[j * D + d];
              }
              const F a = s * dot, m = F(key.m);
              const F P = std::exp(masked_logit(a, key, params.mask_mode) - L[i]);
              F da, dm, pv;  // dL/da_ij, dL/dm_ij, weight of dO_i in dv_j
              if (params.mask_mode == MaskMode::GateValues) {
                pv = P * m;
                dm = P * dp;
                da = P * (m * dp - Di);
              } else {
                pv = P;
                da = P * (dp - Di);
                dm = std::exp(a - L[i]) * (dp - Di);  // = da / m without dividing by a small m
              }
              for (int64_t d = 0; d < D; ++d) {
                dV[j * D + d] += pv * dO[i * D + d];
                dQ[i * D + d] += s * da * K[j * D + d];
                dK[j * D + d] += s * da * Q[i * D + d];
              }
              if (key.selected) G[i * T + j] += double(dm);
            }
          }
        }
        // Through tau: m_ij = u_j - tau_i for fractional j, tau_i = (sum_{l in S_i} u_l + U - k) / |S_i|.
        F* dU = g.du.data<F>() + row * T;
        for (int64_t i = 0; i < T; ++i) {
          double sum = 0;
          int64_t count = 0;
          for (int64_t j = 0; j <= i - params.window; ++j)
            if (sel.fractional(i, j)) sum += G[i * T + j], ++count;
          if (count == 0) continue;
          const double c = sum / double(count);
          for (int64_t j = 0; j <= i - params.window; ++j)
            if (sel.fractional(i, j)) dU[j] += F(G[i * T + j] - c);
        }
      }
    }
  });
  return g;
}

Tensor sparsek_attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& u,
                                   const SparsekParams& params) {
  SparsekForward f = sparsek_attention_forward(q.detach(), k.detach(), v.detach(), u.detach(), params);
  if (autograd::needs_grad({&q, &k, &v, &u})) {
    Tensor qd = q.detach(), kd = k.detach(), vd = v.detach(), ud = u.detach();
    // A detached output handle: holding the output itself would make a reference cycle.
    SparsekForward saved{f.out.detach(), f.lse, f.selection};
    autograd::record("attention_sparsek", {q, k, v, u}, {f.out},
                     [qd, kd, vd, ud, saved, params](const std::vector<Tensor>& g, const std::vector<bool>&) {
                       SparsekGrads d = sparsek_attention_backward(g[0], qd, kd, vd, ud, saved, params);
                       return std::vector<Tensor>{d.dq, d.dk, d.dv, d.du};
                     });
  }
  return f.out;
}

}  // namespace sk::attention::sparsek
