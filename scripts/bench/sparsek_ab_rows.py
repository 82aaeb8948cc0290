#!/usr/bin/env python3
"""The SparseK rows of `sparsek bench attention --sparsek-only` JSONs as one table: per variant and T,
select / forward kernel / fwd+bwd ms and the backward (fwd+bwd - fwd). Shared by the SparseK A/B
device scripts (sparsek_select_ab.sh, sparsek_kernels_call.sh); a missing or unreadable JSON is
reported as a row, not an error, so one failed variant does not hide the others.
  sparsek_ab_rows.py [--header] LABEL=FILE [LABEL=FILE ...]"""
import json
import sys

args = sys.argv[1:]
if args and args[0] == "--header":
    args = args[1:]
    print("variant | T | select ms | fwd kernel ms | fwd+bwd ms (bwd = fwd+bwd - fwd)")
for arg in args:
    label, _, path = arg.rpartition("=")
    try:
        rows = [r for r in json.load(open(path))["results"] if r.get("kind") == "sparsek"]
    except Exception as e:  # a variant that crashed or timed out
        print(f"{label} | no result ({e})")
        continue
    for r in rows:
        print(f"{label} | {r['T']} | {r['select_ms']:.3f} | {r['fwd_kernel_ms']:.3f} | {r['fwd_bwd_ms']:.3f} "
              f"(bwd {r['fwd_bwd_ms'] - r['fwd_ms']:.3f})")
