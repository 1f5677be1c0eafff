"""Throughput of `mxdna embed` in one process and under torchrun, side by side, on the same input.

Run: python benchmarks/torchrun_scaling.py [--genome data/bench/tair10_chr1.fa.gz] [--size 200000]
     [--layouts 1x2 2x1] [--repeats 2] [--device auto]

A layout PxT is P torchrun processes of T threads each (1xT: one plain process). Each row is one
whole `mxdna embed` process tree timed from outside (model loading included), on the region
NC_003070.9:1-SIZE of TAIR10 chr1 (the bgzip copy benchmarks/genome_scale.py makes), the repeats
interleaved; it also checks that every layout wrote the same matrix as the first. Prints a
markdown table: nt/s of the whole run and per process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from genome_scale import CHROM, bgzip_genome  # noqa: E402


def command(layout: str, genome: Path, region: str, out: str, device: str) -> tuple[list[str], dict[str, str]]:
    processes, threads = (int(v) for v in layout.split("x"))
    verb = ["embed", str(genome), "-r", region, "--threads", str(threads), "--device", device, "-q", "-o", out]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if processes == 1:
        return [sys.executable, "-m", "mxdna_cli", *verb], env
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            "-m", "mxdna_cli", *verb], env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genome", type=Path, default=ROOT / "data/bench/tair10_chr1.fa.gz")
    parser.add_argument("--size", type=int, default=200_000)
    parser.add_argument("--layouts", nargs="+", default=["1x2", "2x1"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto", help="cpu, cuda (one GPU per process under torchrun), auto")
    args = parser.parse_args()
    if not args.genome.exists():
        bgzip_genome(args.genome)
    region = f"{CHROM}:1-{args.size}"
    seconds: dict[str, list[float]] = {layout: [] for layout in args.layouts}
    with tempfile.TemporaryDirectory() as folder:
        reference = None
        for _ in range(args.repeats):
            for layout in args.layouts:
                out = f"{folder}/{layout}.npy"
                argv, env = command(layout, args.genome, region, out, args.device)
                started = time.perf_counter()
                subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
                seconds[layout].append(time.perf_counter() - started)
                matrix = np.load(out)
                reference = matrix if reference is None else reference
                if not np.array_equal(matrix, reference):
                    raise SystemExit(f"layout {layout} wrote another matrix than {args.layouts[0]}")
    print(f"`mxdna embed` over {region} ({args.size:,} nt), median of {args.repeats}, same matrix in every layout\n")
    print("| layout (processes x threads) | wall s | nt/s | nt/s per process |")
    print("|---|---|---|---|")
    for layout in args.layouts:
        wall = statistics.median(seconds[layout])
        processes = int(layout.split("x")[0])
        print(f"| {layout} | {wall:,.1f} | {args.size / wall:,.0f} | {args.size / wall / processes:,.0f} |")


if __name__ == "__main__":
    main()
