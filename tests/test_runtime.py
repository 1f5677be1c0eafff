"""Choosing and loading a model: the default classifier of a label is the one whose card names it."""


import torch

from mxdna_cli.model.config import ModelConfig
from mxdna_cli.weights import save_model

torch.set_num_threads(1)

def test_predict_promoter_prefers_the_classifier_whose_card_names_it_the_default(tmp_path, monkeypatch):
    from mxdna_cli.runtime import DEFAULT_FOR, find_classifier
    from mxdna_cli.model.mxdna import MxDNAForSequenceClassification

    torch.manual_seed(0)
    classifier = MxDNAForSequenceClassification(ModelConfig.preset("tiny"), num_labels=2)
    labels = {"labels": ["nonpromoter", "promoter"]}
    for name in ("a-promoter-first-by-name", "m-default", "z-other"):
        save_model(classifier, tmp_path / name, extra={**labels, DEFAULT_FOR: ["promoter"]} if name == "m-default" else labels)
    monkeypatch.setenv("MXDNA_WEIGHTS", str(tmp_path))
    assert find_classifier(None, "promoter").name == "m-default"
    # another label falls back to the first bundled classifier that has it
    assert find_classifier(None, "nonpromoter").name == "a-promoter-first-by-name"
    assert find_classifier(str(tmp_path / "z-other"), "promoter").name == "z-other"
