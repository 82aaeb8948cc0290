#!/usr/bin/env python3
"""Reads an ncu CSV log of `--metrics gpu__time_duration.sum --csv` and prints every kernel's
launch durations in ms, in one of three layouts (one parser for all the profile scripts):
  --layout order      one line per kernel: its launches' durations in launch order (default)
  --layout mean       one line per kernel, slowest mean first: mean ms per launch and launch count
  --layout per-step   the --steps profiled steps' kernels summed: ms and launches per step, top 45
  ncu_durations.py CSV [--layout L] [--steps N] [--title TEXT] [--name-width W] [--max-launches M]
"""
import argparse
import collections
import csv
import sys


def read_durations(path):
    """{kernel name: [ms per launch, in launch order]}."""
    lines = open(path).read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
    if start is None:
        sys.exit(f"ncu_durations.py: no CSV table (a line starting with \"ID\") in {path}")
    runs = collections.OrderedDict()
    for r in csv.DictReader(lines[start:]):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = float(r["Metric Value"].replace(",", ""))
        scale = {"nsecond": 1e-6, "usecond": 1e-3, "msecond": 1.0}.get(r.get("Metric Unit", "nsecond"), 1e-6)
        runs.setdefault(r["Kernel Name"], []).append(value * scale)
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--layout", choices=["order", "mean", "per-step"], default="order")
    ap.add_argument("--steps", type=int, default=1, help="profiled steps (per-step layout)")
    ap.add_argument("--title", default="ncu durations in ms per launch")
    ap.add_argument("--name-width", type=int, default=100)
    ap.add_argument("--max-launches", type=int, default=0, help="order layout: launches shown per kernel (0: all)")
    ap.add_argument("--strip-args", action="store_true", help="drop the kernel's argument list from its name")
    a = ap.parse_args()
    runs = collections.OrderedDict()  # launches of kernels whose shown names agree are merged
    for name, ms in read_durations(a.csv).items():
        shown = (name.split("(")[0] if a.strip_args else name)[:a.name_width]
        runs.setdefault(shown, []).extend(ms)
    print(a.title)
    if a.layout == "order":
        for name, ms in runs.items():
            shown = ms[:a.max_launches] if a.max_launches else ms
            print(f"{name}: " + " ".join(f"{x:.3f}" for x in shown))
    elif a.layout == "mean":
        for name in sorted(runs, key=lambda n: -sum(runs[n]) / len(runs[n])):
            ms = runs[name]
            print(f"{sum(ms) / len(ms):8.4f} ms x{len(ms):4d}  {name}")
    else:
        total = sum(sum(ms) for ms in runs.values())
        print(f"per step (of {a.steps} profiled): {total / a.steps:.2f} ms of kernels")
        for name in sorted(runs, key=lambda n: -sum(runs[n]))[:45]:
            ms = runs[name]
            print(f"{sum(ms) / a.steps:8.3f} ms {len(ms) / a.steps:7.1f}x  {name}")


if __name__ == "__main__":
    main()
