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


def _sample(process: subprocess.Popen, journal: Path, every: float, samples: list) -> None:
    """Every `every` seconds while `process` runs: (seconds, tasks done by its journal, peak MiB so
    far), the kernel's high-water mark of the process (Linux /proc)."""
    started = time.perf_counter()
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
            peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
            done = json.loads(journal.read_text())["tasks_done"] if journal.exists() else 0
            samples.append([round(time.perf_counter() - started, 1), done, round(peak, 1)])
        except (OSError, StopIteration, ValueError, KeyError):  # the process is ending, or a journal being replaced
            pass
        time.sleep(every)


def measure_resumable(command: list[str], output: Path, budget: float | None,
                      sample: float | None = None) -> tuple[float, float, int, bool]:
    """(seconds summed, largest peak, segments, finished) of a --resume run, continuing the segments
    that earlier invocations recorded beside the output. With `budget` seconds, the run is stopped
    with SIGTERM when they are spent (it keeps its journal: the next invocation continues it), so
    that every segment's time and peak are measured, never lost with a killed session. With
    `sample` seconds, the segment's peak so far is recorded against the windows done (its
    journal's count), so one process shows whether memory grows as the run goes on."""
    ledger = output.parent / (output.name + ".segments.json")
    segments = json.loads(ledger.read_text()) if ledger.exists() else []
    if not (segments and segments[-1]["finished"]):
        started = time.perf_counter()
        process = subprocess.Popen([*command, "--resume"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        timer = threading.Timer(budget, process.terminate) if budget else None
        if timer is not None:
            timer.start()
        samples: list = []
        sampler = None
        if sample:
            journal = output.parent / f".{output.name}.resume" / "journal.json"
            sampler = threading.Thread(target=_sample, args=(process, journal, sample, samples), daemon=True)
            sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        if timer is not None:
            timer.cancel()
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 128 + signal.SIGTERM):
            raise SystemExit(f"failed: {' '.join(command)}\n{process.stderr.read().decode()}")
        segments.append({"seconds": time.perf_counter() - started, "peak_mib": usage.ru_maxrss / 1024,
                         "finished": code == 0, "samples": samples})
        ledger.write_text(json.dumps(segments))
    return (sum(s["seconds"] for s in segments), max(s["peak_mib"] for s in segments), len(segments),
            segments[-1]["finished"])


def peak_curve(output: Path, nt_per_task: int, marks: list[int]) -> str:
    """From a run's samples: the peak so far when the run had done `marks` nucleotides (first
    segment only: a resumed segment is a new process)."""
    segments = json.loads((output.parent / (output.name + ".segments.json")).read_text())
    samples = segments[0].get("samples") or []
    cells = []
    for mark in marks:
        reached = [(t, peak) for t, done, peak in samples if done * nt_per_task >= mark]
        cells.append(f"{reached[0][1]:,.0f} MiB at {reached[0][0]:,.0f} s" if reached else "-")
    return " | ".join(cells)


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
    parser.add_argument("--sample", type=float, help="with --keep: every this many seconds, record the run's peak "
                        "memory so far against its progress, and print the peak at 1, 5, 10 and 20 Mb of one process")
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
                    seconds, peak, segments, finished = measure_resumable(command, Path(output), args.budget,
                                                                          args.sample)
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
                if args.sample:
                    marks = [m * 1_000_000 for m in (1, 5, 10, 20) if m < size]
                    per_task = args.step if verb == "track" else 768  # a scan step; embed's stride of 1,024-nt windows
                    print(f"|   peak so far at {', '.join(f'{m // 1_000_000} Mb' for m in marks)} (one process) | "
                          f"{peak_curve(Path(output), per_task, marks)} |", flush=True)


if __name__ == "__main__":
    main()
