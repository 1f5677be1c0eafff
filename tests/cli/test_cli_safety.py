"""Outputs are never destroyed or left half-written: outputs that are inputs, outputs that collide,
names that do not fit the format, interrupts (SIGTERM like SIGINT), and inputs that deserve a
warning (all-N records, records much shorter than a classifier's training length, assembly gaps)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyBigWig
import pytest
import torch
from typer.testing import CliRunner

from mxdna_cli.cli import app

torch.set_num_threads(1)
DATA = Path(__file__).resolve().parents[1] / "data"
MINI = DATA / "mini.fa"
MXDNA = str(Path(sys.executable).parent / "mxdna")


@pytest.fixture(scope="module")
def models(tmp_path_factory, make_tiny_models):
    return make_tiny_models(tmp_path_factory.mktemp("models"))


def run(*args, input=None):
    result = CliRunner().invoke(app, [str(a) for a in args], input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def fails_cleanly(folder: Path, code: int, *args, input=None) -> str:
    """The command fails with `code`, one stderr line, no traceback, and `folder` exactly as it was."""
    before = listing(folder)
    result = run(*args, input=input)
    assert result.exit_code == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mxdna: error: "), result.stderr
    assert listing(folder) == before
    return lines[0]


@pytest.fixture
def work(tmp_path):
    fasta = tmp_path / "genome.fa"
    fasta.write_bytes(MINI.read_bytes())
    (tmp_path / "regions.bed").write_text("CHROMOSOME_I\t0\t500\tr1\t0\t-\n")
    return tmp_path


# --------------------------------------------------------------------------- outputs that are inputs


def test_an_output_that_is_the_input_is_a_usage_error(work, models):
    fasta = work / "genome.fa"
    line = fails_cleanly(work, 2, "embed", fasta, "-o", fasta, "--format", "tsv", "-m", models.mlm)
    assert line.startswith(f"mxdna: error: --output {fasta}: is an input ({fasta})")
    line = fails_cleanly(work, 2, "tokenize", fasta, "--export-bed", work / "regions.bed", "--bed", work / "regions.bed",
                         "-m", models.mlm)
    assert line.startswith(f"mxdna: error: --export-bed {work / 'regions.bed'}: is an input")
    os.symlink(fasta, work / "link.tsv")  # the same file through a link
    line = fails_cleanly(work, 2, "embed", fasta, "-o", work / "link.tsv", "-m", models.mlm)
    assert f"is an input ({fasta})" in line  # named by the file the link points to


def test_an_output_onto_the_fasta_index_is_a_usage_error(work, models):
    fasta = work / "genome.fa"
    run("windows", fasta, "-r", "CHROMOSOME_I:1-100", "-o", work / "plan.tsv")  # builds genome.fa.fai
    assert (work / "genome.fa.fai").is_file()
    fails_cleanly(work, 2, "predict", "promoter", fasta, "-o", work / "genome.fa.fai", "-m", models.clf)


@pytest.mark.parametrize("region, code", [("CHROMOSOME_I:50-10", 2), ("chrZ:1-10", 1), ("CHROMOSOME_I:1-999999", 1)])
def test_a_failed_region_run_removes_the_index_it_built(work, models, region, code):
    # the region is parsed against the index, so the index is built first: a failure must not leave it
    fails_cleanly(work, code, "embed", work / "genome.fa", "-r", region, "-o", work / "x.tsv", "-m", models.mlm)
    assert not (work / "genome.fa.fai").exists()
    assert run("embed", work / "genome.fa", "-r", "CHROMOSOME_I:1-100", "-o", work / "x.tsv", "-m",
               models.mlm).exit_code == 0
    assert (work / "genome.fa.fai").is_file()  # a successful run keeps it
    fails_cleanly(work, 1, "embed", work / "genome.fa", "-r", "chrZ:1-10", "-o", work / "y.tsv", "-m", models.mlm)
    assert (work / "genome.fa.fai").is_file()  # an index the run did not build stays


def test_two_outputs_on_one_path_are_a_usage_error(work, models):
    fasta = work / "genome.fa"
    line = fails_cleanly(work, 2, "tokenize", fasta, "--export-bed", work / "x.bed", "--tokens", work / "x.bed",
                         "-m", models.mlm)
    assert "--tokens" in line and "--export-bed" in line


def test_a_sidecar_onto_an_input_is_a_usage_error(work, models):
    """embed -o genes.npy writes genes.index.tsv: it must not replace an input of that name."""
    index_like = work / "genes.index.tsv"
    index_like.write_text("keep me\n")
    line = fails_cleanly(work, 2, "embed", work / "genome.fa", "--bed", index_like, "-o", work / "genes.npy",
                         "-m", models.mlm)
    assert f"would write {index_like}, which is an input" in line
    assert index_like.read_text() == "keep me\n"


@pytest.mark.parametrize("args", [
    ("tokenize", "{fasta}", "--export-bed", "{work}/units.txt"),
    ("tokenize", "{fasta}", "--tokens", "{work}/tokens.tsv"),
    ("tokenize", "{fasta}", "--plot", "{work}/lengths.pdf"),
    ("predict", "promoter", "{fasta}", "--track", "{work}/track.wig"),
    ("predict", "promoter", "{fasta}", "-o", "{work}/p.bed"),
    ("windows", "{fasta}", "-o", "{work}/plan.bed"),
])
def test_an_output_named_for_another_format_is_a_usage_error(work, models, args):
    args = [a.format(fasta=work / "genome.fa", work=work) for a in args]
    model = models.clf if args[0] == "predict" else models.mlm
    extra = [] if args[0] == "windows" else ["-m", model]
    line = fails_cleanly(work, 2, *args, *extra)
    assert "must end with" in line


def test_finetune_onto_an_existing_file_fails_before_loading_anything(work, tmp_path):
    existing = work / "model.bin"
    existing.write_text("precious")
    started = time.perf_counter()
    # an input that would take a while to read and a backbone that does not exist: never reached
    line = fails_cleanly(work, 2, "finetune", f"promoter={work / 'genome.fa'}", f"other={work / 'genome.fa'}",
                         "-o", existing, "--pretrained", work / "no-such-model")
    assert "is a file" in line and time.perf_counter() - started < 30
    assert existing.read_text() == "precious"
    (work / "folder").mkdir()
    (work / "folder" / "x").write_text("x")
    assert "not empty" in fails_cleanly(work, 2, "finetune", f"promoter={work / 'genome.fa'}", "-o", work / "folder")


# --------------------------------------------------------------------------- interrupts


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("verb", [["embed", "--format", "tsv"], ["tokenize"]])
def test_a_full_disk_under_stdout_is_one_line_not_a_traceback(models, verb):
    with open("/dev/full", "w") as full:
        result = subprocess.run([MXDNA, *verb, str(MINI), "-o", "-", "-m", models.mlm, "-q"], stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip() == "mxdna: error: cannot write the output: No space left on device"


def _interrupt(command: list[str], wait_for, signum: int) -> subprocess.CompletedProcess:
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and not wait_for() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be interrupted"
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _long_fasta(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    path = folder / "long.fa"
    with path.open("w") as handle:
        for i in range(40):
            handle.write(f">r{i}\n" + "".join(rng.choice(list("ACGT"), 4000)) + "\n")
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_embed_leaves_nothing_and_says_one_line(tmp_path, models, signum):
    fasta = _long_fasta(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    command = [MXDNA, "embed", str(fasta), "-o", str(out / "emb.npy"), "-m", models.mlm, "--threads", "1",
               "--window", "512", "--batch-tokens", "600", "-q"]
    result = _interrupt(command, lambda: any(out.iterdir()), signum)  # its temporary files exist: it is working
    assert result.returncode == 128 + signum, result.stderr
    assert result.stderr.strip() == "mxdna: interrupted"
    assert list(out.iterdir()) == []


def test_an_interrupted_finetune_leaves_no_model_folder_only_its_checkpoint(tmp_path, models):
    rng = np.random.default_rng(1)
    table = tmp_path / "train.tsv"
    rows = ["sequence\tlabel"] + [
        "\t".join(("".join(rng.choice(list("ACGT"), 100)), label)) for label in ("promoter", "other") for _ in range(60)
    ]
    table.write_text("\n".join(rows) + "\n")
    # --eval-every 1 without -q: a validation line on stderr says training has started
    command = [MXDNA, "finetune", str(table), "-o", str(tmp_path / "clf"), "--pretrained", models.mlm,
               "--epochs", "1000", "--eval-every", "1", "--threads", "1"]
    before = sorted(p.name for p in tmp_path.iterdir())
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        lines = []
        for line in process.stderr:
            lines.append(line)
            if "val MCC" in line:
                break
        process.send_signal(signal.SIGTERM)
        rest = process.stderr.read()
        process.wait(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 143, "".join(lines) + rest
    assert rest.strip().splitlines()[-1] == "mxdna: interrupted"
    # no clf/, no staging folder: only the run area that --resume continues from
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + [".clf.run"])
    assert (tmp_path / ".clf.run" / "checkpoint.pt").is_file()


# --------------------------------------------------------------------------- inputs that deserve a warning


def test_all_n_and_short_records_are_warned_about_once(tmp_path, models):
    fasta = tmp_path / "odd.fa"
    fasta.write_text(">gap1\n" + "N" * 300 + "\n>gap2\n" + "N" * 300 + "\n>tiny\nA\n>tiny2\nAC\n")
    result = run("predict", "promoter", fasta, "-m", models.clf)
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert sum("all N" in line for line in warnings) == 1
    assert sum("much shorter" in line for line in warnings) == 1
    embedded = run("embed", fasta, "-o", tmp_path / "e.tsv", "-m", models.mlm)
    assert sum("all N" in line for line in embedded.stderr.splitlines()) == 1


def test_a_track_writes_no_data_over_assembly_gaps(tmp_path, models):
    rng = np.random.default_rng(2)
    left, right = ("".join(rng.choice(list("ACGT"), 1000)) for _ in range(2))
    fasta = tmp_path / "gap.fa"
    fasta.write_text(">chr\n" + left + "N" * 1000 + right + "\n")
    track = tmp_path / "t.bw"
    result = run("predict", "promoter", fasta, "--track", track, "--window", "100", "--step", "50", "-m", models.clf)
    assert result.exit_code == 0, result.stderr
    with pyBigWig.open(str(track)) as bw:
        intervals = bw.intervals("chr")
    covered = np.zeros(3000, dtype=bool)
    for start, end, _ in intervals:
        covered[start:end] = True
    assert covered[100:900].all() and covered[2100:2900].all()
    assert not covered[1100:1900].any()  # windows that are mostly N have no value
    assert "assembly gaps" in result.stderr


# --------------------------------------------------------------------------- streams


def test_pooled_npy_from_stdin_equals_the_file_run(tmp_path, models):
    from_file, from_stdin = tmp_path / "file.npy", tmp_path / "stdin.npy"
    assert run("embed", MINI, "-o", from_file, "-m", models.mlm, "-q").exit_code == 0
    assert run("embed", "-", "-o", from_stdin, "-m", models.mlm, "-q", input=MINI.read_text()).exit_code == 0
    np.testing.assert_array_equal(np.load(from_file), np.load(from_stdin))
    file_index = (tmp_path / "file.index.tsv").read_text().splitlines()
    stdin_index = (tmp_path / "stdin.index.tsv").read_text().splitlines()
    assert [l for l in file_index if not l.startswith("#")] == [l for l in stdin_index if not l.startswith("#")]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("verb", [["embed", "-o", "{out}/e.npy"], ["tokenize", "--export-bed", "{out}/u.bed"]])
def test_a_stream_with_no_record_fails_before_anything_is_created_in_the_output_folder(tmp_path, models, verb):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "empty.fa").write_text("")
    before = out.stat().st_mtime_ns  # a temporary file made and removed would change it
    args = [verb[0], tmp_path / "empty.fa", *[a.format(out=out) for a in verb[1:]], "-m", models.mlm, "-q"]
    line = fails_cleanly(out, 1, *args)
    assert "no FASTA records" in line and out.stat().st_mtime_ns == before
