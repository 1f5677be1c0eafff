"""The windows verb: the window plan of a run (every window in genome coordinates, and how many
input positions and batches it makes), tiled or a track scan's, without loading or running the model."""

from __future__ import annotations

import numpy as np

from mxdna_cli.defaults import DEFAULT_BATCH_TOKENS
from mxdna_cli.engine.inputs import Inputs
from mxdna_cli.engine.outputs import check_output, run_meta
from mxdna_cli.engine.report import Summary
from mxdna_cli.engine.pipeline import batch_groups, check_batch_tokens
from mxdna_cli.io.writers import TsvWriter
from mxdna_cli.errors import UsageError
from mxdna_cli.windows import DEFAULT_WINDOW, Scan, Tiling, check_step, resolve_stride

WINDOW_COLUMNS = ("record", "chrom", "strand", "start", "end", "keep_start", "keep_end")


def window_plan(inputs: Inputs, output: str, *, window: int = DEFAULT_WINDOW, stride: int | None = None,
                step: int | None = None, batch_tokens: int = DEFAULT_BATCH_TOKENS) -> Summary:
    """Write every window (genome coordinates) and return the plan's size; the model is not run.

    With `step`, the windows are a track scan's (`predict --track --step`): `window` nt every `step`
    nt, each keeping the central `step` nt its value covers (scan windows over assembly gaps, which
    the scan leaves out, are listed: telling them needs the sequence)."""
    check_batch_tokens(batch_tokens)
    check_output(output)
    if step is None:
        stride = resolve_stride(window, stride)
        geometry: Tiling | Scan = Tiling(window, stride)
        settings = {"stride": stride}
    else:
        if stride is not None:
            raise UsageError("--stride is for tiled windows, --step for scan windows: give one of them")
        geometry = Scan(window, check_step(step, window))
        settings = {"step": step}
    meta = run_meta("windows", None, inputs, window=window, **settings, strand=inputs.spec.strand,
                    batch_tokens=batch_tokens)
    summary = Summary(outputs=[output])
    lengths: list[int] = []
    with TsvWriter(output, WINDOW_COLUMNS, meta) as writer:
        source = inputs.plan() if inputs.known else inputs.targets()
        for target in source:
            plan = geometry.windows(target.length)
            for strand in target.strands:
                for win in plan:
                    # a scan's windows are in forward coordinates for both strands; tiles in the strand's own
                    shown = "+" if step is not None else strand
                    a, b = target.to_genome(shown, np.array(win.start), np.array(win.end))
                    ka, kb = target.to_genome(shown, np.array(win.keep_start), np.array(win.keep_end))
                    writer.write_row([target.name, target.chrom, strand, int(a), int(b), int(ka), int(kb)])
                    lengths.append(win.end - win.start)
            summary.count(target)
    summary.windows = len(lengths)
    summary.extra["positions"] = int(sum(n + 2 for n in lengths))
    summary.extra["batches"] = len(batch_groups(lengths, batch_tokens))
    return summary
