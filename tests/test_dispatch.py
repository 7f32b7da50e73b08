"""The dispatched-op count behind docs/speed.md's "launch-bound" reading of the H100 bench: it does not grow with
the batch, and an adapter adds ops to every layer."""

import sys

import torch

from harness.run import adapters, models
from harness.run.adapters import adapter_input_casting
from harness.run.models import weights_dtype

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
from dispatch import dispatched_ops  # noqa: E402 (a tool, not part of the package)


def _ops(make_config, method: str, batch: int, *overrides: str) -> int:
    cfg = make_config("model=tiny", f"method={method}", *overrides)
    torch_model = models.load_base_model(
        model=cfg.model, method=cfg.method, cache_dir=cfg.cache_dir, dtype=weights_dtype(cfg, "bf16"), device="cpu"
    )
    torch_model = adapters.apply_method(torch_model, method=cfg.method, gradient_checkpointing=False).train()
    ids = torch.randint(0, torch_model.config.vocab_size, (batch, 16), generator=torch.Generator().manual_seed(0))
    with adapter_input_casting(torch_model, cfg):
        return dispatched_ops(torch_model, ids, torch.bfloat16)["ops"]


def test_ops_per_micro_step_do_not_grow_with_the_batch_and_adapters_add_ops(make_config):
    full = _ops(make_config, "full", 2)
    assert full == _ops(make_config, "full", 8) > 0
    lora = _ops(make_config, "lora", 2)
    assert lora == _ops(make_config, "lora", 8) > full
    assert _ops(make_config, "qlora", 2) > full


def test_skipping_peft_input_cast_saves_four_ops_per_adapted_layer(make_config):
    """bf16 -> fp32 -> bf16 around each adapter's matmuls: two casts forward, two backward, except that the
    first layer's q, k and v inputs (the frozen embeddings, normed) need no gradient, so no backward casts."""
    cfg = make_config("model=tiny", "method=lora")
    adapted = cfg.model.architecture["num_hidden_layers"] * len(cfg.method.target_modules)
    saved = _ops(make_config, "lora", 2) - _ops(make_config, "lora", 2, "train.adapter_input_cast=false")
    assert saved == 4 * adapted - 2 * 3
    assert _ops(make_config, "full", 2, "train.adapter_input_cast=false") == _ops(make_config, "full", 2)


def test_ops_are_attributed_to_the_module_class_that_ran_them(make_config):
    """The forward's ops by innermost module class (what a fused kernel would replace), plus the backward as one
    count, add up to the total; every norm of the model runs the same ops."""
    cfg = make_config("model=tiny", "method=full")
    torch_model = models.load_base_model(
        model=cfg.model, method=cfg.method, cache_dir=cfg.cache_dir, dtype=torch.float32, device="cpu"
    ).train()
    ids = torch.randint(0, torch_model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    counts = dispatched_ops(torch_model, ids, torch.bfloat16)
    by_module = counts["by_module"]
    assert sum(by_module.values()) == counts["ops"]
    assert by_module["(backward, all modules)"] > 0 and by_module["Linear"] > 0
    norms = 2 * cfg.model.architecture["num_hidden_layers"] + 1
    assert by_module["LlamaRMSNorm"] % norms == 0 and by_module["LlamaRMSNorm"] >= 3 * norms
