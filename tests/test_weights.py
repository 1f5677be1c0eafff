"""Saving, strict loading, checksums, bundled-model lookup and the reference checkpoint mapping."""

import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mxdna_cli import sequence as vocab
from mxdna_cli.errors import DataError
from mxdna_cli.model.config import ModelConfig
from mxdna_cli.model.mxdna import MxDNAForMaskedLM, MxDNAForSequenceClassification, pad_batch
from mxdna_cli import weights

TINY = ModelConfig.preset("tiny")


def batch():
    rng = np.random.default_rng(3)
    return pad_batch([rng.choice(vocab.BASE_IDS, 90).astype(np.uint8), rng.choice(vocab.BASE_IDS, 33).astype(np.uint8)])


def test_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = MxDNAForMaskedLM(TINY).eval()
    info = weights.save_model(model, tmp_path / "m", extra={"note": "x"})
    loaded, loaded_info = weights.load_model(tmp_path / "m")
    assert loaded_info.config == TINY and loaded_info.sha256 == info.sha256 and loaded_info.extra == {"note": "x"}
    with torch.no_grad():
        assert torch.equal(model(*batch()).logits, loaded(*batch()).logits)


def test_classifier_round_trip_keeps_labels_and_pooling(tmp_path):
    model = MxDNAForSequenceClassification(TINY, num_labels=2, pooling="mean").eval()
    weights.save_model(model, tmp_path / "c", extra={"labels": ["other", "promoter"]})
    loaded, info = weights.load_model(tmp_path / "c")
    assert info.task == "classification" and info.labels == ["other", "promoter"] and loaded.pooling == "mean"
    with torch.no_grad():
        assert torch.equal(model(*batch()).logits, loaded(*batch()).logits)


def test_half_storage_loads_into_float32(tmp_path):
    model = MxDNAForMaskedLM(TINY).eval()
    weights.save_model(model, tmp_path / "h", half=True)
    loaded, _ = weights.load_model(tmp_path / "h")
    first = next(loaded.parameters())
    assert first.dtype == torch.float32
    assert torch.allclose(first, next(model.parameters()).half().float())


def test_checksum_mismatch_is_an_error(tmp_path):
    weights.save_model(MxDNAForMaskedLM(TINY), tmp_path / "m")
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    card["sha256"] = "0" * 64
    (tmp_path / "m" / "model.json").write_text(json.dumps(card))
    with pytest.raises(DataError, match="SHA-256"):
        weights.load_model(tmp_path / "m")


def test_strict_loading_names_missing_unexpected_and_misshapen_keys():
    model = MxDNAForMaskedLM(TINY)
    state = dict(model.state_dict())
    missing = {k: v for k, v in state.items() if k != "lm_head.bias"}
    with pytest.raises(DataError, match="missing key lm_head.bias"):
        weights.load_state_strict(model, missing, "f")
    with pytest.raises(DataError, match="unexpected key extra.weight"):
        weights.load_state_strict(model, {**state, "extra.weight": torch.zeros(1)}, "f")
    with pytest.raises(DataError, match=re.escape("shape mismatch for lm_head.bias: file (3,), model (9,)")):
        weights.load_state_strict(model, {**state, "lm_head.bias": torch.zeros(3)}, "f")


def test_not_a_model_folder(tmp_path):
    with pytest.raises(DataError, match="not a model folder"):
        weights.load_model(tmp_path)


def test_resolve_model_by_path_env_and_name(tmp_path, monkeypatch):
    weights.save_model(MxDNAForMaskedLM(TINY), tmp_path / "mine")
    assert weights.resolve_model(str(tmp_path / "mine")) == tmp_path / "mine"
    assert weights.resolve_model(str(tmp_path / "mine" / "model.safetensors")) == tmp_path / "mine"
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(tmp_path / "mine"))
    assert weights.resolve_model(None) == tmp_path / "mine"
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(tmp_path))  # a folder of models
    assert weights.resolve_model("mine") == tmp_path / "mine"
    with pytest.raises(DataError, match="model 'absent' not found"):
        weights.resolve_model("absent")


# The official checkpoint's names (spec §3.11), produced here from our own model by the inverse map.
def to_reference_layout(state):
    reference = {}
    for key, value in state.items():
        ref = key
        ref = re.sub(r"^model\.token_layers\.", "model.motif_layers.", ref)
        ref = re.sub(r"^model\.final_norm\.", "model.norm.norm.", ref)
        ref = re.sub(r"^norm\.", "norm.norm.", ref)
        ref = ref.replace("model.tokenizer.masked_unit_embedding", "model.conversion_layer.motif_masked_token_embedding")
        ref = ref.replace("model.tokenizer.router.", "model.conversion_layer.gate.")
        ref = ref.replace("model.tokenizer.norm.", "model.conversion_layer.input_layernorm.norm.")
        ref = re.sub(r"model\.tokenizer\.experts\.(\d+)\.pre\.", r"model.conversion_layer.conv_moe.experts.\1.pointwise_conv_pre.", ref)
        ref = re.sub(r"model\.tokenizer\.experts\.(\d+)\.conv\.", r"model.conversion_layer.conv_moe.experts.\1.depthwise_conv.", ref)
        ref = re.sub(r"model\.tokenizer\.experts\.(\d+)\.norm\.", r"model.conversion_layer.conv_moe.experts.\1.norm.norm.", ref)
        ref = re.sub(r"model\.tokenizer\.experts\.(\d+)\.post\.", r"model.conversion_layer.conv_moe.experts.\1.pointwise_conv_post.", ref)
        ref = ref.replace("model.tokenizer.assembly.norm.", "model.conversion_layer.deform_conv.input_layernorm.norm.")
        ref = re.sub(r"model\.tokenizer\.assembly\.(offset_conv|modulator_conv)\.", r"model.conversion_layer.deform_conv.\1.", ref)
        if ref == "model.tokenizer.assembly.weight":
            ref, value = "model.conversion_layer.deform_conv.regular_conv.weight", value[..., None]
        ref = re.sub(r"^decoder\.attn\.([qkvo])\.", r"decoder.cross_attn.projection_\1.", ref)
        ref = re.sub(r"\.attn\.([qkvo])\.", r".self_attn.projection_\1.", ref)
        ref = re.sub(r"\.ffn\.(w\d)\.", r".ffn.ffn.\1.", ref)
        ref = re.sub(r"\.attn_norm\.", ".input_layernorm.norm.", ref)
        ref = re.sub(r"\.ffn_norm\.", ".post_attention_layernorm.norm.", ref)
        reference[ref] = value.clone()
    return reference


def test_reference_checkpoint_layout_loads_and_matches(tmp_path):
    torch.manual_seed(0)
    model = MxDNAForMaskedLM(TINY).eval()
    reference = to_reference_layout(model.state_dict())
    # Names from spec §3.11 that must be present in that layout.
    for key in [
        "model.embed_tokens.weight",
        "model.nucleotide_layers.0.self_attn.projection_q.weight",
        "model.motif_layers.0.ffn.ffn.w1.weight",
        "model.conversion_layer.conv_moe.experts.9.depthwise_conv.weight",
        "model.conversion_layer.deform_conv.regular_conv.weight",
        "decoder.cross_attn.projection_o.weight",
        "lm_head.decoder.weight",
        "norm.norm.bias",
    ]:
        assert key in reference
    assert reference["model.conversion_layer.deform_conv.regular_conv.weight"].dim() == 4
    save_file(reference, str(tmp_path / "model.safetensors"))
    loaded = weights.load_reference_checkpoint(tmp_path / "model.safetensors", TINY)
    with torch.no_grad():
        assert torch.equal(model(*batch()).logits, loaded(*batch()).logits)


def test_reference_checkpoint_with_a_missing_key_is_refused(tmp_path):
    reference = to_reference_layout(MxDNAForMaskedLM(TINY).state_dict())
    del reference["model.conversion_layer.gate.weight"]
    save_file(reference, str(tmp_path / "model.safetensors"))
    with pytest.raises(DataError, match="missing key model.tokenizer.router.weight"):
        weights.load_reference_checkpoint(tmp_path / "model.safetensors", TINY)


def test_saving_the_same_model_twice_gives_the_same_checksum(tmp_path):
    model = MxDNAForMaskedLM(TINY)
    hashes = {weights.save_model(model, tmp_path / str(i)).sha256 for i in range(4)}
    assert len(hashes) == 1
