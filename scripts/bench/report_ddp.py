"""Summary of scripts/bench/bench_ddp.sh: reads the runs in TMP (metrics.jsonl of each run, the
logs, steps.tsv, the PyTorch peers' JSON), writes OUT/ddp.json and OUT/ddp.md with a verdict per
must-show. Every section tolerates missing or failed runs (it says so instead).
Usage: python3 report_ddp.py TMP OUT COMMIT
"""
import datetime
import json
import math
import os
import re
import sys

tmp, out, commit = sys.argv[1:4]


def metrics(name):
    path = os.path.join(tmp, name, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    recs = []
    for line in open(path):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if "loss" in r:
            recs.append(r)
    return recs


def losses(name):
    return {r["step"]: r["loss"] for r in metrics(name)}


def steady_tokens_per_s(name, first=10):
    """tokens/s between step `first` and the last step, from the cumulative rates of metrics.jsonl
    (rate_k = k * S / t_k, so t_k = k * S / rate_k; S cancels)."""
    recs = metrics(name)
    if not recs:
        return None
    s0 = recs[0]["step"] - 1  # a resumed run counts from its first step
    by = {r["step"] - s0: r["tokens_per_s"] for r in recs if r.get("tokens_per_s")}
    last = max(by)
    a = first if first in by and first < last else min(by)
    if a == last:
        return by[last]
    return (last - a) / (last / by[last] - a / by[a])


def peak_gib(name):
    v = [r.get("peak_mem_gib") for r in metrics(name) if r.get("peak_mem_gib") is not None]
    return max(v) if v else None


steps = {}
if os.path.exists(os.path.join(tmp, "steps.tsv")):
    for line in open(os.path.join(tmp, "steps.tsv")):
        parts = line.rstrip("\n").split("\t")
        if len(parts) == 3:
            steps[parts[0]] = {"rc": parts[1], "seconds": float(parts[2]) if parts[2] else None}


def log_text(name):
    p = os.path.join(tmp, name + ".log")
    return open(p, errors="replace").read() if os.path.exists(p) else ""


def status(name):
    s = steps.get(name)
    if s is None:
        return "not run"
    return "ok" if s["rc"] == "0" else f"rc {s['rc']}"


def compare(a, b, first=1):
    """Largest absolute and relative difference over the steps both have (>= first)."""
    common = sorted(k for k in a if k in b and k >= first)
    if not common:
        return None
    absd = max(abs(a[k] - b[k]) for k in common)
    rel = max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-12) for k in common)
    return {"steps": len(common), "first": common[0], "last": common[-1], "max_abs": absd, "max_rel": rel,
            "identical": all(a[k] == b[k] for k in common)}


def fmt(x, spec=".4g"):
    return "n/a" if x is None else format(x, spec)


R = {"date": datetime.date.today().isoformat(), "commit": commit, "steps": steps}
md = [f"# Data-parallel training on 2 GPUs (issue 9)", "",
      f"Date {R['date']}, commit {commit}; scripts/bench/bench_ddp.sh; NCCL_NVLS_ENABLE=0.", ""]

# ---- must-show 2a: the same global batch, the same curve
e1, e2, e2z = losses("exact_1gpu"), losses("exact_2gpu"), losses("exact_2gpu_zero")
c12, c2z, c1z = compare(e2, e1), compare(e2z, e2), compare(e2z, e1)
g1, g2 = losses("curves_1gpu"), losses("curves_2gpu")
cg = compare(g2, g1)
R["same_global_batch"] = {"small_f32": {"1gpu_vs_2gpu": c12, "2gpu_zero1_vs_2gpu": c2z, "2gpu_zero1_vs_1gpu": c1z,
                                        "runs": {k: status(k) for k in ("exact_1gpu", "exact_2gpu", "exact_2gpu_zero")}},
                          "gpt2_124m_bf16": {"1gpu_vs_2gpu": cg,
                                             "runs": {k: status(k) for k in ("curves_1gpu", "curves_2gpu")}}}
md += ["## Same global batch, same loss curve (fp32 all-reduce, 50 steps)", "",
       "| model | compared | steps | max abs diff | max rel diff | verdict |", "|---|---|---|---|---|---|"]
for label, c, bound in (("4 x 256, T 256, f32", c12, 1e-3), ("4 x 256, T 256, f32", c2z, 1e-3),
                        ("4 x 256, T 256, f32", c1z, 1e-3), ("GPT-2 124M, T 1024, bf16", cg, 5e-2)):
    what = {id(c12): "1 GPU x 16 vs 2 GPUs x 8", id(c2z): "2 x 8 ZeRO-1 vs 2 x 8 plain",
            id(c1z): "2 x 8 ZeRO-1 vs 1 x 16", id(cg): "1 GPU x 32 vs 2 GPUs x 16"}[id(c)]
    if c is None:
        md.append(f"| {label} | {what} | - | - | - | no data (runs: see ddp-logs) |")
    else:
        verdict = "identical" if c["identical"] else ("within rounding" if c["max_rel"] <= bound else "DIFFERS")
        md.append(f"| {label} | {what} | {c['steps']} | {c['max_abs']:.3g} | {c['max_rel']:.3g} | {verdict} (bound {bound:g}) |")
if g1 and g2:
    md += ["", "GPT-2 124M loss by step:", "", "| step | 1 GPU x 32 | 2 GPUs x 16 | diff |", "|---|---|---|---|"]
    md += [f"| {k} | {g1[k]:.4f} | {g2[k]:.4f} | {g2[k] - g1[k]:+.4f} |" for k in sorted(g1) if k in g2
           and (k in (1, 5) or k % 10 == 0)]
md.append("")

# ---- must-show 2b: throughput and memory
speed = {
    "sparsek_1gpu_32": {"tokens_per_s": steady_tokens_per_s("curves_1gpu"), "peak_gib": peak_gib("curves_1gpu")},
    "sparsek_2gpu_ddp_32": {"tokens_per_s": steady_tokens_per_s("speed_ddp"), "peak_gib": peak_gib("speed_ddp")},
    "sparsek_2gpu_zero1_32": {"tokens_per_s": steady_tokens_per_s("speed_zero"), "peak_gib": peak_gib("speed_zero")},
}
torch = {}
for k in ("torch_1gpu", "torch_ddp", "torch_ddp_zero"):
    p = os.path.join(tmp, k + ".json")
    try:
        torch[k] = json.load(open(p))
        torch[k].pop("losses", None)
    except (OSError, ValueError):
        torch[k] = {"error": status(k)}
R["speed"] = {"sparsek": speed, "pytorch": torch}
md += ["## Throughput and memory: GPT-2 124M, T = 1024, 32 sequences per GPU", "",
       "tokens/s over all GPUs (sparsek: steps 11-50 from metrics.jsonl; PyTorch: median step); peak memory of rank 0.", "",
       "| system | GPUs | tokens/s | peak GiB |", "|---|---|---|---|"]
for label, g, x in (("sparsek", 1, speed["sparsek_1gpu_32"]), ("sparsek DDP", 2, speed["sparsek_2gpu_ddp_32"]),
                    ("sparsek ZeRO-1", 2, speed["sparsek_2gpu_zero1_32"])):
    md.append(f"| {label} | {g} | {fmt(x['tokens_per_s'], '.0f')} | {fmt(x['peak_gib'], '.2f')} |")
for label, g, k, mk in (("PyTorch", 1, "torch_1gpu", "peak_mem_gib"), ("PyTorch DDP", 2, "torch_ddp", "peak_mem_gib_rank0"),
                        ("PyTorch DDP + ZeRO-1", 2, "torch_ddp_zero", "peak_mem_gib_rank0")):
    x = torch[k]
    md.append(f"| {label} | {g} | {fmt(x.get('tokens_per_s'), '.0f')} | {fmt(x.get(mk), '.2f')} |"
              + ("" if "tokens_per_s" in x else f" ({x.get('error', 'failed')})"))
t1, t2 = speed["sparsek_1gpu_32"]["tokens_per_s"], speed["sparsek_2gpu_ddp_32"]["tokens_per_s"]
if t1 and t2:
    md += ["", f"sparsek 2-GPU scaling: {t2 / t1:.2f}x of 1 GPU"]
pd, pz = speed["sparsek_2gpu_ddp_32"]["peak_gib"], speed["sparsek_2gpu_zero1_32"]["peak_gib"]
if pd and pz:
    verdict = "lower" if pz < pd else "NOT lower"
    md += [f"ZeRO-1 peak memory {pz:.2f} GiB vs plain DDP {pd:.2f} GiB: {verdict}"]
    R["speed"]["zero1_peak_below_ddp"] = pz < pd
md.append("")

# ---- must-show 3: a killed rank
kl = log_text("kill_launch")
m = re.search(r"launch: (rank \d+ \(pid \d+\) [^;\n]*)", kl)
kill = {"launch": {"rc": steps.get("kill_launch", {}).get("rc"), "seconds": steps.get("kill_launch", {}).get("seconds"),
                   "message": m.group(1) if m else None}}
try:
    rc0, end0 = open(os.path.join(tmp, "kill_direct.rank0.end")).read().split()
    rc1, end1 = open(os.path.join(tmp, "kill_direct.rank1.end")).read().split()
    r0 = log_text("kill_direct.rank0")
    named = [l for l in r0.splitlines() if "rank 1" in l and ("error" in l or "closed" in l or "abort" in l)]
    kill["direct"] = {"rank0_rc": int(rc0), "rank1_rc": int(rc1),
                      "rank0_stopped_s_after_rank1": round(float(end0) - float(end1), 2),
                      "rank0_message": named[-1] if named else None}
except (OSError, ValueError):
    kill["direct"] = {"error": "no result"}
R["kill"] = kill
md += ["## A killed rank (rank 1 SIGKILLs itself at step 20; dist.timeout_s = 60)", ""]
lk = kill["launch"]
md.append(f"- `sparsek launch`: exit {lk['rc']} after {fmt(lk['seconds'], '.1f')} s; message: `{lk['message']}`"
          + (" (names rank 1)" if lk["message"] and lk["message"].startswith("rank 1 ") else " (DOES NOT name rank 1)"))
dk = kill["direct"]
if "error" in dk:
    md.append("- direct (torchrun variables): no result")
else:
    md.append(f"- direct (torchrun variables): rank 0 exited {dk['rank0_rc']}, "
              f"{dk['rank0_stopped_s_after_rank1']} s after rank 1 died; message: `{dk['rank0_message']}`")
md.append("")

# ---- must-show 4: 2 -> 1 GPU resume
res = {}
for name, ref2, ref1 in (("resume_exact_2gpu_to_1gpu", e2, e1), ("resume_exact_2gpu_zero_to_1gpu", e2z, e1),
                         ("resume_gpt2_zero_to_1gpu", losses("speed_zero"), None)):
    r = losses(name)
    res[name] = {"run": status(name), "vs_2gpu": compare(r, ref2, 26), "vs_1gpu": compare(r, ref1, 26) if ref1 else None}
R["resume"] = res
md += ["## 2 -> 1 GPU resume (checkpoint at step 25, steps 26-50 compared)", "",
       "| checkpoint | run | vs the 2-GPU run (max rel) | vs 1 GPU uninterrupted (max rel) |", "|---|---|---|---|"]
for name, x in res.items():
    md.append(f"| {name} | {x['run']} | {fmt(x['vs_2gpu'] and x['vs_2gpu']['max_rel'], '.3g')} | "
              f"{fmt(x['vs_1gpu'] and x['vs_1gpu']['max_rel'], '.3g')} |")
md.append("")

# ---- SparseK at 8k
sk = metrics("sparsek_8k")
R["sparsek_8k"] = {"run": status("sparsek_8k"), "steps": len(sk), "tokens_per_s": steady_tokens_per_s("sparsek_8k", 5),
                   "peak_gib": peak_gib("sparsek_8k"), "first_loss": sk[0]["loss"] if sk else None,
                   "last_loss": sk[-1]["loss"] if sk else None}
x = R["sparsek_8k"]
md += ["## SparseK (k 512) + window 256, T = 8192, GPT-2 124M, 2 GPUs x 2 sequences", "",
       f"{x['run']}; {x['steps']} steps; {fmt(x['tokens_per_s'], '.0f')} tokens/s (steps 6-); peak {fmt(x['peak_gib'], '.2f')} GiB; "
       f"loss {fmt(x['first_loss'])} -> {fmt(x['last_loss'])}", ""]

md += ["## Steps", "", "| step | rc | seconds |", "|---|---|---|"]
md += [f"| {k} | {v['rc']} | {fmt(v['seconds'], '.1f')} |" for k, v in steps.items()]

os.makedirs(out, exist_ok=True)
json.dump(R, open(os.path.join(out, "ddp.json"), "w"), indent=2, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o))
open(os.path.join(out, "ddp.md"), "w").write("\n".join(md) + "\n")
print("\n".join(md))
