// The results of a comparison grid: <out_dir>/results.json (every cell's record, a summary per
// kind x T with the spread over seeds, and the claim questions) and <out_dir>/results.md (the
// same as tables). Written from the cells' cell.json files, so any call can regenerate them;
// scripts/plot_compare.py draws the plots from results.json.
//
// Claim rows (per T, for every sparsek kind against every sliding_window / lsh kind, and against
// full): the difference of the mean validation losses at T, and a verdict: "better" / "worse"
// when the seed ranges [min, max] of the two do not overlap, "within seed spread" when they do,
// "one seed: no spread" when either has a single seed; speed = tokens/s ratio to full at that T.
#pragma once
#include <nlohmann/json.hpp>
#include <vector>

#include "compare/grid.h"

namespace sk::compare {

// Builds results.json's content from the cells' states (cells without state are listed as "todo").
nlohmann::json collect_results(const Grid& g, const std::vector<Cell>& cells);
std::string results_markdown(const nlohmann::json& results);
// Writes results.json and results.md into g.out_dir.
void write_results(const Grid& g, const std::vector<Cell>& cells);

}  // namespace sk::compare
