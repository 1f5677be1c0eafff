"""scripts/ship_classifier.py: float16 copy into a weights folder, its card's test table, and one
default per label (the previous default loses its mark, its weights untouched)."""

import json
from pathlib import Path

from mxdna_cli.weights import load_model, read_info, save_model

DATA = Path(__file__).resolve().parents[1] / "data"



def test_shipping_a_default_takes_the_mark_off_the_previous_one(tmp_path, make_tiny_models, script):
    models = make_tiny_models(tmp_path / "runs")
    weights = tmp_path / "weights"
    old_model, old_info = load_model(models.clf)
    save_model(old_model, weights / "old-default", extra={**old_info.extra, "labels": old_info.labels,
                                                         "default_for": ["promoter", "enhancer"]})
    old_sha = read_info(weights / "old-default").sha256
    (models.root / "promoter-tiny" / "README.md").write_text("# promoter-tiny: a tiny classifier\n")

    assert script("ship_classifier").main([models.clf, str(weights / "new-default"), "--test",
                               str(DATA / "promoter" / "tata_small.tsv"), "--default-for", "promoter",
                               "--purpose", "a test", "--threads", "1"]) == 0

    new, old = read_info(weights / "new-default"), read_info(weights / "old-default")
    assert new.extra["default_for"] == ["promoter"] and new.extra["purpose"] == "a test"
    assert old.extra["default_for"] == ["enhancer"] and old.sha256 == old_sha
    load_model(weights / "old-default")  # its weights still match the recorded SHA-256
    card = (weights / "new-default" / "README.md").read_text()
    assert card.startswith("# new-default:") and "tata_small.tsv" in card and "float16 stored" in card
    assert not list(weights.glob("*/*.tmp")) and not list(weights.glob("*/.*.tmp"))
    assert json.loads((weights / "old-default" / "model.json").read_text())["task"] == "classification"
