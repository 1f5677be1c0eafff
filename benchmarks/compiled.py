#!/usr/bin/env python
"""`--compile` (torch.compile of the dense layers) against eager, side by side: time, compile
cost, exactness.

Run: python benchmarks/compiled.py [--threads 2] [--repeats 5] [--cases MODEL:WINDOW:BATCH[:DTYPE] ...]
Loads each model twice, as `mxdna --compile` does and without (`mxdna_cli.model.compiled`: the
nucleotide, token and decoder layers compiled, the learnt tokenizer eager). For each case it prints
the forward's rate eager and compiled (interleaved, best of the repeats), the first compiled
call's time (the compile; inductor's on-disk cache makes later processes faster), and how far the
compiled outputs are from eager on trained weights and real DNA: windows whose basic units
differ, and the largest difference in class probability or masked-LM logit.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import best_seconds, dna_ids  # noqa: E402

from mxdna_cli.model.mxdna import pad_batch  # noqa: E402
from mxdna_cli.runtime import load  # noqa: E402


def forward(loaded, ids, mask):
    with loaded.autocast_context():
        return loaded.module(ids, mask)


def outputs(loaded, batches):
    """Per batch: the units (expert at each centre) and the head's output (probabilities or logits)."""
    results = []
    for ids, mask in batches:
        out = forward(loaded, ids, mask)
        head = torch.softmax(out.logits.float(), -1) if out.logits.dim() == 2 else out.logits.float()
        results.append((out.tokenization.center_expert, head))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", nargs="+", default=["promoter-eukaryote:251:64", "mxdna-small:1024:16",
                                                        "mxdna-small:1024:16:bfloat16"],
                        help="MODEL:WINDOW:BATCH[:DTYPE] (a batch of 16,384 positions is the engine's default)")
    parser.add_argument("--batches", type=int, default=4, help="batches a timed pass runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    print("| model | window x batch | precision | eager nt/s | compiled nt/s | speed-up | first compiled call s | "
          "windows with other units | largest output difference |\n|---|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        name, window, batch, dtype = (case.split(":") + ["float32"])[:4]
        window, batch = int(window), int(batch)
        eager = load(name, device="cpu", dtype=dtype)
        compiled = load(name, device="cpu", dtype=dtype, compile=True)
        windows = [w[: window - 2] for w in dna_ids(args.batches * batch * window, window)]
        batches = [pad_batch(windows[i:i + batch], device) for i in range(0, len(windows), batch)]
        with torch.inference_mode():
            start = time.perf_counter()
            forward(compiled, *batches[0])
            first_call = time.perf_counter() - start
            seconds = {"eager": [], "compiled": []}
            for _ in range(args.repeats):  # interleaved
                for label, loaded in (("eager", eager), ("compiled", compiled)):
                    seconds[label].append(best_seconds(device, lambda m=loaded: [forward(m, i, k) for i, k in batches], 1))
            changed = worst = 0
            for (units_e, head_e), (units_c, head_c) in zip(outputs(eager, batches), outputs(compiled, batches)):
                changed += int((units_e != units_c).any(dim=1).sum())
                worst = max(worst, float((head_e - head_c).abs().max()))
        nucleotides = len(windows) * window
        rate_e, rate_c = nucleotides / min(seconds["eager"]), nucleotides / min(seconds["compiled"])
        print(f"| {name} | {window} x {batch} | {dtype} | {rate_e:,.0f} | {rate_c:,.0f} | {rate_c / rate_e:.2f}x | "
              f"{first_call:.1f} | {changed} of {len(windows)} | {worst:.1e} |", flush=True)


if __name__ == "__main__":
    main()
