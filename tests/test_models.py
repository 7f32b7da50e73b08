"""Building the models a run trains: random weights, quantised in memory."""

from __future__ import annotations

import tempfile

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from harness import models


def test_random_qlora_base_equals_the_file_round_trip_it_replaces(make_config):
    """The in-memory quantising load gives the 4-bit model the old save-and-reload path gave, bit for bit."""
    cfg = make_config("method=qlora", "device=cpu")
    dtype = models.DTYPES[cfg.method.compute_dtype]
    quant = models.quantization_config(cfg.method)
    torch.manual_seed(7)
    with tempfile.TemporaryDirectory() as tmp:  # the path used until 2026-11-26
        AutoModelForCausalLM.from_config(AutoConfig.for_model(**cfg.model.architecture), dtype=dtype).save_pretrained(
            tmp
        )
        reference = AutoModelForCausalLM.from_pretrained(
            tmp, dtype=dtype, quantization_config=quant, device_map={"": "cpu"}
        )
    built = models.load_base_model(
        model=cfg.model, method=cfg.method, cache_dir=cfg.cache_dir, dtype=dtype, device="cpu", seed=7
    )
    expected, got = reference.state_dict(), built.state_dict()
    assert sorted(got) == sorted(expected)
    assert any(type(m).__name__ == "Linear4bit" for m in built.modules())
    assert built.is_loaded_in_4bit
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name
    # and the seed decides the weights: another seed gives another model
    other = models.load_base_model(
        model=cfg.model, method=cfg.method, cache_dir=cfg.cache_dir, dtype=dtype, device="cpu", seed=8
    )
    q_proj = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(other.state_dict()[q_proj], got[q_proj])
