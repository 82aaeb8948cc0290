#!/usr/bin/python3
"""Loss and perplexity curves (PNG) from the JSONL metrics of one or several `sparsek train` runs.

    scripts/plot_metrics.py RUN [RUN ...] [--out curves.png] [--labels a,b] [--smooth N]

RUN is a metrics file (checkpoint.dir/metrics.jsonl, one JSON record per optimizer step with
"step", "loss", and "val_loss"/"val_ppl" on evaluation steps) or a run directory holding
metrics.jsonl. Left panel: training loss (a moving average over N steps when --smooth is given,
the raw values faint) and validation loss; right panel: validation perplexity (log scale) and
exp(training loss). Prints a one-line summary per run. Needs Debian's python3-matplotlib (the
script runs under /usr/bin/python3, which is where Debian installs it).
Test: tests/scripts/test_plot_metrics.py (ctest PlotMetrics.png).
"""
import argparse
import json
import math
import os
import sys


def read_run(path):
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    steps, loss, vsteps, vloss = [], [], [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"plot_metrics: {path}:{n}: not JSON ({e})")
            if "step" not in r:
                continue
            if "loss" in r:
                steps.append(r["step"])
                loss.append(r["loss"])
            if "val_loss" in r:
                vsteps.append(r["step"])
                vloss.append(r["val_loss"])
    if not steps and not vsteps:
        sys.exit(f"plot_metrics: {path} has no records with 'step' and 'loss'")
    return path, steps, loss, vsteps, vloss


def moving_average(xs, n):
    if n <= 1:
        return xs
    out, acc = [], 0.0
    for i, x in enumerate(xs):
        acc += x
        if i >= n:
            acc -= xs[i - n]
        out.append(acc / min(i + 1, n))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="metrics.jsonl files or run directories")
    ap.add_argument("--out", default="metrics.png", help="PNG file to write (default metrics.png)")
    ap.add_argument("--labels", default="", help="comma-separated legend labels (default: the paths)")
    ap.add_argument("--smooth", type=int, default=1, help="moving average of the training loss over N steps")
    ap.add_argument("--title", default="", help="figure title")
    args = ap.parse_args()
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_metrics: matplotlib is missing: apt-get install python3-matplotlib (for /usr/bin/python3)")

    labels = [s for s in args.labels.split(",")] if args.labels else []
    if labels and len(labels) != len(args.runs):
        sys.exit(f"plot_metrics: {len(labels)} labels for {len(args.runs)} runs")
    fig, (ax_loss, ax_ppl) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, run in enumerate(args.runs):
        path, steps, loss, vsteps, vloss = read_run(run)
        label = labels[i] if labels else os.path.dirname(path) or path
        c = colors[i % len(colors)]
        if steps:
            if args.smooth > 1:
                ax_loss.plot(steps, loss, color=c, alpha=0.25, linewidth=0.8)
            ax_loss.plot(steps, moving_average(loss, args.smooth), color=c, label=f"{label} train")
            ax_ppl.plot(steps, [math.exp(min(x, 50)) for x in moving_average(loss, args.smooth)], color=c, alpha=0.4,
                        label=f"{label} exp(train loss)")
        if vsteps:
            ax_loss.plot(vsteps, vloss, color=c, linestyle="--", marker="o", markersize=3, label=f"{label} val")
            ax_ppl.plot(vsteps, [math.exp(min(x, 50)) for x in vloss], color=c, linestyle="--", marker="o",
                        markersize=3, label=f"{label} val perplexity")
        best = f", best val loss {min(vloss):.4f} (perplexity {math.exp(min(vloss)):.2f})" if vloss else ""
        last = f"last step {steps[-1]}, train loss {loss[-1]:.4f}" if steps else f"last step {vsteps[-1]}"
        print(f"{label}: {last}{best}")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss (nats/token)")
    ax_loss.set_title("loss")
    ax_ppl.set_xlabel("step")
    ax_ppl.set_ylabel("perplexity")
    ax_ppl.set_yscale("log")
    ax_ppl.set_title("perplexity")
    for ax in (ax_loss, ax_ppl):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
