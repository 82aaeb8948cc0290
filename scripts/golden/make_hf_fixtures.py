#!/usr/bin/env python3
"""Hugging Face model directories for the import tests (tests/io/fixtures/hf/), made with
transformers on the GPU machine (CPU, fp32 is enough): tiny GPT2LMHeadModel and GPTNeoXForCausalLM
models with every parameter randomised (biases and LayerNorm affine included), written by
`save_pretrained` exactly as transformers writes them, plus reference logits from transformers.

Directories written under OUT_DIR (each one a model directory as a user would download it):
  gpt2_tiny/             GPT-2, fp32 safetensors, tied head
  neox_tiny_parallel/    GPT-NeoX, parallel residual, rotary_pct 0.25, untied embed_in/embed_out
  neox_tiny_sequential/  GPT-NeoX, sequential residual, rotary_pct 1.0
  neox_tiny_sharded/     neox_tiny_parallel's weights in several shards + model.safetensors.index.json
  gpt2_tiny_bf16/        GPT-2 weights stored as BF16 (reference logits from the rounded weights, fp32)
  neox_tiny_f16/         neox_tiny_parallel's weights stored as F16 (same rule)
  neox_tiny_bin/         neox_tiny_parallel saved as pytorch_model.bin (pickle), for the rejection test
Each has reference.json: {"input_ids": [[...]], "shape": [B, T, V], "logits": [...] (fp32, row-major),
"transformers": version, "torch": version}.

Usage: python3 scripts/golden/make_hf_fixtures.py OUT_DIR
"""
import json
import os
import sys

import torch

B, T, V = 2, 12, 100  # V not a multiple of 128: the importer pads the vocabulary


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm = ("norm" in name or ".ln_" in name) and name.endswith("weight")
            p.copy_((1 + 0.2 * torch.randn(p.shape, generator=g)) if is_norm else 0.2 * torch.randn(p.shape, generator=g))


def reference(model, out, seed):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, V, (B, T), generator=g)
    with torch.no_grad():
        logits = model.float()(input_ids=idx).logits  # (B, T, V)
    import transformers
    doc = {"input_ids": idx.tolist(), "shape": list(logits.shape),
           "logits": [float(x) for x in logits.reshape(-1).tolist()],
           "transformers": transformers.__version__, "torch": torch.__version__}
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(doc, f)


def save(model, out_dir, name, seed, dtype=None, **kw):
    out = os.path.join(out_dir, name)
    os.makedirs(out, exist_ok=True)
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(out, **kw)
    reference(model, out, seed)  # logits of the stored (possibly rounded) weights, computed in fp32
    files = sorted(os.listdir(out))
    print(name, files, sum(os.path.getsize(os.path.join(out, f)) for f in files), "bytes")


def main():
    out_dir = sys.argv[1]
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

    torch.set_default_dtype(torch.float32)
    C, H, L = 32, 2, 2
    cfg = GPT2Config(vocab_size=V, n_positions=32, n_embd=C, n_layer=L, n_head=H, resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0, activation_function="gelu_new", layer_norm_epsilon=1e-5)
    cfg._attn_implementation = "eager"

    def gpt2():
        m = GPT2LMHeadModel(cfg)
        randomise(m, 5)
        return m.eval()

    save(gpt2(), out_dir, "gpt2_tiny", 6)
    save(gpt2(), out_dir, "gpt2_tiny_bf16", 6, dtype=torch.bfloat16)

    def neox(pct, parallel, seed):
        c = GPTNeoXConfig(vocab_size=V, hidden_size=C, num_hidden_layers=L, num_attention_heads=H,
                          intermediate_size=4 * C, max_position_embeddings=32, rotary_pct=pct,
                          partial_rotary_factor=pct, rotary_emb_base=10000, rope_theta=10000,
                          use_parallel_residual=parallel, hidden_act="gelu", tie_word_embeddings=False,
                          attention_dropout=0.0, hidden_dropout=0.0, layer_norm_eps=1e-5)
        c._attn_implementation = "eager"
        m = GPTNeoXForCausalLM(c)
        randomise(m, seed)
        return m.eval()

    save(neox(0.25, True, 7), out_dir, "neox_tiny_parallel", 8)
    save(neox(1.0, False, 9), out_dir, "neox_tiny_sequential", 10)
    save(neox(0.25, True, 7), out_dir, "neox_tiny_sharded", 8, max_shard_size="60KB")
    save(neox(0.25, True, 7), out_dir, "neox_tiny_f16", 8, dtype=torch.float16)
    # pytorch_model.bin: transformers 5.17 writes model.safetensors even with safe_serialization=False,
    # so the pickle is torch.save of the same state dict (what older transformers wrote).
    out = os.path.join(out_dir, "neox_tiny_bin")
    m = neox(0.25, True, 7)
    m.config.save_pretrained(out)
    torch.save(m.state_dict(), os.path.join(out, "pytorch_model.bin"))
    reference(m, out, 8)
    print("neox_tiny_bin", sorted(os.listdir(out)))

if __name__ == "__main__":
    main()
