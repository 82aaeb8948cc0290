// Runs a comparison grid (grid.h) cell by cell, resumably, and writes the results (report.h).
//
// Each cell lives in <out_dir>/cells/<id>/: run/ (the trainer's checkpoints and metrics.jsonl) and
// cell.json (what is done: train, eval, probes, each written atomically when finished). A cell's
// phases: train (train::train with train.resume=auto: a half-done cell continues from its last
// checkpoint), eval (validation loss at T, strictly causal for lsh (train::evaluate_causal), and
// at the grid's eval_lengths where the model allows), probes (probes.h). Finished phases are
// skipped, so `sparsek compare` can be called again and again until the grid is done; a deadline
// (--max-minutes) stops training with a checkpoint and starts no new cell after it (the eval and
// probes of a cell whose training ended in this call still run: seconds). A cell whose training is
// done but whose checkpoint is absent (its state came from another machine) is trained again. A
// cell that fails (an sk::Error) gets the message in cell.json ("error") and the next cell runs.
// Throughput: the median of the per-step wall times the trainer records (step_time_s), so
// validations and restarts do not count; peak memory: the largest peak_mem_gib (CUDA only).
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "compare/grid.h"

namespace sk::compare {

struct RunnerOptions {
  std::string only;                      // cell filter (cell_matches)
  std::string skip;                      // cells matching this filter are left out
  int shard_index = 0, shard_count = 1;  // run cells with index % count == index (several GPUs)
  double max_minutes = 0;                // 0: no deadline
  std::vector<std::string> overrides;    // run-config --set overrides for every cell (e.g. train.device=cuda:1)
  bool probes = true;                    // run the probes phase (when the grid enables them)
  // A cell trained in an earlier session whose checkpoint is not here is trained again for its
  // missing phases; true keeps its recorded training summary and evaluation (the retrain's summary
  // goes to "retrain"), false (default) replaces them with the retrain's.
  bool keep_records = false;
  // Tests: asked after every optimizer step with the number of steps this call has trained;
  // true stops like the deadline does.
  std::function<bool(int64_t steps_this_call)> should_stop;
};

struct RunnerResult {
  int64_t cells_total = 0, cells_selected = 0, cells_done = 0;  // done: every phase finished
  bool stopped = false;                  // the deadline or should_stop ended the call early
  std::vector<std::string> ran;          // ids of cells that did work in this call
  std::vector<std::string> failed;       // ids of cells whose phase threw (error recorded in cell.json)
};

RunnerResult run_grid(const Grid& g, const RunnerOptions& o);

// The cell's state file and its phases ("train", "eval", "probes"); {} if none yet.
nlohmann::json read_cell_state(const Grid& g, const Cell& c);

}  // namespace sk::compare
