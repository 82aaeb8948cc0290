// The comparison grid (grid.h): schema, budget rule, cells.
#include "compare/grid.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "attention/attention.h"
#include "tensor/random.h"
#include "util/check.h"

namespace sk::compare {

namespace {

using nlohmann::json;

// Typed readers that name the key path in every error.
struct Reader {
  const json& obj;
  std::string where;  // "grid.json: probes.passkey"
  std::string path(const std::string& key) const { return where + (where.back() == ':' ? " " : ".") + key; }

  bool has(const std::string& key) const { return obj.contains(key); }
  int64_t integer(const std::string& key, int64_t def, int64_t lo, int64_t hi, bool required = false) const {
    if (!obj.contains(key)) {
      SK_CHECK(!required, path(key), " is required");
      return def;
    }
    const json& v = obj.at(key);
    SK_CHECK(v.is_number_integer(), path(key), " must be an integer, got ", v.dump());
    const int64_t x = v.get<int64_t>();
    SK_CHECK(x >= lo && x <= hi, path(key), " = ", x, " is out of range [", lo, ", ", hi, "]");
    return x;
  }
  double number(const std::string& key, double def, double lo, double hi) const {
    if (!obj.contains(key)) return def;
    const json& v = obj.at(key);
    SK_CHECK(v.is_number(), path(key), " must be a number, got ", v.dump());
    const double x = v.get<double>();
    SK_CHECK(x >= lo && x <= hi, path(key), " = ", x, " is out of range [", lo, ", ", hi, "]");
    return x;
  }
  bool boolean(const std::string& key, bool def) const {
    if (!obj.contains(key)) return def;
    SK_CHECK(obj.at(key).is_boolean(), path(key), " must be true or false, got ", obj.at(key).dump());
    return obj.at(key).get<bool>();
  }
  std::string string(const std::string& key, const std::string& def, bool required = false) const {
    if (!obj.contains(key)) {
      SK_CHECK(!required, path(key), " is required");
      return def;
    }
    SK_CHECK(obj.at(key).is_string(), path(key), " must be a string, got ", obj.at(key).dump());
    return obj.at(key).get<std::string>();
  }
  std::vector<int64_t> ints(const std::string& key, int64_t lo, int64_t hi, bool required, bool non_empty) const {
    if (!obj.contains(key)) {
      SK_CHECK(!required, path(key), " is required");
      return {};
    }
    const json& v = obj.at(key);
    SK_CHECK(v.is_array(), path(key), " must be an array of integers, got ", v.dump());
    SK_CHECK(!non_empty || !v.empty(), path(key), " must not be empty");
    std::vector<int64_t> out;
    for (size_t i = 0; i < v.size(); ++i) {
      SK_CHECK(v[i].is_number_integer(), path(key), "[", i, "] must be an integer, got ", v[i].dump());
      const int64_t x = v[i].get<int64_t>();
      SK_CHECK(x >= lo && x <= hi, path(key), "[", i, "] = ", x, " is out of range [", lo, ", ", hi, "]");
      SK_CHECK(std::find(out.begin(), out.end(), x) == out.end(), path(key), "[", i, "] = ", x, " is repeated");
      out.push_back(x);
    }
    return out;
  }
  json object(const std::string& key) const {
    if (!obj.contains(key)) return json::object();
    SK_CHECK(obj.at(key).is_object(), path(key), " must be an object, got ", obj.at(key).dump());
    return obj.at(key);
  }
  void only(const std::set<std::string>& allowed) const {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      if (allowed.count(it.key())) continue;
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      SK_FAIL(path(it.key()), ": unknown key; allowed here: ", list);
    }
  }
};

constexpr int64_t kBig = int64_t(1) << 40;

// Deep merge of run-config JSON objects (b over a).
void merge_into(json& a, const json& b) {
  for (auto it = b.begin(); it != b.end(); ++it) {
    if (it->is_object() && a.contains(it.key()) && a[it.key()].is_object()) merge_into(a[it.key()], *it);
    else a[it.key()] = *it;
  }
}

json read_json_file(const std::string& path, const std::string& what) {
  std::ifstream f(path);
  SK_CHECK(f.good(), what, " ", path, " cannot be opened");
  json j = json::parse(f, nullptr, /*allow_exceptions=*/false, /*ignore_comments=*/true);
  SK_CHECK(!j.is_discarded(), what, " ", path, " is not valid JSON");
  return j;
}

}  // namespace

json matched_attention(const KindSpec& k, int64_t B, const std::string& where) {
  json a = k.attention.is_object() ? k.attention : json::object();
  a["kind"] = k.kind;
  if (k.kind == "full") return a;
  SK_CHECK(B >= 1, where, ": budget must be >= 1 for kind ", k.kind);
  if (k.kind == "sliding_window") {
    a["window"] = B;
  } else if (k.kind == "sparsek") {
    const int64_t w = std::llround(k.window_fraction * double(B));
    SK_CHECK(B - w >= 1, where, ": window_fraction ", k.window_fraction, " leaves no selected keys of budget ", B,
             " (k = budget - window must be >= 1)");
    a["window"] = w;
    a["k"] = B - w;
  } else if (k.kind == "lsh") {
    const int64_t h = a.contains("n_hashes") ? a["n_hashes"].get<int64_t>() : config::AttentionConfig{}.n_hashes;
    SK_CHECK(B % (2 * h) == 0, where, ": budget ", B, " is not divisible by 2 x attention.n_hashes = ", 2 * h,
             " (lsh: chunk = budget / (2 n_hashes))");
    a["chunk"] = B / (2 * h);
    if (!a.contains("n_buckets")) a["n_buckets"] = 0;
  } else {
    SK_FAIL(where, ": kind '", k.kind, "' has no budget rule (known: full, sliding_window, sparsek, lsh)");
  }
  return a;
}

Grid grid_from_json(const json& j, const std::string& source) {
  SK_CHECK(j.is_object(), source, ": a grid must be a JSON object, got ", j.type_name());
  Grid g;
  g.source = source;
  g.raw = j;
  const Reader r{j, source + ":"};
  r.only({"name", "out_dir", "base_config", "config", "budget", "seq_lens", "seeds", "tokens", "batch_tokens",
          "micro_batch_tokens", "warmup_fraction", "evals", "val_tokens", "checkpoints", "eval_lengths", "kinds",
          "probes", "description"});
  g.name = r.string("name", "", true);
  g.out_dir = r.string("out_dir", "", true);
  SK_CHECK(!g.name.empty() && !g.out_dir.empty(), source, ": name and out_dir must not be empty");
  // The run config: base_config (its keys that the grid sets are dropped), then config on top
  // (where they are refused); validated once here, without the cell keys.
  static const char* kOwnedTrain[] = {"seq_len", "batch_size", "batch_tokens", "max_steps", "seed", "grad_accum", "resume"};
  g.base = json::object();
  const std::string base_path = r.string("base_config", "");
  if (!base_path.empty()) {
    g.base = read_json_file(base_path, source + ": base_config");
    SK_CHECK(g.base.is_object(), source, ": base_config ", base_path, " is not a JSON object");
    if (g.base.contains("train"))
      for (const char* owned : kOwnedTrain) g.base["train"].erase(owned);
    g.base.erase("attention");
    if (g.base.contains("checkpoint")) g.base["checkpoint"].erase("dir");
  }
  const json inline_config = r.object("config");
  for (const char* owned : kOwnedTrain)
    SK_CHECK(!(inline_config.contains("train") && inline_config["train"].contains(owned)), source, ": config.train.", owned,
             " is set by the grid (seq_lens, micro_batch_tokens, batch_tokens, tokens, seeds); remove it");
  SK_CHECK(!inline_config.contains("attention"), source,
           ": config.attention is set per kind (kinds[].attention and the budget rule); remove it");
  SK_CHECK(!(inline_config.contains("checkpoint") && inline_config["checkpoint"].contains("dir")), source,
           ": config.checkpoint.dir is set per cell (out_dir/cells/<cell>/run); remove it");
  merge_into(g.base, inline_config);
  try {
    json check = g.base;  // the cells set seq_len and block_size
    check["train"]["seq_len"] = 1;
    config::run_config_from_json(check, source + ": config");
  } catch (const Error& e) {
    SK_FAIL(e.what());
  }

  g.budget = r.integer("budget", 0, 1, kBig, true);
  g.seq_lens = r.ints("seq_lens", 1, int64_t(1) << 24, true, true);
  g.seeds = r.ints("seeds", 0, kBig, true, true);
  g.tokens = r.integer("tokens", 0, 1, int64_t(1) << 50, true);
  g.batch_tokens = r.integer("batch_tokens", 0, 1, kBig, true);
  g.micro_batch_tokens = r.integer("micro_batch_tokens", g.batch_tokens, 1, kBig);
  g.warmup_fraction = r.number("warmup_fraction", 0.05, 0.0, 1.0);
  g.evals = r.integer("evals", 10, 1, 100000);
  g.val_tokens = r.integer("val_tokens", 1 << 18, 1, kBig);
  g.checkpoints = r.integer("checkpoints", 10, 1, 100000);
  g.eval_lengths = r.ints("eval_lengths", 1, int64_t(1) << 24, false, false);
  SK_CHECK(g.tokens >= g.batch_tokens, source, ": tokens ", g.tokens, " is less than batch_tokens ", g.batch_tokens,
           " (one optimizer step)");
  SK_CHECK(g.batch_tokens % g.micro_batch_tokens == 0, source, ": batch_tokens ", g.batch_tokens,
           " is not a multiple of micro_batch_tokens ", g.micro_batch_tokens);
  for (size_t i = 0; i < g.seq_lens.size(); ++i)
    SK_CHECK(g.micro_batch_tokens % g.seq_lens[i] == 0, source, ": micro_batch_tokens ", g.micro_batch_tokens,
             " is not a multiple of seq_lens[", i, "] = ", g.seq_lens[i], " (train.batch_size = micro_batch_tokens / T)");

  SK_CHECK(j.contains("kinds"), source, ": kinds is required");
  const json& kinds = j.at("kinds");
  SK_CHECK(kinds.is_array() && !kinds.empty(), source, ": kinds must be a non-empty array of {name, kind, ...}");
  std::set<std::string> names;
  for (size_t i = 0; i < kinds.size(); ++i) {
    const std::string where = source + ": kinds[" + std::to_string(i) + "]";
    SK_CHECK(kinds[i].is_object(), where, " must be an object, got ", kinds[i].dump());
    const Reader kr{kinds[i], where};
    kr.only({"name", "kind", "attention", "window_fraction"});
    KindSpec k;
    k.kind = kr.string("kind", "", true);
    SK_CHECK(k.kind == "full" || k.kind == "sliding_window" || k.kind == "lsh" || k.kind == "sparsek", where,
             ".kind = \"", k.kind, "\" is not one of: full, sliding_window, lsh, sparsek");
    k.name = kr.string("name", k.kind);
    SK_CHECK(!k.name.empty() && k.name.find_first_of("/ ,=") == std::string::npos,
             where, ".name = \"", k.name, "\" must not contain '/', ' ', ',' or '='");
    SK_CHECK(names.insert(k.name).second, where, ".name = \"", k.name, "\" is used twice (give each kind a distinct name)");
    k.attention = kr.object("attention");
    for (const char* owned : {"kind", "window", "k", "chunk"})
      SK_CHECK(!k.attention.contains(owned), where, ".attention.", owned,
               " is set by the budget rule (budget, window_fraction); remove it");
    if (kr.has("window_fraction")) {
      SK_CHECK(k.kind == "sparsek", where, ".window_fraction applies to kind sparsek only");
      k.window_fraction = kr.number("window_fraction", 0.0, 0.0, 1.0);
    }
    // The attention keys must be run-config keys with valid values.
    json a = matched_attention(k, g.budget, where);
    try {
      config::run_config_from_json(json{{"attention", a}}, where + ".attention");
    } catch (const Error& e) {
      SK_FAIL(e.what());
    }
    g.kinds.push_back(k);
  }

  const json probes = r.object("probes");
  const Reader pr{probes, source + ": probes"};
  pr.only({"enabled", "seed", "passkey", "assoc"});
  g.probes.enabled = pr.boolean("enabled", true);
  g.probes.seed = static_cast<uint64_t>(pr.integer("seed", 2024, 0, kBig));
  const json pk = pr.object("passkey");
  const Reader pkr{pk, source + ": probes.passkey"};
  pkr.only({"trials", "distances"});
  g.probes.passkey.trials = pkr.integer("trials", 20, 1, 1000000);
  g.probes.passkey.distances = pkr.ints("distances", 1, int64_t(1) << 24, false, false);
  const json ar = pr.object("assoc");
  const Reader arr{ar, source + ": probes.assoc"};
  arr.only({"trials", "pairs", "distance_bins"});
  g.probes.assoc.trials = arr.integer("trials", 100, 1, 1000000);
  g.probes.assoc.pairs = arr.integer("pairs", 32, 2, 100000);
  g.probes.assoc.distance_bins = arr.ints("distance_bins", 1, int64_t(1) << 24, false, false);
  std::sort(g.probes.assoc.distance_bins.begin(), g.probes.assoc.distance_bins.end());
  return g;
}

Grid load_grid(const std::string& path) { return grid_from_json(read_json_file(path, "grid file"), path); }

std::vector<Cell> expand_cells(const Grid& g) {
  namespace fs = std::filesystem;
  std::vector<Cell> cells;
  const int64_t steps = g.steps();
  int64_t max_eval = 0;
  for (int64_t L : g.eval_lengths) max_eval = std::max(max_eval, L);
  for (int64_t T : g.seq_lens)
    for (int64_t seed : g.seeds)
      for (const KindSpec& k : g.kinds) {
        Cell c;
        c.kind = &k;
        c.seq_len = T;
        c.seed = seed;
        c.id = k.name + "_T" + std::to_string(T) + "_s" + std::to_string(seed);
        json j = g.base;
        j["attention"] = matched_attention(k, g.budget, g.source + ": kinds " + k.name);
        const int64_t batch = g.micro_batch_tokens / T;
        const bool learned = !j.contains("model") || !j["model"].contains("learned_positions") ||
                             j["model"]["learned_positions"].get<bool>();
        j["model"]["block_size"] = learned ? T : std::max(T, max_eval);
        j["train"]["seq_len"] = T;
        j["train"]["batch_size"] = batch;
        j["train"]["batch_tokens"] = g.batch_tokens;
        j["train"]["max_steps"] = steps;
        j["train"]["seed"] = seed;
        j["train"]["resume"] = "auto";
        j["data"]["seed"] = seed;
        j["schedule"]["warmup_steps"] = std::llround(g.warmup_fraction * double(steps));
        j["eval"]["every"] = std::max<int64_t>(1, steps / g.evals);
        j["eval"]["max_batches"] = std::max<int64_t>(1, (g.val_tokens + batch * T - 1) / (batch * T));
        j["checkpoint"]["dir"] = (fs::path(g.out_dir) / "cells" / c.id / "run").string();
        j["checkpoint"]["every"] = std::max<int64_t>(1, steps / g.checkpoints);
        j["checkpoint"]["keep"] = 1;
        j["logging"]["metrics_file"] = "metrics.jsonl";
        try {
          c.config = config::run_config_from_json(j, g.source + ": cell " + c.id);
        } catch (const Error& e) {
          SK_FAIL(e.what());
        }
        cells.push_back(std::move(c));
      }
  return cells;
}

bool cell_matches(const Cell& c, const std::string& filter) {
  if (filter.empty()) return true;
  std::map<std::string, std::vector<std::string>> want;
  std::stringstream ss(filter);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    SK_CHECK(eq != std::string::npos, "--only ", filter, ": '", item, "' is not key=value (keys: kind, T, seed)");
    const std::string key = item.substr(0, eq);
    SK_CHECK(key == "kind" || key == "T" || key == "seed", "--only ", filter, ": unknown key '", key,
             "' (keys: kind, T, seed)");
    want[key].push_back(item.substr(eq + 1));
  }
  for (const auto& [key, values] : want) {
    const std::string have = key == "kind" ? c.kind->name : key == "T" ? std::to_string(c.seq_len) : std::to_string(c.seed);
    if (std::find(values.begin(), values.end(), have) == values.end()) return false;
  }
  return true;
}

double keys_per_query(const Cell& c) {
  Rng rng(0);
  const auto m = attention::make_attention(
      attention::AttentionSpec::from_config(c.config.model, c.config.attention, 0, DType::F32, Device::cpu()), rng);
  return double(m->keys_attended(c.seq_len)) / double(c.seq_len);
}

LengthCheck can_evaluate_at(const Cell& c, int64_t L) {
  if (L == c.seq_len) return {true, ""};
  if (c.config.model.learned_positions && L > c.config.model.block_size)
    return {false, "learned positions end at model.block_size " + std::to_string(c.config.model.block_size)};
  return {true, ""};
}

}  // namespace sk::compare
