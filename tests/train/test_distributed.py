"""Data-parallel training on 2 CPU processes (gloo on localhost): the same micro-batches give the
same step as one process accumulating them, and a 2-process checkpoint resumes in 1 process."""

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mxdna_cli.errors import UsageError
from mxdna_cli.train.distributed import World, check_micro_batches, my_micro_batches
from mxdna_cli.train.finetune import FinetuneSettings, run_area, run_finetune
from mxdna_cli.train.pretrain import Pretrainer, PretrainSettings
from mxdna_cli.weights import load_model

FIXTURES = Path(__file__).resolve().parents[1] / "data"
TATA = str(FIXTURES / "promoter" / "tata_small.tsv")


def finetune_settings(out_dir, **changes):
    values = dict(train=[TATA], out_dir=str(out_dir), from_scratch=True, preset="tiny", epochs=2, batch_size=8,
                  lr=3e-3, threads=1, device="cpu", patience=5, grad_accum=2, precision="float32")
    values.update(changes)
    return FinetuneSettings(**values)


def pretrain_settings(out_dir, **changes):
    values = dict(inputs=[str(FIXTURES / "pretrain_small.fa")], out_dir=str(out_dir), preset="tiny", window=96,
                  batch_size=4, grad_accum=2, steps=4, warmup=2, lr=3e-3, eval_every=100, eval_windows=4, threads=1,
                  precision="float32", heldout=[["pretrain_small.fa", "scer*"]])
    values.update(changes)
    return PretrainSettings(**values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank, world_size, port, job, settings, stop_after_steps):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        if job == "finetune":
            run_finetune(settings, stop_after_steps=stop_after_steps)
        else:
            Pretrainer(settings, say=lambda _: None).run(stop_after_steps=stop_after_steps)
    finally:
        dist.destroy_process_group()


def on_two_processes(job, settings, stop_after_steps=None):
    mp.spawn(_worker, args=(2, free_port(), job, settings, stop_after_steps), nprocs=2, join=True)


def checkpoint_model(folder):
    return torch.load(Path(folder) / "checkpoint.pt", weights_only=False)["model"]


def assert_close(first, second, atol=1e-5):
    assert first.keys() == second.keys()
    for key, value in first.items():
        assert torch.allclose(value.float(), second[key].float(), atol=atol, rtol=1e-4), key


def test_micro_batches_are_shared_out_and_must_divide_evenly():
    assert list(my_micro_batches(4, World(rank=1, size=2))) == [1, 3]
    assert list(my_micro_batches(2, World())) == [0, 1]
    with pytest.raises(UsageError, match="multiple of 2"):
        check_micro_batches(3, World(rank=0, size=2))


def test_finetune_on_two_processes_matches_one_process_accumulating(tmp_path):
    # one step: the weights after it agree with one process summing the same two micro-batches
    on_two_processes("finetune", finetune_settings(tmp_path / "ddp"), stop_after_steps=1)
    run_finetune(finetune_settings(tmp_path / "one"), stop_after_steps=1)
    two, one = checkpoint_model(run_area(str(tmp_path / "ddp"))), checkpoint_model(run_area(str(tmp_path / "one")))
    assert_close(two, one)
    start = torch.load(run_area(str(tmp_path / "one")) / "checkpoint.pt", weights_only=False)
    assert start["step"] == 1

    # the 2-process checkpoint resumes in 1 process and ends where the 1-process run ends
    run_finetune(finetune_settings(tmp_path / "ddp", resume=True))
    run_finetune(finetune_settings(tmp_path / "one", resume=True))
    assert_close(load_model(tmp_path / "ddp")[0].state_dict(), load_model(tmp_path / "one")[0].state_dict())


def test_pretrain_checkpoint_of_two_processes_resumes_in_one(tmp_path):
    on_two_processes("pretrain", pretrain_settings(tmp_path / "ddp"), stop_after_steps=2)
    assert len((tmp_path / "ddp" / "log.tsv").read_text().splitlines()) == 3  # header + 2 steps, rank 0 only
    resumed = Pretrainer(pretrain_settings(tmp_path / "ddp"), say=lambda _: None).run()
    uninterrupted = Pretrainer(pretrain_settings(tmp_path / "one"), say=lambda _: None).run()
    losses = [r["loss"] for r in uninterrupted if r["kind"] == "train"]
    assert [r["loss"] for r in resumed if r["kind"] == "train"] == pytest.approx(losses[2:], rel=1e-4)
    assert_close(checkpoint_model(tmp_path / "ddp"), checkpoint_model(tmp_path / "one"))
