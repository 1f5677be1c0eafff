"""ModelConfig: impossible configurations are the model's own ConfigError (a ValueError), never the
command line's error types; a model card that holds one is bad data naming the card."""

import json

import pytest
import torch

from mxdna_cli.errors import DataError, MxdnaError
from mxdna_cli.model.config import ConfigError, ModelConfig
from mxdna_cli.model.mxdna import MxDNAForMaskedLM
from mxdna_cli.weights import read_info, save_model


@pytest.mark.parametrize("change", [{"hidden_size": 30, "num_heads": 4}, {"expert_kernel_sizes": (2, 3)},
                                    {"deformable_kernel_size": 4}])
def test_impossible_configs_are_config_errors(change):
    values = {**ModelConfig.preset("tiny").to_dict(), **change}
    with pytest.raises(ConfigError) as caught:
        ModelConfig.from_dict(values)
    assert not isinstance(caught.value, MxdnaError)  # the model does not decide the exit code
    with pytest.raises(ConfigError, match="unknown model preset"):
        ModelConfig.preset("enormous")


def test_a_card_with_a_bad_config_is_a_data_error_naming_it(tmp_path):
    torch.manual_seed(0)
    save_model(MxDNAForMaskedLM(ModelConfig.preset("tiny")), tmp_path / "m", trained=False)
    card = tmp_path / "m" / "model.json"
    data = json.loads(card.read_text())
    data["config"]["num_heads"] = 7
    card.write_text(json.dumps(data))
    with pytest.raises(DataError, match="model.json"):
        read_info(tmp_path / "m")


def test_the_medium_preset_fits_the_size_its_weights_must_travel_in():
    # float16 weights of the GPU-pretrained backbone are committed as one file under 60 MB
    parameters = sum(p.numel() for p in MxDNAForMaskedLM(ModelConfig.preset("medium")).parameters())
    assert 25e6 <= parameters <= 30e6 and parameters * 2 < 60e6
