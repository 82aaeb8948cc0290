// build/sparsek: the command-line entry point and the only file that parses options (CLI11).
//   demo         train a tiny model on synthetic data (CPU, or the GPU when there is one)
//   info         build and device information
//   bench ops    time LayerNorm, GELU, fused cross-entropy, AdamW against PyTorch (docs/bench/)
// Errors from sparsek (sk::Error) print one line and exit with status 2.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "util/check.h"

int main(int argc, char** argv) {
  using namespace sk::cli;
  CLI::App app{"sparsek: small decoder LMs with full, sliding-window, LSH and SparseK attention"};
  app.require_subcommand(1);

  DemoOptions demo;
  auto* demo_cmd = app.add_subcommand("demo", "Train a tiny model on synthetic data (CPU, or the GPU when present)");
  demo_cmd->add_option("--device", demo.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  demo_cmd->add_option("--steps", demo.steps, "training steps")->capture_default_str()->check(CLI::PositiveNumber);
  demo_cmd->add_option("--batch", demo.batch, "positions per step")->capture_default_str()->check(CLI::PositiveNumber);
  demo_cmd->add_option("--seed", demo.seed, "random seed")->capture_default_str();
  demo_cmd->callback([&] { run_demo(demo); });

  app.add_subcommand("info", "Show build and device information")->callback([] { run_info(); });

  auto* bench = app.add_subcommand("bench", "Benchmarks (CUDA)");
  bench->require_subcommand(1);
  BenchOpsOptions bench_ops;
  auto* ops_cmd = bench->add_subcommand("ops", "Time LayerNorm, GELU, fused cross-entropy and AdamW on the GPU");
  ops_cmd->add_option("--out", bench_ops.out, "JSON output file")->capture_default_str();
  ops_cmd->add_option("--iters", bench_ops.iters, "timed runs per case (median reported)")->capture_default_str()
      ->check(CLI::PositiveNumber);
  ops_cmd->callback([&] { run_bench_ops(bench_ops); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const sk::Error& e) {
    spdlog::error("{}", e.what());
    return 2;
  }
  return 0;
}
