"""Forward time of MxDNA split by stage, and the exact unit selection: fast vs reference.

Run: python benchmarks/forward_stages.py [--presets small base] [--lengths 512 1024 4096]
     [--batch 1] [--threads 2] [--device cpu] [--repeats 3]
Prints a markdown table (milliseconds per forward, median of the repeats) and the learnt
tokenizer's share (selection + experts + deformable) of the whole forward, then each stage's
counted FLOPs and achieved GFLOP/s (which stage uses the hardware worst).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from mxdna_cli import sequence as vocab
from mxdna_cli.model.config import ModelConfig
from mxdna_cli.model.mxdna import MxDNAForMaskedLM, dense_or, nucleotide_positions, pad_batch, position_masks
from mxdna_cli.model.selection import select_units, select_units_reference

STAGES = ("nucleotide layers", "router+selection", "experts", "deformable", "token layers", "decoder")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def staged_forward(model: MxDNAForMaskedLM, ids, mask, device, counter=None) -> dict[str, float]:
    """The model's forward, stage by stage, with a clock around each stage: milliseconds per stage,
    or, given a running `torch.utils.flop_counter.FlopCounterMode`, the FLOPs of each stage."""
    times = {}
    backbone, tok = model.model, model.model.tokenizer
    clock = time.perf_counter()
    counted = 0

    def lap(name):
        nonlocal clock, counted
        sync(device)
        now = time.perf_counter()
        times[name] = (now - clock) * 1000
        clock = now
        if counter is not None:
            total = counter.get_total_flops()
            times[name], counted = total - counted, total

    nucleotide_mask, special = position_masks(ids, mask)
    nucleotide_rotary = backbone.rotary(nucleotide_positions(ids))
    hidden = backbone.embed_tokens(ids)
    layer_mask = dense_or(mask.bool())
    for layer in backbone.nucleotide_layers:
        hidden = layer(hidden, nucleotide_rotary, layer_mask)
    lap("nucleotide layers")
    normed = tok.norm(hidden)
    _, center, gate = tok.route(normed, nucleotide_mask)
    lap("router+selection")
    merged = tok.add_experts(hidden, normed, center, gate)
    lap("experts")
    tokens, token_positions, valid, _, _ = tok.assemble(merged, center, nucleotide_mask, special)
    lap("deformable")
    token_rotary = backbone.rotary(token_positions)
    token_layer_mask = dense_or(valid)
    for layer in backbone.token_layers:
        tokens = layer(tokens, token_rotary, token_layer_mask)
    tokens = backbone.final_norm(tokens)
    lap("token layers")
    decoded = model.decoder(hidden, tokens, nucleotide_rotary, token_rotary, valid)
    model.lm_head(model.norm(decoded))
    lap("decoder")
    return times


def stage_flops(model: MxDNAForMaskedLM, ids, mask, device) -> dict[str, int]:
    """FLOPs of each stage of one forward (matmuls, convolutions and attention, as torch counts them)."""
    from peers import flop_counter

    with flop_counter() as counter:
        return staged_forward(model, ids, mask, device, counter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["small", "base"])
    parser.add_argument("--lengths", nargs="+", type=int, default=[512, 1024, 4096])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    rng = np.random.default_rng(0)

    print(f"device={device} threads={args.threads} batch={args.batch} dtype={args.dtype} (ms per forward, median of {args.repeats})\n")
    print("| preset | length | " + " | ".join(STAGES) + " | total | tokenizer share | nt/s |")
    print("|---" * (len(STAGES) + 5) + "|")
    rates = []
    for preset in args.presets:
        torch.manual_seed(0)
        model = MxDNAForMaskedLM(ModelConfig.preset(preset)).to(device, dtype).eval()
        for length in args.lengths:
            ids, mask = pad_batch([rng.choice(vocab.BASE_IDS, length - 2).astype(np.uint8) for _ in range(args.batch)], device)
            staged_forward(model, ids, mask, device)  # warm-up
            runs = [staged_forward(model, ids, mask, device) for _ in range(args.repeats)]
            median = {s: statistics.median(r[s] for r in runs) for s in STAGES}
            total = sum(median.values())
            share = (median["router+selection"] + median["experts"] + median["deformable"]) / total
            cells = " | ".join(f"{median[s]:.1f}" for s in STAGES)
            print(f"| {preset} | {length} | {cells} | {total:.1f} | {share:.1%} | {args.batch * length / total * 1000:.0f} |")
            flops = stage_flops(model, ids, mask, device)
            rates.append(f"| {preset} | {length} | " + " | ".join(
                f"{flops[s] / 1e9:.2f} / {flops[s] / median[s] / 1e6:.0f}" for s in STAGES)
                + f" | {sum(flops.values()) / 1e9:.2f} / {sum(flops.values()) / total / 1e6:.0f} |")
    print("\nGFLOP per forward / achieved GFLOP/s, by stage (FLOPs counted by torch.utils.flop_counter):\n")
    print("| preset | length | " + " | ".join(STAGES) + " | total |")
    print("|---" * (len(STAGES) + 3) + "|")
    print("\n".join(rates))

    print("\nUnit selection alone (router scores of random sequences, kernels 1..10):\n")
    print("\n".join(selection_table(device, [(8, 512), (8, 1024), (4, 4096)])))


def selection_table(device, shapes) -> list[str]:
    """Markdown rows: the fast exact unit selection against the reference loop on random scores."""
    lines = ["| batch x length | fast (ms) | reference (ms) | speed-up | equal |", "|---|---|---|---|---|"]
    for batch, length in shapes:
        scores = torch.randn(batch, length, 10, device=device)
        nucleotide = torch.ones(batch, length, dtype=torch.bool, device=device)
        nucleotide[:, 0] = nucleotide[:, -1] = False
        kernels = tuple(range(1, 11))
        select_units(scores, nucleotide, kernels)
        sync(device)
        t = time.perf_counter()
        fast = select_units(scores, nucleotide, kernels)
        sync(device)
        t_fast = time.perf_counter() - t
        t = time.perf_counter()
        ref = select_units_reference(scores.cpu(), nucleotide.cpu(), kernels)
        t_ref = time.perf_counter() - t
        lines.append(f"| {batch} x {length} | {t_fast * 1000:.1f} | {t_ref * 1000:.1f} | {t_ref / t_fast:.1f}x | "
                     f"{torch.equal(fast.cpu(), ref)} |")
    return lines

if __name__ == "__main__":
    main()
