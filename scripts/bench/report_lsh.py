#!/usr/bin/env python3
"""Merges `sparsek bench lsh` JSON and scripts/bench/lsh_peer.py JSON into one JSON and a markdown
table (docs/bench/lsh.md): per T, ours fwd+bwd ms, SDPA flash (full causal) ms, HF LSHSelfAttention
ms (its faster dtype), speedups, and our useful TFLOP/s (LSH cost model: lsh_keys_attended keys per
sequence, 4 B H D keys FLOPs forward, 3.5x for forward + backward)."""
import argparse
import json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("peer")
    ap.add_argument("--json-out", required=True)
    ap.add_argument("--md-out", required=True)
    ap.add_argument("--commit", default="unknown")
    a = ap.parse_args()
    ours, peer = json.load(open(a.ours)), json.load(open(a.peer))
    sdpa = {r["T"]: r for r in peer["results"] if r["system"] == "sdpa_flash" and "fwd_bwd_ms" in r}
    hf = {}
    for r in peer["results"]:
        if r["system"] == "hf_lsh" and "fwd_bwd_ms" in r:
            if r["T"] not in hf or r["fwd_bwd_ms"] < hf[r["T"]]["fwd_bwd_ms"]:
                hf[r["T"]] = r
    rows = []
    for r in ours["results"]:
        T = r["T"]
        row = {"T": T, "B": r["B"], "n_buckets": r["n_buckets"], "ours_fwd_ms": r["fwd_ms"],
               "ours_fwd_bwd_ms": r["fwd_bwd_ms"], "ours_layout_ms": r["layout_ms"],
               "ours_fwd_bwd_tflops": r["fwd_bwd_tflops"]}
        if T in sdpa:
            row["sdpa_flash_fwd_bwd_ms"] = sdpa[T]["fwd_bwd_ms"]
            row["speedup_vs_sdpa_flash"] = sdpa[T]["fwd_bwd_ms"] / r["fwd_bwd_ms"]
        if T in hf:
            row["hf_lsh_fwd_bwd_ms"] = hf[T]["fwd_bwd_ms"]
            row["hf_lsh_dtype"] = hf[T]["dtype"]
            row["speedup_vs_hf_lsh"] = hf[T]["fwd_bwd_ms"] / r["fwd_bwd_ms"]
        rows.append(row)
    doc = {"commit": a.commit, "device": ours.get("device"), "tokens": ours.get("tokens"),
           "peer_versions": peer.get("versions"), "rows": rows, "ours": ours, "peer": peer}
    json.dump(doc, open(a.json_out, "w"), indent=2)

    def f(x, fmt="{:.3f}"):
        return fmt.format(x) if isinstance(x, (int, float)) else "-"

    lines = [f"# LSH attention: forward + backward, {ours.get('tokens')} tokens per batch",
             "",
             f"Device {ours.get('device')}, commit {a.commit}, bf16, 12 heads x 64, n_hashes 2, chunk 128, "
             "n_buckets = lsh_default_buckets(T, 128); median of "
             f"{ours.get('iters')} runs (CUDA events, L2 flushed). SDPA flash = full causal attention; HF = "
             "transformers LSHSelfAttention (includes its q/k and v projections), its faster dtype. "
             "Written by scripts/bench/bench_lsh.sh.",
             "",
             "| T | B | NB | ours ms | of which layout ms | SDPA flash ms | HF LSH ms (dtype) | vs SDPA | vs HF | ours TFLOP/s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        hf_cell = f(r.get("hf_lsh_fwd_bwd_ms")) + (f" ({r['hf_lsh_dtype']})" if "hf_lsh_dtype" in r else "")
        lines.append(f"| {r['T']} | {r['B']} | {r['n_buckets']} | {f(r['ours_fwd_bwd_ms'])} | {f(r['ours_layout_ms'])} | "
                     f"{f(r.get('sdpa_flash_fwd_bwd_ms'))} | {hf_cell} | {f(r.get('speedup_vs_sdpa_flash'), '{:.2f}x')} | "
                     f"{f(r.get('speedup_vs_hf_lsh'), '{:.1f}x')} | {f(r['ours_fwd_bwd_tflops'], '{:.1f}')} |")
    errors = [r for r in peer["results"] if "error" in r]
    if errors:
        lines += ["", "Peer cases that failed:"] + [f"- {r['system']} T {r['T']} {r.get('dtype')}: {r['error']}" for r in errors]
    open(a.md_out, "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
