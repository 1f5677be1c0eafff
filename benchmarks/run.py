"""The benchmark suite: mxdna against its peers and against the machine, side by side in one run.

Run: python benchmarks/run.py [--quick] [--threads N] [--device cpu|cuda] [--write docs/benchmarks.md]

Sections (each a table; with --write they replace the generated part of docs/benchmarks.md, and
the plots go to docs/benchmarks_*.png):
1. the physical limit: the measured matmul peak (2048^2, float32 and bf16 on the CPU, bf16 on a GPU);
2. models side by side: mxdna-small (bundled) and mxdna-base (random weights), each eager and as
   `--compile` runs it (FLOPs those of the eager row), against NT-v2-like,
   DNABERT-2-like and single-nucleotide BERT peers of both sizes (benchmarks/peers.py), batches of
   8 x 1 kb: FLOPs counted, nt/s (median of interleaved repeats), achieved FLOP/s and share of the
   matmul peak sampled in the same rounds (between the models), and mxdna against the best peer;
3. the engine: `embed`, `tokenize` and a promoter track through the engine against the model's
   forward alone on the same windows (each a child process: nt/s and peak RSS), windows 512 nt to 16 kb;
4. the learnt tokenizer's share of the forward, and the fast exact unit selection against the reference;
5. scaling: `mxdna embed` time and peak memory from 1 kb up (to 30 Mb in the full mode).

--quick (meant for under 10 minutes on 2 idle cores) runs 30 kb of DNA, windows of 512 and 1,024 nt, the small
models in both precisions and the base ones in float32, and scaling to 100 kb. The full mode is for
a GPU machine or a long CPU session. Needs the `bench` extra (transformers) and, for real DNA,
data/bench/tair10_chr1.fa.gz (made by benchmarks/genome_scale.py; random DNA otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import forward_stages  # noqa: E402
import genome_scale  # noqa: E402
import peers  # noqa: E402
from forward_stages import sync  # noqa: E402

from mxdna_cli.train.optim import autocast as optim_autocast, cpu_has_native_bf16  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GENOME = ROOT / "data/bench/tair10_chr1.fa.gz"
CHROM, OFFSET = "NC_003070.9", 2_000_000  # a gene-rich arm of TAIR10 chr1
BEGIN, END = "<!-- benchmarks/run.py: begin -->", "<!-- benchmarks/run.py: end -->"


def precisions(device: torch.device) -> list[str]:
    if device.type == "cuda":
        return ["bfloat16"]
    return ["float32", "bfloat16"] if cpu_has_native_bf16() else ["float32"]


def autocast(device: torch.device, precision: str):
    return optim_autocast(device, torch.bfloat16 if precision == "bfloat16" else None)


def best_seconds(device: torch.device, run, repeats: int) -> float:
    """The fastest of `repeats` timed calls of `run`, after one warm-up call."""
    run()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        run()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


# --------------------------------------------------------------------------- 1. the physical limit


def matmul_peak(device: torch.device, precision: str, n: int = 2048, repeats: int = 10) -> float:
    """Best GFLOP/s of an n x n matmul, after a warm-up."""
    return peak_sampler(device, precision, n, calls=repeats)()


def peak_sampler(device: torch.device, precision: str, n: int = 2048, calls: int = 3):
    """A function that measures the matmul peak now: the best of `calls` n x n matmuls (after a
    warm-up one), in GFLOP/s."""
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    return lambda: 2 * n**3 / best_seconds(device, lambda: a @ b, calls) / 1e9


def attention_rates(device: torch.device, precision: str, repeats: int = 3) -> list[tuple[int, int, float]]:
    """(length, head_dim, GFLOP/s) of scaled_dot_product_attention on batches of 8 x 256-wide
    states: the kernel every model here uses, at the lengths a 1 kb window gives a k-mer model
    (~230 tokens) and a single-nucleotide one (1,026)."""
    import torch.nn.functional as F

    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    rates = []
    for length in (230, 1026):
        for head_dim in (32, 64):
            heads = 256 // head_dim
            q, k, v = (torch.randn(8, heads, length, head_dim, device=device).to(dtype) for _ in range(3))
            mask = torch.ones(8, 1, 1, length, dtype=torch.bool, device=device)
            with torch.inference_mode():
                best = best_seconds(device, lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), repeats)
            rates.append((length, head_dim, 4 * 8 * heads * length * length * head_dim / best / 1e9))
    return rates


# --------------------------------------------------------------------------- DNA


def dna_ids(total: int, window: int) -> list[np.ndarray]:
    """Windows of model ids from real DNA (the bench genome) or, without it, random bases."""
    from mxdna_cli import sequence as dna

    count = max(1, total // window)
    if GENOME.exists():
        import pysam

        with pysam.FastaFile(str(GENOME)) as fasta:
            text = fasta.fetch(CHROM, OFFSET, OFFSET + count * window)
        ids = dna.encode(text)
    else:
        ids = np.random.default_rng(0).choice(dna.BASE_IDS, count * window).astype(np.uint8)
    return [ids[i * window : (i + 1) * window] for i in range(count)]


def dna_source() -> str:
    """What `dna_ids` reads: the FLOPs of a model whose tokenizer decides its length depend on it."""
    if GENOME.exists():
        return f"DNA from {GENOME.relative_to(ROOT)} ({CHROM} from {OFFSET:,})"
    return f"random bases ({GENOME.relative_to(ROOT)} not found: bgzip TAIR10 chr1 there, docs/usage.md)"


def dna_fasta(path: Path, total: int) -> None:
    from mxdna_cli import sequence as dna

    ids = np.concatenate(dna_ids(total, total))
    path.write_text(">bench\n" + dna.decode(ids) + "\n")


# --------------------------------------------------------------------------- 2. models side by side


def models_table(device, quick: bool, repeats: int) -> tuple[list[dict], str]:
    """Every model's forward, interleaved, and between them the matmul peak: a virtual machine's
    rate drifts within a run (the 2048-squared peak has read 150 to 196 GFLOP/s within two hours
    on the same two cores), so each share is of the peak sampled in the same rounds as the models."""
    batch, window = 8, 1024
    genome = dna_ids(batch * window, window)
    rows = []
    for size in ("small", "base"):
        benches = peers.benches(size, batch, window, device, genome)
        for precision in precisions(device):
            if quick and size == "base" and precision == "bfloat16":
                continue
            peak_sample = peak_sampler(device, precision)
            with autocast(device, precision):
                flops = {b.name: peers.count_flops(b.forward) for b in benches if b.flops_of is None}
                flops.update({b.name: flops[b.flops_of] for b in benches if b.flops_of is not None})
                times: dict[str, list[float]] = {b.name: [] for b in benches}
                samples = []
                with torch.inference_mode():
                    for b in benches:
                        b.forward()  # warm-up
                    for _ in range(repeats):  # interleaved: every model sees the same machine state
                        for b in benches:
                            sync(device)
                            t = time.perf_counter()
                            b.forward()
                            sync(device)
                            times[b.name].append(time.perf_counter() - t)
                            samples.append(peak_sample())
            peak = statistics.median(samples)
            for b in benches:
                seconds = statistics.median(times[b.name])
                achieved = flops[b.name] / seconds / 1e9
                rows.append(dict(model=b.name, size=size, precision=precision, params=b.params,
                                 gflop_per_kb=flops[b.name] / b.nucleotides * 1000 / 1e9,
                                 nt_s=b.nucleotides / seconds, gflop_s=achieved, peak=peak,
                                 share=achieved / peak))
    lines = ["| model | size | precision | params (M) | GFLOP per kb | nt/s | achieved GFLOP/s | matmul peak, same rounds | share of matmul peak |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['size']} | {r['precision']} | {r['params'] / 1e6:.1f} | "
                     f"{r['gflop_per_kb']:.2f} | {r['nt_s']:,.0f} | {r['gflop_s']:.0f} | {r['peak']:.0f} | {r['share']:.0%} |")
    best = {}
    for r in rows:
        if not r["model"].startswith("mxdna"):
            key = (r["size"], r["precision"])
            best[key] = max(best.get(key, 0.0), r["gflop_s"])
    lines += ["", "mxdna's achieved FLOP/s against the best peer of the same size and precision in the same rounds:", ""]
    lines += [f"- {r['model']}, {r['precision']}: {r['gflop_s'] / best[(r['size'], r['precision'])]:.2f}x"
              for r in rows if r["model"].startswith("mxdna")]
    return rows, "\n".join(lines)


# --------------------------------------------------------------------------- 3. the engine


def child(spec: dict) -> dict:
    """In a child process: the verb through the engine (`engine`: read, window, batch, model,
    stitch, write, as the CLI runs it) or the model's forward alone over the same windows in the
    same batches (`forward`), or that forward under the engine's memory bounds (`bounded`: the fixed
    mmap threshold and the per-batch release of engine/memory.py, which the pipeline always sets),
    so that the engine's own work and the price of its memory bounds show apart. Timed from after
    the model is loaded: start-up is not the engine."""
    from mxdna_cli import engine
    from mxdna_cli.engine.pipeline import batch_groups
    from mxdna_cli.model.mxdna import pad_batch
    from mxdna_cli.windows import Tiling, resolve_stride

    from mxdna_cli.runtime import set_threads

    set_threads(spec["threads"])  # as the CLI's --threads (the kernel caches capped first)
    dtype, device, scratch = spec["precision"], spec["device"], Path(spec["scratch"])
    if spec["verb"] == "track":
        loaded, index = engine.load_classifier("promoter-arabidopsis", label="promoter", device=device, dtype=dtype)
    else:
        loaded = engine.load("mxdna-small", device=device, dtype=dtype)
    t = time.perf_counter()
    if spec["mode"] == "engine":
        with engine.Inputs(engine.InputSpec(spec["fasta"])) as inputs:
            if spec["verb"] == "embed":
                engine.embed(inputs, loaded, engine.EmbedSettings(str(scratch / "e.npy"), window=spec["window"]))
            elif spec["verb"] == "tokenize":
                engine.tokenize(inputs, loaded, engine.TokenizeSettings(str(scratch / "t.bed"), window=spec["window"]))
            else:
                engine.predict(inputs, loaded, index, engine.PredictSettings(track=str(scratch / "p.bw"), step=250))
    else:
        ids = np.concatenate(dna_ids(spec["nt"], spec["nt"]))
        if spec["verb"] == "track":
            module = loaded.module
            windows = [ids[s : s + 251] for s in range(0, len(ids) - 251 + 1, 250)]
        else:
            module = loaded.backbone
            plan = Tiling(spec["window"], resolve_stride(spec["window"], None)).windows(len(ids))
            windows = [ids[w.start : w.end] for w in plan]
        if spec["mode"] == "bounded":
            from mxdna_cli.engine.memory import bound_memory, release_freed_memory

            bound_memory()
        with torch.inference_mode(), loaded.autocast_context():
            for group in batch_groups([len(w) for w in windows], engine.DEFAULT_BATCH_TOKENS):
                module(*pad_batch([windows[i] for i in group], loaded.device))
                if spec["mode"] == "bounded":
                    release_freed_memory()
    sync(loaded.device)
    return {"seconds": time.perf_counter() - t}


def run_child(args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of a child process; the seconds it reports if it prints JSON."""
    seconds, peak, out = genome_scale.measure_child(args)
    if out.strip().startswith("{"):
        seconds = json.loads(out)["seconds"]
    return seconds, peak


def engine_table(device, quick: bool, threads: int, scratch: Path, repeats: int) -> tuple[list[dict], str]:
    nt = 30_000 if quick else 400_000
    fasta = scratch / "engine.fa"
    dna_fasta(fasta, nt)
    rows = []
    windows = [512, 1024] if quick else [512, 1024, 4096, 16384]
    for precision in precisions(device):
        cases = [("embed", w) for w in windows] + [("tokenize", w) for w in windows] + [("track", 251)]
        if quick and precision == "bfloat16":  # the quick mode's budget: one embed and the track
            cases = [("embed", 1024), ("track", 251)]
        for verb, window in cases:
            spec = dict(verb=verb, window=window, nt=nt, threads=threads, device=device.type, precision=precision,
                        fasta=str(fasta), scratch=str(scratch))
            runs = {"engine": [], "bounded": [], "forward": []}
            for _ in range(repeats):  # interleaved, so that a busy spell of the machine hits both
                for mode in runs:
                    runs[mode].append(run_child([sys.executable, __file__, "--child", json.dumps({**spec, "mode": mode})]))
            best = {mode: min(seconds for seconds, _ in runs[mode]) for mode in runs}
            peak = {mode: max(mib for _, mib in runs[mode]) for mode in runs}
            rows.append(dict(verb=verb, window=window, precision=precision, nt=nt, engine=best["engine"],
                             bounded=best["bounded"], alone=best["forward"], engine_peak=peak["engine"],
                             bounded_peak=peak["bounded"], alone_peak=peak["forward"]))
    lines = ["| verb | window | precision | engine nt/s | forward, engine's memory bounds, nt/s | forward alone nt/s | "
             "engine overhead (same bounds) | price of the bounds | engine overhead (against the plain forward) | "
             "peak RSS MiB (engine / bounded forward / forward) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['verb']} | {r['window']:,} | {r['precision']} | {r['nt'] / r['engine']:,.0f} | "
                     f"{r['nt'] / r['bounded']:,.0f} | {r['nt'] / r['alone']:,.0f} | "
                     f"{r['engine'] / r['bounded'] - 1:+.0%} | {r['bounded'] / r['alone'] - 1:+.0%} | "
                     f"{r['engine'] / r['alone'] - 1:+.0%} | "
                     f"{r['engine_peak']:,.0f} / {r['bounded_peak']:,.0f} / {r['alone_peak']:,.0f} |")
    return rows, "\n".join(lines) + (
        f"\n\n{nt:,} nt of DNA; each row is the fastest of {repeats} interleaved runs of three child processes, timed "
        "from after the model is loaded: the verb "
        "through the engine (reading, windows, batches, model, stitching, writing: what the CLI runs) and "
        "the model's forward alone over the same windows in the same batches, with and without the memory bounds "
        "every engine run sets (engine/memory.py: a fixed 4 MiB mmap threshold, freed memory released after each "
        "batch). Overhead = engine / forward - 1. "
        "Process start-up and model loading come on top of each (the 1 kb row of the scaling table).")


# --------------------------------------------------------------------------- 4. the tokenizer


def tokenizer_table(device, repeats: int) -> str:
    from mxdna_cli.model.mxdna import pad_batch
    from mxdna_cli.runtime import load

    model = load("mxdna-small", device=str(device)).module.eval()
    lines = ["| model | batch x window | nucleotide layers | router+selection | experts | deformable | "
             "token layers | decoder | tokenizer share |", "|---|---|---|---|---|---|---|---|---|"]
    for window in (512, 1024):
        ids, mask = pad_batch([w[: window - 2] for w in dna_ids(8 * window, window)], device)
        forward_stages.staged_forward(model, ids, mask, device)
        runs = [forward_stages.staged_forward(model, ids, mask, device) for _ in range(repeats)]
        median = {s: statistics.median(r[s] for r in runs) for s in forward_stages.STAGES}
        share = (median["router+selection"] + median["experts"] + median["deformable"]) / sum(median.values())
        cells = " | ".join(f"{median[s]:.0f} ms" for s in forward_stages.STAGES)
        lines.append(f"| mxdna-small (bundled) | 8 x {window} | {cells} | {share:.1%} |")
        flops = forward_stages.stage_flops(model, ids, mask, device)
        cells = " | ".join(f"{flops[s] / median[s] / 1e6:.0f} ({flops[s] / 1e9:.1f})" for s in forward_stages.STAGES)
        lines.append(f"| achieved GFLOP/s (GFLOP) | 8 x {window} | {cells} | |")
    lines += ["", "Exact unit selection alone (random scores, kernels 1..10), fast against the reference loop:", "",
              *forward_stages.selection_table(device, [(8, 512), (8, 1024)])]
    return "\n".join(lines)


# --------------------------------------------------------------------------- 5. scaling


def scaling_table(device, quick: bool, threads: int, scratch: Path) -> tuple[list[dict], str]:
    sizes = [1_000, 10_000, 100_000] if quick else [1_000, 10_000, 100_000, 1_000_000, 5_000_000, 30_000_000]
    rows = []
    mxdna = [sys.executable, "-m", "mxdna_cli"]
    for nt in sizes:
        if GENOME.exists():
            source = [str(GENOME), "-r", f"{CHROM}:1-{nt}"]
        else:
            dna_fasta(scratch / f"s{nt}.fa", nt)
            source = [str(scratch / f"s{nt}.fa")]
        seconds, peak = run_child([*mxdna, "embed", *source, "-o", str(scratch / "s.npy"), "--threads", str(threads),
                                   "--device", device.type, "-q"])
        rows.append(dict(nt=nt, seconds=seconds, peak=peak))
    lines = ["| nt | wall s | nt/s | peak RSS MiB |", "|---|---|---|---|"]
    lines += [f"| {r['nt']:,} | {r['seconds']:.1f} | {r['nt'] / r['seconds']:,.0f} | {r['peak']:,.0f} |" for r in rows]
    return rows, "\n".join(lines)


# --------------------------------------------------------------------------- report


def plots(model_rows: list[dict], scaling_rows: list[dict], folder: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    names = []
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, label in ((axes[0], "nt_s", "nt/s"), (axes[1], "share", "share of the matmul peak")):
        labels = [f"{r['model'].split(' (')[0]} {r['size']} {r['precision'][:4]}" for r in model_rows]
        colours = ["tab:red" if r["model"].startswith("mxdna") else "tab:grey" for r in model_rows]
        ax.barh(range(len(model_rows)), [r[key] for r in model_rows], color=colours)
        ax.set_yticks(range(len(model_rows)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(label)
        if key == "nt_s":
            ax.set_xscale("log")
    fig.suptitle("batches of 8 x 1 kb; mxdna in red")
    fig.tight_layout()
    fig.savefig(folder / "benchmarks_models.png", dpi=110)
    names.append("benchmarks_models.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["nt"] for r in scaling_rows], [r["peak"] for r in scaling_rows], "o-", label="peak RSS MiB")
    ax.set_xscale("log")
    ax.set_xlabel("nucleotides embedded")
    ax.set_ylabel("peak RSS (MiB)")
    ax2 = ax.twinx()
    ax2.plot([r["nt"] for r in scaling_rows], [r["seconds"] for r in scaling_rows], "s--", color="tab:orange")
    ax2.set_yscale("log")
    ax2.set_ylabel("wall seconds (dashed)")
    fig.tight_layout()
    fig.savefig(folder / "benchmarks_scaling.png", dpi=110)
    names.append("benchmarks_scaling.png")
    plt.close("all")
    return names


def write_report(path: Path, body: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (meant for under 10 minutes on 2 idle CPU cores)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, help="timed repeats per model (default 3 quick, 7 full; the engine table 2 quick)")
    parser.add_argument("--write", type=Path, help="replace the generated part of this markdown file (and plots beside it)")
    parser.add_argument("--only", nargs="+", choices=["peak", "models", "engine", "tokenizer", "scaling"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeats = args.repeats or (3 if args.quick else 7)
    only = set(args.only or ["peak", "models", "engine", "tokenizer", "scaling"])
    started = time.perf_counter()
    peak = {p: matmul_peak(device, p) for p in precisions(device)}
    where = (torch.cuda.get_device_name(device) if device.type == "cuda" else
             f"CPU, {args.threads} thread{'s' if args.threads > 1 else ''}{', native bf16' if cpu_has_native_bf16() else ''}")
    parts = [f"Generated by `python benchmarks/run.py{' --quick' if args.quick else ''} --threads {args.threads}` "
             f"on {where}, torch {torch.__version__}, {time.strftime('%Y-%m-%d', time.gmtime())}; {dna_source()}.", ""]
    if "peak" in only:
        parts += ["### The physical limit: matmul peak (2048 x 2048)", "",
                  "| precision | GFLOP/s |", "|---|---|", *[f"| {p} | {v:,.0f} |" for p, v in peak.items()], "",
                  "Attention (`scaled_dot_product_attention`, 8 x 256-wide states, boolean key mask) against it:", "",
                  "| precision | length | head dim | GFLOP/s | share of matmul peak |", "|---|---|---|---|---|"]
        for p in peak:
            parts += [f"| {p} | {length:,} | {head_dim} | {rate:,.0f} | {rate / peak[p]:.0%} |"
                      for length, head_dim, rate in attention_rates(device, p)]
        parts.append("")
        print("\n".join(parts[2:]), flush=True)  # the other sections print as they come (section())
    model_rows, scaling_rows = [], []
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)

        def section(title: str, table: str) -> None:
            parts.extend([f"### {title}", "", table, ""])
            print(table, flush=True)

        if "models" in only:
            model_rows, table = models_table(device, args.quick, repeats)
            section("Models side by side (random weights except mxdna-small; batches of 8 x 1 kb)", table)
        if "engine" in only:
            section("The engine: end to end against the forward alone",
                    engine_table(device, args.quick, args.threads, scratch, 2 if args.quick and args.repeats is None else repeats)[1])
        if "tokenizer" in only:
            section("The learnt tokenizer's share of the forward", tokenizer_table(device, repeats))
        if "scaling" in only:
            scaling_rows, table = scaling_table(device, args.quick, args.threads, scratch)
            section("Scaling: `mxdna embed` from 1 kb up", table)
    parts.append(f"Whole suite: {time.perf_counter() - started:,.0f} s.")
    body = "\n".join(parts)
    if args.write is not None:
        images = plots(model_rows, scaling_rows, args.write.parent) if model_rows and scaling_rows else []
        body += "".join(f"\n\n![{name}]({name})" for name in images)
        write_report(args.write, body)
    print(body.splitlines()[-1])


if __name__ == "__main__":
    main()
