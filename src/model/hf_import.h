// Hugging Face model directories -> sparsek models: config.json (GPTNeoXForCausalLM: Pythia;
// GPT2LMHeadModel) to a ModelConfig, and the safetensors weights (single file or sharded index;
// F32/F16/BF16 stored, converted to F32) to sparsek's parameter names and layouts:
//   NeoX's fused query_key_value rows [H, 3, D] -> ours [3, H, D]; GPT-2's Conv1D weights
//   (in, out) -> (out, in); embeddings (and NeoX's untied embed_out / lm_head) padded with zero rows
//   to the padded vocabulary; GPT-2 keys with or without the `transformer.` prefix; buffers
//   (attn.bias, masked_bias, rotary inv_freq) skipped. Mapping table: docs/IMPORT.md.
// Any other architecture is refused naming config.json's `architectures`.
// Tests: tests/model/test_hf_import.cpp.
#pragma once
#include <optional>
#include <string>

#include "config/run_config.h"
#include "io/safetensors.h"

namespace sk::model {

struct HfImport {
  std::string architecture;                 // "GPTNeoXForCausalLM" | "GPT2LMHeadModel"
  config::ModelConfig model;                // pad_vocab_multiple as given
  io::NamedTensors weights;                 // sparsek names (Gpt::named_parameters order), F32, CPU
  std::optional<std::string> tokenizer_json;  // DIR/tokenizer.json when present
};

// The model config of DIR/config.json (no weights read).
config::ModelConfig hf_model_config(const std::string& dir, int64_t pad_vocab_multiple = 128,
                                    std::string* architecture = nullptr);
// Config and weights of a model directory.
HfImport import_hf(const std::string& dir, int64_t pad_vocab_multiple = 128);

}  // namespace sk::model

namespace sk::model {

// Writes DIR/config.json + DIR/model.safetensors (F32) that transformers loads: GPTNeoXForCausalLM
// for rotary models (learned_positions false), GPT2LMHeadModel for learned positions with a tied
// head. `weights`: sparsek names (Gpt::named_parameters). Only attention.kind = "full" is exported
// (other kinds' extra parameters have no transformers counterpart): anything else is refused.
// Models sparsek can express but neither architecture can (GPT-2 untied, NeoX without bias...)
// are refused naming the setting.
void export_hf(const io::NamedTensors& weights, const config::ModelConfig& m, const std::string& attention_kind,
               const std::string& dir);

}  // namespace sk::model
