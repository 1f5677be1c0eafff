"""Peak resident memory and time of a promoter track scan, in process: the allocator's share.

--heap bounded (the pipeline's: a fixed 4 MiB mmap threshold, engine/memory.py) or glibc (glibc's
own dynamic threshold); --trim batch (the pipeline's) or chunk (the heap trimmed once per chunk).

--trace prints the batches that raise the peak, with their widest row's token count.

Run: python benchmarks/track_memory.py [--heap bounded|glibc] [--trim batch|chunk]
     [--start 1] --size 300000 [--threads 2] [--trace]
     (one size per process: the peak of a process only grows; compare sizes side by side)
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

import mxdna_cli.engine.pipeline as pipeline
from mxdna_cli import engine
from mxdna_cli.engine.prediction import PredictSettings

GENOME = Path(__file__).resolve().parents[1] / "data/bench/tair10_chr1.fa.gz"  # made by genome_scale.py


def trace(loaded) -> None:
    """After every batch, if the process's peak rose: batch number, widest row's tokens, peak MiB."""
    seen = {"batch": 0, "peak": 0.0, "tokens": 0}

    def record(module, inputs, output):
        seen["tokens"] = int(output.token_valid.sum(dim=1).max())

    loaded.module.model.register_forward_hook(record)
    release = pipeline.release_freed_memory

    def traced():
        seen["batch"] += 1
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if peak > seen["peak"] + 1:
            print(f"batch {seen['batch']}: widest row {seen['tokens']} tokens, peak {peak:,.0f} MiB", flush=True)
            seen["peak"] = peak
        release()

    pipeline.release_freed_memory = traced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trim", choices=["batch", "chunk"], default="batch")
    parser.add_argument("--size", type=int, default=300_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--heap", choices=["bounded", "glibc"], default="bounded")
    parser.add_argument("--start", type=int, default=1, help="first base of the region (1-based)")
    parser.add_argument("--trace", action="store_true", help="print each batch that raises the peak, with its "
                        "widest row's token count")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.heap == "glibc":
        pipeline.bound_heap = lambda: None
    if args.trim == "chunk":  # trim once per chunk of windows instead of after every batch
        trim = pipeline.release_freed_memory
        pipeline.release_freed_memory = lambda: None
        run_chunk = pipeline.Pipeline._run_chunk

        def chunked(self, chunk, forward):
            yield from run_chunk(self, chunk, forward)
            trim()

        pipeline.Pipeline._run_chunk = chunked
    loaded, index = engine.load_classifier("promoter-arabidopsis", label="promoter")
    if args.trace:
        trace(loaded)
    started = time.perf_counter()
    region = f"NC_003070.9:{args.start}-{args.start + args.size - 1}"
    with engine.Inputs(engine.InputSpec(str(GENOME), regions=[region])) as inputs:
        engine.predict(inputs, loaded, index, PredictSettings(track="/dev/shm/track_memory.bw", step=250))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"heap {args.heap}, trim per {args.trim}, {region}: peak RSS {peak:,.0f} MiB, "
          f"{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
