// The subcommands of build/sparsek; each register_* adds one to the CLI11 app (src/cli/<name>.cpp).
#pragma once
#include <CLI/CLI.hpp>

namespace sk::cli {
void register_demo(CLI::App& app);
void register_info(CLI::App& app);
void register_bench(CLI::App& app);
}  // namespace sk::cli
