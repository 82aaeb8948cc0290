#!/usr/bin/python3
"""Plots of a comparison grid (PNG) from the results.json `sparsek compare` writes.

    scripts/plot_compare.py RESULTS [--out DIR]

RESULTS is a results.json or the grid's out_dir holding one. Writes into DIR (default: the
results' directory):
  val_loss_vs_tokens.png  validation loss against training tokens, one panel per context length T,
                          one colour per kind (each seed a line)
  ppl_vs_context.png      validation perplexity at the training length against T per kind (mean
                          of the seeds' losses, bars: the seeds' min..max); dashed: other lengths
  throughput_vs_context.png  training tokens/s against T per kind (mean over seeds)
  passkey_vs_distance.png    passkey accuracy against distance, one panel per T (when probed)
Prints the files written. Needs Debian's python3-matplotlib (run under /usr/bin/python3).
Test: tests/scripts/test_plot_compare.py (ctest PlotCompare.png).
"""
import argparse
import json
import math
import os
import sys


def load(path):
    if os.path.isdir(path):
        path = os.path.join(path, "results.json")
    try:
        with open(path, encoding="utf-8") as f:
            return path, json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"plot_compare: {path}: {e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    path, r = load(a.results)
    for key in ("cells", "summary"):
        if key not in r:
            sys.exit(f"plot_compare: {path}: no '{key}' (not a sparsek compare results.json)")
    out = a.out or os.path.dirname(os.path.abspath(path))
    os.makedirs(out, exist_ok=True)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = []
    for s in r["summary"]:
        if s["kind"] not in kinds:
            kinds.append(s["kind"])
    Ts = sorted({s["T"] for s in r["summary"]})
    colour = {k: plt.get_cmap("tab10")(i % 10) for i, k in enumerate(kinds)}
    written = []

    def style(ax, xlabel, ylabel, title=None):
        if title:
            ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=8)

    def save(fig, name):
        fig.tight_layout()
        written.append(os.path.join(out, name))
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)

    # 1. Validation loss vs tokens.
    fig, axes = plt.subplots(1, len(Ts), figsize=(5 * len(Ts), 4), squeeze=False)
    for ax, T in zip(axes[0], Ts):
        for c in r["cells"]:
            if c["T"] != T or "train" not in c or "val_curve" not in c["train"]:
                continue
            curve = c["train"]["val_curve"]
            if not curve:
                continue
            first = not any(line.get_label() == c["kind"] for line in ax.get_lines())
            ax.plot([p["tokens"] / 1e6 for p in curve], [p["val_loss"] for p in curve], color=colour[c["kind"]],
                    marker=".", label=c["kind"] if first else "_nolegend_", alpha=0.85)
        style(ax, "training tokens (M)", "validation loss", f"T = {T}")
    save(fig, "val_loss_vs_tokens.png")

    # 2. Perplexity vs context length; 3. throughput vs context length.
    def per_kind(field):
        rows = {}
        for s in r["summary"]:
            v = s.get(field)
            if v is None:
                continue
            rows.setdefault(s["kind"], []).append((s["T"], v))
        return rows

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for k, pts in per_kind("val_loss").items():
        pts.sort()
        xs = [t for t, _ in pts]
        ys = [math.exp(v["mean"]) for _, v in pts]
        lo = [y - math.exp(v["min"]) for y, (_, v) in zip(ys, pts)]
        hi = [math.exp(v["max"]) - y for y, (_, v) in zip(ys, pts)]
        ax.errorbar(xs, ys, yerr=[lo, hi], color=colour[k], marker="o", capsize=3, label=k)
    for s in r["summary"]:
        for L, v in (s.get("val_loss_at") or {}).items():
            ax.plot([s["T"], int(L)], [math.exp(s["val_loss"]["mean"]), math.exp(v["mean"])], color=colour[s["kind"]],
                    linestyle="--", marker="x", alpha=0.7)
    ax.set_xscale("log", base=2)
    style(ax, "context length T (training = evaluation)", "validation perplexity")
    save(fig, "ppl_vs_context.png")

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for k, pts in per_kind("tokens_per_s").items():
        pts.sort()
        ax.plot([t for t, _ in pts], [v["mean"] / 1e3 for _, v in pts], color=colour[k], marker="o", label=k)
    ax.set_xscale("log", base=2)
    style(ax, "context length T", "training throughput (k tokens/s)")
    save(fig, "throughput_vs_context.png")

    # 4. Passkey accuracy vs distance.
    if any(s.get("passkey") for s in r["summary"]):
        fig, axes = plt.subplots(1, len(Ts), figsize=(5 * len(Ts), 4), squeeze=False)
        for ax, T in zip(axes[0], Ts):
            for s in r["summary"]:
                if s["T"] != T or not s.get("passkey"):
                    continue
                pts = sorted((p["distance"], p["accuracy"]["mean"]) for p in s["passkey"])
                ax.plot([d for d, _ in pts], [acc for _, acc in pts], color=colour[s["kind"]], marker="o", label=s["kind"])
            ax.set_xscale("log")
            ax.set_ylim(-0.05, 1.05)
            style(ax, "distance (tokens)", "passkey accuracy", f"T = {T}")
        save(fig, "passkey_vs_distance.png")
    for w in written:
        print(w)


if __name__ == "__main__":
    main()
