"""The model step on real windows: [CLS] pooling, units and states that do not depend on batch company."""

from pathlib import Path

import numpy as np
import pysam
import torch

from mxdna_cli import engine
from mxdna_cli.engine.forward import backbone
from mxdna_cli.model.mxdna import pad_batch
from mxdna_cli.sequence import encode

torch.set_num_threads(1)
DATA = Path(__file__).resolve().parents[1] / "data"
MINI = str(DATA / "mini.fa")


def test_cls_pooling_of_a_single_window_is_the_models_cls_state(tiny, tmp_path):
    out = tmp_path / "cls.npy"
    inputs = engine.Inputs(engine.InputSpec(MINI, regions=["CHROMOSOME_I:201-500"]))
    engine.embed(inputs, tiny, engine.EmbedSettings(str(out), pool="cls"))
    with pysam.FastaFile(MINI) as fasta:
        ids = encode(fasta.fetch("CHROMOSOME_I", 200, 500))
    with torch.inference_mode():
        expected = tiny.backbone(*pad_batch([ids])).token_hidden[0, 0].numpy()
    np.testing.assert_allclose(np.load(out)[0], expected, rtol=1e-5, atol=1e-6)


def test_units_and_states_do_not_depend_on_batch_company(tiny):
    """A window alone and padded in a batch with longer ones gives the same units and token states."""
    rng = np.random.default_rng(0)
    short = rng.integers(5, 9, 150).astype(np.uint8)
    company = [rng.integers(5, 9, n).astype(np.uint8) for n in (400, 230)]
    alone = backbone(tiny, [short], states=True)[0]
    batched = backbone(tiny, company + [short], states=True)[2]
    assert np.array_equal(alone.starts, batched.starts) and np.array_equal(alone.lengths, batched.lengths)
    np.testing.assert_allclose(alone.states, batched.states, rtol=1e-4, atol=1e-5)
    assert alone.starts[0] == 0 and alone.starts[-1] + alone.lengths[-1] == 150
