"""Fixtures shared across the test folders: tiny random models (a masked-LM and a classifier) saved
as model folders, the same tiny masked-LM loaded on the CPU, and the project's scripts/ as modules."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mxdna_cli.model.config import ModelConfig
from mxdna_cli.model.mxdna import MxDNAForMaskedLM, MxDNAForSequenceClassification
from mxdna_cli.weights import save_model


def save_tiny_models(root: Path, *, labels=("nonpromoter", "promoter"), offsets=None, modulators=None,
                     classifier_name: str = "promoter-tiny") -> SimpleNamespace:
    """A tiny masked-LM (`root/tiny`) and classifier (`root/<classifier_name>`, trained on 100 nt
    by its card), random weights. `offsets`/`modulators`: biases of the deformable offset and
    modulator convolutions (fractional, non-zero offsets make tokens read their neighbours' units,
    as in trained models; zero-initialised ones hide bugs)."""
    config = ModelConfig.preset("tiny")
    torch.manual_seed(0)
    mlm = MxDNAForMaskedLM(config)
    with torch.no_grad():
        assembly = mlm.model.tokenizer.assembly
        if offsets is not None:
            assembly.offset_conv.bias.copy_(torch.tensor(offsets))
        if modulators is not None:
            assembly.modulator_conv.bias.copy_(torch.tensor(modulators))
    save_model(mlm, root / "tiny", trained=False)
    torch.manual_seed(1)
    save_model(MxDNAForSequenceClassification(config, num_labels=2), root / classifier_name, trained=False,
               extra={"labels": list(labels), "window": 100})
    return SimpleNamespace(root=root, mlm=str(root / "tiny"), clf=str(root / classifier_name))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny masked-LM, loaded on the CPU."""
    from mxdna_cli.runtime import load

    folder = save_tiny_models(tmp_path_factory.mktemp("models")).mlm
    return load(folder, device="cpu")


@pytest.fixture(scope="session")
def make_tiny_models():
    """`save_tiny_models`, for test modules' own model fixtures."""
    return save_tiny_models


def load_script(name: str):
    """scripts/<name>.py as a module (the scripts are not a package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def script():
    """`load_script`: `script("ship_classifier").main([...])`."""
    return load_script
