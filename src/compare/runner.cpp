// The grid runner (runner.h).
#include "compare/runner.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "attention/attention.h"
#include "backend/cuda_device.h"
#include "compare/probes.h"
#include "compare/report.h"
#include "data/loader.h"
#include "data/tokenizer.h"
#include "tensor/random.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#include "util/check.h"
#include "util/file_io.h"

namespace sk::compare {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

fs::path cell_dir(const Grid& g, const Cell& c) { return fs::path(g.out_dir) / "cells" / c.id; }

void write_cell_state(const Grid& g, const Cell& c, const json& st) {
  fs::create_directories(cell_dir(g, c));
  util::write_file_atomic(cell_dir(g, c) / "cell.json", st.dump(2) + "\n");
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The training summary from metrics.jsonl: validation curve, steady-state throughput, peak memory.
json train_summary(const Cell& c, const train::TrainResult& r) {
  const fs::path metrics = fs::path(c.config.checkpoint.dir) / c.config.logging.metrics_file;
  const double tokens_per_step = double(c.config.train.batch_size * c.config.train.seq_len * c.config.train.grad_accum);
  std::vector<double> step_times;
  json curve = json::array();
  double peak = -1, last_loss = 0;
  std::ifstream f(metrics);
  std::string line;
  while (std::getline(f, line)) {
    const json rec = json::parse(line, nullptr, false);
    if (rec.is_discarded() || !rec.is_object()) continue;
    const int64_t step = rec.value("step", int64_t(0));
    if (rec.contains("step_time_s")) step_times.push_back(rec["step_time_s"].get<double>());
    if (rec.contains("peak_mem_gib")) peak = std::max(peak, rec["peak_mem_gib"].get<double>());
    if (rec.contains("loss")) last_loss = rec["loss"].get<double>();
    if (rec.contains("val_loss"))
      curve.push_back({{"step", step}, {"tokens", double(step) * tokens_per_step}, {"val_loss", rec["val_loss"]}});
  }
  const double st = median(step_times);
  return {{"done", true},
          {"steps", r.last_step},
          {"tokens", double(r.last_step) * tokens_per_step},
          {"final_train_loss", last_loss},
          {"skipped_steps", r.skipped_steps},
          {"median_step_s", st},
          {"tokens_per_s", st > 0 ? json(tokens_per_step / st) : json(nullptr)},
          {"peak_mem_gib", peak >= 0 ? json(peak) : json(nullptr)},
          {"val_curve", curve}};
}

std::string fmt_secs(double s) {
  if (s < 0) return "?";
  char buf[64];
  if (s < 120) std::snprintf(buf, sizeof buf, "%.0f s", s);
  else if (s < 7200) std::snprintf(buf, sizeof buf, "%.1f min", s / 60);
  else std::snprintf(buf, sizeof buf, "%.1f h", s / 3600);
  return buf;
}

}  // namespace

json read_cell_state(const Grid& g, const Cell& c) {
  const fs::path p = cell_dir(g, c) / "cell.json";
  std::error_code ec;
  if (!fs::exists(p, ec)) return json::object();
  const json j = json::parse(util::read_file(p), nullptr, false);
  SK_CHECK(!j.is_discarded() && j.is_object(), p.string(), " is not a JSON object (remove it to redo the cell)");
  return j;
}

RunnerResult run_grid(const Grid& g, const RunnerOptions& o) {
  SK_CHECK(o.shard_count >= 1 && o.shard_index >= 0 && o.shard_index < o.shard_count, "compare: --shard ",
           o.shard_index, "/", o.shard_count, " is not I/N with 0 <= I < N");
  std::vector<Cell> cells = expand_cells(g);
  if (!o.overrides.empty())
    for (Cell& c : cells) {
      try {
        c.config = config::run_config_from_json(c.config.to_json(), "cell " + c.id, o.overrides);
      } catch (const Error& e) {
        SK_FAIL(e.what());
      }
    }
  RunnerResult res;
  res.cells_total = int64_t(cells.size());
  std::vector<size_t> selected;
  for (size_t i = 0; i < cells.size(); ++i)
    if (int64_t(i) % o.shard_count == o.shard_index && cell_matches(cells[i], o.only) &&
        (o.skip.empty() || !cell_matches(cells[i], o.skip)))
      selected.push_back(i);
  res.cells_selected = int64_t(selected.size());
  fs::create_directories(g.out_dir);
  util::write_file_atomic(fs::path(g.out_dir) / "grid.json", g.raw.dump(2) + "\n");

  for (int64_t T : g.seq_lens)
    if (T <= g.budget)
      spdlog::warn("compare: at T = {} the budget {} covers the whole context (every kind sees every earlier key)", T,
                   g.budget);
  const auto start = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  auto past_deadline = [&] { return o.max_minutes > 0 && elapsed() >= o.max_minutes * 60.0; };
  int64_t steps_this_call = 0;
  bool stop = false;

  // ETA: seconds per training token measured on finished cells, by (kind, T), else by T.
  auto eta = [&](size_t from) {
    std::map<std::string, double> per_token;  // "kind/T" or "T" -> seconds per token
    std::map<std::string, int> n;
    for (size_t i : selected) {
      const json st = read_cell_state(g, cells[i]);
      if (!st.contains("train") || !st["train"].value("done", false) || !st.contains("wall_s")) continue;
      const double spt = st["wall_s"].get<double>() / std::max(1.0, st["train"]["tokens"].get<double>());
      for (const std::string& k : {cells[i].kind->name + "/" + std::to_string(cells[i].seq_len), std::to_string(cells[i].seq_len)}) {
        per_token[k] += spt;
        n[k] += 1;
      }
    }
    double total = 0;
    for (size_t s = from; s < selected.size(); ++s) {
      const Cell& c = cells[selected[s]];
      const json st = read_cell_state(g, c);
      if (st.value("done", false)) continue;
      std::string k = c.kind->name + "/" + std::to_string(c.seq_len);
      if (!n.count(k)) k = std::to_string(c.seq_len);
      if (!n.count(k)) return -1.0;
      total += per_token[k] / n[k] * double(g.steps() * g.batch_tokens);
    }
    return total;
  };

  for (size_t s = 0; s < selected.size() && !stop; ++s) {
    const Cell& c = cells[selected[s]];
    json st = read_cell_state(g, c);
    if (st.value("done", false)) continue;
    if (past_deadline()) {
      stop = true;
      break;
    }
    try {
      st.erase("error");
      spdlog::info("compare: cell {}/{} {} ({} x {} steps, budget {}); grid ETA {}", s + 1, selected.size(), c.id,
                   c.config.train.batch_size * c.config.train.grad_accum, c.config.train.max_steps, g.budget,
                   fmt_secs(eta(s)));
      res.ran.push_back(c.id);
      st["id"] = c.id;
      st["kind"] = c.kind->name;
      st["attention_kind"] = c.kind->kind;
      st["T"] = c.seq_len;
      st["seed"] = c.seed;
      st["attention"] = c.config.to_json()["attention"];
      st["keys_per_query"] = keys_per_query(c);
      auto cell_start = Clock::now();
      auto add_wall = [&] {  // this call's time on the cell, added up over calls
        const auto now = Clock::now();
        st["wall_s"] = st.value("wall_s", 0.0) + std::chrono::duration<double>(now - cell_start).count();
        cell_start = now;
      };

      // A trained cell whose checkpoint stayed on another machine (only the states travel between
      // device sessions) is trained again for its remaining phases.
      // With keep_records the first run's training record and evaluation stay (the retrained model
      // only serves the missing phases): the record moves to "original_train" until the retrain
      // finishes, so a retrain stopped by the deadline loses nothing, and the first run's metrics
      // file is kept beside the retrain's as metrics-original.jsonl.
      const bool trained = st.contains("train") && st["train"].value("done", false);
      if (trained && !train::latest_checkpoint(c.config.checkpoint.dir)) {
        spdlog::warn("compare: {} was trained but its checkpoint is not here ({}): training it again for its "
                     "{}", c.id, c.config.checkpoint.dir, o.keep_records ? "probes (keeping its recorded training and evaluation)"
                                                                          : "evaluation / probes");
        if (o.keep_records) {
          st["original_train"] = st["train"];
          const fs::path metrics = fs::path(c.config.checkpoint.dir) / c.config.logging.metrics_file;
          const fs::path kept = fs::path(c.config.checkpoint.dir) / "metrics-original.jsonl";
          std::error_code ec;
          if (fs::exists(metrics, ec) && !fs::exists(kept, ec)) fs::rename(metrics, kept, ec);
          SK_CHECK(!ec, "compare: ", c.id, ": cannot keep ", metrics.string(), " as ", kept.string(), ": ", ec.message());
        } else {
          st.erase("eval");
        }
        st.erase("train");
        st.erase("probes");
        write_cell_state(g, c, st);
      }
      // 1. Train (continues a half-done run from its checkpoint).
      bool trained_now = false;
      if (!(st.contains("train") && st["train"].value("done", false))) {
        train::TrainOptions topts;
        topts.should_stop = [&](int64_t) {
          ++steps_this_call;
          return past_deadline() || (o.should_stop && o.should_stop(steps_this_call));
        };
        const train::Placement where = train::resolve_placement(c.config.train.device, c.config.train.dtype);
        st["device"] = where.device.is_cpu() ? std::string("cpu")
                                             : where.device.str() + " (" + cuda::device_name(where.device.index) + ")";
        st["precision"] = dtype_name(where.dtype);
        const train::TrainResult r = train::train(c.config, topts);
        if (r.stopped || r.last_step < c.config.train.max_steps) {
          add_wall();
          st["train"] = {{"done", false}, {"steps", r.last_step}};
          write_cell_state(g, c, st);
          spdlog::info("compare: {} stopped at step {}/{} (continues on the next call)", c.id, r.last_step,
                       c.config.train.max_steps);
          stop = true;
          break;
        }
        st["train"] = train_summary(c, r);
        if (st.contains("original_train")) {  // a retrain for the probes (keep_records)
          st["retrain"] = st["train"];
          st["train"] = st["original_train"];
          st.erase("original_train");
        }
        trained_now = true;
        add_wall();
        write_cell_state(g, c, st);
      }

      const train::Checkpoint ck = train::Checkpoint::open(c.config.checkpoint.dir);
      const train::Placement place = train::resolve_placement(c.config.train.device, c.config.train.dtype);
      const bool causal = c.kind->kind == "lsh";

      // 2. Validation at T (strictly causal for lsh) and at the extra lengths.
      // The deadline does not stop these phases right after this call's training (they take seconds,
      // and the checkpoint they need may not survive the session).
      if (!st.contains("eval")) {
        if (past_deadline() && !trained_now) {
          stop = true;
          break;
        }
        const auto t0 = Clock::now();
        const model::Gpt gpt = ck.load_model(c.config, place.dtype, place.device);
        json ev = json::object();
        std::vector<int64_t> lengths = {c.seq_len};
        for (int64_t L : g.eval_lengths)
          if (L != c.seq_len) lengths.push_back(L);
        for (int64_t L : lengths) {
          const LengthCheck lc = can_evaluate_at(c, L);
          if (!lc.ok) {
            ev[std::to_string(L)] = {{"skipped", lc.reason}};
            continue;
          }
          data::DataLoaderOptions lo;
          lo.batch_size = std::max<int64_t>(1, g.micro_batch_tokens / L);
          lo.seq_len = L;
          lo.prefetch = 0;
          data::DataLoader loader(train::resolve_shards(c.config.data.val), data::DataLoader::Mode::Val, lo);
          const int64_t batches = std::max<int64_t>(1, (g.val_tokens + lo.batch_size * L - 1) / (lo.batch_size * L));
          const auto te = Clock::now();
          const double loss = causal ? train::evaluate_causal(gpt, loader, batches) : train::evaluate(gpt, loader, batches);
          ev[std::to_string(L)] = {{"loss", loss},
                                   {"ppl", std::exp(loss)},
                                   {"causal", causal},
                                   {"batches", std::min(batches, loader.batches_per_epoch())},
                                   {"seconds", std::chrono::duration<double>(Clock::now() - te).count()}};
          spdlog::info("compare: {} validation at L = {}: loss {:.4f}, perplexity {:.2f}{}", c.id, L, loss, std::exp(loss),
                       causal ? " (strictly causal)" : "");
        }
        st["eval"] = ev;
        st["eval_seconds"] = std::chrono::duration<double>(Clock::now() - t0).count();
        add_wall();
        write_cell_state(g, c, st);
      }

      // 3. Probes.
      const bool want_probes = g.probes.enabled && o.probes;
      if (want_probes && !st.contains("probes")) {
        if (past_deadline() && !trained_now) {
          stop = true;
          break;
        }
        const auto t0 = Clock::now();
        const model::Gpt gpt = ck.load_model(c.config, place.dtype, place.device);
        std::optional<data::Tokenizer> tok;
        if (auto d = ck.tokenizer_dir()) tok = data::Tokenizer::load(d->string());
        else if (!c.config.data.tokenizer.empty() && fs::exists(c.config.data.tokenizer)) tok = data::Tokenizer::load(c.config.data.tokenizer);
        const ProbeTemplates t = tok ? text_templates(*tok) : synthetic_templates(c.config.model.vocab_size);
        const std::vector<int32_t> filler = filler_tokens(c.config.data.val, std::max<int64_t>(4 * c.seq_len, 1 << 20));
        ProbeOptions po;
        po.passkey_distances = g.probes.passkey.distances;
        po.passkey_trials = g.probes.passkey.trials;
        po.assoc_pairs = g.probes.assoc.pairs;
        po.assoc_trials = g.probes.assoc.trials;
        po.assoc_bins = g.probes.assoc.distance_bins;
        po.seed = g.probes.seed;
        po.batch = std::max<int64_t>(1, std::min<int64_t>(8, g.micro_batch_tokens / c.seq_len));
        json pr = run_probes(model_scorer(gpt, po.batch, causal), t, filler, c.seq_len, po);
        pr["seconds"] = std::chrono::duration<double>(Clock::now() - t0).count();
        // The probed model is a retrain of the cell (its first checkpoint was not kept): the same
        // seed, data and schedule; bit-identical on CPU, not on GPU (docs/COMPARE.md).
        if (st.contains("retrain")) pr["model"] = "retrained";
        st["probes"] = pr;
        spdlog::info("compare: {} probes: {}", c.id, probe_summary(pr));
        add_wall();
        write_cell_state(g, c, st);
      }
      st["done"] = !g.probes.enabled || st.contains("probes");  // probes left out by --no-probes: not done
      write_cell_state(g, c, st);
    } catch (const Error& e) {
      // Recorded in the cell (retried by the next call); the other cells go on.
      spdlog::error("compare: cell {} failed: {}", c.id, e.what());
      st["error"] = e.what();
      write_cell_state(g, c, st);
      res.failed.push_back(c.id);
    }
  }
  res.stopped = stop;
  res.cells_done = 0;
  for (size_t i : selected) res.cells_done += read_cell_state(g, cells[i]).value("done", false) ? 1 : 0;
  write_results(g, cells);
  spdlog::info("compare: {} of {} selected cells done ({} in the grid){}; results in {}", res.cells_done,
               res.cells_selected, res.cells_total, stop ? ", stopped (call again to continue)" : "", g.out_dir);
  return res;
}

}  // namespace sk::compare
