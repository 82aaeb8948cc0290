// Host side of LSH attention on CUDA (lsh_cuda.h): argument checks, allocation of the layout,
// forward state and scratch, and the calls into kernels/attention/lsh/lsh_attention.cu (and
// lsh_decode.cu for the incremental decode).
#include "attention/lsh/lsh_cuda.h"

#include <cstdint>

#include "autograd/node.h"
#include "util/check.h"
#include "util/env.h"

#ifdef SPARSEK_HAS_CUDA
#include "backend/cuda_context.h"
#include "kernels/attention/lsh/lsh_attention.h"
#include "kernels/attention/lsh/lsh_decode.h"
#endif

namespace sk::attention::lsh {

bool lsh_attention_cuda_supported(const Tensor& q) {
#ifdef SPARSEK_HAS_CUDA
  return q.defined() && q.is_cuda() && (q.dtype() == DType::BF16 || q.dtype() == DType::F32) && q.ndim() == 4 &&
         sk_lsh_supports_head_dim(int(q.size(3))) && q.strides()[3] == 1;
#else
  (void)q;
  return false;
#endif
}

#ifdef SPARSEK_HAS_CUDA
namespace {

constexpr const char* kOp = "lsh attention (CUDA)";

// Kernel parameters for q, v of a forward with `rounds` rounds (1 when T <= chunk).
SkLshParams kernel_params(const Tensor& q, const Tensor& v, int64_t rounds, int64_t n_buckets, int64_t chunk,
                          bool look_back, const Tensor& rot_dev) {
  SK_CHECK(lsh_attention_cuda_supported(q), kOp, ": q must be (B, H, T, D) bf16 or f32 on CUDA with D in {64, 128} ",
           "and a contiguous last dim, got ", q.defined() ? q.str() : std::string("undefined"));
  SK_CHECK(v.defined() && v.shape() == q.shape() && v.dtype() == q.dtype() && v.device() == q.device() &&
               v.strides()[3] == 1,
           kOp, ": v must be shaped like q ", q.str(), " with its dtype and device, got ",
           v.defined() ? v.str() : std::string("undefined"));
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  SK_CHECK(B * H <= 65535 && B * H * rounds * T < (int64_t(1) << 31), kOp, ": too many entries: ", shape_str(q.shape()),
           " with ", rounds, " rounds");
  SkLshParams p{};
  p.q = q.data_ptr();
  p.v = v.data_ptr();
  p.dtype = q.dtype() == DType::BF16 ? SK_KDT_BF16 : SK_KDT_F32;
  p.q_sb = q.strides()[0], p.q_sh = q.strides()[1], p.q_st = q.strides()[2];
  p.v_sb = v.strides()[0], p.v_sh = v.strides()[1], p.v_st = v.strides()[2];
  p.B = int(B), p.H = int(H), p.T = int(T), p.D = int(D);
  p.rounds = int(rounds);
  p.n_buckets = int(n_buckets);
  p.chunk = int(chunk);
  p.look_back = look_back ? 1 : 0;
  p.rot = rot_dev.defined() ? rot_dev.data<float>() : nullptr;
  return p;
}

// Auto, unless SPARSEK_LSH_KERNELS says simt, mma (the newest tensor-core kernels) or mma_v1 (the
// first tensor-core version: two-kernel backward; the fallback should the newest fail).
int kernel_impl(LshCudaKernels k) {
  if (k != LshCudaKernels::Auto) return int(k);
  return util::env_choice("SPARSEK_LSH_KERNELS", {"auto", "simt", "mma", "mma_v1"});
}

}  // namespace
#endif

LshCudaLayout lsh_cuda_layout(const Tensor& q, const Tensor& rotations, int64_t chunk, LshCudaKernels kernels) {
#ifdef SPARSEK_HAS_CUDA
  SK_CHECK(chunk >= 1 && chunk < (int64_t(1) << 30), kOp, ": chunk must be >= 1, got ", chunk);
  SK_CHECK(q.defined() && q.ndim() == 4, kOp, ": q must be (B, H, T, D), got ",
           q.defined() ? q.str() : std::string("undefined"));
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  SK_CHECK(T < (int64_t(1) << 30), kOp, ": sequence too long: ", T);
  LshCudaLayout L;
  L.look_back = T > chunk;
  L.chunk = L.look_back ? chunk : std::max<int64_t>(T, 1);
  Tensor rot;
  if (L.look_back) {
    SK_CHECK(rotations.defined() && rotations.ndim() == 4 && rotations.size(0) == H && rotations.size(1) == D &&
                 rotations.size(2) >= 1 && rotations.size(3) >= 1,
             kOp, ": rotations must be (H, D, n_hashes, n_buckets/2) = (", H, ", ", D, ", R, NB/2), got ",
             rotations.defined() ? shape_str(rotations.shape()) : std::string("none"));
    L.rounds = rotations.size(2);
    L.n_buckets = 2 * rotations.size(3);
    rot = rotations.to(DType::F32).to(q.device()).contiguous();
  }
  cuda::set_device(q.device().index);
  SkLshParams p = kernel_params(q, q, L.rounds, L.n_buckets, L.chunk, L.look_back, rot);
  p.impl = kernel_impl(kernels);
  SK_CHECK(sk_lsh_chunk_impl(&p) > 0, kOp, ": the tensor-core kernels need bf16 q, v with 16-byte aligned rows, got ",
           q.str(), " (SPARSEK_LSH_KERNELS or LshCudaKernels::TensorCores asked for them)");
  const Device dev = q.device();
  const int64_t R = L.rounds, E = R * T;
  L.kscale = Tensor::empty({B, H, T}, DType::F32, dev);
  L.order = Tensor::empty({B * H, E}, DType::I32, dev);
  if (L.look_back) {
    L.buckets = Tensor::empty({B, H, R, T}, DType::I32, dev);
    Tensor keys = Tensor::empty({B * H * E}, DType::I32, dev);  // uint32 storage
    Tensor keys_out = Tensor::empty({B * H * E}, DType::I32, dev);
    Tensor vals = Tensor::empty({B * H * E}, DType::I32, dev);
    const int64_t bytes = sk_lsh_sort_temp_bytes(&p);
    Tensor temp = Tensor::empty({std::max<int64_t>(1, (bytes + 15) / 16), 4}, DType::I32, dev);
    SK_KERNEL_CHECK(sk_cuda_lsh_layout(&p, L.kscale.data<float>(), L.buckets.data<int32_t>(),
                                       static_cast<uint32_t*>(keys.data_ptr()), static_cast<uint32_t*>(keys_out.data_ptr()),
                                       vals.data<int32_t>(), temp.data_ptr(), bytes, L.order.data<int32_t>(),
                                       cuda::stream()));
  } else {
    SK_KERNEL_CHECK(sk_cuda_lsh_layout(&p, L.kscale.data<float>(), nullptr, nullptr, nullptr, nullptr, nullptr, 0,
                                       L.order.data<int32_t>(), cuda::stream()));
  }
  return L;
#else
  (void)q, (void)rotations, (void)chunk, (void)kernels;
  SK_FAIL("lsh attention: this build has no CUDA backend");
#endif
}

// The decode kernels' limits (lsh_decode.h).
constexpr int64_t kDecodeMaxD = 128, kDecodeMaxRounds = 8, kDecodeMaxChunk = 1024;
#ifdef SPARSEK_HAS_CUDA
static_assert(kDecodeMaxD == SK_LSH_DECODE_MAX_D && kDecodeMaxRounds == SK_LSH_DECODE_MAX_ROUNDS &&
              kDecodeMaxChunk == SK_LSH_DECODE_MAX_CHUNK);
#endif

bool lsh_cuda_decode_supported(const Tensor& q_cache, int64_t n_hashes, int64_t chunk) {
  return lsh_attention_cuda_supported(q_cache) && q_cache.size(3) <= kDecodeMaxD && n_hashes >= 1 &&
         n_hashes <= kDecodeMaxRounds && chunk >= 1 && chunk <= kDecodeMaxChunk;
}

Tensor lsh_cuda_decode_step(LshDecodeState& st, const Tensor& q_cache, const Tensor& v_cache, int64_t L,
                            const Tensor& rotations, int64_t chunk) {
#ifdef SPARSEK_HAS_CUDA
  SK_CHECK(rotations.defined() && rotations.ndim() == 4, kOp, ": decode needs rotations (H, D, R, NB/2)");
  const int64_t R = rotations.size(2), NB = 2 * rotations.size(3);
  SK_CHECK(lsh_cuda_decode_supported(q_cache, R, chunk), kOp, ": the decode kernels do not take ", q_cache.str(),
           " with ", R, " rounds and chunk ", chunk);
  const int64_t B = q_cache.size(0), H = q_cache.size(1), maxT = q_cache.size(2), D = q_cache.size(3);
  SK_CHECK(L > chunk && L <= maxT, kOp, ": decode position ", L - 1, " must lie in (chunk ", chunk, ", ", maxT, ")");
  cuda::set_device(q_cache.device().index);
  const Device dev = q_cache.device();
  const Tensor rot = rotations.to(DType::F32).to(dev).contiguous();
  if (!st.kscale.defined() || st.kscale.size(1) != maxT || st.rank.size(1) != R) {
    st = LshDecodeState{};
    st.kscale = Tensor::empty({B * H, maxT}, DType::F32, dev);
    st.buckets = Tensor::empty({B * H, R, maxT}, DType::I32, dev);
    st.order[0] = Tensor::empty({B * H, R, maxT}, DType::I32, dev);
    st.order[1] = Tensor::empty({B * H, R, maxT}, DType::I32, dev);
    st.rank = Tensor::empty({B * H, R}, DType::I32, dev);
    st.new_kscale = Tensor::empty({B * H}, DType::F32, dev);
    st.new_bucket = Tensor::empty({B * H, R}, DType::I32, dev);
    st.keys = Tensor::empty({B * H * R}, DType::I32, dev);
    st.vals = Tensor::empty({B * H * R}, DType::I32, dev);
  }
  SkLshDecodeParams dp{};
  dp.q = q_cache.data_ptr();
  dp.v = v_cache.data_ptr();
  dp.dtype = q_cache.dtype() == DType::BF16 ? SK_KDT_BF16 : SK_KDT_F32;
  dp.q_sb = q_cache.strides()[0], dp.q_sh = q_cache.strides()[1], dp.q_st = q_cache.strides()[2];
  dp.v_sb = v_cache.strides()[0], dp.v_sh = v_cache.strides()[1], dp.v_st = v_cache.strides()[2];
  dp.B = int(B), dp.H = int(H), dp.D = int(D), dp.rounds = int(R), dp.chunk = int(chunk), dp.L = int(L);
  dp.max_t = int(maxT);
  dp.kscale = st.kscale.data<float>();
  dp.buckets = st.buckets.data<int32_t>();
  dp.rank = st.rank.data<int32_t>();
  if (st.nb == NB && st.len == L - 1) {
    // Hash the new position alone (SIMT, as the layout below) and insert it.
    const Tensor qt = q_cache.slice(2, L - 1, L);
    SkLshParams hp = kernel_params(qt, qt, R, NB, chunk, /*look_back=*/true, rot);
    SK_KERNEL_CHECK(sk_cuda_lsh_hash_rows(&hp, st.new_kscale.data<float>(), st.new_bucket.data<int32_t>(),
                                          static_cast<uint32_t*>(st.keys.data_ptr()), st.vals.data<int32_t>(),
                                          cuda::stream()));
    SK_KERNEL_CHECK(sk_cuda_lsh_decode_insert(&dp, st.new_bucket.data<int32_t>(), st.new_kscale.data<float>(),
                                              st.order[st.cur].data<int32_t>(), st.order[1 - st.cur].data<int32_t>(),
                                              cuda::stream()));
    st.cur = 1 - st.cur;
  } else {
    const LshCudaLayout lay = lsh_cuda_layout(q_cache.slice(2, 0, L), rot, chunk, LshCudaKernels::Simt);
    SK_CHECK(lay.rounds == R && lay.n_buckets == NB, kOp, ": decode layout has ", lay.rounds, " rounds and ",
             lay.n_buckets, " buckets, expected ", R, " and ", NB);
    SK_KERNEL_CHECK(sk_cuda_lsh_decode_rebuild(&dp, lay.order.data<int32_t>(), lay.buckets.data<int32_t>(),
                                               lay.kscale.data<float>(), st.order[st.cur].data<int32_t>(),
                                               cuda::stream()));
    st.nb = NB;
  }
  st.len = L;
  Tensor out = Tensor::empty({B, H, 1, D}, q_cache.dtype(), dev);
  SK_KERNEL_CHECK(sk_cuda_lsh_decode_attend(&dp, st.order[st.cur].data<int32_t>(), out.data_ptr(), cuda::stream()));
  return out;
#else
  (void)st, (void)q_cache, (void)v_cache, (void)L, (void)rotations, (void)chunk;
  SK_FAIL("lsh attention: this build has no CUDA backend");
#endif
}

LshCudaForward lsh_cuda_forward(const Tensor& q, const Tensor& v, const Tensor& rotations, int64_t chunk,
                                LshCudaKernels kernels) {
#ifdef SPARSEK_HAS_CUDA
  LshCudaLayout L = lsh_cuda_layout(q, rotations, chunk, kernels);
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), R = L.rounds;
  // The attention does not read the rotations (already hashed).
  SkLshParams p = kernel_params(q, v, R, L.n_buckets, L.chunk, L.look_back, Tensor());
  p.impl = kernel_impl(kernels);
  SK_CHECK(sk_lsh_chunk_impl(&p) > 0, kOp, ": the tensor-core kernels need bf16 q, v with 16-byte aligned rows, got ",
           q.str(), " (SPARSEK_LSH_KERNELS or LshCudaKernels::TensorCores asked for them)");
  LshCudaForward f;
  f.kernels = kernels;
  f.kscale = L.kscale, f.order = L.order, f.buckets = L.buckets;
  f.rounds = L.rounds, f.n_buckets = L.n_buckets, f.chunk = L.chunk, f.look_back = L.look_back;
  const Device dev = q.device();
  // Each entry's output, read by the merge only (the backward takes gout from the merged output):
  // freed on return (the caching allocator reuses it once the stream has run the merge).
  Tensor o_rounds = Tensor::empty({B, H, R, T, D}, sk_lsh_o_rounds_bf16(&p) ? DType::BF16 : DType::F32, dev);
  f.lse = Tensor::empty({B, H, R, T}, DType::F32, dev);
  f.out = Tensor::empty({B, H, T, D}, q.dtype(), dev);
  SK_KERNEL_CHECK(sk_cuda_lsh_forward(&p, f.kscale.data<float>(), f.order.data<int32_t>(), o_rounds.data_ptr(),
                                      f.lse.data<float>(), f.out.data_ptr(), cuda::stream()));
  return f;
#else
  (void)q, (void)v, (void)rotations, (void)chunk, (void)kernels;
  SK_FAIL("lsh attention: this build has no CUDA backend");
#endif
}

LshGrads lsh_cuda_backward(const Tensor& dout_in, const Tensor& q, const Tensor& v, const LshCudaForward& fwd) {
#ifdef SPARSEK_HAS_CUDA
  SK_CHECK(dout_in.defined() && dout_in.shape() == q.shape() && dout_in.device() == q.device(), kOp,
           ": dout must be shaped like q ", q.str(), ", got ", dout_in.defined() ? dout_in.str() : std::string("undefined"));
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), R = fwd.rounds, E = R * T;
  SK_CHECK(fwd.out.defined() && fwd.out.shape() == q.shape() && fwd.out.dtype() == q.dtype() &&
               fwd.out.is_contiguous() && fwd.out.device() == q.device() && fwd.lse.defined() &&
               fwd.lse.shape() == Shape({B, H, R, T}) && fwd.order.defined() && fwd.order.shape() == Shape({B * H, E}),
           kOp, ": the forward state does not match q ", q.str());
  cuda::set_device(q.device().index);
  // The rotations are not read by the backward.
  SkLshParams p = kernel_params(q, v, R, fwd.n_buckets, fwd.chunk, fwd.look_back, Tensor());
  p.impl = kernel_impl(fwd.kernels);
  Tensor dout = dout_in.to(q.dtype()).contiguous();
  if (reinterpret_cast<uintptr_t>(dout.data_ptr()) % 16 != 0) {  // the tensor-core kernels load 16-byte rows
    Tensor aligned = Tensor::empty(dout.shape(), dout.dtype(), dout.device());
    aligned.copy_(dout);
    dout = aligned;
  }
  const Device dev = q.device();
  // Per-entry partial gradients: bf16 from the fused tensor-core backward, else f32. The merge
  // weights w and gout = dout . out: scratch of the prep pass (the fused backward computes its own).
  const bool fused = sk_lsh_backward_partials_bf16(&p) != 0;
  const DType partial = fused ? DType::BF16 : DType::F32;
  Tensor w, gout;
  if (!fused) {
    w = Tensor::empty({B * H, E}, DType::F32, dev);
    gout = Tensor::empty({B * H, T}, DType::F32, dev);
  }
  Tensor dq_e = Tensor::empty({B * H, E, D}, partial, dev);
  Tensor dk_e = Tensor::empty({B * H, E, D}, partial, dev);
  Tensor dv_e = Tensor::empty({B * H, E, D}, partial, dev);
  Tensor dk2_e, dv2_e;  // the fused tensor-core backward's second per-key partials
  if (sk_lsh_backward_partials(&p) == 2) {
    dk2_e = Tensor::empty({B * H, E, D}, partial, dev);
    dv2_e = Tensor::empty({B * H, E, D}, partial, dev);
  }
  LshGrads g{Tensor::empty({B, H, T, D}, q.dtype(), dev), Tensor::empty({B, H, T, D}, q.dtype(), dev)};
  SK_KERNEL_CHECK(sk_cuda_lsh_backward(&p, fwd.kscale.data<float>(), fwd.order.data<int32_t>(), fwd.out.data_ptr(),
                                       fwd.lse.data<float>(), dout.data_ptr(), w.defined() ? w.data<float>() : nullptr,
                                       gout.defined() ? gout.data<float>() : nullptr,
                                       dq_e.data_ptr(), dk_e.data_ptr(), dv_e.data_ptr(),
                                       dk2_e.defined() ? dk2_e.data_ptr() : nullptr,
                                       dv2_e.defined() ? dv2_e.data_ptr() : nullptr, g.dq.data_ptr(),
                                       g.dv.data_ptr(), cuda::stream()));
  return g;
#else
  (void)dout_in, (void)q, (void)v, (void)fwd;
  SK_FAIL("lsh attention: this build has no CUDA backend");
#endif
}

void lsh_cuda_phase_timing(bool on) {
#ifdef SPARSEK_HAS_CUDA
  SK_CHECK(sk_lsh_phase_timing(on ? 1 : 0) == 0, "lsh attention: could not create the phase-timing events");
#else
  (void)on;
#endif
}

std::vector<double> lsh_cuda_phase_read() {
#ifdef SPARSEK_HAS_CUDA
  float ms[SK_LSH_PHASES];
  SK_CHECK(sk_lsh_phase_read(ms) == 0, "lsh attention: phase timing was not enabled or an event failed");
  return std::vector<double>(ms, ms + SK_LSH_PHASES);
#else
  return {};
#endif
}

std::vector<std::string> lsh_cuda_phase_names() {
  return {"hash", "sort", "fwd_chunks", "merge", "bwd_prep", "bwd_chunks", "bwd_final"};
}

Tensor lsh_attention_cuda(const Tensor& q, const Tensor& v, const Tensor& rotations, int64_t chunk) {
  LshCudaForward f = lsh_cuda_forward(q.detach(), v.detach(), rotations, chunk);
  if (autograd::needs_grad({&q, &v})) {
    Tensor qd = q.detach(), vd = v.detach();
    auto saved = std::make_shared<LshCudaForward>(f);
    saved->out = f.out.detach();  // a detached handle (holding the output itself would be a cycle)
    autograd::record("attention_lsh_cuda", {q, v}, {f.out},
                     [qd, vd, saved](const std::vector<Tensor>& g, const std::vector<bool>&) {
                       LshGrads d = lsh_cuda_backward(g[0], qd, vd, *saved);
                       return std::vector<Tensor>{d.dq, d.dv};
                     });
  }
  return f.out;
}

}  // namespace sk::attention::lsh
