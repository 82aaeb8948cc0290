// Host side of SparseK attention on CUDA (sparsek_cuda.h): argument checks, allocation of the
// selection state and outputs, and the calls into kernels/attention/sparsek/*.cu.
#include "attention/sparsek/sparsek_cuda.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "attention/cuda_attention_args.h"
#include "autograd/node.h"
#include "util/check.h"
#include "util/env.h"

#ifdef SPARSEK_HAS_CUDA
#include "backend/cuda_context.h"
#include "kernels/attention/sparsek/sparsek_attention.h"
#endif

namespace sk::attention::sparsek {

bool sparsek_attention_cuda_supported(const Tensor& q) { return fused_attention_takes(q); }

#ifdef SPARSEK_HAS_CUDA
namespace {

constexpr const char* kOp = "sparsek attention (CUDA)";

SkSparsekForwardParams kernel_params(const Tensor& q, const Tensor& k, const Tensor& v, int score_heads,
                                     const SparsekCudaSelection& sel, const SparsekParams& params) {
  SkSparsekForwardParams p{};
  p.attn = attention_params(q, k, v, params.window, kOp);
  // The window part's flash backward kernel (SPARSEK_FLASH_BWD, as for full attention).
  p.attn.backward_kernel = flash_backward_kernel_from_env();
  check_wgmma_choice("SPARSEK_FLASH_BWD", p.attn.backward_kernel, q.size(3), q.device().index, /*wgmma_pipelined*/ 4);
  p.score_heads = score_heads;
  p.k = int(params.k);
  p.log_mask = params.mask_mode == MaskMode::LogMask ? 1 : 0;
  p.u = sel.u.data<float>();
  p.tau = sel.tau.data<double>();
  p.ranges = static_cast<const SkKeyRange*>(sel.ranges.data_ptr());
  p.cand = sel.cand.data<int32_t>();
  p.cand_n = sel.cand_n.data<int32_t>();
  // SPARSEK_SPARSEK_UNIFORM: "on" (default: chunks of uniform keys skip the per-element tests) or
  // "off" (every candidate chunk takes the general per-element path; for A/B measurements).
  p.cand_uniform = util::env_choice("SPARSEK_SPARSEK_UNIFORM", {"on", "off"}) == 0 ? sel.cand_uniform.data<int32_t>()
                                                                                  : nullptr;
  p.cand_cap = int(sel.cap);
  p.tile_q = int(sel.tile_q);
  // SPARSEK_SPARSEK_FWD: "staged3" (default: the forward's candidate list in shared memory, the
  // chunk metadata loaded a chunk ahead, and at hd 64 / 64-query tiles compiled for 3 blocks per SM;
  // kernels/attention/sparsek/forward.cu; 12% faster than "staged" at 16k on an H100, 2026-12-05),
  // "staged" (the same at 2 blocks per SM) or "sync" (the metadata loaded right before each chunk's
  // compute; 11% slower than "staged" at 16k on an H100, 2026-12-05).
  static constexpr int kStagedOf[] = {2, 1, 0};
  p.staged_meta = kStagedOf[util::env_choice("SPARSEK_SPARSEK_FWD", {"staged3", "staged", "sync"})];
  // SPARSEK_SPARSEK_BWD: "pipelined3" (default: G summed by warp shuffles, the next chunk's gathers
  // issued before this chunk's compute, at hd 64 / 64-query tiles compiled for 3 blocks of 4 warps
  // per SM: 3.76 -> 3.23 ms against "pipelined" at 16k on an H100, 2026-12-05), "keysplit" (the same
  // with two warps per 16 query rows, each over half of a chunk's keys, two blocks of 8 warps per SM:
  // faster than pipelined3 before the cheaper gathers / atomics / D_i pass of 2026-12-06, 2% slower
  // fwd+bwd after them, H100), "pipelined" (2 blocks per SM), "gsum" (G by shuffles, one chunk at a
  // time) or "sync" (a shared atomic per fractional element: 2x slower; backward.cu).
  static constexpr int kBwdVariantOf[] = {3, 4, 2, 1, 0};
  p.bwd_variant =
      kBwdVariantOf[util::env_choice("SPARSEK_SPARSEK_BWD", {"pipelined3", "keysplit", "pipelined", "gsum", "sync"})];
  return p;
}

}  // namespace
#endif

#ifdef SPARSEK_HAS_CUDA
namespace {

// SPARSEK_SELECTION / SPARSEK_SELECTION_CHUNK (sparsek_cuda.h).
SelectionPass env_pass() {
  const char* e = std::getenv("SPARSEK_SELECTION");
  if (!e || !*e) return kSelectionDefault;
  const std::string v(e);
  if (v == "sequential") return SelectionPass::Sequential;
  if (v == "chunked") return SelectionPass::Chunked;
  if (v == "auto") return SelectionPass::Auto;
  SK_FAIL("SPARSEK_SELECTION must be sequential, chunked or auto, got '", v, "'");
}

// An integer in [lo, hi) from the environment variable `name` (unset or empty: 0), else a clear error.
int64_t env_int(const char* name, int64_t lo, int64_t hi) {
  const char* e = std::getenv(name);
  if (!e || !*e) return 0;
  char* end = nullptr;
  const long long v = std::strtoll(e, &end, 10);
  SK_CHECK(*end == '\0' && v >= lo && v < hi, name, " must be an integer in [", lo, ", ", hi, "), got '", e, "'");
  return int64_t(v);
}

}  // namespace
#endif

SparsekCudaSelection sparsek_cuda_selection(const Tensor& u, int64_t k, int64_t window,
                                            const SelectionOptions& options) {
#ifdef SPARSEK_HAS_CUDA
  SK_CHECK(u.defined() && u.is_cuda() && u.ndim() == 3 && is_floating(u.dtype()),
           "sparsek selection (CUDA): u must be (B, Hu, T) floating on CUDA, got ",
           u.defined() ? u.str() : std::string("undefined"));
  SK_CHECK(k >= 1 && k < (int64_t(1) << 30), "sparsek selection (CUDA): k must be >= 1 (config attention.k), got ", k);
  SK_CHECK(window >= 0 && window < (int64_t(1) << 30), "sparsek selection (CUDA): bad window ", window);
  const int64_t R = u.size(0) * u.size(1), T = u.size(2);
  SK_CHECK(T < (int64_t(1) << 30) && R <= 65535, "sparsek selection (CUDA): too many rows or positions: ",
           shape_str(u.shape()));
  // The candidate-list kernel keeps two bits per key in shared memory (candidates.cu).
  SK_CHECK(T <= SK_SPARSEK_CANDIDATES_MAX_T, "sparsek selection (CUDA): T = ", T,
           " is longer than the candidate lists take (", SK_SPARSEK_CANDIDATES_MAX_T, ")");
  cuda::set_device(u.device().index);
  SparsekCudaSelection s;
  s.k = k;
  s.window = window;
  s.u = u.detach().to(DType::F32).contiguous().reshape({R, T});
  // SPARSEK_SPARSEK_TILE: "64" (default) or "128" (no faster at 16k on an H100, 2026-12-05:
  // backward about equal, forward 8% slower; docs/perf-notes.md).
  s.tile_q = util::env_choice("SPARSEK_SPARSEK_TILE", {"64", "128"}) == 1 ? SK_SPARSEK_TILE_Q_WIDE : SK_SPARSEK_TILE_Q;
  const int NT = int((T + s.tile_q - 1) / s.tile_q);
  s.cap = sk_sparsek_candidate_cap(int(k), int(T), int(s.tile_q));
  s.tau = Tensor::empty({R, T}, DType::F64, u.device());
  s.ranges = Tensor::empty({R, T, 5}, DType::I32, u.device());
  s.cand = Tensor::empty({R, NT, s.cap}, DType::I32, u.device());
  s.cand_n = Tensor::empty({R, NT}, DType::I32, u.device());
  s.cand_uniform = Tensor::empty({R, NT}, DType::I32, u.device());
  // Selection heaps (global fallback when they do not fit in shared memory); f64 elements keep
  // every row's 16-byte-multiple slice aligned.
  Tensor scratch = Tensor::empty({R, sk_sparsek_select_scratch_bytes(int(k), int(T)) / 8}, DType::F64, u.device());
  SkSparsekSelectParams p{s.u.data<float>(), int(R), int(T), int(k), int(window), 0, 4, 0};
  // SPARSEK_SELECTION_FCAP: the chunked pass's fractional-heap entries in shared memory (unset: the
  // default SK_SPARSEK_CHUNKED_FCAP); fewer fit more blocks per SM, so shorter chunks.
  p.chunked_fcap = int(env_int("SPARSEK_SELECTION_FCAP", 1, int64_t(1) << 30));
  // SPARSEK_SELECTION_HEAP: "4" (default) or "2": the chunked walk's heaps 4-ary or binary (the same
  // results; 4-ary halves the levels a pop waits on: chunk kernel 2.34 -> 2.09 ms at 16k, H100).
  p.chunked_heap_arity = util::env_choice("SPARSEK_SELECTION_HEAP", {"4", "2"}) == 0 ? 4 : 2;
  // SPARSEK_SELECTION_BLOCKS: "8" (default) or "5": the chunk kernel's registers budgeted for 8
  // resident blocks per SM, with a fractional heap of SK_SPARSEK_CHUNKED_FCAP_DENSE entries in
  // shared memory (unless SPARSEK_SELECTION_FCAP says otherwise): more walkers per SM, shorter
  // chunks (chunk kernel 2.09 -> 1.68 ms at 16k on an H100, 2026-12-05), or as before at 5 blocks
  // (48 registers, no spills), or "split": the canonical starts in one launch (blocks of 256 threads),
  // the walks in a second from the stored heaps (blocks of 64 threads: more walkers per SM, and no
  // walk waits behind its chunk's O(prefix) start). The same results bit for bit.
  static constexpr int kDenseOf[] = {1, 0, 2};
  p.chunked_dense = kDenseOf[util::env_choice("SPARSEK_SELECTION_BLOCKS", {"8", "5", "split"})];
  auto* ranges = static_cast<SkKeyRange*>(s.ranges.data_ptr());
  void* seq_scratch = scratch.numel() ? scratch.data_ptr() : nullptr;
  SelectionPass pass = options.pass == SelectionPass::Auto ? env_pass() : options.pass;
  int64_t chunk_len = options.chunk_len > 0 ? options.chunk_len : env_int("SPARSEK_SELECTION_CHUNK", 1, int64_t(1) << 30);
  // SPARSEK_SELECTION_BALANCE: unset or 0 (default): chunks of one length; q > 0: balanced chunks
  // (kernels/attention/sparsek/chunk_schedule.h) where q prefix keys of a chunk's canonical start
  // cost as much as one walked query: long chunks early, short ones late, so the chunk with the
  // longest prefix no longer sets the pass's time. Automatic chunk lengths only; the same results.
  // Measured slower than uniform chunks at q 16, 26 and 40 (H100, 2026-12-06; docs/perf-notes.md).
  const int64_t balance = env_int("SPARSEK_SELECTION_BALANCE", 0, int64_t(1) << 20);
  SK_CHECK(balance == 0 || (p.chunked_heap_arity == 4 && p.chunked_dense == 1),
           "SPARSEK_SELECTION_BALANCE=", balance, " runs with the default chunk kernel only: unset "
           "SPARSEK_SELECTION_HEAP=2 / SPARSEK_SELECTION_BLOCKS=5|split, or the balance");
  const bool chunk_ok = k <= SK_SPARSEK_CHUNKED_MAX_K && R > 0 && T > 0;
  int L = 0;
  SkChunkSchedule schedule{};
  int64_t chunk_bytes = 0;
  if (chunk_ok && pass != SelectionPass::Sequential)
    SK_KERNEL_CHECK(sk_sparsek_select_chunked_plan(int(R), int(k), int(T), int(window), int(std::min<int64_t>(chunk_len, T)),
                                                   int(balance), p.chunked_fcap, p.chunked_dense, &L, &schedule,
                                                   &chunk_bytes));
  if (pass == SelectionPass::Auto) pass = chunk_ok && T >= 2 * int64_t(L) ? SelectionPass::Chunked : SelectionPass::Sequential;
  if (pass == SelectionPass::Chunked && chunk_ok) {
    s.fallback = Tensor::empty({R}, DType::I32, u.device());
    s.chunk_len = sk_chunk_next(schedule, 0);
    s.chunks = schedule.chunks;
    Tensor chunk_scratch = Tensor::empty({(chunk_bytes + 7) / 8}, DType::F64, u.device());
    SK_KERNEL_CHECK(sk_cuda_sparsek_select_chunked(&p, &schedule, s.tau.data<double>(), ranges, s.fallback.data<int32_t>(),
                                                   chunk_scratch.data_ptr(), seq_scratch, cuda::stream()));
  } else {
    if (pass == SelectionPass::Chunked) s.fallback = Tensor::full({R}, 16.0, DType::I32).to(u.device());  // k too large
    SK_KERNEL_CHECK(sk_cuda_sparsek_select(&p, s.tau.data<double>(), ranges, seq_scratch, cuda::stream()));
  }
  SK_KERNEL_CHECK(sk_cuda_sparsek_candidates(ranges, int(R), int(T), int(s.tile_q), int(s.cap), s.cand.data<int32_t>(),
                                             s.cand_n.data<int32_t>(), s.cand_uniform.data<int32_t>(), cuda::stream()));
  return s;
#else
  (void)u, (void)k, (void)window, (void)options;
  SK_FAIL("sparsek attention: this build has no CUDA backend");
#endif
}

SparsekCudaForward sparsek_cuda_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& u,
                                        const SparsekParams& params) {
#ifdef SPARSEK_HAS_CUDA
  check_fused_attention_q(q, kOp);
  check_attention_input(k, q, kOp, "k");
  check_attention_input(v, q, kOp, "v");
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2);
  SK_CHECK(u.defined() && u.ndim() == 3 && u.size(0) == B && (u.size(1) == H || u.size(1) == 1) && u.size(2) == T &&
               u.device() == q.device(),
           "sparsek attention (CUDA): scores u must be (B, H, T) or (B, 1, T) on ", q.device().str(), " for q ",
           shape_str(q.shape()), ", got ", u.defined() ? u.str() : std::string("undefined"));
  SK_CHECK(T < (int64_t(1) << 30), "sparsek attention (CUDA): sequence too long: ", T);
  return sparsek_cuda_forward(q, k, v, sparsek_cuda_selection(u, params.k, params.window), u.size(1), params);
#else
  (void)q, (void)k, (void)v, (void)u, (void)params;
  SK_FAIL("sparsek attention: this build has no CUDA backend");
#endif
}

SparsekCudaForward sparsek_cuda_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                        const SparsekCudaSelection& selection, int64_t score_heads,
                                        const SparsekParams& params) {
#ifdef SPARSEK_HAS_CUDA
  check_fused_attention_q(q, kOp);
  check_attention_input(k, q, kOp, "k");
  check_attention_input(v, q, kOp, "v");
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  SK_CHECK((score_heads == H || score_heads == 1) && selection.tau.defined() &&
               selection.tau.shape() == Shape({B * score_heads, T}) && selection.k == params.k &&
               selection.window == params.window && selection.tau.device() == q.device(),
           "sparsek attention (CUDA): the selection does not match q ", shape_str(q.shape()), " and these params");
  cuda::set_device(q.device().index);
  SparsekCudaForward f;
  f.selection = selection;
  f.score_heads = score_heads;
  const SkSparsekForwardParams p = kernel_params(q, k, v, int(score_heads), f.selection, params);
  Tensor out = Tensor::empty({B, T, H, D}, DType::BF16, q.device());
  f.lse = Tensor::empty({B, H, T}, DType::F32, q.device());
  SK_KERNEL_CHECK(sk_cuda_sparsek_forward(&p, out.data_ptr(), f.lse.data<float>(), cuda::stream()));
  f.out = out.transpose(1, 2);
  return f;
#else
  (void)q, (void)k, (void)v, (void)selection, (void)score_heads, (void)params;
  SK_FAIL("sparsek attention: this build has no CUDA backend");
#endif
}

SparsekCudaGrads sparsek_cuda_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                       const SparsekCudaForward& fwd, const SparsekParams& params) {
#ifdef SPARSEK_HAS_CUDA
  check_fused_attention_q(q, kOp);
  check_attention_input(k, q, kOp, "k");
  check_attention_input(v, q, kOp, "v");
  check_attention_input(dout, q, kOp, "dout");
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), Hu = fwd.score_heads;
  const Tensor out_bthd = fwd.out.transpose(1, 2);
  SK_CHECK(out_bthd.is_contiguous() && out_bthd.dtype() == DType::BF16 && out_bthd.shape() == Shape({B, T, H, D}),
           "sparsek attention backward (CUDA): fwd.out must come from sparsek_cuda_forward");
  SK_CHECK(fwd.lse.is_contiguous() && fwd.lse.dtype() == DType::F32 && fwd.lse.shape() == Shape({B, H, T}),
           "sparsek attention backward (CUDA): fwd.lse must be (B, H, T) f32");
  SK_CHECK(fwd.selection.k == params.k && fwd.selection.window == params.window &&
               fwd.selection.tau.defined() && fwd.selection.tau.size(0) == B * Hu && fwd.selection.tau.size(1) == T,
           "sparsek attention backward (CUDA): the forward's selection does not match these inputs / params");
  cuda::set_device(q.device().index);
  const SkSparsekForwardParams p = kernel_params(q, k, v, int(Hu), fwd.selection, params);
  const Device dev = q.device();
  Tensor dq = Tensor::empty({B, T, H, D}, DType::BF16, dev);
  Tensor dk = Tensor::empty({B, T, H, D}, DType::BF16, dev);
  Tensor dv = Tensor::empty({B, T, H, D}, DType::BF16, dev);
  Tensor du = Tensor::empty({B, Hu, T}, DType::F32, dev);
  Tensor dkv_accum = Tensor::empty({2, B, T, H, D}, DType::F32, dev);
  // The window part (flash backward) accumulates its dQ_w in dq_window (fp32) and stores its dK_w,
  // dV_w in dkv_accum.
  Tensor delta, dq_window;
  if (params.window > 0) {
    delta = Tensor::empty({B, H, T}, DType::F32, dev);
    dq_window = Tensor::empty({B, T, H, D}, DType::F32, dev);
  }
  Tensor g_row = Tensor::empty({B * Hu, T}, DType::F32, dev), g_key = Tensor::empty({B * Hu, T}, DType::F32, dev);
  Tensor c_prefix = Tensor::empty({B * Hu, T + 1}, DType::F64, dev);
  Tensor frac_count = Tensor::empty({B * Hu, T + 1}, DType::I32, dev);
  SK_KERNEL_CHECK(sk_cuda_sparsek_backward(&p, dout.data_ptr(), attention_strides(dout, kOp, "dout"), out_bthd.data_ptr(),
                                           fwd.lse.data<float>(), dq.data_ptr(), dk.data_ptr(), dv.data_ptr(),
                                           du.data<float>(), dkv_accum.data<float>(),
                                           delta.defined() ? delta.data<float>() : nullptr,
                                           dq_window.defined() ? dq_window.data<float>() : nullptr, g_row.data<float>(),
                                           g_key.data<float>(), c_prefix.data<double>(), frac_count.data<int32_t>(),
                                           cuda::stream()));
  return SparsekCudaGrads{dq.transpose(1, 2), dk.transpose(1, 2), dv.transpose(1, 2), du};
#else
  (void)dout, (void)q, (void)k, (void)v, (void)fwd, (void)params;
  SK_FAIL("sparsek attention: this build has no CUDA backend");
#endif
}

Tensor sparsek_attention_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& u,
                              const SparsekParams& params) {
  SparsekCudaForward f = sparsek_cuda_forward(q.detach(), k.detach(), v.detach(), u.detach(), params);
  if (autograd::needs_grad({&q, &k, &v, &u})) {
    Tensor qd = q.detach(), kd = k.detach(), vd = v.detach();
    // A detached output handle: holding the output itself would make a reference cycle.
    SparsekCudaForward saved{f.out.detach(), f.lse, f.selection, f.score_heads};
    const DType u_dtype = u.dtype();
    autograd::record("attention_sparsek_cuda", {q, k, v, u}, {f.out},
                     [qd, kd, vd, saved, params, u_dtype](const std::vector<Tensor>& g, const std::vector<bool>&) {
                       Tensor dout = g[0].to(DType::BF16);
                       if (!dout.is_contiguous()) dout = dout.contiguous();
                       SparsekCudaGrads d = sparsek_cuda_backward(dout, qd, kd, vd, saved, params);
                       return std::vector<Tensor>{d.dq, d.dk, d.dv, d.du.to(u_dtype)};
                     });
  }
  return f.out;
}

}  // namespace sk::attention::sparsek
