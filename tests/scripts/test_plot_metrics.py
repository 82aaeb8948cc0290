#!/usr/bin/python3
"""ctest PlotMetrics.png: scripts/plot_metrics.py draws two runs' metrics (one given as a file,
one as a run directory) into a PNG and prints each run's summary; a malformed record is an error
naming the file and line. Exits 77 (ctest: skipped) when matplotlib is not installed."""
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
script = os.path.join(root, "scripts", "plot_metrics.py")
with tempfile.TemporaryDirectory() as tmp:
    a = os.path.join(tmp, "a.jsonl")
    os.makedirs(os.path.join(tmp, "runb"))
    b = os.path.join(tmp, "runb", "metrics.jsonl")
    for path, scale in ((a, 1.0), (b, 0.8)):
        with open(path, "w") as f:
            for step in range(1, 41):
                rec = {"step": step, "loss": scale * (6.0 - step / 10), "lr": 1e-3}
                if step % 10 == 0:
                    rec["val_loss"] = scale * (6.2 - step / 10)
                    rec["val_ppl"] = 2.718281828 ** rec["val_loss"]
                f.write(__import__("json").dumps(rec) + "\n")
    out = os.path.join(tmp, "curves.png")
    r = subprocess.run([sys.executable, script, a, os.path.join(tmp, "runb"), "--out", out, "--labels", "a,b",
                        "--smooth", "5"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert os.path.getsize(out) > 10000, "suspiciously small PNG"
    assert "a: last step 40, train loss 2.0000, best val loss 2.2000" in r.stdout, r.stdout
    assert "b: last step 40" in r.stdout, r.stdout
    with open(a, "a") as f:
        f.write("{broken\n")
    r = subprocess.run([sys.executable, script, a, "--out", out], capture_output=True, text=True)
    assert r.returncode != 0 and "a.jsonl:41" in r.stderr, r.stderr
print("ok")
