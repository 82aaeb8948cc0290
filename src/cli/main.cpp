// build/sparsek: the command-line entry point. Subcommands (CLI11):
//   demo         train a tiny model on synthetic data (CPU, or the GPU when there is one)
//   info         build and device information, memory report
//   bench ops    time LayerNorm, GELU, fused cross-entropy, AdamW (CUDA; see docs/bench/)
// Errors from sparsek (sk::Error) print one line and exit with status 2.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "util/check.h"

int main(int argc, char** argv) {
  CLI::App app{"sparsek: small decoder LMs with full, sliding-window, LSH and SparseK attention"};
  app.require_subcommand(1);
  sk::cli::register_demo(app);
  sk::cli::register_info(app);
  sk::cli::register_bench(app);
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
