// `sparsek bench ops`: to be filled in (timing of memory-bound ops against PyTorch).
#include "cli/bench_ops.h"

#include "util/check.h"

namespace sk::cli {
void register_bench_ops(CLI::App& bench) {
  auto* cmd = bench.add_subcommand("ops", "Time LayerNorm, GELU, fused cross-entropy and AdamW on the GPU");
  cmd->callback([] { SK_FAIL("bench ops: not implemented yet"); });
}
}  // namespace sk::cli
