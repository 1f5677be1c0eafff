"""Peak resident memory and time of a promoter track scan, in process: the allocator's share.

--heap bounded (the pipeline's: a fixed 4 MiB mmap threshold, engine/memory.py) or glibc (glibc's
own dynamic threshold); --caches bounded (the pipeline's: oneDNN's and ideep's kernel caches capped)
or torch (their own 1,024 entries); --trim batch (the pipeline's) or chunk (the heap trimmed once
per chunk).

--trace N prints, for every N-th batch and every batch that sets a new peak: resident memory before
the batch, the peak during it and resident memory after the heap is trimmed, with the batch's widest
row's token count.

Run: python benchmarks/track_memory.py [--heap bounded|glibc] [--caches bounded|torch] [--trim batch|chunk]
     [--start 1] --size 300000 [--threads 2] [--trace 20]
     (one size per process: the peak of a process only grows; compare sizes side by side)
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

import mxdna_cli.engine.pipeline as pipeline
from mxdna_cli.engine import memory
from mxdna_cli import engine
from mxdna_cli.engine.prediction import PredictSettings

GENOME = Path(__file__).resolve().parents[1] / "data/bench/tair10_chr1.fa.gz"  # made by genome_scale.py


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(field + ":"))


def trace(loaded, every: int) -> dict:
    """Per batch: resident memory before it, the peak during it (the kernel's high-water mark, reset
    before each batch through /proc/self/clear_refs), resident memory after the heap is trimmed,
    and the widest row's tokens. Prints every `every`-th batch and each batch that sets a new peak,
    so a growing baseline (a leak, fragmentation) and a growing transient (wider batches) can be told
    apart."""
    seen = {"batch": 0, "peak": 0, "tokens": 0, "before": _status_kib("VmRSS")}

    def record(module, inputs, output):
        seen["tokens"] = int(output.token_valid.sum(dim=1).max())

    loaded.module.model.register_forward_hook(record)
    release = pipeline.release_freed_memory
    print("batch  widest-tokens  rss-before  batch-peak  rss-after (MiB)", flush=True)

    def traced():
        seen["batch"] += 1
        peak = _status_kib("VmHWM")
        release()
        after = _status_kib("VmRSS")
        if seen["batch"] % every == 0 or peak > seen["peak"]:
            mark = " new peak" if peak > seen["peak"] else ""
            print(f"{seen['batch']:5d}  {seen['tokens']:13d}  {seen['before'] / 1024:10.0f}  {peak / 1024:10.0f}  "
                  f"{after / 1024:9.0f}{mark}", flush=True)
        seen["peak"] = max(seen["peak"], peak)
        with open("/proc/self/clear_refs", "w") as handle:  # the high-water mark restarts from here
            handle.write("5")
        seen["before"] = _status_kib("VmRSS")

    pipeline.release_freed_memory = traced
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trim", choices=["batch", "chunk"], default="batch")
    parser.add_argument("--size", type=int, default=300_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--heap", choices=["bounded", "glibc"], default="bounded")
    parser.add_argument("--caches", choices=["bounded", "torch"], default="bounded",
                        help="oneDNN/ideep kernel caches capped (the pipeline's) or torch's own 1,024 entries")
    parser.add_argument("--start", type=int, default=1, help="first base of the region (1-based)")
    parser.add_argument("--trace", type=int, metavar="N", help="print memory around every N-th batch and every "
                        "batch that sets a new peak, with its widest row's token count (Linux)")
    args = parser.parse_args()
    bounds = ([memory.bound_heap] if args.heap == "bounded" else []) + (
        [memory.bound_kernel_caches] if args.caches == "bounded" else [])
    pipeline.bound_memory = lambda: [bound() for bound in bounds]
    if args.caches == "bounded":
        memory.bound_kernel_caches()  # before the thread count: oneDNN reads its cache size then
    torch.set_num_threads(args.threads)
    if args.trim == "chunk":  # trim once per chunk of windows instead of after every batch
        trim = pipeline.release_freed_memory
        pipeline.release_freed_memory = lambda: None
        run_chunk = pipeline.Pipeline._run_chunk

        def chunked(self, chunk, forward):
            yield from run_chunk(self, chunk, forward)
            trim()

        pipeline.Pipeline._run_chunk = chunked
    loaded, index = engine.load_classifier("promoter-arabidopsis", label="promoter")
    seen = trace(loaded, args.trace) if args.trace else None
    started = time.perf_counter()
    region = f"NC_003070.9:{args.start}-{args.start + args.size - 1}"
    with engine.Inputs(engine.InputSpec(str(GENOME), regions=[region])) as inputs:
        engine.predict(inputs, loaded, index, PredictSettings(track="/dev/shm/track_memory.bw", step=250))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if seen is not None:  # the trace resets the kernel's high-water mark: take the largest batch peak
        peak = max(peak, seen["peak"] / 1024)
    print(f"heap {args.heap}, caches {args.caches}, trim per {args.trim}, {region}: peak RSS {peak:,.0f} MiB, "
          f"{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
