// Run config loading and validation (src/config/): defaults, nested JSON, --set overrides,
// unknown keys / wrong types / out-of-range values rejected with the full key path, cross-field
// rules, to_json round trip, and every preset in configs/ loads.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "config/run_config.h"
#include "util/check.h"

using namespace sk;
using namespace sk::config;

namespace {
std::string write_temp(const std::string& name, const std::string& text) {
  std::string p = (std::filesystem::temp_directory_path() / name).string();
  std::ofstream(p) << text;
  return p;
}
void expect_error(const std::function<void()>& f, const std::vector<std::string>& needles) {
  try {
    f();
    FAIL() << "expected sk::Error";
  } catch (const Error& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}
}  // namespace

TEST(Config, defaults_file_and_overrides) {
  RunConfig d = load_run_config("");
  EXPECT_EQ(d.model.n_layer, 12);
  std::string p = write_temp("sk_cfg1.json", R"({"model": {"n_layer": 2, "n_embd": 64, "n_head": 4},
      "attention": {"kind": "sliding_window", "window": 32}, "optimizer": {"lr": 1e-3}})");
  RunConfig c = load_run_config(p, {"train.batch_size=3", "model.gelu=erf", "optimizer.lr=0.002"});
  EXPECT_EQ(c.model.n_layer, 2);
  EXPECT_EQ(c.attention.kind, "sliding_window");
  EXPECT_EQ(c.train.batch_size, 3);
  EXPECT_EQ(c.model.gelu, "erf");
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 0.002);
  // to_json gives the resolved config back, which loads to the same values.
  std::string p2 = write_temp("sk_cfg2.json", c.to_json().dump());
  EXPECT_EQ(load_run_config(p2).to_json(), c.to_json());
  EXPECT_EQ(c.model.padded_vocab(), 50304);
}

TEST(Config, errors_name_the_key) {
  std::string p = write_temp("sk_cfg3.json", R"({"model": {"n_layerz": 2}})");
  expect_error([&] { load_run_config(p); }, {"unknown key 'model.n_layerz'", "model.n_layer", p});
  expect_error([&] { load_run_config("", {"model.n_head=four"}); }, {"model.n_head", "integer"});
  expect_error([&] { load_run_config("", {"optimizer.lr=-1"}); }, {"optimizer.lr", "out of range"});
  expect_error([&] { load_run_config("", {"attention.kind=dense"}); }, {"attention.kind", "full, sliding_window, lsh, sparsek"});
  expect_error([&] { load_run_config("", {"trainer.steps=3"}); }, {"unknown key 'trainer.steps'", "train"});
  expect_error([&] { load_run_config("", {"model.n_head=5"}); }, {"model.n_embd", "model.n_head"});
  expect_error([&] { load_run_config("", {"train.seq_len=4096"}); }, {"train.seq_len", "model.block_size"});
  expect_error([&] { load_run_config("", {"attention.kind=sliding_window"}); }, {"attention.window"});
  expect_error([&] { load_run_config("/nonexistent/x.json"); }, {"/nonexistent/x.json"});
  expect_error([&] { load_run_config("", {"model.init_from=/models/pythia"}); },
               {"model.init_from", "/models/pythia", "hf:DIR"});
  EXPECT_EQ(load_run_config("", {"model.init_from=hf:/models/pythia"}).model.init_from, "hf:/models/pythia");
  std::string bad = write_temp("sk_cfg4.json", "{ not json");
  expect_error([&] { load_run_config(bad); }, {bad, "not valid JSON"});
}

TEST(Config, presets_load) {
  const std::filesystem::path dir = std::filesystem::path(SPARSEK_SOURCE_DIR) / "configs";
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".json") continue;
    SCOPED_TRACE(e.path().string());
    EXPECT_NO_THROW(load_run_config(e.path().string()));
    ++n;
  }
  EXPECT_GE(n, 1);
}

TEST(Config, sparsek_keys) {
  RunConfig c = load_run_config("", {"attention.kind=sparsek", "attention.k=64", "attention.window=16",
                                     "attention.mask_mode=log_mask", "attention.score_slope=0.01",
                                     "attention.score_init=normal"});
  EXPECT_EQ(c.attention.k, 64);
  EXPECT_EQ(c.attention.mask_mode, "log_mask");
  EXPECT_EQ(c.attention.score_init, "normal");
  EXPECT_EQ(load_run_config("").attention.score_init, "recent");
  expect_error([&] { load_run_config("", {"attention.mask_mode=gate"}); }, {"attention.mask_mode", "gate_values, log_mask"});
  expect_error([&] { load_run_config("", {"attention.score_init=zeros"}); }, {"attention.score_init", "recent, normal"});
  expect_error([&] { load_run_config("", {"attention.k=0"}); }, {"attention.k", "out of range"});
  expect_error([&] { load_run_config("", {"attention.score_slope=-0.1"}); }, {"attention.score_slope", "out of range"});
  // lsh: n_hashes >= 1, chunk >= 1, n_buckets 0 or even, no rotary
  const RunConfig l = load_run_config("", {"attention.kind=lsh", "attention.n_hashes=4", "attention.chunk=64",
                                           "attention.n_buckets=16"});
  EXPECT_EQ(l.attention.n_hashes, 4);
  EXPECT_EQ(l.attention.chunk, 64);
  EXPECT_EQ(l.attention.n_buckets, 16);
  expect_error([&] { load_run_config("", {"attention.kind=lsh", "attention.n_buckets=7"}); }, {"attention.n_buckets", "even"});
  expect_error([&] { load_run_config("", {"attention.n_hashes=0"}); }, {"attention.n_hashes", "out of range"});
  expect_error([&] { load_run_config("", {"attention.chunk=0"}); }, {"attention.chunk", "out of range"});
  expect_error([&] { load_run_config("", {"attention.kind=lsh", "model.rotary_pct=0.5"}); }, {"lsh", "rotary"});
}
