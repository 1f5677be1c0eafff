#!/usr/bin/env python
"""torch.compile on the dense layers against eager, side by side: time, compile cost, exactness.

Run: python benchmarks/compiled.py [--threads 2] [--repeats 5]
Compiles (inductor, dynamic shapes) the blocks that do almost all the FLOPs and have fixed control
flow: every nucleotide and token layer and the cross-attention decoder layers. The learnt
tokenizer (router, unit selection, experts, deformable assembly) stays eager: its shapes and
loops depend on the data. For each model and window it prints the forward's time eager and
compiled (interleaved, best of the repeats), the first compiled call's time (the compile), and
how far the compiled outputs are from eager on trained weights: windows whose basic units differ,
and the largest difference in class probability or masked-LM logit.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import best_seconds, dna_ids  # noqa: E402

from mxdna_cli.model.layers import CrossAttentionLayer, EncoderLayer  # noqa: E402
from mxdna_cli.model.mxdna import pad_batch  # noqa: E402
from mxdna_cli.runtime import load  # noqa: E402


def compile_dense_layers(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of `module` whose encoder and cross-attention layers run through torch.compile."""
    module = copy.deepcopy(module)
    for layer in module.modules():
        if isinstance(layer, (EncoderLayer, CrossAttentionLayer)):
            layer.compile(dynamic=True)
    return module


def outputs(module, batches):
    """Per batch: the units (expert at each centre) and the head's output (probabilities or logits)."""
    results = []
    for ids, mask in batches:
        out = module(ids, mask)
        head = torch.softmax(out.logits.float(), -1) if out.logits.dim() == 2 else out.logits.float()
        results.append((out.tokenization.center_expert, head))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", nargs="+", default=["promoter-eukaryote:251:64", "mxdna-small:1024:16"],
                        help="MODEL:WINDOW:BATCH (a batch of 16,384 positions is the engine's default)")
    parser.add_argument("--batches", type=int, default=4, help="batches a timed pass runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    print("| model | window x batch | eager nt/s | compiled nt/s | speed-up | first compiled call s | "
          "windows with other units | largest output difference |\n|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        name, window, batch = case.split(":")
        window, batch = int(window), int(batch)
        eager = load(name, device="cpu").module.eval()
        windows = [w[: window - 2] for w in dna_ids(args.batches * batch * window, window)]
        batches = [pad_batch(windows[i:i + batch], device) for i in range(0, len(windows), batch)]
        with torch.inference_mode():
            compiled = compile_dense_layers(eager)
            start = time.perf_counter()
            compiled(*batches[0])
            first_call = time.perf_counter() - start
            seconds = {"eager": [], "compiled": []}
            for _ in range(args.repeats):  # interleaved
                for label, module in (("eager", eager), ("compiled", compiled)):
                    seconds[label].append(best_seconds(device, lambda m=module: [m(i, k) for i, k in batches], 1))
            changed = worst = 0
            for (units_e, head_e), (units_c, head_c) in zip(outputs(eager, batches), outputs(compiled, batches)):
                changed += int((units_e != units_c).any(dim=1).sum())
                worst = max(worst, float((head_e - head_c).abs().max()))
        nucleotides = len(windows) * window
        rate_e, rate_c = nucleotides / min(seconds["eager"]), nucleotides / min(seconds["compiled"])
        print(f"| {name} | {window} x {batch} | {rate_e:,.0f} | {rate_c:,.0f} | {rate_c / rate_e:.2f}x | "
              f"{first_call:.1f} | {changed} of {len(windows)} | {worst:.1e} |", flush=True)


if __name__ == "__main__":
    main()
