#!/usr/bin/env python3
"""Draws pquant's figures from the JSON its tools write (matplotlib; Debian python3-matplotlib).

  plot_results.py heatmap --out FIG.png [--title T] MAP.json [MAP.json ...]
      sensitivity maps written by analyze_sensitivity (one panel each, log colour scale, colour bar,
      the projection's name, shape, Gini and top-1% share in the panel title).
  plot_results.py lines --out FIG.png --x KEY --y KEY [--group KEY] [--logx] [--title T]
                  [--xlabel L] [--ylabel L] RESULT.json [RESULT.json ...]
      one line per value of --group through the points (x, y) of the result files (train_lm --json
      lines; a file may hold several JSON objects, one per line).

Run it with the project's interpreter (scripts/pquant_python.sh prints it): the python3 on PATH
may not see Debian's matplotlib.
"""
import argparse
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402


def fail(msg):
    print("plot_results.py: " + msg, file=sys.stderr)
    sys.exit(1)


def read_json_objects(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        fail(f"cannot read '{path}': {e.strerror}")
    objs = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            objs.append(json.loads(line))
        except json.JSONDecodeError as e:
            fail(f"'{path}' line {n}: not JSON ({e.msg})")
    if not objs:
        fail(f"'{path}' holds no JSON object")
    return objs


def heatmap(args):
    maps = []
    for path in args.inputs:
        obj = read_json_objects(path)[-1]
        if "heatmap" not in obj or "name" not in obj:
            fail(f"'{path}' is not a sensitivity map (no 'heatmap'/'name'; written by analyze_sensitivity?)")
        maps.append(obj)
    n = len(maps)
    cols = min(n, args.columns)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    # One colour scale per panel: variants differ by orders of magnitude in s, and each map shows
    # how s is spread inside its own layer.
    for ax, m in zip(axes.flat, maps):
        grid = [[v if v > 0 else float("nan") for v in row] for row in m["heatmap"]]
        flat = [v for row in grid for v in row if not math.isnan(v)]
        if not flat:
            ax.set_title(m["name"] + " (all zero)")
            continue
        lo, hi = min(flat), max(flat)
        if hi <= lo:
            hi = lo * 1.0001
        im = ax.imshow(grid, norm=LogNorm(vmin=lo, vmax=hi), cmap="viridis", aspect="auto",
                       interpolation="nearest")
        pool = m.get("pool", {})
        title = f"{m.get('variant', '')} {m['name']}\n{m['rows']}x{m['cols']}"
        if pool.get("block_rows", 1) > 1 or pool.get("block_cols", 1) > 1:
            title += f" (max over {pool['block_rows']}x{pool['block_cols']})"
        title += f"\nGini {m['gini']:.3f}, top-1% share {m['top1pct_share']:.3f}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("input column j")
        ax.set_ylabel("output row i")
        fig.colorbar(im, ax=ax, label="s_ij (log)")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    save(fig, args.out)


def lines(args):
    points = {}
    for path in args.inputs:
        for obj in read_json_objects(path):
            if args.x not in obj or args.y not in obj:
                continue
            key = str(obj.get(args.group, "")) if args.group else ""
            points.setdefault(key, []).append((float(obj[args.x]), float(obj[args.y])))
    if not points:
        fail(f"no result holds both '{args.x}' and '{args.y}'")
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for key in sorted(points):
        pts = sorted(points[key])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key or None)
    if args.logx:
        ax.set_xscale("log")
    ax.set_xlabel(args.xlabel or args.x)
    ax.set_ylabel(args.ylabel or args.y)
    ax.grid(True, alpha=0.3)
    if args.group:
        ax.legend(title=args.group)
    if args.title:
        ax.set_title(args.title)
    fig.tight_layout()
    save(fig, args.out)


def save(fig, out):
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory):
        fail(f"cannot write '{out}': the directory '{directory}' does not exist")
    tmp = out + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, out)  # atomic: a reader never sees half a file


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="kind", required=True)
    h = sub.add_parser("heatmap", help="sensitivity maps")
    h.add_argument("--out", required=True)
    h.add_argument("--title", default="")
    h.add_argument("--columns", type=int, default=3)
    h.add_argument("inputs", nargs="+")
    h.set_defaults(run=heatmap)
    ln = sub.add_parser("lines", help="curves through result files")
    ln.add_argument("--out", required=True)
    ln.add_argument("--x", required=True)
    ln.add_argument("--y", required=True)
    ln.add_argument("--group", default="")
    ln.add_argument("--logx", action="store_true")
    ln.add_argument("--title", default="")
    ln.add_argument("--xlabel", default="")
    ln.add_argument("--ylabel", default="")
    ln.add_argument("inputs", nargs="+")
    ln.set_defaults(run=lines)
    args = p.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
