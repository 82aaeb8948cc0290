// Hugging Face interchange commands (src/model/hf_import.h, docs/IMPORT.md):
//   sparsek import HF_DIR OUT_DIR   a native checkpoint (OUT_DIR/step_0000000, no optimizer state)
//                                   that eval / generate / logits / export read
//   sparsek export CHECKPOINT HF_DIR  config.json + model.safetensors for transformers (full attention)
//   sparsek logits CHECKPOINT --ids 1,2,3 [--out F.json]  fp32 logits of one sequence (the
//                                   GPU-machine comparison script reads them)
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/node.h"
#include "cli/commands.h"
#include "model/hf_import.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#include "util/check.h"

namespace sk::cli {

namespace fs = std::filesystem;

void run_import(const HfImportOptions& o) {
  const model::HfImport imp = model::import_hf(o.hf_dir, o.pad_vocab_multiple);
  config::RunConfig cfg;
  cfg.model = imp.model;
  cfg.train.seq_len = std::min<int64_t>(cfg.train.seq_len, imp.model.block_size);
  if (imp.tokenizer_json) cfg.data.tokenizer = fs::absolute(*imp.tokenizer_json).string();
  cfg.resolve();
  train::CheckpointWrite w;
  w.dir = o.out_dir;
  w.step = 0;
  w.weights = imp.weights;
  w.keep = 1;
  w.state = {{"config", cfg.to_json()}, {"precision", "f32"},
             {"imported_from", {{"dir", fs::absolute(o.hf_dir).string()}, {"architecture", imp.architecture}}}};
  if (imp.tokenizer_json) w.tokenizer_files.push_back({*imp.tokenizer_json, "tokenizer.json"});
  const fs::path out = train::save_checkpoint(w);
  int64_t n = 0;
  for (const auto& [name, t] : imp.weights) n += t.numel();
  std::printf("imported %s (%s, %lld parameters, vocabulary %lld padded to %lld) -> %s\n", o.hf_dir.c_str(),
              imp.architecture.c_str(), static_cast<long long>(n), static_cast<long long>(imp.model.vocab_size),
              static_cast<long long>(imp.model.padded_vocab()), out.string().c_str());
  if (imp.tokenizer_json)
    std::printf("tokenizer: %s (copied into the checkpoint; prepare data with: sparsek prepare --tokenizer %s ...)\n",
                imp.tokenizer_json->c_str(), imp.tokenizer_json->c_str());
  std::printf("model section for a fine-tuning config:\n%s\n", cfg.to_json()["model"].dump(2).c_str());
}

void run_export(const HfExportOptions& o) {
  const train::Checkpoint ck = train::Checkpoint::open(o.checkpoint);
  ck.export_hf(o.hf_dir);
  std::printf("exported %s (step %lld) -> %s (config.json, model.safetensors)\n", ck.dir().string().c_str(),
              static_cast<long long>(ck.step()), o.hf_dir.c_str());
}

void run_logits(const LogitsOptions& o) {
  const train::Checkpoint ck = train::Checkpoint::open(o.checkpoint);
  config::RunConfig cfg = ck.config();
  const train::Placement place = train::resolve_placement(o.device, o.dtype);
  const model::Gpt gpt = ck.load_model(cfg, place.dtype, place.device);
  SK_CHECK(!o.ids.empty(), "logits: --ids needs at least one token id");
  for (int64_t id : o.ids)
    SK_CHECK(id >= 0 && id < cfg.model.vocab_size, "logits: token id ", id, " is outside the vocabulary of ",
             cfg.model.vocab_size);
  autograd::NoGradGuard no_grad;
  const int64_t T = static_cast<int64_t>(o.ids.size()), V = cfg.model.vocab_size;
  Tensor logits = gpt.forward(Tensor::from_ints(o.ids, {1, T}).to(place.device));
  const std::vector<double> v = logits.slice(2, 0, V).contiguous().to(Device::cpu()).to(DType::F64).to_vector();
  nlohmann::json j = {{"shape", {1, T, V}}, {"dtype", dtype_name(place.dtype)}, {"device", place.device.str()},
                      {"logits", v}};
  if (o.out.empty()) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::ofstream f(o.out);
    f << j.dump();
    SK_CHECK(f.good(), "logits: cannot write ", o.out);
  }
}

}  // namespace sk::cli
