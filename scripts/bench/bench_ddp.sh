#!/usr/bin/env bash
# Issue 9 must-shows 2-4 on a 2-GPU machine, in one command (about 9 minutes; nothing here has
# run on GPUs yet: docs/DISTRIBUTED.md). Usage, from anywhere:
#
#   scripts/bench/bench_ddp.sh            # OUT_DIR=docs/bench: writes ddp.json, ddp.md, ddp-logs/
#
# Phases, in priority order (a phase that would start after BUDGET_S seconds, default 540, is
# skipped and reported as such; every command runs under `timeout`):
#   exact     small GPT (4 x 256, T = 256) in f32 on CUDA, 50 steps, fp32 all-reduce: 1 GPU x 16
#             sequences vs 2 GPUs x 8 (plain) vs 2 GPUs x 8 (ZeRO-1): the same global batch, so the
#             loss curves must agree within float rounding (reported: the largest relative
#             difference); checkpoints at step 25 for the resume phase.
#   curves    GPT-2 124M, bf16, T = 1024, 50 steps, fp32 all-reduce: 1 GPU x 32 vs 2 GPUs x 16
#             (bf16 rounding: close, not equal); also the 1-GPU tokens/s and peak memory.
#   speed     GPT-2 124M, T = 1024, 32 sequences per GPU on 2 GPUs, 50 steps: plain data
#             parallelism and ZeRO-1 (tokens/s over steps 11-50, rank 0's peak memory: ZeRO-1's
#             must be lower); the ZeRO-1 run writes sharded checkpoints at step 25.
#   kill      rank 1 SIGKILLs itself at step 20 (SPARSEK_TEST_DIST_KILL): under `sparsek launch`
#             (exit 137, message naming rank 1) and started directly with the torchrun variables
#             (rank 0 must stop well within dist.timeout_s = 60, naming rank 1).
#   resume    2 -> 1 GPU: the small f32 run's plain and ZeRO-1 checkpoints (step 25) resumed on 1 GPU
#             x 16 against the 2-GPU curves (steps 26-50); GPT-2 124M ZeRO-1 (2 x 32) checkpoint
#             resumed on 1 GPU x 64.
#   sparsek   SparseK (k = 512) + window 256 at T = 8192 on 2 GPUs, GPT-2 124M, 2 sequences per GPU,
#             20 steps: tokens/s, memory, the loss.
#   torch     PyTorch 1 GPU (train_peer.py), DDP and DDP + ZeroRedundancyOptimizer (ddp_peer.py) at
#             GPT-2 124M, T = 1024, 32 per GPU (SKIP_TORCH=1 skips).
# Data: $DATA (default the python-docs shards of scripts/data/python_docs.sh); when nothing
# matches, synthetic shards (a noisy repeating token pattern, so the loss falls) are written to
# the temporary directory. NCCL_NVLS_ENABLE=0 (NVLink multicast off) for everything.
# Environment: SPARSEK_BIN (./build/sparsek), OUT_DIR (docs/bench), BUDGET_S (540), DATA, SKIP_TORCH,
# EXTRA_SETS ("key=value ..." appended to every sparsek run; e.g. a dry run of the plumbing on a
# CPU machine with a fake nvidia-smi: EXTRA_SETS="train.device=cpu model.n_layer=1 ...").
set -u -o pipefail
cd "$(dirname "$0")/../.." || exit 2
export NCCL_NVLS_ENABLE=0
out="${OUT_DIR:-docs/bench}"
bin="${SPARSEK_BIN:-./build/sparsek}"
budget="${BUDGET_S:-540}"
tmp="$(mktemp -d /tmp/bench_ddp.XXXXXX)"
mkdir -p "$out"
t_start=$(date +%s)
elapsed() { echo $(( $(date +%s) - t_start )); }
log() { echo "[bench_ddp +$(elapsed)s] $*"; }
: > "$tmp/steps.tsv"

# run NAME LIMIT_S CMD...: runs CMD under timeout, output to $tmp/NAME.log; records rc and seconds.
run() {
  local name=$1 limit=$2
  shift 2
  local t0 t1 rc
  t0=$(date +%s.%N)
  timeout -k 15 "$limit" "$@" > "$tmp/$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(python3 -c "print(round($t1 - $t0, 2))")" >> "$tmp/steps.tsv"
  log "  $name: rc=$rc ($(tail -c 300 "$tmp/$name.log" | tail -n 1 | cut -c1-160))"
  return 0
}
# phase NAME: false (and recorded as skipped) once the budget is spent.
phase() {
  if [ "$(elapsed)" -ge "$budget" ]; then
    log "== $1: skipped (budget of ${budget}s spent)"
    printf '%s\tskipped\t0\n' "phase:$1" >> "$tmp/steps.tsv"
    return 1
  fi
  log "== $1"
  return 0
}

# ---- preflight
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "${ngpu:-0}" -lt 2 ]; then
  echo "bench_ddp: needs 2 GPUs, nvidia-smi lists ${ngpu:-0}" >&2
  exit 2
fi
if [ ! -x "$bin" ]; then
  echo "bench_ddp: no sparsek binary at $bin (scripts/build.sh, or set SPARSEK_BIN)" >&2
  exit 2
fi
"$bin" info > "$tmp/info.log" 2>&1 || true
data="${DATA:-data/python_docs/python_docs_train_*.bin}"
# shellcheck disable=SC2086
if ! ls $data > /dev/null 2>&1; then
  log "no shards match $data: writing synthetic shards"
  python3 - "$tmp/synth" <<'PY'
import os, random, struct, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True)
rng = random.Random(3)
for s in range(2):
    n = 4_000_000
    toks, t = [], 1
    for i in range(n):
        t = rng.randrange(50257) if rng.random() < 0.1 else (t * 31 + 7) % 50257
        toks.append(t)
    hdr = [20240520, 1, n] + [0] * 253
    with open(f"{d}/synth_train_{s:06d}.bin", "wb") as f:
        f.write(struct.pack("<256i", *hdr)); f.write(struct.pack(f"<{n}H", *toks))
PY
  data="$tmp/synth/synth_train_*.bin"
fi
log "data: $data; logs and runs in $tmp"

extra=()
for kv in ${EXTRA_SETS:-}; do extra+=(--set "$kv"); done
log "extra settings: ${EXTRA_SETS:-none}"
base=(--set "data.train=$data" --set data.val= --set eval.every=0 --set logging.every=1
      --set dist.reduce_dtype=f32 --set schedule.warmup_steps=10 --set dist.timeout_s=60)
small=(configs/gpt2-124m.json "${base[@]}" --set model.n_layer=4 --set model.n_head=4 --set model.n_embd=256
       --set model.block_size=256 --set train.seq_len=256 --set train.dtype=f32 --set train.device=cuda
       --set train.max_steps=50 --set checkpoint.every=25 --set checkpoint.keep=5)
gpt2=(configs/gpt2-124m.json "${base[@]}" --set train.seq_len=1024 --set train.max_steps=50 --set checkpoint.every=0)

# ---- must-show 2: the same global batch gives the same loss curve
if phase exact; then
  run exact_1gpu 90 "$bin" train "${small[@]}" --set train.batch_size=16 --set checkpoint.dir="$tmp/exact_1gpu" ${extra[@]+"${extra[@]}"}
  run exact_2gpu 90 "$bin" launch --nproc 2 --master-port 29511 "${small[@]}" --set train.batch_size=8 \
    --set checkpoint.dir="$tmp/exact_2gpu" ${extra[@]+"${extra[@]}"}
  run exact_2gpu_zero 90 "$bin" launch --nproc 2 --master-port 29512 "${small[@]}" --set train.batch_size=8 \
    --set dist.zero=1 --set checkpoint.dir="$tmp/exact_2gpu_zero" ${extra[@]+"${extra[@]}"}
fi
if phase curves; then
  run curves_1gpu 150 "$bin" train "${gpt2[@]}" --set train.batch_size=32 --set checkpoint.dir="$tmp/curves_1gpu" ${extra[@]+"${extra[@]}"}
  run curves_2gpu 150 "$bin" launch --nproc 2 --master-port 29513 "${gpt2[@]}" --set train.batch_size=16 \
    --set checkpoint.dir="$tmp/curves_2gpu" ${extra[@]+"${extra[@]}"}
fi
if phase speed; then
  run speed_ddp 150 "$bin" launch --nproc 2 --master-port 29514 "${gpt2[@]}" --set train.batch_size=32 \
    --set checkpoint.dir="$tmp/speed_ddp" ${extra[@]+"${extra[@]}"}
  run speed_zero 180 "$bin" launch --nproc 2 --master-port 29515 "${gpt2[@]}" --set train.batch_size=32 \
    --set dist.zero=1 --set checkpoint.every=25 --set checkpoint.dir="$tmp/speed_zero" ${extra[@]+"${extra[@]}"}
fi

# ---- must-show 3: a killed rank stops the job, named
if phase kill; then
  kill_cfg=("${small[@]}" --set train.batch_size=8 --set train.max_steps=100000 --set checkpoint.every=0)
  run kill_launch 120 env SPARSEK_TEST_DIST_KILL=1:20 "$bin" launch --nproc 2 --master-port 29516 "${kill_cfg[@]}" \
    --set checkpoint.dir="$tmp/kill_launch" ${extra[@]+"${extra[@]}"}
  # Directly (what torchrun / Slurm would run): each rank records when it ended.
  for r in 0 1; do
    ( RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29517 \
        SPARSEK_TEST_DIST_KILL=1:20 timeout -k 10 120 "$bin" train "${kill_cfg[@]}" \
        --set checkpoint.dir="$tmp/kill_direct" ${extra[@]+"${extra[@]}"} > "$tmp/kill_direct.rank$r.log" 2>&1
      echo "$? $(date +%s.%N)" > "$tmp/kill_direct.rank$r.end" ) &
  done
  wait
  log "  kill_direct: rank 0 $(cat "$tmp/kill_direct.rank0.end" 2>/dev/null), rank 1 $(cat "$tmp/kill_direct.rank1.end" 2>/dev/null)"
fi

# ---- must-show 4: a 2-GPU checkpoint resumes on 1 GPU
if phase resume; then
  for kind in exact_2gpu exact_2gpu_zero; do
    if [ -d "$tmp/$kind/step_0000025" ]; then
      run "resume_${kind}_to_1gpu" 90 "$bin" train "${small[@]}" --set train.batch_size=16 \
        --set train.resume="$tmp/$kind/step_0000025" --set checkpoint.dir="$tmp/resume_${kind}_to_1gpu" ${extra[@]+"${extra[@]}"}
    else
      log "  resume from $kind: no checkpoint at step 25 (that run failed)"
    fi
  done
  if [ -d "$tmp/speed_zero/step_0000025" ]; then
    run resume_gpt2_zero_to_1gpu 150 "$bin" train "${gpt2[@]}" --set train.batch_size=64 \
      --set train.resume="$tmp/speed_zero/step_0000025" --set checkpoint.dir="$tmp/resume_gpt2_zero_to_1gpu" ${extra[@]+"${extra[@]}"}
  fi
fi

# ---- SparseK + window at T = 8k on 2 GPUs
if phase sparsek; then
  run sparsek_8k 180 "$bin" launch --nproc 2 --master-port 29518 configs/gpt2-124m.json "${base[@]}" \
    --set attention.kind=sparsek --set attention.k=512 --set attention.window=256 --set model.block_size=8192 \
    --set train.seq_len=8192 --set train.batch_size=2 --set train.max_steps=20 --set checkpoint.every=0 \
    --set checkpoint.dir="$tmp/sparsek_8k" ${extra[@]+"${extra[@]}"}
fi

# ---- PyTorch
if [ "${SKIP_TORCH:-0}" != 1 ] && python3 -c "import torch" 2> /dev/null; then
  if phase torch; then
    run torch_1gpu 150 env PYTHONUNBUFFERED=1 python3 scripts/bench/train_peer.py --batch 32 --seq-len 1024 --steps 30 \
      --out "$tmp/torch_1gpu.json"
    run torch_ddp 150 env PYTHONUNBUFFERED=1 python3 scripts/bench/ddp_peer.py --nproc 2 --batch 32 --steps 30 \
      --port 29611 --out "$tmp/torch_ddp.json"
    run torch_ddp_zero 150 env PYTHONUNBUFFERED=1 python3 scripts/bench/ddp_peer.py --nproc 2 --zero --batch 32 \
      --steps 30 --port 29612 --out "$tmp/torch_ddp_zero.json"
  fi
else
  log "== torch: skipped (SKIP_TORCH=1 or no torch)"
fi

# ---- summary: ddp.json, ddp.md, the logs
mkdir -p "$out/ddp-logs"
cp "$tmp"/*.log "$tmp/steps.tsv" "$out/ddp-logs/" 2> /dev/null || true
for d in "$tmp"/*/; do
  [ -f "$d/metrics.jsonl" ] && cp "$d/metrics.jsonl" "$out/ddp-logs/$(basename "$d").metrics.jsonl"
done
python3 scripts/bench/report_ddp.py "$tmp" "$out" "${SPARSEK_COMMIT:-$(git rev-parse --short HEAD 2> /dev/null || echo unknown)}"
log "done in $(elapsed) s; $out/ddp.md, $out/ddp.json, $out/ddp-logs/ (runs kept in $tmp)"
