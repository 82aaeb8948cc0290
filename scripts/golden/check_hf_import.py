#!/usr/bin/env python3
"""GPU-machine check of the Hugging Face import/export (docs/IMPORT.md): random-weight models of the
shapes of Pythia-70m, Pythia-160m (GPTNeoXForCausalLM) and GPT-2 124M (GPT2LMHeadModel) are made
with transformers (no network), saved with save_pretrained, imported with `sparsek import`, and
sparsek's logits (`sparsek logits`) compared with transformers' for the same token ids:
  fp32 on the CPU: pass if relative L2 < 1e-4 (also reported: max |diff| / max |reference|);
  bf16 on CUDA (when a GPU is there): reported, pass if relative L2 < 3e-2 (bf16 weights and
  activations through every layer; see tests/model/test_gpt_golden.cpp for the same bound).
Then `sparsek export` and transformers loads the export: its fp32 logits against the original's
(pass if relative L2 < 1e-5). Results: OUT_DIR/hf_import_check.json and .md.

Usage: python3 scripts/golden/check_hf_import.py OUT_DIR [--sparsek build/sparsek] [--seq 64]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch


def rel_l2(a, b):
    return float((a - b).norm() / b.norm())


def max_rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def sparsek_logits(exe, ck, ids, device, dtype, out):
    subprocess.run([exe, "logits", ck, "--ids", ",".join(map(str, ids)), "--device", device, "--dtype", dtype,
                    "--out", out], check=True)
    d = json.load(open(out))
    return torch.tensor(d["logits"], dtype=torch.float64).reshape(d["shape"])


def cases():
    from transformers import GPT2Config, GPTNeoXConfig
    neox = dict(rotary_pct=0.25, partial_rotary_factor=0.25, rotary_emb_base=10000, rope_theta=10000,
                vocab_size=50304, max_position_embeddings=2048, use_parallel_residual=True, hidden_act="gelu",
                tie_word_embeddings=False, layer_norm_eps=1e-5, attention_dropout=0.0, hidden_dropout=0.0)
    return [
        ("pythia-70m-shaped", "neox", GPTNeoXConfig(hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                                                    intermediate_size=2048, **neox)),
        ("pythia-160m-shaped", "neox", GPTNeoXConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                                     intermediate_size=3072, **neox)),
        ("gpt2-124m-shaped", "gpt2", GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                                                activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                                                attn_pdrop=0.0, layer_norm_epsilon=1e-5)),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--sparsek", default="build/sparsek")
    ap.add_argument("--seq", type=int, default=64)
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM, GPT2LMHeadModel, GPTNeoXForCausalLM
    import transformers

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    os.makedirs(args.out, exist_ok=True)
    gpu = torch.cuda.is_available()
    results = []
    for i, (name, kind, cfg) in enumerate(cases()):
        t0 = time.time()
        cfg._attn_implementation = "eager"
        torch.manual_seed(100 + i)
        model = (GPTNeoXForCausalLM if kind == "neox" else GPT2LMHeadModel)(cfg).float().eval()
        base = os.path.join(args.out, name)
        hf, ck, exp = base + "/hf", base + "/sparsek", base + "/exported"
        model.save_pretrained(hf)
        g = torch.Generator().manual_seed(7 + i)
        ids = torch.randint(0, cfg.vocab_size if kind == "gpt2" else 50277, (1, args.seq), generator=g)
        with torch.no_grad():
            ref = model(input_ids=ids).logits.double()  # (1, T, V), CPU fp32
        V = ref.shape[-1]
        subprocess.run([args.sparsek, "import", hf, ck], check=True)
        r = {"case": name, "architecture": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
             "seq": args.seq}
        ours = sparsek_logits(args.sparsek, ck, ids[0].tolist(), "cpu", "f32", base + "/logits_f32.json")[..., :V]
        r["fp32_cpu"] = {"rel_l2": rel_l2(ours, ref), "max_abs_diff_over_max_abs_ref": max_rel(ours, ref)}
        r["fp32_cpu"]["pass"] = r["fp32_cpu"]["rel_l2"] < 1e-4
        if gpu:
            ours16 = sparsek_logits(args.sparsek, ck, ids[0].tolist(), "cuda", "bf16", base + "/logits_bf16.json")[..., :V]
            r["bf16_cuda"] = {"rel_l2": rel_l2(ours16, ref), "max_abs_diff_over_max_abs_ref": max_rel(ours16, ref),
                              "argmax_agreement": float((ours16.argmax(-1) == ref.argmax(-1)).double().mean())}
            r["bf16_cuda"]["pass"] = r["bf16_cuda"]["rel_l2"] < 3e-2
        subprocess.run([args.sparsek, "export", ck, exp], check=True)
        back = AutoModelForCausalLM.from_pretrained(exp, attn_implementation="eager").float().eval()
        with torch.no_grad():
            again = back(input_ids=ids).logits.double()
        r["export_reloaded_fp32"] = {"rel_l2": rel_l2(again, ref), "max_abs_diff_over_max_abs_ref": max_rel(again, ref)}
        r["export_reloaded_fp32"]["pass"] = r["export_reloaded_fp32"]["rel_l2"] < 1e-5
        r["seconds"] = round(time.time() - t0, 1)
        print(json.dumps(r), flush=True)
        results.append(r)
    doc = {"transformers": transformers.__version__, "torch": torch.__version__, "gpu": gpu,
           "gpu_name": torch.cuda.get_device_name(0) if gpu else None, "results": results,
           "all_pass": all(v["pass"] for r in results for v in r.values() if isinstance(v, dict))}
    json.dump(doc, open(os.path.join(args.out, "hf_import_check.json"), "w"), indent=1)
    lines = [f"# Hugging Face import/export check (transformers {transformers.__version__}, torch {torch.__version__})", "",
             "| case | params | fp32 CPU rel L2 | fp32 max/max | bf16 CUDA rel L2 | bf16 argmax agree | export reload rel L2 | pass |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        b = r.get("bf16_cuda", {})
        ok = all(v["pass"] for v in r.values() if isinstance(v, dict))
        lines.append(f"| {r['case']} | {r['parameters']:,} | {r['fp32_cpu']['rel_l2']:.2e} | "
                     f"{r['fp32_cpu']['max_abs_diff_over_max_abs_ref']:.2e} | "
                     f"{b.get('rel_l2', float('nan')):.2e} | {b.get('argmax_agreement', float('nan')):.3f} | "
                     f"{r['export_reloaded_fp32']['rel_l2']:.2e} | {'yes' if ok else 'NO'} |")
    lines += ["", "Thresholds: fp32 rel L2 < 1e-4; bf16 rel L2 < 3e-2; export reload rel L2 < 1e-5.", ""]
    open(os.path.join(args.out, "hf_import_check.md"), "w").write("\n".join(lines))
    print("\n".join(lines))
    sys.exit(0 if doc["all_pass"] else 1)


if __name__ == "__main__":
    main()
