"""Time one masked-LM training step (forward, backward, AdamW) of a preset in float32 and in
bf16 autocast, side by side in one run, e.g. to see whether a CPU's native bf16 pays off.

    python benchmarks/train_step.py --preset small --batch 8 --window 510 --threads 2 --repeats 3

Each precision gets `--warmup` untimed steps, then the median of `--repeats` timed steps.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mxdna_cli import sequence as vocab
from mxdna_cli.model.config import ModelConfig
from mxdna_cli.model.mxdna import MxDNAForMaskedLM
from mxdna_cli.train.data import mask_tokens
from mxdna_cli.train.optim import adamw, autocast, cpu_has_native_bf16
from mxdna_cli.train.pretrain import with_cls_sep


def time_steps(preset: str, batch: int, window: int, dtype: torch.dtype | None, warmup: int, repeats: int) -> list[float]:
    torch.manual_seed(0)
    model = MxDNAForMaskedLM(ModelConfig.preset(preset)).train()
    optimizer = adamw(model, lr=1e-4, weight_decay=0.01)
    generator = torch.Generator().manual_seed(1)
    ids = torch.from_numpy(vocab.BASE_IDS)[torch.randint(0, 4, (batch, window), generator=generator)]
    masked, labels = mask_tokens(ids, generator, 0.15)
    input_ids, mask, labels = with_cls_sep(masked, labels)
    times = []
    for index in range(warmup + repeats):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast(torch.device("cpu"), dtype):
            out = model(input_ids, mask, labels=labels)
        out.loss.backward()
        optimizer.step()
        if index >= warmup:
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--window", type=int, default=510)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"preset {args.preset}, batch {args.batch} x {args.window} nt, {args.threads} threads, "
          f"CPU native bf16: {cpu_has_native_bf16()}, torch {torch.__version__}")
    results = {}
    for name, dtype in (("float32", None), ("bfloat16", torch.bfloat16)):
        times = time_steps(args.preset, args.batch, args.window, dtype, args.warmup, args.repeats)
        results[name] = statistics.median(times)
        print(f"{name:>9}: median {results[name]:.2f} s/step  (steps: {', '.join(f'{t:.2f}' for t in times)})")
    print(f"bfloat16 / float32 step time: {results['bfloat16'] / results['float32']:.2f}")


if __name__ == "__main__":
    main()
