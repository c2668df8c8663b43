#!/usr/bin/env python3
"""Writes a checkpoint in the Hugging Face naming (config.json + model.safetensors, e.g. from
`convert --export-hf`) as GGUF for llama.cpp, through the `gguf` package (docs/model-format.md,
"GGUF").

Which pquant variants map onto a llama.cpp architecture:

  llama      -> "llama": every linear weight Q8_0 (F32 where a row is not a multiple of 32),
                q/k rows permuted to llama.cpp's interleaved RoPE pairing, separate output head.
  bitnet158  -> "bitnet": the ternary codes of every projection (docs/method.md section 2:
                RoundClip(W / (mean|W| + eps))) as TQ2_0 (block scale exactly 1) and mean|W| as
                the F32 tensor `<name>.scale`; sub-norms as they are; RoPE already in llama.cpp's
                NEOX pairing for this architecture. llama.cpp ties the output head to the token
                embedding here, so the checkpoint's lm_head must equal it (tie_word_embeddings).
  fp, bitnet, pquant -> no llama.cpp architecture has their layers (a norm before o/down with FP or
                1-bit weights; pQuant's decoupled FFN with INT8 experts): refused, exit 1.

No tokenizer is written (pquant's byte-level models have none to give).

Usage: .venv/bin/python tools/hf_to_gguf.py DIR OUT.gguf [--ternary tq2_0|tq1_0|f32]
"""
import argparse
import json
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from safetensors.torch import load_file

EPS = 1e-5
TERNARY = {"tq2_0": QT.TQ2_0, "tq1_0": QT.TQ1_0, "f32": QT.F32}


class Unmappable(Exception):
    pass


def variant_of(c):
    arch = c["architectures"][0]
    default = {"LlamaForCausalLM": "llama", "PQuantForCausalLM": "pquant",
               "BitNetForCausalLM": "bitnet158", "BitnetForCausalLM": "bitnet158"}
    if arch not in default:
        raise Unmappable("unsupported architecture '%s'" % arch)
    return c.get("pquant_variant", default[arch])


def ternary_codes(w):
    """docs/method.md section 2: gamma = mean|W| (double sum), codes in {-1, 0, +1}."""
    gamma = np.float32(np.abs(w.astype(np.float64)).mean())
    codes = np.clip(np.rint(w / (gamma + np.float32(EPS))), -1, 1).astype(np.float32)
    return codes, gamma


def llama_permute(w, heads):
    """rotate_half rows (i, i + hd/2) -> interleaved rows (2i, 2i + 1), as llama.cpp's LLaMA."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def quantized(w, qtype):
    if qtype == QT.F32:
        return w.astype(np.float32), qtype
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if w.shape[-1] % block != 0:
        raise Unmappable("%s needs rows of a multiple of %d values, got %d (use --ternary f32)"
                         % (qtype.name, block, w.shape[-1]))
    return gguf.quants.quantize(w.astype(np.float32), qtype), qtype


def convert(src, out, ternary="tq2_0"):
    with open(src + "/config.json") as f:
        c = json.load(f)
    variant = variant_of(c)
    if variant not in ("llama", "bitnet158"):
        raise Unmappable("variant '%s' has no llama.cpp architecture (only llama and bitnet158 "
                         "map)" % variant)
    if c.get("quantization_config"):
        raise Unmappable("a packed checkpoint (quantization_config): convert its latent weights")
    if c.get("hidden_act", "silu") != "silu" or not c.get("pquant_ffn_gated", True):
        raise Unmappable("only SwiGLU FFNs map (hidden_act 'silu')")
    t = {k: v.float().numpy() for k, v in load_file(src + "/model.safetensors").items()}
    d, heads, L = c["hidden_size"], c["num_attention_heads"], c["num_hidden_layers"]
    arch = "llama" if variant == "llama" else "bitnet"
    embed = t["model.embed_tokens.weight"]
    head = embed if c.get("tie_word_embeddings") else t["lm_head.weight"]
    if arch == "bitnet" and not np.array_equal(head, embed):
        raise Unmappable("llama.cpp's bitnet architecture ties the output head to token_embd; "
                         "this checkpoint's lm_head.weight differs from model.embed_tokens.weight")

    w = gguf.GGUFWriter(out, arch)
    w.add_name("pquant-" + variant)
    w.add_context_length(c["max_position_embeddings"])
    w.add_embedding_length(d)
    w.add_block_count(L)
    w.add_feed_forward_length(c["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(heads)
    w.add_rope_dimension_count(d // heads)
    w.add_rope_freq_base(float(c.get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(float(c.get("rms_norm_eps", EPS)))
    w.add_vocab_size(c["vocab_size"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_TQ2_0 if arch == "bitnet" and ternary == "tq2_0"
                    else gguf.LlamaFileType.MOSTLY_Q8_0 if arch == "llama"
                    else gguf.LlamaFileType.ALL_F32)

    def f32(name, x):
        w.add_tensor(name, x.astype(np.float32))

    def linear(name, x):
        if arch == "llama":
            q, qt = quantized(x, QT.Q8_0 if x.shape[-1] % 32 == 0 else QT.F32)
            w.add_tensor(name + ".weight", q, raw_dtype=qt)
        else:
            codes, gamma = ternary_codes(x)
            q, qt = quantized(codes, TERNARY[ternary])
            w.add_tensor(name + ".weight", q, raw_dtype=qt)
            f32(name + ".scale", np.array([gamma], dtype=np.float32))

    f32("token_embd.weight", embed)
    f32("output_norm.weight", t["model.norm.weight"])
    if arch == "llama":
        linear("output", head)
    for l in range(L):
        p, g = "model.layers.%d." % l, "blk.%d." % l
        f32(g + "attn_norm.weight", t[p + "input_layernorm.weight"])
        f32(g + "ffn_norm.weight", t[p + "post_attention_layernorm.weight"])
        q, k = t[p + "self_attn.q_proj.weight"], t[p + "self_attn.k_proj.weight"]
        if arch == "llama":
            q, k = llama_permute(q, heads), llama_permute(k, heads)
        else:
            f32(g + "attn_sub_norm.weight", t[p + "self_attn.attn_sub_norm.weight"])
            f32(g + "ffn_sub_norm.weight", t[p + "mlp.ffn_sub_norm.weight"])
        linear(g + "attn_q", q)
        linear(g + "attn_k", k)
        linear(g + "attn_v", t[p + "self_attn.v_proj.weight"])
        linear(g + "attn_output", t[p + "self_attn.o_proj.weight"])
        linear(g + "ffn_gate", t[p + "mlp.gate_proj.weight"])
        linear(g + "ffn_up", t[p + "mlp.up_proj.weight"])
        linear(g + "ffn_down", t[p + "mlp.down_proj.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return arch


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", help="directory with config.json and model.safetensors")
    ap.add_argument("out", help="GGUF file to write")
    ap.add_argument("--ternary", choices=sorted(TERNARY), default="tq2_0",
                    help="type of bitnet158's ternary codes (default tq2_0)")
    a = ap.parse_args()
    try:
        arch = convert(a.src, a.out, a.ternary)
    except (Unmappable, KeyError, OSError) as e:
        print("hf_to_gguf: %s: %s" % (a.src, e), file=sys.stderr)
        sys.exit(1)
    print("hf_to_gguf: %s -> %s (architecture %s)" % (a.src, a.out, arch))


if __name__ == "__main__":
    main()
