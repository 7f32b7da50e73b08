"""Scoring where the right answer is known: batched, left-padded generation returns exactly each prompt's own
continuation, and the seen/unseen split of the score counts the rows it should."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset

from harness.run import evaluation, models


@pytest.fixture(scope="module")
def tiny(cache_dir):
    from harness.run.checks import load_run_config

    from .conftest import compose_config

    cfg = load_run_config(compose_config(["model=tiny", "method=full", f"cache_dir={cache_dir}"]))
    tokenizer = models.load_tokenizer(cfg.model, cfg.cache_dir)
    model = models.load_base_model(
        model=cfg.model, method=cfg.method, cache_dir=cfg.cache_dir, dtype=torch.float32, device="cpu", seed=3
    )
    return model, tokenizer


def test_batched_generation_gives_each_prompt_its_own_continuation(tiny):
    """Prompts of different lengths in one left-padded batch: each completion is what the prompt generates alone
    (no padding), with the prompt sliced off; with the padding on the right, or the slice at another width, the
    short prompts would get other tokens."""
    model, tokenizer = tiny
    prompts = ["a", "a much longer prompt with many more words in it than the first", "mid length prompt"]
    kwargs = {"use_chat_template": False, "max_new_tokens": 6, "device": "cpu"}
    batched, timing = evaluation.generate_completions(model, tokenizer, prompts, batch_size=3, **kwargs)
    alone = [evaluation.generate_completions(model, tokenizer, [p], batch_size=1, **kwargs)[0][0] for p in prompts]
    assert batched == alone
    # and "alone" is the prompt's own continuation: generate on its ids, keep what follows them
    for prompt, got in zip(prompts, batched, strict=True):
        ids = tokenizer(prompt + "\n", return_tensors="pt", add_special_tokens=False)["input_ids"]
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)  # fmt: skip
        assert got == tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
    assert 0 < timing["new_tokens"] <= 3 * 6


def test_generation_restores_the_models_mode_and_the_tokenizers_padding_side(tiny):
    model, tokenizer = tiny
    model.train()
    side = tokenizer.padding_side
    evaluation.generate_completions(model, tokenizer, ["x"], use_chat_template=False, batch_size=1,
                                    max_new_tokens=2, device="cpu")  # fmt: skip
    assert model.training and tokenizer.padding_side == side


def test_the_score_splits_seen_and_unseen_phrasings(monkeypatch):
    """A model that answers every seen-phrasing row right and every unseen one wrong scores 1 and 0 on the two
    parts, and their share overall."""
    refs = [json.dumps({"name": f"n{i}", "qty": i}) for i in range(5)]
    unseen = [False, True, False, True, False]
    rows = Dataset.from_dict({"prompt": [f"p{i}" for i in range(5)], "completion": refs, "unseen_phrasing": unseen})

    def answers(model, tokenizer, prompts, **kwargs):
        out = [refs[i] if not unseen[i] else json.dumps({"name": "wrong", "qty": i}) for i in range(len(prompts))]
        return out, {"seconds": 1.0, "new_tokens": 5, "tokens_per_s": 5.0}

    monkeypatch.setattr(evaluation, "generate_completions", answers)
    result = evaluation.task_score(None, None, rows, scorer="json_fields", use_chat_template=False, batch_size=2,
                                   max_new_tokens=8, device="cpu")  # fmt: skip
    assert result["exact_match"] == pytest.approx(3 / 5)
    assert (result["exact_match_seen_phrasing"], result["n_seen_phrasing"]) == (1.0, 3)
    assert (result["exact_match_unseen_phrasing"], result["n_unseen_phrasing"]) == (0.0, 2)
    assert result["field_accuracy"] == pytest.approx((3 * 2 + 2 * 1) / 10)  # unseen rows keep their qty right
