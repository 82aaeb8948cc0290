// `sparsek compare GRID.json [--only F] [--skip F] [--shard I/N] [--max-minutes M] [--set k=v] [--no-probes] [--keep-records]
// [--list] [--report-only]`: runs or continues a comparison grid (src/compare/runner.h,
// docs/COMPARE.md); SIGINT/SIGTERM stop training with a checkpoint like the deadline does.
// `sparsek probe CHECKPOINT [--length L] [--distances ...]`: the long-range probes of one model.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include "cli/commands.h"
#include "compare/grid.h"
#include "compare/probes.h"
#include "compare/report.h"
#include "compare/runner.h"
#include "data/tokenizer.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#include "util/check.h"

namespace sk::cli {

namespace {
std::atomic<int> g_compare_signal{0};
extern "C" void on_compare_signal(int sig) { g_compare_signal = sig; }
}  // namespace

void run_compare(const CompareOptions& o) {
  const compare::Grid g = compare::load_grid(o.grid);
  compare::RunnerOptions ro;
  ro.only = o.only;
  ro.skip = o.skip;
  ro.max_minutes = o.max_minutes;
  ro.overrides = o.overrides;
  ro.probes = !o.no_probes;
  ro.keep_records = o.keep_records;
  const size_t slash = o.shard.find('/');
  SK_CHECK(slash != std::string::npos, "compare: --shard ", o.shard, " is not I/N");
  try {
    ro.shard_index = std::stoi(o.shard.substr(0, slash));
    ro.shard_count = std::stoi(o.shard.substr(slash + 1));
  } catch (const std::exception&) {
    SK_FAIL("compare: --shard ", o.shard, " is not I/N");
  }
  if (o.list || o.report_only) {
    const std::vector<compare::Cell> cells = compare::expand_cells(g);
    if (o.list)
      for (size_t i = 0; i < cells.size(); ++i) {
        const auto st = compare::read_cell_state(g, cells[i]);
        const bool sel = int(i) % ro.shard_count == ro.shard_index && compare::cell_matches(cells[i], o.only) &&
                         (o.skip.empty() || !compare::cell_matches(cells[i], o.skip));
        const char* status = st.value("done", false) ? "done"
                             : st.contains("eval")     ? "evaluated"
                             : st.contains("train") && st["train"].value("done", false) ? "trained"
                             : st.contains("train")    ? "training"
                                                       : "todo";
        std::printf("%3zu %-36s %-10s%s\n", i, cells[i].id.c_str(), status, sel ? "" : "  (not selected)");
      }
    if (o.report_only) compare::write_results(g, cells);
    return;
  }
  struct sigaction sa {};
  sa.sa_handler = on_compare_signal;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  ro.should_stop = [](int64_t) { return g_compare_signal.load() != 0; };
  const compare::RunnerResult r = compare::run_grid(g, ro);
  std::printf("compare: %lld of %lld selected cells done (%lld in the grid)%s; %s/results.md\n",
              static_cast<long long>(r.cells_done), static_cast<long long>(r.cells_selected),
              static_cast<long long>(r.cells_total), r.stopped ? "; stopped, run again to continue" : "", g.out_dir.c_str());
  if (!r.failed.empty()) {
    std::string ids;
    for (const auto& id : r.failed) ids += " " + id;
    SK_FAIL("compare: ", r.failed.size(), " cell(s) failed (the error is in each cell.json):", ids);
  }
}

void run_probe(const ProbeOptionsCli& o) {
  const train::Checkpoint ck = train::Checkpoint::open(o.checkpoint);
  const config::RunConfig cfg = ck.config(o.overrides);
  const train::Placement place = train::resolve_placement(cfg.train.device, cfg.train.dtype);
  const model::Gpt gpt = ck.load_model(cfg, place.dtype, place.device);
  const int64_t L = o.length > 0 ? o.length : cfg.train.seq_len;
  SK_CHECK(!cfg.model.learned_positions || L <= cfg.model.block_size, "probe: --length ", L,
           " exceeds model.block_size ", cfg.model.block_size, " (learned positions)");
  std::optional<data::Tokenizer> tok;
  if (auto d = ck.tokenizer_dir()) tok = data::Tokenizer::load(d->string());
  const compare::ProbeTemplates t = tok ? compare::text_templates(*tok) : compare::synthetic_templates(cfg.model.vocab_size);
  const std::vector<int32_t> filler = compare::filler_tokens(cfg.data.val, std::max<int64_t>(4 * L, 1 << 20));
  compare::ProbeOptions po;
  po.passkey_distances = o.distances;
  po.passkey_trials = o.trials;
  po.assoc_pairs = o.assoc_pairs;
  po.assoc_trials = o.assoc_trials;
  po.seed = o.seed;
  po.batch = std::max<int64_t>(1, cfg.train.batch_size);
  const bool causal = cfg.attention.kind == "lsh";
  nlohmann::json r = compare::run_probes(compare::model_scorer(gpt, po.batch, causal), t, filler, L, po);
  r["checkpoint"] = ck.dir().string();
  r["step"] = ck.step();
  if (o.out.empty()) {
    std::printf("%s\n", r.dump(2).c_str());
  } else {
    std::ofstream(o.out) << r.dump(2) << "\n";
    spdlog::info("probe: wrote {}", o.out);
  }
}

}  // namespace sk::cli
