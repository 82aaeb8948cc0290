// `sparsek train` config errors (src/cli/main.cpp, src/config/, src/train/trainer.cpp): an
// unknown key, a wrong type, an out-of-range value, a missing data file, a batch that does not
// divide, a missing config file: exit status 2 and exactly one line naming the key or file.
// Runs build/sparsek (SPARSEK_BINARY).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "testing/test_helpers.h"
#include "train/train_test_util.h"

namespace fs = std::filesystem;

namespace {

// Runs `sparsek train` and checks: status 2, one non-empty line, containing each of `names`.
void expect_config_error(const std::vector<std::string>& args, const std::vector<std::string>& names,
                         const fs::path& log) {
  std::vector<std::string> full = {"train"};
  full.insert(full.end(), args.begin(), args.end());
  const auto r = sk::testing::run_sparsek(full, log.string());
  EXPECT_TRUE(r.exited(2)) << "status " << r.status << ": " << r.output;
  std::string out = r.output;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  EXPECT_FALSE(out.empty());
  EXPECT_EQ(out.find('\n'), std::string::npos) << "more than one line:\n" << r.output;
  for (const auto& n : names) EXPECT_NE(out.find(n), std::string::npos) << "'" << n << "' not in: " << out;
}

}  // namespace

TEST(TrainCli, config_errors_exit_2_with_one_line_naming_the_key_or_file) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_train_cli");
  sk::config::RunConfig c = sk::testing::tiny_run(dir);
  const std::string good = sk::testing::write_config(c, dir / "good.json");
  const fs::path log = dir / "out.log";

  std::ofstream(dir / "unknown.json") << R"({"train": {"max_stepz": 10}})";
  expect_config_error({(dir / "unknown.json").string()}, {"train.max_stepz", "unknown.json"}, log);
  std::ofstream(dir / "type.json") << R"({"train": {"max_steps": "ten"}})";
  expect_config_error({(dir / "type.json").string()}, {"train.max_steps"}, log);
  expect_config_error({good, "--set", "optimizer.lr=-1"}, {"optimizer.lr"}, log);
  expect_config_error({good, "--set", "model.n_layerz=3"}, {"model.n_layerz"}, log);
  expect_config_error({good, "--set", "data.train=" + (dir / "nothing_*.bin").string()}, {"nothing_*.bin"}, log);
  expect_config_error({good, "--set", "train.batch_tokens=1000"}, {"train.batch_tokens", "train.batch_size"}, log);
  expect_config_error({(dir / "absent.json").string()}, {"absent.json"}, log);
  std::ofstream(dir / "broken.json") << R"({"train": )";
  expect_config_error({(dir / "broken.json").string()}, {"broken.json"}, log);
  fs::remove_all(dir);
}

TEST(TrainCli, batch_tokens_sets_grad_accum) {
  sk::config::RunConfig c =
      sk::config::load_run_config("", {"train.batch_size=4", "train.seq_len=32", "train.batch_tokens=512"});
  EXPECT_EQ(c.train.grad_accum, 4);
  EXPECT_NE(sk::testing::error_of([] {
              sk::config::load_run_config("", {"train.batch_size=4", "train.seq_len=32", "train.batch_tokens=512",
                                               "train.grad_accum=3"});
            }).find("train.grad_accum"),
            std::string::npos);
}
