#!/usr/bin/env python3
"""Test of tools/hf_to_gguf.py (ctest hf_to_gguf; exit 77 = skipped when gguf/torch are missing).

Writes tiny random checkpoints in the HF naming, converts them, reads the GGUF back with gguf's
own reader and dequantizer and checks: bitnet158's TQ2_0 codes equal the ternary codes of
docs/method.md section 2 and `.scale` their mean|W|; llama's Q8_0 weights are the originals within
Q8_0's rounding, q/k rows in llama.cpp's interleaved order; unmappable variants are refused.
Usage: python tools/test_hf_to_gguf.py DATA_DIR WORK_DIR   (DATA_DIR: tests/data/hf)
"""
import json
import os
import subprocess
import sys

try:
    import numpy as np
    import torch
    import gguf
    from safetensors.torch import save_file
except ImportError as e:
    print("SKIPPED: %s (scripts/install-deps.sh makes .venv)" % e)
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hf_to_gguf  # noqa: E402


def tiny(dirname, arch, d, heads, dff, tied, sub_norms):
    g = torch.Generator().manual_seed(7)
    t = {"model.embed_tokens.weight": torch.randn(32, d, generator=g),
         "model.norm.weight": 1 + 0.1 * torch.randn(d, generator=g)}
    if not tied:
        t["lm_head.weight"] = torch.randn(32, d, generator=g) / d ** 0.5
    p = "model.layers.0."
    for n in ("input_layernorm", "post_attention_layernorm"):
        t[p + n + ".weight"] = 1 + 0.1 * torch.randn(d, generator=g)
    for n in "qkvo":
        t[p + "self_attn.%s_proj.weight" % n] = torch.randn(d, d, generator=g) / d ** 0.5
    for n, shape in (("gate", (dff, d)), ("up", (dff, d)), ("down", (d, dff))):
        t[p + "mlp.%s_proj.weight" % n] = torch.randn(*shape, generator=g) / shape[1] ** 0.5
    if sub_norms:
        t[p + "self_attn.attn_sub_norm.weight"] = 1 + 0.1 * torch.randn(d, generator=g)
        t[p + "mlp.ffn_sub_norm.weight"] = 1 + 0.1 * torch.randn(dff, generator=g)
    os.makedirs(dirname, exist_ok=True)
    save_file(t, dirname + "/model.safetensors")
    c = {"architectures": [arch], "vocab_size": 32, "hidden_size": d, "num_hidden_layers": 1,
         "num_attention_heads": heads, "num_key_value_heads": heads, "intermediate_size": dff,
         "max_position_embeddings": 128, "hidden_act": "silu", "rms_norm_eps": 1e-5,
         "rope_theta": 10000.0, "tie_word_embeddings": tied}
    with open(dirname + "/config.json", "w") as f:
        json.dump(c, f)
    return {k: v.numpy() for k, v in t.items()}


def read(path):
    r = gguf.GGUFReader(path)
    out = {}
    for t in r.tensors:
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))
        out[t.name] = (t.tensor_type, gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape))
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
    return arch, out


def run(*args):
    return subprocess.run([sys.executable, os.path.join(HERE, "hf_to_gguf.py"), *args],
                          capture_output=True, text=True)


def main():
    data, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    failures = []

    def check(ok, what):
        if not ok:
            failures.append(what)

    # bitnet158, tied, d = 256 (TQ2_0 blocks of 256 values).
    src = tiny(work + "/bitnet158", "BitNetForCausalLM", 256, 4, 256, True, True)
    r = run(work + "/bitnet158", work + "/bitnet158.gguf")
    check(r.returncode == 0, "bitnet158 conversion failed: " + r.stderr)
    arch, ts = read(work + "/bitnet158.gguf")
    check(arch == "bitnet", "architecture " + arch)
    check("output.weight" not in ts, "bitnet writes no output head")
    for hf, gg in (("self_attn.q_proj", "attn_q"), ("self_attn.o_proj", "attn_output"),
                   ("mlp.down_proj", "ffn_down")):
        w = src["model.layers.0.%s.weight" % hf]
        gamma = np.float32(np.abs(w.astype(np.float64)).mean())
        codes = np.clip(np.rint(w / (gamma + np.float32(1e-5))), -1, 1)
        qt, v = ts["blk.0.%s.weight" % gg]
        check(qt == gguf.GGMLQuantizationType.TQ2_0, gg + " type " + str(qt))
        check(np.array_equal(v, codes), gg + ": TQ2_0 codes differ from the ternary codes")
        check(float(ts["blk.0.%s.scale" % gg][1][0]) == float(gamma), gg + ": scale")
    check(np.array_equal(ts["blk.0.ffn_sub_norm.weight"][1],
                         src["model.layers.0.mlp.ffn_sub_norm.weight"]), "ffn_sub_norm")

    # llama, untied, d = 64: Q8_0 (error <= half a step plus the FP16 block scale), q/k permuted.
    src = tiny(work + "/llama", "LlamaForCausalLM", 64, 4, 96, False, False)
    r = run(work + "/llama", work + "/llama.gguf")
    check(r.returncode == 0, "llama conversion failed: " + r.stderr)
    arch, ts = read(work + "/llama.gguf")
    check(arch == "llama", "architecture " + arch)
    q = src["model.layers.0.self_attn.q_proj.weight"]
    qt, v = ts["blk.0.attn_q.weight"]
    check(qt == gguf.GGMLQuantizationType.Q8_0, "attn_q type " + str(qt))
    hd = 16
    for h in range(4):
        for i in range(hd // 2):  # rotate_half row i of head h -> interleaved row 2i
            row, back = q[h * hd + i], v[h * hd + 2 * i]
            check(np.abs(row - back).max() <= np.abs(row).max() / 127 * 0.6 + 1e-6,
                  "attn_q row %d of head %d not at interleaved row %d" % (i, h, 2 * i))
    check(ts["output.weight"][1].shape == (32, 64), "output head shape")

    # Unmappable: pQuant's decoupled FFN; bitnet158 whose head is not the embedding.
    r = run(data + "/pquant", work + "/pquant.gguf")
    check(r.returncode == 1 and "variant 'pquant' has no llama.cpp architecture" in r.stderr,
          "pquant not refused: " + r.stderr)
    tiny(work + "/untied", "BitNetForCausalLM", 256, 4, 256, False, True)
    r = run(work + "/untied", work + "/untied.gguf")
    check(r.returncode == 1 and "ties the output head" in r.stderr, "untied: " + r.stderr)
    r = run(data + "/bitnet158", work + "/small.gguf")
    check(r.returncode == 1 and "TQ2_0 needs rows of a multiple of 256" in r.stderr,
          "small rows: " + r.stderr)

    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print("test_hf_to_gguf: bitnet158 -> bitnet (TQ2_0 + scale), llama -> llama (Q8_0), "
          "refusals as documented")


if __name__ == "__main__":
    main()
