"""The model's fast paths against the general ones, side by side: speed and exactness.

Run: python benchmarks/dense_path.py [--threads 2] [--repeats 5] [--dtype float32 bfloat16]
     [--baseline general|out-of-place|convolutions | --against REV] [--part model|tokenizer]

The fast paths of `model/layers.py`: a batch without padding runs its attention unmasked and its
residual updates unweighted (mask None); inference reuses the feed-forward intermediate in place,
adds the residual into the fresh update and rotates queries and keys without a concatenated copy.
"general" patches them all back (every batch masked, every result a new tensor); with
`--baseline out-of-place` only the residual sums and the rotation are (the later of these
changes), which isolates them. `--baseline convolutions` puts back the learnt tokenizer's Conv1d
calls (the experts' unit convolutions, the deformable offsets and modulators; now matmuls, not
the same floats: the last column says how far apart), best timed with `--part tokenizer`.
`--against REV` sets the model's layers, learnt tokenizer and unit selection as they were at git
revision REV against today's: their classes' methods and the selection functions the tokenizer
calls, from that revision's source, patched in.
The rows are the same trained weights on the same windows, interleaved; medians of the repeats.
Cases: the bundled masked LM on 8 windows of 1 kb and the default promoter classifier on 64 of
251 nt (the suite's DNA, `run.dna_ids`: TAIR10 chr1 from data/bench, else random bases), each
forward under the engine's memory settings (runtime.set_threads: huge pages, kernel caches;
engine/memory.bound_heap).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import statistics
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

from mxdna_cli import runtime
from mxdna_cli.engine import memory
from mxdna_cli.model import layers, selection, tokenizer_layer
from mxdna_cli.model import mxdna as mxdna_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import dna_ids, dna_source  # noqa: E402


def general_swiglu(self, x):
    return self.w2(F.silu(self.w1(x)) * self.w3(x))


def general_rotary(x, tables):
    cos, signed_sin = (t.to(x.dtype) for t in tables)
    half = x.shape[-1] // 2
    return x * cos + torch.cat([x[..., half:], x[..., :half]], dim=-1) * signed_sin


def general_residual(hidden, update, keep=None):
    return hidden + (update if keep is None else keep * update)


def conv_expert(self, units):
    x = self.conv(F.glu(self.pre(units), dim=-1).transpose(1, 2)).squeeze(-1)
    return self.post(F.silu(self.norm(x)))


def conv_offsets_and_modulators(self, x, valid=None):
    conv_input = (x if valid is None else x * valid[..., None].to(x.dtype)).transpose(1, 2)
    return self.offset_conv(conv_input).transpose(1, 2), self.modulator_conv(conv_input).transpose(1, 2)


@contextlib.contextmanager
def patched(*replacements):
    """(owner, attribute, value) replacements in force for the block (an attribute missing today is added)."""
    with contextlib.ExitStack() as stack:
        for owner, name, value in replacements:
            stack.enter_context(mock.patch.object(owner, name, value, create=True))  # create: a method since removed
        yield


OUT_OF_PLACE = ((layers, "apply_rotary", general_rotary), (layers, "residual_add", general_residual))
BASELINES = {  # what each --baseline puts back (see the module docstring)
    "general": OUT_OF_PLACE + ((mxdna_model, "dense_or", lambda mask: mask), (layers.SwiGLU, "forward", general_swiglu)),
    "out-of-place": OUT_OF_PLACE,
    "convolutions": ((tokenizer_layer.ConvolutionExpert, "forward", conv_expert),
                     (tokenizer_layer.DeformableAssembly, "_offsets_and_modulators", conv_offsets_and_modulators)),
}


def module_at(revision: str, module):
    """`module` as its source was at git `revision`, imported under another name."""
    root = Path(__file__).resolve().parents[1]
    path = Path(module.__file__).resolve().relative_to(root).as_posix()
    source = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=root, check=True,
                            capture_output=True, text=True).stdout
    old = importlib.util.module_from_spec(importlib.util.spec_from_loader(f"{module.__name__}_at_{revision}", loader=None))
    exec(compile(source, f"{revision}:{path}", "exec"), old.__dict__)
    return old


def methods_at(revision: str, *modules) -> tuple:
    """(class, name, function) patches that give each class of `modules` the methods it had at git
    `revision` (they run with that revision's module-level functions)."""
    replacements = []
    for module in modules:
        old = module_at(revision, module)
        for name, today in inspect.getmembers(module, inspect.isclass):
            then = old.__dict__.get(name)
            if today.__module__ != module.__name__ or then is None:
                continue
            replacements += [(today, attribute, value) for attribute, value in vars(then).items()
                             if inspect.isfunction(value) and not attribute.startswith("__")]
    return tuple(replacements)


def functions_at(revision: str, module, user) -> tuple:
    """(user, name, function) patches that give `user` the functions it imports from `module` as
    they were at git `revision`."""
    old = module_at(revision, module)
    return tuple((user, name, old.__dict__[name]) for name, value in vars(user).items()
                 if inspect.isfunction(value) and value.__module__ == module.__name__ and name in old.__dict__)


def against(revision: str) -> tuple:
    """The layers, the learnt tokenizer and the unit selection it calls, as they were at `revision`."""
    return methods_at(revision, layers, tokenizer_layer) + functions_at(revision, selection, tokenizer_layer)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument("--baseline", default="general", choices=list(BASELINES),
                        help="what the fast paths are set against (see the module docstring)")
    parser.add_argument("--against", metavar="REV", help="set today's layers, tokenizer and selection against "
                        "those of git revision REV instead of a --baseline")
    parser.add_argument("--part", default="model", choices=["model", "tokenizer"],
                        help="time the whole forward, or the learnt tokenizer alone on the nucleotide layers' output")
    args = parser.parse_args(argv)
    baseline = against(args.against) if args.against else BASELINES[args.baseline]
    baseline_name = args.against or args.baseline
    memory.bound_heap()
    print(f"{dna_source()}\n")
    print(f"{args.part}: the whole forward\n" if args.part == "model" else "tokenizer: the learnt tokenizer alone\n")
    print(f"| model | batch x window | precision | {baseline_name} nt/s | fast paths nt/s | speed-up | max output difference |")
    print("|---|---|---|---|---|---|---|")
    for name, count, length in (("mxdna-small", 8, 1024), ("promoter-eukaryote", 64, 251)):
        for dtype in args.dtype:
            loaded = runtime.load(name, device="cpu", dtype=dtype, threads=args.threads)
            input_ids, attention_mask = mxdna_model.pad_batch(dna_ids(count * length, length))

            backbone = loaded.module.model
            if args.part == "tokenizer":
                with torch.no_grad(), loaded.autocast_context():
                    hidden = backbone(input_ids, attention_mask).nucleotide_hidden
                masks = mxdna_model.position_masks(input_ids, attention_mask)

            def forward():
                with torch.no_grad(), loaded.autocast_context():
                    if args.part == "tokenizer":  # float32 under autocast too, as in the model
                        with backbone.in_float32(input_ids.device.type):
                            return backbone.tokenizer(hidden, *masks).tokens.float()
                    return loaded.module(input_ids, attention_mask).logits.float()

            times = {"general": [], "fast": []}
            outputs = {}
            for _ in range(args.repeats + 1):  # the first round warms both up and is not counted
                for path in ("general", "fast"):
                    with patched(*baseline) if path == "general" else contextlib.nullcontext():
                        start = time.perf_counter()
                        outputs[path] = forward()
                        times[path].append(time.perf_counter() - start)
            nt = count * length
            general, fast = (nt / statistics.median(times[p][1:]) for p in ("general", "fast"))
            difference = (outputs["fast"] - outputs["general"]).abs().max().item()
            print(f"| {name} | {count} x {length} | {dtype} | {general:,.0f} | {fast:,.0f} | {fast / general:.2f}x "
                  f"| {difference:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
