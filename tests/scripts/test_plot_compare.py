#!/usr/bin/python3
"""ctest PlotCompare.png: scripts/plot_compare.py draws the four comparison plots from a synthetic
results.json (2 kinds x 2 context lengths x 2 seeds, with passkey results) and refuses a file that
is not a results.json. Exits 77 (ctest: skipped) when matplotlib is not installed."""
import json
import os
import subprocess
import sys
import tempfile

try:
    import matplotlib  # noqa: F401
except ImportError:
    print("matplotlib is not installed (apt-get install python3-matplotlib): skipped")
    sys.exit(77)

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
script = os.path.join(root, "scripts", "plot_compare.py")


def stats(v):
    return {"n": len(v), "mean": sum(v) / len(v), "sd": None, "min": min(v), "max": max(v)}


cells, summary = [], []
for T in (1024, 4096):
    for kind, off in (("full", 0.0), ("sparsek", 0.05)):
        losses = []
        for seed in (1, 2):
            curve = [{"step": s, "tokens": s * 1000.0, "val_loss": 5 - s / 10 + off + seed / 100} for s in (4, 8, 12)]
            cells.append({"id": f"{kind}_T{T}_s{seed}", "kind": kind, "T": T, "seed": seed, "status": "done",
                          "train": {"val_curve": curve, "tokens_per_s": 1e5 / (1 + off)}})
            losses.append(curve[-1]["val_loss"])
        summary.append({"kind": kind, "T": T, "val_loss": stats(losses), "tokens_per_s": stats([1e5, 1.1e5]),
                        "passkey": [{"distance": d, "accuracy": stats([0.5, 0.7])} for d in (100, 400)],
                        "val_loss_at": {}})
with tempfile.TemporaryDirectory() as tmp:
    res = os.path.join(tmp, "results.json")
    with open(res, "w") as f:
        json.dump({"cells": cells, "summary": summary}, f)
    r = subprocess.run([sys.executable, script, tmp], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for name in ("val_loss_vs_tokens", "ppl_vs_context", "throughput_vs_context", "passkey_vs_distance"):
        p = os.path.join(tmp, name + ".png")
        assert p in r.stdout, r.stdout
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", p + " is not a PNG"
        assert os.path.getsize(p) > 10000, p + " is suspiciously small"
    with open(res, "w") as f:
        json.dump({"something": 1}, f)
    r = subprocess.run([sys.executable, script, res], capture_output=True, text=True)
    assert r.returncode != 0 and "not a sparsek compare results.json" in r.stderr, r.stderr
print("ok")
