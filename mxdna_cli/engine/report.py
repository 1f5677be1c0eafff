"""How the engine tells the caller what it is doing: progress and warnings (`Reporter`), the
summary of a run (`Summary`), and `timed`, which runs one phase of work under a progress bar."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable


class Reporter:
    """Where the engine reports progress and warnings; the CLI gives a rich one, tests a silent one."""

    def start(self, total: int | None, description: str) -> None:
        """A new phase of `total` nucleotides (None: unknown)."""

    def advance(self, nucleotides: int) -> None:
        """`nucleotides` more are done."""

    def stop(self) -> None:
        """The phase is over (also on error)."""

    def warn(self, message: str) -> None:
        """A one-line warning for the user."""

    def warn_once(self, key: str, message: str) -> None:
        """`warn`, but only the first time for `key` in this run."""
        seen = self.__dict__.setdefault("_warned", set())
        if key not in seen:
            seen.add(key)
            self.warn(message)


def check_target(target: Any, reporter: Reporter) -> None:
    """Warn (once a run) about a target whose outputs mean little: one that is all N."""
    if target.attached and target.n_fraction >= 1.0:
        reporter.warn_once("all-n", f"{target.name}: the sequence is all N (no A/C/G/T): its outputs carry "
                                    "no information about DNA")


@dataclass
class Summary:
    """What a run did, for the one-line report at the end."""

    targets: int = 0
    nucleotides: int = 0
    windows: int = 0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def count(self, target: Any) -> None:
        """One more target done (a record or region with a `length`), counted once whatever the strands."""
        self.targets += 1
        self.nucleotides += target.length

    @property
    def rate(self) -> float:
        return self.nucleotides / self.seconds if self.seconds > 0 else float("nan")


def timed(summary: Summary, reporter: Reporter, total: int | None, description: str,
          work: Callable[[], None]) -> None:
    """Run `work` as one reported phase of `total` nucleotides and record its seconds in `summary`."""
    reporter.start(total, description)
    started = time.perf_counter()
    try:
        work()
    finally:
        reporter.stop()
    summary.seconds = time.perf_counter() - started
