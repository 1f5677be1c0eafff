"""--resume: a run killed midway (SIGKILL, or SIGTERM with --resume) continues from its journal and
ends with the files of an uninterrupted run: byte-identical BED and TSV (but for the run's own
time and command line in the header), equal NPY and bigWig."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyBigWig
import pytest
from typer.testing import CliRunner

from mxdna_cli.cli import app

MXDNA = str(Path(sys.executable).parent / "mxdna")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, make_tiny_models):
    root = tmp_path_factory.mktemp("resume")
    make_tiny_models(root, offsets=(-1.6, 0.35, 2.7), classifier_name="clf")  # live offsets, as in trained models
    rng = np.random.default_rng(0)
    fasta = root / "genome.fa"
    with fasta.open("w") as handle:
        for i in range(12):
            handle.write(f">r{i}\n" + "".join(rng.choice(list("ACGT"), 6000 + 500 * i)) + "\n")
    return root


def _journal(output: Path) -> Path:
    return output.parent / f".{output.name}.resume" / "journal.json"


def _kill_midway(command: list[str], output: Path, signum: int) -> None:
    """Start the run, wait until its journal records progress, then send `signum`."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if json.loads(_journal(output).read_text())["tasks_done"] >= 2:
                    break
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.02)
        assert process.poll() is None, "the run finished before it could be interrupted"
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode in (-signal.SIGKILL, 128 + signum), stderr
    assert not output.exists()  # nothing partial in place
    assert _journal(output).is_file()  # the journal is kept for --resume


def _run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.stderr
    return result


CASES = {
    "embed-npy": (["embed", "{fasta}", "-o", "{out}", "-m", "{root}/tiny", "--window", "300"], "x.npy"),
    "embed-tokens-tsv": (["embed", "{fasta}", "-o", "{out}", "--pool", "none", "-m", "{root}/tiny", "--window", "300"],
                         "x.tsv"),
    "embed-tokens-npy": (["embed", "{fasta}", "-o", "{out}", "--pool", "none", "-m", "{root}/tiny",
                          "--window", "300"], "x.npy"),
    "tokenize": (["tokenize", "{fasta}", "--export-bed", "{out}", "--tokens", "{out}.tokens.bed", "-m",
                  "{root}/tiny", "--window", "300"], "x.bed"),
    "track": (["predict", "promoter", "{fasta}", "--track", "{out}", "--step", "20", "-m", "{root}/clf"], "x.bw"),
}


def _command(case: str, root: Path, out: Path) -> list[str]:
    args, _ = CASES[case]
    return [a.format(fasta=root / "genome.fa", out=out, root=root) for a in args] + [
        "--batch-tokens", "400", "--threads", "1", "-q"]


def _same_files(a: Path, b: Path) -> None:
    names = sorted(p.name.replace(b.name, "OUT") for p in b.parent.iterdir() if not p.name.startswith("."))
    assert names == sorted(p.name.replace(a.name, "OUT") for p in a.parent.iterdir() if not p.name.startswith("."))
    for path_b in b.parent.iterdir():
        if path_b.name.startswith("."):
            continue
        path_a = a.parent / path_b.name
        if path_b.suffix == ".npy":
            np.testing.assert_array_equal(np.load(path_a), np.load(path_b))
        elif path_b.suffix == ".bw":
            with pyBigWig.open(str(path_a)) as x, pyBigWig.open(str(path_b)) as y:
                assert x.chroms() == y.chroms()
                for chrom in x.chroms():
                    assert x.intervals(chrom) == y.intervals(chrom)
        elif path_b.suffix == ".json":
            assert _unstamped(json.loads(path_a.read_text())) == _unstamped(json.loads(path_b.read_text()))
        else:  # byte-identical but for the time and command line of the run (--resume)
            assert _unstamped_lines(path_a.read_bytes()) == _unstamped_lines(path_b.read_bytes()), path_b.name


STAMPS = ("date", "command_line")


def _unstamped(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k not in STAMPS}


def _unstamped_lines(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\n") if not line.startswith(tuple(f"#{k}=".encode() for k in STAMPS))]


@pytest.mark.parametrize("case", list(CASES))
def test_a_killed_run_resumes_to_the_files_of_an_uninterrupted_run(setup, tmp_path, case):
    name = CASES[case][1]
    (tmp_path / "whole").mkdir()
    (tmp_path / "resumed").mkdir()
    whole, resumed = tmp_path / "whole" / name, tmp_path / "resumed" / name
    _run(*_command(case, setup, whole))
    signum = signal.SIGKILL if case != "track" else signal.SIGTERM
    command = [MXDNA, *_command(case, setup, resumed)]
    if signum == signal.SIGTERM:
        command.append("--resume")  # an interrupted --resume run keeps its journal
    _kill_midway(command, resumed, signum)
    _run(*_command(case, setup, resumed), "--resume")
    assert not _journal(resumed).parent.exists()
    _same_files(whole, resumed)


def test_resume_refuses_other_options_and_a_changed_input(setup, tmp_path):
    out = tmp_path / "x.bed"
    command = _command("tokenize", setup, out)
    _kill_midway([MXDNA, *command], out, signal.SIGKILL)
    other = CliRunner().invoke(app, [*command, "--min-weight", "0.2", "--resume"])
    assert other.exit_code == 2 and "other options or inputs" in other.stderr
    assert _journal(out).is_file()
    # without --resume, the unfinished run is discarded and the command starts afresh
    fresh = CliRunner().invoke(app, command)
    assert fresh.exit_code == 0 and not _journal(out).parent.exists() and out.is_file()


def test_an_interrupt_without_resume_leaves_no_journal(setup, tmp_path):
    out = tmp_path / "x.bed"
    process_command = [MXDNA, *_command("tokenize", setup, out)]
    process = subprocess.Popen(process_command, stderr=subprocess.PIPE, text=True)
    try:
        while process.poll() is None and not _journal(out).is_file():
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 143 and stderr.strip() == "mxdna: interrupted"
    assert list(tmp_path.iterdir()) == []
