// `sparsek bench lsh`: times LSH attention on CUDA (src/attention/lsh/lsh_cuda.h; kind "lsh") and
// writes JSON: bf16, `tokens` tokens per batch (B = tokens / T), --heads x --head-dim (default
// 12 x 64), n_hashes 2, chunk 128, n_buckets lsh_default_buckets(T, chunk) (grows with T, as Hugging
// Face's default), T from --t-min to --t-max (powers of two); q and v as (B, H, T, D) views of a
// packed (B, T, 2, H, D) projection, fresh random N(0, 1); rotations N(0, 1) already on the device.
// --kernels auto|simt|mma|mma_v1 picks the chunk kernels (and hash) as LshCudaKernels (auto: tensor cores).
// Fields: layout_ms (key scales + hashing + sort alone), fwd_ms (layout + chunked attention +
// merge), fwd_bwd_ms (forward + backward: what a training step pays), layout_share, phases_ms
// (median per phase of fwd+bwd: hash, sort, fwd_chunks, merge, bwd_prep, bwd_chunks, bwd_final;
// CUDA events between phases, so host gaps land in the next phase; lsh_cuda_phase_read).
// Useful FLOPs (FlashAttention's convention): 4 * B * H * D * lsh_keys_attended(T, R, chunk) for the
// forward (every key of the chunk and the previous one, masked ones included), 3.5x that for
// forward + backward. The hashing's 2 * B * H * T * D * R * NB/2 FLOPs are not counted.
// Timing: median of --iters runs bracketed by CUDA events, L2 flushed before each (bench_util.h).
// The PyTorch peers (SDPA flash full causal attention, Hugging Face LSHSelfAttention) run in the
// same device call: scripts/bench/bench_lsh.sh.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>
#include <nlohmann/json.hpp>

#include "attention/lsh/lsh_cuda.h"
#include "attention/lsh/lsh_reference.h"
#include "backend/cuda_device.h"
#include "cli/bench_util.h"
#include "cli/commands.h"
#include "util/check.h"

namespace sk::cli {

#ifdef SPARSEK_HAS_CUDA

void run_bench_lsh(const BenchLshOptions& o) {
  namespace lsh = attention::lsh;
  SK_CHECK(cuda::is_available(), "bench lsh needs a CUDA device (none found)");
  SK_CHECK(o.t_min > o.chunk && o.t_max >= o.t_min && o.tokens >= o.t_max,
           "bench lsh: need --chunk < --t-min <= --t-max <= --tokens");
  SK_CHECK(o.head_dim == 64 || o.head_dim == 128, "bench lsh: --head-dim must be 64 or 128");
  Rng rng(2026);
  Timer timer;
  nlohmann::json results = nlohmann::json::array();
  const int64_t H = o.heads, D = o.head_dim, R = o.n_hashes;
  SK_CHECK(o.kernels == "auto" || o.kernels == "simt" || o.kernels == "mma" || o.kernels == "mma_v1",
           "bench lsh: --kernels must be auto, simt, mma or mma_v1, got ", o.kernels);
  const lsh::LshCudaKernels kernels = o.kernels == "simt"     ? lsh::LshCudaKernels::Simt
                                      : o.kernels == "mma"    ? lsh::LshCudaKernels::TensorCores
                                      : o.kernels == "mma_v1" ? lsh::LshCudaKernels::TensorCoresV1
                                                              : lsh::LshCudaKernels::Auto;
  spdlog::info("{:>6} {:>4} {:>5} {:>10} {:>10} {:>10} {:>7} {:>12}", "T", "B", "NB", "layout ms", "fwd ms",
               "fwd+bwd ms", "layout", "f+b TFLOP/s");
  for (int64_t T = o.t_min; T <= o.t_max; T *= 2) {
    const int64_t B = o.tokens / T;
    if (B < 1) break;
    const int64_t NB = lsh::lsh_default_buckets(T, o.chunk);
    Tensor qv = random_tensor({B, T, 2, H, D}, rng, DType::BF16, 0.0, 1.0);
    Tensor dout = random_tensor({B, H, T, D}, rng, DType::BF16, 0.0, 1.0);
    const Tensor q = make_view(qv, {B, H, T, D}, {T * 2 * H * D, D, 2 * H * D, 1}, 0);
    const Tensor v = make_view(qv, {B, H, T, D}, {T * 2 * H * D, D, 2 * H * D, 1}, H * D);
    const Tensor rot = lsh::lsh_random_rotations(H, D, R, NB, 7 + uint64_t(T), DType::F32).to(Device::cuda(0));
    const double fwd_ms = timer.median_ms([&] { lsh::lsh_cuda_forward(q, v, rot, o.chunk, kernels); }, 2, o.iters);
    const double fb_ms = timer.median_ms(
        [&] {
          const lsh::LshCudaForward f = lsh::lsh_cuda_forward(q, v, rot, o.chunk, kernels);
          lsh::lsh_cuda_backward(dout, q, v, f);
        },
        2, o.iters);
    const double layout_ms = timer.median_ms([&] { lsh::lsh_cuda_layout(q, rot, o.chunk, kernels); }, 2, o.iters);
    // Per-phase breakdown of fwd+bwd (CUDA events between the launchers' phases, L2 flushed before
    // each run as above; median per phase over --iters runs).
    std::vector<std::vector<double>> phase_runs;
    const std::vector<std::string> phase_names = lsh::lsh_cuda_phase_names();
    timer.median_ms(
        [&] {
          lsh::lsh_cuda_phase_timing(true);
          const lsh::LshCudaForward f = lsh::lsh_cuda_forward(q, v, rot, o.chunk, kernels);
          lsh::lsh_cuda_backward(dout, q, v, f);
          phase_runs.push_back(lsh::lsh_cuda_phase_read());
          lsh::lsh_cuda_phase_timing(false);
        },
        0, o.iters);
    nlohmann::json phases = nlohmann::json::object();
    std::string phase_line;
    for (size_t i = 0; i < phase_names.size(); ++i) {
      std::vector<double> xs;
      for (const auto& run : phase_runs)
        if (i < run.size()) xs.push_back(run[i]);
      std::sort(xs.begin(), xs.end());
      const double med = xs.empty() ? 0.0 : xs[xs.size() / 2];
      phases[phase_names[i]] = med;
      phase_line += fmt::format(" {} {:.3f}", phase_names[i], med);
    }
    const double fwd_flops = 4.0 * double(B * H * D) * double(lsh::lsh_keys_attended(T, R, o.chunk));
    const double fb_tf = 3.5 * fwd_flops / (fb_ms * 1e9);
    spdlog::info("{:>6} {:>4} {:>5} {:>10.3f} {:>10.3f} {:>10.3f} {:>6.0f}% {:>12.1f}", T, B, NB, layout_ms, fwd_ms,
                 fb_ms, 100.0 * layout_ms / fb_ms, fb_tf);
    spdlog::info("{:>6} phases (ms, median):{}", "", phase_line);
    results.push_back({{"kind", "lsh"}, {"heads", H}, {"head_dim", D}, {"T", T}, {"B", B}, {"n_hashes", R},
                       {"chunk", o.chunk}, {"n_buckets", NB}, {"kernels", o.kernels}, {"layout_ms", layout_ms}, {"fwd_ms", fwd_ms},
                       {"fwd_bwd_ms", fb_ms}, {"layout_share", layout_ms / fb_ms},
                       {"keys_attended_per_seq", lsh::lsh_keys_attended(T, R, o.chunk)},
                       {"fwd_tflops", fwd_flops / (fwd_ms * 1e9)}, {"fwd_bwd_tflops", fb_tf}, {"phases_ms", phases}});
  }
  nlohmann::json doc{{"system", "sparsek"}, {"device", cuda::device_name(0)}, {"tokens", o.tokens},
                     {"iters", o.iters}, {"dtype", "bf16"}, {"results", results}};
  std::ofstream(o.out) << doc.dump(2) << "\n";
  spdlog::info("wrote {}", o.out);
}

#else
void run_bench_lsh(const BenchLshOptions&) { SK_FAIL("bench lsh needs the CUDA backend (this build is CPU-only)"); }
#endif

}  // namespace sk::cli
