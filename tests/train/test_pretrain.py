"""Pretraining loop: the loss falls, resume is exact, evaluation is seeded, bad input is refused."""

import numpy as np
import pytest
import torch

from mxdna_cli.errors import DataError, UsageError
from mxdna_cli.model.config import ModelConfig
from mxdna_cli.model.mxdna import MxDNAForMaskedLM
from mxdna_cli.train.pretrain import (
    PretrainSettings,
    Pretrainer,
    chain_logs,
    evaluate_masked_lm,
    export_checkpoint,
    lr_factor,
    plot_log,
    read_log,
)
from mxdna_cli.weights import load_model, save_model

FIXTURE = "tests/data/pretrain_small.fa"


def settings(out_dir, **changes):
    values = dict(
        inputs=[FIXTURE], out_dir=str(out_dir), preset="tiny", window=96, batch_size=8, steps=8, warmup=2,
        lr=3e-3, eval_every=4, eval_windows=8, threads=1, heldout=[["pretrain_small.fa", "scer*"]],
    )
    values.update(changes)
    return PretrainSettings(**values)


def train_losses(rows):
    return [r["loss"] for r in rows if r["kind"] == "train"]


def test_a_tiny_run_lowers_the_loss(tmp_path):
    rows = Pretrainer(settings(tmp_path, steps=40, eval_every=40), say=lambda _: None).run()
    losses = train_losses(rows)
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.1
    validation = [r for r in rows if r["kind"] == "validation"]
    assert validation and 0.0 <= validation[-1]["accuracy"] <= 1.0


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path):
    uninterrupted = train_losses(Pretrainer(settings(tmp_path / "a")).run())
    Pretrainer(settings(tmp_path / "b")).run(stop_after_steps=3)
    resumed = Pretrainer(settings(tmp_path / "b"), say=lambda _: None).run()
    assert train_losses(resumed) == uninterrupted[3:]
    logged = [float(r["loss"]) for r in read_log(tmp_path / "b" / "log.tsv") if r["kind"] == "train"]
    assert len(logged) == 8 and np.allclose(logged, uninterrupted, rtol=1e-5)


def test_resume_with_different_settings_is_refused(tmp_path):
    Pretrainer(settings(tmp_path)).run(stop_after_steps=1)
    with pytest.raises(UsageError, match="lr="):
        Pretrainer(settings(tmp_path, lr=1e-4))
    # Only the length of the run may change.
    Pretrainer(settings(tmp_path, steps=9), say=lambda _: None)


def test_held_out_records_are_not_trained_on(tmp_path):
    trainer = Pretrainer(settings(tmp_path))
    assert all("scer" not in r.name for r in trainer.train_genomes.records)
    assert [r.name for r in trainer.heldout_genomes.records] and len(trainer.validation) > 0


def test_export_loads_as_a_model(tmp_path):
    Pretrainer(settings(tmp_path / "run")).run(stop_after_steps=2)
    export_checkpoint(tmp_path / "run", tmp_path / "model")
    model, info = load_model(tmp_path / "model")
    assert info.task == "masked_lm" and info.extra["steps"] == 2 and info.config == ModelConfig.preset("tiny")


def test_evaluation_is_seeded_and_ignores_n():
    torch.manual_seed(0)
    model = MxDNAForMaskedLM(ModelConfig.preset("tiny"))
    windows = np.random.default_rng(0).integers(5, 9, size=(6, 64))
    windows[:, :10] = 1  # N is never masked, so never scored
    a = evaluate_masked_lm(model, windows, seed=7)
    b = evaluate_masked_lm(model, windows, seed=7)
    assert a == b and a["masked"] < 6 * 54 and 0 <= a["accuracy"] <= 1
    assert model.training  # restored


def test_lr_schedule_warms_up_then_decays():
    assert lr_factor(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(55, 10, 100, 0.1) == pytest.approx(0.55)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"inputs": ["tests/data/does-not-exist"]}, "does-not-exist"),
        ({"window": 100000}, "longer than every sequence"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, changes, message):
    with pytest.raises(DataError, match=message):
        Pretrainer(settings(tmp_path, **changes))


def test_all_n_input_is_refused(tmp_path):
    fasta = tmp_path / "n.fa"
    fasta.write_text(">allN\n" + "N" * 500 + "\n")
    with pytest.raises(DataError, match="N"):
        Pretrainer(settings(tmp_path / "run", inputs=[str(fasta)], heldout=[]))


def test_warm_start_copies_the_weights_of_a_saved_model(tmp_path):
    Pretrainer(settings(tmp_path / "first")).run(stop_after_steps=2)
    export_checkpoint(tmp_path / "first", tmp_path / "model", half=False)
    warm = Pretrainer(settings(tmp_path / "second", init_from=str(tmp_path / "model")), say=lambda _: None)
    saved, _ = load_model(tmp_path / "model")
    for (name, a), (_, b) in zip(warm.model.state_dict().items(), saved.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(UsageError, match="cannot seed"):
        Pretrainer(settings(tmp_path / "third", init_from=str(tmp_path / "model"), preset="small"))


def test_export_of_a_warm_started_run_counts_every_stage(tmp_path):
    Pretrainer(settings(tmp_path / "first"), say=lambda _: None).run(stop_after_steps=3)
    first = export_checkpoint(tmp_path / "first", tmp_path / "model", half=False)
    second_run = Pretrainer(settings(tmp_path / "second", init_from=str(tmp_path / "model"), seed=5), say=lambda _: None)
    second_run.run(stop_after_steps=2)
    del second_run
    # resuming keeps the history of the warm start
    Pretrainer(settings(tmp_path / "second", init_from=str(tmp_path / "model"), seed=5), say=lambda _: None).run(stop_after_steps=1)
    export_checkpoint(tmp_path / "second", tmp_path / "model", half=False)  # overwrite the model it started from
    _, info = load_model(tmp_path / "model")
    extra = info.extra
    assert [stage["steps"] for stage in extra["stages"]] == [3, 3]
    assert [stage["settings"]["seed"] for stage in extra["stages"]] == [0, 5]
    assert extra["steps"] == 3 and extra["total_steps"] == 6
    assert extra["total_nucleotides_seen"] == 2 * extra["nucleotides_seen"] == 6 * 8 * 96
    assert extra["warm_start"]["sha256"] == first.sha256


def test_export_of_a_run_started_from_an_untrained_model_lists_only_its_own_stage(tmp_path):
    save_model(MxDNAForMaskedLM(ModelConfig.preset("tiny")), tmp_path / "untrained", trained=False)
    Pretrainer(settings(tmp_path / "run", init_from=str(tmp_path / "untrained")), say=lambda _: None).run(stop_after_steps=2)
    export_checkpoint(tmp_path / "run", tmp_path / "model", half=False)
    extra = load_model(tmp_path / "model")[1].extra
    assert [stage["steps"] for stage in extra["stages"]] == [2]
    assert extra["total_steps"] == 2 and extra["total_nucleotides_seen"] == 2 * 8 * 96
    assert set(extra["warm_start"]) == {"model", "sha256"}


def test_chained_stage_logs_continue_steps_and_nucleotides(tmp_path):
    Pretrainer(settings(tmp_path / "first", steps=4), say=lambda _: None).run()
    Pretrainer(settings(tmp_path / "second", steps=4, eval_every=2), say=lambda _: None).run()
    logs = [tmp_path / "first" / "log.tsv", tmp_path / "second" / "log.tsv"]
    first, second = read_log(logs[0]), read_log(logs[1])
    rows, boundaries = chain_logs(logs)
    assert len(rows) == len(first) + len(second)
    train_steps = [int(r["step"]) for r in rows if r["kind"] == "train"]
    assert train_steps == list(range(1, 9))
    nucleotides = [int(r["nucleotides"]) for r in rows if r["kind"] == "train"]
    assert nucleotides == [8 * 96 * step for step in range(1, 9)]
    assert boundaries == [4 * 8 * 96]
    plot_log(logs, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_progress_sees_every_training_and_validation_row(tmp_path):
    seen = []
    rows = Pretrainer(settings(tmp_path, steps=4, eval_every=2)).run(progress=lambda step, row: seen.append((step, row)))
    assert [row for _, row in seen] == rows
    assert [(step, row["kind"]) for step, row in seen] == [
        (1, "train"), (2, "train"), (2, "validation"), (3, "train"), (4, "train"), (4, "validation")]
