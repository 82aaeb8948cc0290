// `sparsek bench ops`: placeholder registration; the benchmark body is in src/cli/bench_ops.cpp.
#include "cli/commands.h"
#include "cli/bench_ops.h"

namespace sk::cli {

void register_bench(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks (CUDA)");
  bench->require_subcommand(1);
  register_bench_ops(*bench);
}

}  // namespace sk::cli
