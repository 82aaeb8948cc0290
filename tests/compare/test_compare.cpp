// The comparison grid (src/compare/): grid-file errors naming the key, the budget rule against the
// cost model, a tiny end-to-end grid on the CPU (configs/compare/tiny-cpu.json) that writes
// results.json / results.md and resumes after an interruption (finished cells skipped, a half-done
// cell continued bit-identically), and the probes (counts, accuracies in [0, 1], determinism, an
// induction "copy" scorer at 100%, a random scorer at chance, the strictly causal scorer path), and
// the fine-tuning comparison's path (a grid pretrained, exported, fine-tuned with eval.at_start).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "attention/attention.h"
#include "compare/grid.h"
#include "compare/probes.h"
#include "compare/report.h"
#include "compare/runner.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "model/gpt.h"
#include "train/checkpoint.h"
#include "tensor/random.h"
#include "testing/test_helpers.h"
#include "util/file_io.h"

using namespace sk;
namespace fs = std::filesystem;
using nlohmann::json;
using sk::testing::error_of;

namespace {

const std::string kTinyGrid = std::string(SPARSEK_SOURCE_DIR) + "/configs/compare/tiny-cpu.json";

json read_json(const fs::path& p) { return json::parse(util::read_file(p), nullptr, true, true); }

// A synthetic corpus (a repeating pattern with 10% noise) and the tiny grid pointed at it and at dir/out.
json tiny_grid_json(const fs::path& dir) {
  if (!fs::exists(dir / "syn_train_000000.bin")) {
    Rng rng(3);
    std::vector<uint32_t> tr, va;
    for (int i = 0; i < 8000; ++i) tr.push_back(rng.uniform() < 0.1 ? uint32_t(rng.below(48)) : uint32_t((i * 7) % 48));
    for (int i = 0; i < 1500; ++i) va.push_back(uint32_t((i * 7) % 48));
    data::write_shard((dir / "syn_train_000000.bin").string(), tr);
    data::write_shard((dir / "syn_val_000000.bin").string(), va);
  }
  json g = read_json(kTinyGrid);
  g["config"]["data"]["train"] = (dir / "syn_train_*.bin").string();
  g["config"]["data"]["val"] = (dir / "syn_val_*.bin").string();
  g["out_dir"] = (dir / "out").string();
  return g;
}

json minimal_grid() {
  return json::parse(R"({"name": "g", "out_dir": "/tmp/x", "budget": 64, "seq_lens": [256], "seeds": [1],
    "tokens": 1024, "batch_tokens": 512, "config": {"model": {"n_layer": 1, "n_head": 2, "n_embd": 16}},
    "kinds": [{"name": "full", "kind": "full"}, {"name": "sw", "kind": "sliding_window"}]})");
}

std::string grid_error(const std::function<void(json&)>& edit) {
  json g = minimal_grid();
  edit(g);
  return error_of([&] { compare::grid_from_json(g, "grid.json"); });
}

}  // namespace

TEST(CompareGrid, schema_errors_name_the_key) {
  EXPECT_EQ(grid_error([](json&) {}), "");
  auto expect = [](const std::string& e, const std::string& part) { EXPECT_NE(e.find(part), std::string::npos) << e; };
  expect(grid_error([](json& g) { g.erase("budget"); }), "grid.json: budget is required");
  expect(grid_error([](json& g) { g["budget"] = "many"; }), "grid.json: budget must be an integer");
  expect(grid_error([](json& g) { g["seq_lens"] = json::array(); }), "grid.json: seq_lens must not be empty");
  expect(grid_error([](json& g) { g["seq_lens"] = {256, 256}; }), "seq_lens[1] = 256 is repeated");
  expect(grid_error([](json& g) { g["tokenz"] = 1; }), "grid.json: tokenz: unknown key");
  expect(grid_error([](json& g) { g["kinds"][1]["kind"] = "dense"; }), "kinds[1].kind = \"dense\" is not one of");
  expect(grid_error([](json& g) { g["kinds"][1]["attention"] = {{"window", 3}}; }),
         "kinds[1].attention.window is set by the budget rule");
  expect(grid_error([](json& g) { g["kinds"][1]["attention"] = {{"n_hashs", 3}}; }), "attention.n_hashs");
  expect(grid_error([](json& g) { g["kinds"][1]["window_fraction"] = 0.5; }),
         "kinds[1].window_fraction applies to kind sparsek only");
  expect(grid_error([](json& g) { g["kinds"][1]["name"] = "full"; }), "kinds[1].name = \"full\" is used twice");
  expect(grid_error([](json& g) { g["kinds"].push_back({{"kind", "lsh"}, {"attention", {{"n_hashes", 3}}}}); }),
         "budget 64 is not divisible by 2 x attention.n_hashes = 6");
  expect(grid_error([](json& g) { g["kinds"].push_back({{"kind", "sparsek"}, {"window_fraction", 1.0}}); }),
         "window_fraction 1 leaves no selected keys");
  expect(grid_error([](json& g) { g["micro_batch_tokens"] = 384; }), "batch_tokens 512 is not a multiple of micro_batch_tokens 384");
  expect(grid_error([](json& g) { g["seq_lens"] = {256, 300}; }),
         "micro_batch_tokens 512 is not a multiple of seq_lens[1] = 300");
  expect(grid_error([](json& g) { g["tokens"] = 100; }), "tokens 100 is less than batch_tokens 512");
  expect(grid_error([](json& g) { g["config"]["model"]["n_layr"] = 2; }), "model.n_layr");
  expect(grid_error([](json& g) { g["config"]["train"] = {{"seq_len", 128}}; }), "config.train.seq_len is set by the grid");
  expect(grid_error([](json& g) { g["config"]["attention"] = {{"kind", "full"}}; }), "config.attention is set per kind");
  expect(grid_error([](json& g) { g["probes"] = {{"passkey", {{"trails", 3}}}}; }), "probes.passkey.trails: unknown key");
  expect(grid_error([](json& g) { g["probes"] = {{"assoc", {{"pairs", 1}}}}; }), "probes.assoc.pairs = 1 is out of range");
  // The committed grids load (from the repository root: base_config is relative to the working directory).
  const fs::path cwd = fs::current_path();
  fs::current_path(SPARSEK_SOURCE_DIR);
  for (const char* name : {"tiny-cpu.json", "small.json", "small-rotary.json", "gpt2-124m.json"}) {
    const std::string path = std::string("configs/compare/") + name;
    EXPECT_EQ(error_of([&] { compare::expand_cells(compare::load_grid(path)); }), "") << path;
  }
  fs::current_path(cwd);
}

TEST(CompareGrid, budget_rule_matches_the_cost_model) {
  const int64_t B = 64;
  compare::KindSpec sw{"sw", "sliding_window", json::object(), 0.0};
  compare::KindSpec sk{"sk", "sparsek", json::object(), 0.0};
  compare::KindSpec skw{"skw", "sparsek", json::object(), 0.5};
  compare::KindSpec skw3{"skw3", "sparsek", json::object(), 0.25};
  compare::KindSpec lsh{"lsh", "lsh", json{{"n_hashes", 4}}, 0.0};
  EXPECT_EQ(compare::matched_attention(sw, B)["window"], 64);
  EXPECT_EQ(compare::matched_attention(sk, B)["k"], 64);
  EXPECT_EQ(compare::matched_attention(sk, B)["window"], 0);
  EXPECT_EQ(compare::matched_attention(skw, B)["k"], 32);
  EXPECT_EQ(compare::matched_attention(skw, B)["window"], 32);
  EXPECT_EQ(compare::matched_attention(skw3, B)["k"], 48);
  EXPECT_EQ(compare::matched_attention(skw3, B)["window"], 16);
  EXPECT_EQ(compare::matched_attention(lsh, B)["chunk"], 8);
  EXPECT_EQ(compare::matched_attention(lsh, B)["n_buckets"], 0);
  // The cost model: mean keys per query at T >> B is B (up to the start of the sequence).
  const int64_t T = 2048;
  for (const compare::KindSpec* k : {&sw, &sk, &skw, &skw3, &lsh}) {
    config::RunConfig c = config::run_config_from_json(
        json{{"model", {{"n_layer", 1}, {"n_head", 2}, {"n_embd", 16}, {"block_size", T}}},
             {"attention", compare::matched_attention(*k, B)}},
        "test");
    Rng rng(1);
    auto m = attention::make_attention(attention::AttentionSpec::from_config(c.model, c.attention, 0, DType::F32, Device::cpu()), rng);
    const double per_query = double(m->keys_attended(T)) / double(T);
    EXPECT_NEAR(per_query, double(B), 0.03 * B) << k->name;
    EXPECT_LE(per_query, double(B) + 1e-9) << k->name;
  }
}

TEST(CompareGrid, cells_filters_and_lengths) {
  json j = minimal_grid();
  j["seq_lens"] = {128, 256};
  j["seeds"] = {1, 2};
  j["eval_lengths"] = {512};
  const compare::Grid g = compare::grid_from_json(j, "grid.json");
  const auto cells = compare::expand_cells(g);
  ASSERT_EQ(cells.size(), 8u);
  EXPECT_EQ(cells[0].id, "full_T128_s1");
  EXPECT_EQ(cells[1].id, "sw_T128_s1");
  EXPECT_EQ(cells[2].id, "full_T128_s2");
  EXPECT_EQ(cells[0].config.train.batch_size, 4);      // micro_batch_tokens (512) / T
  EXPECT_EQ(cells[4].config.train.batch_size, 2);
  EXPECT_EQ(cells[4].config.train.grad_accum, 1);
  EXPECT_EQ(cells[0].config.train.max_steps, 2);       // 1024 tokens / 512 per step
  EXPECT_EQ(cells[3].config.train.seed, 2);
  EXPECT_EQ(cells[3].config.data.seed, 2);
  EXPECT_EQ(cells[1].config.attention.window, 64);
  EXPECT_EQ(cells[1].config.train.resume, "auto");
  EXPECT_TRUE(compare::cell_matches(cells[1], "kind=sw,T=128"));
  EXPECT_FALSE(compare::cell_matches(cells[1], "kind=full,T=128"));
  EXPECT_TRUE(compare::cell_matches(cells[1], "kind=full,kind=sw,seed=1"));
  EXPECT_NE(error_of([&] { compare::cell_matches(cells[1], "layers=2"); }).find("unknown key 'layers'"), std::string::npos);
  // Learned positions: no evaluation past the training length.
  EXPECT_TRUE(compare::can_evaluate_at(cells[0], 128).ok);
  EXPECT_FALSE(compare::can_evaluate_at(cells[0], 512).ok);
  j["config"]["model"]["learned_positions"] = false;
  j["config"]["model"]["rotary_pct"] = 1.0;
  const compare::Grid gr = compare::grid_from_json(j, "grid.json");
  const auto rc = compare::expand_cells(gr);
  EXPECT_TRUE(compare::can_evaluate_at(rc[0], 512).ok);
  EXPECT_EQ(rc[0].config.model.block_size, 512);
}

TEST(CompareGrid, tiny_grid_end_to_end_and_resume) {
  const fs::path dir = sk::testing::fresh_test_dir("sk_test_compare");
  // Uninterrupted.
  json ja = tiny_grid_json(dir);
  ja["out_dir"] = (dir / "a").string();
  const compare::Grid ga = compare::grid_from_json(ja, "tiny-a");
  const compare::RunnerResult ra = compare::run_grid(ga, {});
  EXPECT_EQ(ra.cells_total, 4);
  EXPECT_EQ(ra.cells_done, 4);
  EXPECT_FALSE(ra.stopped);
  const json res = read_json(dir / "a" / "results.json");
  ASSERT_EQ(res["cells"].size(), 4u);
  for (const json& c : res["cells"]) {
    EXPECT_EQ(c["status"], "done") << c["id"];
    EXPECT_EQ(c["train"]["steps"], 12);
    EXPECT_GT(c["train"]["tokens_per_s"].get<double>(), 0);
    EXPECT_EQ(c["train"]["val_curve"].size(), 3u);
    EXPECT_TRUE(std::isfinite(c["eval"]["32"]["loss"].get<double>()));
  }
  ASSERT_EQ(res["summary"].size(), 2u);
  EXPECT_EQ(res["summary"][0]["val_loss"]["n"], 2);
  ASSERT_EQ(res["claims"].size(), 1u);  // sparsek_window vs full at T 32
  EXPECT_NEAR(res["claims"][0]["speed_ratio"].get<double>(),
              res["summary"][1]["tokens_per_s"]["mean"].get<double>() / res["summary"][0]["tokens_per_s"]["mean"].get<double>(),
              1e-12);
  const std::string md = util::read_file(dir / "a" / "results.md");
  EXPECT_NE(md.find("| full | 32 | 2 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| sparsek_window | 32 | 2 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 32 | sparsek_window | full |"), std::string::npos) << md;
  EXPECT_NE(md.find("| speed ratio |"), std::string::npos) << md;

  // Interrupted after 18 optimizer steps: cell 0 (12 steps) done, cell 1 stopped at its step 6.
  json jb = tiny_grid_json(dir);
  jb["out_dir"] = (dir / "b").string();
  const compare::Grid gb = compare::grid_from_json(jb, "tiny-b");
  compare::RunnerOptions stop18;
  stop18.should_stop = [](int64_t steps) { return steps >= 18; };
  const compare::RunnerResult rb1 = compare::run_grid(gb, stop18);
  EXPECT_TRUE(rb1.stopped);
  EXPECT_EQ(rb1.cells_done, 1);
  EXPECT_EQ(rb1.ran, (std::vector<std::string>{"full_T32_s1", "sparsek_window_T32_s1"}));
  const auto cells = compare::expand_cells(gb);
  const json half = compare::read_cell_state(gb, cells[1]);
  EXPECT_FALSE(half["train"]["done"].get<bool>());
  EXPECT_EQ(half["train"]["steps"], 6);
  EXPECT_EQ(read_json(dir / "b" / "results.json")["cells"][2]["status"], "todo");
  // Continued: the finished cell is skipped, the half-done one resumes from its checkpoint.
  const compare::RunnerResult rb2 = compare::run_grid(gb, {});
  EXPECT_FALSE(rb2.stopped);
  EXPECT_EQ(rb2.cells_done, 4);
  EXPECT_EQ(rb2.ran, (std::vector<std::string>{"sparsek_window_T32_s1", "full_T32_s2", "sparsek_window_T32_s2"}));
  const json resb = read_json(dir / "b" / "results.json");
  for (size_t i = 0; i < 4; ++i) {  // bit-identical to the uninterrupted grid (CPU)
    EXPECT_EQ(resb["cells"][i]["eval"]["32"]["loss"], res["cells"][i]["eval"]["32"]["loss"]) << i;
    EXPECT_EQ(resb["cells"][i]["probes"]["assoc"], res["cells"][i]["probes"]["assoc"]) << i;
  }
  // A third call has nothing to do.
  EXPECT_TRUE(compare::run_grid(gb, {}).ran.empty());

  // A state that came back from a device session without its checkpoint (trained, not probed):
  // the cell is trained again (the same losses) for its missing phase.
  json st = compare::read_cell_state(gb, cells[3]);
  st.erase("probes");
  st.erase("done");
  util::write_file_atomic(dir / "b" / "cells" / cells[3].id / "cell.json", st.dump());
  for (const auto& e : fs::directory_iterator(dir / "b" / "cells" / cells[3].id / "run"))
    if (e.path().filename().string().rfind("step_", 0) == 0 || e.path().filename() == "latest") fs::remove_all(e.path());
  const compare::RunnerResult rb3 = compare::run_grid(gb, {});
  EXPECT_EQ(rb3.ran, (std::vector<std::string>{"sparsek_window_T32_s2"}));
  EXPECT_EQ(rb3.cells_done, 4);
  const json again = compare::read_cell_state(gb, cells[3]);
  EXPECT_EQ(again["eval"]["32"]["loss"], res["cells"][3]["eval"]["32"]["loss"]);
  EXPECT_EQ(again["probes"]["assoc"], res["cells"][3]["probes"]["assoc"]);
  EXPECT_FALSE(again["probes"].contains("model"));

  // The same with keep_records: the recorded training summary and evaluation stay (marked here so
  // that a recomputation would show), the retrain's summary goes to "retrain", the probes say they
  // ran on a retrained model, and the first run's metrics file is kept. The retrain is first
  // stopped after 3 steps: the kept record survives the interruption.
  json marked = again;
  marked.erase("probes");
  marked.erase("done");
  marked["eval"]["32"]["loss"] = 123.25;
  marked["train"]["tokens_per_s"] = 4.5;
  util::write_file_atomic(dir / "b" / "cells" / cells[3].id / "cell.json", marked.dump());
  const fs::path run3 = dir / "b" / "cells" / cells[3].id / "run";
  for (const auto& e : fs::directory_iterator(run3))
    if (e.path().filename().string().rfind("step_", 0) == 0 || e.path().filename() == "latest") fs::remove_all(e.path());
  const std::string first_metrics = util::read_file(run3 / "metrics.jsonl");
  compare::RunnerOptions keep;
  keep.keep_records = true;
  compare::RunnerOptions keep_stop3 = keep;
  keep_stop3.should_stop = [](int64_t steps) { return steps >= 3; };
  EXPECT_TRUE(compare::run_grid(gb, keep_stop3).stopped);
  const json mid = compare::read_cell_state(gb, cells[3]);
  EXPECT_FALSE(mid["train"]["done"].get<bool>());
  EXPECT_EQ(mid["original_train"]["tokens_per_s"], 4.5);
  EXPECT_EQ(mid["eval"]["32"]["loss"], 123.25);
  const compare::RunnerResult rb4 = compare::run_grid(gb, keep);
  EXPECT_EQ(rb4.ran, (std::vector<std::string>{"sparsek_window_T32_s2"}));
  const json kept = compare::read_cell_state(gb, cells[3]);
  EXPECT_TRUE(kept["done"].get<bool>());
  EXPECT_EQ(kept["eval"]["32"]["loss"], 123.25);
  EXPECT_EQ(kept["train"]["tokens_per_s"], 4.5);
  EXPECT_FALSE(kept.contains("original_train"));
  EXPECT_EQ(kept["retrain"]["steps"], again["train"]["steps"]);
  EXPECT_EQ(kept["retrain"]["final_train_loss"], again["train"]["final_train_loss"]);  // CPU: bit-identical retrain
  EXPECT_EQ(kept["probes"]["model"], "retrained");
  EXPECT_EQ(kept["probes"]["assoc"], res["cells"][3]["probes"]["assoc"]);
  EXPECT_EQ(util::read_file(run3 / "metrics-original.jsonl"), first_metrics);
  fs::remove_all(dir);
}

TEST(CompareGrid, lsh_cell_is_evaluated_strictly_causally_and_failures_are_recorded) {
  const fs::path dir = sk::testing::fresh_test_dir("sk_test_compare_lsh");
  json j = tiny_grid_json(dir);
  j["kinds"] = json::parse(R"([{"name": "lsh", "kind": "lsh", "attention": {"n_hashes": 2}}])");
  j["seeds"] = {1};
  j["tokens"] = 512;
  const compare::Grid g = compare::grid_from_json(j, "tiny-lsh");
  const compare::RunnerResult r = compare::run_grid(g, {});
  EXPECT_EQ(r.cells_done, 1);
  const json st = compare::read_cell_state(g, compare::expand_cells(g)[0]);
  EXPECT_EQ(st["attention"]["chunk"], 2);  // budget 8 / (2 x 2 rounds)
  EXPECT_TRUE(st["eval"]["32"]["causal"].get<bool>());
  EXPECT_TRUE(std::isfinite(st["eval"]["32"]["loss"].get<double>()));
  EXPECT_EQ(st["probes"]["assoc"]["trials"], 12);
  // A cell that fails (its validation data vanished) is recorded and the call goes on.
  json jf = tiny_grid_json(dir);
  jf["out_dir"] = (dir / "fail").string();
  jf["seeds"] = {1};
  jf["config"]["data"]["val"] = (dir / "nothing_*.bin").string();
  const compare::Grid gf = compare::grid_from_json(jf, "tiny-fail");
  const compare::RunnerResult rf = compare::run_grid(gf, {});
  EXPECT_EQ(rf.failed, (std::vector<std::string>{"full_T32_s1", "sparsek_window_T32_s1"}));
  const json sf = compare::read_cell_state(gf, compare::expand_cells(gf)[0]);
  EXPECT_NE(sf["error"].get<std::string>().find("nothing_"), std::string::npos) << sf.dump();
  EXPECT_FALSE(sf.value("done", false));
  fs::remove_all(dir);
}

TEST(CompareGrid, rotary_model_is_evaluated_beyond_its_training_length) {
  const fs::path dir = sk::testing::fresh_test_dir("sk_test_compare_rotary");
  json j = tiny_grid_json(dir);
  j["config"]["model"]["learned_positions"] = false;
  j["config"]["model"]["rotary_pct"] = 0.25;
  j["eval_lengths"] = {64};
  j["seeds"] = {1};
  j["kinds"] = json::parse(R"([{"name": "sparsek_window", "kind": "sparsek", "window_fraction": 0.5}])");
  j["probes"]["enabled"] = false;
  const compare::Grid g = compare::grid_from_json(j, "tiny-rotary");
  EXPECT_EQ(compare::run_grid(g, {}).cells_done, 1);
  const json st = compare::read_cell_state(g, compare::expand_cells(g)[0]);
  EXPECT_TRUE(std::isfinite(st["eval"]["64"]["loss"].get<double>())) << st.dump();
  const json res = read_json(dir / "out" / "results.json");
  EXPECT_EQ(res["summary"][0]["val_loss_at"]["64"]["n"], 1);
  EXPECT_NE(util::read_file(dir / "out" / "results.md").find("Validation loss at other lengths"), std::string::npos);
  fs::remove_all(dir);
}

// The fine-tuning comparison (configs/compare/finetune*.json, scripts/compare/finetune_call.sh) in
// miniature: a Pythia-shaped model pretrained by a one-cell grid at T 32, exported as the CLI's
// `sparsek export` does, and fine-tuned at T 64 by a second grid through model.init_from with
// eval.at_start. The step-0 validation loss of the fine-tuned full-attention cell must equal the
// pretrained model's own evaluation at 64 (the weights arrived exactly), be far below a randomly
// initialised model's, and the report must carry the before/after table.
TEST(CompareGrid, finetune_grid_starts_from_the_exported_pretrained_model) {
  const fs::path dir = sk::testing::fresh_test_dir("sk_test_compare_finetune");
  json pre = tiny_grid_json(dir);
  pre["out_dir"] = (dir / "pre").string();
  json& m = pre["config"]["model"];
  m["learned_positions"] = false;
  m["rotary_pct"] = 0.25;
  m["parallel_residual"] = true;
  m["tied_embeddings"] = false;
  m["gelu"] = "erf";
  pre["eval_lengths"] = {64};
  pre["seeds"] = {1};
  pre["kinds"] = json::parse(R"([{"name": "full", "kind": "full"}])");
  pre["probes"]["enabled"] = false;
  const compare::Grid gp = compare::grid_from_json(pre, "tiny-pretrain");
  ASSERT_EQ(compare::run_grid(gp, {}).cells_done, 1);
  const json pst = compare::read_cell_state(gp, compare::expand_cells(gp)[0]);
  const double pre_at_64 = pst["eval"]["64"]["loss"].get<double>();

  // `sparsek export CHECKPOINT HF_DIR` (src/cli/hf.cpp).
  train::Checkpoint::open(dir / "pre" / "cells" / "full_T32_s1" / "run").export_hf((dir / "hf").string());

  auto finetune = [&](const std::string& name, bool from_pretrained) {
    json ft = pre;
    ft["name"] = name;
    ft["out_dir"] = (dir / name).string();
    if (from_pretrained) ft["config"]["model"]["init_from"] = "hf:" + (dir / "hf").string();
    ft["config"]["eval"]["at_start"] = true;
    ft["seq_lens"] = {64};
    ft["eval_lengths"] = json::array();
    ft["tokens"] = 1536;
    ft["kinds"] = json::parse(R"([{"name": "full", "kind": "full"}, {"name": "sparsek_window", "kind": "sparsek",
                                   "window_fraction": 0.5}])");
    const compare::Grid g = compare::grid_from_json(ft, name);
    EXPECT_EQ(compare::run_grid(g, {}).cells_done, 2) << name;
    return read_json(dir / name / "results.json");
  };
  const json res = finetune("ft", true);
  const json rnd = finetune("scratch", false);
  for (size_t i = 0; i < 2; ++i) {
    const json& curve = res["cells"][i]["train"]["val_curve"];
    ASSERT_GE(curve.size(), 2u) << res["cells"][i].dump();
    EXPECT_EQ(curve[0]["step"], 0);
    EXPECT_LT(curve[0]["val_loss"].get<double>(), rnd["cells"][i]["train"]["val_curve"][0]["val_loss"].get<double>() - 0.5)
        << "cell " << i << ": the pretrained weights did not arrive";
    ASSERT_FALSE(res["summary"][i]["val_loss_at_start"].is_null());
    EXPECT_EQ(res["summary"][i]["val_loss_at_start"]["mean"], curve[0]["val_loss"]);
    EXPECT_EQ(res["summary"][i]["val_loss_curve_end"]["mean"], curve.back()["val_loss"]);
  }
  // Full attention at step 0 is the pretrained model itself at T 64 (fp32 on the CPU; the two
  // evaluations batch the same validation tokens differently).
  EXPECT_NEAR(res["cells"][0]["train"]["val_curve"][0]["val_loss"].get<double>(), pre_at_64, 1e-5);
  const std::string md = util::read_file(dir / "ft" / "results.md");
  EXPECT_NE(md.find("## Before and after training"), std::string::npos) << md;
  EXPECT_NE(md.find("| sparsek_window | 64 | 1 | "), std::string::npos) << md;
  fs::remove_all(dir);
}

TEST(CompareProbes, model_probes_count_and_range) {
  const fs::path dir = sk::testing::fresh_test_dir("sk_test_probes");
  tiny_grid_json(dir);
  const compare::Grid g = compare::load_grid(kTinyGrid);
  config::RunConfig c = compare::expand_cells(g)[1].config;  // sparsek_window at T 32
  Rng rng(5);
  const model::Gpt gpt(c.model, c.attention, DType::F32, Device::cpu(), rng);
  const auto t = compare::synthetic_templates(c.model.vocab_size);
  const auto filler = compare::filler_tokens((dir / "syn_val_*.bin").string(), 1 << 20);
  EXPECT_EQ(filler.size(), 1500u);
  compare::ProbeOptions po;
  po.passkey_distances = {10, 20, 30};
  po.passkey_trials = 5;
  po.assoc_pairs = 4;
  po.assoc_trials = 9;
  po.assoc_bins = {8, 16};
  const json r = compare::run_probes(compare::model_scorer(gpt, 4, false), t, filler, 32, po);
  ASSERT_EQ(r["passkey"].size(), 3u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(r["passkey"][i]["trials"], 5);
    const double a = r["passkey"][i]["accuracy"].get<double>();
    EXPECT_GE(a, 0.0);
    EXPECT_LE(a, 1.0);
    EXPECT_LT(r["passkey"][i]["mean_logprob"].get<double>(), 0.0);
  }
  EXPECT_TRUE(r["passkey"][2].contains("skipped"));
  EXPECT_EQ(r["assoc"]["trials"], 9);
  int64_t bin_trials = 0;
  for (const json& b : r["assoc"]["bins"]) bin_trials += b["trials"].get<int64_t>();
  EXPECT_EQ(bin_trials, 9);
  EXPECT_EQ(r["assoc"]["bins"].size(), 3u);
  EXPECT_GE(r["assoc"]["accuracy"].get<double>(), 0.0);
  EXPECT_LE(r["assoc"]["accuracy"].get<double>(), 1.0);
  // Deterministic.
  EXPECT_EQ(compare::run_probes(compare::model_scorer(gpt, 3, false), t, filler, 32, po), r);
  fs::remove_all(dir);
}

TEST(CompareProbes, copy_scorer_is_perfect_random_scorer_is_chance) {
  const auto t = compare::synthetic_templates(64);
  Rng rng(11);
  std::vector<int32_t> filler;
  for (int i = 0; i < 20000; ++i) filler.push_back(int32_t(rng.below(48)));  // random "text"
  // Sequences: exact lengths, the answer at the end, the key earlier at the recorded distance.
  for (int64_t d : {12, 100, 400}) {
    const auto seqs = compare::passkey_sequences(t, filler, 512, d, 10, 3);
    ASSERT_EQ(seqs.size(), 10u);
    for (const auto& s : seqs) {
      ASSERT_EQ(s.tokens.size(), 512u);
      EXPECT_EQ(s.distance, d);
      EXPECT_EQ(s.n_answer, 5);
      for (int64_t j = 0; j < s.n_answer; ++j)
        EXPECT_EQ(s.tokens[size_t(512 - 5 + j)], s.tokens[size_t(512 - 5 - d + j)]);
    }
    EXPECT_NE(seqs[0].tokens, seqs[1].tokens);
    EXPECT_EQ(compare::passkey_sequences(t, filler, 512, d, 10, 3)[4].tokens, seqs[4].tokens);  // deterministic
    EXPECT_NE(compare::passkey_sequences(t, filler, 512, d, 10, 4)[4].tokens, seqs[4].tokens);  // seeded
  }
  compare::ProbeOptions po;
  po.passkey_distances = {12, 100, 400, 600};
  po.passkey_trials = 10;
  po.assoc_pairs = 16;
  po.assoc_trials = 400;
  po.assoc_bins = {64, 256};
  const json copy = compare::run_probes(compare::induction_scorer(), t, filler, 512, po);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(copy["passkey"][i]["accuracy"], 1.0) << copy.dump();
  EXPECT_TRUE(copy["passkey"][3].contains("skipped"));
  EXPECT_EQ(copy["assoc"]["accuracy"], 1.0);
  // The log line carries every distance and bin (a device call whose state is lost keeps its log).
  EXPECT_EQ(compare::probe_summary(copy),
            "passkey d=12 1.00, d=100 1.00, d=400 1.00, d=600 skipped; assoc 1.000 (0-64 1.00, 64-256 1.00, 256+ 1.00)")
      << copy["assoc"].dump();
  const json rnd = compare::run_probes(compare::random_scorer(t.values, 9), t, filler, 512, po);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(rnd["passkey"][i]["accuracy"], 0.0);
  const double chance = rnd["assoc"]["chance"].get<double>();
  EXPECT_NEAR(chance, 1.0 / 17.0, 1e-12);
  EXPECT_NEAR(rnd["assoc"]["accuracy"].get<double>(), chance, 0.04) << rnd["assoc"].dump();
}

TEST(CompareProbes, strictly_causal_scorer_equals_forward_for_full_attention) {
  config::RunConfig c = config::run_config_from_json(
      json{{"model", {{"n_layer", 2}, {"n_head", 2}, {"n_embd", 16}, {"vocab_size", 64}, {"pad_vocab_multiple", 8},
                      {"block_size", 64}}}, {"train", {{"seq_len", 64}}}},
      "test");
  Rng rng(2);
  const model::Gpt gpt(c.model, c.attention, DType::F32, Device::cpu(), rng);
  const auto t = compare::synthetic_templates(64);
  std::vector<int32_t> filler;
  for (int i = 0; i < 4000; ++i) filler.push_back(int32_t(rng.below(40)));
  const auto seqs = compare::passkey_sequences(t, filler, 64, 30, 3, 1);
  const auto a = compare::model_scorer(gpt, 2, false)(seqs);
  const auto b = compare::model_scorer(gpt, 2, true)(seqs);
  ASSERT_EQ(a.size(), 3u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].argmax, b[i].argmax);
    for (size_t j = 0; j < a[i].logprob.size(); ++j) EXPECT_NEAR(a[i].logprob[j], b[i].logprob[j], 1e-4);
  }
}

// The GPT-2 templates (when data/tokenizers/gpt2 is there: scripts/get_gpt2_tokenizer.sh).
TEST(CompareProbes, gpt2_text_templates) {
  const std::string dir = std::string(SPARSEK_SOURCE_DIR) + "/data/tokenizers/gpt2";
  if (!fs::exists(dir + "/encoder.json")) GTEST_SKIP() << dir << " is missing (scripts/get_gpt2_tokenizer.sh)";
  const data::Tokenizer tok = data::Tokenizer::load(dir);
  const auto t = compare::text_templates(tok);
  EXPECT_GE(t.keys.size(), 40u);
  EXPECT_GE(t.values.size(), 80u);
  // The key's tokens are the same inside the needle text and as the answer.
  for (int64_t key : {10000, 12345, 56789, 99999}) {
    const auto k = t.key_tokens(key);
    std::vector<int32_t> needle = t.needle_prefix;
    needle.insert(needle.end(), k.begin(), k.end());
    needle.insert(needle.end(), t.needle_suffix.begin(), t.needle_suffix.end());
    const auto whole = tok.encode(" The pass key is " + std::to_string(key) + ". Remember it.");
    EXPECT_EQ(std::vector<int32_t>(whole.begin(), whole.end()), needle) << key;
  }
  std::vector<int32_t> filler(5000, int32_t(tok.encode(" the")[0]));
  const auto seqs = compare::passkey_sequences(t, filler, 1024, 700, 4, 1);
  const json copy = compare::run_probes(compare::induction_scorer(), t, filler, 1024,
                                        {.passkey_distances = {700}, .passkey_trials = 4, .assoc_pairs = 32, .assoc_trials = 20});
  EXPECT_EQ(copy["passkey"][0]["accuracy"], 1.0);
  EXPECT_EQ(copy["assoc"]["accuracy"], 1.0);
}
