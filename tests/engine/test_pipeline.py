"""The pipeline loop: token-budget batches that cover every window once, results back in task order."""


import numpy as np
import torch

from mxdna_cli.engine.pipeline import Pipeline

torch.set_num_threads(1)


class Task:
    def __init__(self, n):
        self.ids = np.zeros(n, dtype=np.uint8)
        self.progress = n


def test_batches_respect_the_token_budget_and_cover_every_window_once(tiny):
    runner = Pipeline(tiny, batch_tokens=100)
    lengths = [10, 98, 3, 40, 40, 5, 200, 7]
    groups = runner.batches(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for group in groups:
        width = max(lengths[i] for i in group) + 2
        assert len(group) == 1 or len(group) * width <= 100
    firsts = [lengths[g[0]] for g in groups]
    assert firsts == sorted(firsts, reverse=True)  # longest first: little padding


def test_results_come_back_in_input_order(tiny):
    runner = Pipeline(tiny, batch_tokens=30)
    tasks = [Task(n) for n in (5, 20, 1, 13, 8, 20, 2)]
    seen = []

    def forward(arrays):
        seen.append(len(arrays))
        return [len(a) for a in arrays]

    out = list(runner.run(tasks, forward))
    assert [task for task, _ in out] == tasks
    assert [result for _, result in out] == [5, 20, 1, 13, 8, 20, 2]
    assert sum(seen) == len(tasks) and len(seen) > 1


def _target(sequence, strands=("+", "-")):
    from mxdna_cli.engine.inputs import Target
    from mxdna_cli.io.fasta import Region

    return Target(0, "t", Region("t", 100, 100 + len(sequence), name="t"), strands).attach(sequence)


def test_scan_tasks_pair_the_strands_of_each_window_and_leave_out_gaps():
    from mxdna_cli import sequence as dna
    from mxdna_cli.engine.pipeline import window_tasks
    from mxdna_cli.windows import Scan, Tiling

    text = "ACGTTGCAAC" * 3 + "N" * 20 + "GGATCCAATT" * 3
    gaps = []
    tasks = list(window_tasks([_target(text)], Scan(10, 5), max_n_fraction=0.5,
                              on_gap=lambda target, win: gaps.append(win.start)))
    starts = [t.window.start for t in tasks]
    assert starts == sorted(starts) and [t.strand for t in tasks[:4]] == ["+", "-", "+", "-"]
    for plus, minus in zip(tasks[::2], tasks[1::2]):  # the same forward window, reverse-complemented
        assert plus.window == minus.window
        assert np.array_equal(minus.ids, dna.reverse_complement_ids(plus.ids))
        assert np.array_equal(plus.ids, dna.encode(text[plus.window.start : plus.window.end]))
    assert gaps == [30, 35, 40] and not set(gaps) & set(starts)  # more than half N (25-35 is half: kept)
    # tiled tasks come pass by pass, each strand's windows in its own (model) coordinates
    tiled = list(window_tasks([_target(text)], Tiling(20, 15)))
    assert [t.strand for t in tiled] == ["+"] * 5 + ["-"] * 5
    assert all(t.last == (t.window_index == 4) for t in tiled)
