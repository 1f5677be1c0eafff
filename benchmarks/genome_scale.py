"""Time and peak memory of `mxdna embed` and of a promoter track as the genome grows (1, 5, 30 Mb).

Run: python benchmarks/genome_scale.py [--genome data/bench/tair10_chr1.fa.gz] [--sizes 1 5 30]
     [--threads 1] [--step 250] [--verbs embed track]

The genome defaults to a bgzip copy of TAIR10 chr1 (NC_003070.9) made from
../shared/data/pretrain/arabidopsis on first use. Each row is one `mxdna` process on the region
NC_003070.9:1-<size>,000,000, timed from the outside; peak memory is the child's maximum resident
set size (getrusage, as `/usr/bin/time -v` reports it). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared/data/pretrain/arabidopsis/AthaTAIR10_chr1_GCF_000001735.4_TAIR10.1_genomic.fna.gz"
CHROM = "NC_003070.9"


def bgzip_genome(path: Path) -> None:
    """A bgzip + .fai copy of the plain-gzip source (regions need random access)."""
    import pysam

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        plain = Path(folder) / "genome.fa"
        with gzip.open(SOURCE, "rb") as source, open(plain, "wb") as target:
            shutil.copyfileobj(source, target)
        pysam.tabix_compress(str(plain), str(path), force=True)
    pysam.faidx(str(path))


def measure(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{process.stderr.read().decode()}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genome", type=Path, default=ROOT / "data/bench/tair10_chr1.fa.gz")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 5, 30], help="Mb from the start of chr1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--step", type=int, default=250, help="track step (the default classifier's window: 251)")
    parser.add_argument("--verbs", nargs="+", default=["embed", "track"], choices=["embed", "track"])
    args = parser.parse_args()
    if not args.genome.exists():
        bgzip_genome(args.genome)
    mxdna = [sys.executable, "-m", "mxdna_cli"] if not shutil.which("mxdna") else ["mxdna"]
    print("| verb | region | nt | wall s | nt/s | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as out:
        for verb in args.verbs:
            for size in args.sizes:
                region = f"{CHROM}:1-{size * 1_000_000}"
                common = [str(args.genome), "-r", region, "--threads", str(args.threads), "-q"]
                if verb == "embed":
                    command = [*mxdna, "embed", *common, "-o", f"{out}/e.npy"]
                else:
                    command = [*mxdna, "predict", "promoter", *common, "--track", f"{out}/t.bw",
                               "--step", str(args.step)]
                seconds, peak = measure(command)
                nt = size * 1_000_000
                label = "embed (mean, 1,024-nt windows)" if verb == "embed" else f"predict --track (step {args.step})"
                print(f"| {label} | {region} | {nt:,} | {seconds:,.0f} | {nt / seconds:,.0f} | {peak:,.0f} |",
                      flush=True)


if __name__ == "__main__":
    main()
