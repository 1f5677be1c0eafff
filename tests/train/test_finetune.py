"""Fine-tuning: input formats, splits, refusals, pretrained weights, early stopping, save/reload, determinism."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.model.config import ModelConfig
from mxdna_cli.model.mxdna import MxDNAForMaskedLM, MxDNAForSequenceClassification
from mxdna_cli.train.finetune import (
    FinetuneSettings,
    build_classifier,
    class_weights,
    evaluate_classifier,
    load_finetune_data,
    lr_factor,
    predict_probabilities,
    read_labeled,
    run_finetune,
    stratified_split,
)
from mxdna_cli.train.metrics import classification_metrics
from mxdna_cli.weights import load_model, save_model

torch.set_num_threads(1)
FIXTURES = Path(__file__).resolve().parents[1] / "data" / "promoter"
TATA = str(FIXTURES / "tata_small.tsv")  # 16 promoters + 16 non-promoters, 251 bp
TINY = ModelConfig.preset("tiny")


def settings(out_dir, **changes):
    values = dict(train=[TATA], out_dir=str(out_dir), from_scratch=True, preset="tiny", epochs=2, batch_size=8,
                  lr=3e-3, threads=1, device="cpu", patience=2)
    values.update(changes)
    return FinetuneSettings(**values)


def as_pairs(examples):
    return sorted((s.upper(), label) for s, label in zip(examples.sequences, examples.labels))


@pytest.fixture()
def genome(tmp_path):
    """The fixture genome copied to a scratch folder (reading it builds a .fai index beside it)."""
    path = tmp_path / "genome.fa"
    shutil.copy(FIXTURES / "genome.fa", path)
    return str(path)


# ------------------------------------------------------------------ input formats


def test_each_input_format_reads_the_same_sequences(genome):
    table = read_labeled([str(FIXTURES / "regions.csv")])
    fasta = read_labeled([str(FIXTURES / "promoter.fa"), str(FIXTURES / "nonpromoter.fa")])
    bed = read_labeled([str(FIXTURES / "regions.bed")], genome=genome)
    assert len(table) == 6
    assert as_pairs(table) == as_pairs(fasta) == as_pairs(bed)
    # '-' strand regions are reverse-complemented: the third BED region is on '-'
    assert bed.sequences[2].upper() == table.sequences[2].upper()
    assert bed.sources[0].endswith("regions.bed:2")  # line 1 is a comment


def test_label_given_on_the_command_line_overrides_file_stem_and_bed_names(tmp_path, genome):
    lines = (FIXTURES / "regions.bed").read_text().splitlines()[1:]
    promoters = [line for line in lines if "\tpromoter\t" in line]
    plain = tmp_path / "unnamed.bed"
    plain.write_text("".join("\t".join(line.split("\t")[:3] + [".", "0", line.split("\t")[5]]) + "\n" for line in promoters))
    by_file = read_labeled([f"promoter={plain}"], genome=genome)
    assert by_file.labels == ["promoter"] * 3
    expected = [s for s, label in as_pairs(read_labeled([str(FIXTURES / "regions.csv")])) if label == "promoter"]
    assert sorted(s.upper() for s in by_file.sequences) == expected
    renamed = read_labeled([f"TATA={FIXTURES / 'promoter.fa'}"])
    assert set(renamed.labels) == {"TATA"}
    with pytest.raises(DataError, match="column 4"):
        read_labeled([str(plain)], genome=genome)
    with pytest.raises(UsageError, match="genome"):
        read_labeled([str(FIXTURES / "regions.bed")])
    with pytest.raises(UsageError, match="label column"):
        read_labeled([f"x={FIXTURES / 'regions.csv'}"])


def test_gue_csv_is_read():
    path = Path(__file__).resolve().parents[3] / "shared/data/labeled/dnabert2_sample_data/train.csv"
    if not path.is_file():
        pytest.skip("shared data not available")
    examples = read_labeled([str(path)])
    assert len(examples) == 15 and set(examples.labels) <= {"0", "1"}


@pytest.mark.parametrize("bad", ["ACGTACGUAC", "MKVLEFPQ", "ACGT ACGT", "ACGT-ACGT"])
def test_wrong_alphabet_is_a_data_error_naming_file_and_line(tmp_path, bad):
    path = tmp_path / "bad.csv"
    path.write_text(f"sequence,label\nACGTACGTAC,1\n{bad},0\n")
    with pytest.raises(DataError, match=r"bad\.csv:3: position \d+"):
        read_labeled([str(path)])
    fasta = tmp_path / "bad.fa"
    fasta.write_text(f">ok\nACGT\n>wrong\n{bad}\n")
    with pytest.raises(DataError, match=r"record 2 'wrong'"):
        read_labeled([str(fasta)])


def test_missing_header_and_empty_sequence_are_data_errors(tmp_path):
    path = tmp_path / "noheader.csv"
    path.write_text("ACGT,1\nACGA,0\n")
    with pytest.raises(DataError, match="header"):
        read_labeled([str(path)])
    path.write_text("sequence,label\n,1\n")
    with pytest.raises(DataError, match="empty sequence"):
        read_labeled([str(path)])


# ------------------------------------------------------------------ labels and splits


def test_single_class_input_is_refused(tmp_path):
    path = tmp_path / "one.tsv"
    path.write_text("sequence\tlabel\n" + "".join(f"ACGTACGTA{'ACGT'[i % 4]}\tpromoter\n" for i in range(40)))
    with pytest.raises(DataError, match="only one class"):
        load_finetune_data(settings(tmp_path / "out", train=[str(path)]))


def test_a_class_too_small_for_the_split_is_refused(tmp_path):
    path = tmp_path / "unbalanced.tsv"
    rows = [f"{'ACGT' * 5}{i:b}".replace("0", "A").replace("1", "C") + "\tbig\n" for i in range(40)]
    rows += ["GGGGCCCCGGGG\tsmall\n"] * 3
    path.write_text("sequence\tlabel\n" + "".join(rows))
    with pytest.raises(DataError, match=r"class 'small' has [01] example\(s\) in the (valid|test) split"):
        load_finetune_data(settings(tmp_path / "out", train=[str(path)]))


def test_stratified_split_is_seeded_stratified_and_disjoint():
    y = np.array([0] * 50 + [1] * 30)
    first = stratified_split(y, (0.8, 0.1, 0.1), seed=3)
    again = stratified_split(y, (0.8, 0.1, 0.1), seed=3)
    other = stratified_split(y, (0.8, 0.1, 0.1), seed=4)
    assert all(np.array_equal(first[s], again[s]) for s in first)
    assert not np.array_equal(first["test"], other["test"])
    assert np.array_equal(np.sort(np.concatenate(list(first.values()))), np.arange(80))
    assert [int((y[first["test"]] == c).sum()) for c in (0, 1)] == [5, 3]
    assert [int((y[first["valid"]] == c).sum()) for c in (0, 1)] == [5, 3]


def test_given_split_files_are_used_as_they_are(tmp_path):
    lines = Path(TATA).read_text().splitlines()
    header, rows = lines[0], lines[1:]
    promoters, others = rows[:16], rows[16:]
    parts = {"train": promoters[:10] + others[:10], "valid": promoters[10:13] + others[10:13],
             "test": promoters[13:] + others[13:]}
    for name, chosen in parts.items():
        (tmp_path / f"{name}.tsv").write_text("\n".join([header, *chosen]) + "\n")
    data = load_finetune_data(settings(tmp_path / "out", train=[str(tmp_path / "train.tsv")],
                                       valid=[str(tmp_path / "valid.tsv")], test=[str(tmp_path / "test.tsv")]))
    assert data.labels == ["nonpromoter", "promoter"]
    assert data.info["counts"] == {"train": {"nonpromoter": 10, "promoter": 10},
                                   "valid": {"nonpromoter": 3, "promoter": 3},
                                   "test": {"nonpromoter": 3, "promoter": 3}}
    assert data.sequences["test"] == [row.split("\t")[0] for row in parts["test"]]
    assert data.window == 251


def test_schedule_and_class_weights():
    assert lr_factor(0, 4, 20, "linear") == pytest.approx(1 / 5)
    assert lr_factor(4, 4, 20, "linear") == pytest.approx(1.0)
    assert lr_factor(12, 4, 20, "linear") == pytest.approx(0.5)
    assert lr_factor(12, 4, 20, "cosine") == pytest.approx(0.5)
    assert lr_factor(8, 4, 20, "cosine") == pytest.approx(0.5 * (1 + np.cos(np.pi * 0.25)))
    assert lr_factor(20, 4, 20, "linear") == pytest.approx(0.0)
    weights = class_weights(np.array([0, 0, 0, 1]), 2, "balanced")
    assert weights.tolist() == pytest.approx([4 / 6, 2.0])
    assert class_weights(np.array([0, 1]), 2, "none") is None


# ------------------------------------------------------------------ pretrained weights


def saved_masked_lm(folder, config=TINY):
    torch.manual_seed(123)
    mlm = MxDNAForMaskedLM(config)
    with torch.no_grad():
        for parameter in mlm.parameters():
            parameter.add_(torch.rand_like(parameter))  # nothing left at its initial value
    save_model(mlm.eval(), folder)
    return mlm


def test_pretrained_backbone_and_decoder_are_copied_exactly(tmp_path):
    mlm = saved_masked_lm(tmp_path / "mlm")
    classifier, provenance = build_classifier(settings(tmp_path / "out", from_scratch=False,
                                                       pretrained=str(tmp_path / "mlm")), 2)
    source, target = mlm.state_dict(), classifier.state_dict()
    copied = [k for k in target if k.startswith(("model.", "decoder.", "norm."))]
    assert len(copied) == provenance["copied_tensors"] and len(copied) > 20
    for key in copied:
        assert torch.equal(target[key], source[key]), key
    assert not torch.equal(target["classifier.dense.weight"], source["lm_head.dense.weight"])
    assert provenance["task"] == "masked_lm" and len(provenance["sha256"]) == 64


def test_mean_pooling_copies_the_backbone_only(tmp_path):
    mlm = saved_masked_lm(tmp_path / "mlm")
    classifier, _ = build_classifier(settings(tmp_path / "out", from_scratch=False, pretrained=str(tmp_path / "mlm"),
                                              pooling="mean"), 2)
    target = classifier.state_dict()
    assert torch.equal(target["model.embed_tokens.weight"], mlm.state_dict()["model.embed_tokens.weight"])
    assert not any(k.startswith("decoder.") for k in target)
    assert torch.equal(target["norm.weight"], torch.ones_like(target["norm.weight"]))  # not the MLM's norm


def test_pretrained_and_scratch_together_or_mismatched_are_refused(tmp_path):
    saved_masked_lm(tmp_path / "mlm")
    with pytest.raises(UsageError):
        build_classifier(settings(tmp_path / "out", from_scratch=True, pretrained=str(tmp_path / "mlm")), 2)
    classifier = MxDNAForSequenceClassification(ModelConfig.preset("small"), 2)
    from mxdna_cli.train.finetune import load_pretrained_backbone

    with pytest.raises(DataError, match="configuration"):
        load_pretrained_backbone(classifier, str(tmp_path / "mlm"))


# ------------------------------------------------------------------ training


def test_finetune_early_stops_saves_and_reloads_with_the_same_probabilities(tmp_path):
    # lr 0: the validation MCC cannot improve after the first evaluation, so with patience 2 the
    # run must stop after the third epoch of six (3 steps per epoch: 24 training examples / 8).
    rows = []
    result = run_finetune(settings(tmp_path / "clf", lr=0.0, epochs=6, patience=2),
                          progress=lambda step, row: rows.append(row))
    assert result["stopped_early"] is True
    assert result["steps"] == 9 and result["best_step"] == 3
    assert [r["step"] for r in rows if r["kind"] == "validation"] == [3, 6, 9]
    assert result["labels"] == ["nonpromoter", "promoter"] and result["window"] == 251

    model, info = load_model(tmp_path / "clf")
    assert info.task == "classification" and info.labels == ["nonpromoter", "promoter"]
    for key in ("window", "metrics", "dataset", "settings", "pretrained_from"):
        assert key in info.extra
    assert info.extra["window"] == 251 and info.extra["pretrained_from"] is None
    assert info.extra["dataset"]["counts"]["test"] == {"nonpromoter": 2, "promoter": 2}
    card = (tmp_path / "clf" / "README.md").read_text()
    assert "| test | 4 |" in card and "MCC" in card
    assert (tmp_path / "clf" / "training_log.tsv").read_text().count("\tvalidation\t") == 3

    data = load_finetune_data(settings(tmp_path / "again"))
    reloaded = predict_probabilities(model, data.sequences["test"], batch_size=3)
    assert np.array_equal(reloaded, result["test_probabilities"])
    test_metrics = info.extra["metrics"]["test"]
    assert test_metrics["mcc"] == pytest.approx(classification_metrics(data.y["test"], reloaded)["mcc"])


def test_finetune_from_pretrained_is_deterministic_and_trains(tmp_path):
    mlm = saved_masked_lm(tmp_path / "mlm")
    runs = []
    for name in ("a", "b"):
        losses = []
        result = run_finetune(settings(tmp_path / name, from_scratch=False, pretrained=str(tmp_path / "mlm"), epochs=2),
                              progress=lambda step, row, losses=losses: losses.append(row["loss"]) if row["kind"] == "train" else None)
        runs.append((result, losses))
    (first, losses_a), (second, losses_b) = runs
    assert losses_a == losses_b and len(losses_a) == 6
    assert np.array_equal(first["test_probabilities"], second["test_probabilities"])
    assert first["pretrained_from"]["task"] == "masked_lm"
    model, _ = load_model(tmp_path / "a")
    model_b, _ = load_model(tmp_path / "b")
    # (not the files' SHA-256: safetensors writes its metadata keys in a random order)
    for key, value in model.state_dict().items():
        assert torch.equal(value, model_b.state_dict()[key]), key
    # the backbone was trained from the pretrained weights, not left as they were
    assert not torch.equal(model.state_dict()["model.embed_tokens.weight"], mlm.state_dict()["model.embed_tokens.weight"])
    card = json.loads((tmp_path / "a" / "model.json").read_text())
    assert card["extra"]["pretrained_from"]["path"] == str(tmp_path / "mlm")


def test_evaluate_classifier_is_deterministic_and_consistent():
    torch.manual_seed(0)
    model = MxDNAForSequenceClassification(TINY, 2).eval()
    data = read_labeled([TATA])
    y = [1 if label == "promoter" else 0 for label in data.labels]
    first = evaluate_classifier(model, data.sequences, y, batch_size=8)
    second = evaluate_classifier(model, data.sequences, y, batch_size=8)
    assert np.array_equal(first["probabilities"], second["probabilities"])
    assert first["probabilities"].shape == (32, 2)
    assert np.allclose(first["probabilities"].sum(1), 1, atol=1e-6)
    expected = classification_metrics(y, first["probabilities"])
    assert {k: first[k] for k in ("accuracy", "f1", "mcc", "auroc", "auprc")} == {
        k: expected[k] for k in ("accuracy", "f1", "mcc", "auroc", "auprc")}
    other_batching = predict_probabilities(model, data.sequences, batch_size=5)
    assert np.allclose(other_batching, first["probabilities"], atol=1e-5)
