"""scripts/promoter_significance.py: the classifier against refitted baselines on a test split,
with paired-bootstrap intervals that hold the full-set difference."""

import csv
from pathlib import Path

import pytest

TATA = Path(__file__).resolve().parents[1] / "data" / "promoter" / "tata_small.tsv"



def test_rows_report_the_classifier_minus_the_baseline_with_an_interval(tmp_path, make_tiny_models, script):
    pytest.importorskip("sklearn")
    models = make_tiny_models(tmp_path / "runs")
    header, *records = TATA.read_text().splitlines()
    folder = tmp_path / "data" / "tiny_set"
    folder.mkdir(parents=True)
    for split in ("train", "valid", "test"):  # every split the whole fixture: both classes in each
        (folder / f"{split}.tsv").write_text("\n".join([header, *records]) + "\n")
    out = tmp_path / "significance.tsv"

    assert script("promoter_significance").main(["-m", models.clf, "--data", str(tmp_path / "data"), "--datasets", "tiny_set",
                                       "--resamples", "50", "--out", str(out)]) == 0

    lines = out.read_text().splitlines()
    assert lines[0].startswith("# model promoter-tiny sha256 ")
    (row,) = list(csv.DictReader(lines[1:], delimiter="\t"))
    assert (row["dataset"], row["n"], row["baseline"]) == ("tiny_set", str(len(records)), "6mer_lr")
    for metric in ("mcc", "auroc"):
        difference = float(row[f"{metric}_difference"])
        assert difference == pytest.approx(float(row[f"model_{metric}"]) - float(row[f"baseline_{metric}"]), abs=2e-4)
        assert float(row[f"{metric}_low"]) <= difference <= float(row[f"{metric}_high"])
        assert 0.0 <= float(row[f"{metric}_model_better"]) <= 1.0
    assert not list(tmp_path.glob("*.partial"))
