"""The `mxdna` command line, end to end on the fixtures with tiny models: every verb and format,
coordinates, strands, stitching, pipes, and one-line errors that leave no output behind."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pysam
import pyBigWig
import pytest
import torch
from typer.testing import CliRunner

from mxdna_cli.cli import app
from mxdna_cli.io.labeled import read_table
from mxdna_cli.model.config import ModelConfig
from mxdna_cli.model.mxdna import MxDNAForMaskedLM
from mxdna_cli.sequence import reverse_complement
from mxdna_cli.weights import read_info
from mxdna_cli.windows import plan_windows

torch.set_num_threads(1)
DATA = Path(__file__).resolve().parents[1] / "data"
MINI = str(DATA / "mini.fa")
MINI_BGZ = str(DATA / "mini.fa.gz")
MINI_GZ = str(DATA / "mini.plain.fa.gz")
LENGTHS = {"CHROMOSOME_I": 3000, "NC_004353.4": 3000, "22:20608432-20611431": 3000}
UNIT_NAME = re.compile(r"^(\d+)nt_e(\d+)(_clip)?$")


@pytest.fixture(scope="module")
def models(tmp_path_factory, make_tiny_models):
    # fractional, non-zero deformable offsets: tokens read their neighbours' units
    return make_tiny_models(tmp_path_factory.mktemp("models"), labels=("non_promoter", "promoter"),
                            offsets=(-1.6, 0.35, 2.7), modulators=(0.5, 0.0, -0.4))


def run(*args, input=None, env=None):
    result = CliRunner().invoke(app, [str(a) for a in args], input=input, env=env)
    # a bug would surface as an exception the runner caught: never accept that as a result
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def ok(*args, **kwargs):
    result = run(*args, **kwargs)
    assert result.exit_code == 0, result.stderr
    return result


def rows(text):
    return [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]


def table(path):
    lines = rows(Path(path).read_text())
    return lines[0], lines[1:]


def header_meta(text):
    return dict(line[1:].split("=", 1) for line in text.splitlines() if line.startswith("#"))


def fetch(chrom, start, end):
    with pysam.FastaFile(MINI) as fasta:
        return fasta.fetch(chrom, start, end)


def write_fasta(path, records):
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in records))
    return str(path)


def check_tiling(units, chrom, start, end):
    """BED rows of one chrom tile [start, end) exactly."""
    spans = sorted((int(r[1]), int(r[2])) for r in units if r[0] == chrom)
    assert spans[0][0] == start and spans[-1][1] == end
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert all(a < b for a, b in spans)
    return spans


# --------------------------------------------------------------------------- help


@pytest.mark.parametrize("verb", [[], ["embed"], ["tokenize"], ["windows"], ["info"], ["pretrain"], ["evaluate"],
                                  ["predict"], ["predict", "promoter"], ["finetune"]])
def test_every_help_has_an_example(verb):
    result = ok(*verb, "--help")
    assert "Example" in result.stdout and "mxdna " in result.stdout


# --------------------------------------------------------------------------- embed


def test_embed_npy_rows_match_the_index_and_the_metadata(models, tmp_path):
    out = tmp_path / "emb.npy"
    ok("embed", MINI, "-r", "CHROMOSOME_I:1-3000", "--bed", DATA / "regions.bed", "-w", 500, "-o", out,
       "-m", models.mlm, "-q")
    matrix = np.load(out)
    columns, index = table(tmp_path / "emb.index.tsv")
    assert columns == ["name", "chrom", "start", "end", "strand", "n_fraction", "soft_masked_fraction"]
    assert matrix.shape == (len(index), 32) == (5, 32) and np.isfinite(matrix).all()
    assert [r[0] for r in index] == ["CHROMOSOME_I:1-3000", "ce_first100", "ce_last100", "dm_softmask_to_N",
                                     "22:20608432-20611431:991-1010"]
    assert [(r[1], int(r[2]), int(r[3]), r[4]) for r in index][2] == ("CHROMOSOME_I", 2900, 3000, "-")
    seq = fetch("NC_004353.4", 1000, 2100)
    n_frac = sum(c in "Nn" for c in seq) / len(seq)
    soft = sum(c.islower() for c in seq) / len(seq)
    assert float(index[3][5]) == pytest.approx(n_frac, abs=1e-6) and 0 < n_frac < 1
    assert float(index[3][6]) == pytest.approx(soft, abs=1e-6) and 0 < soft < 1
    assert len({tuple(np.round(r, 5)) for r in matrix}) == 5  # different sequences, different rows
    meta = json.loads((tmp_path / "emb.npy.json").read_text())
    assert meta["model_sha256"] == read_info(models.mlm).sha256
    assert (meta["window"], meta["stride"], meta["pooling"], meta["strand"]) == (500, 375, "mean", "forward")
    assert (meta["layer"], meta["dtype"], meta["shape"]) == (1, "float32", [5, 32])


def test_the_same_sequence_as_record_region_and_bed_line_embeds_the_same(models, tmp_path):
    piece = fetch("CHROMOSOME_I", 100, 900)
    # other records of other lengths, so that the piece is padded differently in each batch
    fasta = write_fasta(tmp_path / "piece.fa", [("other", fetch("NC_004353.4", 0, 2000)), ("piece", piece)])
    bed = tmp_path / "piece.bed"
    bed.write_text("CHROMOSOME_I\t0\t1500\tlong\t0\t+\nCHROMOSOME_I\t100\t900\tpiece\t0\t+\n")
    common = ("-w", 300, "-m", models.mlm, "-q")
    ok("embed", fasta, "-o", tmp_path / "record.npy", *common)
    ok("embed", MINI, "-r", "CHROMOSOME_I:101-900", "-r", "NC_004353.4:1-50", "-o", tmp_path / "region.npy", *common)
    ok("embed", MINI_BGZ, "--bed", bed, "-o", tmp_path / "bed.npy", *common)
    record = np.load(tmp_path / "record.npy")[1]
    region = np.load(tmp_path / "region.npy")[0]
    from_bed = np.load(tmp_path / "bed.npy")[1]
    np.testing.assert_allclose(region, record, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(from_bed, record, rtol=1e-4, atol=1e-5)
    assert not np.allclose(np.load(tmp_path / "bed.npy")[0], record, atol=1e-3)


def test_reverse_strand_is_the_forward_strand_of_the_reverse_complement(models, tmp_path):
    rc = write_fasta(tmp_path / "rc.fa", [("rc", reverse_complement(fetch("CHROMOSOME_I", 0, 3000)))])
    bed = tmp_path / "minus.bed"
    bed.write_text("CHROMOSOME_I\t0\t3000\tminus\t0\t-\n")
    common = ("-w", 1000, "-m", models.mlm, "-q")
    ok("embed", MINI, "-r", "CHROMOSOME_I:1-3000", "--strand", "reverse", "-o", tmp_path / "rev.npy", *common)
    ok("embed", rc, "-o", tmp_path / "rc.npy", *common)
    ok("embed", MINI, "--bed", bed, "-o", tmp_path / "bed.npy", *common)
    ok("embed", MINI, "-r", "CHROMOSOME_I:1-3000", "-o", tmp_path / "fwd.npy", *common)
    ok("embed", MINI, "-r", "CHROMOSOME_I:1-3000", "--strand", "both", "-o", tmp_path / "both.npy", *common)
    reverse, of_rc, from_bed = (np.load(tmp_path / f"{n}.npy")[0] for n in ("rev", "rc", "bed"))
    forward, both = np.load(tmp_path / "fwd.npy")[0], np.load(tmp_path / "both.npy")[0]
    np.testing.assert_allclose(reverse, of_rc, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(from_bed, of_rc, rtol=1e-4, atol=1e-5)
    assert not np.allclose(forward, reverse, atol=1e-3)
    np.testing.assert_allclose(both, (forward + reverse) / 2, rtol=1e-4, atol=1e-5)
    assert rows((tmp_path / "both.index.tsv").read_text())[1][4] == "."


def test_windowed_pooling_matches_the_per_token_output(models, tmp_path):
    regions = ("-r", "CHROMOSOME_I:1-3000", "-r", "NC_004353.4:501-2900", "--bed", DATA / "regions.bed")
    common = ("-w", 700, "-m", models.mlm, "-q", *regions)
    ok("embed", MINI, "--pool", "none", "-o", tmp_path / "tok.npy", *common)
    ok("embed", MINI, "--pool", "mean", "-o", tmp_path / "mean.npy", *common)
    ok("embed", MINI, "--pool", "max", "-o", tmp_path / "max.tsv", *common)
    tokens = np.load(tmp_path / "tok.npy")
    token_columns, token_index = table(tmp_path / "tok.index.tsv")
    assert token_columns == ["record", "chrom", "centre", "unit_start", "unit_end", "strand"]
    assert len(token_index) == len(tokens)
    record_columns, records = table(tmp_path / "tok.records.tsv")
    assert record_columns[-2:] == ["first_row", "n_tokens"] and len(records) == 6
    mean = np.load(tmp_path / "mean.npy")
    _, max_rows = table(tmp_path / "max.tsv")
    maxima = np.array([[float(v) for v in r[7:]] for r in max_rows])
    for i, record in enumerate(records):
        first, n = int(record[-2]), int(record[-1])
        assert n > 0 and all(r[0] == record[0] for r in token_index[first : first + n])
        np.testing.assert_allclose(tokens[first : first + n].mean(axis=0), mean[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(tokens[first : first + n].max(axis=0), maxima[i], rtol=2e-5, atol=1e-6)
        # token coordinates: the units tile the region and each centre lies in its unit
        units = [(r[1], int(r[3]), int(r[4]), int(r[2])) for r in token_index[first : first + n]]
        check_tiling([(c, a, b) for c, a, b, _ in units], record[1], int(record[2]), int(record[3]))
        assert all(a <= centre < b for _, a, b, centre in units)
    assert len(plan_windows(3000, 700, 525)) == 6  # the first record was read in 6 stitched windows


def test_tsv_output_options_and_layers(models, tmp_path):
    common = ("-r", "CHROMOSOME_I:1-400", "-m", models.mlm, "-q")
    default = ok("embed", MINI, *common)
    meta = header_meta(default.stdout)
    assert (meta["layer"], meta["pooling"], meta["model"]) == ("1", "mean", "tiny")
    columns, (row,) = rows(default.stdout)[0], rows(default.stdout)[1:]
    assert columns[:7] == ["name", "chrom", "start", "end", "strand", "n_fraction", "soft_masked_fraction"]
    assert len(row) == 7 + 32
    last = ok("embed", MINI, "--layer", "-1", *common)
    assert rows(last.stdout)[1] == row
    first = ok("embed", MINI, "--layer", "0", *common)
    assert header_meta(first.stdout)["layer"] == "0" and rows(first.stdout)[1][7:] != row[7:]
    per_token = ok("embed", MINI, "--pool", "none", *common)
    assert rows(per_token.stdout)[0][:6] == ["record", "chrom", "centre", "unit_start", "unit_end", "strand"]
    check_tiling([(r[1], int(r[3]), int(r[4])) for r in rows(per_token.stdout)[1:]], "CHROMOSOME_I", 0, 400)
    ok("embed", MINI, "-o", tmp_path / "half.npy", "--dtype-out", "float16", *common)
    half = np.load(tmp_path / "half.npy")
    assert half.dtype == np.float16
    np.testing.assert_allclose(half[0], [float(v) for v in row[7:]], rtol=2e-3, atol=2e-3)
    bf16 = ok("embed", MINI, "--dtype", "bfloat16", "--device", "cpu", *common)
    assert header_meta(bf16.stdout)["dtype"] == "bfloat16"
    # the units are float32's (exact_units), so the pooled row is float32's within bf16 rounding
    np.testing.assert_allclose([float(v) for v in rows(bf16.stdout)[1][7:]], [float(v) for v in row[7:]],
                               rtol=0.05, atol=0.05)


def test_stdin_streams_gzip_and_plain_and_cls_pooling(models):
    plain = ok("embed", "-", "--pool", "cls", "-w", 1200, "-m", models.mlm, "-q", input=Path(MINI).read_bytes())
    gzipped = ok("embed", MINI_GZ, "--pool", "cls", "-w", 1200, "-m", models.mlm, "-q")
    assert [r[0] for r in rows(plain.stdout)[1:]] == list(LENGTHS)
    assert rows(plain.stdout)[1:] == rows(gzipped.stdout)[1:]


# --------------------------------------------------------------------------- tokenize


def test_tokenize_units_tile_every_record_and_tokens_are_valid_bed12(models, tmp_path):
    units_path, tokens_path = tmp_path / "units.bed", tmp_path / "tokens.bed"
    result = ok("tokenize", MINI_BGZ, "-w", 400, "--stride", 300, "--export-bed", units_path, "--tokens", tokens_path,
                "--summary", tmp_path / "lengths.tsv", "--plot", tmp_path / "lengths.png", "-m", models.mlm)
    assert result.stdout == ""
    units = rows(units_path.read_text())
    meta = header_meta(units_path.read_text())
    assert (meta["window"], meta["stride"], meta["model_sha256"]) == ("400", "300", read_info(models.mlm).sha256)
    by_chrom = {chrom: check_tiling(units, chrom, 0, length) for chrom, length in LENGTHS.items()}
    # the cut falls on a boundary both windows share when there is one; otherwise it clips the one unit
    # across it (two pieces), so each seam adds at most two clipped pieces (how many: float details)
    seams = sum(len(plan_windows(length, 400, 300)) - 1 for length in LENGTHS.values())
    clipped = sum(name.endswith("_clip") for _, _, _, name, _, _ in units)
    assert clipped <= 2 * seams < len(units) / 10
    for chrom, start, end, name, score, strand in units:
        match = UNIT_NAME.match(name)
        assert match and strand == "+" and 0 <= int(score) <= 1000
        length, expert = int(match[1]), int(match[2])
        assert length == expert + 1 and (match[3] or int(end) - int(start) == length)
    # tokens: one per unit, numbered in order; blocks inside the token's span; the own unit among them
    tokens = rows(tokens_path.read_text())
    assert len(tokens) == len(units)
    wider = 0
    for fields in tokens:
        chrom, start, end, name = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
        assert 0 <= int(fields[4]) <= 1000 and (int(fields[6]), int(fields[7])) == (start, end)
        count = int(fields[9])
        sizes = [int(v) for v in fields[10].split(",")]
        offsets = [int(v) for v in fields[11].split(",")]
        blocks = [(start + o, start + o + s) for o, s in zip(offsets, sizes)]
        assert len(blocks) == count and blocks[0][0] == start and blocks[-1][1] == end
        assert all(a < b for a, b in blocks) and all(x[1] < y[0] for x, y in zip(blocks, blocks[1:]))
        own = by_chrom[chrom][name]
        assert any(a <= own[0] and own[1] <= b for a, b in blocks)
        wider += (end - start) > (own[1] - own[0])
    assert wider > len(tokens) // 4  # the offsets make tokens read neighbouring units
    columns, counts = table(tmp_path / "lengths.tsv")
    assert columns == ["length", "count", "fraction"]
    assert sum(int(r[1]) for r in counts) == len(units)
    assert (tmp_path / "lengths.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "mean unit length" not in result.stderr  # the table went to --summary


def test_tokenize_min_weight_shrinks_token_footprints(models, tmp_path):
    def blocks_total(min_weight):
        out = ok("tokenize", MINI, "-r", "CHROMOSOME_I:1-600", "--tokens", "-", "--min-weight", min_weight,
                 "-m", models.mlm, "-q").stdout
        return sum(int(r[2]) - int(r[1]) for r in rows(out))

    assert blocks_total(1.5) < blocks_total(0.05)


def test_tokenize_regions_map_to_genome_positions_on_both_strands(models, tmp_path):
    seq = fetch("CHROMOSOME_I", 1000, 1800)
    fasta = write_fasta(tmp_path / "same.fa", [("fwd", seq), ("rev", reverse_complement(seq))])
    bed = tmp_path / "r.bed"
    bed.write_text("CHROMOSOME_I\t1000\t1800\tplus\t0\t+\nCHROMOSOME_I\t1000\t1800\tminus\t0\t-\n")
    common = ("-w", 300, "-m", models.mlm, "-q")
    from_records = rows(ok("tokenize", fasta, "--export-bed", "-", *common).stdout)
    from_bed = rows(ok("tokenize", MINI, "--bed", bed, "--export-bed", "-", *common).stdout)
    from_region = rows(ok("tokenize", MINI, "-r", "CHROMOSOME_I:1001-1800", "--export-bed", "-", *common).stdout)
    plus, minus = [r for r in from_bed if r[5] == "+"], [r for r in from_bed if r[5] == "-"]
    starts = [int(r[1]) for r in from_bed]
    assert starts == sorted(starts)  # coordinate-sorted, whatever the strands and the BED order
    check_tiling(plus, "CHROMOSOME_I", 1000, 1800)
    check_tiling(minus, "CHROMOSOME_I", 1000, 1800)
    shifted = [("CHROMOSOME_I", str(int(a) + 1000), str(int(b) + 1000), n, s, "+")
               for c, a, b, n, s, _ in from_records if c == "fwd"]
    assert [tuple(r) for r in plus] == shifted == [tuple(r) for r in from_region]
    mirrored = sorted(("CHROMOSOME_I", str(1800 - int(b)), str(1800 - int(a)), n, s, "-")
                      for c, a, b, n, s, _ in from_records if c == "rev")
    assert [tuple(r) for r in minus] == mirrored
    assert shifted != [(c, a, b, n, s, "+") for c, a, b, n, s, _ in mirrored]  # the strands differ


# --------------------------------------------------------------------------- predict


def test_predict_tsv_and_bigwig_track_agree(models, tmp_path):
    track = tmp_path / "p.bw"
    ok("predict", "promoter", MINI, "-m", models.clf, "--track", track, "-q")
    windows = [("CHROMOSOME_I", 0), ("CHROMOSOME_I", 350), ("CHROMOSOME_I", 2900), ("22:20608432-20611431", 1000)]
    bed = tmp_path / "w.bed"
    bed.write_text("".join(f"{c}\t{a}\t{a + 100}\tw{i}\t0\t+\n" for i, (c, a) in enumerate(windows)))
    result = ok("predict", "promoter", MINI, "-m", models.clf, "--bed", bed, "-q")
    assert rows(result.stdout)[0] == ["id", "chrom", "start", "end", "strand", "probability", "label"]
    predictions = rows(result.stdout)[1:]
    assert [r[0] for r in predictions] == ["w0", "w1", "w2", "w3"]
    with pyBigWig.open(str(track)) as bw:
        assert bw.chroms() == LENGTHS
        for (chrom, start), row in zip(windows, predictions):
            probability = float(row[5])
            assert 0 <= probability <= 1 and row[6] == ("promoter" if probability > 0.5 else "non_promoter")
            values = np.array(bw.values(chrom, start + 25, start + 75))
            np.testing.assert_allclose(values, probability, rtol=1e-5, atol=1e-6)
        assert np.isnan(bw.values("CHROMOSOME_I", 0, 25)).all()  # the first window's edge has no value
        assert not np.isnan(bw.values("CHROMOSOME_I", 25, 2975)).any()
        assert len(set(np.round(bw.values("CHROMOSOME_I", 25, 2975), 6))) > 10
    meta = json.loads((tmp_path / "p.bw.json").read_text())
    assert (meta["window"], meta["step"], meta["model"]) == (100, 50, "promoter-tiny")


def test_predict_both_strands_averages(models, tmp_path):
    common = ("promoter", MINI, "-r", "CHROMOSOME_I:201-300", "-m", models.clf, "-q")
    probability = {s: float(rows(ok("predict", *common, "--strand", s).stdout)[1][5]) for s in ("forward", "reverse", "both")}
    assert probability["both"] == pytest.approx((probability["forward"] + probability["reverse"]) / 2, abs=2e-6)


def test_a_classifier_scored_on_both_strands_is_read_on_both_unless_told(models, tmp_path):
    """A card whose metrics were scored on both strands (finetune --eval-strand both) sets the
    strand predict, evaluate and the API read when none is given; --strand still overrides it."""
    import shutil

    import mxdna_cli

    both = tmp_path / "both-strands"
    shutil.copytree(models.clf, both)
    card = json.loads((both / "model.json").read_text())
    card["extra"]["eval_strand"] = "both"
    (both / "model.json").write_text(json.dumps(card))
    common = ("predict", "promoter", MINI, "-r", "CHROMOSOME_I:201-300", "-r", "NC_004353.4:1001-1100", "-q")

    def predicted(*args):
        result = ok(*common, *args)
        return [float(r[5]) for r in rows(result.stdout)[1:]], result.stdout

    forward, _ = predicted("-m", models.clf)
    averaged, _ = predicted("-m", models.clf, "--strand", "both")
    assert not np.allclose(forward, averaged, atol=1e-4)
    by_default, text = predicted("-m", both)
    assert by_default == averaged and "#strand=both" in text
    assert predicted("-m", both, "--strand", "forward")[0] == forward

    write_fasta(tmp_path / "p.fa", [("p", "ACGTTGCA" * 12)])
    write_fasta(tmp_path / "n.fa", [("n", "TTTAAACG" * 12)])
    labelled = (f"promoter={tmp_path / 'p.fa'}", f"non_promoter={tmp_path / 'n.fa'}", "--threads", "1")
    scored = {args: rows(ok("evaluate", *labelled, *args).stdout)
              for args in (("-m", both), ("-m", models.clf, "--strand", "both"), ("-m", both, "--strand", "forward"))}
    header = scored[("-m", both)][0]
    strand, auroc = header.index("strand"), header.index("auroc")
    assert scored[("-m", both)][1][strand] == "both" and scored[("-m", both, "--strand", "forward")][1][strand] == "forward"
    assert scored[("-m", both)][1][auroc] == scored[("-m", models.clf, "--strand", "both")][1][auroc]

    classifier = mxdna_cli.load(str(both), device="cpu")
    sequences = ["ACGTTGCA" * 12, "TTTAAACG" * 12]
    assert np.array_equal(classifier.predict_proba(sequences), classifier.predict_proba(sequences, strand="both"))
    assert not np.allclose(classifier.predict_proba(sequences), classifier.predict_proba(sequences, strand="forward"),
                           atol=1e-4)


def test_predict_refuses_without_a_classifier(models, tmp_path, monkeypatch):
    import mxdna_cli

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(mxdna_cli, "bundled_weights_dir", lambda: empty)
    monkeypatch.delenv("MXDNA_WEIGHTS", raising=False)
    result = run("predict", "promoter", MINI)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "mxdna: error: no promoter classifier is bundled yet; train one with `mxdna finetune` or pass --model"
    )
    # a classifier found through $MXDNA_WEIGHTS is used
    assert run("predict", "promoter", MINI, "-r", "CHROMOSOME_I:1-100", "-q",
               env={"MXDNA_WEIGHTS": models.clf}).exit_code == 0
    masked_lm = run("predict", "promoter", MINI, "-m", models.mlm, "-q")
    assert masked_lm.exit_code == 2 and "not a classifier" in masked_lm.stderr


def test_predict_with_a_label_no_bundled_classifier_has_names_their_classes():
    result = run("predict", "promoter", MINI, "--label", "enhancer", "-q")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("mxdna: error: --label enhancer: no bundled classifier has this class "
                                            "(theirs: nonpromoter, promoter)")


@pytest.mark.parametrize("fixture", ["human_small.tsv", "tata_small.tsv"])
def test_the_default_promoter_classifier_calls_human_and_plant_promoters(fixture, tmp_path):
    """`predict promoter` without --model, on 16 promoters and 16 non-promoters of each species (the human
    ones held out of every shipped classifier's training): most promoters called, few non-promoters. The
    earlier Arabidopsis-only default called 3 of the 16 human promoters."""
    table = read_table(str(DATA / "promoter" / fixture))
    write_fasta(tmp_path / "in.fa", [(f"{label}{i}", sequence)
                                     for i, (sequence, label) in enumerate(zip(table.sequences, table.labels))])
    called = {"promoter": 0, "nonpromoter": 0}
    for row in rows(ok("predict", "promoter", tmp_path / "in.fa", "--threads", "1", "-q").stdout)[1:]:
        called[row[0].rstrip("0123456789")] += row[6] == "promoter"
    assert called["promoter"] >= 12 and called["nonpromoter"] <= 4, called


# --------------------------------------------------------------------------- windows, info


def test_windows_prints_the_plan_without_a_model(tmp_path):
    bed = tmp_path / "w.bed"
    bed.write_text("CHROMOSOME_I\t100\t2600\tm\t0\t-\n")
    result = ok("windows", MINI, "-w", 1000, "--stride", 750, "--batch-tokens", 4000,
                env={"MXDNA_WEIGHTS": str(tmp_path / "no-such-model")})
    header, plan = rows(result.stdout)[0], rows(result.stdout)[1:]
    assert header == ["record", "chrom", "strand", "start", "end", "keep_start", "keep_end"]
    assert len(plan) == 3 * len(plan_windows(3000, 1000, 750)) == 12
    for chrom in LENGTHS:
        keeps = [(int(r[5]), int(r[6])) for r in plan if r[1] == chrom]
        check_tiling([(chrom, a, b) for a, b in keeps], chrom, 0, 3000)
    assert "12 windows" in result.stderr and "9,000 nt" in result.stderr and "~4 batches" in result.stderr and "3 sequences" in result.stderr
    minus = rows(ok("windows", MINI, "--bed", bed, "-w", 1000, "-q").stdout)[1:]
    assert [(r[2], int(r[3]), int(r[4])) for r in minus] == [("-", 1600, 2600), ("-", 850, 1850), ("-", 100, 1100)]


def test_windows_with_step_shows_the_scan_windows_a_track_values(tmp_path, models):
    track = tmp_path / "t.bedgraph"
    ok("predict", "promoter", MINI, "-m", models.clf, "--track", track, "--step", 40, "--strand", "both", "-q")
    valued = [line.split("\t")[:3] for line in track.read_text().splitlines() if not line.startswith(("#", "track"))]
    plan = rows(ok("windows", MINI, "-w", 100, "--step", 40, "--strand", "both", "-q").stdout)[1:]
    forward = [r for r in plan if r[2] == "+"]
    keeps = [[r[1], r[5], r[6]] for r in forward]
    # each window's keep is the span its value covers; the track leaves out windows over assembly gaps
    assert [k for k in keeps if k in valued] == valued
    with pysam.FastaFile(MINI) as fasta:
        for r in forward:
            if [r[1], r[5], r[6]] not in valued:
                assert fasta.fetch(r[1], int(r[3]), int(r[4])).upper().count("N") > 50
    assert [r[3:] for r in plan if r[2] == "-"] == [r[3:] for r in forward]  # both strands read the same windows
    assert all(int(r[4]) - int(r[3]) == 100 for r in plan)
    assert run("windows", MINI, "-w", 100, "--step", 40, "--stride", 50).exit_code == 2


def test_info_says_what_each_bundled_model_is_for_and_which_is_the_default():
    data = json.loads(ok("info", "--json").stdout)
    bundled = {row["name"]: row for row in data["models"]}
    assert all(row["purpose"] for row in bundled.values())
    defaults = [name for name, row in bundled.items() if "promoter" in row["default_for"]]
    assert len(defaults) == 1 and bundled[defaults[0]]["task"] == "classification"


def test_info_lists_models_device_and_versions(models):
    env = {"MXDNA_WEIGHTS": str(models.root)}
    text = ok("info", env=env).stdout
    assert "tiny" in text and "promoter-tiny" in text and "random weights" in text and "torch" in text
    data = json.loads(ok("info", "--json", "--verify", env=env).stdout)
    by_name = {m["name"]: m for m in data["models"]}
    expected = sum(p.numel() for p in MxDNAForMaskedLM(ModelConfig.preset("tiny")).state_dict().values())
    assert by_name["tiny"]["parameters"] == expected
    assert by_name["tiny"]["sha256"] == read_info(models.mlm).sha256 and by_name["tiny"]["sha256_ok"]
    assert by_name["promoter-tiny"]["task"] == "classification" and not by_name["tiny"]["trained"]
    assert data["environment"]["cpu_threads"] >= 1 and "torch" in data["environment"]["versions"]


# --------------------------------------------------------------------------- pretrain, evaluate


def test_pretrain_plot_export_resume_and_evaluate(tmp_path):
    run_dir, export = tmp_path / "run", tmp_path / "export"
    common = ("--preset", "tiny", "--window", 96, "--batch-size", 4, "--warmup", 1, "--eval-every", 2,
              "--eval-windows", 4, "--heldout", "pretrain_small.fa//scer_*", "--threads", 1, "--device", "cpu")
    ok("pretrain", DATA / "pretrain_small.fa", "--out", run_dir, "--steps", 4, *common,
       "--plot", run_dir / "loss.png", "--export", export, "-q")
    assert (run_dir / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert read_info(export).task == "masked_lm" and read_info(export).extra["steps"] == 4
    result = ok("pretrain", DATA / "pretrain_small.fa", "--out", run_dir, "--steps", 6, *common)
    assert "warning" not in result.stderr and "resumed" in result.stderr and "step 6/6" in result.stderr
    log = rows((run_dir / "log.tsv").read_text())[1:]
    assert [r[0] for r in log if r[1] == "train"] == ["1", "2", "3", "4", "5", "6"]
    assert len([r for r in log if r[1] == "validation"]) == 3
    evaluation = ("evaluate", DATA / "pretrain_small.fa", "-m", export, "--window", 96, "--max-windows", 8, "-t", 1)
    first, second = ok(*evaluation), ok(*evaluation, "-q")
    assert rows(first.stdout) == rows(second.stdout)  # seeded (the headers differ in command line and time)
    columns, (row,) = rows(first.stdout)[0], rows(first.stdout)[1:]
    values = dict(zip(columns, row))
    assert 0 <= float(values["accuracy"]) <= 1 and int(values["masked"]) > 0 and int(values["windows"]) == 8
    assert "accuracy" in first.stderr
    one_strand = run(*evaluation, "--strand", "both")
    assert one_strand.exit_code == 2 and "--strand both scores a classifier" in one_strand.stderr
    other_seed = ok(*evaluation, "--seed", 7, "-q")
    assert rows(other_seed.stdout)[1] != row
    unmatched = ok("pretrain", DATA / "pretrain_small.fa", "--out", tmp_path / "run2", "--steps", 1, *common[:-8],
                   "--heldout", "no-such-record", "--threads", 1, "--device", "cpu")
    assert "warning: no held-out sequence matched" in unmatched.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_background_pretraining_run_stopped_by_a_signal_saves_its_checkpoint(tmp_path, signum):
    """A shell starts background jobs with SIGINT ignored; kill and Ctrl-C must both save the run."""
    run_dir = tmp_path / "run"
    command = [str(Path(sys.executable).parent / "mxdna"), "pretrain", str(DATA / "pretrain_small.fa"), "-o", str(run_dir),
               "--preset", "tiny", "--window", "96", "--batch-size", "2", "--steps", "100000", "--eval-every", "100000",
               "--checkpoint-minutes", "600", "--threads", "1", "--device", "cpu", "-q"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    log = run_dir / "log.tsv"
    try:
        while process.poll() is None and not (log.is_file() and len(log.read_text().splitlines()) > 3):
            time.sleep(0.2)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()  # never leave a training run behind when the signal was ignored
    assert process.returncode == 128 + signum, stderr  # 143 for SIGTERM, 130 for SIGINT
    assert "interrupted at step" in stderr and "Traceback" not in stderr
    saved = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert saved["step"] >= 3


# --------------------------------------------------------------------------- pipes


def test_stdin_and_stdout_in_a_real_shell_pipeline(models, tmp_path):
    mxdna = Path(sys.executable).parent / "mxdna"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    head = subprocess.run(
        f"cat {MINI} | {mxdna} tokenize - --export-bed - -m {models.mlm} -t 1 -q | grep -v '^#' | head -n 5",
        shell=True, capture_output=True, text=True, env=env, executable="/bin/bash",
    )
    assert head.returncode == 0 and "Traceback" not in head.stderr
    lines = rows(head.stdout)
    assert len(lines) == 5 and lines[0][:2] == ["CHROMOSOME_I", "0"] and UNIT_NAME.match(lines[0][3])
    full = subprocess.run(
        f"set -o pipefail; zcat {MINI_GZ} | {mxdna} embed - -w 800 -m {models.mlm} -t 1 | cut -f 1-4",
        shell=True, capture_output=True, text=True, env=env, executable="/bin/bash",
    )
    assert full.returncode == 0, full.stderr
    assert rows(full.stdout)[1:] == [[name, name, "0", "3000"] for name in LENGTHS]
    assert "mxdna embed: 3 records" in full.stderr  # the summary goes to stderr, never into the data


# --------------------------------------------------------------------------- bad input


def _bad_inputs(tmp_path, models):
    (tmp_path / "notfasta.txt").write_text("this is not a FASTA file\nACGT\n")
    (tmp_path / "bad.bed").write_text("CHROMOSOME_I\t10\tx20\n")
    # a long good record first, and small batches: outputs are being written when the bad record comes
    good = fetch("CHROMOSOME_I", 0, 3000)
    (tmp_path / "empty_second.fa").write_text(f">a\n{good}\n>b\n\n>c\nACGT\n")
    (tmp_path / "bad_letter.fa").write_text(f">a\n{good}\n>b\nACGTJACGT\n")
    midway = ("-w", 100, "--batch-tokens", 300)
    m = ("-m", models.mlm, "-q")
    out = tmp_path / "out"
    return [
        (1, "file not found", ["embed", tmp_path / "missing.fa", "-o", f"{out}.npy", *m]),
        (1, "not FASTA", ["embed", tmp_path / "notfasta.txt", "-o", f"{out}.tsv", *m]),
        (1, "not an integer", ["embed", MINI, "--bed", tmp_path / "bad.bed", "-o", f"{out}.npy", *m]),
        (1, "unknown contig", ["embed", MINI, "-r", "chrZ:1-10", "-o", f"{out}.npy", *m]),
        (1, "ends past the end", ["tokenize", MINI, "-r", "CHROMOSOME_I:2990-3010", "--export-bed", f"{out}.bed", *m]),
        (1, "empty sequence", ["embed", tmp_path / "empty_second.fa", "--pool", "none", *midway, "-o", f"{out}.tsv", *m]),
        (1, "not a DNA letter", ["tokenize", tmp_path / "bad_letter.fa", *midway, "--export-bed", f"{out}.bed", *m]),
        (1, "not a DNA letter", ["embed", tmp_path / "bad_letter.fa", *midway, "-o", f"{out}.npy", *m]),
        (1, "plain gzip", ["embed", MINI_GZ, "-r", "CHROMOSOME_I:1-10", "-o", f"{out}.npy", *m]),
        (1, "not found", ["embed", MINI, "-o", f"{out}.npy", "-m", tmp_path / "no-model", "-q"]),
        (2, "stdin", ["embed", "-", "-r", "CHROMOSOME_I:1-10", "-o", f"{out}.npy", *m]),
        (2, "stdout", ["embed", MINI, "-o", "-", "--format", "npy", *m]),
        (2, "stdout", ["predict", "promoter", MINI, "-m", models.clf, "--track", "-", "-q"]),
        (2, "choose one", ["predict", "promoter", MINI, "-m", models.clf, "-o", f"{out}.tsv", "--track", f"{out}.bw"]),
        (2, "--strand both", ["embed", MINI, "--pool", "none", "--strand", "both", "-o", f"{out}.npy", *m]),
        (2, "--strand both", ["tokenize", MINI, "--strand", "both", "--export-bed", f"{out}.bed", *m]),
        (2, "float16", ["embed", MINI, "--dtype", "float16", "--device", "cpu", "-o", f"{out}.npy", *m]),
        (2, "--stride", ["embed", MINI, "-w", 100, "--stride", 200, "-o", f"{out}.npy", *m]),
        (2, "--pool", ["embed", MINI, "--pool", "avg", "-o", f"{out}.npy", *m]),
        (2, "No such option", ["embed", MINI, "--no-such-option", *m]),
        (2, "does not exist", ["embed", MINI, "-o", tmp_path / "no-folder" / "x.npy", *m]),
        (2, "format", ["embed", MINI, "-o", f"{out}.h5", *m]),
        (2, "region", ["embed", MINI, "-r", "CHROMOSOME_I:x-5", "-o", f"{out}.npy", *m]),
    ]


def test_bad_input_gives_one_line_an_exit_code_and_no_output(models, tmp_path):
    failures = []
    for number, (code, fragment, args) in enumerate(_bad_inputs(tmp_path, models)):
        before = sorted(p.name for p in tmp_path.iterdir())
        result = run(*args)
        lines = result.stderr.strip().splitlines()
        after = sorted(p.name for p in tmp_path.iterdir())
        problems = []
        if result.exit_code != code:
            problems.append(f"exit {result.exit_code}, wanted {code}")
        if len(lines) != 1 or not lines[0].startswith("mxdna: error: ") or fragment not in lines[0]:
            problems.append(f"stderr {result.stderr!r}")
        if "Traceback" in result.stderr or result.stdout:
            problems.append(f"stdout {result.stdout!r}")
        if after != before:
            problems.append(f"left {set(after) - set(before)}")
        if problems:
            failures.append(f"case {number} {[str(a) for a in args[:3]]}: {'; '.join(problems)}")
    assert not failures, "\n".join(failures)


def test_an_error_midway_through_stdout_output_is_still_one_line(models, tmp_path):
    fasta = write_fasta(tmp_path / "bad.fa", [("a", fetch("CHROMOSOME_I", 0, 3000)), ("b", "ACGTJACGT")])
    result = run("tokenize", fasta, "-w", 100, "--batch-tokens", 300, "--export-bed", "-", "-m", models.mlm, "-q")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"mxdna: error: {fasta}: record 'b': position 5: 'J' is not a DNA letter (ACGT, N or IUPAC)"
    assert len(rows(result.stdout)) > 100  # what already went down a pipe cannot be taken back


# --------------------------------------------------------------------------- finetune


def test_finetune_writes_a_classifier_that_predict_uses(models, tmp_path):
    table_path = DATA / "promoter" / "tata_small.tsv"
    out = tmp_path / "clf"
    result = ok("finetune", table_path, "-o", out, "--pretrained", models.mlm, "--epochs", "2", "--batch-size", "8",
                "--threads", "1", "--seed", "3")
    assert "test" in result.stderr and result.stdout == ""
    info = read_info(out)
    assert info.task == "classification" and "promoter" in info.labels
    assert set(info.extra["metrics"]["test"]) >= {"accuracy", "f1", "mcc", "auroc", "auprc"}
    fasta = tmp_path / "q.fa"
    sequences = [line.split("\t")[0] for line in table_path.read_text().splitlines()[1:4]]
    write_fasta(fasta, [(f"s{i}", s) for i, s in enumerate(sequences)])
    first = rows(ok("predict", "promoter", fasta, "--model", out).stdout)[1:]  # after the column header
    again = rows(ok("predict", "promoter", fasta, "--model", out).stdout)[1:]
    assert [r[0] for r in first] == ["s0", "s1", "s2"] and first == again
    assert all(0.0 <= float(r[5]) <= 1.0 for r in first)


def test_finetune_on_a_single_class_is_a_data_error(tmp_path):
    single = tmp_path / "one.tsv"
    single.write_text("sequence,label\n" + "".join(f"{'ACGT' * 10},promoter\n" for _ in range(20)))
    single = single.rename(tmp_path / "one.csv")
    result = run("finetune", single, "-o", tmp_path / "clf", "--from-scratch", "--preset", "tiny", "--threads", "1")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "error" in result.stderr
    assert not (tmp_path / "clf" / "model.safetensors").exists()


def test_evaluate_a_classifier_agrees_with_its_predictions(models, tmp_path):
    from mxdna_cli.train.metrics import classification_metrics

    sequences = [line.split("\t") for line in (DATA / "promoter" / "tata_small.tsv").read_text().splitlines()[1:]]
    by_class = {label: [s for s, y in sequences if y == label][:6] for label in ("promoter", "nonpromoter")}
    assert all(by_class.values())
    write_fasta(tmp_path / "p.fa", [(f"p{i}", s) for i, s in enumerate(by_class["promoter"])])
    write_fasta(tmp_path / "n.fa", [(f"n{i}", s) for i, s in enumerate(by_class["nonpromoter"])])
    y = [1] * len(by_class["promoter"]) + [0] * len(by_class["nonpromoter"])

    def evaluated_and_predicted(*strand):
        """evaluate's row, and the probabilities predict gives the same sequences, on `strand`."""
        result = ok("evaluate", f"promoter={tmp_path / 'p.fa'}", f"non_promoter={tmp_path / 'n.fa'}", "-m", models.clf,
                    "--threads", "1", *strand)
        header, [row] = rows(result.stdout)[0], rows(result.stdout)[1:]
        predicted = []
        for name in ("p.fa", "n.fa"):
            predicted += [float(r[5]) for r in rows(ok("predict", "promoter", tmp_path / name, "--model", models.clf,
                                                       *strand).stdout)[1:]]
        return dict(zip(header, row)), np.array(predicted)

    def assert_metrics_of(got, p):
        expected = classification_metrics(y, np.stack([1 - p, p], axis=1))
        for metric in ("accuracy", "mcc", "auroc", "auprc"):
            assert float(got[metric]) == pytest.approx(expected[metric], abs=1e-4)

    got, predicted = evaluated_and_predicted()
    assert int(got["n"]) == 12 and got["strand"] == "forward"
    assert_metrics_of(got, predicted)
    # both strands: the metrics of predict --strand both's probabilities, which differ from the forward ones
    both, averaged = evaluated_and_predicted("--strand", "both")
    assert both["strand"] == "both" and not np.allclose(averaged, predicted, atol=1e-4)
    assert_metrics_of(both, averaged)
    wrong = run("evaluate", f"maybe={tmp_path / 'p.fa'}", "-m", models.clf, "--threads", "1")
    errors = [line for line in wrong.stderr.splitlines() if "error" in line]
    assert wrong.exit_code == 1 and len(errors) == 1 and "maybe" in errors[0] and "p.fa" in errors[0]
