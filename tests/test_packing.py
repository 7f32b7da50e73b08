"""Padding-free batches compute the same thing as padded ones: attention never crosses examples."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from harness.config import MethodConfig, ModelConfig
from harness.run import data
from harness.run.models import load_base_model, prepare_for_packing

from .conftest import CONF


def _cpu_has_avx512() -> bool:
    try:
        return "avx512f" in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


# torch 2.13's flex attention on a CPU without AVX512 returned NaN for every logit (2-core EPYC, 2026-12-02; the
# test passed on the AVX512 machines before); training with it on a CPU is refused anyway (no backward there)
FLEX_ON_THIS_CPU = pytest.param(
    "flex_attention",
    marks=pytest.mark.skipif(not _cpu_has_avx512(), reason="torch's CPU flex attention gives NaN without AVX512"),
)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager", FLEX_ON_THIS_CPU])
def test_flattened_batch_gives_each_example_its_own_logits_and_the_padded_loss(tmp_path, attn_implementation) -> None:
    """For every attention the harness offers (train.attn_implementation); flash_attention_2 needs a GPU."""
    arch = yaml.safe_load((CONF / "model" / "tiny.yaml").read_text())["architecture"]
    model_cfg = ModelConfig(name="tiny", source="gguf", init="random", path="x.gguf", architecture=arch)
    model = load_base_model(
        model=model_cfg,
        method=MethodConfig(name="full"),
        cache_dir=str(tmp_path),
        dtype=torch.float32,
        device="cpu",
        attn_implementation=attn_implementation,
    )
    assert model.config._attn_implementation == attn_implementation
    prepare_for_packing(model)
    model.train()  # as the Trainer runs it (the tiny model has no dropout)
    g = torch.Generator().manual_seed(0)
    examples = []
    for length, prompt in ((11, 4), (5, 2), (8, 3)):
        ids = torch.randint(3, arch["vocab_size"], (length,), generator=g).tolist()
        examples.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})

    padded = data.collator(False, pad_token_id=2)(examples)
    flat = data.collator(True, pad_token_id=2)(examples)
    assert flat["input_ids"].shape == (1, 24) and "attention_mask" not in flat  # no padding computed
    with torch.no_grad():
        alone = [model(input_ids=torch.tensor([ex["input_ids"]])).logits[0] for ex in examples]
        out_padded = model(**padded)
        out_flat = model(**flat)
    start = 0
    for i, ex in enumerate(examples):
        n = len(ex["input_ids"])
        torch.testing.assert_close(out_flat.logits[0, start : start + n], alone[i], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out_padded.logits[i, :n], alone[i], atol=1e-4, rtol=1e-4)
        start += n
    assert out_flat.loss.item() == pytest.approx(out_padded.loss.item(), rel=1e-4)


def test_generation_keeps_its_kv_cache_when_packing_turned_it_off(tmp_path) -> None:
    arch = yaml.safe_load((CONF / "model" / "tiny.yaml").read_text())["architecture"]
    model_cfg = ModelConfig(name="tiny", source="gguf", init="random", path="x.gguf", architecture=arch)
    model = load_base_model(
        model=model_cfg, method=MethodConfig(name="full"), cache_dir=str(tmp_path), dtype=torch.float32, device="cpu"
    ).eval()
    prepare_for_packing(model)
    out = model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=3, do_sample=False, return_dict_in_generate=True)
    assert out.past_key_values is not None  # so the evaluation's generation speed does not change with packing
