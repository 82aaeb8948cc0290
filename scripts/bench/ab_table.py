#!/usr/bin/env python3
"""One markdown table (fwd / fwd+bwd ms per kind, head dim and T) from `sparsek bench attention`
JSONs of alternating runs of several binaries or settings: OUT/ab-NAME-RUN.json, RUN 1 and 2.
Used by device calls that A/B two builds of a kernel in one call (docs/perf-notes.md).
  ab_table.py OUT NAME [NAME ...]"""
import collections
import json
import sys

out, names = sys.argv[1], sys.argv[2:]
rows = collections.defaultdict(dict)
for name in names:
    for run in (1, 2):
        for r in json.load(open(f"{out}/ab-{name}-{run}.json"))["results"]:
            rows[(r["kind"], r["head_dim"], r["T"])][f"{name}-{run}"] = f'{r["fwd_ms"]:.3f} / {r["fwd_bwd_ms"]:.3f}'
cols = [f"{name}-{run}" for name in names for run in (1, 2)]
print("| kind | D | T | " + " | ".join(cols) + " |")
print("|---" * (3 + len(cols)) + "|")
for key, cells in sorted(rows.items()):
    print(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells.get(c, "-") for c in cols) + " |")
