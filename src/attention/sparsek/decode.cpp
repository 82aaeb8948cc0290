// Constant-KV-memory SparseK decoding (decode.h). One query at a time per (batch, score row): move
// the key leaving the window into the prefix (selector push; if selected, into the evicted key's
// pool slot), write the new key into the ring, apply the selector's state changes to the pooled
// keys, then one softmax over the window keys (m = 1) and the pooled keys (m_tj).
#include "attention/sparsek/decode.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "util/check.h"

namespace sk::attention::sparsek {

SparsekDecoder::SparsekDecoder(int64_t batch, int64_t heads, int64_t score_heads, int64_t head_dim,
                               const SparsekParams& params)
    : B_(batch), H_(heads), Hu_(score_heads), Hs_(score_heads == 1 ? heads : 1), D_(head_dim), params_(params) {
  SK_CHECK(batch >= 1 && heads >= 1 && head_dim >= 1, "sparsek decoder: batch ", batch, ", heads ", heads,
           " and head dim ", head_dim, " must be >= 1");
  SK_CHECK(score_heads == heads || score_heads == 1, "sparsek decoder: score rows ", score_heads,
           " must be the number of heads ", heads, " or 1 (shared selection)");
  SK_CHECK(params.k >= 1, "sparsek decoder: k must be >= 1 (config attention.k), got ", params.k);
  SK_CHECK(params.window >= 0, "sparsek decoder: window must be >= 0 (config attention.window), got ", params.window);
  const int64_t k = params.k, w = params.window;
  rows_.reserve(size_t(B_ * Hu_));
  for (int64_t r = 0; r < B_ * Hu_; ++r) {
    Row row(k);
    row.slot_pos.assign(size_t(k), -1);
    row.slot_u.assign(size_t(k), 0.0);
    row.slot_state.assign(size_t(k), EntryState::Dead);
    row.pool_k.assign(size_t(Hs_ * k * D_), 0.0);
    row.pool_v.assign(size_t(Hs_ * k * D_), 0.0);
    row.ring_u.assign(size_t(w), 0.0);
    row.ring_k.assign(size_t(Hs_ * w * D_), 0.0);
    row.ring_v.assign(size_t(Hs_ * w * D_), 0.0);
    rows_.push_back(std::move(row));
  }
}

int64_t SparsekDecoder::kv_bytes() const {
  int64_t bytes = 0;
  for (const Row& r : rows_)
    bytes += int64_t(sizeof(double) * (r.pool_k.size() + r.pool_v.size() + r.ring_k.size() + r.ring_v.size()));
  return bytes;
}

int64_t SparsekDecoder::max_tracked_scores() const {
  int64_t m = 0;
  for (const Row& r : rows_) m = std::max(m, r.selector.tracked_scores());
  return m;
}

void SparsekDecoder::enter_prefix(Row& row, int64_t pos, double u, const double* kk, const double* vv,
                                  int64_t stride) {
  const int64_t k = params_.k;
  const PrefixSelector::Events& ev = row.selector.push(u, pos);
  auto slot_of = [&](int64_t p) {
    for (int64_t s = 0; s < k; ++s)
      if (row.slot_pos[s] == p) return s;
    return int64_t(-1);
  };
  if (ev.selected) {
    const int64_t slot = slot_of(ev.evicted >= 0 ? ev.evicted : -1);  // the evicted key's slot, or a free one
    SK_CHECK(slot >= 0, "sparsek decoder: internal error, no pool slot for position ", pos);
    row.slot_pos[slot] = pos;
    row.slot_u[slot] = u;
    row.slot_state[slot] = ev.entered_as;
    for (int64_t h = 0; h < Hs_; ++h)
      for (int64_t d = 0; d < D_; ++d) {
        row.pool_k[(h * k + slot) * D_ + d] = kk[h * stride + d];
        row.pool_v[(h * k + slot) * D_ + d] = vv[h * stride + d];
      }
  }
  for (int64_t p : ev.to_fractional)
    if (int64_t s = slot_of(p); s >= 0) row.slot_state[s] = EntryState::Fractional;
  for (int64_t p : ev.to_dead)
    if (int64_t s = slot_of(p); s >= 0) row.slot_state[s] = EntryState::Dead;
}

Tensor SparsekDecoder::step(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& u_in) {
  SK_CHECK(q_in.ndim() == 4 && q_in.size(0) == B_ && q_in.size(1) == H_ && q_in.size(3) == D_,
           "sparsek decoder: q must be (", B_, ", ", H_, ", n, ", D_, "), got ", shape_str(q_in.shape()));
  const int64_t n = q_in.size(2);
  SK_CHECK(k_in.shape() == q_in.shape() && v_in.shape() == q_in.shape(), "sparsek decoder: k ",
           shape_str(k_in.shape()), " and v ", shape_str(v_in.shape()), " must match q ", shape_str(q_in.shape()));
  SK_CHECK(u_in.shape() == (Shape{B_, Hu_, n}), "sparsek decoder: u must be (", B_, ", ", Hu_, ", ", n, "), got ",
           shape_str(u_in.shape()));
  SK_CHECK(q_in.device().is_cpu(), "sparsek decoder runs on the CPU, got ", q_in.device().str());
  const std::vector<double> Q = q_in.to_vector(), K = k_in.to_vector(), V = v_in.to_vector(), U = u_in.to_vector();
  std::vector<double> O(Q.size(), 0.0);
  const int64_t k = params_.k, w = params_.window;
  const double scale = 1.0 / std::sqrt(double(D_));
  std::vector<double> logit, weight;
  for (int64_t t = 0; t < n; ++t) {
    const int64_t pos = positions_ + t;
    for (int64_t b = 0; b < B_; ++b) {
      for (int64_t hu = 0; hu < Hu_; ++hu) {
        Row& row = rows_[b * Hu_ + hu];
        const int64_t h0 = Hu_ == 1 ? 0 : hu;  // first head of this score row
        const int64_t in_base = ((b * H_ + h0) * n + t) * D_, in_stride = n * D_;
        const double u_new = U[(b * Hu_ + hu) * n + t];
        if (w == 0) {
          enter_prefix(row, pos, u_new, &K[in_base], &V[in_base], in_stride);
        } else {
          const int64_t slot = pos % w;
          if (pos - w >= 0)  // the key leaving the window enters the prefix (its ring slot is reused next)
            enter_prefix(row, pos - w, row.ring_u[slot], &row.ring_k[slot * D_], &row.ring_v[slot * D_], w * D_);
          row.ring_u[slot] = u_new;
          for (int64_t h = 0; h < Hs_; ++h)
            for (int64_t d = 0; d < D_; ++d) {
              row.ring_k[(h * w + slot) * D_ + d] = K[in_base + h * in_stride + d];
              row.ring_v[(h * w + slot) * D_ + d] = V[in_base + h * in_stride + d];
            }
        }
        const double tau = row.selector.tau();
        for (int64_t h = 0; h < Hs_; ++h) {
          const double* q = &Q[in_base + h * in_stride];
          // Visible keys: the window (ring slots of positions pos - w + 1 .. pos), then the pool.
          std::vector<const double*> keys, vals;
          weight.clear();
          for (int64_t j = std::max<int64_t>(0, pos - w + 1); w > 0 && j <= pos; ++j) {
            keys.push_back(&row.ring_k[(h * w + j % w) * D_]);
            vals.push_back(&row.ring_v[(h * w + j % w) * D_]);
            weight.push_back(1.0);
          }
          for (int64_t s = 0; s < k; ++s) {
            if (row.slot_pos[s] < 0) continue;
            keys.push_back(&row.pool_k[(h * k + s) * D_]);
            vals.push_back(&row.pool_v[(h * k + s) * D_]);
            weight.push_back(sparsek_mask_value(row.slot_u[s], tau, row.slot_state[s]));
          }
          logit.assign(keys.size(), 0.0);
          double mx = -std::numeric_limits<double>::infinity();
          for (size_t e = 0; e < keys.size(); ++e) {
            double dot = 0;
            for (int64_t d = 0; d < D_; ++d) dot += q[d] * keys[e][d];
            logit[e] = scale * dot + (params_.mask_mode == MaskMode::LogMask ? std::log(weight[e]) : 0.0);
            mx = std::max(mx, logit[e]);
          }
          double sum = 0;
          for (double a : logit) sum += std::exp(a - mx);
          double* o = &O[in_base + h * in_stride];
          for (size_t e = 0; e < keys.size(); ++e) {
            double p = std::exp(logit[e] - mx) / sum;
            if (params_.mask_mode == MaskMode::GateValues) p *= weight[e];
            for (int64_t d = 0; d < D_; ++d) o[d] += p * vals[e][d];
          }
        }
      }
    }
  }
  positions_ += n;
  return Tensor::from_vector(O, q_in.shape(), q_in.dtype());
}

}  // namespace sk::attention::sparsek
