"""The predict verb: a classifier's probability of one class (promoter by default) per record or
region as TSV, or scanned along the genome in windows as a bigWig track."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from mxdna_cli.defaults import (
    DEFAULT_BATCH_TOKENS,
    DEFAULT_TRACK_STEP,
    PROMOTER_LABEL,
)
from mxdna_cli.engine.forward import classify
from mxdna_cli.engine.inputs import Inputs, Target
from mxdna_cli.engine.journal import Journal
from mxdna_cli.engine.outputs import check_output, run_fingerprint, run_meta
from mxdna_cli.engine.pipeline import Pipeline, WindowTask, window_tasks
from mxdna_cli.engine.spill import RowSpill
from mxdna_cli.engine.report import Reporter, Summary, timed
from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.io.bigwig import BigWigWriter
from mxdna_cli.io.writers import (
    STDOUT,
    TsvWriter,
    atomic_output,
    metadata_header_lines,
)
from mxdna_cli.runtime import LoadedModel
from mxdna_cli.windows import CLASSIFIER_WINDOW, Scan, Whole, check_step, check_window, scan_positions

MAX_WHOLE_LENGTH_FACTOR = 16  # a record longer than this x window must be scanned (--track)
SHORT_FACTOR = 0.5  # a record shorter than this x the training length gets a warning
MAX_TRACK_N_FRACTION = 0.5  # scan windows with more N than this (assembly gaps) get no value
PREDICT_COLUMNS = ("id", "chrom", "start", "end", "strand", "probability", "label")


@dataclass
class PredictSettings:
    output: str = "-"
    track: str | None = None
    window: int | None = None
    step: int = DEFAULT_TRACK_STEP
    label: str = PROMOTER_LABEL
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    resume: bool = False  # continue an interrupted --track run from its journal


def classifier_window(loaded: LoadedModel, window: int | None) -> int:
    if window is not None:
        return check_window(window)
    value = loaded.info.extra.get("window", CLASSIFIER_WINDOW)
    try:
        return int(value)
    except (TypeError, ValueError):
        return CLASSIFIER_WINDOW


def card_strand(loaded: LoadedModel) -> str:
    """The strand a classifier's card scored its metrics on ("both" or "forward"): what `predict`
    and `evaluate` read when no strand is given, so that they reproduce the card's numbers."""
    return "both" if loaded.info.extra.get("eval_strand") == "both" else "forward"


def predict(inputs: Inputs, loaded: LoadedModel, label_index: int, settings: PredictSettings,
            reporter: Reporter | None = None) -> Summary:
    """Promoter (or any class) probability per record/region (TSV), or along the genome (bigWig)."""
    reporter = reporter or Reporter()
    s = settings
    window = classifier_window(loaded, s.window)
    labels = loaded.info.labels
    if s.track is not None:
        return _predict_track(inputs, loaded, label_index, s, window, reporter)
    check_output(s.output)
    meta = run_meta("predict", loaded, inputs, label=loaded.info.labels[label_index], strand=inputs.spec.strand,
                    classifier_window=window, batch_tokens=s.batch_tokens)
    pipeline = Pipeline(loaded, batch_tokens=s.batch_tokens, reporter=reporter)
    forward = functools.partial(classify, loaded)
    limit = MAX_WHOLE_LENGTH_FACTOR * window
    warned = []

    def check_length(target: Target) -> None:
        if target.length > limit:
            raise UsageError(
                f"{target.name}: {target.length:,} nt is too long to classify whole (the classifier was "
                f"trained on {window} nt); scan it with --track out.bw, or pick --region/--bed"
            )

    if inputs.known:  # refuse before writing anything
        for target in inputs.plan():
            check_length(target)

    def checked(targets: Iterator[Target]) -> Iterator[Target]:
        for target in targets:
            check_length(target)
            if target.length < SHORT_FACTOR * window:
                reporter.warn_once("short", f"{target.name}: {target.length:,} nt is much shorter than the "
                                            f"{window} nt the classifier was trained on: its probability means little")
            if target.length > 2 * window and not warned:
                warned.append(True)
                reporter.warn(f"{target.name}: {target.length:,} nt is classified whole, but the classifier "
                              f"was trained on {window} nt windows (--track scans in windows)")
            yield target

    def tasks(report: Reporter | None) -> Iterator[WindowTask]:
        return window_tasks(checked(inputs.targets()), Whole(), report)

    if not pipeline.writes:  # another torchrun rank: run a share of the windows, write nothing
        pipeline.serve(tasks(None), forward)
        return Summary()
    summary = Summary(outputs=[s.output])
    with TsvWriter(s.output, PREDICT_COLUMNS, meta) as writer:
        pending: list[np.ndarray] = []

        def work() -> None:
            for task, probs in pipeline.run(tasks(reporter), forward):
                pending.append(probs)
                target = task.target
                if len(pending) == len(target.strands):
                    mean = np.mean(pending, axis=0)
                    pending.clear()
                    writer.write_row([target.name, target.chrom, target.start, target.end, target.strand_label,
                                      f"{float(mean[label_index]):.6g}", labels[int(np.argmax(mean))]])
                    summary.count(target)

        timed(summary, reporter, inputs.nucleotides_to_read, "classifying", work)
    summary.windows = pipeline.windows
    return summary


def check_track(track: str) -> None:
    """Refuse a track on stdout: a bigWig is a binary file (with a JSON sidecar), and both formats are
    written once every window is done, by name."""
    if track == STDOUT:
        raise UsageError("--track cannot go to stdout ('-'); give a file name ending in .bw or .bedgraph")


def _predict_track(inputs: Inputs, loaded: LoadedModel, label_index: int, s: PredictSettings, window: int,
                   reporter: Reporter) -> Summary:
    check_track(s.track)
    check_output(s.track, allow_stdout=False, what="bigWig")
    check_step(s.step, window)
    scan = Scan(window, s.step)
    inputs.peek()  # a stream that is not FASTA fails before any output exists
    if inputs.known:  # regions or an indexed FASTA: scan in genome order, refuse overlaps up front
        order_rank = inputs.contig_order()
        plan = sorted(inputs.plan(), key=lambda t: (order_rank[t.chrom], t.start, t.end))
        for before, after in zip(plan, plan[1:]):
            if before.chrom == after.chrom and after.start < before.end:
                raise UsageError(f"--track needs regions that do not overlap: {before.name} and {after.name} overlap")
        chrom_sizes = inputs.chrom_sizes()
        total = sum(scan_positions(t.length, window, s.step) for t in plan) * s.step
    else:  # a stream: records in file order; the bigWig header is written at the end, from what was read
        plan, chrom_sizes, total = None, [], None
    offset = (window - s.step) // 2  # a window's value covers its central `step` bases
    meta = run_meta("predict", loaded, inputs, label=loaded.info.labels[label_index], strand=inputs.spec.strand, window=window,
                    step=s.step, value_span=f"central {s.step} nt of each {window} nt window (offset {offset})",
                    batch_tokens=s.batch_tokens)
    pipeline = Pipeline(loaded, batch_tokens=s.batch_tokens, reporter=reporter)
    forward = functools.partial(classify, loaded)
    # what the task generator learns as it goes: recomputed when a resumed run skips the done tasks
    short: list[str] = []
    gaps: list[int] = []
    chroms: dict[int, str] = {}

    def on_target(target: Target) -> None:
        chroms[target.index] = target.chrom
        if plan is None:
            chrom_sizes.append((target.chrom, target.length))
        if target.length < window:
            short.append(target.name)

    def tasks(report: Reporter | None) -> Iterator[WindowTask]:
        # windows over assembly gaps get no value (no data in the bigWig), not a made-up score
        return window_tasks(inputs.targets(plan), scan, report, max_n_fraction=MAX_TRACK_N_FRACTION,
                            on_gap=lambda target, win: gaps.append(s.step), on_target=on_target)

    if not pipeline.writes:  # another torchrun rank: run a share of the windows, write nothing
        pipeline.serve(tasks(None), forward)
        return Summary()
    journal = Journal([s.track], run_fingerprint(meta, inputs, track=s.track), resume=s.resume, warn=reporter.warn)
    written = [s.track] if s.track.lower().endswith(BEDGRAPH_SUFFIXES) else [s.track, s.track + ".json"]
    state = journal.state or {"summary": Summary(outputs=written), "pending": [], "current": -1}
    summary: Summary = state["summary"]

    with journal.guard():
        spill = RowSpill(s.track, TRACK_ROW, journal)
        try:
            def work() -> None:
                pending: list[float] = state["pending"]
                for task, probs in pipeline.run(tasks(reporter), forward, journal=journal, state=state):
                    if task.target.index != state["current"]:
                        state["current"] = task.target.index
                        summary.count(task.target)
                    pending.append(float(probs[label_index]))
                    if len(pending) == len(task.target.strands):
                        spill.add(task.target.index, task.target.start + task.window.keep_start, float(np.mean(pending)))
                        pending.clear()

            timed(summary, reporter, None if total is None else total * inputs.passes, "scanning", work)
            if not chrom_sizes:
                raise DataError(f"{inputs.path}: no record to write a track for")
            write_track(s.track, spill.rows(), chrom_sizes, chroms, s.step, meta)
        finally:
            spill.remove()
    if gaps:
        reporter.warn(f"{sum(gaps):,} nt in windows with more than {MAX_TRACK_N_FRACTION:.0%} N (assembly gaps) "
                      "have no value in the track")
    if short:
        reporter.warn(f"{len(short)} record(s)/region(s) shorter than the {window} nt window have no values "
                      f"(first: {short[0]})")
    summary.windows = pipeline.windows
    return summary


TRACK_ROW = np.dtype([("target", "<i8"), ("start", "<i8"), ("value", "<f8")])  # 24 bytes a scan window
BEDGRAPH_SUFFIXES = (".bedgraph", ".bg")


def write_track(path: str, rows: np.ndarray, chrom_sizes, chroms: dict[int, str], step: int, meta) -> None:
    """The scan's rows (TRACK_ROW) as a bigWig, or a bedGraph when the name says so (as deepTools'
    --outFileFormat)."""
    if path.lower().endswith(BEDGRAPH_SUFFIXES):
        _write_bedgraph(path, rows, chroms, step, meta)
    else:
        _write_bigwig(path, rows, chrom_sizes, chroms, step, meta)


def _write_bedgraph(path: str, rows, chroms: dict[int, str], step: int, meta) -> None:
    """`#key=value` provenance, a track line stating the step, then chrom, start, end, value."""
    header = {**meta, "step": step}
    with atomic_output(path) as handle:
        handle.writelines(line + "\n" for line in metadata_header_lines(header))
        handle.write(f'track type=bedGraph name="mxdna {meta.get("model", "")}" '
                     f'description="P({meta.get("label", "")}), {step} nt bins, window {meta.get("window", "")}"\n')
        for block in range(0, len(rows), 1 << 16):
            part = rows[block : block + (1 << 16)]
            handle.writelines(f"{chroms[int(t)]}\t{int(a)}\t{int(a) + step}\t{float(v):.6g}\n"
                              for t, a, v in zip(part["target"], part["start"], part["value"]))


def _write_bigwig(path: str, rows, chrom_sizes, chroms: dict[int, str], step: int, meta) -> None:
    """Contiguous windows become one fixedStep entry (step = span = the scan step)."""
    with BigWigWriter(path, chrom_sizes, meta) as writer:
        if rows.size:
            breaks = np.flatnonzero((np.diff(rows["target"]) != 0) | (np.diff(rows["start"]) != step)) + 1
            for run in np.split(np.arange(rows.size), breaks):
                first = rows[run[0]]
                writer.add(chroms[int(first["target"])], int(first["start"]), rows["value"][run], span=step)
