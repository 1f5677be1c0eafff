"""Time and peak memory of `mxdna embed` and of a promoter track as the genome grows (1, 5, 30 Mb).

Run: python benchmarks/genome_scale.py [--genome data/bench/tair10_chr1.fa.gz] [--sizes 1 5 30]
     [--threads 1] [--step 250] [--verbs embed track] [--keep data/bench/runs]

The genome defaults to a bgzip copy of TAIR10 chr1 (NC_003070.9) made from
../shared/data/pretrain/arabidopsis on first use. Each row is one `mxdna` process on the region
NC_003070.9:1-<size>,000,000, timed from the outside; peak memory is the child's maximum resident
set size (getrusage, as `/usr/bin/time -v` reports it). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
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


# Runs each measured command for the parent and answers with the command's wall time and rusage.
# Why a launcher: Linux counts in a child's peak RSS the resident memory of the process that forked
# it (a forked copy is resident until exec), so children of a parent that has grown (a benchmark
# that has run models in process) would all report the parent's size. The launcher is started
# from a bare interpreter and stays small, so its children report their own peaks.
LAUNCHER = r"""
import json, os, subprocess, sys, tempfile, time
for line in sys.stdin:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(json.loads(line), stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        out.seek(0), err.seek(0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status), "seconds": seconds,
                          "peak_mib": usage.ru_maxrss / 1024, "stdout": out.read(), "stderr": err.read()}),
              flush=True)
"""
_launcher: subprocess.Popen | None = None


def measure_child(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MiB, standard output) of one child process; stops on its failure."""
    global _launcher
    if _launcher is None:
        _launcher = subprocess.Popen([sys.executable, "-I", "-S", "-c", LAUNCHER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
    _launcher.stdin.write(json.dumps(command) + "\n")
    _launcher.stdin.flush()
    result = json.loads(_launcher.stdout.readline())
    if result["code"] != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{result['stderr']}")
    return result["seconds"], result["peak_mib"], result["stdout"]


def measure(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one child process."""
    seconds, peak, _ = measure_child(command)
    return seconds, peak


def measure_resumable(command: list[str], output: Path, budget: float | None) -> tuple[float, float, int, bool]:
    """(seconds summed, largest peak, segments, finished) of a --resume run, continuing the segments
    that earlier invocations recorded beside the output. With `budget` seconds, the run is stopped
    with SIGTERM when they are spent (it keeps its journal: the next invocation continues it), so
    that every segment's time and peak are measured, never lost with a killed session."""
    ledger = output.parent / (output.name + ".segments.json")
    segments = json.loads(ledger.read_text()) if ledger.exists() else []
    if not (segments and segments[-1]["finished"]):
        started = time.perf_counter()
        process = subprocess.Popen([*command, "--resume"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        timer = threading.Timer(budget, process.terminate) if budget else None
        if timer is not None:
            timer.start()
        _, status, usage = os.wait4(process.pid, 0)
        if timer is not None:
            timer.cancel()
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 128 + signal.SIGTERM):
            raise SystemExit(f"failed: {' '.join(command)}\n{process.stderr.read().decode()}")
        segments.append({"seconds": time.perf_counter() - started, "peak_mib": usage.ru_maxrss / 1024,
                         "finished": code == 0})
        ledger.write_text(json.dumps(segments))
    return (sum(s["seconds"] for s in segments), max(s["peak_mib"] for s in segments), len(segments),
            segments[-1]["finished"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genome", type=Path, default=ROOT / "data/bench/tair10_chr1.fa.gz")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 5, 30], help="Mb from the start of chr1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--step", type=int, default=250, help="track step (the default classifier's window: 251)")
    parser.add_argument("--verbs", nargs="+", default=["embed", "track"], choices=["embed", "track"])
    parser.add_argument("--keep", type=Path, help="a folder for the outputs, run with --resume: a run that is "
                        "killed (e.g. at the end of a working session) continues when the same command is run "
                        "again; each row then sums the segments' seconds and takes their largest peak")
    parser.add_argument("--budget", type=float, help="with --keep: seconds each run may take in this invocation")
    args = parser.parse_args()
    if not args.genome.exists():
        bgzip_genome(args.genome)
    mxdna = [sys.executable, "-m", "mxdna_cli"] if not shutil.which("mxdna") else ["mxdna"]
    print("| verb | region | nt | wall s | nt/s | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        out = str(args.keep) if args.keep is not None else scratch
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
        for verb in args.verbs:
            for size in args.sizes:
                region = f"{CHROM}:1-{size * 1_000_000}"
                common = [str(args.genome), "-r", region, "--threads", str(args.threads), "-q"]
                output = f"{out}/{verb}-{size}Mb" + (".npy" if verb == "embed" else ".bw")
                if verb == "embed":
                    command = [*mxdna, "embed", *common, "-o", output]
                else:
                    command = [*mxdna, "predict", "promoter", *common, "--track", output, "--step", str(args.step)]
                if args.keep is not None:
                    seconds, peak, segments, finished = measure_resumable(command, Path(output), args.budget)
                    region = f"{region} ({segments} segment{'s' if segments > 1 else ''}, --resume)"
                    if not finished:
                        print(f"| {verb} {region}: stopped after {seconds:,.0f} s (peak {peak:,.0f} MiB so far); "
                              "run the same command again to continue |", flush=True)
                        continue
                else:
                    seconds, peak = measure(command)
                nt = size * 1_000_000
                label = "embed (mean, 1,024-nt windows)" if verb == "embed" else f"predict --track (step {args.step})"
                print(f"| {label} | {region} | {nt:,} | {seconds:,.0f} | {nt / seconds:,.0f} | {peak:,.0f} |",
                      flush=True)


if __name__ == "__main__":
    main()
