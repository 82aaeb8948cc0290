// `sparsek compare` and `sparsek probe` as a user runs them (build/sparsek as a child process): a
// grid error exits with status 2 naming the key; --list, --only, --no-probes and --report-only on
// the tiny grid; a probe of one cell's checkpoint writes its JSON.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "data/shard.h"
#include "tensor/random.h"
#include "testing/test_helpers.h"
#include "train/train_test_util.h"
#include "util/file_io.h"

using namespace sk;
namespace fs = std::filesystem;
using nlohmann::json;

TEST(CompareCli, list_run_report_and_probe) {
  const fs::path dir = sk::testing::fresh_test_dir("sk_test_compare_cli");
  Rng rng(4);
  std::vector<uint32_t> tr, va;
  for (int i = 0; i < 8000; ++i) tr.push_back(rng.uniform() < 0.1 ? uint32_t(rng.below(48)) : uint32_t((i * 5) % 48));
  for (int i = 0; i < 1500; ++i) va.push_back(uint32_t((i * 5) % 48));
  data::write_shard((dir / "syn_train_000000.bin").string(), tr);
  data::write_shard((dir / "syn_val_000000.bin").string(), va);
  json g = json::parse(util::read_file(std::string(SPARSEK_SOURCE_DIR) + "/configs/compare/tiny-cpu.json"), nullptr, true, true);
  g["config"]["data"]["train"] = (dir / "syn_train_*.bin").string();
  g["config"]["data"]["val"] = (dir / "syn_val_*.bin").string();
  g["out_dir"] = (dir / "out").string();
  const std::string grid = (dir / "grid.json").string();
  std::ofstream(grid) << g.dump(2);
  const std::string log = (dir / "log.txt").string();

  json bad = g;
  bad["kinds"][1]["attention"] = {{"k", 3}};
  std::ofstream(dir / "bad.json") << bad.dump();
  auto r = sk::testing::run_sparsek({"compare", (dir / "bad.json").string()}, log);
  EXPECT_TRUE(r.exited(2)) << r.output;
  EXPECT_NE(r.output.find("kinds[1].attention.k is set by the budget rule"), std::string::npos) << r.output;

  r = sk::testing::run_sparsek({"compare", grid, "--list"}, log);
  ASSERT_TRUE(r.exited(0)) << r.output;
  EXPECT_NE(r.output.find("full_T32_s1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("todo"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out" / "results.json"));  // --list writes nothing

  r = sk::testing::run_sparsek({"compare", grid, "--only", "kind=full,seed=1", "--no-probes"}, log);
  ASSERT_TRUE(r.exited(0)) << r.output;
  EXPECT_NE(r.output.find("0 of 1 selected cells done (4 in the grid)"), std::string::npos) << r.output;
  r = sk::testing::run_sparsek({"compare", grid, "--list", "--skip", "seed=2"}, log);
  EXPECT_NE(r.output.find("full_T32_s1                          evaluated"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("full_T32_s2                          todo        (not selected)"), std::string::npos) << r.output;

  r = sk::testing::run_sparsek({"compare", grid, "--report-only"}, log);
  ASSERT_TRUE(r.exited(0)) << r.output;
  const std::string md = util::read_file(dir / "out" / "results.md");
  EXPECT_NE(md.find("0 of 4 cells done"), std::string::npos) << md;
  EXPECT_NE(md.find("| full | 32 | 1 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| sparsek_window | 32 | 0 | 7 | not run"), std::string::npos) << md;

  const std::string out = (dir / "probe.json").string();
  r = sk::testing::run_sparsek({"probe", (dir / "out" / "cells" / "full_T32_s1" / "run").string(), "--distances",
                                "10,20", "--trials", "3", "--assoc-pairs", "4", "--assoc-trials", "5", "--out", out},
                               log);
  ASSERT_TRUE(r.exited(0)) << r.output;
  const json p = json::parse(util::read_file(out));
  EXPECT_EQ(p["L"], 32);
  EXPECT_EQ(p["step"], 12);
  ASSERT_EQ(p["passkey"].size(), 2u);
  EXPECT_EQ(p["passkey"][1]["trials"], 3);
  EXPECT_EQ(p["assoc"]["trials"], 5);
  fs::remove_all(dir);
}
