"""Fine-tuning: input formats, splits, refusals, pretrained weights, early stopping, save/reload, determinism."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.io.labeled import read_labeled
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
    run_area,
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


# ------------------------------------------------------------------ interruption and resume


def saved_weights(folder):
    model, _ = load_model(folder)
    return model.state_dict()


def assert_same_weights(first, second, atol=1e-6):
    assert first.keys() == second.keys()
    for key, value in first.items():
        assert torch.allclose(value, second[key], atol=atol, rtol=0), key


# The recipe options draw randomness of their own (the strand of each example, the head's dropout)
# or change the optimiser's groups (layer decay): the checkpoint must carry them too.
RECIPE = dict(rc_augment=True, eval_strand="both", layer_decay=0.8, classifier_dropout=0.2)


@pytest.mark.parametrize("recipe", [{}, RECIPE], ids=["plain", "recipe"])
def test_an_interrupted_run_resumed_ends_with_the_uninterrupted_weights(tmp_path, recipe):
    # 24 training examples / batch 8 = 3 steps per epoch, 3 epochs: interrupted mid-epoch at step 4
    common = dict(epochs=3, patience=5, checkpoint_every=2, **recipe)
    full = run_finetune(settings(tmp_path / "full", **common))

    def interrupt(step, row):
        if row["kind"] == "train" and step == 4:
            raise KeyboardInterrupt

    notes = []
    with pytest.raises(KeyboardInterrupt):
        run_finetune(settings(tmp_path / "cut", **common), progress=interrupt, say=notes.append)
    assert not (tmp_path / "cut").exists()  # no half-written model folder
    assert any("interrupted at step 4" in note for note in notes)
    area = run_area(str(tmp_path / "cut"))
    assert (area / "checkpoint.pt").is_file()
    assert torch.load(area / "checkpoint.pt", weights_only=False)["step"] == 4

    with pytest.raises(UsageError, match="--resume"):  # a fresh start must not replace the checkpoint
        run_finetune(settings(tmp_path / "cut", **common))
    with pytest.raises(UsageError, match="lr="):
        run_finetune(settings(tmp_path / "cut", **common, lr=1e-3, resume=True))
    with pytest.raises(UsageError, match="rc_augment="):
        run_finetune(settings(tmp_path / "cut", **{**common, "rc_augment": not common.get("rc_augment", False)},
                              resume=True))
    resumed = run_finetune(settings(tmp_path / "cut", **common, resume=True))
    assert not area.exists()  # the run area goes once the model folder is written
    assert resumed["steps"] == full["steps"] == 9 and resumed["best_step"] == full["best_step"]
    assert_same_weights(saved_weights(tmp_path / "full"), saved_weights(tmp_path / "cut"))
    assert [r["loss"] for r in resumed["log"]] == pytest.approx([r["loss"] for r in full["log"]], rel=1e-5)


def test_resume_without_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(UsageError, match="no checkpoint"):
        run_finetune(settings(tmp_path / "none", resume=True))


def test_accumulation_keeps_the_step_loss_the_mean_over_the_whole_batch(tmp_path):
    # batch 8 in 1 or 2 micro-batches: the class-weighted cross-entropy is summed over the step and
    # divided by the step's total weight, so only the load-balancing term (computed per
    # micro-batch) and the grouping of sums differ. A mean of the micro-batches' weighted means
    # would differ by far more: their class mixes differ under balanced weights.
    from mxdna_cli.train import finetune

    results = {}
    for accum in (1, 2):
        data = load_finetune_data(settings(tmp_path / "x"))
        model, _ = build_classifier(settings(tmp_path / "x"), 2)
        for module in model.modules():
            if hasattr(module, "jitter"):
                module.jitter = 0.0  # both runs then draw no randomness at all
        trainer = finetune.FinetuneTrainer(settings(tmp_path / "x", grad_accum=accum), data, model,
                                           torch.device("cpu"), "float32", finetune.distributed.World())
        results[accum] = trainer.train_step()["loss"]
    # (not the weights: Adam's first step is nearly sign(gradient), so the load-balancing term's
    # tiny difference flips the update of near-zero gradients)
    assert results[1] == pytest.approx(results[2], rel=1e-4)


def test_precision_is_recorded_in_the_model_and_card(tmp_path):
    notes = []
    run_finetune(settings(tmp_path / "clf", max_steps=1, precision="bfloat16"), say=notes.append)
    _, info = load_model(tmp_path / "clf")
    assert info.extra["precision"] == "bfloat16"
    assert "bf16 autocast" in (tmp_path / "clf" / "README.md").read_text()
    assert any("bfloat16" in note for note in notes)
    with pytest.raises(UsageError, match="precision"):
        run_finetune(settings(tmp_path / "bad", precision="float8"))
