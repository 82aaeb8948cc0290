// train::evaluate_causal (`sparsek eval --causal`): token-by-token decoding gives the same mean loss
// as the whole-sequence evaluation for a causal kind (full), and for lsh it is the strictly causal
// evaluation of docs/LSH.md (it runs; its value differs from the whole-sequence forward's only
// through the chunk-boundary effect, so only closeness is asserted here).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "data/loader.h"
#include "testing/test_helpers.h"
#include "train/train_test_util.h"
#include "train/trainer.h"

using namespace sk;

TEST(EvaluateCausal, equals_evaluate_for_full_attention_and_runs_for_lsh) {
  const auto dir = sk::testing::fresh_test_dir("sk_test_eval_causal");
  for (const std::string kind : {"full", "lsh"}) {
    SCOPED_TRACE(kind);
    config::RunConfig c = sk::testing::tiny_run(dir, {"attention.kind=" + kind, "attention.chunk=8",
                                                      "train.seq_len=24", "model.n_embd=16"});
    Rng rng(5);
    model::Gpt gpt(c.model, c.attention, DType::F32, Device::cpu(), rng);
    data::DataLoaderOptions lo;
    lo.batch_size = 4;
    lo.seq_len = c.train.seq_len;
    lo.prefetch = 0;
    data::DataLoader loader(train::resolve_shards(c.data.val), data::DataLoader::Mode::Val, lo);
    const double whole = train::evaluate(gpt, loader, 2), causal = train::evaluate_causal(gpt, loader, 2);
    if (kind == "full")
      EXPECT_NEAR(causal, whole, 1e-5);
    else
      EXPECT_NEAR(causal, whole, 0.1);  // an untrained model: both about log(32)
    EXPECT_TRUE(std::isfinite(causal));
  }
  std::filesystem::remove_all(dir);
}
