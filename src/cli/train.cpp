// `sparsek train CONFIG [--set k=v ...]`: loads and validates the run config, then runs the
// training loop (src/train/trainer.h).
#include "cli/commands.h"
#include "config/run_config.h"
#include "train/trainer.h"

namespace sk::cli {

void run_train(const ConfigShowOptions& o) { train::train(config::load_run_config(o.config, o.overrides)); }

}  // namespace sk::cli
