#!/usr/bin/env python3
"""Loads a checkpoint in the Hugging Face naming with safetensors.torch.load_file and checks that
its tensors are exactly those config.json implies, with the shapes it declares
(docs/model-format.md, "HF naming"). Exit 0 and one line on success, 1 and the differences if not.

Usage: .venv/bin/python tools/hf_check.py DIR     (DIR holds config.json and model.safetensors)
"""
import json
import sys

from safetensors.torch import load_file


def expected(c):
    h, V, f = c["hidden_size"], c["vocab_size"], c["intermediate_size"]
    arch = c["architectures"][0]
    variant = c.get("pquant_variant", {"LlamaForCausalLM": "llama",
                                       "PQuantForCausalLM": "pquant"}.get(arch, "bitnet158"))
    gated = c.get("pquant_ffn_gated", True)
    want = {"model.embed_tokens.weight": (V, h), "model.norm.weight": (h,)}
    if not c.get("tie_word_embeddings", False):
        want["lm_head.weight"] = (V, h)

    def branch(p, w):
        if gated:
            want[p + "gate_proj.weight"] = (w, h)
        want[p + "up_proj.weight"] = (w, h)
        want[p + "down_proj.weight"] = (h, w)
        if variant != "llama":
            want[p + "ffn_sub_norm.weight"] = (w,)

    for l in range(c["num_hidden_layers"]):
        p = "model.layers.%d." % l
        want[p + "input_layernorm.weight"] = (h,)
        want[p + "post_attention_layernorm.weight"] = (h,)
        for x in "qkvo":
            want[p + "self_attn.%s_proj.weight" % x] = (h, h)
        if variant != "llama":
            want[p + "self_attn.attn_sub_norm.weight"] = (h,)
        if variant == "pquant":
            r, n = c["pquant_expert_intermediate_size"], c["pquant_num_experts"]
            branch(p + "mlp.", f - r)
            for e in range(n):
                branch(p + "mlp.int8_experts.%d." % e, r)
            if n > 1:
                want[p + "mlp.router.weight"] = (n, h)
            want[p + "mlp.alpha"] = ()
            want[p + "mlp.beta"] = ()
        else:
            branch(p + "mlp.", f)
    return want


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    with open(d + "/config.json") as fh:
        c = json.load(fh)
    t = load_file(d + "/model.safetensors")
    want = expected(c)
    problems = ["missing " + k for k in sorted(set(want) - set(t))]
    problems += ["unexpected " + k for k in sorted(set(t) - set(want))]
    problems += ["%s has shape %s, config.json implies %s" % (k, tuple(t[k].shape), want[k])
                 for k in sorted(set(t) & set(want)) if tuple(t[k].shape) != want[k]]
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print("hf_check: %s: %d tensors (%s) with the shapes config.json declares"
          % (d, len(t), ", ".join(sorted({str(v.dtype) for v in t.values()}))))


if __name__ == "__main__":
    main()
