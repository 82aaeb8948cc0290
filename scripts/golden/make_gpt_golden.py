#!/usr/bin/env python3
"""Golden fixtures for tests/model/test_gpt_golden.cpp, made with PyTorch + transformers (the GPU
machine has both; CPU, fp32 is enough): a tiny GPT2LMHeadModel and two tiny GPTNeoXForCausalLM
(parallel residual with rotary_pct 0.5; sequential residual with rotary_pct 1.0), every parameter
randomised (biases and LayerNorm shifts included), eager attention, no dropout.

Each fixture holds, in sparsek's parameter names and layouts (linear weights (out, in); the fused
QKV output as [3, H, D]; embeddings padded with zero rows to the padded vocabulary): the model
config, the weights, an input batch, the logits (real vocabulary only), the loss, every
parameter's gradient, and the losses before each of 3 AdamW steps (lr 1e-2, betas (0.9, 0.95),
eps 1e-8, weight decay 0.1 on every parameter).

Usage: python3 scripts/golden/make_gpt_golden.py OUT_DIR
"""
import json
import sys

import torch

B, T, V, PAD = 2, 8, 61, 8
VP = (V + PAD - 1) // PAD * PAD


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                if name.endswith("weight"):
                    p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
                    continue
            p.copy_(0.2 * torch.randn(p.shape, generator=g))


def pad_rows(t):
    out = torch.zeros((VP,) + tuple(t.shape[1:]), dtype=t.dtype)
    out[: t.shape[0]] = t
    return out


def gpt2_map(model, get):
    """sparsek name -> tensor, from model tensors (get picks .data or .grad)."""
    tr = model.transformer
    m = {"wte": pad_rows(get(tr.wte.weight)), "wpe": get(tr.wpe.weight)}
    for l, h in enumerate(tr.h):
        p = f"h.{l}."
        m[p + "ln1_w"], m[p + "ln1_b"] = get(h.ln_1.weight), get(h.ln_1.bias)
        m[p + "qkv_w"], m[p + "qkv_b"] = get(h.attn.c_attn.weight).t(), get(h.attn.c_attn.bias)  # Conv1D is (in, out)
        m[p + "proj_w"], m[p + "proj_b"] = get(h.attn.c_proj.weight).t(), get(h.attn.c_proj.bias)
        m[p + "ln2_w"], m[p + "ln2_b"] = get(h.ln_2.weight), get(h.ln_2.bias)
        m[p + "fc_w"], m[p + "fc_b"] = get(h.mlp.c_fc.weight).t(), get(h.mlp.c_fc.bias)
        m[p + "fc2_w"], m[p + "fc2_b"] = get(h.mlp.c_proj.weight).t(), get(h.mlp.c_proj.bias)
    m["lnf_w"], m["lnf_b"] = get(tr.ln_f.weight), get(tr.ln_f.bias)
    return m


def neox_qkv(t, H):
    """NeoX's fused QKV rows are [H, 3, D]; sparsek's are [3, H, D]."""
    rows = t.shape[0]
    D = rows // (3 * H)
    return t.reshape((H, 3, D) + tuple(t.shape[1:])).transpose(0, 1).reshape((rows,) + tuple(t.shape[1:]))


def neox_map(model, get, H):
    nx = model.gpt_neox
    assert model.get_output_embeddings().weight.data_ptr() != nx.get_input_embeddings().weight.data_ptr(), "untied"
    m = {"wte": pad_rows(get(nx.get_input_embeddings().weight)),
         "lm_head": pad_rows(get(model.get_output_embeddings().weight))}  # embed_out (named lm_head in newer versions)
    for l, layer in enumerate(nx.layers):
        p = f"h.{l}."
        a = layer.attention
        m[p + "ln1_w"], m[p + "ln1_b"] = get(layer.input_layernorm.weight), get(layer.input_layernorm.bias)
        m[p + "qkv_w"], m[p + "qkv_b"] = neox_qkv(get(a.query_key_value.weight), H), neox_qkv(get(a.query_key_value.bias), H)
        m[p + "proj_w"], m[p + "proj_b"] = get(a.dense.weight), get(a.dense.bias)
        m[p + "ln2_w"], m[p + "ln2_b"] = get(layer.post_attention_layernorm.weight), get(layer.post_attention_layernorm.bias)
        m[p + "fc_w"], m[p + "fc_b"] = get(layer.mlp.dense_h_to_4h.weight), get(layer.mlp.dense_h_to_4h.bias)
        m[p + "fc2_w"], m[p + "fc2_b"] = get(layer.mlp.dense_4h_to_h.weight), get(layer.mlp.dense_4h_to_h.bias)
    m["lnf_w"], m["lnf_b"] = get(nx.final_layer_norm.weight), get(nx.final_layer_norm.bias)
    return m


def flat(t):
    return [float(x) for x in t.detach().reshape(-1).tolist()]


def run(name, model, mapper, model_cfg, out_dir, seed):
    torch.manual_seed(seed)
    randomise(model, seed)
    model.eval()  # no dropout (all dropout probabilities are 0 anyway)
    g = torch.Generator().manual_seed(seed + 1)
    idx = torch.randint(0, V, (B, T), generator=g)
    targets = torch.randint(0, V, (B, T), generator=g)
    weights = {k: v.clone() for k, v in mapper(model, lambda p: p.detach()).items()}
    logits = model(input_ids=idx).logits  # (B, T, V)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    loss.backward()
    grads = mapper(model, lambda p: p.grad.detach() if p.grad is not None else torch.zeros_like(p))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        l = torch.nn.functional.cross_entropy(model(input_ids=idx).logits.reshape(-1, V), targets.reshape(-1))
        losses.append(float(l))
        l.backward()
        opt.step()
    losses.append(float(torch.nn.functional.cross_entropy(model(input_ids=idx).logits.reshape(-1, V), targets.reshape(-1))))
    doc = {
        "name": name, "model": model_cfg, "B": B, "T": T, "vocab": V, "padded_vocab": VP,
        "idx": idx.reshape(-1).tolist(), "targets": targets.reshape(-1).tolist(),
        "params": {k: {"shape": list(v.shape), "data": flat(v)} for k, v in weights.items()},
        "logits": flat(logits), "loss": float(loss),
        "grads": {k: flat(v) for k, v in grads.items()},
        "adamw": {"lr": 1e-2, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1},
        "losses_before_steps": losses[:3], "loss_after_3_steps": losses[3],
    }
    with open(f"{out_dir}/{name}.json", "w") as f:
        json.dump(doc, f)
    print(f"{name}: loss {float(loss):.6f}, losses {losses}")


def main():
    out_dir = sys.argv[1]
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

    torch.set_default_dtype(torch.float32)
    C, H, L = 16, 2, 2
    cfg = GPT2Config(vocab_size=V, n_positions=16, n_embd=C, n_layer=L, n_head=H, resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0, activation_function="gelu_new", layer_norm_epsilon=1e-5)
    cfg._attn_implementation = "eager"
    m = GPT2LMHeadModel(cfg)
    run("gpt2_tiny", m, gpt2_map, {"n_layer": L, "n_head": H, "n_embd": C, "vocab_size": V, "pad_vocab_multiple": PAD,
                                   "block_size": 16, "gelu": "tanh", "tied_embeddings": True,
                                   "learned_positions": True}, out_dir, 11)
    for name, pct, parallel in (("neox_tiny_parallel", 0.5, True), ("neox_tiny_sequential", 1.0, False)):
        cfg = GPTNeoXConfig(vocab_size=V, hidden_size=C, num_hidden_layers=L, num_attention_heads=H,
                            intermediate_size=4 * C, max_position_embeddings=16, rotary_pct=pct,
                            partial_rotary_factor=pct, rotary_emb_base=10000, rope_theta=10000,
                            use_parallel_residual=parallel, hidden_act="gelu", tie_word_embeddings=False,
                            attention_dropout=0.0, hidden_dropout=0.0, layer_norm_eps=1e-5)
        cfg._attn_implementation = "eager"
        m = GPTNeoXForCausalLM(cfg)
        inv = None
        for mod in m.modules():
            if hasattr(mod, "inv_freq"):
                inv = mod.inv_freq
                break
        rot = 2 * inv.numel() if inv is not None else -1
        assert rot == int(C // H * pct), f"rotary dims {rot} != {int(C // H * pct)}: config not applied"
        run(name, m, lambda mod, get: neox_map(mod, get, H),
            {"n_layer": L, "n_head": H, "n_embd": C, "vocab_size": V, "pad_vocab_multiple": PAD, "block_size": 16,
             "gelu": "erf", "tied_embeddings": False, "learned_positions": False, "rotary_pct": pct,
             "rotary_base": 10000.0, "parallel_residual": parallel}, out_dir, 23 if parallel else 37)


if __name__ == "__main__":
    main()
