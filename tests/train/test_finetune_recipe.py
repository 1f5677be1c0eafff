"""Fine-tuning recipe options: reverse-complement augmentation, strand-averaged scoring, layer-wise
lr decay, head dropout; their record in settings, checkpoint and card; mixed sequence lengths."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mxdna_cli import sequence as vocab
from mxdna_cli.cli import app
from mxdna_cli.errors import UsageError
from mxdna_cli.io.labeled import read_labeled
from mxdna_cli.model.config import ModelConfig
from mxdna_cli.model.mxdna import MxDNAForSequenceClassification
from mxdna_cli.train import finetune
from mxdna_cli.train.finetune import (
    FinetuneSettings,
    build_classifier,
    evaluate_classifier,
    load_finetune_data,
    predict_probabilities,
    run_area,
    run_finetune,
)
from mxdna_cli.train.optim import adamw, layer_depths
from mxdna_cli.weights import load_model

torch.set_num_threads(1)
FIXTURES = Path(__file__).resolve().parents[1] / "data" / "promoter"
TATA = str(FIXTURES / "tata_small.tsv")  # 16 promoters + 16 non-promoters, 251 bp
TINY = ModelConfig.preset("tiny")


def settings(out_dir, **changes):
    values = dict(train=[TATA], out_dir=str(out_dir), from_scratch=True, preset="tiny", epochs=2, batch_size=8,
                  lr=3e-3, threads=1, device="cpu", patience=2)
    values.update(changes)
    return FinetuneSettings(**values)


def trainer_for(tmp_path, **changes):
    s = settings(tmp_path / "x", **changes)
    data = load_finetune_data(s)
    model, _ = build_classifier(s, len(data.labels))
    return finetune.FinetuneTrainer(s, data, model, torch.device("cpu"), "float32", finetune.distributed.World())


# ------------------------------------------------------------------ reverse-complement augmentation


def test_rc_augment_trains_on_a_seeded_half_of_reverse_complements_in_the_same_order(tmp_path):
    plain, augmented = trainer_for(tmp_path), trainer_for(tmp_path, rc_augment=True)
    seen = {}
    for epoch in range(2):
        for _ in range(plain.steps_per_epoch):
            chosen = plain.next_batch()
            assert np.array_equal(chosen, augmented.next_batch())  # its own RNG stream: same order
            for i, ids in zip(chosen, augmented.batch_ids(chosen)):
                text = augmented.data.sequences["train"][i]
                expected = vocab.reverse_complement(text) if augmented.flipped[i] else text
                assert np.array_equal(ids, vocab.encode(expected))
            for i, ids in zip(chosen, plain.batch_ids(chosen)):
                assert np.array_equal(ids, plain.train_ids[i])
        seen[epoch] = augmented.flipped.copy()
    n = len(plain.train_ids)
    assert 0.2 * n < seen[0].sum() < 0.8 * n  # about half of the examples each epoch
    assert not np.array_equal(seen[0], seen[1])  # drawn anew every epoch
    again = trainer_for(tmp_path, rc_augment=True)
    again.next_batch()
    assert np.array_equal(again.flipped, seen[0])  # seeded


def test_rc_augment_changes_the_losses_of_a_run(tmp_path):
    losses = {}
    for augment in (False, True):
        result = run_finetune(settings(tmp_path / f"rc{augment}", max_steps=3, rc_augment=augment))
        losses[augment] = [row["loss"] for row in result["log"] if row["kind"] == "train"]
    assert losses[False][0] != losses[True][0]  # the same first batch, on other strands


# ------------------------------------------------------------------ strand-averaged scoring


def test_eval_strand_both_is_symmetric_under_reverse_complementing_the_set():
    torch.manual_seed(0)
    model = MxDNAForSequenceClassification(TINY, 2).eval()
    data = read_labeled([TATA])
    forward_set = data.sequences
    reverse_set = [vocab.reverse_complement(s) for s in forward_set]
    one = predict_probabilities(model, forward_set, batch_size=8)
    other = predict_probabilities(model, reverse_set, batch_size=8)
    assert np.abs(one - other).max() > 1e-4  # the model itself is not strand-symmetric
    both = predict_probabilities(model, forward_set, batch_size=8, strand="both")
    both_rc = predict_probabilities(model, reverse_set, batch_size=8, strand="both")
    assert np.array_equal(both, both_rc)
    assert np.allclose(both, (one + other) / 2, atol=1e-7)
    # id arrays are reverse-complemented the same way as texts
    ids = [vocab.encode(s) for s in forward_set]
    assert np.array_equal(predict_probabilities(model, ids, batch_size=8, strand="both"), both)
    y = [1 if label == "promoter" else 0 for label in data.labels]
    scored = evaluate_classifier(model, forward_set, y, batch_size=8, strand="both")
    assert np.array_equal(scored["probabilities"], both)
    with pytest.raises(UsageError, match="strand"):
        predict_probabilities(model, forward_set, strand="reverse")


def test_a_run_scored_on_both_strands_reports_strand_averaged_test_metrics(tmp_path):
    result = run_finetune(settings(tmp_path / "clf", max_steps=3, eval_strand="both"))
    model, info = load_model(tmp_path / "clf")
    data = load_finetune_data(settings(tmp_path / "again"))
    expected = predict_probabilities(model, data.sequences["test"], batch_size=3, strand="both")
    assert np.allclose(result["test_probabilities"], expected, atol=1e-6)
    assert info.extra["eval_strand"] == "both"


# ------------------------------------------------------------------ layer-wise lr decay


def group_lr_of(optimizer):
    return {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}


def test_layer_decay_gives_each_layer_its_rate_and_keeps_no_decay_groups():
    config = replace(TINY, num_nucleotide_layers=2, num_token_layers=3)
    torch.manual_seed(0)
    model = MxDNAForSequenceClassification(config, 2)
    lr, d = 1e-3, 0.5
    optimizer = adamw(model, lr=lr, weight_decay=0.01, layer_decay=d)
    rates = group_lr_of(optimizer)
    params = dict(model.named_parameters())
    assert len(rates) == len(params)  # every parameter in exactly one group
    # top depth = 2 nucleotide layers + tokenizer + 3 token layers = 6; the embedding is 6 below it
    expected = {
        "model.embed_tokens.weight": lr * d**6,
        "model.nucleotide_layers.0.attn.q.weight": lr * d**5,
        "model.nucleotide_layers.1.attn.q.weight": lr * d**4,
        "model.tokenizer.router.weight": lr * d**3,
        "model.token_layers.0.attn.q.weight": lr * d**2,
        "model.token_layers.1.attn.q.weight": lr * d,
        "model.token_layers.2.attn.q.weight": lr,
        "model.final_norm.weight": lr,
        "decoder.attn.q.weight": lr,
        "classifier.out_proj.weight": lr,
        "classifier.out_proj.bias": lr,
    }
    for name, rate in expected.items():
        assert rates[id(params[name])] == pytest.approx(rate), name
    depths, top = layer_depths(model)
    assert top == 6 and min(depths.values()) == 0
    for name, parameter in params.items():  # one rate per depth
        assert rates[id(parameter)] == pytest.approx(lr * d ** (top - depths[name])), name
    for group in optimizer.param_groups:  # biases and norms still without weight decay
        assert all((p.dim() >= 2) == (group["weight_decay"] > 0) for p in group["params"])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr)  # the head's group comes first
    assert len(adamw(model, lr=lr, weight_decay=0.01).param_groups) == 2  # 1.0: the layout of old


def test_layer_decay_rates_follow_the_schedule_and_the_log_shows_the_head_rate(tmp_path):
    trainer = trainer_for(tmp_path, layer_decay=0.5, max_steps=6)
    plain = trainer_for(tmp_path, max_steps=6)
    ratios = [g["lr"] / trainer.optimizer.param_groups[0]["lr"] for g in trainer.optimizer.param_groups]
    assert min(ratios) == pytest.approx(0.5**3)  # tiny: the embedding is 3 layers below the top
    for _ in range(3):
        head = trainer.optimizer.param_groups[0]["lr"]
        row, plain_row = trainer.train_step(), plain.train_step()
        assert row["lr"] == pytest.approx(head) and row["lr"] == pytest.approx(plain_row["lr"])  # --lr's schedule
    head = trainer.optimizer.param_groups[0]["lr"]
    assert head > 0
    assert [g["lr"] / head for g in trainer.optimizer.param_groups] == pytest.approx(ratios)  # the warm-up scales all


# ------------------------------------------------------------------ settings, checkpoint, card, CLI


def test_recipe_settings_reach_settings_json_the_checkpoint_the_model_and_the_card(tmp_path):
    recipe = dict(rc_augment=True, eval_strand="both", layer_decay=0.8, classifier_dropout=0.3)
    out = tmp_path / "clf"
    stopped = run_finetune(settings(out, max_steps=3, **recipe), stop_after_steps=1)
    assert stopped["interrupted"]
    area = run_area(str(out))
    written = json.loads((area / "settings.json").read_text())
    checkpoint = torch.load(area / "checkpoint.pt", weights_only=False)
    for key, value in recipe.items():
        assert written[key] == value and checkpoint["settings"][key] == value, key
    assert checkpoint["flipped"] is not None and "augment_rng" in checkpoint
    run_finetune(settings(out, max_steps=3, resume=True, **recipe))
    model, info = load_model(out)
    for key, value in recipe.items():
        assert info.extra["settings"][key] == value, key
    assert model.config.classifier_dropout == pytest.approx(0.3)
    card = (out / "README.md").read_text()
    assert "Layer-wise lr decay 0.8" in card and "classifier dropout 0.3" in card
    assert "reverse-complement augmentation on" in card and "eval strand `both`" in card


def test_dropout_reaches_the_head_and_bad_recipe_values_are_refused(tmp_path):
    model, _ = build_classifier(settings(tmp_path / "x", classifier_dropout=0.25), 2)
    assert model.classifier.dropout.p == pytest.approx(0.25)
    default, _ = build_classifier(settings(tmp_path / "x"), 2)
    assert default.classifier.dropout.p == TINY.classifier_dropout
    for bad, message in ((dict(eval_strand="reverse"), "eval strand"), (dict(layer_decay=0.0), "layer_decay"),
                         (dict(layer_decay=1.5), "layer_decay"), (dict(classifier_dropout=1.0), "dropout")):
        with pytest.raises(UsageError, match=message):
            run_finetune(settings(tmp_path / "bad", **bad))


def test_cli_flags_are_recorded_and_bad_values_are_usage_errors(tmp_path):
    out = tmp_path / "clf"
    common = ["finetune", TATA, "--from-scratch", "--preset", "tiny", "--batch-size", "8", "--threads", "1",
              "--device", "cpu", "-q"]
    result = CliRunner().invoke(app, [*common, "-o", str(out), "--max-steps", "2", "--rc-augment",
                                      "--eval-strand", "both", "--layer-decay", "0.9", "--dropout", "0.1"])
    assert result.exit_code == 0, result.output
    _, info = load_model(out)
    recorded = info.extra["settings"]
    assert (recorded["rc_augment"], recorded["eval_strand"], recorded["layer_decay"],
            recorded["classifier_dropout"]) == (True, "both", 0.9, 0.1)
    for bad in (["--layer-decay", "0"], ["--layer-decay", "1.2"], ["--eval-strand", "sideways"],
                ["--dropout", "1.5"]):
        result = CliRunner().invoke(app, [*common, "-o", str(tmp_path / "bad"), *bad])
        assert result.exit_code == 2, (bad, result.output)
        assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------ mixed sequence lengths


def test_mixed_lengths_are_padded_without_changing_a_sequence_s_scores(tmp_path):
    # the combined promoter set mixes 300 bp (human) and 251 bp (Arabidopsis) sequences in a batch
    lines = Path(TATA).read_text().splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    mixed = [(seq + rows[(i + 1) % len(rows)][0][:49] if i % 2 else seq, label) for i, (seq, label) in enumerate(rows)]
    path = tmp_path / "mixed.tsv"
    path.write_text("sequence\tlabel\n" + "".join(f"{s}\t{label}\n" for s, label in mixed))
    result = run_finetune(settings(tmp_path / "clf", train=[str(path)], max_steps=3, pooling="mean"))
    _, info = load_model(tmp_path / "clf")
    assert info.extra["dataset"]["lengths"]["min"] == 251 and info.extra["dataset"]["lengths"]["max"] == 300
    model, _ = load_model(tmp_path / "clf")
    data = load_finetune_data(settings(tmp_path / "again", train=[str(path)]))
    assert len({len(s) for s in data.sequences["test"]}) == 2
    alone = np.concatenate([predict_probabilities(model, [s]) for s in data.sequences["test"]])
    assert np.allclose(alone, result["test_probabilities"], atol=1e-5)
