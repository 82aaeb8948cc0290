#!/usr/bin/env python3
"""Merges `sparsek bench attention` JSON with the PyTorch peers' (attention_peer.py) into one JSON
and a markdown table: per head dim and T, our fwd and fwd+bwd times next to SDPA flash, cuDNN and
FlexAttention (sliding window), with the speed ratio (peer time / our time; > 1 means we are faster)
and useful TFLOP/s (FlashAttention's convention, keys attended per query). SparseK rows (kind
"sparsek") get their own table: selection, forward and forward+backward times, the selection's share,
and the ratio against the same run's SDPA flash full causal fwd+bwd at the same T and head dim."""
import argparse
import datetime
import json


def keys_attended(T, window):
    if window <= 0:
        return T * T / 2.0
    return sum(min(i + 1, window) for i in range(T))


def sparsek_keys_attended(T, k, window):
    """Keys attended summed over the queries (src/attention/sparsek/sparsek_reference.cpp)."""
    return sum(min(window, i + 1) + min(k, max(0, i - window + 1)) for i in range(T))


def sparsek_section(rows, peers):
    """Markdown lines and merged entries of the SparseK rows; ratio = SDPA flash full fwd+bwd / ours."""
    lines = ["## sparsek (selection + forward + backward, gate_values)", "",
             "select = selection pass + candidate lists; fwd = select + forward kernel; fwd+bwd = select + forward "
             "+ backward (what a training step pays). Ratio = sdpa_flash full causal fwd+bwd ms / sparsek fwd+bwd ms "
             "at the same T (> 1: sparsek faster).", "",
             "| D | H | T | k | w | select ms | fwd kernel ms | fwd ms | fwd+bwd ms (TFLOP/s) | select share | "
             "sdpa_flash full fwd+bwd ms | ratio fwd+bwd |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    merged = []
    for r in sorted(rows, key=lambda r: (r["head_dim"], r["k"], r["window"], r["T"])):
        fl = 3.5 * 4.0 * r["B"] * r["heads"] * r["head_dim"] * sparsek_keys_attended(r["T"], r["k"], r["window"])
        row = (f"| {r['head_dim']} | {r['heads']} | {r['T']} | {r['k']} | {r['window']} | {r['select_ms']:.3f} | "
               f"{r['fwd_kernel_ms']:.3f} | {r['fwd_ms']:.3f} | {r['fwd_bwd_ms']:.3f} ({fl / (r['fwd_bwd_ms'] * 1e9):.0f}) | "
               f"{100 * r['select_ms'] / r['fwd_bwd_ms']:.1f}% |")
        entry = dict(r)
        p = peers.get((r["head_dim"], r["T"], 0), {}).get("sdpa_flash")
        if p is None:
            row += " n/a | |"
        else:
            ratio = p["fwd_bwd_ms"] / r["fwd_bwd_ms"]
            row += f" {p['fwd_bwd_ms']:.3f} | {ratio:.2f} |"
            entry["sdpa_flash"] = {"fwd_bwd_ms": p["fwd_bwd_ms"], "ratio_fwd_bwd": ratio}
        lines.append(row)
        merged.append(entry)
    return lines + [""], merged


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
    failed = [r for r in ours["results"] if "error" in r]  # cases `bench attention` could not run
    mine = {key(r): r for r in ours["results"] if r.get("kind") != "sparsek" and "error" not in r}
    sparsek_rows = [r for r in ours["results"] if r.get("kind") == "sparsek"]
    peers = {}
    for r in peer["results"]:
        peers.setdefault(key(r), {})[r["system"]] = r

    def tf(r, ms, mult):
        return mult * 4.0 * r["B"] * r["heads"] * r["head_dim"] * keys_attended(r["T"], r["window"]) / (ms * 1e9)

    lines = [f"# Attention benchmark: sparsek vs PyTorch on {ours['device']}", "",
             f"Date {date}, commit {a.commit}, torch {peer.get('torch')}, cuDNN {peer.get('cudnn')}; bf16, "
             f"{ours['tokens']} tokens per batch, 12 heads x 64 or 6 heads x 128, causal; median of "
             f"{ours['iters']} runs (CUDA events, L2 flushed)"
             + (f", each case after {ours['rest_ms']} ms of idle GPU (ours and the peers')" if ours.get("rest_ms") else "")
             + ". Ratio = peer ms / sparsek ms (> 1: sparsek faster). "
             "TFLOP/s: useful FLOPs (4 B H D x keys attended; fwd+bwd 3.5x).", ""]
    merged = []
    windows = sorted({r["window"] for r in mine.values() if r["window"] > 0})
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
    if sparsek_rows:
        sk_lines, sk_merged = sparsek_section(sparsek_rows, peers)
        lines += sk_lines
        merged += sk_merged
    if failed:
        lines += ["## cases that did not run", ""] + [
            f"- D {r['head_dim']} T {r['T']} window {r['window']}: {r['error']}" for r in failed] + [""]
    json.dump({"date": date, "commit": a.commit, "device": ours["device"], "torch": peer.get("torch"),
               "results": merged, "failed": failed}, open(a.json_out, "w"), indent=2)
    open(a.md_out, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
