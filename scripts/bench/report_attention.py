#!/usr/bin/env python3
"""Merges `sparsek bench attention` JSON with the PyTorch peers' (attention_peer.py) into one JSON
and a markdown table: per head dim and T, our fwd and fwd+bwd times next to SDPA flash, cuDNN and
FlexAttention (sliding window), with the speed ratio (peer time / our time; > 1 means we are faster)
and useful TFLOP/s (FlashAttention's convention, keys attended per query)."""
import argparse
import datetime
import json


def keys_attended(T, window):
    if window <= 0:
        return T * T / 2.0
    return sum(min(i + 1, window) for i in range(T))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("peer")
    ap.add_argument("--json-out", required=True)
    ap.add_argument("--md-out", required=True)
    ap.add_argument("--commit", default="unknown")
    a = ap.parse_args()
    ours, peer = json.load(open(a.ours)), json.load(open(a.peer))
    date = datetime.date.today().isoformat()
    key = lambda r: (r["head_dim"], r["T"], r["window"])
    mine = {key(r): r for r in ours["results"]}
    peers = {}
    for r in peer["results"]:
        peers.setdefault(key(r), {})[r["system"]] = r

    def tf(r, ms, mult):
        return mult * 4.0 * r["B"] * r["heads"] * r["head_dim"] * keys_attended(r["T"], r["window"]) / (ms * 1e9)

    lines = [f"# Attention benchmark: sparsek vs PyTorch on {ours['device']}", "",
             f"Date {date}, commit {a.commit}, torch {peer.get('torch')}, cuDNN {peer.get('cudnn')}; bf16, "
             f"{ours['tokens']} tokens per batch, 12 heads x 64 or 6 heads x 128, causal; median of "
             f"{ours['iters']} runs (CUDA events, L2 flushed). Ratio = peer ms / sparsek ms (> 1: sparsek faster). "
             "TFLOP/s: useful FLOPs (4 B H D x keys attended; fwd+bwd 3.5x).", ""]
    merged = []
    windows = sorted({r["window"] for r in ours["results"] if r["window"] > 0})
    sections = [("full", 0, ("sdpa_flash", "sdpa_cudnn"))] + [("sliding_window", w, ("flex_attention",)) for w in windows]
    for kind, window, systems in sections:
        lines += [f"## {kind}" + (f" (window {window})" if window else ""), ""]
        hdr = "| D | T | sparsek fwd ms | sparsek fwd+bwd ms (TFLOP/s) |"
        sep = "|---|---|---|---|"
        for s in systems:
            hdr += f" {s} fwd+bwd ms | ratio fwd | ratio fwd+bwd |"
            sep += "---|---|---|"
        lines += [hdr, sep]
        for (D, T, w), r in sorted(mine.items()):
            if w != window:
                continue
            row = f"| {D} | {T} | {r['fwd_ms']:.3f} | {r['fwd_bwd_ms']:.3f} ({tf(r, r['fwd_bwd_ms'], 3.5):.0f}) |"
            entry = dict(r)
            for s in systems:
                p = peers.get((D, T, w), {}).get(s)
                if p is None:
                    row += " n/a | | |"
                    continue
                rf, rfb = p["fwd_ms"] / r["fwd_ms"], p["fwd_bwd_ms"] / r["fwd_bwd_ms"]
                row += f" {p['fwd_bwd_ms']:.3f} | {rf:.2f} | {rfb:.2f} |"
                entry[s] = {"fwd_ms": p["fwd_ms"], "fwd_bwd_ms": p["fwd_bwd_ms"], "ratio_fwd": rf, "ratio_fwd_bwd": rfb}
            lines.append(row)
            merged.append(entry)
        lines.append("")
    json.dump({"date": date, "commit": a.commit, "device": ours["device"], "torch": peer.get("torch"),
               "results": merged}, open(a.json_out, "w"), indent=2)
    open(a.md_out, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
