"""Everything the verbs tell the user on stderr: one progress reporter (`StderrProgress`, as a
nucleotide bar for the inference verbs and a step bar for training), warnings, and the one-line
run summaries. Data never goes here; it goes to the output files or stdout."""

from __future__ import annotations

import sys
import time
from typing import Any

from mxdna_cli import distributed, engine

PROG = "mxdna"


def quiet_here(quiet: bool) -> bool:
    """Quiet as asked, and always on torchrun ranks other than 0 (progress is rank 0's to show)."""
    return quiet or not distributed.world().main


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def say(message: str) -> None:
    """One line on stderr, at once."""
    print(message, file=sys.stderr, flush=True)


class StderrProgress:
    """A rich progress bar on stderr (only on a terminal; nothing at all when quiet), and one-line
    warnings. A subclass says what its bar counts: `StderrReporter` nucleotides, `TrainProgress`
    training steps."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet_here(quiet)
        self._progress: Any = None
        self._task: Any = None

    def _show(self, columns: tuple, description: str, total: int | None, transient: bool, **task: Any) -> None:
        """Start the bar, when there is a terminal to show it on."""
        if self.quiet:
            return
        from rich.console import Console
        from rich.progress import Progress

        console = Console(stderr=True)
        if not console.is_terminal:
            return
        self._progress = Progress(*columns, console=console, transient=transient)
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, **task)

    def _close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def warn(self, message: str) -> None:
        if not self.quiet:
            say(f"{PROG}: warning: {one_line(message)}")


class StderrReporter(StderrProgress, engine.Reporter):
    """The engine's `Reporter` for the inference verbs: a bar of nucleotides done, with nt/s."""

    def start(self, total: int | None, description: str) -> None:
        if self.quiet:
            return
        from rich.progress import (
            BarColumn,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class Rate(ProgressColumn):
            def render(self, task) -> Text:
                speed = task.finished_speed or task.speed
                return Text("-- nt/s" if speed is None else f"{speed:,.0f} nt/s", style="cyan")

        class Done(ProgressColumn):
            def render(self, task) -> Text:
                total = "?" if task.total is None else f"{int(task.total):,}"
                return Text(f"{int(task.completed):,}/{total} nt")

        columns = (TextColumn("[bold]{task.description}"), BarColumn(), Done(), Rate(), TimeElapsedColumn(),
                   TimeRemainingColumn())
        self._show(columns, description, total, transient=True)

    def advance(self, nucleotides: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, nucleotides)

    def stop(self) -> None:
        self._close()


class TrainProgress(StderrProgress):
    """A bar of training steps with loss, held-out accuracy and nt/s; without a terminal, one line per
    validation instead. A `with` block around the run; `update` is the trainer's progress callback."""

    def __init__(self, trainer: Any, quiet: bool) -> None:
        super().__init__(quiet)
        self.trainer = trainer
        self.total = trainer.settings.steps
        self.last: dict[str, Any] = {}
        self._started = time.perf_counter()
        self._start_nt = trainer.nucleotides

    def __enter__(self):
        if self.quiet:
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("[bold]step"), MofNCompleteColumn(), BarColumn(),
            TextColumn("loss {task.fields[loss]}  val acc {task.fields[acc]}  {task.fields[rate]} nt/s"),
            TimeElapsedColumn(), TimeRemainingColumn(),
        )
        self._show(columns, "train", self.total, transient=False, completed=self.trainer.step, loss="-", acc="-",
                   rate="-")
        return self

    def update(self, step: int, row: dict) -> None:
        if row.get("kind") == "train":
            self.last["loss"] = row["loss"]
        else:
            self.last["accuracy"] = row.get("accuracy")
            self.last["val_loss"] = row.get("loss")
        seconds = time.perf_counter() - self._started
        rate = (self.trainer.nucleotides - self._start_nt) / seconds if seconds > 0 else 0.0
        if self._progress is not None:
            acc = self.last.get("accuracy")
            self._progress.update(self._task, completed=step, loss=f"{self.last.get('loss', 0):.4f}",
                                  acc="-" if acc is None else f"{acc:.4f}", rate=f"{rate:,.0f}")
        elif not self.quiet and row.get("kind") == "validation":
            say(f"{PROG}: step {step}/{self.total} loss {self.last.get('loss', float('nan')):.4f} "
                f"val loss {row.get('loss', float('nan')):.4f} val acc {row.get('accuracy', float('nan')):.4f} "
                f"{rate:,.0f} nt/s")

    def __exit__(self, *exc_info) -> None:
        self._close()


# ---------------------------------------------------------------------------------------------
# Run summaries


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "es" if word.endswith("ch") else "s")


def report(verb: str, summary: engine.Summary, quiet: bool, what: str = "record") -> None:
    """The one line a verb ends with: what it read, how fast, and where the outputs went."""
    if quiet_here(quiet):
        return
    outputs = ", ".join("stdout" if o == "-" else o for o in summary.outputs)
    say(
        f"{PROG} {verb}: {plural(summary.targets, what)}, {summary.nucleotides:,} nt, "
        f"{plural(summary.windows, 'window')} "
        f"in {summary.seconds:.1f} s ({summary.rate:,.0f} nt/s) -> {outputs}"
    )
