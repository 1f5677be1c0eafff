"""The windows verb: the window plan of a run (every window in genome coordinates, and how many
input positions and batches it makes), without loading or running the model."""

from __future__ import annotations

import numpy as np

from mxdna_cli.defaults import DEFAULT_BATCH_TOKENS, DEFAULT_WINDOW
from mxdna_cli.engine.inputs import Inputs
from mxdna_cli.engine.outputs import check_output, run_meta
from mxdna_cli.engine.report import Summary
from mxdna_cli.engine.pipeline import batch_groups, check_batch_tokens
from mxdna_cli.io.writers import TsvWriter
from mxdna_cli.windows import plan_windows, resolve_stride

WINDOW_COLUMNS = ("record", "chrom", "strand", "start", "end", "keep_start", "keep_end")


def window_plan(inputs: Inputs, output: str, *, window: int = DEFAULT_WINDOW, stride: int | None = None,
                batch_tokens: int = DEFAULT_BATCH_TOKENS) -> Summary:
    """Write every window (genome coordinates) and return the plan's size; the model is not run."""
    stride = resolve_stride(window, stride)
    check_batch_tokens(batch_tokens)
    check_output(output)
    meta = run_meta("windows", None, inputs, window=window, stride=stride, strand=inputs.spec.strand,
                    batch_tokens=batch_tokens)
    summary = Summary(outputs=[output])
    lengths: list[int] = []
    with TsvWriter(output, WINDOW_COLUMNS, meta) as writer:
        source = inputs.plan() if inputs.known else inputs.targets()
        for target in source:
            for strand in target.strands:
                for win in plan_windows(target.length, window, stride):
                    a, b = target.to_genome(strand, np.array(win.start), np.array(win.end))
                    ka, kb = target.to_genome(strand, np.array(win.keep_start), np.array(win.keep_end))
                    writer.write_row([target.name, target.chrom, strand, int(a), int(b), int(ka), int(kb)])
                    lengths.append(win.end - win.start)
            summary.count(target)
    summary.windows = len(lengths)
    summary.extra["positions"] = int(sum(n + 2 for n in lengths))
    summary.extra["batches"] = len(batch_groups(lengths, batch_tokens))
    return summary
