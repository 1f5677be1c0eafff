"""Resumable runs: a progress journal beside the output, so that a killed genome-scale run continues
where it stopped (`--resume`) and ends with the files an uninterrupted run writes.

A run writes its outputs' temporary files into a hidden folder beside its first output,
`.NAME.resume/`, and after every chunk of windows (the runner's unit of batching) records there,
atomically: how many window tasks are done, the size of every temporary file, and the state of
the verb's consumers (stitchers, pooled sums, counts; pickled). A resumed run checks that the
command's settings and inputs are those of the journal, cuts every temporary file back to its
recorded size, restores the state and skips the tasks already done. Chunks are laid out from the
start of the run, so the resumed batches are the uninterrupted run's batches and the numbers are
the same, bit for bit.

The folder is removed when the run commits its outputs, and when it fails or is interrupted
without `--resume`; with `--resume` an interrupted run keeps it for the next try. A run killed
outright (SIGKILL, a crash of the machine) leaves it whatever the option.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

from mxdna_cli.errors import UsageError
from mxdna_cli.io.writers import STDOUT

JOURNAL = "journal.json"
STATE = "state-{}.pkl"  # one per checkpoint: the journal names the one it matches
FORMAT = 1


def input_fingerprint(paths: Iterable[str | None]) -> list[list[Any]]:
    """(path, size, modification time) of each input file: a changed input is a different run."""
    result = []
    for path in paths:
        if path is None or path == STDOUT or not os.path.isfile(path):
            continue
        stat = os.stat(path)
        result.append([os.path.abspath(path), stat.st_size, stat.st_mtime_ns])
    return result


def journal_folder(output: str) -> Path:
    path = Path(output).absolute()
    return path.parent / f".{path.name}.resume"


class Journal:
    """The progress journal of one run (see the module docstring).

    `outputs` are the run's file outputs; a run with an output on stdout cannot be resumed (what
    reached a pipe cannot be taken back), so it gets a journal that records nothing.
    """

    def __init__(self, outputs: list[str | None], fingerprint: dict[str, Any], *, resume: bool = False,
                 warn: Callable[[str], None] | None = None) -> None:
        files = [o for o in outputs if o is not None]
        self.enabled = bool(files) and STDOUT not in files
        self.resume = resume
        self.tasks_done = 0
        self.state: Any = None
        self._state_file: str | None = None
        self._sizes: dict[str, int] = {}
        self._writers: dict[str, Any] = {}
        if resume and not self.enabled:
            raise UsageError("--resume needs every output in a file (an output on stdout cannot be resumed)")
        if not self.enabled:
            self.folder = None
            return
        self.folder = journal_folder(files[0])
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))
        saved = self._read() if resume else None
        if saved is not None:
            if saved.get("fingerprint") != self.fingerprint:
                raise UsageError(
                    f"--resume: the unfinished run in {self.folder} was started with other options or inputs "
                    "(or an input changed since); rerun without --resume to start afresh"
                )
            self.tasks_done = int(saved["tasks_done"])
            self._sizes = {k: int(v) for k, v in saved["sizes"].items()}
            with open(self.folder / saved["state"], "rb") as handle:
                self.state = pickle.load(handle)
            self._state_file = saved["state"]
            return
        if self.folder.exists():
            if warn is not None and (self.folder / JOURNAL).is_file():
                warn(f"an unfinished earlier run ({self.folder}) is discarded; --resume would have continued it")
            shutil.rmtree(self.folder)
        self.folder.mkdir()

    @property
    def resumed(self) -> bool:
        return self.tasks_done > 0

    def _read(self) -> dict[str, Any] | None:
        try:
            with open(self.folder / JOURNAL, encoding="utf-8") as handle:
                saved = json.load(handle)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError):
            raise UsageError(f"--resume: the journal in {self.folder} is unreadable; rerun without --resume") from None
        if saved.get("format") != FORMAT:
            raise UsageError(f"--resume: the journal in {self.folder} is of another version; rerun without --resume")
        return saved

    # -- the files of the run

    def file_options(self, key: str) -> dict[str, Any]:
        """AtomicFile options for output `key`: its temporary file in the journal folder, and the
        size to cut it back to when resuming."""
        if not self.enabled:
            return {}
        return {"temporary": str(self.folder / f"{key}.tmp"), "resume_size": self._sizes.get(key) if self.resumed
                else None, "keep_on_abort": True}

    def track(self, key: str, writer: Any) -> Any:
        """Record `writer`'s size (its `tell()`) at every checkpoint; returns the writer."""
        self._writers[key] = writer
        return writer

    def path(self, key: str) -> str | None:
        return None if not self.enabled else str(self.folder / f"{key}.tmp")

    def size(self, key: str) -> int | None:
        return self._sizes.get(key) if self.resumed else None

    # -- progress

    def checkpoint(self, tasks_done: int, state: Any) -> None:
        """Record that `tasks_done` tasks are done (counted from the start of the run) and the state."""
        if not self.enabled:
            return
        sizes = {key: int(writer.tell()) for key, writer in self._writers.items()}
        state_file = STATE.format(tasks_done)
        with open(self.folder / state_file, "wb") as handle:
            pickle.dump(state, handle, protocol=pickle.HIGHEST_PROTOCOL)
        record = {"format": FORMAT, "fingerprint": self.fingerprint, "tasks_done": tasks_done, "sizes": sizes,
                  "state": state_file}
        temporary_journal = self.folder / (JOURNAL + ".tmp")
        temporary_journal.write_text(json.dumps(record), encoding="utf-8")
        # the journal is replaced in one step, and names its own state file: a kill at any moment
        # leaves a journal whose state and sizes belong together
        os.replace(temporary_journal, self.folder / JOURNAL)
        if self._state_file is not None and self._state_file != state_file:
            (self.folder / self._state_file).unlink(missing_ok=True)
        self._state_file = state_file

    def finish(self) -> None:
        """The outputs are in place: remove the folder."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def abandon(self, interrupted: bool) -> None:
        """The run failed or was interrupted: keep the folder only for an interrupted `--resume` run."""
        if self.folder is not None and not (interrupted and self.resume):
            shutil.rmtree(self.folder, ignore_errors=True)

    def guard(self):
        """A context manager: finish() on success, abandon() on failure or interrupt."""
        return _Guard(self)


class _Guard:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def __enter__(self) -> Journal:
        return self.journal

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        if exc_type is None:
            self.journal.finish()
        else:
            self.journal.abandon(interrupted=issubclass(exc_type, KeyboardInterrupt))


class _Appending:
    """A file opened for appending whose tell() flushes and gives the size (for a journal)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def write(self, data: Any) -> None:
        self._handle.write(data)

    def writelines(self, lines: Iterable[Any]) -> None:
        self._handle.writelines(lines)

    def tell(self) -> int:
        self._handle.flush()
        return self._handle.tell()

    def close(self) -> None:
        self._handle.close()


def reopen_for_append(path: str, mode: str, size: int | None) -> _Appending:
    """A new file (size None), or an existing one cut back to `size` and opened for appending."""
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
    if size is None:
        return _Appending(open(path, mode, **text))
    with open(path, "r+b") as handle:
        handle.truncate(size)
    return _Appending(open(path, mode.replace("w", "a"), **text))
