"""scripts/combine_promoter_datasets.py: pooling rules, and --repeat oversampling one dataset's
training rows (never its validation rows)."""

import csv

import numpy as np
import pytest


def _write_datasets(root, datasets, rng):
    """Per dataset and split, 3 promoters and 3 non-promoters of random 120-nt DNA (no shared 50-mers)."""
    for dataset in datasets:
        for split in ("train", "valid", "test"):
            folder = root / dataset
            folder.mkdir(parents=True, exist_ok=True)
            rows = [("".join(rng.choice(list("ACGT"), 120)), label)
                    for label in ("promoter", "nonpromoter") for _ in range(3)]
            with open(folder / f"{split}.tsv", "w", newline="") as handle:
                writer = csv.writer(handle, delimiter="\t")
                writer.writerow(["sequence", "label"])
                writer.writerows(rows)


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_repeat_writes_one_datasets_training_rows_k_times(tmp_path, script):
    combine = script("combine_promoter_datasets")
    _write_datasets(tmp_path, combine.DATASETS, np.random.default_rng(0))
    assert combine.main(["--data", str(tmp_path), "--no-scan-guard"]) == 0
    plain = _rows(tmp_path / "eukaryote_all" / "train.tsv")
    repeated = combine.DATASETS[0]
    assert combine.main(["--data", str(tmp_path), "--no-scan-guard", "--name", "heavy",
                         "--repeat", f"{repeated}=3"]) == 0
    heavy = _rows(tmp_path / "heavy" / "train.tsv")

    def count(rows, dataset):
        return sum(row["dataset"] == dataset for row in rows)

    assert count(heavy, repeated) == 3 * count(plain, repeated) == 18
    for other in combine.DATASETS[1:]:
        assert count(heavy, other) == count(plain, other) == 6
    # validation is never repeated
    assert _rows(tmp_path / "heavy" / "valid.tsv") == _rows(tmp_path / "eukaryote_all" / "valid.tsv")


@pytest.mark.parametrize("spec", ["nosuchset=2", "human_tata_synthetic=0", "human_tata_synthetic=x"])
def test_a_bad_repeat_is_a_usage_error(tmp_path, script, spec):
    with pytest.raises(SystemExit) as stopped:
        script("combine_promoter_datasets").main(["--data", str(tmp_path), "--repeat", spec])
    assert stopped.value.code == 2
