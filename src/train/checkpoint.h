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
// ZeRO-1 runs (dist.zero = 1) write no optimizer.safetensors; instead each rank r of W writes
// optimizer.rankRRRRR-of-WWWWW.safetensors ("exp_avg", "exp_avg_sq", "master": f32, its owned
// flat range of dist::ShardLayout; metadata step, rank, world, align, total, begin, end) and rank
// 0 writes optimizer-index.json (world size, alignment, total, parameter names and numels, the
// shard files). All ranks write into one temporary directory (named by a tag, not a pid) between
// two barriers; rank 0 then lists every file in state.json and renames as above, so a checkpoint
// missing a shard never becomes `latest`. Loading re-cuts the state for any world size
// (dist::reshard); a plain (non-ZeRO) run reads a sharded checkpoint and a ZeRO-1 run reads a
// plain one (load_optimizer_flat).
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
#include <functional>
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
  // Multi-rank ZeRO-1 saves: the temporary directory is named with `tmp_tag` instead of the pid
  // (every rank finds it with checkpoint_tmp_dir), and `fill_tmp` runs after the weights are
  // written and before state.json lists the files (every rank writes its optimizer shard there,
  // between two barriers).
  std::string tmp_tag;
  std::function<void(const std::filesystem::path& tmp)> fill_tmp;
};
// Writes the checkpoint atomically (see above); returns its final directory.
std::filesystem::path save_checkpoint(const CheckpointWrite& w);

// The temporary directory save_checkpoint writes step `step` into when given tmp_tag `tag`.
std::filesystem::path checkpoint_tmp_dir(const std::string& dir, int64_t step, const std::string& tag);

// "optimizer.rank00001-of-00002.safetensors"
std::string optimizer_shard_file(int rank, int world);
struct OptimizerShardWrite {
  int rank = 0, world = 1;
  int64_t align = 64, total = 0, begin = 0, end = 0, step = 0;
  Tensor m, v, master;  // f32, end - begin elements each, any device
};
void write_optimizer_shard(const std::filesystem::path& dir, const OptimizerShardWrite& s);
// optimizer-index.json: world, align, total, step, [name, numel] of every parameter, shard files.
void write_optimizer_index(const std::filesystem::path& dir, int world, int64_t align, int64_t step,
                           const io::NamedTensors& params);

// The optimizer state of the whole flat parameter space (parameter order, f32).
struct FlatOptimizerState {
  int64_t step = 0;
  std::vector<float> m, v, master;
  int saved_world = 1;   // world size of the sharded checkpoint it came from (1: a plain one)
  bool sharded = false;
};

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
  // `sparsek export`: the saved model as a Hugging Face directory (config.json + model.safetensors,
  // F32; model::export_hf, which refuses attention kinds transformers cannot run).
  void export_hf(const std::string& hf_dir) const;

  // Copies the weights into `params` (names and shapes must match exactly; dtype converted
  // between floating types when convert is true, else must match).
  void load_weights(const io::NamedTensors& params, bool convert = false) const;
  // Restores moments, masters and the step count of `opt`, whose slots follow `params`.
  // Either layout (optimizer.safetensors, or ZeRO-1 shards of any world size, re-cut).
  void load_optimizer(const io::NamedTensors& params, optim::AdamW& opt) const;
  // The state of the whole flat space from either layout; `params` must hold the checkpoint's
  // weights already (the masters of f32 parameters of a plain checkpoint are the weights).
  FlatOptimizerState load_optimizer_flat(const io::NamedTensors& params) const;
  // True when the optimizer state is ZeRO-1 shards.
  bool sharded_optimizer() const;

 private:
  std::filesystem::path dir_;
  nlohmann::json state_;
};

}  // namespace sk::train
