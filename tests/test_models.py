"""Building the models a run trains: random weights drawn one layer at a time, quantised as they arrive."""

from __future__ import annotations

import math
import weakref

import pytest
import torch
from transformers import AutoConfig

from harness.run import models, random_init


def _load(cfg, seed: int = 7):
    return models.load_base_model(
        model=cfg.model,
        method=cfg.method,
        cache_dir=cfg.cache_dir,
        dtype=torch.bfloat16,
        device="cpu",
        seed=seed,
    )


def test_a_random_qlora_base_is_the_random_lora_base_quantised(make_config):
    """Same seed, same model: the layer-by-layer QLoRA build equals quantising the whole LoRA base at once
    through the same loader (the path used until 2026-11-26, minus its file), bit for bit."""
    lora_cfg, qlora_cfg = make_config("method=lora", "device=cpu"), make_config("method=qlora", "device=cpu")
    plain = _load(lora_cfg)
    reference = type(plain).from_pretrained(
        None,
        config=plain.config,
        state_dict=plain.state_dict(),
        dtype=torch.bfloat16,
        quantization_config=models.quantization_config(qlora_cfg.method, torch.bfloat16),
        device_map={"": "cpu"},
    )
    built = _load(qlora_cfg)
    assert built.is_loaded_in_4bit and any(type(m).__name__ == "Linear4bit" for m in built.modules())
    # scoring it on a CPU will not repack its weights for a kernel without backward (test_run.py says why)
    assert not any(getattr(m, "support_avx512bf16_for_cpu", False) for m in built.modules())
    expected, got = reference.state_dict(), built.state_dict()
    assert sorted(got) == sorted(expected)
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name
    # the seed decides the weights: another seed gives another model
    q_proj = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(_load(qlora_cfg, seed=8).state_dict()[q_proj], got[q_proj])


def test_random_weights_have_the_model_classes_own_distributions(make_config):
    """Each unit is initialised by the class's _init_weights, its parents' rules included: norms are ones,
    the padding row is zero, ties hold, and GPT-2 scales c_proj by depth (a rule of the block, not the layer)."""
    llama = _load(make_config("method=full", "device=cpu"))
    pad = llama.config.pad_token_id
    assert torch.all(llama.model.layers[1].input_layernorm.weight == 1)
    assert torch.all(llama.model.embed_tokens.weight[pad] == 0)
    assert llama.lm_head.weight is llama.model.embed_tokens.weight
    std = llama.config.initializer_range
    assert abs(llama.model.layers[0].mlp.up_proj.weight.float().std().item() - std) < 0.1 * std
    gpt2 = _load(make_config("model.architecture.model_type=gpt2", "method=full", "device=cpu"))
    block = gpt2.transformer.h[0]
    scaled = std / math.sqrt(2 * gpt2.config.n_layer)
    assert abs(block.mlp.c_proj.weight.float().std().item() - scaled) < 0.1 * scaled
    assert abs(block.mlp.c_fc.weight.float().std().item() - std) < 0.1 * std


def test_weights_do_not_depend_on_the_order_they_are_read(make_config):
    cfg = make_config("method=full", "device=cpu")
    config = AutoConfig.for_model(**cfg.model.architecture)
    skeleton = random_init.meta_skeleton(config, dtype=torch.float32, attn_implementation="sdpa")
    forward = random_init.RandomCheckpoint(skeleton, seed=3, device="cpu")
    backward = random_init.RandomCheckpoint(skeleton, seed=3, device="cpu")
    keys = list(forward)
    assert "lm_head.weight" not in keys  # tied: listed once, the loader ties the other name
    first = {k: forward[k][...] for k in keys}
    second = {k: backward[k][...] for k in reversed(keys)}
    assert all(torch.equal(first[k], second[k]) for k in keys)
    assert forward.units_drawn == len({k.rsplit(".", 1)[0] for k in keys if ".layers." not in k}) + 2


def test_a_qlora_base_holds_one_layer_of_full_precision_weights_at_a_time(make_config, monkeypatch):
    """What lets a 70B QLoRA model be built on a card that cannot hold its bf16 weights: when a unit is drawn,
    no earlier unit's full-precision linear weights are still alive (each was quantised and dropped)."""
    cfg = make_config("method=qlora", "device=cpu", "model.architecture.num_hidden_layers=4")
    draw = random_init.draw_unit
    alive: list[tuple[str, weakref.ref]] = []
    overlaps: list[tuple[str, list[str]]] = []
    drawn_units: list[str] = []

    def watched(module, owner, *, seed, name, device):
        still = [key for key, ref in alive if ref() is not None]
        if still:
            overlaps.append((name, still))
        tensors = draw(module, owner, seed=seed, name=name, device=device)
        drawn_units.append(name)
        alive.extend((f"{name}.{k}", weakref.ref(t)) for k, t in tensors.items() if k.endswith("proj.weight"))
        return tensors

    monkeypatch.setattr(random_init, "draw_unit", watched)
    built = _load(cfg)
    assert built.is_loaded_in_4bit
    assert sum(".layers." in u for u in drawn_units) == 4  # each layer drawn once
    assert overlaps == []
    assert all(ref() is None for _, ref in alive)


@pytest.mark.parametrize("bad", ["nope.weight"])
def test_a_random_checkpoint_has_only_the_models_keys(make_config, bad):
    cfg = make_config("method=full", "device=cpu")
    skeleton = random_init.meta_skeleton(
        AutoConfig.for_model(**cfg.model.architecture), dtype=torch.float32, attn_implementation="sdpa"
    )
    checkpoint = random_init.RandomCheckpoint(skeleton, seed=0, device="cpu")
    with pytest.raises(KeyError):
        checkpoint[bad]
    assert set(checkpoint) <= set(skeleton.state_dict())
