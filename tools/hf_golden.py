#!/usr/bin/env python3
"""Golden files for pquant's Hugging Face importer, made by an independent implementation.

Builds a tiny BitNet b1.58 (BitNetForCausalLM, BF16, tied embeddings; also in transformers'
packed offline form: U8 ternary codes and weight_scale) and a tiny pQuant model
(PQuantForCausalLM, pquant's naming extension, F16, two INT8 experts) with random weights in the
Hugging Face naming, runs its own quantized forward written from docs/method.md (sections 2 and 3)
on fixed tokens, and writes, per model, a directory with

    config.json, model.safetensors      the checkpoint (what `convert --import-hf` reads)
    golden.safetensors                  "tokens" I32 [T], "logits" F32 [T, vocab]

Rounding boundaries: two FP32 implementations may differ by an ulp, which flips a code that sits
exactly at a rounding boundary. The script therefore draws seeds until every rounded quantity
(weight codes, activation codes, 1-bit signs, the router's choice) is at least MARGIN away from
its boundary, so the comparison tests the method and not the last ulp.

Usage (CPU torch and safetensors; scripts/install-deps.sh makes .venv):
    .venv/bin/python tools/hf_golden.py --out tests/data/hf
    .venv/bin/python tools/hf_golden.py --forward DIR --out logits.safetensors   (any checkpoint)
"""
import argparse
import json
import math
import os

import torch
from safetensors.torch import save_file

EPS = 1e-5          # docs/method.md: eps of ternary, INT8 absmax and RMSNorm
ROPE_BASE = 10000.0
MARGIN = 2e-4       # in code units (activation codes, ternary/INT8 codes) or units of lambda


class Margins:
    """The smallest distance of any rounded quantity to its rounding boundary."""

    def __init__(self):
        self.min = math.inf

    def rounding(self, x):  # x: values about to be rounded to integers
        frac = (x.double() - torch.floor(x.double()) - 0.5).abs()
        if x.numel():
            self.min = min(self.min, float(frac.min()))


def f32(x):
    return x.to(torch.float32)


def rmsnorm(x, gain):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + EPS) * gain


def act_quant(x, m):
    """INT8 absmax per token: g = 127 / max(max|x|, eps), q = clamp(round(x g), -128, 127)."""
    a = torch.clamp(x.abs().amax(-1, keepdim=True), min=EPS)
    g = f32(torch.tensor(127.0)) / a
    xg = x * g
    m.rounding(xg)
    return torch.clamp(torch.round(xg), -128, 127), g


def ternary(w, m):
    """Per tensor: gamma = mean|W| (double sum), code = RoundClip(W / (gamma + eps), -1, 1)."""
    gamma = f32(w.double().abs().mean())
    t = w / (gamma + f32(torch.tensor(EPS)))
    m.rounding(t.clamp(-1.4, 1.4))  # only the +-0.5 boundaries matter after the clip
    codes = torch.clamp(torch.round(t), -1, 1)
    return codes, gamma.expand(w.shape[0])


def sign1(w, m):
    """Per tensor: mu = mean(W), lambda = mean|W|, code = +1 if W >= mu else -1 (sign(0) = +1)."""
    mu = f32(w.double().mean())
    lam = f32(w.double().abs().mean())
    m.min = min(m.min, float(((w - mu).abs() / lam).min()))
    codes = torch.where(w >= mu, 1.0, -1.0)
    return codes, lam.expand(w.shape[0])


def int8_rows(w, m):
    """Per row: a = max(max|W_row|, eps), code = clamp(round(W * (127 / a))), scale = a / 127."""
    a = torch.clamp(w.abs().amax(-1), min=EPS)
    gain = f32(torch.tensor(127.0)) / a
    t = w * gain[:, None]
    m.rounding(t)
    return torch.clamp(torch.round(t), -128, 127), a / 127.0


PACKED = {}  # id(latent weight) -> (codes, weight_scale) of the packed checkpoint, when served


def bitlinear(x, w, quantizer, m, norm=None):
    """Y = (scale / g) * (W_code . q), q = INT8(RMSNorm(x)) where the projection owns a norm."""
    if norm is not None:
        x = rmsnorm(x, norm)
    q, g = act_quant(x, m)
    if id(w) in PACKED:  # transformers' BitLinear: y = (codes . q) / (input_scale * weight_scale)
        codes, ws = PACKED[id(w)]
        return f32(q.double() @ codes.double().t()) / (g * ws)
    codes, scale = quantizer(w, m)
    acc = q.double() @ codes.double().t()          # integer-valued: exact
    s = f32(scale)[None, :] * f32(1.0 / g)           # float: row scale times 1/g
    return f32(acc * s.double())


def pack_ternary(codes):
    """transformers' pack_weights: four codes (value + 1) per byte along the output dimension;
    row r sits in bits 2 (r // R4) of byte row r % R4, R4 = ceil(rows / 4)."""
    rows, cols = codes.shape
    r4 = (rows + 3) // 4
    packed = torch.zeros(r4, cols, dtype=torch.uint8)
    u = (codes + 1).to(torch.uint8)
    for i in range(4):
        part = u[i * r4:(i + 1) * r4]
        packed[:part.shape[0]] |= part << (2 * i)
    return packed


def rope(x, pos, base):  # x [T, heads, hd]; pairs (i, i + hd/2), angle p * base^(-2i/hd)
    hd = x.shape[-1]
    half = hd // 2
    i = torch.arange(half, dtype=torch.float64)
    ang = pos[:, None].double() * torch.pow(torch.tensor(base, dtype=torch.float64),
                                             -2.0 * i / hd)
    c, s = f32(torch.cos(ang))[:, None, :], f32(torch.sin(ang))[:, None, :]
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * c - b * s, a * s + b * c], dim=-1)


def attention(x, p, cfg, quant, m, sub_norm):
    T, d = x.shape
    H = cfg["num_attention_heads"]
    hd = d // H
    a = rmsnorm(x, p["input_layernorm.weight"])
    q = bitlinear(a, p["self_attn.q_proj.weight"], quant, m).view(T, H, hd)
    k = bitlinear(a, p["self_attn.k_proj.weight"], quant, m).view(T, H, hd)
    v = bitlinear(a, p["self_attn.v_proj.weight"], quant, m).view(T, H, hd)
    pos = torch.arange(T)
    base = cfg.get("rope_theta", ROPE_BASE)
    q, k = rope(q, pos, base), rope(k, pos, base)
    scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(hd)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    scores = scores.masked_fill(mask, -math.inf)
    probs = torch.softmax(scores, dim=-1)
    out = torch.einsum("hts,shd->thd", probs, v).reshape(T, d)
    return bitlinear(out, p["self_attn.o_proj.weight"], quant, m,
                     norm=p["self_attn.attn_sub_norm.weight"] if sub_norm else None)


def ffn(a, p, prefix, quant, m):
    gate = bitlinear(a, p[prefix + "gate_proj.weight"], quant, m)
    up = bitlinear(a, p[prefix + "up_proj.weight"], quant, m)
    h = torch.nn.functional.silu(gate) * up
    return bitlinear(h, p[prefix + "down_proj.weight"], quant, m,
                     norm=p[prefix + "ffn_sub_norm.weight"])


def forward(tensors, cfg, tokens, kind, m, packed=None):
    """The quantized forward of docs/method.md section 3 (FP32; integer products exact). With
    `packed` ({name: (codes, weight_scale)}) those projections run as transformers' BitLinear."""
    w = {k: f32(v) for k, v in tensors.items()}
    PACKED.clear()
    for k, cw in (packed or {}).items():
        PACKED[id(w[k])] = cw
    x = w["model.embed_tokens.weight"][tokens]
    attn_quant = ternary if kind == "bitnet158" else sign1
    for layer in range(cfg["num_hidden_layers"]):
        pre = "model.layers.%d." % layer
        p = {k[len(pre):]: v for k, v in w.items() if k.startswith(pre)}
        h = x + attention(x, p, cfg, attn_quant, m, sub_norm=True)
        a = rmsnorm(h, p["post_attention_layernorm.weight"])
        if kind == "bitnet158":
            y = ffn(a, p, "mlp.", ternary, m)
        else:
            n = cfg["pquant_num_experts"]
            y1 = ffn(a, p, "mlp.", sign1, m)
            if n > 1:
                probs = torch.softmax(a @ p["mlp.router.weight"].t(), dim=-1)
                top2 = torch.topk(probs, 2, dim=-1).values
                m.min = min(m.min, float((top2[:, 0] - top2[:, 1]).min()) * 1e3)
                choice = torch.argmax(probs, dim=-1)  # ties: the first index
                pe = probs.gather(1, choice[:, None])
            else:
                choice = torch.zeros(a.shape[0], dtype=torch.long)
                pe = torch.ones(a.shape[0], 1)
            y8 = torch.zeros_like(y1)
            for t in range(a.shape[0]):
                e = int(choice[t])
                y8[t] = ffn(a[t:t + 1], p, "mlp.int8_experts.%d." % e, int8_rows, m)[0]
            y = p["mlp.alpha"] * (pe * y8) + p["mlp.beta"] * y1
        x = h + y
    x = rmsnorm(x, w["model.norm.weight"])
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return x @ head.t()


def make_tensors(cfg, kind, gen, dtype):
    d, V, L = cfg["hidden_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    dff = cfg["intermediate_size"]

    def rnd(*shape, std=1.0, mean=0.0):
        return (torch.randn(shape, generator=gen) * std + mean).to(dtype)

    def lin(o, i):
        return rnd(o, i, std=1.0 / math.sqrt(i))

    t = {"model.embed_tokens.weight": rnd(V, d), "model.norm.weight": rnd(d, std=0.1, mean=1.0)}
    if not cfg.get("tie_word_embeddings"):
        t["lm_head.weight"] = lin(V, d)

    def branch(prefix, width):
        t[prefix + "gate_proj.weight"] = lin(width, d)
        t[prefix + "up_proj.weight"] = lin(width, d)
        t[prefix + "down_proj.weight"] = lin(d, width)
        t[prefix + "ffn_sub_norm.weight"] = rnd(width, std=0.1, mean=1.0)

    for layer in range(L):
        pre = "model.layers.%d." % layer
        t[pre + "input_layernorm.weight"] = rnd(d, std=0.1, mean=1.0)
        t[pre + "post_attention_layernorm.weight"] = rnd(d, std=0.1, mean=1.0)
        for n in "qkvo":
            t[pre + "self_attn.%s_proj.weight" % n] = lin(d, d)
        t[pre + "self_attn.attn_sub_norm.weight"] = rnd(d, std=0.1, mean=1.0)
        if kind == "bitnet158":
            branch(pre + "mlp.", dff)
        else:
            r, n = cfg["pquant_expert_intermediate_size"], cfg["pquant_num_experts"]
            branch(pre + "mlp.", dff - r)
            for e in range(n):
                branch(pre + "mlp.int8_experts.%d." % e, r)
            if n > 1:
                t[pre + "mlp.router.weight"] = lin(n, d)
            t[pre + "mlp.alpha"] = rnd(std=0.2, mean=1.5)  # 0-d, like an nn.Parameter scalar
            t[pre + "mlp.beta"] = rnd(std=0.1, mean=0.5)
    return t


MODELS = {
    "bitnet158": ({"architectures": ["BitNetForCausalLM"], "model_type": "bitnet",
                   "vocab_size": 16, "hidden_size": 16, "num_hidden_layers": 2,
                   "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 32,
                   "max_position_embeddings": 64, "hidden_act": "silu", "rms_norm_eps": 1e-5,
                   "rope_theta": ROPE_BASE, "tie_word_embeddings": True,
                   "torch_dtype": "bfloat16"}, torch.bfloat16),
    "pquant": ({"architectures": ["PQuantForCausalLM"], "model_type": "pquant",
                "vocab_size": 16, "hidden_size": 16, "num_hidden_layers": 2,
                "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 48,
                "pquant_num_experts": 2, "pquant_expert_intermediate_size": 16,
                "max_position_embeddings": 64, "hidden_act": "silu", "rms_norm_eps": 1e-5,
                "rope_theta": 500000.0, "tie_word_embeddings": False,
                "torch_dtype": "float16"}, torch.float16),
}
TOKENS = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]


def build(kind, out_dir, seed0):
    cfg, dtype = MODELS[kind]
    tokens = torch.tensor(TOKENS, dtype=torch.long)
    for seed in range(seed0, seed0 + 5000):
        gen = torch.Generator().manual_seed(seed)
        tensors = make_tensors(cfg, kind, gen, dtype)
        m = Margins()
        with torch.no_grad():
            logits = forward(tensors, cfg, tokens, kind, m)
        if m.min >= MARGIN:
            break
    else:
        raise SystemExit("hf_golden: no seed with every rounding margin >= %g" % MARGIN)
    d = os.path.join(out_dir, kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(d, "model.safetensors"))
    save_file({"tokens": tokens.to(torch.int32), "logits": logits.contiguous()},
              os.path.join(d, "golden.safetensors"))
    print("hf_golden: %s seed %d, smallest rounding margin %.2e -> %s" % (kind, seed, m.min, d))
    if kind == "bitnet158":
        build_packed(cfg, tensors, tokens, out_dir)


def build_packed(cfg, tensors, tokens, out_dir):
    """The same BitNet b1.58 in transformers' offline (packed) form: U8 codes, weight_scale =
    1 / absmean (F32), the other tensors as they were; logits of transformers' BitLinear."""
    m = Margins()
    packed, out = {}, {}
    for k, v in tensors.items():
        if k.endswith("_proj.weight"):
            codes, gamma = ternary(f32(v), m)
            ws = (1.0 / gamma[:1]).to(torch.float32)
            packed[k] = (codes, ws)
            out[k] = pack_ternary(codes)
            out[k[:-len("weight")] + "weight_scale"] = ws
        else:
            out[k] = v
    with torch.no_grad():
        logits = forward(tensors, cfg, tokens, "bitnet158", Margins(), packed)
    c = dict(cfg, quantization_config={"quant_method": "bitnet", "linear_class": "bitlinear",
                                       "quantization_mode": "offline"})
    d = os.path.join(out_dir, "bitnet158_packed")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
        f.write("\n")
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(d, "model.safetensors"))
    save_file({"tokens": tokens.to(torch.int32), "logits": logits.contiguous()},
              os.path.join(d, "golden.safetensors"))
    print("hf_golden: bitnet158_packed -> %s" % d)


def forward_dir(src, out):
    """The forward of an existing checkpoint (e.g. `convert --export-hf`) on TOKENS: writes
    "tokens", "logits" and "margin" (the smallest rounding margin met) to `out`."""
    from safetensors.torch import load_file
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    kind = {"BitNetForCausalLM": "bitnet158", "PQuantForCausalLM": "pquant"}.get(
        cfg["architectures"][0])
    if kind is None or cfg.get("pquant_variant", kind) != kind or cfg.get("hidden_act") != "silu":
        raise SystemExit("hf_golden: --forward reads bitnet158 and pquant SwiGLU checkpoints")
    tensors = load_file(os.path.join(src, "model.safetensors"))
    tokens = torch.tensor([t % cfg["vocab_size"] for t in TOKENS], dtype=torch.long)
    m = Margins()
    with torch.no_grad():
        logits = forward(tensors, cfg, tokens, kind, m)
    save_file({"tokens": tokens.to(torch.int32), "logits": logits.contiguous(),
               "margin": torch.tensor([m.min], dtype=torch.float32)}, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True,
                    help="output directory (one sub-directory per model); with --forward a file")
    ap.add_argument("--seed", type=int, default=1, help="first seed tried")
    ap.add_argument("--forward", metavar="DIR",
                    help="only run the forward of the checkpoint in DIR on the fixed tokens")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.forward:
        forward_dir(args.forward, args.out)
        return
    for kind in MODELS:
        build(kind, args.out, args.seed)


if __name__ == "__main__":
    main()
