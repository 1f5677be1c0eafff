"""Fixtures shared across the test folders: tiny random models (a masked-LM and a classifier) saved
as model folders, the same tiny masked-LM loaded on the CPU, a tiny one whose deformable offsets are
live, the bundled trained masked-LM, and the project's scripts/ as modules."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mxdna_cli.model.config import ModelConfig
from mxdna_cli.model.mxdna import MxDNAForMaskedLM, MxDNAForSequenceClassification
from mxdna_cli.model.tokenizer_layer import DeformableAssembly
from mxdna_cli.weights import load_model, save_model

BUNDLED_MLM = Path(__file__).resolve().parents[1] / "weights" / "mxdna-small"


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
def bundled_mlm() -> MxDNAForMaskedLM:
    """The bundled trained masked-LM (weights/mxdna-small) on the CPU, in eval mode: numerical
    properties must hold with trained weights too. Shared by every test: read it, never change it."""
    model, _ = load_model(BUNDLED_MLM)
    return model.eval()


@pytest.fixture
def tiny_live_offsets() -> MxDNAForMaskedLM:
    """A tiny random masked-LM whose deformable offset and modulator convolutions are non-zero
    (zero at initialisation, which hides what they do) and whose assembly LayerNorm has a bias."""
    torch.manual_seed(3)
    model = MxDNAForMaskedLM(ModelConfig.preset("tiny")).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, DeformableAssembly):
                for conv in (module.offset_conv, module.modulator_conv):
                    conv.weight.normal_(0, 0.1)
                    conv.bias.normal_(0, 0.1)
                # a zero LayerNorm bias would make a padded row's normed output zero by chance
                module.norm.bias.normal_(0, 0.5)
    return model


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
