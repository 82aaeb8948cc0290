// `sparsek bench attention`: times the fused CUDA attention (src/attention/flash_attention.h) on
// the shapes and writes JSON: bf16, `tokens` tokens per batch (B = tokens / T), 12 heads of
// dim 64 and 6 heads of dim 128 (the same width), causal full attention and a sliding window,
// T from --t-min to --t-max (powers of two), forward and forward+backward.
// SparseK (src/attention/sparsek/sparsek_cuda.h; kind "sparsek"): 12 heads x 64, per-head scores
// u = N(0, 1) + 1e-3 j (fresh random, f32; the slope is attention.score_slope's default),
// gate_values, every k in --sparsek-k and w in --sparsek-window, T from --sparsek-t-min to --t-max.
// Fields: select_ms (selection pass + candidate lists alone), fwd_kernel_ms (forward from a
// precomputed selection), fwd_ms (selection + forward), fwd_bwd_ms (selection + forward +
// backward: what a training step pays), select_share = select_ms / fwd_bwd_ms. Useful FLOPs
// count sparsek_keys_attended keys per sequence.
// Timing: median of --iters runs bracketed by CUDA events, L2 flushed before each (bench_util.h).
// Each case starts from a rested GPU (--rest-ms idle first): right after the full-causal case at
// 32k (~1 s of tensor-core load) the power limiter slowed the next case, the window's fwd+bwd at
// hd 128 by 15% (2.48 -> 2.85-2.93 ms; H200, 2026-12-04, docs/perf-notes.md), while the peers'
// windowed cases start after torch.compile's pause.
// Useful FLOPs (FlashAttention's convention): 4 * B * H * D * (keys attended, summed over queries)
// for the forward, 2.5x that for the backward; full causal counts T^2 / 2 keys per sequence.
// The PyTorch peers (SDPA flash, cuDNN, FlexAttention) run in the same device call:
// scripts/bench/bench_attention.sh.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <thread>
#include <nlohmann/json.hpp>

#include "attention/causal_attention.h"
#include "attention/flash_attention.h"
#include "attention/sparsek/sparsek_cuda.h"
#include "backend/cuda_device.h"
#include "cli/bench_util.h"
#include "cli/commands.h"
#include "util/check.h"

namespace sk::cli {

#ifdef SPARSEK_HAS_CUDA

namespace {
// Keys attended summed over the T queries of one sequence.
double keys_attended(int64_t T, int64_t window) {
  if (window <= 0) return double(T) * double(T) / 2.0;  // FlashAttention's convention for causal
  double s = 0;
  for (int64_t i = 0; i < T; ++i) s += double(std::min<int64_t>(i + 1, window));
  return s;
}

// Waits for the device, then idles for `ms` milliseconds (see the header comment).
void rest(int64_t ms) {
  cuda::synchronize();
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

// The SparseK cases (see the header comment); appends to results.
void bench_sparsek(const BenchAttentionOptions& o, Rng& rng, Timer& timer, nlohmann::json& results) {
  namespace skp = attention::sparsek;
  const int64_t D = 64, H = 768 / D;
  spdlog::info("{:>4} {:>6} {:>5} {:>5} {:>10} {:>10} {:>10} {:>10} {:>7} {:>12}", "H", "T", "k", "w", "select ms",
               "fwd kern", "fwd ms", "fwd+bwd ms", "select", "f+b TFLOP/s");
  for (int64_t T = std::max<int64_t>(o.sparsek_t_min, 64); T <= o.t_max; T *= 2) {
    const int64_t B = o.tokens / T;
    if (B < 1) break;
    Tensor qkv = random_tensor({B, T, 3, H, D}, rng, DType::BF16, 0.0, 1.0);
    Tensor dout = random_tensor({B, H, T, D}, rng, DType::BF16, 0.0, 1.0);
    // (B, H, T, D) views of the packed projection, as the model passes them.
    const Tensor q = attention::packed_head(qkv, 0), k = attention::packed_head(qkv, 1),
                 v = attention::packed_head(qkv, 2);
    std::vector<double> uv(static_cast<size_t>(B * H * T));
    for (size_t i = 0; i < uv.size(); ++i) uv[i] = rng.normal() + 1e-3 * double(int64_t(i) % T);
    const Tensor u = Tensor::from_vector(uv, {B, H, T}, DType::F32).to(Device::cuda(0));
    for (int64_t kk : o.sparsek_k) {
      for (int64_t w : o.sparsek_window) {
        const skp::SparsekParams params{kk, w, skp::MaskMode::GateValues};
        rest(o.rest_ms);
        const double sel_ms = timer.median_ms([&] { skp::sparsek_cuda_selection(u, kk, w); }, 1, o.iters);
        const skp::SparsekCudaForward f = skp::sparsek_cuda_forward(q, k, v, u, params);
        const double kern_ms = timer.median_ms([&] { skp::sparsek_cuda_forward(q, k, v, f.selection, H, params); }, 1,
                                               o.iters);
        const double fwd_ms = timer.median_ms([&] { skp::sparsek_cuda_forward(q, k, v, u, params); }, 1, o.iters);
        const double fb_ms = timer.median_ms(
            [&] {
              const skp::SparsekCudaForward g = skp::sparsek_cuda_forward(q, k, v, u, params);
              skp::sparsek_cuda_backward(dout, q, k, v, g, params);
            },
            1, o.iters);
        const double fwd_flops = 4.0 * double(B * H * D) * double(skp::sparsek_keys_attended(T, kk, w));
        const double fb_tf = 3.5 * fwd_flops / (fb_ms * 1e9);
        spdlog::info("{:>4} {:>6} {:>5} {:>5} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.3f} {:>6.0f}% {:>12.1f}", H, T, kk, w,
                     sel_ms, kern_ms, fwd_ms, fb_ms, 100.0 * sel_ms / fb_ms, fb_tf);
        results.push_back({{"kind", "sparsek"}, {"k", kk}, {"window", w}, {"mask_mode", "gate_values"},
                           {"head_dim", D}, {"heads", H}, {"T", T}, {"B", B}, {"select_ms", sel_ms},
                           {"fwd_kernel_ms", kern_ms}, {"fwd_ms", fwd_ms}, {"fwd_bwd_ms", fb_ms},
                           {"select_share", sel_ms / fb_ms}, {"fwd_tflops", fwd_flops / (fwd_ms * 1e9)},
                           {"fwd_bwd_tflops", fb_tf}, {"scores", "N(0,1) + 1e-3 j, f32, per head"}});
      }
    }
  }
}
}  // namespace

void run_bench_attention(const BenchAttentionOptions& o) {
  SK_CHECK(cuda::is_available(), "bench attention needs a CUDA device (none found)");
  SK_CHECK(o.t_min >= 64 && o.t_max >= o.t_min && o.tokens >= o.t_max, "bench attention: need 64 <= --t-min <= --t-max <= --tokens");
  for (int64_t D : o.head_dims) SK_CHECK(D == 64 || D == 128, "bench attention: --head-dims takes 64 and/or 128, got ", D);
  Rng rng(2026);
  Timer timer;
  nlohmann::json results = nlohmann::json::array();
  spdlog::info("{:>5} {:>4} {:>6} {:>7} {:>10} {:>10} {:>12} {:>12}", "D", "H", "T", "window", "fwd ms", "fwd+bwd ms",
               "fwd TFLOP/s", "f+b TFLOP/s");
  for (int64_t D : o.head_dims) {
    if (o.sparsek_only) break;
    const int64_t H = 768 / D;
    for (int64_t T = o.t_min; T <= o.t_max; T *= 2) {
      const int64_t B = o.tokens / T;
      Tensor qkv = random_tensor({B, T, 3, H, D}, rng, DType::BF16, 0.0, 1.0);
      Tensor dout = random_tensor({B, H, T, D}, rng, DType::BF16, 0.0, 1.0);
      // (B, H, T, D) views of the packed projection, as the model passes them.
      const Tensor q = attention::packed_head(qkv, 0), k = attention::packed_head(qkv, 1),
                 v = attention::packed_head(qkv, 2);
      for (int64_t window : std::vector<int64_t>{0, o.window}) {
        const char* kind = window > 0 ? "sliding_window" : "full";
        if (std::find(o.kinds.begin(), o.kinds.end(), kind) == o.kinds.end()) continue;
        const attention::CausalWindow mask{window};
        double fwd_ms = 0, fb_ms = 0;
        rest(o.rest_ms);
        try {
          fwd_ms = timer.median_ms([&] { attention::flash_attention_forward(q, k, v, mask); }, 2, o.iters);
          fb_ms = timer.median_ms(
              [&] {
                auto f = attention::flash_attention_forward(q, k, v, mask);
                attention::flash_attention_backward(dout, q, k, v, f, mask);
              },
              2, o.iters);
        } catch (const std::exception& e) {  // e.g. a kernel forced by SPARSEK_FLASH_FWD/BWD that cannot run at this D
          spdlog::error("bench attention: D {} T {} window {} failed, the other cases go on: {}", D, T, window, e.what());
          results.push_back({{"kind", window > 0 ? "sliding_window" : "full"}, {"window", window}, {"head_dim", D},
                             {"heads", H}, {"T", T}, {"B", B}, {"error", e.what()}});
          continue;
        }
        const double fwd_flops = 4.0 * double(B * H * D) * keys_attended(T, window);
        const double fwd_tf = fwd_flops / (fwd_ms * 1e9), fb_tf = 3.5 * fwd_flops / (fb_ms * 1e9);
        spdlog::info("{:>5} {:>4} {:>6} {:>7} {:>10.3f} {:>10.3f} {:>12.1f} {:>12.1f}", D, H, T, window, fwd_ms, fb_ms,
                     fwd_tf, fb_tf);
        results.push_back({{"kind", window > 0 ? "sliding_window" : "full"}, {"window", window}, {"head_dim", D},
                           {"heads", H}, {"T", T}, {"B", B}, {"fwd_ms", fwd_ms}, {"fwd_bwd_ms", fb_ms},
                           {"fwd_tflops", fwd_tf}, {"fwd_bwd_tflops", fb_tf}});
      }
    }
  }
  if (!o.no_sparsek) bench_sparsek(o, rng, timer, results);
  nlohmann::json doc{{"system", "sparsek"}, {"device", cuda::device_name(0)}, {"tokens", o.tokens},
                     {"iters", o.iters}, {"rest_ms", o.rest_ms}, {"results", results}};
  std::ofstream(o.out) << doc.dump(2) << "\n";
  spdlog::info("wrote {}", o.out);
}

#else
void run_bench_attention(const BenchAttentionOptions&) {
  SK_FAIL("bench attention needs the CUDA backend (this build is CPU-only)");
}
#endif

}  // namespace sk::cli
