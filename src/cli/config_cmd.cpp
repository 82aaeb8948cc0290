// `sparsek config show CONFIG [--set k=v ...]`: the resolved run config (every key, defaults
// included) after validation; `sparsek config keys`: every key with its type, range and meaning.
#include <iostream>

#include "cli/commands.h"
#include "config/run_config.h"

namespace sk::cli {

void run_config_show(const ConfigShowOptions& o) {
  std::cout << config::load_run_config(o.config, o.overrides).to_json().dump(2) << "\n";
}

void run_config_keys() { std::cout << config::describe_run_config(); }

}  // namespace sk::cli
