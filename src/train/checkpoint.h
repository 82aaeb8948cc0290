// Training checkpoints: one directory per saved step, written atomically, the last N kept.
//
//   <checkpoint.dir>/step_0000300/model.safetensors      weights by named_parameters() name
//                                /optimizer.safetensors  "<name>.exp_avg", "<name>.exp_avg_sq",
//                                                        "<name>.master" (bf16 params); metadata
//                                                        "step" (the AdamW step count)
//                                /tokenizer/...          copy of the run's tokenizer files (when
//                                                        they exist), so generate needs nothing else
//                                /state.json             step, RNG, loader cursors, counters, the
//                                                        resolved config, and the size and sha256
//                                                        of every other file ("files")
//   <checkpoint.dir>/latest                              "step_0000300\n"
//
// Atomicity: everything is written into <dir>/.tmp-step_NNNNNNN-<pid>/, each file fsynced, the
// directory fsynced, then renamed to step_NNNNNNN and <dir> fsynced; only then is `latest`
// replaced (temporary file, fsync, rename, fsync). A crash at any moment leaves either the new
// complete checkpoint or none (a leftover .tmp-* directory, removed by the next save); `latest`
// always names a complete one. Old checkpoints beyond `keep` are renamed to .del-* and removed.
//
// Reading: open_checkpoint() accepts a step directory or a run directory (its `latest`, or the
// highest step_* when `latest` is missing) and checks state.json and every listed file's size
// and sha256; errors name the file. Test hook: SPARSEK_TEST_CHECKPOINT_KILL="STEP:PHASE" makes
// the process SIGKILL itself while saving STEP at PHASE (model | state | renamed | latest), for
// tests/train/test_checkpoint_kill.cpp.
// Tests: tests/train/test_resume.cpp, test_checkpoint_kill.cpp.
#pragma once
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "config/run_config.h"
#include "io/safetensors.h"
#include "model/gpt.h"
#include "optim/adamw.h"

namespace sk::train {

std::string checkpoint_name(int64_t step);  // "step_0000300"

struct CheckpointWrite {
  std::string dir;                        // checkpoint.dir
  int64_t step = 0;
  io::NamedTensors weights;               // model parameters by name
  const optim::AdamW* optimizer = nullptr;  // its slots in the order of `weights`; may be null
  nlohmann::json state;                   // the trainer's state (an object); "files" is added
  // Copied into tokenizer/: (source file, name there), e.g. (my.json, "tokenizer.json").
  std::vector<std::pair<std::filesystem::path, std::string>> tokenizer_files;
  int64_t keep = 3;                       // complete checkpoints kept (>= 1)
};
// Writes the checkpoint atomically (see above); returns its final directory.
std::filesystem::path save_checkpoint(const CheckpointWrite& w);

// The newest complete checkpoint in a run directory, or nullopt if there is none.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& run_dir);

class Checkpoint {
 public:
  // `path`: a step directory (holding state.json) or a run directory. Verifies state.json and
  // the files it lists (size, sha256); throws sk::Error naming the file.
  static Checkpoint open(const std::filesystem::path& path);

  const std::filesystem::path& dir() const { return dir_; }
  const nlohmann::json& state() const { return state_; }
  int64_t step() const { return state_.at("step").get<int64_t>(); }
  std::filesystem::path state_path() const { return dir_ / "state.json"; }
  // The tokenizer copy (a directory to pass to Tokenizer::load), if the checkpoint has one.
  std::optional<std::filesystem::path> tokenizer_dir() const;

  // The run config saved with the checkpoint, with "a.b=value" overrides applied.
  config::RunConfig config(const std::vector<std::string>& overrides = {}) const;
  // A model of the saved config on `device` in `dtype`, with the saved weights (for eval and
  // generation; converted between floating dtypes as needed).
  model::Gpt load_model(const config::RunConfig& cfg, DType dtype = DType::F32, Device device = Device::cpu()) const;

  // Copies the weights into `params` (names and shapes must match exactly; dtype converted
  // between floating types when convert is true, else must match).
  void load_weights(const io::NamedTensors& params, bool convert = false) const;
  // Restores moments, masters and the step count of `opt`, whose slots follow `params`.
  void load_optimizer(const io::NamedTensors& params, optim::AdamW& opt) const;

 private:
  std::filesystem::path dir_;
  nlohmann::json state_;
};

}  // namespace sk::train
