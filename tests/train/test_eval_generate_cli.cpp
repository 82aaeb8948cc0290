// `sparsek eval` and `sparsek generate` (src/cli/eval.cpp, generate.cpp) on a tiny model trained
// on a repeated sentence tokenized with the tiny test tokenizer (tests/data/fixtures): eval of
// the checkpoint reproduces the trainer's validation loss (from a run directory, a config file,
// or --files), greedy generation continues the sentence (also past the 32-position window), a
// seeded sample is reproducible, and errors name the missing path. Runs build/sparsek (SPARSEK_BINARY).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "data/tokenizer.h"
#include "testing/test_helpers.h"
#include "train/train_test_util.h"
#include "train/trainer.h"

using namespace sk;
namespace fs = std::filesystem;

namespace {

double field_after(const std::string& out, const std::string& key) {
  const size_t at = out.find(key + " ");
  return at == std::string::npos ? NAN : std::stod(out.substr(at + key.size() + 1));
}

}  // namespace

TEST(EvalGenerateCli, eval_matches_training_and_greedy_generation_continues_the_text) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_eval_generate");
  const std::string tok_path = std::string(SPARSEK_SOURCE_DIR) + "/tests/data/fixtures/tiny_tokenizer.json";
  const data::Tokenizer tok = data::Tokenizer::load(tok_path);
  std::string text;
  for (int i = 0; i < 200; ++i) text += "the cat sat on the mat. ";
  const std::vector<uint32_t> ids = tok.encode(text);
  data::write_shard((dir / "cat_train_000000.bin").string(), ids);
  data::write_shard((dir / "cat_val_000000.bin").string(), std::vector<uint32_t>(ids.begin(), ids.begin() + 300));
  config::RunConfig c = sk::testing::tiny_run(
      dir, {"model.vocab_size=418", "train.max_steps=80", "eval.every=80", "checkpoint.every=80",
            "data.tokenizer=" + tok_path});
  c.data.train = (dir / "cat_train_*.bin").string();
  c.data.val = (dir / "cat_val_*.bin").string();
  const train::TrainResult r = train::train(c);
  ASSERT_EQ(r.val_losses.size(), 1u);
  const double val = r.val_losses.back().second;
  ASSERT_LT(val, 0.5) << "the tiny model did not learn the sentence";
  const std::string run = (dir / "run").string();
  const std::string cfg = sk::testing::write_config(c, dir / "cfg.json");
  const std::string log = (dir / "out.log").string();

  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"eval", run}, {"eval", cfg}, {"eval", run + "/step_0000080", "--files", c.data.val}}) {
    const auto e = sk::testing::run_sparsek(args, log);
    ASSERT_TRUE(e.exited(0)) << e.output;
    EXPECT_NEAR(field_after(e.output, "loss"), val, 1e-4) << e.output;
    EXPECT_NEAR(field_after(e.output, "perplexity"), std::exp(val), 1e-2) << e.output;
  }
  const auto train_split = sk::testing::run_sparsek({"eval", run, "--split", "train", "--max-batches", "2"}, log);
  ASSERT_TRUE(train_split.exited(0)) << train_split.output;
  EXPECT_LT(field_after(train_split.output, "loss"), 0.5) << train_split.output;

  const auto greedy = sk::testing::run_sparsek(
      {"generate", run, "--prompt", "the cat", "--temperature", "0", "--max-tokens", "20"}, log);
  ASSERT_TRUE(greedy.exited(0)) << greedy.output;
  EXPECT_NE(greedy.output.find("the cat sat on the mat. the cat sat"), std::string::npos) << greedy.output;

  // Longer than the model's 32-position window: decoding restarts from the last 16 tokens.
  const auto longer = sk::testing::run_sparsek(
      {"generate", run, "--prompt", "the cat", "--temperature", "0", "--max-tokens", "80"}, log);
  ASSERT_TRUE(longer.exited(0)) << longer.output;
  size_t sentences = 0;
  for (size_t at = longer.output.find("the cat sat on the mat."); at != std::string::npos;
       at = longer.output.find("the cat sat on the mat.", at + 1))
    ++sentences;
  EXPECT_GE(sentences, 5u) << longer.output;

  const std::vector<std::string> sampled = {"generate", run, "--prompt", "the", "--temperature", "1.0",
                                            "--top-k",  "5", "--seed",   "7",   "--max-tokens",  "15"};
  const auto s1 = sk::testing::run_sparsek(sampled, log);
  const auto s2 = sk::testing::run_sparsek(sampled, log);
  ASSERT_TRUE(s1.exited(0)) << s1.output;
  const auto last_line = [](const std::string& s) {
    std::string t = s.substr(0, s.find_last_not_of('\n') + 1);
    return t.substr(t.find_last_of('\n') + 1);
  };
  EXPECT_EQ(last_line(s1.output), last_line(s2.output));

  const auto missing = sk::testing::run_sparsek({"generate", (dir / "nope").string(), "--prompt", "x"}, log);
  EXPECT_TRUE(missing.exited(2)) << missing.output;
  EXPECT_NE(missing.output.find((dir / "nope").string()), std::string::npos) << missing.output;
  fs::remove_all(dir);
}
