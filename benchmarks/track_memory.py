"""Peak resident memory and time of a promoter track scan, in process: the allocator's share.

--heap bounded (the pipeline's: a fixed 4 MiB mmap threshold, engine/memory.py) or glibc (glibc's
own dynamic threshold); --trim batch (the pipeline's) or chunk (the heap trimmed once per chunk).

Run: python benchmarks/track_memory.py [--heap bounded|glibc] [--trim batch|chunk] --size 300000 [--threads 2]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trim", choices=["batch", "chunk"], default="batch")
    parser.add_argument("--size", type=int, default=300_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--heap", choices=["bounded", "glibc"], default="bounded")
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
    started = time.perf_counter()
    with engine.Inputs(engine.InputSpec(str(GENOME), regions=[f"NC_003070.9:1-{args.size}"])) as inputs:
        engine.predict(inputs, loaded, index, PredictSettings(track="/dev/shm/track_memory.bw", step=250))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"heap {args.heap}, trim per {args.trim}, {args.size:,} nt: peak RSS {peak:,.0f} MiB, "
          f"{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
