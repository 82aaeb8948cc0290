// The training loop (trainer.h).
#include "train/trainer.h"

#include <fcntl.h>
#include <signal.h>
#include <glob.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "autograd/node.h"
#include "model/hf_import.h"
#include "backend/cuda_device.h"
#include "dist/gradient_reducer.h"
#include "dist/zero_optimizer.h"
#include "ops/ops.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "train/checkpoint.h"
#include "train/schedule.h"
#include "util/check.h"
#include "util/file_io.h"

namespace sk::train {

namespace fs = std::filesystem;

std::vector<std::string> resolve_shards(const std::string& pattern) {
  SK_CHECK(!pattern.empty(), "config: data.train / data.val is empty: give a shard glob such as "
           "data/python_docs/python_docs_train_*.bin");
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> out;
  if (rc == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.push_back(g.gl_pathv[i]);
  globfree(&g);
  SK_CHECK(!out.empty(), "no shard file matches '", pattern, "' (build the data with scripts/data/*.sh or sparsek prepare)");
  return out;
}

double evaluate(const model::Gpt& gpt, data::DataLoader& loader, int64_t max_batches,
                std::pair<double, int64_t>* sum_and_count) {
  autograd::NoGradGuard no_grad;
  gpt.set_step(-1);  // evaluation: fixed randomness (lsh rotations); the next training step sets its own
  loader.reset();
  double total = 0;
  int64_t targets = 0, batches = 0;
  ops::CrossEntropyOptions o;
  o.valid_vocab = gpt.config().vocab_size;
  o.reduction = ops::Reduction::Sum;
  const Device dev = gpt.device();
  while (auto b = loader.next()) {
    total += ops::cross_entropy(gpt.forward(b->inputs.to(dev)), b->targets.to(dev), o).item();
    targets += b->num_targets;
    if (++batches == max_batches) break;
  }
  if (sum_and_count) {
    *sum_and_count = {total, targets};  // a rank's part may hold no real targets (tiny splits)
    if (targets == 0) return 0.0;
  }
  SK_CHECK(targets > 0, "evaluation: the split has no targets");
  return total / double(targets);
}

double evaluate_causal(const model::Gpt& gpt, data::DataLoader& loader, int64_t max_batches) {
  autograd::NoGradGuard no_grad;
  gpt.set_step(-1);
  loader.reset();
  double total = 0;
  int64_t targets = 0, batches = 0;
  ops::CrossEntropyOptions o;
  o.valid_vocab = gpt.config().vocab_size;
  o.reduction = ops::Reduction::Sum;
  const Device dev = gpt.device();
  while (auto b = loader.next()) {
    const int64_t B = b->inputs.size(0), T = b->inputs.size(1);
    model::KvCache cache = gpt.new_cache(B, T);
    // The batch goes to the device once and each step's summed loss stays there until the batch
    // ends: no host round trip (stream sync) per token, so the host queues steps ahead of the GPU.
    const Tensor inputs = b->inputs.to(dev), step_targets = b->targets.to(dev);
    Tensor step_loss;  // (T), the loss's dtype (f32; f64 for an f64 model)
    for (int64_t t = 0; t < T; ++t) {
      Tensor logits = gpt.forward_step(inputs.slice(1, t, t + 1).contiguous(), cache);  // (B, 1, Vp)
      const Tensor loss = ops::cross_entropy(logits, step_targets.slice(1, t, t + 1).contiguous(), o);
      if (!step_loss.defined()) step_loss = Tensor::empty({T}, loss.dtype(), dev);
      step_loss.slice(0, t, t + 1).copy_(loss.reshape({1}));
    }
    for (double l : step_loss.to_vector()) total += l;  // the per-step sums in step order, as before
    targets += b->num_targets;
    if (++batches == max_batches) break;
  }
  SK_CHECK(targets > 0, "evaluation: the split has no targets");
  return total / double(targets);
}

namespace {

// Weight decay on 2-D weights; embeddings, norms and biases only when asked.
bool decays(const std::string& name, const Tensor& t, const config::OptimizerConfig& o) {
  const bool embedding = name == "wte" || name == "wpe";
  if (embedding) return o.decay_embeddings;
  if (t.ndim() < 2) return o.decay_norms_and_biases;
  return true;
}

// An exclusive lock on <dir>/.lock for the life of the run: two processes training into the same
// checkpoint.dir would overwrite each other's checkpoints. Released by the kernel on any exit.
class RunDirLock {
 public:
  explicit RunDirLock(const fs::path& dir) {
    const fs::path p = dir / ".lock";
    fd_ = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    SK_CHECK(fd_ >= 0, "checkpoint.dir ", dir.string(), ": cannot create ", p.string(), ": ", util::errno_text());
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd_);
      SK_FAIL("checkpoint.dir ", dir.string(), " is in use by another sparsek train (", p.string(),
              " is locked); use another checkpoint.dir");
    }
  }
  ~RunDirLock() { ::close(fd_); }
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

 private:
  int fd_ = -1;
};

// {"model.n_layer": 2, ...} from the nested config JSON.
std::map<std::string, nlohmann::json> flat_config(const nlohmann::json& nested) {
  std::map<std::string, nlohmann::json> out;
  const nlohmann::json flat = nested.flatten();
  for (const auto& [ptr, v] : flat.items()) {
    std::string key = ptr.substr(1);
    std::replace(key.begin(), key.end(), '/', '.');
    out[key] = v;
  }
  return out;
}

// Keys whose value must be the checkpoint's for an exact continuation.
bool must_match(const std::string& key) {
  return key.rfind("model.", 0) == 0 || key.rfind("attention.", 0) == 0 || key == "train.batch_size" ||
         key == "train.seq_len" || key == "train.grad_accum" || key == "train.dtype" || key == "data.seed";
}
// Keys that may differ without comment (where and how long to run, how to log).
bool free_to_change(const std::string& key) {
  return key == "train.resume" || key == "train.max_steps" || key.rfind("checkpoint.", 0) == 0 ||
         key.rfind("logging.", 0) == 0 || key.rfind("dist.", 0) == 0 || key.rfind("eval.", 0) == 0 || key == "model.init_from" ||
         key == "train.batch_tokens";
}

// model.init_from = "hf:DIR" on a fresh run: the imported architecture must be the config's
// (block_size may differ for rotary models: positions are not weights); the imported weights are
// copied in (converted to the run's dtype); parameters the import lacks (an attention kind's own,
// e.g. the SparseK scorer) keep their initialisation.
void init_from_hf(const config::RunConfig& cfg, const io::NamedTensors& named) {
  const std::string dir = cfg.model.init_from.substr(3);
  const model::HfImport imp = model::import_hf(dir, cfg.model.pad_vocab_multiple);
  const config::ModelConfig& a = imp.model;
  const config::ModelConfig& b = cfg.model;
  std::string diff;
  auto cmp = [&](const char* key, const std::string& want, const std::string& have) {
    if (want != have) diff += std::string(" --set model.") + key + "=" + want + " (config has " + have + ");";
  };
  auto str = [](double v) { std::ostringstream o; o << v; return o.str(); };
  cmp("n_layer", std::to_string(a.n_layer), std::to_string(b.n_layer));
  cmp("n_head", std::to_string(a.n_head), std::to_string(b.n_head));
  cmp("n_embd", std::to_string(a.n_embd), std::to_string(b.n_embd));
  cmp("vocab_size", std::to_string(a.vocab_size), std::to_string(b.vocab_size));
  cmp("learned_positions", a.learned_positions ? "true" : "false", b.learned_positions ? "true" : "false");
  if (a.learned_positions) cmp("block_size", std::to_string(a.block_size), std::to_string(b.block_size));
  cmp("rotary_pct", str(a.rotary_pct), str(b.rotary_pct));
  if (a.rotary_pct > 0) cmp("rotary_base", str(a.rotary_base), str(b.rotary_base));
  cmp("parallel_residual", a.parallel_residual ? "true" : "false", b.parallel_residual ? "true" : "false");
  cmp("tied_embeddings", a.tied_embeddings ? "true" : "false", b.tied_embeddings ? "true" : "false");
  cmp("gelu", a.gelu, b.gelu);
  cmp("bias", "true", b.bias ? "true" : "false");
  cmp("layernorm_eps", str(a.layernorm_eps), str(b.layernorm_eps));
  SK_CHECK(diff.empty(), "model.init_from = ", cfg.model.init_from, ": the config's model differs from ", dir,
           "/config.json (", imp.architecture, "); set:", diff);
  std::map<std::string, Tensor> params(named.begin(), named.end());
  autograd::NoGradGuard no_grad;
  for (const auto& [n, t] : imp.weights) {
    auto it = params.find(n);
    SK_CHECK(it != params.end(), "model.init_from: ", dir, " gives parameter '", n, "', which this model lacks");
    it->second.copy_(t.to(it->second.dtype()).to(it->second.device()));
    params.erase(it);
  }
  for (const auto& [n, t] : params) spdlog::info("train: init_from: {} keeps its initialisation (not in {})", n, dir);
  spdlog::info("train: initialised from {} ({})", dir, imp.architecture);
}

// The world size a checkpoint was trained with (state.json "world_size"; older checkpoints: the
// train loader's, else 1).
int64_t saved_world_size(const Checkpoint& ck) {
  const nlohmann::json& st = ck.state();
  if (st.contains("world_size") && st["world_size"].is_number_integer()) return st["world_size"].get<int64_t>();
  if (st.contains("train_loader") && st["train_loader"].is_object())
    return st["train_loader"].value("world_size", int64_t(1));
  return 1;
}

void check_compatible(const config::RunConfig& cfg, const Checkpoint& ck, int world_size) {
  SK_CHECK(ck.state().contains("config") && ck.state()["config"].is_object(), "checkpoint ", ck.state_path().string(),
           " has no 'config' (the checkpoint is corrupt)");
  const auto saved = flat_config(ck.state()["config"]);
  const auto now = flat_config(cfg.to_json());
  for (const auto& [key, v] : now) {
    const auto it = saved.find(key);
    const std::string was = it == saved.end() ? "(absent)" : it->second.dump();
    if (it != saved.end() && it->second == v) continue;
    if (key == "train.batch_size") continue;  // checked below with the world size
    if (must_match(key))
      SK_FAIL("cannot resume from ", ck.state_path().string(), ": ", key, " is ", was, " there but ", v.dump(),
              " in this config (an incompatible config; start a new run in another checkpoint.dir)");
    if (!free_to_change(key)) spdlog::warn("resume: {} changed from {} to {}", key, was, v.dump());
  }
  // Another world size: the per-rank batch may change as long as the global batch (world size x
  // batch_size) is the same, so the loader's cursor and the loss curve continue.
  const auto it = saved.find("train.batch_size");
  SK_CHECK(it != saved.end() && it->second.is_number_integer(), "checkpoint ", ck.state_path().string(),
           " has no train.batch_size (the checkpoint is corrupt)");
  const int64_t saved_b = it->second.get<int64_t>(), saved_w = saved_world_size(ck);
  const int64_t saved_global = saved_w * saved_b, global = int64_t(world_size) * cfg.train.batch_size;
  SK_CHECK(saved_global == global, "cannot resume from ", ck.state_path().string(), ": the global batch (world size x "
           "train.batch_size) is ", saved_w, " x ", saved_b, " = ", saved_global, " there but ", world_size, " x ",
           cfg.train.batch_size, " = ", global, " here (",
           saved_global % world_size == 0 ? "set train.batch_size=" + std::to_string(saved_global / world_size)
                                          : std::string("no per-rank batch fits"),
           " for ", world_size, " rank(s))");
  if (saved_w != world_size)
    spdlog::info("resume: {} rank(s) x batch {} -> {} rank(s) x batch {} (the same global batch)", saved_w, saved_b,
                 world_size, cfg.train.batch_size);
}

// The GPT-2 / tokenizer.json files of data.tokenizer (copied into checkpoints), or none.
std::vector<std::pair<fs::path, std::string>> tokenizer_files(const std::string& path) {
  std::error_code ec;
  if (path.empty() || !fs::exists(path, ec)) return {};
  if (fs::is_regular_file(path, ec)) return {{fs::path(path), "tokenizer.json"}};
  const fs::path d(path);
  if (fs::exists(d / "tokenizer.json", ec)) return {{d / "tokenizer.json", "tokenizer.json"}};
  if (fs::exists(d / "encoder.json", ec) && fs::exists(d / "vocab.bpe", ec))
    return {{d / "encoder.json", "encoder.json"}, {d / "vocab.bpe", "vocab.bpe"}};
  return {};
}

nlohmann::json rng_state(const Rng& rng) {
  const Rng::State s = rng.state();
  uint64_t spare_bits;
  std::memcpy(&spare_bits, &s.spare, 8);
  return {{"s", {s.s[0], s.s[1], s.s[2], s.s[3]}}, {"has_spare", s.has_spare}, {"spare_bits", spare_bits}};
}

void set_rng_state(Rng& rng, const nlohmann::json& j, const std::string& where) {
  SK_CHECK(j.is_object() && j.contains("s") && j["s"].is_array() && j["s"].size() == 4, where,
           ": bad 'rng' entry (the checkpoint is corrupt)");
  Rng::State s{};
  for (int i = 0; i < 4; ++i) s.s[i] = j["s"][i].get<uint64_t>();
  s.has_spare = j.value("has_spare", false);
  const uint64_t bits = j.value("spare_bits", uint64_t(0));
  std::memcpy(&s.spare, &bits, 8);
  rng.set_state(s);
}

// SPARSEK_TEST_DIST_KILL="RANK:STEP": rank RANK SIGKILLs itself after optimizer step STEP
// (tests/dist/test_dist_train.cpp, scripts/bench/bench_ddp.sh: a rank dying mid-training).
void kill_point_for_tests(int rank, int64_t step) {
  static const char* env = std::getenv("SPARSEK_TEST_DIST_KILL");
  if (env && std::string(env) == std::to_string(rank) + ":" + std::to_string(step)) ::kill(::getpid(), SIGKILL);
}

// Keeps the metrics records of steps <= `step` (a resumed run rewrites the steps after it).
void truncate_metrics(const fs::path& path, int64_t step) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  std::istringstream in(util::read_file(path));
  std::string line, kept;
  while (std::getline(in, line)) {
    const nlohmann::json r = nlohmann::json::parse(line, nullptr, false);
    if (!r.is_discarded() && r.is_object() && r.value("step", int64_t(0)) <= step) kept += line + "\n";
  }
  util::write_file_atomic(path, kept);
}

}  // namespace

std::vector<std::string> training_devices() {
  if (cuda::is_available()) return {"cpu", "cuda"};
  return {"cpu"};
}

Placement resolve_placement(const std::string& device, const std::string& dtype) {
  Placement p;
  if (device == "auto") {
    p.device = cuda::is_available() ? Device::cuda(0) : Device::cpu();
  } else if (device == "cpu") {
    p.device = Device::cpu();
  } else {
    SK_CHECK(cuda::compiled(), "train.device = \"", device, "\": this build has no CUDA backend (rebuild with the "
             "CUDA toolkit installed, or use train.device=cpu)");
    const int n = cuda::device_count();
    const int idx = device == "cuda" ? 0 : std::atoi(device.c_str() + 5);
    SK_CHECK(idx >= 0 && idx < n, "train.device = \"", device, "\": ", n == 0 ? std::string("no CUDA device is present")
             : "this machine has " + std::to_string(n) + " CUDA device(s) (cuda:0..cuda:" + std::to_string(n - 1) + ")");
    p.device = Device::cuda(idx);
  }
  if (dtype == "auto") {
    p.dtype = p.device.is_cpu() ? DType::F32 : DType::BF16;
  } else if (dtype == "bf16") {
    SK_CHECK(!p.device.is_cpu(), "train.dtype = bf16: bf16 training runs on CUDA only (train.device resolved to cpu); "
             "use train.dtype=f32 or auto on the CPU");
    p.dtype = DType::BF16;
  } else {
    p.dtype = DType::F32;
  }
  return p;
}

TrainResult train(const config::RunConfig& cfg_in, const TrainOptions& opts) {
  config::RunConfig cfg = cfg_in;
  cfg.resolve();
  // The process world (torchrun / Slurm / Open MPI variables; a single process when none are set).
  // In a multi-process run each rank trains on cuda:LOCAL_RANK and only rank 0 writes.
  const dist::World world = dist::world_from_environment();
  const bool writer = world.rank == 0;
  // (train.device=auto without a GPU, or cpu: every rank on the CPU, collectives over TCP.)
  const bool rank_gpu =
      world.distributed() && (cfg.train.device == "cuda" || (cfg.train.device == "auto" && cuda::is_available()));
  const std::string device_key = rank_gpu ? "cuda:" + std::to_string(world.local_rank) : cfg.train.device;
  const Placement place = resolve_placement(device_key, cfg.train.dtype);
  if (!writer) spdlog::set_level(spdlog::level::warn);  // one progress log: rank 0's
  const Device dev = place.device;
  const std::string precision = dtype_name(place.dtype);
  if (!dev.is_cpu() && place.dtype == DType::F32)
    spdlog::warn("train: f32 on CUDA: the fused attention kernels take bf16, so attention runs on a slow fallback; "
                 "train.dtype=bf16 (or auto) is the fast path");
  const int64_t B = cfg.train.batch_size, T = cfg.train.seq_len;
  // The collectives (TCP on the CPU, NCCL on CUDA; nothing for one process), then the plain
  // data-parallel reducer or ZeRO-1 (below, once the parameters exist).
  const std::unique_ptr<dist::Communicator> comm = dist::make_communicator(world, dev, cfg.dist.timeout_s);
  const bool zero1 = cfg.dist.zero == 1;
  const std::unique_ptr<dist::GradientReducer> reducer =
      zero1 ? nullptr : dist::make_gradient_reducer(*comm, cfg.dist.reduce_dtype, cfg.dist.bucket_mb);
  data::DataLoaderOptions lo;
  lo.rank = world.rank;
  lo.world_size = world.world_size;
  lo.batch_size = B;
  lo.seq_len = T;
  lo.seed = static_cast<uint64_t>(cfg.data.seed);
  data::DataLoader train_loader(resolve_shards(cfg.data.train), data::DataLoader::Mode::Train, lo);
  std::unique_ptr<data::DataLoader> val_loader;
  if (!cfg.data.val.empty() && cfg.eval.every > 0) {
    data::DataLoaderOptions vo = lo;
    vo.prefetch = 0;
    val_loader = std::make_unique<data::DataLoader>(resolve_shards(cfg.data.val), data::DataLoader::Mode::Val, vo);
  }

  Rng rng(static_cast<uint64_t>(cfg.train.seed));
  model::Gpt gpt(cfg.model, cfg.attention, place.dtype, dev, rng);
  const optim::AdamWConfig adam_cfg{.lr = cfg.optimizer.lr, .beta1 = cfg.optimizer.beta1, .beta2 = cfg.optimizer.beta2,
                                    .eps = cfg.optimizer.eps, .weight_decay = cfg.optimizer.weight_decay};
  optim::AdamW opt(adam_cfg);  // without ZeRO-1: the whole state on every rank
  const io::NamedTensors named = gpt.named_parameters();
  std::vector<Tensor> params;
  std::vector<bool> decay_flags;
  for (auto& [name, t] : named) {
    if (!zero1) opt.add_param(t, decays(name, t, cfg.optimizer));
    params.push_back(t);
    decay_flags.push_back(decays(name, t, cfg.optimizer));
  }
  std::unique_ptr<dist::ZeroOptimizer> zero;  // ZeRO-1: this rank's shard of the state
  if (zero1) zero = std::make_unique<dist::ZeroOptimizer>(*comm, adam_cfg, params, decay_flags);
  auto step_count = [&] { return zero ? zero->step_count() : opt.step_count(); };
  if (world.distributed() || zero)
    spdlog::info("train: {} rank(s), {} collectives, {}", world.world_size, comm->name(),
                 zero ? fmt::format("ZeRO-1 (optimizer state sharded: {} of {} elements on this rank)",
                                    zero->layout().shard_size(), zero->layout().total())
                      : "plain data parallel (" + cfg.dist.reduce_dtype + " all-reduce)");

  // The run directory: locked, then resumed from or checked to be free.
  const fs::path run_dir(cfg.checkpoint.dir);
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  SK_CHECK(!ec, "checkpoint.dir ", run_dir.string(), ": cannot create: ", ec.message());
  std::optional<RunDirLock> lock;  // rank 0 writes the run directory
  if (writer) lock.emplace(run_dir);
  const fs::path metrics_path = cfg.logging.metrics_file.empty() ? fs::path() : run_dir / cfg.logging.metrics_file;
  std::optional<Checkpoint> ck;
  const std::string& resume = cfg.train.resume;
  if (resume == "auto") {
    if (auto l = latest_checkpoint(run_dir)) ck = Checkpoint::open(*l);
  } else if (resume != "none" && !resume.empty()) {
    ck = Checkpoint::open(resume);
  } else {
    const auto existing = latest_checkpoint(run_dir);
    const bool has_metrics = !metrics_path.empty() && fs::exists(metrics_path, ec) && fs::file_size(metrics_path, ec) > 0;
    SK_CHECK(!existing && !has_metrics, "checkpoint.dir ", run_dir.string(), " already holds a run (",
             existing ? existing->string() : metrics_path.string(),
             "): set train.resume=auto to continue it, or choose another checkpoint.dir");
  }

  int64_t start_step = 0, bad_in_a_row = 0;
  TrainResult result;
  if (ck) {
    const std::string where = ck->state_path().string();
    check_compatible(cfg, *ck, world.world_size);
    const std::string saved_precision = ck->state().value("precision", std::string("f32"));
    SK_CHECK(saved_precision == precision, "cannot resume from ", where, ": it was trained in ", saved_precision,
             " but this run resolves train.device/train.dtype to ", precision, " on ", dev.str(),
             " (set train.dtype and train.device to match the checkpoint)");
    ck->load_weights(named);
    if (zero) {
      const FlatOptimizerState fs_state = ck->load_optimizer_flat(named);
      zero->load_full(fs_state.step, fs_state.m, fs_state.v, fs_state.master);
    } else {
      ck->load_optimizer(named, opt);
    }
    if (ck->sharded_optimizer() || zero)
      spdlog::info("train: optimizer state of {} ({} rank(s)) re-cut for {} ({} rank(s))",
                   ck->sharded_optimizer() ? "ZeRO-1" : "plain AdamW", saved_world_size(*ck),
                   zero ? "ZeRO-1" : "plain AdamW", world.world_size);
    const nlohmann::json& st = ck->state();
    try {
      train_loader.load_state(st.at("train_loader"));
      if (val_loader && st.contains("val_loader")) val_loader->load_state(st.at("val_loader"));
      set_rng_state(rng, st.at("rng"), where);
      start_step = st.at("step").get<int64_t>();
      bad_in_a_row = st.at("bad_steps_in_a_row").get<int64_t>();
      result.skipped_steps = st.at("skipped_steps").get<int64_t>();
    } catch (const nlohmann::json::exception& e) {
      SK_FAIL("checkpoint ", where, ": ", e.what(), " (the checkpoint is corrupt)");
    }
    SK_CHECK(step_count() == start_step - result.skipped_steps, "checkpoint ", where, ": the optimizer step ",
             step_count(), " does not match step ", start_step, " minus ", result.skipped_steps, " skipped");
    spdlog::info("train: resumed from {} (step {})", ck->dir().string(), start_step);
  }
  if (!ck && !cfg.model.init_from.empty()) {
    init_from_hf(cfg, named);
    // The fp32 masters of bf16 parameters were copied from the random initialisation when the
    // optimizer took the parameters: take them from the imported weights, or the first step would
    // write the random initialisation back.
    if (zero) zero->reload_masters();
    else opt.reload_masters();
  }
  result.first_step = result.last_step = start_step;
  const auto tok_files = tokenizer_files(cfg.data.tokenizer);

  spdlog::info("train: {} parameters, {} layers x {} wide, T = {}, batch {} x {} accumulation, {} steps, {} {}{}",
               gpt.num_parameters(), cfg.model.n_layer, cfg.model.n_embd, T, B, cfg.train.grad_accum,
               cfg.train.max_steps, dev.str(), precision,
               dev.is_cpu() ? "" : " (fp32 master weights and AdamW moments)");
  // MFU: useful model FLOPs per second over the device's dense bf16 peak (CUDA only).
  const double flops_per_token = gpt.train_flops_per_token(T);
  const double peak_flops = dev.is_cpu() ? 0.0 : kHopperDenseBf16Flops;
  if (!dev.is_cpu()) cuda::reset_peak_memory(dev.index);

  std::ofstream metrics;
  if (writer && !metrics_path.empty()) {
    truncate_metrics(metrics_path, start_step);
    metrics.open(metrics_path, std::ios::app);
    SK_CHECK(metrics.good(), "cannot open the metrics file ", metrics_path.string());
  }

  // ZeRO-1: every rank writes its optimizer shard into the temporary directory rank 0 created,
  // between two barriers (train/checkpoint.h); rank 0 lists and renames.
  auto write_shard = [&](const fs::path& tmp, int64_t step) {
    comm->barrier();  // rank 0 has created tmp
    const dist::ShardLayout& L = zero->layout();
    OptimizerShardWrite s;
    s.rank = world.rank;
    s.world = world.world_size;
    s.align = L.align();
    s.total = L.total();
    s.begin = L.owned_begin(world.rank);
    s.end = L.owned_end(world.rank);
    s.step = zero->step_count();
    s.m = zero->owned_m();
    s.v = zero->owned_v();
    s.master = zero->owned_master();
    write_optimizer_shard(tmp, s);
    if (writer) write_optimizer_index(tmp, world.world_size, L.align(), zero->step_count(), named);
    (void)step;
    comm->barrier();  // every shard is written (and fsynced)
  };
  auto save = [&](int64_t step) {
    if (zero && !writer) {
      write_shard(checkpoint_tmp_dir(cfg.checkpoint.dir, step, "zero1"), step);
      return;
    }
    CheckpointWrite w;
    w.dir = cfg.checkpoint.dir;
    w.step = step;
    w.weights = named;
    w.optimizer = zero ? nullptr : &opt;
    if (zero) {
      w.tmp_tag = "zero1";
      w.fill_tmp = [&](const fs::path& tmp) { write_shard(tmp, step); };
    }
    w.keep = cfg.checkpoint.keep;
    w.tokenizer_files = tok_files;
    w.state = {{"config", cfg.to_json()},
               {"train_loader", train_loader.state()},
               {"val_loader", val_loader ? val_loader->state() : nlohmann::json()},
               {"rng", rng_state(rng)},
               {"precision", precision},
               {"device", dev.str()},
               {"world_size", world.world_size},
               {"zero", cfg.dist.zero},
               {"bad_steps_in_a_row", bad_in_a_row},
               {"skipped_steps", result.skipped_steps},
               {"schedule", {{"step", step}, {"lr", learning_rate(step, cfg.schedule, cfg.optimizer.lr, cfg.train.max_steps)}}},
               {"last_train_loss", result.train_losses.empty() ? nlohmann::json() : nlohmann::json(result.train_losses.back())}};
    const auto t = std::chrono::steady_clock::now();
    result.last_checkpoint = save_checkpoint(w).string();
    spdlog::info("step {:5d} | checkpoint {} ({:.1f} s)", step, result.last_checkpoint,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count());
  };

  // The validation loss over every rank's part of the split: summed losses over summed targets.
  auto distributed_eval = [&] {
    std::pair<double, int64_t> sc;
    const double mean = evaluate(gpt, *val_loader, cfg.eval.max_batches, &sc);
    if (!world.distributed()) {
      SK_CHECK(sc.second > 0, "evaluation: the split has no targets");
      return mean;
    }
    const double total = comm->sum_scalar(sc.first), targets = comm->sum_scalar(double(sc.second));
    SK_CHECK(targets > 0, "evaluation: the split has no targets");
    return total / targets;
  };
  if (val_loader && cfg.eval.at_start && start_step == 0) {
    const double vl = distributed_eval();
    result.val_losses.push_back({0, vl});
    spdlog::info("step {:5d} | validation loss {:.4f} | perplexity {:.2f}", 0, vl, std::exp(vl));
    if (metrics.is_open()) metrics << nlohmann::json{{"step", 0}, {"val_loss", vl}, {"val_ppl", std::exp(vl)}}.dump() << "\n";
  }
  const auto t0 = std::chrono::steady_clock::now();
  const bool checkpoints = cfg.checkpoint.every > 0;
  for (int64_t step = start_step; step < cfg.train.max_steps; ++step) {
    const auto step_t0 = std::chrono::steady_clock::now();
    const double lr = learning_rate(step, cfg.schedule, cfg.optimizer.lr, cfg.train.max_steps);
    if (zero) zero->zero_grad(); else opt.zero_grad();
    gpt.set_step(step);  // per-step randomness (lsh rotations), reproducible from the run seed
    double loss_sum = 0;
    for (int64_t micro = 0; micro < cfg.train.grad_accum; ++micro) {
      data::Batch b = *train_loader.next();
      Tensor loss = gpt.loss(b.inputs.to(dev), b.targets.to(dev));
      loss_sum += loss.item();
      ops::scale(loss, 1.0 / double(cfg.train.grad_accum)).backward();
    }
    const double loss = comm->mean_scalar(loss_sum / double(cfg.train.grad_accum));
    const double max_norm = cfg.optimizer.grad_clip > 0 ? cfg.optimizer.grad_clip : 1e30;
    optim::GradNorm gn;
    double norm = 0;
    if (zero) {
      norm = zero->reduce_gradients(max_norm);  // reduce-scatter into the shard; the global norm
    } else {
      reducer->reduce(params);  // data parallel: every gradient becomes the mean over the ranks
      gn = optim::global_grad_norm(params, max_norm);
      norm = gn.norm();
    }
    result.train_losses.push_back(loss);
    result.last_step = step + 1;
    const bool finite = std::isfinite(loss) && std::isfinite(norm);
    if (!finite) {
      if (zero) zero->discard();
      ++result.skipped_steps;
      spdlog::warn("step {}: loss {} / gradient norm {} is not finite: step skipped ({} in a row)", step + 1, loss, norm,
                   ++bad_in_a_row);
      SK_CHECK(bad_in_a_row < cfg.train.max_bad_steps, "training stopped: ", bad_in_a_row,
               " steps in a row had a NaN/Inf loss or gradient (train.max_bad_steps = ", cfg.train.max_bad_steps, ")");
    } else {
      bad_in_a_row = 0;
      if (zero) zero->step(lr); else opt.step(lr, gn.coefficient);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double tokens = double(step + 1 - start_step) * double(B * T * cfg.train.grad_accum) * world.world_size;
      const double tokens_per_s = tokens / std::max(secs, 1e-9);
      nlohmann::json rec = {{"step", step + 1}, {"loss", loss}, {"lr", lr}, {"grad_norm", norm},
                            {"tokens_per_s", tokens_per_s},
                            {"step_time_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - step_t0).count()}};
      std::string device_part;
      if (!dev.is_cpu()) {
        const double mfu = tokens_per_s * flops_per_token / peak_flops;
        const double peak_gib = double(cuda::memory_stats(dev.index).peak_allocated_bytes) / double(1ull << 30);
        rec["mfu"] = mfu;
        rec["peak_mem_gib"] = peak_gib;
        device_part = fmt::format(" | MFU {:.1f}% | mem {:.2f} GiB", 100 * mfu, peak_gib);
      }
      if (val_loader && ((step + 1) % cfg.eval.every == 0 || step + 1 == cfg.train.max_steps)) {
        const double vl = distributed_eval();
        result.val_losses.push_back({step + 1, vl});
        rec["val_loss"] = vl;
        rec["val_ppl"] = std::exp(vl);
        spdlog::info("step {:5d} | validation loss {:.4f} | perplexity {:.2f}", step + 1, vl, std::exp(vl));
      }
      if ((step + 1) % cfg.logging.every == 0 || step == start_step || step + 1 == cfg.train.max_steps) {
        const double eta = secs / double(step + 1 - start_step) * double(cfg.train.max_steps - step - 1);
        spdlog::info("step {:5d}/{} | loss {:.4f} | lr {:.2e} | norm {:.3f} | {:.0f} tok/s{} | ETA {:.0f} s", step + 1,
                     cfg.train.max_steps, loss, lr, norm, tokens_per_s, device_part, eta);
      }
      if (metrics.is_open()) metrics << rec.dump() << "\n" << std::flush;
    }
    kill_point_for_tests(world.rank, step + 1);
    bool stop = opts.should_stop && opts.should_stop(step + 1) && step + 1 < cfg.train.max_steps;
    // Several ranks stop together (a signal reaches them at different steps): any rank's stop is everyone's.
    if (world.distributed()) stop = comm->sum_scalar(stop ? 1.0 : 0.0) > 0;
    const bool last = step + 1 == cfg.train.max_steps;
    if ((writer || zero) && checkpoints && ((step + 1) % cfg.checkpoint.every == 0 || last || stop)) save(step + 1);
    if (stop) {
      result.stopped = true;
      spdlog::info("train: stopped at step {}{}", step + 1,
                   checkpoints ? "; continue with --set train.resume=auto" : " (checkpoint.every = 0: nothing saved)");
      break;
    }
  }
  return result;
}

}  // namespace sk::train
