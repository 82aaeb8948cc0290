#!/usr/bin/env python3
"""Merges `sparsek bench ops` JSON and its PyTorch peer JSON (same device call) into one JSON and
a markdown table: per op and phase, both times, the speed-up, our GB/s and its share of the
device copy bandwidth measured in the same run (the memory-bound goal is >= 60%)."""
import argparse
import datetime
import json
import subprocess


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("peer")
    ap.add_argument("--json-out", required=True)
    ap.add_argument("--md-out", required=True)
    ap.add_argument("--commit", default="")
    a = ap.parse_args()
    ours = json.load(open(a.ours))
    peer = json.load(open(a.peer))
    key = lambda r: (r["op"], r["phase"])
    peer_by = {key(r): r for r in peer["results"]}
    copy_bw = next(r["GBps"] for r in ours["results"] if r["op"] == "copy")
    rows = []
    for r in ours["results"]:
        p = peer_by.get(key(r))
        rows.append({
            "op": r["op"], "phase": r["phase"], "shape": r["shape"],
            "sparsek_ms": r["ms"], "pytorch_ms": p["ms"] if p else None,
            "speedup": (p["ms"] / r["ms"]) if p else None,
            "sparsek_GBps": r["GBps"], "pytorch_GBps": p["GBps"] if p else None,
            "fraction_of_copy_bw": r["GBps"] / copy_bw,
        })
    date = datetime.date.today().isoformat()
    doc = {"date": date, "commit": a.commit, "device": ours["device"], "peer": peer["system"],
           "copy_bandwidth_GBps": copy_bw, "rows": rows}
    json.dump(doc, open(a.json_out, "w"), indent=2)
    lines = [f"# sparsek bench ops vs {peer['system']}", "",
             f"Device: {ours['device']}; date {date}; commit {a.commit}; device copy bandwidth measured in the same run: "
             f"{copy_bw:.0f} GB/s (read + write). Median of CUDA-event timings, L2 flushed before each run.", "",
             "| op | phase | shape | sparsek ms | PyTorch ms | speed-up | sparsek GB/s | % of copy BW |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["op"] == "copy":
            continue
        pt = f"{r['pytorch_ms']:.3f}" if r["pytorch_ms"] else "-"
        sp = f"{r['speedup']:.2f}x" if r["speedup"] else "-"
        lines.append(f"| {r['op']} | {r['phase']} | {r['shape']} | {r['sparsek_ms']:.3f} | {pt} | {sp} | "
                     f"{r['sparsek_GBps']:.0f} | {100 * r['fraction_of_copy_bw']:.0f}% |")
    open(a.md_out, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
