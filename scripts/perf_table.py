#!/usr/bin/env python3
"""Runs pquant's benchmarks and turns their Google Benchmark JSON into docs/performance.md's table.

  scripts/perf_table.py run   [--build-dir build/bench] [--out docs/results/bench] [--quick] [NAME...]
  scripts/perf_table.py table [--results docs/results/bench] [--page docs/performance.md] [--check]

`run` executes each benchmark of the suite (NAME: gemv, gemm, decode, training, lut_step; all by
default) with a fixed command line and writes <out>/bench_<name>.json. The JSON's "context" gets
the CPU model and SIMD flags (from /proc/cpuinfo), the exact command and the source revision
(the host name is dropped), so the table can
say what was measured where and how. `--quick` runs a reduced filter with fewer repetitions: only
to check that the pipeline works, never for figures to quote (the table says so).

`table` reads every bench_*.json in --results and replaces the text between the markers
<!-- perf-table:begin --> and <!-- perf-table:end --> of --page with one table per file (machine,
date, load, command, then one row per benchmark: median time and counters) and the derived ratios
the page explains. `--check` writes nothing and fails if the page differs from what it would write.

Python standard library only.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

BEGIN = "<!-- perf-table:begin -->"
END = "<!-- perf-table:end -->"

AGG = ["--benchmark_report_aggregates_only=true"]

# name -> (binary relative to the build dir, full arguments, quick arguments)
SUITE = {
    "gemv": (
        "bench/kernels/bench_gemv",
        ["--benchmark_repetitions=5", *AGG,
         "--benchmark_filter=BM_gemv/(f32|w1a8|w2a8|w8a8|codebook2)/(4096/4096|11008/4096)/"
         "|BM_gemv_dram/|BM_read_bandwidth_dram/"],
        ["--benchmark_repetitions=3", *AGG, "--benchmark_min_time=0.1",
         "--benchmark_filter=BM_gemv/(f32|w1a8|w2a8|w8a8)/4096/4096/|BM_gemv_dram/w1a8/"
         "|BM_read_bandwidth_dram/2097152/"],
    ),
    "gemm": (
        "bench/kernels/bench_gemm",
        ["--benchmark_repetitions=3", *AGG, "--benchmark_filter=(w1a8|w8a8)/(8|32)/"],
        ["--benchmark_repetitions=3", *AGG, "--benchmark_min_time=0.1",
         "--benchmark_filter=(w1a8|w8a8)/8/4096/4096/"],
    ),
    "decode": (
        "bench/decode/bench_decode",
        ["--benchmark_repetitions=3", *AGG],
        ["--benchmark_repetitions=3", *AGG, "--benchmark_filter=BM_decode/(pquant/1|bitnet/1)/1/"],
    ),
    "training": (
        "bench/training/bench_training",
        ["--benchmark_repetitions=3", *AGG, "--benchmark_filter=TrainStep|Elementwise"],
        ["--benchmark_repetitions=3", *AGG, "--benchmark_filter=TrainStep<pquant::FP>/threads:1/"],
    ),
    "lut_step": (
        "bench/kernels/bench_lut_step",
        ["--benchmark_repetitions=40", *AGG],
        ["--benchmark_repetitions=5", *AGG],
    ),
}

# Which aggregate a table shows: medians, except the LUT step, whose floor is the figure of
# interest (its ablations are compared by their fastest repetition).
STATISTIC = {"lut_step": "min"}

TITLES = {
    "gemv": "Batch-1 GEMV kernels (`bench_gemv`)",
    "gemm": "Prefill GEMM kernels (`bench_gemm`)",
    "decode": "Decoding at the 700M shape (`bench_decode`)",
    "training": "Training step (`bench_training`)",
    "lut_step": "LUT inner step (`bench_lut_step`)",
}


def fail(msg: str) -> None:
    print(f"perf_table.py: {msg}", file=sys.stderr)
    sys.exit(2)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def cpu_flags() -> str:
    """The SIMD extensions that decide which Highway target runs."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    keep = ["sse4_2", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni",
                            "avx512vbmi"]
                    return " ".join(k for k in keep if k in flags)
    except OSError:
        pass
    return ""


def revision(repo: Path) -> str:
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "include",
                                "bench"], capture_output=True, text=True, check=True).stdout
        return rev + ("+local changes" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cmd_run(args: argparse.Namespace) -> None:
    repo = Path(__file__).resolve().parent.parent
    build = Path(args.build_dir)
    out = Path(args.out)
    names = args.names or list(SUITE)
    for n in names:
        if n not in SUITE:
            fail(f"run: unknown benchmark '{n}' (expected one of {', '.join(SUITE)})")
    out.mkdir(parents=True, exist_ok=True)
    for n in names:
        binary, full, quick = SUITE[n]
        exe = build / binary
        if not os.access(exe, os.X_OK):
            fail(f"run: {exe} is missing; build it with "
                 f"'cmake --preset bench && cmake --build {build} --target {Path(binary).name}'")
        bench_args = quick if args.quick else full
        try:  # shown relative to the source tree: no machine's paths in the page
            exe_shown = Path(os.path.relpath(exe.resolve(), repo))
            if exe_shown.parts and exe_shown.parts[0] == "..":
                exe_shown = Path(exe.name)
        except ValueError:
            exe_shown = Path(exe.name)
        shown = " ".join(shlex.quote(a) for a in [exe_shown.as_posix(), *bench_args])
        dest = out / f"bench_{n}.json"
        tmp = dest.with_suffix(".json.tmp")
        context = {
            "pquant_command": shown,
            "pquant_quick": "yes" if args.quick else "no",
            "cpu_model": cpu_model(),
            "cpu_flags": cpu_flags(),
            "pquant_revision": revision(repo),
        }
        cmd = [str(exe), *bench_args, f"--benchmark_out={tmp}", "--benchmark_out_format=json"]
        print(f"perf_table.py: {shown}", flush=True)
        r = subprocess.run(cmd, check=False)
        if r.returncode != 0:
            fail(f"run: {exe.name} exited with {r.returncode}; {dest} left unchanged")
        # Google Benchmark's --benchmark_context cannot carry commas or '=' in a value (a
        # command has both), so the keys are added to the JSON's "context" afterwards.
        try:
            doc = json.loads(tmp.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            fail(f"run: {exe.name} wrote no readable JSON ({e}); did the filter match nothing?")
        if not doc.get("benchmarks"):
            tmp.unlink(missing_ok=True)
            fail(f"run: {exe.name} ran no benchmark (the filter matched nothing); "
                 f"{dest} left unchanged")
        doc.setdefault("context", {}).update(context)
        doc["context"].pop("host_name", None)
        doc["context"]["executable"] = exe_shown.as_posix()
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, dest)


# ---------------------------------------------------------------------------------------------
# table

def si(v: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {prefix}{unit}"
    return f"{v:.3g} {unit}"


def fmt_time(ns: float) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:.3g} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.3g} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.4g} us"
    return f"{ns:.3g} ns"


TO_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}

COUNTERS = [  # (JSON key, column heading, formatter)
    ("weights_per_s", "weights/s", lambda v: si(v, "")),
    ("weight_bytes_per_s", "weight bytes/s", lambda v: si(v, "B/s")),
    ("GFLOP_per_s", "GFLOP/s", lambda v: f"{v:.1f}"),
    ("tokens_per_s", "tokens/s", lambda v: f"{v:,.1f}"),
    ("items_per_second", "tokens/s", lambda v: f"{v:,.0f}"),
    ("weight_bytes_per_token", "weight bytes/token", lambda v: si(v, "B")),
    ("ns_per_step", "ns per 512 weights", lambda v: f"{v:.2f}"),
]


def rows_of(doc: dict, stat: str = "median") -> list[dict]:
    """The `stat` aggregate of each run (another aggregate if absent); plain runs if none."""
    benches = doc.get("benchmarks", [])
    agg = [b for b in benches if b.get("run_type") == "aggregate"]
    if not agg:
        return [b for b in benches if b.get("run_type", "iteration") == "iteration"]
    by_run: dict[str, dict[str, dict]] = {}
    order: list[str] = []
    for b in agg:
        run = b.get("run_name", b["name"])
        if run not in by_run:
            by_run[run] = {}
            order.append(run)
        by_run[run][b.get("aggregate_name", "")] = b
    return [by_run[r].get(stat) or by_run[r].get("median") or next(iter(by_run[r].values()))
            for r in order]


def short_name(run_name: str) -> str:
    """The name without Google Benchmark's option suffixes (/min_time:..., /real_time)."""
    return re.sub(r"/(real_time|process_time|min_time:[0-9.]+|repeats:[0-9]+)", "", run_name)


def machine_line(ctx: dict) -> str:
    parts = [ctx.get("cpu_model", "unknown CPU")]
    if ctx.get("num_cpus"):
        parts.append(f"{ctx['num_cpus']} logical CPUs at {ctx.get('mhz_per_cpu', '?')} MHz")
    caches = []
    for c in ctx.get("caches", []):
        if c.get("type") == "Instruction":
            continue
        size = c.get("size", 0)
        caches.append(f"L{c.get('level')} {size // 1048576} MiB" if size >= 1048576
                      else f"L{c.get('level')} {size // 1024} KiB")
    if caches:
        parts.append(", ".join(caches))
    if ctx.get("cpu_flags"):
        parts.append(f"SIMD: {ctx['cpu_flags']}")
    return "; ".join(parts)


def table_for(name: str, doc: dict) -> str:
    ctx = doc.get("context", {})
    stat = STATISTIC.get(name, "median")
    rows = rows_of(doc, stat)
    if not rows:
        fail(f"table: bench_{name}.json has no benchmark results")
    present = [c for c in COUNTERS if any(c[0] in r for r in rows)]
    # items_per_second and tokens_per_s share a heading; keep one column per heading.
    seen, cols = set(), []
    for c in present:
        if c[1] not in seen:
            seen.add(c[1])
            cols.append(c)
    out = [f"### {TITLES.get(name, name)}", ""]
    load = ctx.get("load_avg")
    meta = [
        f"- machine: {machine_line(ctx)}",
        f"- date: {ctx.get('date', 'unknown')}"
        + (f"; load average at start {load[0]:.2f}" if load else ""),
        f"- source revision: `{ctx.get('pquant_revision', 'unknown')}`",
        f"- command: `{ctx.get('pquant_command', ctx.get('executable', 'unknown'))}`",
    ]
    if ctx.get("pquant_quick") == "yes":
        meta.append("- **quick run** (reduced filter and repetitions): checks the pipeline only; "
                    "regenerate with the full command before quoting figures")
    out += meta
    reps = {r.get("repetitions") for r in rows if r.get("repetitions")}
    used = {r.get("aggregate_name", "single run") for r in rows}
    what = used.pop() if len(used) == 1 else "median"
    label = f"{what} of {reps.pop()} repetitions" if len(reps) == 1 else what
    out += ["", f"| benchmark | {label} | " + " | ".join(c[1] for c in cols) + " |",
            "|---|---:|" + "---:|" * len(cols)]
    for r in rows:
        t = r["real_time"] * TO_NS.get(r.get("time_unit", "ns"), 1.0)
        cells = []
        for key, heading, f in cols:
            alt = [k for k, h, _ in COUNTERS if h == heading]
            v = next((r[k] for k in alt if k in r), None)
            cells.append(f(v) if v is not None else "")
        out.append(f"| `{short_name(r.get('run_name', r['name']))}` | {fmt_time(t)} | "
                   + " | ".join(cells) + " |")
    return "\n".join(out)


def gemv_ratios(doc: dict) -> str:
    """The derived figures performance.md explains, from whichever rows the run contains."""
    rows = {short_name(r.get("run_name", r["name"])): r for r in rows_of(doc)}

    def t(name):
        r = rows.get(name)
        return None if r is None else r["real_time"] * TO_NS.get(r.get("time_unit", "ns"), 1.0)

    def bw(name):
        r = rows.get(name)
        return None if r is None else r.get("weight_bytes_per_s")

    lines = []
    for th in (1, 2):
        for shape in ("4096/4096", "11008/4096"):
            w1, f32, w2 = (t(f"BM_gemv/{k}/{shape}/{th}") for k in ("w1a8", "f32", "w2a8"))
            sh = shape.replace("/", "x")
            if w1 and f32:
                lines.append(f"| W1A8 speed-up over F32, {sh}, {th} thread(s) | {f32 / w1:.1f}x |")
            if w1 and w2:
                lines.append(f"| W1A8 speed-up over W2A8, {sh}, {th} thread(s) | {w2 / w1:.2f}x |")
        cb, w2 = t(f"BM_gemv/codebook2/4096/4096/{th}"), t(f"BM_gemv/w2a8/4096/4096/{th}")
        if cb and w2:
            lines.append(f"| 2-bit codebook time / W2A8 time, 4096x4096, {th} thread(s) | "
                         f"{cb / w2:.2f}x |")
        # DRAM rows: copies rotated over at least twice the last-level cache, against the read
        # bandwidth of buffers of the same size rotated the same way.
        for kind, nbytes in (("w1a8", 2097152), ("w2a8", 4194304)):
            a = bw(f"BM_gemv_dram/{kind}/4096/4096/{th}")
            b = bw(f"BM_read_bandwidth_dram/{nbytes}/{th}")
            if a and b:
                lines.append(f"| DRAM-resident {kind.upper()} 4096x4096 / read bandwidth, "
                             f"{th} thread(s) | {100 * a / b:.0f}% |")
    for shape in ("4096/4096", "11008/4096"):
        one, two = t(f"BM_gemv/w1a8/{shape}/1"), t(f"BM_gemv/w1a8/{shape}/2")
        if one and two:
            lines.append(f"| W1A8 2 threads over 1 thread, {shape.replace('/', 'x')} | "
                         f"{one / two:.2f}x |")
    if not lines:
        return ""
    return "\n".join(["Ratios derived from the GEMV run above:", "", "| ratio | value |",
                      "|---|---:|", *lines])


def render(results: Path) -> str:
    files = sorted(results.glob("bench_*.json"))
    if not files:
        fail(f"table: no bench_*.json in {results}; run 'scripts/perf_table.py run' first")
    known = list(SUITE)
    files.sort(key=lambda p: known.index(p.stem[6:]) if p.stem[6:] in known else len(known))
    parts = ["_Generated by `scripts/perf_table.py table` from "
             f"`{results.as_posix()}/*.json`; do not edit by hand._"]
    for p in files:
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            fail(f"table: cannot read {p}: {e}")
        name = p.stem[len("bench_"):]
        parts.append(table_for(name, doc))
        if name == "gemv":
            ratios = gemv_ratios(doc)
            if ratios:
                parts.append(ratios)
    return "\n\n".join(parts)


def cmd_table(args: argparse.Namespace) -> None:
    page = Path(args.page)
    try:
        text = page.read_text(encoding="utf-8")
    except OSError as e:
        fail(f"table: cannot read --page {page}: {e}")
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        fail(f"table: {page} must contain '{BEGIN}' followed by '{END}', once each")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + BEGIN + "\n" + render(Path(args.results)) + "\n" + END + tail
    if args.check:
        if new != text:
            fail(f"table: {page} is not what the JSON in {args.results} gives; "
                 "run scripts/perf_table.py table")
        return
    tmp = page.with_suffix(page.suffix + ".tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, page)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run benchmarks, write JSON")
    r.add_argument("--build-dir", default="build/bench")
    r.add_argument("--out", default="docs/results/bench")
    r.add_argument("--quick", action="store_true", help="reduced run to check the pipeline")
    r.add_argument("names", nargs="*", help=f"subset of: {', '.join(SUITE)}")
    t = sub.add_parser("table", help="write the table into the page")
    t.add_argument("--results", default="docs/results/bench")
    t.add_argument("--page", default="docs/performance.md")
    t.add_argument("--check", action="store_true", help="fail if the page is out of date")
    args = ap.parse_args()
    (cmd_run if args.cmd == "run" else cmd_table)(args)


if __name__ == "__main__":
    main()
