#!/usr/bin/env python3
"""A small PyTorch re-implementation of train_lm's training path (FP, BitNet, pQuant N >= 1).

It starts from a train_lm checkpoint (usually `--save-init`, the state before step 1), draws the
same training batches (pquant's SplitMix64 sampler, seeded from the checkpoint's data Rng state)
and takes the same optimizer steps, written independently of the C++ code from docs/method.md:

  blocks     h = x + Attn(x), y = h + FFN(h); embedding, final RMSNorm and head in FP32
  RMSNorm    x / sqrt(mean(x^2) + 1e-5) * gain
  BitLinear  Y = Q_a(a) Q_w(W)^T, a = RMSNorm(X) for O and down projections (own norm), the
             sublayer's shared norm for Q/K/V and gate/up; STE identity on both quantizers
  Q_w 1-bit  sign(W - mean W) * mean|W| per tensor (sign(0) = +1)
  Q_w INT8   per output row absmax, round half to even
  Q_a        INT8 per token absmax, round half to even
  attention  RoPE (i with i + hd/2), causal softmax
  pQuant FFN a = RMSNorm(x); Y = alpha * p_e * FFN_int8^(e)(a) + beta * FFN_int1(a); top-1 router
             (N > 1) with the Switch load-balancing loss 0.01
  optimizer  global-norm clipping 1.0, AdamW (0.9, 0.95, 1e-8), decay on *.weight only, the
             two-phase schedule (warm-up, peak -> 0.5 peak, 0.4 peak -> phase2_end x peak)

It is a check, not a dependency: no test needs torch. Typical use (the d_model 256 setup):

  train_lm ... --steps 1000 --save-init init.st --stop-at 20 --save s20.st --log-every 1 > lib.log
  pquant_torch_ref.py --init init.st --data tinyshakespeare.txt --steps 20 \
      --compare s20.st --lib-log lib.log

prints both loss curves step by step and, per tensor, how far the parameters (and AdamW moments)
of the two implementations are apart after the last step. Options move single choices away from
train_lm's (--phase2-end, --alpha-init, --beta-init, ...) to screen them without the C++ build.
"""
import argparse
import json
import math
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open

MASK64 = (1 << 64) - 1


class SplitMix64:
    """pquant::Rng (layers/init.hpp): the data sampler's generator."""

    def __init__(self, state):
        self.state = state & MASK64

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n):
        threshold = ((1 << 64) - n) % n
        while True:
            r = self.next_u64()
            if r >= threshold:
                return r % n


def load_checkpoint(path):
    tensors, meta = {}, {}
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    return tensors, meta


# ---- quantizers (straight-through: forward the quantized value, backward the identity) ----


def ste(x, xq):
    return x + (xq - x).detach()


def quant_act(a):
    amax = a.detach().abs().amax(dim=-1, keepdim=True).clamp_min(1e-5)
    gain = 127.0 / amax
    q = torch.round(a.detach() * gain).clamp(-128, 127)  # torch.round: half to even
    return ste(a, q / gain)


def quant_sign(w):
    wd = w.detach()
    mu = wd.double().mean().float()
    lam = wd.double().abs().mean().float()
    return ste(w, torch.where(wd >= mu, lam, -lam))


def quant_int8_row(w):
    wd = w.detach()
    amax = wd.abs().amax(dim=1, keepdim=True).clamp_min(1e-5)
    q = torch.round(wd * (127.0 / amax)).clamp(-128, 127)
    return ste(w, (amax / 127.0) * q)


def rmsnorm(x, gain):
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-5) * gain.view(-1)


class Model:
    def __init__(self, P, cfg, opts):
        self.P, self.cfg, self.opts = P, cfg, opts
        self.variant = cfg["variant"]
        hd = cfg["d_model"] // cfg["heads"]
        half = hd // 2
        theta = np.array([opts.rope_base ** (-2.0 * i / hd) for i in range(half)])
        ang = np.arange(cfg["context"])[:, None] * theta[None, :]
        self.cos = torch.tensor(np.cos(ang), dtype=torch.float32)
        self.sin = torch.tensor(np.sin(ang), dtype=torch.float32)

    # A projection of `kind` ("fp", "sign", "int8") on an input already normalized (own=False) or
    # normalized here with the projection's own RMSNorm (own=True).
    def proj(self, x, name, kind, own):
        P = self.P
        if own:
            x = rmsnorm(x, P[name + ".norm.gain"])
        w = P[name + ".weight"]
        if kind == "sign":
            return quant_act(x) @ quant_sign(w).t()
        if kind == "int8":
            return quant_act(x) @ quant_int8_row(w).t()
        return x @ w.t()

    def rope(self, x):  # x [B, T, H, hd]
        T, half = x.shape[1], x.shape[3] // 2
        c, s = self.cos[:T, None, :], self.sin[:T, None, :]
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1)

    def attention(self, x, l, B, T):
        p = f"blocks.{l}.attn"
        kind = "fp" if self.variant == "fp" else "sign"
        H = self.cfg["heads"]
        a = rmsnorm(x, self.P[p + ".norm.gain"])
        q, k, v = (self.proj(a, f"{p}.{n}", kind, False) for n in "qkv")
        q, k, v = (t.view(B, T, H, -1) for t in (q, k, v))
        q, k = self.rope(q), self.rope(k)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, hd]
        s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        o = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1) @ v
        o = o.transpose(1, 2).reshape(B * T, -1)
        return self.proj(o, p + ".o", kind, True)

    def branch(self, a, p, kind):
        g = self.proj(a, p + ".gate", kind, False)
        u = self.proj(a, p + ".up", kind, False)
        return self.proj(F.silu(g) * u, p + ".down", kind, True)

    def ffn(self, x, l):
        p = f"blocks.{l}.ffn"
        a = rmsnorm(x, self.P[p + ".norm.gain"])
        if self.variant != "pquant":
            return self.branch(a, p, "fp" if self.variant == "fp" else "sign"), 0.0
        y1 = self.branch(a, p + ".int1", "sign")
        n_exp = self.cfg["experts"]
        aux = 0.0
        if n_exp == 1:
            y8 = self.branch(a, p + ".experts.0", "int8")
        else:
            probs = torch.softmax(a @ self.P[p + ".router.weight"].t(), dim=-1)
            choice = probs.detach().argmax(dim=-1)  # first maximum: ties -> lowest index
            chosen = probs.gather(1, choice[:, None])
            y8 = torch.zeros_like(a)
            for e in range(n_exp):
                idx = (choice == e).nonzero().flatten()
                if idx.numel() == 0:
                    continue
                y8 = y8.index_copy(0, idx, self.branch(a[idx], f"{p}.experts.{e}", "int8"))
            y8 = y8 * chosen
            frac = torch.bincount(choice, minlength=n_exp).float() / a.shape[0]
            aux = self.opts.aux_coef * n_exp * (frac * probs.mean(dim=0)).sum()
        alpha, beta = self.P[p + ".alpha"].view(()), self.P[p + ".beta"].view(())
        return alpha * y8 + beta * y1, aux

    def loss(self, inputs, targets, B, T):
        P = self.P
        x = P["embed.table"][inputs]
        aux_total = 0.0
        for l in range(self.cfg["layers"]):
            h = x + self.attention(x, l, B, T)
            f, aux = self.ffn(h, l)
            x = h + f
            aux_total = aux_total + aux
        x = rmsnorm(x, P["final_norm.gain"])
        ce = F.cross_entropy(x @ P["head.weight"].t(), targets)
        return ce, aux_total


def schedule(step, cfg, opts):
    """TwoPhaseSchedule::at (training/schedule.hpp), float32 results."""
    peak, warm, total = np.float32(cfg["lr"]), cfg["warmup"], cfg["steps"]
    wd = np.float32(cfg["weight_decay"])
    mid = total // 2
    f = lambda v: float(np.float32(v))
    if step < warm and step < mid:
        return f(float(peak) * (step + 1) / warm), float(wd)
    if step < mid:
        t = (step - warm) / (mid - warm)
        return f(float(peak) + (float(peak) * 0.5 - float(peak)) * t), float(wd)
    t = (min(step, total) - mid) / (total - mid)
    a, b = float(peak) * float(np.float32(0.4)), float(peak) * float(np.float32(opts.phase2_end))
    return f(a + (b - a) * t), 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--init", required=True, help="train_lm checkpoint to start from (--save-init)")
    ap.add_argument("--data", required=True, help="the training text train_lm read (--data)")
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps to take")
    ap.add_argument("--compare", help="train_lm checkpoint after the same steps (--stop-at/--save)")
    ap.add_argument("--lib-log", help="train_lm's stdout with --log-every 1 (its loss per step)")
    ap.add_argument("--phase2-end", type=float, default=0.0, help="phase 2 ends at this x peak")
    ap.add_argument("--alpha-init", type=float, help="override alpha at step 0 (every layer)")
    ap.add_argument("--beta-init", type=float, help="override beta at step 0 (every layer)")
    ap.add_argument("--scalar-lr-mult", type=float, default=1.0, help="alpha/beta lr multiplier")
    ap.add_argument("--aux-coef", type=float, default=0.01)
    ap.add_argument("--rope-base", type=float, default=10000.0)
    ap.add_argument("--json", action="store_true", help="end with a JSON line of the losses")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 unless every step's loss is within --max-step-diff of train_lm's, "
                         "their mean difference within --max-mean-diff and alpha/beta within "
                         "--max-scalar-diff (relative) after the last step")
    ap.add_argument("--max-step-diff", type=float, default=0.02)
    ap.add_argument("--max-mean-diff", type=float, default=0.003)
    ap.add_argument("--max-scalar-diff", type=float, default=0.01)
    opts = ap.parse_args()
    torch.manual_seed(0)

    tensors, meta = load_checkpoint(opts.init)
    cfg = json.loads(meta["pquant.meta"])
    for option in ("fused_qkv", "block_norm", "phase2_end"):  # train_lm options not re-implemented
        if cfg.get(option):
            sys.exit(f"pquant_torch_ref.py: the checkpoint was trained with {option}, which this "
                     "re-implementation does not have")
    start = int(tensors["training.step"][0])
    rng = SplitMix64(int(meta["pquant.rng"]))
    names = [k for k in tensors if not k.startswith(("adamw.", "training."))]
    P = {k: torch.tensor(tensors[k], dtype=torch.float32).requires_grad_(True) for k in names}
    with torch.no_grad():
        for k in P:
            if opts.alpha_init is not None and k.endswith(".alpha"):
                P[k].fill_(opts.alpha_init)
            if opts.beta_init is not None and k.endswith(".beta"):
                P[k].fill_(opts.beta_init)
    m = {k: torch.tensor(tensors["adamw.m." + k]) for k in names}
    v = {k: torch.tensor(tensors["adamw.v." + k]) for k in names}
    adam_t = int(tensors["adamw.step"][0])
    data = np.frombuffer(open(opts.data, "rb").read(), dtype=np.uint8)
    n_val = int(len(data) * 0.1)
    train = data[: len(data) - n_val]
    B, T = cfg["batch"], cfg["context"]
    model = Model(P, cfg, opts)
    lib = {}
    if opts.lib_log:
        for line in open(opts.lib_log):
            mm = re.match(r"step\s+(\d+)/\d+ \| loss ([0-9.]+)", line)
            if mm:
                lib[int(mm.group(1))] = float(mm.group(2))

    b1, b2, eps = 0.9, 0.95, 1e-8
    losses, diffs = [], []
    print(f"torch reference: {cfg['variant']} d_model {cfg['d_model']} layers {cfg['layers']} "
          f"experts {cfg.get('experts')} r {cfg.get('r')} from step {start}")
    for s in range(start, start + opts.steps):
        starts = len(train) - T
        rows = [rng.below(starts) for _ in range(B)]
        win = np.stack([train[r : r + T + 1] for r in rows]).astype(np.int64)
        inputs = torch.tensor(win[:, :T].reshape(-1))
        targets = torch.tensor(win[:, 1:].reshape(-1))
        for p in P.values():
            p.grad = None
        ce, aux = model.loss(inputs, targets, B, T)
        (ce + aux).backward()
        with torch.no_grad():
            sq = sum(float((p.grad.double() ** 2).sum()) for p in P.values())
            norm = math.sqrt(sq)
            if norm > 1.0:
                scale = float(np.float32(1.0 / (norm + 1e-6)))
                for p in P.values():
                    p.grad.mul_(scale)
            lr, wd = schedule(s, cfg, opts)
            adam_t += 1
            bc1, bc2 = 1.0 - b1**adam_t, 1.0 - b2**adam_t
            for k, p in P.items():
                g = p.grad
                plr = lr * (opts.scalar_lr_mult if k.endswith((".alpha", ".beta")) else 1.0)
                if k.endswith(".weight"):  # ParamRole::kWeight decays; tables, gains, scalars not
                    p.mul_(float(np.float32(1.0) - np.float32(plr) * np.float32(wd)))
                m[k].mul_(b1).add_(g, alpha=1 - b1)
                v[k].mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = v[k].sqrt() * float(np.float32(1.0 / math.sqrt(bc2))) + eps
                p.sub_(float(np.float32(plr / bc1)) * (m[k] / denom))
        losses.append(float(ce))
        ref = lib.get(s + 1)
        extra = ""
        if ref is not None:
            diffs.append(float(ce) - ref)
            extra = f" | train_lm {ref:.4f} | diff {diffs[-1]:+.4f}"
        ab = ""
        if cfg["variant"] == "pquant":
            al = [float(P[f"blocks.{l}.ffn.alpha"]) for l in range(cfg["layers"])]
            be = [float(P[f"blocks.{l}.ffn.beta"]) for l in range(cfg["layers"])]
            ab = " | alpha/beta " + " ".join(f"{x:.3f}/{y:.3f}" for x, y in zip(al, be))
        print(f"step {s + 1:5d} | loss {float(ce):.6f}{extra} | gnorm {norm:.4f} | lr {lr:.3e}{ab}",
              flush=True)

    scalar_diff = 0.0
    if opts.compare:
        ct, cmeta = load_checkpoint(opts.compare)
        assert int(ct["training.step"][0]) == start + opts.steps, "compare: not the same step"
        print("per tensor after the last step: max |diff| / max |train_lm|, parameters and moments")
        worst = 0.0
        for k in names:
            rows = []
            for label, ours, theirs in (("param", P[k].detach(), ct[k]), ("m", m[k], ct["adamw.m." + k]),
                                        ("v", v[k], ct["adamw.v." + k])):
                theirs = torch.tensor(theirs)
                rel = float((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-30))
                rows.append(f"{label} {rel:.2e}")
                if label == "param":
                    worst = max(worst, rel)
                    if k.endswith((".alpha", ".beta")):
                        scalar_diff = max(scalar_diff, rel)
            print(f"  {k:40s} " + " | ".join(rows))
        print(f"largest parameter difference (relative to the tensor's max): {worst:.3e}")
    if opts.json:
        print(json.dumps({"losses": losses}))
    if opts.check:
        if not diffs or not opts.compare:
            print("--check needs --lib-log and --compare")
            return 2
        largest, mean = max(abs(d) for d in diffs), sum(diffs) / len(diffs)
        ok = (largest <= opts.max_step_diff and abs(mean) <= opts.max_mean_diff and
              scalar_diff <= opts.max_scalar_diff)
        print(f"check {'passed' if ok else 'FAILED'}: largest step difference {largest:.4f} "
              f"(limit {opts.max_step_diff}), mean {mean:+.5f} (limit {opts.max_mean_diff}), "
              f"alpha/beta {scalar_diff:.2e} (limit {opts.max_scalar_diff})")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
