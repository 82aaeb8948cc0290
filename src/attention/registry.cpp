// The attention registry (attention.h): kind name -> factory. The built-in kinds are listed here,
// one line each, because self-registering static objects in a static library are dropped by the
// linker when nothing else references their file. Adding a kind = its own files (src/attention/
// <kind>.cpp with a make_<kind>_attention factory) + one declaration and one table line below.
// Tests: tests/attention/test_attention_interface.cpp.
#include <map>
#include <mutex>

#include "attention/attention.h"
#include "util/check.h"

namespace sk::attention {

// Factories of the built-in kinds, each defined in its kind's file.
std::unique_ptr<Attention> make_full_attention(const AttentionSpec& spec, Rng& rng);            // full.cpp
std::unique_ptr<Attention> make_sliding_window_attention(const AttentionSpec& spec, Rng& rng);  // sliding_window.cpp
std::unique_ptr<Attention> make_sparsek_attention(const AttentionSpec& spec, Rng& rng);  // sparsek/sparsek_attention.cpp
std::unique_ptr<Attention> make_lsh_attention(const AttentionSpec& spec, Rng& rng);      // lsh/lsh_attention.cpp

namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, AttentionFactory> factories;
};

Registry& registry() {
  static Registry* r = [] {
    auto* reg = new Registry;  // never destroyed: usable from other statics' destructors
    reg->factories = {
        {"full", &make_full_attention},
        {"sliding_window", &make_sliding_window_attention},
        {"sparsek", &make_sparsek_attention},
        {"lsh", &make_lsh_attention},
    };
    return reg;
  }();
  return *r;
}

}  // namespace

AttentionSpec AttentionSpec::from_config(const config::ModelConfig& m, const config::AttentionConfig& a, int64_t layer,
                                         DType dtype, Device device) {
  AttentionSpec s;
  s.attention = a;
  s.n_embd = m.n_embd;
  s.n_head = m.n_head;
  s.bias = m.bias;
  s.rotary_pct = m.rotary_pct;
  s.rotary_base = m.rotary_base;
  s.n_layer = m.n_layer;
  s.layer = layer;
  s.dtype = dtype;
  s.device = device;
  return s;
}

std::unique_ptr<Attention> make_attention(const AttentionSpec& spec, Rng& rng) {
  SK_CHECK(spec.n_head > 0 && spec.n_embd > 0 && spec.n_embd % spec.n_head == 0, "attention: model.n_embd ",
           spec.n_embd, " must be a positive multiple of model.n_head ", spec.n_head);
  AttentionFactory f;
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.factories.find(spec.attention.kind);
    if (it != r.factories.end()) f = it->second;
  }
  if (!f) {
    std::string known;
    for (const std::string& k : attention_kinds()) known += (known.empty() ? "" : ", ") + k;
    SK_FAIL("attention.kind \"", spec.attention.kind, "\" is not available (built kinds: ", known, ")");
  }
  std::unique_ptr<Attention> a = f(spec, rng);
  SK_CHECK(a != nullptr, "attention.kind \"", spec.attention.kind, "\": the factory returned nothing");
  return a;
}

void register_attention_kind(const std::string& kind, AttentionFactory factory) {
  SK_CHECK(!kind.empty() && factory, "register_attention_kind: empty name or factory");
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  SK_CHECK(r.factories.emplace(kind, std::move(factory)).second, "register_attention_kind: kind \"", kind,
           "\" is already registered");
}

std::vector<std::string> attention_kinds() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> names;
  for (const auto& [k, f] : r.factories) names.push_back(k);
  return names;  // std::map: sorted
}

}  // namespace sk::attention
