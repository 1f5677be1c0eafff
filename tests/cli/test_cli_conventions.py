"""The habits of genomics users: `--export-bed` as a flag, samtools-style whole-contig regions,
help that lists choices and describes every option, provenance headers, bundled names wherever a
model is taken, and optional libraries that name their extra."""

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mxdna_cli import extras
from mxdna_cli.cli import app, optional_values
from mxdna_cli.errors import UsageError

DATA = Path(__file__).resolve().parents[1] / "data"
MINI = str(DATA / "mini.fa")
SMALL = str(Path(__file__).resolve().parents[2] / "weights" / "mxdna-small")


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def body(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_export_bed_alone_writes_bed6_to_stdout_and_with_a_value_to_that_file(tmp_path):
    region = ["-r", "CHROMOSOME_I:1-300", "-m", SMALL, "-q"]
    flag = run("tokenize", MINI, "--export-bed", *region)
    assert flag.exit_code == 0, flag.stderr
    lines = body(flag.stdout)
    assert lines and all(len(line.split("\t")) == 6 for line in lines)
    at_end = run("tokenize", MINI, *region, "--export-bed")
    assert body(at_end.stdout) == lines
    out = tmp_path / "units.bed"
    assert run("tokenize", MINI, "--export-bed", out, *region).exit_code == 0
    assert body(out.read_text()) == lines


def test_optional_values_only_fill_in_a_missing_value():
    assert optional_values(["tokenize", "g.fa", "--export-bed"]) == ["tokenize", "g.fa", "--export-bed", "-"]
    assert optional_values(["tokenize", "g.fa", "--export-bed", "-q"]) == ["tokenize", "g.fa", "--export-bed", "-", "-q"]
    assert optional_values(["tokenize", "g.fa", "--export-bed", "u.bed"]) == ["tokenize", "g.fa", "--export-bed", "u.bed"]
    assert optional_values(["tokenize", "-", "--export-bed", "-"]) == ["tokenize", "-", "--export-bed", "-"]


def test_whole_contig_and_open_ended_regions(tmp_path):
    whole = run("windows", MINI, "-r", "CHROMOSOME_I", "-r", "22:20608432-20611431", "-r", "NC_004353.4:2001")
    assert whole.exit_code == 0, whole.stderr
    rows = [line.split("\t") for line in body(whole.stdout)[1:]]
    spans = {}
    for record, chrom, _, start, end, *_ in rows:
        lo, hi = spans.get(record, (10**9, 0))
        spans[record] = (min(lo, int(start)), max(hi, int(end)))
    assert spans == {"CHROMOSOME_I": (0, 3000), "22:20608432-20611431": (0, 3000), "NC_004353.4:2001-3000": (2000, 3000)}
    unknown = run("windows", MINI, "-r", "chrZ")
    assert unknown.exit_code == 1 and "unknown contig 'chrZ'" in unknown.stderr


def _commands():
    command = typer.main.get_command(app)

    def walk(group, path):
        for name, sub in getattr(group, "commands", {}).items():
            if getattr(sub, "commands", None):
                yield from walk(sub, path + [name])
            else:
                yield path + [name], sub

    return list(walk(command, []))


def test_every_option_of_every_verb_has_a_help_line():
    missing = [(" ".join(path), param.name) for path, command in _commands() for param in command.params
               if not getattr(param, "help", None)]
    assert not missing


@pytest.mark.parametrize("path", [path for path, _ in _commands()], ids=lambda p: " ".join(p))
def test_help_shows_choices_and_no_typer_placeholders(path):
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    for placeholder in ("<bool>", "<str>", "<int>", "<float>", "<list[str]>", "range>"):
        assert placeholder not in result.stdout, (path, placeholder)


def test_choices_are_listed():
    help_text = {" ".join(path): CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"}).stdout
                 for path in (["finetune"], ["pretrain"], ["embed"])}
    assert "tiny|small|medium|base" in help_text["pretrain"] and "tiny|small|medium|base" in help_text["finetune"]
    assert "decoder|mean" in help_text["finetune"] and "balanced|none" in help_text["finetune"]
    assert "mean|max|cls|none" in help_text["embed"] and "forward|reverse|both" in help_text["embed"]


def test_headers_record_command_line_regions_versions_and_time(tmp_path):
    out = tmp_path / "w.tsv"
    assert run("windows", MINI, "-r", "CHROMOSOME_I:1-500", "-o", out).exit_code == 0
    meta = dict(line[1:].split("=", 1) for line in out.read_text().splitlines() if line.startswith("#"))
    assert "windows" in meta["command_line"] and "CHROMOSOME_I:1-500" in meta["regions"]
    assert "torch" in meta["versions"] and "python" in meta["versions"] and "mxdna_cli" in meta["versions"]
    assert meta["date"].endswith("Z") and len(meta["date"]) == 20


def test_init_from_takes_a_bundled_name(tmp_path):
    out = tmp_path / "run"
    result = run("pretrain", DATA / "pretrain_small.fa", "-o", out, "--preset", "small", "--steps", 1,
                 "--window", 96, "--batch-size", 1, "--eval-every", 1, "--eval-windows", 1, "--threads", 1,
                 "--init-from", "mxdna-small", "--heldout", "no-such-record", "-q")
    assert result.exit_code == 0, result.stderr
    assert (out / "checkpoint.pt").is_file()


def test_a_bad_init_from_leaves_no_run_folder(tmp_path):
    out = tmp_path / "run"
    result = run("pretrain", DATA / "pretrain_small.fa", "-o", out, "--preset", "tiny", "--steps", 1,
                 "--window", 96, "--init-from", "no-such-model", "-q")
    assert result.exit_code == 1 and "not found" in result.stderr
    assert not out.exists()


def test_a_missing_optional_library_names_its_extra(monkeypatch):
    monkeypatch.setattr(extras.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match=r"pip install 'mxdna_cli\[plot\]'"):
        extras.require("matplotlib", "--plot")


def test_a_classifier_with_0_1_labels_predicts_without_label_and_says_which_class(tmp_path):
    import torch

    from mxdna_cli.model.config import ModelConfig
    from mxdna_cli.model.mxdna import MxDNAForSequenceClassification
    from mxdna_cli.weights import save_model

    torch.manual_seed(0)
    save_model(MxDNAForSequenceClassification(ModelConfig.preset("tiny"), num_labels=2), tmp_path / "clf",
               trained=False, extra={"labels": ["0", "1"], "window": 100})
    out = tmp_path / "p.tsv"
    result = run("predict", "promoter", MINI, "-r", "CHROMOSOME_I:1-100", "-m", tmp_path / "clf", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert "scoring class '1'" in result.stderr
    meta = dict(line[1:].split("=", 1) for line in out.read_text().splitlines() if line.startswith("#"))
    assert meta["label"] == "1"
    other = run("predict", "promoter", MINI, "-r", "CHROMOSOME_I:1-100", "-m", tmp_path / "clf", "--label", "x")
    assert other.exit_code == 2 and "no class 'x'" in other.stderr


def test_a_track_named_bedgraph_is_a_bedgraph_with_the_bigwigs_values(tmp_path):
    import pyBigWig

    common = ["predict", "promoter", MINI, "-r", "CHROMOSOME_I:1-1000", "--step", "50", "-q"]
    assert run(*common, "--track", tmp_path / "t.bw").exit_code == 0
    result = run(*common, "--track", tmp_path / "t.bedgraph")
    assert result.exit_code == 0, result.stderr
    text = (tmp_path / "t.bedgraph").read_text().splitlines()
    assert any(line.startswith("track type=bedGraph") and "50 nt bins" in line for line in text)
    assert "#step=50" in text
    rows = [line.split("\t") for line in text if not line.startswith(("#", "track"))]
    with pyBigWig.open(str(tmp_path / "t.bw")) as bw:
        intervals = bw.intervals("CHROMOSOME_I")
    assert [(r[0], int(r[1]), int(r[2])) for r in rows] == [("CHROMOSOME_I", a, b) for a, b, _ in intervals]
    assert [float(r[3]) for r in rows] == pytest.approx([v for _, _, v in intervals], rel=1e-5)
    assert not (tmp_path / "t.bedgraph.json").exists()


def _sorted_bed_checks(path, tmp_path):
    """tabix indexes it (it refuses unsorted input) and bedtools merge accepts it (where installed)."""
    import shutil
    import subprocess

    import pysam

    copy = tmp_path / (path.name + ".copy.bed")
    copy.write_text("".join(line + "\n" for line in path.read_text().splitlines() if not line.startswith("#")))
    indexed = pysam.tabix_index(str(copy), preset="bed", force=True, keep_original=True)
    with pysam.TabixFile(indexed) as tabix:
        assert list(tabix.contigs)
    if shutil.which("bedtools"):
        merged = subprocess.run(["bedtools", "merge", "-i", str(copy)], capture_output=True, text=True)
        assert merged.returncode == 0, merged.stderr


def test_every_bed_written_is_coordinate_sorted_for_tabix_and_bedtools(tmp_path):
    bed = tmp_path / "r.bed"  # out of order, overlapping, both strands
    bed.write_text("NC_004353.4\t100\t900\ta\t0\t+\nCHROMOSOME_I\t1000\t1800\tb\t0\t-\n"
                   "CHROMOSOME_I\t200\t1500\tc\t0\t+\nCHROMOSOME_I\t1000\t1800\td\t0\t+\n")
    units, tokens = tmp_path / "u.bed", tmp_path / "t.bed"
    result = run("tokenize", MINI, "--bed", bed, "--export-bed", units, "--tokens", tokens, "-w", "300",
                 "-m", SMALL, "-q")
    assert result.exit_code == 0, result.stderr
    order = {"CHROMOSOME_I": 0, "NC_004353.4": 1, "22:20608432-20611431": 2}  # FASTA order
    for path in (units, tokens):
        rows = [line.split("\t") for line in body(path.read_text())]
        keys = [(order[r[0]], int(r[1])) for r in rows]
        assert keys == sorted(keys), path.name
        _sorted_bed_checks(path, tmp_path)


def test_pretrain_on_a_users_own_genome_validates_on_a_seeded_share_of_it(tmp_path):
    import json

    import numpy as np

    rng = np.random.default_rng(0)
    genome = tmp_path / "mine.fa"
    genome.write_text(">chrA\n" + "".join(rng.choice(list("ACGT"), 20000)) + "\n")
    out = tmp_path / "run"
    result = run("pretrain", genome, "-o", out, "--preset", "tiny", "--steps", 2, "--window", 96, "--batch-size", 2,
                 "--eval-every", 1, "--eval-windows", 2, "--threads", 1)
    assert result.exit_code == 0, result.stderr
    assert "without validation" not in result.stderr
    assert "seeded 2% of the input" in result.stderr
    assert "seeded 2%" in json.loads((out / "settings.json").read_text())["validation"]
    log = [line.split("\t") for line in (out / "log.tsv").read_text().splitlines()[1:]]
    assert any(row[1] == "validation" and row[5] not in ("", "nan") for row in log)


def test_embed_index_keeps_the_bed_strand_whatever_strands_are_read(tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("CHROMOSOME_I\t10\t400\tminus\t0\t-\nCHROMOSOME_I\t10\t400\tplus\t0\t+\n")
    for strand in ("forward", "both"):
        out = tmp_path / f"{strand}.npy"
        result = run("embed", MINI, "--bed", bed, "-r", "NC_004353.4:1-300", "--strand", strand, "-o", out,
                     "-m", SMALL, "-q")
        assert result.exit_code == 0, result.stderr
        rows = [line.split("\t") for line in body((tmp_path / f"{strand}.index.tsv").read_text())[1:]]
        strands = {row[0]: row[4] for row in rows}
        region_strand = "+" if strand == "forward" else "."  # a --region has no strand of its own
        assert strands == {"NC_004353.4:1-300": region_strand, "minus": "-", "plus": "+"}, strand
