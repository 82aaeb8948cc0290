// Hugging Face import (hf_import.h).
#include "model/hf_import.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <fstream>
#include <map>
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

namespace sk::model {

void export_hf(const io::NamedTensors& weights, const config::ModelConfig& m, const std::string& kind,
               const std::string& dir) {
  SK_CHECK(kind == "full", "hf export: attention.kind = ", kind, " has no transformers counterpart; only full ",
           "attention is exported (docs/IMPORT.md)");
  SK_CHECK(m.bias, "hf export: model.bias = false has no GPT-2 / GPT-NeoX counterpart");
  const bool neox = !m.learned_positions;
  SK_CHECK(neox || (m.tied_embeddings && !m.parallel_residual && m.rotary_pct == 0), "hf export: a model with learned ",
           "positions is exported as GPT-2, which needs a tied head, sequential residual and no rotary");
  std::map<std::string, Tensor> by_name;
  for (const auto& [n, t] : weights) by_name[n] = t.detach().cpu().to(DType::F32).contiguous();
  auto w = [&](const std::string& n) {
    auto it = by_name.find(n);
    SK_CHECK(it != by_name.end(), "hf export: no parameter '", n, "'");
    return it->second;
  };
  const int64_t V = m.vocab_size, C = m.n_embd, H = m.n_head, D = C / H;
  auto unpad = [&](const Tensor& t) { return t.slice(0, 0, V).contiguous(); };
  io::NamedTensors out;
  json cfg;
  if (neox) {
    auto to_hf_qkv = [&](const Tensor& v) {  // [3, H, D] -> [H, 3, D]
      if (v.ndim() == 1) return v.reshape({3, H, D}).transpose(0, 1).contiguous().reshape({3 * C});
      return v.reshape({3, H, D, C}).transpose(0, 1).contiguous().reshape({3 * C, C});
    };
    out.push_back({"gpt_neox.embed_in.weight", unpad(w("wte"))});
    out.push_back({"embed_out.weight", unpad(m.tied_embeddings ? w("wte") : w("lm_head"))});
    for (int64_t l = 0; l < m.n_layer; ++l) {
      const std::string s = "gpt_neox.layers." + std::to_string(l) + ".", h = "h." + std::to_string(l) + ".";
      for (const auto& [hf, ours] : std::vector<std::pair<std::string, std::string>>{
               {"input_layernorm.weight", "ln1_w"}, {"input_layernorm.bias", "ln1_b"},
               {"attention.dense.weight", "proj_w"}, {"attention.dense.bias", "proj_b"},
               {"post_attention_layernorm.weight", "ln2_w"}, {"post_attention_layernorm.bias", "ln2_b"},
               {"mlp.dense_h_to_4h.weight", "fc_w"}, {"mlp.dense_h_to_4h.bias", "fc_b"},
               {"mlp.dense_4h_to_h.weight", "fc2_w"}, {"mlp.dense_4h_to_h.bias", "fc2_b"}})
        out.push_back({s + hf, w(h + ours)});
      out.push_back({s + "attention.query_key_value.weight", to_hf_qkv(w(h + "qkv_w"))});
      out.push_back({s + "attention.query_key_value.bias", to_hf_qkv(w(h + "qkv_b"))});
    }
    out.push_back({"gpt_neox.final_layer_norm.weight", w("lnf_w")});
    out.push_back({"gpt_neox.final_layer_norm.bias", w("lnf_b")});
    cfg = {{"architectures", {"GPTNeoXForCausalLM"}}, {"model_type", "gpt_neox"}, {"hidden_size", C},
           {"num_hidden_layers", m.n_layer}, {"num_attention_heads", H}, {"intermediate_size", 4 * C},
           {"vocab_size", V}, {"max_position_embeddings", m.block_size}, {"rotary_pct", m.rotary_pct},
           {"partial_rotary_factor", m.rotary_pct}, {"rotary_emb_base", m.rotary_base}, {"rope_theta", m.rotary_base},
           {"use_parallel_residual", m.parallel_residual}, {"hidden_act", m.gelu == "erf" ? "gelu" : "gelu_new"},
           {"tie_word_embeddings", false}, {"layer_norm_eps", m.layernorm_eps}, {"attention_bias", true},
           {"attention_dropout", 0.0}, {"hidden_dropout", 0.0}, {"torch_dtype", "float32"}};
  } else {
    auto conv = [&](const Tensor& v) { return v.transpose(0, 1).contiguous(); };
    out.push_back({"transformer.wte.weight", unpad(w("wte"))});
    out.push_back({"transformer.wpe.weight", w("wpe")});
    for (int64_t l = 0; l < m.n_layer; ++l) {
      const std::string h = "h." + std::to_string(l) + ".", s = "transformer." + h;
      for (const auto& [hf, ours] : std::vector<std::pair<std::string, std::string>>{
               {"ln_1.weight", "ln1_w"}, {"ln_1.bias", "ln1_b"}, {"attn.c_attn.bias", "qkv_b"},
               {"attn.c_proj.bias", "proj_b"}, {"ln_2.weight", "ln2_w"}, {"ln_2.bias", "ln2_b"},
               {"mlp.c_fc.bias", "fc_b"}, {"mlp.c_proj.bias", "fc2_b"}})
        out.push_back({s + hf, w(h + ours)});
      for (const auto& [hf, ours] : std::vector<std::pair<std::string, std::string>>{
               {"attn.c_attn.weight", "qkv_w"}, {"attn.c_proj.weight", "proj_w"}, {"mlp.c_fc.weight", "fc_w"},
               {"mlp.c_proj.weight", "fc2_w"}})
        out.push_back({s + hf, conv(w(h + ours))});
    }
    out.push_back({"transformer.ln_f.weight", w("lnf_w")});
    out.push_back({"transformer.ln_f.bias", w("lnf_b")});
    cfg = {{"architectures", {"GPT2LMHeadModel"}}, {"model_type", "gpt2"}, {"n_embd", C}, {"n_layer", m.n_layer},
           {"n_head", H}, {"vocab_size", V}, {"n_positions", m.block_size}, {"n_ctx", m.block_size},
           {"activation_function", m.gelu == "erf" ? "gelu" : "gelu_new"}, {"layer_norm_epsilon", m.layernorm_eps},
           {"n_inner", nullptr}, {"resid_pdrop", 0.0}, {"embd_pdrop", 0.0}, {"attn_pdrop", 0.0},
           {"tie_word_embeddings", true}, {"torch_dtype", "float32"}};
  }
  cfg["sparsek_attention_kind"] = kind;
  std::error_code ec;
  fs::create_directories(dir, ec);
  SK_CHECK(!ec, "hf export: cannot create ", dir, ": ", ec.message());
  io::write_safetensors((fs::path(dir) / "model.safetensors").string(), out, {{"format", "pt"}});
  std::ofstream f(fs::path(dir) / "config.json");
  f << cfg.dump(2) << "\n";
  SK_CHECK(f.good(), "hf export: cannot write ", (fs::path(dir) / "config.json").string());
}

}  // namespace sk::model
