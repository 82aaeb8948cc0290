// Hugging Face import (hf_import.h).
#include "model/hf_import.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "io/safetensors_index.h"
#include "util/check.h"
#include "util/file_io.h"

namespace sk::model {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json read_config(const std::string& dir) {
  const fs::path p = fs::path(dir) / "config.json";
  std::error_code ec;
  SK_CHECK(fs::exists(p, ec), "hf import: ", p.string(), " does not exist (give a Hugging Face model directory)");
  json j = json::parse(util::read_file(p), nullptr, /*allow_exceptions=*/false);
  SK_CHECK(!j.is_discarded() && j.is_object(), "hf import: ", p.string(), " is not a JSON object");
  return j;
}

template <typename T>
T need(const json& j, const std::string& key, const std::string& file) {
  SK_CHECK(j.contains(key) && !j[key].is_null(), "hf import: ", file, " has no '", key, "'");
  try {
    return j[key].get<T>();
  } catch (const json::exception&) {
    SK_FAIL("hf import: ", file, ": '", key, "' is ", j[key].dump(), ", of the wrong type");
  }
}

// A number from the first key present (also inside rope_parameters), or `fallback`.
double first_number(const json& j, std::initializer_list<const char*> keys, double fallback) {
  for (const char* k : keys) {
    if (j.contains(k) && j[k].is_number()) return j[k].get<double>();
    if (j.contains("rope_parameters") && j["rope_parameters"].is_object() && j["rope_parameters"].contains(k) &&
        j["rope_parameters"][k].is_number())
      return j["rope_parameters"][k].get<double>();
  }
  return fallback;
}

Tensor pad_rows(const Tensor& t, int64_t rows) {
  Tensor out = Tensor::zeros({rows, t.size(1)});
  Tensor top = out.slice(0, 0, t.size(0));
  top.copy_(t);
  return out;
}

// NeoX [H, 3, D, ...] rows -> [3, H, D, ...].
Tensor neox_qkv(const Tensor& t, int64_t H) {
  const int64_t rows = t.size(0), D = rows / (3 * H);
  if (t.ndim() == 1) return t.reshape({H, 3, D}).transpose(0, 1).contiguous().reshape({rows});
  const int64_t C = t.size(1);
  return t.reshape({H, 3, D, C}).transpose(0, 1).contiguous().reshape({rows, C});
}

class Weights {
 public:
  Weights(const std::string& dir) : set_(io::SafetensorsSet::open(dir)) {}
  // The tensor under the first of `names` present, as F32.
  Tensor get(std::initializer_list<std::string> names) {
    for (const auto& n : names)
      if (set_.contains(n)) {
        used_.insert(n);
        return set_.file_of(n).tensor_as(n, DType::F32);
      }
    SK_FAIL("hf import: ", set_.source(), " has no tensor '", *names.begin(), "'");
  }
  void skip(const std::string& n) { used_.insert(n); }
  // Every stored tensor is used or a known buffer.
  void check_all_used() const {
    for (const auto& n : set_.names()) {
      const bool buffer = n.ends_with(".attn.bias") || n.ends_with(".masked_bias") || n.ends_with(".attention.bias") ||
                          n.ends_with("inv_freq");
      SK_CHECK(used_.count(n) || buffer, "hf import: ", set_.source(), ": tensor '", n,
               "' is not a parameter sparsek maps (a different model variant?)");
    }
  }

 private:
  io::SafetensorsSet set_;
  std::set<std::string> used_;
};

}  // namespace

config::ModelConfig hf_model_config(const std::string& dir, int64_t pad, std::string* architecture) {
  const json j = read_config(dir);
  const std::string file = (fs::path(dir) / "config.json").string();
  std::string arch = j.contains("architectures") && j["architectures"].is_array() && j["architectures"].size() == 1 &&
                             j["architectures"][0].is_string()
                         ? j["architectures"][0].get<std::string>()
                         : "";
  config::ModelConfig m;
  m.pad_vocab_multiple = pad;
  m.bias = true;
  if (arch == "GPTNeoXForCausalLM") {
    m.n_embd = need<int64_t>(j, "hidden_size", file);
    m.n_layer = need<int64_t>(j, "num_hidden_layers", file);
    m.n_head = need<int64_t>(j, "num_attention_heads", file);
    m.vocab_size = need<int64_t>(j, "vocab_size", file);
    m.block_size = need<int64_t>(j, "max_position_embeddings", file);
    const int64_t inter = j.value("intermediate_size", 4 * m.n_embd);
    SK_CHECK(inter == 4 * m.n_embd, "hf import: ", file, ": intermediate_size ", inter,
             " is not 4 x hidden_size; sparsek's MLP is 4C wide");
    m.learned_positions = false;
    m.rotary_pct = first_number(j, {"rotary_pct", "partial_rotary_factor"}, 0.25);
    m.rotary_base = first_number(j, {"rotary_emb_base", "rope_theta"}, 10000.0);
    m.parallel_residual = j.value("use_parallel_residual", true);
    m.tied_embeddings = j.value("tie_word_embeddings", false);
    m.layernorm_eps = j.value("layer_norm_eps", 1e-5);
    const std::string act = j.value("hidden_act", std::string("gelu"));
    SK_CHECK(act == "gelu" || act == "gelu_new" || act == "gelu_pytorch_tanh", "hf import: ", file,
             ": hidden_act '", act, "' is not supported (gelu, gelu_new)");
    m.gelu = act == "gelu" ? "erf" : "tanh";
  } else if (arch == "GPT2LMHeadModel") {
    m.n_embd = need<int64_t>(j, "n_embd", file);
    m.n_layer = need<int64_t>(j, "n_layer", file);
    m.n_head = need<int64_t>(j, "n_head", file);
    m.vocab_size = need<int64_t>(j, "vocab_size", file);
    m.block_size = need<int64_t>(j, "n_positions", file);
    SK_CHECK(!j.contains("n_inner") || j["n_inner"].is_null() || j["n_inner"] == 4 * m.n_embd, "hf import: ", file,
             ": n_inner ", j.value("n_inner", json()).dump(), " is not 4 x n_embd; sparsek's MLP is 4C wide");
    m.learned_positions = true;
    m.rotary_pct = 0;
    m.parallel_residual = false;
    m.tied_embeddings = true;
    m.layernorm_eps = j.value("layer_norm_epsilon", 1e-5);
    const std::string act = j.value("activation_function", std::string("gelu_new"));
    SK_CHECK(act == "gelu" || act == "gelu_new" || act == "gelu_pytorch_tanh", "hf import: ", file,
             ": activation_function '", act, "' is not supported (gelu_new, gelu)");
    m.gelu = act == "gelu" ? "erf" : "tanh";
  } else {
    SK_FAIL("hf import: ", file, ": architectures ", j.value("architectures", json()).dump(),
            " is not supported (GPTNeoXForCausalLM, GPT2LMHeadModel)");
  }
  SK_CHECK(m.n_head > 0 && m.n_embd % m.n_head == 0, "hf import: ", file, ": hidden size ", m.n_embd,
           " is not a multiple of the head count ", m.n_head);
  if (architecture) *architecture = arch;
  return m;
}

HfImport import_hf(const std::string& dir, int64_t pad) {
  HfImport out;
  out.model = hf_model_config(dir, pad, &out.architecture);
  const config::ModelConfig& m = out.model;
  const int64_t Vp = m.padded_vocab(), H = m.n_head;
  Weights w(dir);
  auto& p = out.weights;
  if (out.architecture == "GPTNeoXForCausalLM") {
    const std::string g = "gpt_neox.";
    p.push_back({"wte", pad_rows(w.get({g + "embed_in.weight"}), Vp)});
    for (int64_t l = 0; l < m.n_layer; ++l) {
      const std::string s = g + "layers." + std::to_string(l) + ".", h = "h." + std::to_string(l) + ".";
      p.push_back({h + "ln1_w", w.get({s + "input_layernorm.weight"})});
      p.push_back({h + "ln1_b", w.get({s + "input_layernorm.bias"})});
      p.push_back({h + "qkv_w", neox_qkv(w.get({s + "attention.query_key_value.weight"}), H)});
      p.push_back({h + "qkv_b", neox_qkv(w.get({s + "attention.query_key_value.bias"}), H)});
      p.push_back({h + "proj_w", w.get({s + "attention.dense.weight"})});
      p.push_back({h + "proj_b", w.get({s + "attention.dense.bias"})});
      p.push_back({h + "ln2_w", w.get({s + "post_attention_layernorm.weight"})});
      p.push_back({h + "ln2_b", w.get({s + "post_attention_layernorm.bias"})});
      p.push_back({h + "fc_w", w.get({s + "mlp.dense_h_to_4h.weight"})});
      p.push_back({h + "fc_b", w.get({s + "mlp.dense_h_to_4h.bias"})});
      p.push_back({h + "fc2_w", w.get({s + "mlp.dense_4h_to_h.weight"})});
      p.push_back({h + "fc2_b", w.get({s + "mlp.dense_4h_to_h.bias"})});
    }
    p.push_back({"lnf_w", w.get({g + "final_layer_norm.weight"})});
    p.push_back({"lnf_b", w.get({g + "final_layer_norm.bias"})});
    if (!m.tied_embeddings) p.push_back({"lm_head", pad_rows(w.get({"embed_out.weight", "lm_head.weight"}), Vp)});
  } else {
    auto get = [&](const std::string& n) { return w.get({"transformer." + n, n}); };
    auto conv = [&](const std::string& n) { return get(n).transpose(0, 1).contiguous(); };  // (in, out) -> (out, in)
    p.push_back({"wte", pad_rows(get("wte.weight"), Vp)});
    p.push_back({"wpe", get("wpe.weight")});
    for (int64_t l = 0; l < m.n_layer; ++l) {
      const std::string s = "h." + std::to_string(l) + ".";
      p.push_back({s + "ln1_w", get(s + "ln_1.weight")});
      p.push_back({s + "ln1_b", get(s + "ln_1.bias")});
      p.push_back({s + "qkv_w", conv(s + "attn.c_attn.weight")});
      p.push_back({s + "qkv_b", get(s + "attn.c_attn.bias")});
      p.push_back({s + "proj_w", conv(s + "attn.c_proj.weight")});
      p.push_back({s + "proj_b", get(s + "attn.c_proj.bias")});
      p.push_back({s + "ln2_w", get(s + "ln_2.weight")});
      p.push_back({s + "ln2_b", get(s + "ln_2.bias")});
      p.push_back({s + "fc_w", conv(s + "mlp.c_fc.weight")});
      p.push_back({s + "fc_b", get(s + "mlp.c_fc.bias")});
      p.push_back({s + "fc2_w", conv(s + "mlp.c_proj.weight")});
      p.push_back({s + "fc2_b", get(s + "mlp.c_proj.bias")});
    }
    p.push_back({"lnf_w", get("ln_f.weight")});
    p.push_back({"lnf_b", get("ln_f.bias")});
    w.skip("lm_head.weight");  // a stored copy of the tied head, if any
  }
  w.check_all_used();
  std::error_code ec;
  if (fs::exists(fs::path(dir) / "tokenizer.json", ec)) out.tokenizer_json = (fs::path(dir) / "tokenizer.json").string();
  return out;
}

}  // namespace sk::model
