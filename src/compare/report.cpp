// Results of a comparison grid (report.h).
#include "compare/report.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "compare/runner.h"
#include "util/file_io.h"

namespace sk::compare {

using nlohmann::json;

namespace {

struct Stats {
  int n = 0;
  double mean = 0, sd = 0, min = 0, max = 0;
};
Stats stats(const std::vector<double>& v) {
  Stats s;
  s.n = int(v.size());
  if (v.empty()) return s;
  s.min = *std::min_element(v.begin(), v.end());
  s.max = *std::max_element(v.begin(), v.end());
  for (double x : v) s.mean += x;
  s.mean /= double(v.size());
  if (v.size() > 1) {
    for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
    s.sd = std::sqrt(s.sd / double(v.size() - 1));
  }
  return s;
}
json to_json(const Stats& s) {
  if (s.n == 0) return nullptr;
  return {{"n", s.n}, {"mean", s.mean}, {"sd", s.n > 1 ? json(s.sd) : json(nullptr)}, {"min", s.min}, {"max", s.max}};
}

std::string fmt(double x, int prec) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", prec, x);
  return buf;
}

std::string verdict(const json& a, const json& b) {
  if (a.is_null() || b.is_null()) return "missing";
  if (a["n"].get<int>() < 2 || b["n"].get<int>() < 2) return "one seed: no spread";
  if (a["max"].get<double>() < b["min"].get<double>()) return "better";
  if (a["min"].get<double>() > b["max"].get<double>()) return "worse";
  return "within seed spread";
}

}  // namespace

json collect_results(const Grid& g, const std::vector<Cell>& cells) {
  json cj = json::array();
  std::set<std::string> devices;
  // (kind name, T) -> values over seeds
  std::map<std::pair<std::string, int64_t>, std::vector<json>> groups;
  for (const Cell& c : cells) {
    json st = read_cell_state(g, c);
    json rec = {{"id", c.id}, {"kind", c.kind->name}, {"attention_kind", c.kind->kind}, {"T", c.seq_len}, {"seed", c.seed},
                {"keys_per_query", keys_per_query(c)}};
    if (st.empty()) {
      rec["status"] = "todo";
    } else {
      rec["status"] = st.value("done", false) ? "done" : st.contains("train") && st["train"].value("done", false) ? "trained" : "training";
      for (const char* k : {"attention", "device", "precision", "train", "eval", "probes", "wall_s"})
        if (st.contains(k)) rec[k] = st[k];
      if (st.contains("device")) devices.insert(st["device"].get<std::string>() + " " + st.value("precision", ""));
    }
    groups[{c.kind->name, c.seq_len}].push_back(rec);
    cj.push_back(rec);
  }
  json summary = json::array();
  std::map<std::pair<std::string, int64_t>, json> by;
  for (const int64_t T : g.seq_lens)
    for (const KindSpec& k : g.kinds) {
      const auto& recs = groups[{k.name, T}];
      std::vector<double> loss, tps, mem;
      std::map<int64_t, std::vector<double>> passkey, other_len;
      std::vector<double> assoc, start_loss, last_curve_loss;
      std::vector<int64_t> seeds;
      json kpq = nullptr, chance = nullptr;
      for (const json& r : recs) {
        if (r.contains("keys_per_query")) kpq = r["keys_per_query"];
        const std::string Ts = std::to_string(T);
        if (!(r.contains("eval") && r["eval"].contains(Ts) && r["eval"][Ts].contains("loss"))) continue;
        seeds.push_back(r["seed"].get<int64_t>());
        loss.push_back(r["eval"][Ts]["loss"].get<double>());
        for (auto it = r["eval"].begin(); it != r["eval"].end(); ++it)
          if (it.key() != Ts && it->contains("loss")) other_len[std::stoll(it.key())].push_back((*it)["loss"].get<double>());
        if (r["train"].contains("tokens_per_s") && !r["train"]["tokens_per_s"].is_null()) tps.push_back(r["train"]["tokens_per_s"].get<double>());
        // eval.at_start (fine-tuning grids): the validation curve begins at step 0, before any update.
        const json& curve = r["train"].contains("val_curve") ? r["train"]["val_curve"] : json::array();
        if (!curve.empty() && curve.front().value("step", int64_t(-1)) == 0 && curve.size() > 1) {
          start_loss.push_back(curve.front()["val_loss"].get<double>());
          last_curve_loss.push_back(curve.back()["val_loss"].get<double>());
        }
        if (r["train"].contains("peak_mem_gib") && !r["train"]["peak_mem_gib"].is_null()) mem.push_back(r["train"]["peak_mem_gib"].get<double>());
        if (r.contains("probes")) {
          for (const json& p : r["probes"]["passkey"])
            if (p.contains("accuracy")) passkey[p["distance"].get<int64_t>()].push_back(p["accuracy"].get<double>());
          if (r["probes"]["assoc"].contains("accuracy")) {
            assoc.push_back(r["probes"]["assoc"]["accuracy"].get<double>());
            chance = r["probes"]["assoc"]["chance"];
          }
        }
      }
      const Stats ls = stats(loss);
      json row = {{"kind", k.name}, {"attention_kind", k.kind}, {"T", T}, {"seeds", seeds}, {"keys_per_query", kpq},
                  {"val_loss", to_json(ls)},
                  {"val_ppl", ls.n ? json{{"mean_of_loss", std::exp(ls.mean)}, {"min", std::exp(ls.min)}, {"max", std::exp(ls.max)}} : json(nullptr)},
                  {"tokens_per_s", to_json(stats(tps))},
                  {"peak_mem_gib", mem.empty() ? json(nullptr) : json(*std::max_element(mem.begin(), mem.end()))}};
      json pk = json::array();
      for (const auto& [d, v] : passkey) pk.push_back({{"distance", d}, {"accuracy", to_json(stats(v))}});
      row["passkey"] = pk;
      row["assoc"] = assoc.empty() ? json(nullptr) : json{{"accuracy", to_json(stats(assoc))}, {"chance", chance}};
      row["val_loss_at_start"] = to_json(stats(start_loss));
      row["val_loss_curve_end"] = to_json(stats(last_curve_loss));
      json ol = json::object();
      for (const auto& [L, v] : other_len) ol[std::to_string(L)] = to_json(stats(v));
      row["val_loss_at"] = ol;
      by[{k.name, T}] = row;
      summary.push_back(row);
    }
  // The claim questions.
  json claims = json::array();
  for (const int64_t T : g.seq_lens) {
    const KindSpec* full = nullptr;
    for (const KindSpec& k : g.kinds)
      if (k.kind == "full") full = &k;
    for (const KindSpec& a : g.kinds) {
      if (a.kind != "sparsek") continue;
      const json& ra = by[{a.name, T}];
      for (const KindSpec& b : g.kinds) {
        if (b.kind == "sparsek") continue;
        const json& rb = by[{b.name, T}];
        json cl = {{"T", T}, {"kind", a.name}, {"versus", b.name}, {"versus_kind", b.kind}};
        if (!ra["val_loss"].is_null() && !rb["val_loss"].is_null()) {
          cl["delta_val_loss"] = ra["val_loss"]["mean"].get<double>() - rb["val_loss"]["mean"].get<double>();
          cl["verdict"] = verdict(ra["val_loss"], rb["val_loss"]);
        } else {
          cl["verdict"] = "missing";
        }
        if (!ra["tokens_per_s"].is_null() && !rb["tokens_per_s"].is_null())
          cl["speed_ratio"] = ra["tokens_per_s"]["mean"].get<double>() / rb["tokens_per_s"]["mean"].get<double>();
        claims.push_back(cl);
      }
    }
    if (full) {
      const json& rf = by[{full->name, T}];
      for (const KindSpec& a : g.kinds) {
        const json& ra = by[{a.name, T}];
        if (ra["tokens_per_s"].is_null() || rf["tokens_per_s"].is_null()) continue;
        by[{a.name, T}]["speed_vs_full"] = ra["tokens_per_s"]["mean"].get<double>() / rf["tokens_per_s"]["mean"].get<double>();
      }
    }
  }
  summary = json::array();
  for (const int64_t T : g.seq_lens)
    for (const KindSpec& k : g.kinds) summary.push_back(by[{k.name, T}]);
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return {{"grid", g.raw},
          {"name", g.name},
          {"written", date},
          {"budget", g.budget},
          {"devices", devices},
          {"tokens_per_run", g.steps() * g.batch_tokens},
          {"steps", g.steps()},
          {"batch_tokens", g.batch_tokens},
          {"cells", cj},
          {"summary", summary},
          {"claims", claims}};
}

std::string results_markdown(const json& r) {
  std::ostringstream md;
  int64_t done = 0, total = 0;
  for (const json& c : r["cells"]) {
    ++total;
    done += c["status"] == "done";
  }
  md << "# Comparison grid `" << r["name"].get<std::string>() << "`\n\n";
  md << "Written " << r["written"].get<std::string>() << " by `sparsek compare`; " << done << " of " << total
     << " cells done. Budget B = " << r["budget"] << " keys per query; " << r["tokens_per_run"] << " training tokens per run ("
     << r["steps"] << " steps of " << r["batch_tokens"] << " tokens). Validation loss at the training length T (lsh: strictly "
     << "causal); mean ± sample standard deviation over seeds, [min, max] in brackets. Devices:";
  for (const json& d : r["devices"]) md << " " << d.get<std::string>() << ";";
  md << " tokens/s: the median training step; peak GiB: the trainer's peak allocated GPU memory.\n\n";
  md << "| kind | T | seeds | keys/query | val loss | perplexity | tokens/s | speed vs full | peak GiB | assoc. recall | passkey (distance: accuracy) |\n";
  md << "|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const json& s : r["summary"]) {
    md << "| " << s["kind"].get<std::string>() << " | " << s["T"] << " | " << s["seeds"].size() << " | "
       << (s["keys_per_query"].is_null() ? "" : fmt(s["keys_per_query"].get<double>(), 0)) << " | ";
    if (s["val_loss"].is_null()) {
      md << "not run | | ";
    } else {
      const json& v = s["val_loss"];
      md << fmt(v["mean"].get<double>(), 4) << (v["sd"].is_null() ? "" : " ± " + fmt(v["sd"].get<double>(), 4)) << " ["
         << fmt(v["min"].get<double>(), 4) << ", " << fmt(v["max"].get<double>(), 4) << "] | "
         << fmt(s["val_ppl"]["mean_of_loss"].get<double>(), 2) << " [" << fmt(s["val_ppl"]["min"].get<double>(), 2) << ", "
         << fmt(s["val_ppl"]["max"].get<double>(), 2) << "] | ";
    }
    md << (s["tokens_per_s"].is_null() ? "" : fmt(s["tokens_per_s"]["mean"].get<double>(), 0)) << " | "
       << (s.contains("speed_vs_full") ? fmt(s["speed_vs_full"].get<double>(), 2) + "x" : "") << " | "
       << (s["peak_mem_gib"].is_null() ? "" : fmt(s["peak_mem_gib"].get<double>(), 2)) << " | ";
    if (!s["assoc"].is_null())
      md << fmt(s["assoc"]["accuracy"]["mean"].get<double>(), 3) << " (chance " << fmt(s["assoc"]["chance"].get<double>(), 3) << ")";
    md << " | ";
    for (const json& p : s["passkey"]) md << p["distance"] << ": " << fmt(p["accuracy"]["mean"].get<double>(), 2) << " ";
    md << "|\n";
  }
  std::set<int64_t> degenerate;
  for (const json& s : r["summary"])
    if (s["T"].get<int64_t>() <= r["budget"].get<int64_t>()) degenerate.insert(s["T"].get<int64_t>());
  for (int64_t T : degenerate)
    md << "\nAt T = " << T << " the budget (" << r["budget"] << " keys per query) covers the whole context: "
       << "sliding window and SparseK see every earlier key there, as full attention does.\n";
  md << "\n## The claim, per context length\n\n"
     << "SparseK kinds against each other kind at the same budget: the difference of mean validation losses "
     << "(negative: SparseK lower), whether the seed ranges separate them, and SparseK's training speed relative to "
     << "the other kind (tokens/s over tokens/s; above 1: SparseK faster).\n\n";
  md << "| T | kind | versus | Δ val loss | verdict | speed ratio |\n|---|---|---|---|---|---|\n";
  for (const json& c : r["claims"])
    md << "| " << c["T"] << " | " << c["kind"].get<std::string>() << " | " << c["versus"].get<std::string>() << " | "
       << (c.contains("delta_val_loss") ? fmt(c["delta_val_loss"].get<double>(), 4) : "") << " | "
       << c["verdict"].get<std::string>() << " | "
       << (c.contains("speed_ratio") ? fmt(c["speed_ratio"].get<double>(), 2) + "x" : "") << " |\n";
  bool finetune = false;
  for (const json& s : r["summary"]) finetune = finetune || (s.contains("val_loss_at_start") && !s["val_loss_at_start"].is_null());
  if (finetune) {
    md << "\n## Before and after training (eval.at_start)\n\n"
       << "Validation loss of the training loop's own evaluation at T (the same batches at every evaluation) before the "
       << "first update (step 0: for a fine-tuning grid, the initial model with this kind's attention) and after the "
       << "last; mean ± sample standard deviation over seeds.\n\n"
       << "| kind | T | seeds | val loss at step 0 | perplexity at step 0 | val loss at the end | perplexity at the end | tokens/s |\n"
       << "|---|---|---|---|---|---|---|---|\n";
    auto cell = [](const json& v) {
      return fmt(v["mean"].get<double>(), 4) + (v["sd"].is_null() ? "" : " ± " + fmt(v["sd"].get<double>(), 4));
    };
    for (const json& s : r["summary"]) {
      if (!s.contains("val_loss_at_start") || s["val_loss_at_start"].is_null()) continue;
      const json& a = s["val_loss_at_start"];
      const json& b = s["val_loss_curve_end"];
      md << "| " << s["kind"].get<std::string>() << " | " << s["T"] << " | " << a["n"] << " | " << cell(a) << " | "
         << fmt(std::exp(a["mean"].get<double>()), 2) << " | " << cell(b) << " | " << fmt(std::exp(b["mean"].get<double>()), 2)
         << " | " << (s["tokens_per_s"].is_null() ? "" : fmt(s["tokens_per_s"]["mean"].get<double>(), 0)) << " |\n";
    }
  }
  bool other = false;
  for (const json& s : r["summary"]) other = other || !s["val_loss_at"].empty();
  if (other) {
    md << "\n## Validation loss at other lengths (models trained at T)\n\n| kind | T | L | val loss |\n|---|---|---|---|\n";
    for (const json& s : r["summary"])
      for (auto it = s["val_loss_at"].begin(); it != s["val_loss_at"].end(); ++it)
        md << "| " << s["kind"].get<std::string>() << " | " << s["T"] << " | " << it.key() << " | "
           << fmt((*it)["mean"].get<double>(), 4) << " |\n";
  }
  return md.str();
}

void write_results(const Grid& g, const std::vector<Cell>& cells) {
  const json r = collect_results(g, cells);
  std::filesystem::create_directories(g.out_dir);
  util::write_file_atomic(std::filesystem::path(g.out_dir) / "results.json", r.dump(2) + "\n");
  util::write_file_atomic(std::filesystem::path(g.out_dir) / "results.md", results_markdown(r));
}

}  // namespace sk::compare
