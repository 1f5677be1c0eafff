"""scripts/promoter_recipe.py: flags merged in place, and a stage's starting model checked out from
the commit that shipped it (a later stage replaces it in weights/)."""

import shutil
import subprocess
from pathlib import Path

import pytest




def test_later_flags_replace_earlier_ones_in_place(script):
    merged = script("promoter_recipe").merge_flags(["--lr", "1e-4", "--rc-augment", "--seed", "0"], ["--lr", "5e-5"])
    assert merged == ["--lr", "5e-5", "--rc-augment", "--seed", "0"]


def test_every_other_training_pool_belongs_to_a_configuration_and_says_how_to_build_it(script):
    recipe = script("promoter_recipe")
    assert set(recipe.TRAIN_SETS) <= set(recipe.CONFIGS)
    for pool, build in recipe.TRAIN_SETS.values():
        assert pool != recipe.POOLED and f"--name {pool}" in build


def test_every_pinned_stage_input_names_a_commit_and_a_path(script):
    recipe = script("promoter_recipe")
    pinned = [flag for _, flags in recipe.CONFIGS.values() for flag in flags if flag.startswith(recipe.PINNED_PREFIX)]
    assert pinned and all(len(flag.split(":")) == 3 for flag in pinned)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_pinned_model_is_the_committed_files_not_todays(tmp_path, monkeypatch, script):
    repo = tmp_path / "repo"
    (repo / "weights" / "clf").mkdir(parents=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "weights" / "clf" / "model.json").write_text('{"stage": 1}')
    (repo / "weights" / "clf" / "model.safetensors").write_bytes(bytes(range(256)))
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "stage 1"], check=True)
    first = subprocess.run([*git, "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (repo / "weights" / "clf" / "model.json").write_text('{"stage": 2}')  # a later stage ships over it
    subprocess.run([*git, "commit", "-qam", "stage 2"], check=True)
    monkeypatch.chdir(repo)

    runs = repo / "runs"
    folder = Path(script("promoter_recipe").pinned_weights(f"git:{first}:weights/clf", runs))
    assert folder == runs / "inputs" / f"{first}-clf"
    assert (folder / "model.json").read_text() == '{"stage": 1}'
    assert (folder / "model.safetensors").read_bytes() == bytes(range(256))
    assert not list((runs / "inputs").glob("*.partial*"))
    (folder / "model.json").write_text("kept")  # written once: a second call reuses the folder
    assert script("promoter_recipe").pinned_weights(f"git:{first}:weights/clf", runs) == str(folder)
    assert (folder / "model.json").read_text() == "kept"


def test_a_soup_is_the_mean_of_its_members_weights(tmp_path, make_tiny_models, script):
    import torch

    from mxdna_cli.weights import load_model, save_model

    models = make_tiny_models(tmp_path / "runs")
    first, info = load_model(models.clf)
    second = load_model(models.clf)[0]
    with torch.no_grad():
        for parameter in second.parameters():
            parameter.add_(1.0)
    save_model(second, tmp_path / "second", extra={**info.extra, "labels": info.labels})

    soup, infos = script("promoter_recipe").average_weights([Path(models.clf), tmp_path / "second"])
    assert [i.sha256 for i in infos] == [info.sha256, load_model(tmp_path / "second")[1].sha256]
    for (name, mixed), original in zip(soup.state_dict().items(), first.state_dict().values()):
        if original.is_floating_point():
            torch.testing.assert_close(mixed, original + 0.5, msg=name)


def test_a_soup_refuses_members_of_other_classes(tmp_path, make_tiny_models, script):
    one = make_tiny_models(tmp_path / "a")
    other = make_tiny_models(tmp_path / "b", labels=("background", "enhancer"))
    with pytest.raises(SystemExit):
        script("promoter_recipe").average_weights([Path(one.clf), Path(other.clf)])


def test_a_soups_training_log_is_its_members_logs_each_row_named(tmp_path, script):
    logs = {}
    for member, loss in (("a", "0.5"), ("b", "0.4")):
        logs[member] = tmp_path / f"{member}.tsv"
        logs[member].write_text(f"step\tloss\n1\t{loss}\n2\t{loss}\n")
    script("promoter_recipe").joined_training_logs(logs, tmp_path / "soup.tsv")
    assert (tmp_path / "soup.tsv").read_text().splitlines() == [
        "member\tstep\tloss", "a\t1\t0.5", "a\t2\t0.5", "b\t1\t0.4", "b\t2\t0.4"]
