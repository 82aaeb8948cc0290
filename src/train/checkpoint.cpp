// Training checkpoints (checkpoint.h): atomic save, pruning, lookup, verified loading.
#include "train/checkpoint.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <set>

#include <cstring>

#include "autograd/node.h"
#include "data/bpe_sha256.h"
#include "dist/zero_shard.h"
#include "model/hf_import.h"
#include "util/check.h"
#include "util/file_io.h"

namespace sk::train {

namespace fs = std::filesystem;

namespace {

constexpr int kFormatVersion = 1;
constexpr const char* kFormat = "sparsek-checkpoint";

// SPARSEK_TEST_CHECKPOINT_KILL="STEP:PHASE": SIGKILL ourselves here (tests only).
bool kill_requested(int64_t step, const char* phase) {
  const char* env = std::getenv("SPARSEK_TEST_CHECKPOINT_KILL");
  return env && std::string(env) == std::to_string(step) + ":" + phase;
}
void kill_point(int64_t step, const char* phase) {
  if (kill_requested(step, phase)) ::kill(::getpid(), SIGKILL);
}

// The step of a "step_NNNNNNN" directory name, or -1.
int64_t step_of(const std::string& name) {
  if (name.size() <= 5 || name.compare(0, 5, "step_") != 0) return -1;
  int64_t v = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || v > (int64_t(1) << 50)) return -1;
    v = v * 10 + (name[i] - '0');
  }
  return v;
}

// Complete checkpoints (step directories holding state.json), oldest first.
std::vector<std::pair<int64_t, fs::path>> list_checkpoints(const fs::path& root) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const int64_t s = step_of(e.path().filename().string());
    if (s >= 0 && fs::exists(e.path() / "state.json")) out.push_back({s, e.path()});
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string sha256_of(const util::MappedFile& f) {
  data::Sha256 h;
  h.update(f.data(), f.size());
  return h.hex_digest();
}

// Removes `p` by renaming it to a hidden .del-* name first, so that a half-removed directory is
// never mistaken for a checkpoint.
void remove_checkpoint_dir(const fs::path& root, const fs::path& p) {
  const fs::path doomed = root / (".del-" + p.filename().string() + "-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::rename(p, doomed, ec);
  fs::remove_all(ec ? p : doomed, ec);
}

void write_synced(const fs::path& path, std::string_view bytes) { util::write_file_atomic(path, bytes); }

}  // namespace

std::string checkpoint_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%07lld", static_cast<long long>(step));
  return buf;
}

fs::path save_checkpoint(const CheckpointWrite& w) {
  SK_CHECK(w.state.is_object(), "save_checkpoint: the state must be a JSON object");
  SK_CHECK(w.keep >= 1, "checkpoint.keep must be >= 1, got ", w.keep);
  const fs::path root(w.dir);
  std::error_code ec;
  fs::create_directories(root, ec);
  SK_CHECK(!ec, "checkpoint.dir ", root.string(), ": cannot create: ", ec.message());
  // Leftovers of writers that died (tmp) or were interrupted while pruning (del).
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(".tmp-", 0) == 0 || n.rfind(".del-", 0) == 0) fs::remove_all(e.path(), ec);
  }
  const std::string name = checkpoint_name(w.step);
  const fs::path tmp = checkpoint_tmp_dir(w.dir, w.step, w.tmp_tag.empty() ? std::to_string(::getpid()) : w.tmp_tag);
  fs::remove_all(tmp, ec);
  SK_CHECK(fs::create_directory(tmp, ec) && !ec, "checkpoint ", tmp.string(), ": cannot create: ", ec.message());

  // Weights, then optimizer state.
  const fs::path model_path = tmp / "model.safetensors";
  io::write_safetensors(model_path.string(), w.weights, {{"format", "pt"}, {"step", std::to_string(w.step)}}, true);
  if (kill_requested(w.step, "model-partial")) {  // what a kill in the middle of this write leaves
    fs::resize_file(model_path, fs::file_size(model_path) / 2);
    kill_point(w.step, "model-partial");
  }
  kill_point(w.step, "model");
  if (w.optimizer) {
    const auto& slots = w.optimizer->slots();
    SK_CHECK(slots.size() == w.weights.size(), "save_checkpoint: the optimizer has ", slots.size(),
             " parameters, the model ", w.weights.size());
    io::NamedTensors opt;
    for (size_t i = 0; i < slots.size(); ++i) {
      SK_CHECK(slots[i].param.impl() == w.weights[i].second.impl(), "save_checkpoint: optimizer slot ", i,
               " is not parameter '", w.weights[i].first, "'");
      const std::string& n = w.weights[i].first;
      opt.push_back({n + ".exp_avg", slots[i].m});
      opt.push_back({n + ".exp_avg_sq", slots[i].v});
      if (slots[i].master.defined()) opt.push_back({n + ".master", slots[i].master});
    }
    io::write_safetensors((tmp / "optimizer.safetensors").string(), opt,
                          {{"step", std::to_string(w.optimizer->step_count())}}, true);
  }
  if (w.fill_tmp) w.fill_tmp(tmp);
  if (!w.tokenizer_files.empty()) {
    fs::create_directory(tmp / "tokenizer");
    for (const auto& [src, name] : w.tokenizer_files) write_synced(tmp / "tokenizer" / name, util::read_file(src));
    util::fsync_dir(tmp / "tokenizer");
  }
  // state.json last, listing every other file with its size and digest.
  nlohmann::json state = w.state;
  state["format"] = kFormat;
  state["version"] = kFormatVersion;
  state["step"] = w.step;
  nlohmann::json files = nlohmann::json::object();
  for (const auto& e : fs::recursive_directory_iterator(tmp)) {
    if (!e.is_regular_file()) continue;
    const util::MappedFile f = util::MappedFile::open(e.path().string());
    files[fs::relative(e.path(), tmp).string()] = {{"bytes", f.size()}, {"sha256", sha256_of(f)}};
  }
  state["files"] = files;
  write_synced(tmp / "state.json", state.dump(1));
  util::fsync_dir(tmp);
  kill_point(w.step, "state");

  const fs::path final_dir = root / name;
  if (fs::exists(final_dir)) remove_checkpoint_dir(root, final_dir);  // the same step saved again
  fs::rename(tmp, final_dir, ec);
  SK_CHECK(!ec, "checkpoint ", final_dir.string(), ": cannot rename ", tmp.string(), " onto it: ", ec.message());
  util::fsync_dir(root);
  kill_point(w.step, "renamed");
  util::write_file_atomic(root / "latest", name + "\n");

  auto all = list_checkpoints(root);
  for (size_t i = 0; i + size_t(w.keep) < all.size(); ++i)
    if (all[i].second != final_dir) remove_checkpoint_dir(root, all[i].second);
  util::fsync_dir(root);
  return final_dir;
}

fs::path checkpoint_tmp_dir(const std::string& dir, int64_t step, const std::string& tag) {
  return fs::path(dir) / (".tmp-" + checkpoint_name(step) + "-" + tag);
}

std::string optimizer_shard_file(int rank, int world) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "optimizer.rank%05d-of-%05d.safetensors", rank, world);
  return buf;
}

void write_optimizer_shard(const fs::path& dir, const OptimizerShardWrite& s) {
  for (const Tensor* t : {&s.m, &s.v, &s.master})
    SK_CHECK(t->dtype() == DType::F32 && t->numel() == s.end - s.begin, "write_optimizer_shard: rank ", s.rank,
             ": a state tensor ", t->str(), " for the range [", s.begin, ", ", s.end, ")");
  io::write_safetensors((dir / optimizer_shard_file(s.rank, s.world)).string(),
                        {{"exp_avg", s.m}, {"exp_avg_sq", s.v}, {"master", s.master}},
                        {{"step", std::to_string(s.step)}, {"rank", std::to_string(s.rank)},
                         {"world", std::to_string(s.world)}, {"align", std::to_string(s.align)},
                         {"total", std::to_string(s.total)}, {"begin", std::to_string(s.begin)},
                         {"end", std::to_string(s.end)}},
                        true);
}

void write_optimizer_index(const fs::path& dir, int world, int64_t align, int64_t step,
                           const io::NamedTensors& params) {
  nlohmann::json ps = nlohmann::json::array(), files = nlohmann::json::array();
  int64_t total = 0;
  for (const auto& [n, t] : params) {
    ps.push_back({n, t.numel()});
    total += t.numel();
  }
  for (int r = 0; r < world; ++r) files.push_back(optimizer_shard_file(r, world));
  const nlohmann::json j = {{"format", "sparsek-zero1"}, {"world_size", world}, {"align", align}, {"total", total},
                            {"step", step}, {"params", ps}, {"files", files}};
  util::write_file_atomic(dir / "optimizer-index.json", j.dump(1));
}

std::optional<fs::path> latest_checkpoint(const fs::path& run_dir) {
  std::error_code ec;
  if (fs::exists(run_dir / "latest", ec)) {
    std::string name = util::read_file(run_dir / "latest");
    while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
    if (step_of(name) >= 0 && fs::exists(run_dir / name / "state.json", ec)) return run_dir / name;
  }
  auto all = list_checkpoints(run_dir);  // no usable pointer: the newest complete directory
  if (all.empty()) return std::nullopt;
  return all.back().second;
}

Checkpoint Checkpoint::open(const fs::path& path) {
  std::error_code ec;
  SK_CHECK(fs::is_directory(path, ec), "checkpoint ", path.string(), " does not exist or is not a directory");
  Checkpoint c;
  if (fs::exists(path / "state.json", ec)) {
    c.dir_ = path;
  } else {
    auto l = latest_checkpoint(path);
    SK_CHECK(l.has_value(), "no checkpoint in ", path.string(), ": no state.json there and no step_* directory with one");
    c.dir_ = *l;
  }
  const fs::path sp = c.state_path();
  c.state_ = nlohmann::json::parse(util::read_file(sp), nullptr, /*allow_exceptions=*/false);
  SK_CHECK(!c.state_.is_discarded() && c.state_.is_object(), "checkpoint ", sp.string(),
           " is not valid JSON (the checkpoint is corrupt)");
  SK_CHECK(c.state_.value("format", "") == kFormat, "checkpoint ", sp.string(), ": not a sparsek checkpoint (format '",
           c.state_.value("format", ""), "', expected '", kFormat, "')");
  SK_CHECK(c.state_.value("version", 0) == kFormatVersion, "checkpoint ", sp.string(), ": format version ",
           c.state_.value("version", 0), " is not supported (this build reads version ", kFormatVersion, ")");
  SK_CHECK(c.state_.contains("step") && c.state_["step"].is_number_integer() && c.state_.contains("files") &&
               c.state_["files"].is_object(),
           "checkpoint ", sp.string(), ": missing 'step' or 'files' (the checkpoint is corrupt)");
  for (const auto& [rel, info] : c.state_["files"].items()) {
    const fs::path f = c.dir_ / rel;
    SK_CHECK(fs::exists(f, ec), "checkpoint file ", f.string(), " is missing (listed in ", sp.string(), ")");
    const auto want = info.value("bytes", uint64_t(0));
    const auto got = fs::file_size(f, ec);
    SK_CHECK(got == want, "checkpoint file ", f.string(), " has ", got, " bytes, ", sp.string(), " says ", want,
             " (the checkpoint is corrupt or was truncated)");
  }
  return c;
}

namespace {

// Maps `rel` of checkpoint `c` and checks its sha256 against state.json.
util::MappedFile verified(const Checkpoint& c, const std::string& rel) {
  const fs::path p = c.dir() / rel;
  const auto& files = c.state().at("files");
  SK_CHECK(files.contains(rel), "checkpoint ", c.dir().string(), " has no ", rel, " (not listed in ",
           c.state_path().string(), ")");
  util::MappedFile f = util::MappedFile::open(p.string());
  const std::string want = files[rel].value("sha256", "");
  SK_CHECK(sha256_of(f) == want, "checkpoint file ", p.string(), ": sha256 does not match ", c.state_path().string(),
           " (the file is corrupt)");
  return f;
}

}  // namespace

std::optional<fs::path> Checkpoint::tokenizer_dir() const {
  bool any = false;
  for (const auto& [rel, info] : state_.at("files").items())
    if (rel.rfind("tokenizer/", 0) == 0) {
      verified(*this, rel);
      any = true;
    }
  if (!any) return std::nullopt;
  return dir_ / "tokenizer";
}

config::RunConfig Checkpoint::config(const std::vector<std::string>& overrides) const {
  SK_CHECK(state_.contains("config") && state_["config"].is_object(), "checkpoint ", state_path().string(),
           " has no 'config' (the checkpoint is corrupt)");
  return config::run_config_from_json(state_["config"], state_path().string(), overrides);
}

model::Gpt Checkpoint::load_model(const config::RunConfig& cfg, DType dtype, Device device) const {
  Rng rng(0);  // the initial values are overwritten
  model::Gpt gpt(cfg.model, cfg.attention, dtype, device, rng);
  load_weights(gpt.named_parameters(), /*convert=*/true);
  return gpt;
}

void Checkpoint::export_hf(const std::string& hf_dir) const {
  const config::RunConfig cfg = config();
  const model::Gpt gpt = load_model(cfg, DType::F32, Device::cpu());
  model::export_hf(gpt.named_parameters(), cfg.model, cfg.attention.kind, hf_dir);
}

void Checkpoint::load_weights(const io::NamedTensors& params, bool convert) const {
  verified(*this, "model.safetensors");
  const io::SafetensorsFile f = io::SafetensorsFile::open((dir_ / "model.safetensors").string());
  std::set<std::string> want;
  for (const auto& [n, t] : params) want.insert(n);
  for (const auto& e : f.entries())
    SK_CHECK(want.count(e.name), "checkpoint ", f.path(), ": tensor '", e.name,
             "' is not a parameter of this model (incompatible model config)");
  autograd::NoGradGuard no_grad;
  for (const auto& [n, t] : params) {
    SK_CHECK(f.contains(n), "checkpoint ", f.path(), " has no tensor '", n, "' (incompatible model config)");
    Tensor dst = t;
    f.read_into(n, dst, convert);
  }
}

bool Checkpoint::sharded_optimizer() const {
  return !state_.at("files").contains("optimizer.safetensors") && state_.at("files").contains("optimizer-index.json");
}

namespace {
std::vector<float> floats_of(const Tensor& t) {
  const Tensor c = t.to(Device::cpu()).to(DType::F32).contiguous();
  std::vector<float> v(size_t(c.numel()));
  if (!v.empty()) std::memcpy(v.data(), c.data_ptr(), v.size() * sizeof(float));
  return v;
}
int64_t meta_int(const io::SafetensorsFile& f, const std::string& key) {
  const auto it = f.metadata().find(key);
  SK_CHECK(it != f.metadata().end(), "checkpoint ", f.path(), ": no '", key, "' in __metadata__");
  char* end = nullptr;
  const long long v = std::strtoll(it->second.c_str(), &end, 10);
  SK_CHECK(!it->second.empty() && *end == '\0' && v >= 0, "checkpoint ", f.path(), ": bad ", key, " '", it->second,
           "' in __metadata__");
  return v;
}
}  // namespace

FlatOptimizerState Checkpoint::load_optimizer_flat(const io::NamedTensors& params) const {
  FlatOptimizerState out;
  std::vector<int64_t> numels;
  int64_t total = 0;
  for (const auto& [n, t] : params) {
    numels.push_back(t.numel());
    total += t.numel();
  }
  autograd::NoGradGuard no_grad;
  if (!sharded_optimizer()) {
    verified(*this, "optimizer.safetensors");
    const io::SafetensorsFile f = io::SafetensorsFile::open((dir_ / "optimizer.safetensors").string());
    out.m.reserve(size_t(total));
    out.v.reserve(size_t(total));
    out.master.reserve(size_t(total));
    for (const auto& [n, t] : params) {
      for (const char* suffix : {".exp_avg", ".exp_avg_sq"}) {
        const Tensor s = f.tensor_as(n + suffix, DType::F32);
        SK_CHECK(s.numel() == t.numel(), "checkpoint ", f.path(), ": '", n, suffix, "' has ", s.numel(),
                 " elements, the parameter ", t.numel());
        const std::vector<float> x = floats_of(s);
        auto& dst = std::string(suffix) == ".exp_avg" ? out.m : out.v;
        dst.insert(dst.end(), x.begin(), x.end());
      }
      const std::vector<float> x = f.contains(n + ".master") ? floats_of(f.tensor_as(n + ".master", DType::F32)) : floats_of(t);
      out.master.insert(out.master.end(), x.begin(), x.end());
    }
    out.step = meta_int(f, "step");
    return out;
  }
  const std::string index_path = (dir_ / "optimizer-index.json").string();
  verified(*this, "optimizer-index.json");
  const nlohmann::json ix = nlohmann::json::parse(util::read_file(index_path), nullptr, false);
  SK_CHECK(!ix.is_discarded() && ix.is_object() && ix.value("format", "") == "sparsek-zero1", "checkpoint ",
           index_path, " is not a ZeRO-1 optimizer index (the checkpoint is corrupt)");
  int world = 0;
  int64_t align = 0, step = 0;
  try {
    world = ix.at("world_size").get<int>();
    align = ix.at("align").get<int64_t>();
    step = ix.at("step").get<int64_t>();
    const auto& ps = ix.at("params");
    SK_CHECK(ps.size() == params.size(), "checkpoint ", index_path, " has ", ps.size(), " parameters, the model ",
             params.size(), " (incompatible model config)");
    for (size_t i = 0; i < params.size(); ++i)
      SK_CHECK(ps[i].at(0).get<std::string>() == params[i].first && ps[i].at(1).get<int64_t>() == numels[i],
               "checkpoint ", index_path, ": parameter ", i, " is ", ps[i].dump(), ", the model has '", params[i].first,
               "' of ", numels[i], " elements (incompatible model config)");
  } catch (const nlohmann::json::exception& e) {
    SK_FAIL("checkpoint ", index_path, ": ", e.what(), " (the checkpoint is corrupt)");
  }
  SK_CHECK(world >= 1 && align >= 1, "checkpoint ", index_path, ": bad world_size ", world, " or align ", align);
  const dist::ShardLayout from(numels, world, align), to(numels, 1, align);
  std::vector<std::vector<float>> ms, vs, masters;
  for (int r = 0; r < world; ++r) {
    const std::string rel = optimizer_shard_file(r, world);
    verified(*this, rel);
    const io::SafetensorsFile f = io::SafetensorsFile::open((dir_ / rel).string());
    SK_CHECK(meta_int(f, "rank") == r && meta_int(f, "world") == world && meta_int(f, "begin") == from.owned_begin(r) &&
                 meta_int(f, "end") == from.owned_end(r) && meta_int(f, "total") == total && meta_int(f, "step") == step,
             "checkpoint ", f.path(), ": its metadata does not match ", index_path, " (rank ", r, " of ", world,
             ", range [", from.owned_begin(r), ", ", from.owned_end(r), "), step ", step, ")");
    ms.push_back(floats_of(f.tensor_as("exp_avg", DType::F32)));
    vs.push_back(floats_of(f.tensor_as("exp_avg_sq", DType::F32)));
    masters.push_back(floats_of(f.tensor_as("master", DType::F32)));
  }
  out.m = std::move(dist::reshard(ms, from, to)[0]);
  out.v = std::move(dist::reshard(vs, from, to)[0]);
  out.master = std::move(dist::reshard(masters, from, to)[0]);
  out.step = step;
  out.saved_world = world;
  out.sharded = true;
  return out;
}

void Checkpoint::load_optimizer(const io::NamedTensors& params, optim::AdamW& opt) const {
  if (sharded_optimizer()) {
    auto& slots = opt.slots();
    SK_CHECK(slots.size() == params.size(), "load_optimizer: the optimizer has ", slots.size(),
             " parameters, the model ", params.size());
    const FlatOptimizerState st = load_optimizer_flat(params);
    autograd::NoGradGuard no_grad;
    int64_t off = 0;
    auto part = [&](const std::vector<float>& v, const Tensor& like) {
      Tensor t = Tensor::empty(like.shape(), DType::F32, Device::cpu());
      std::memcpy(t.data_ptr(), v.data() + off, size_t(like.numel()) * sizeof(float));
      return t;
    };
    for (size_t i = 0; i < slots.size(); ++i) {
      slots[i].m.copy_(part(st.m, slots[i].m));
      slots[i].v.copy_(part(st.v, slots[i].v));
      if (slots[i].master.defined()) slots[i].master.copy_(part(st.master, slots[i].master));
      off += params[i].second.numel();
    }
    opt.set_step_count(st.step);
    return;
  }
  verified(*this, "optimizer.safetensors");
  const io::SafetensorsFile f = io::SafetensorsFile::open((dir_ / "optimizer.safetensors").string());
  auto& slots = opt.slots();
  SK_CHECK(slots.size() == params.size(), "load_optimizer: the optimizer has ", slots.size(),
           " parameters, the model ", params.size());
  autograd::NoGradGuard no_grad;
  for (size_t i = 0; i < slots.size(); ++i) {
    const std::string& n = params[i].first;
    f.read_into(n + ".exp_avg", slots[i].m);
    f.read_into(n + ".exp_avg_sq", slots[i].v);
    SK_CHECK(slots[i].master.defined() == f.contains(n + ".master"), "checkpoint ", f.path(), ": parameter '", n,
             "' ", slots[i].master.defined() ? "needs an fp32 master copy the file does not have"
                                             : "has an fp32 master copy but this run keeps none",
             " (train.dtype differs from the checkpoint's)");
    if (slots[i].master.defined()) f.read_into(n + ".master", slots[i].master);
  }
  const auto it = f.metadata().find("step");
  SK_CHECK(it != f.metadata().end(), "checkpoint ", f.path(), ": no 'step' in __metadata__");
  char* end = nullptr;
  const long long step = std::strtoll(it->second.c_str(), &end, 10);
  SK_CHECK(!it->second.empty() && *end == '\0' && step >= 0, "checkpoint ", f.path(), ": bad step '", it->second,
           "' in __metadata__");
  opt.set_step_count(step);
}

}  // namespace sk::train
