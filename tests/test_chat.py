"""Chat JSONL ({"messages": [...]}) as a dataset: rendered with the model's chat template, the last assistant
turn learned, every other position masked; malformed conversations refused before anything trains."""

from __future__ import annotations

import json

import pytest

from harness.config import ConfigError
from harness.run import data, models
from harness.run.train import run

CONVERSATIONS = [
    {"messages": [{"role": "system", "content": "Answer in one word."},
                  {"role": "user", "content": f"Colour number {i}?"},
                  {"role": "assistant", "content": "Earlier answer."},
                  {"role": "user", "content": "And now?"},
                  {"role": "assistant", "content": f"Blue{i}"}]}
    for i in range(12)
]  # fmt: skip


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def make_config(tmp_path, cache_dir):
    """The real configs with the chat dataset (FAST's dataset sizes do not apply to files)."""
    from harness.run.checks import load_run_config

    from .conftest import FAST, compose_config

    def make(*overrides: str):
        fast = [o for o in FAST if not o.startswith("dataset.")]
        base = [f"results_dir={tmp_path / 'results'}", f"cache_dir={cache_dir}"]
        return load_run_config(compose_config([*fast, *base, *overrides]))

    return make


@pytest.fixture
def chat_files(tmp_path):
    return [f"dataset.{split}_file={_write(tmp_path / f'{split}.jsonl', CONVERSATIONS)}"
            for split in ("train", "validation", "test")]  # fmt: skip


def test_a_chat_file_trains_on_the_last_assistant_turn_only(make_config, chat_files):
    cfg = make_config("dataset=chat", *chat_files, "method=lora", "train.max_steps=2", "eval.max_new_tokens=4")
    tokenizer = models.load_tokenizer(cfg.model, cfg.cache_dir)
    rows = data.load_splits(cfg.dataset, cfg.cache_dir)
    encoded = data.tokenize_split(rows["train"], tokenizer, max_seq_len=256, use_chat_template=True, split="train")
    first = encoded[0]
    trained = [t for t, label in zip(first["input_ids"], first["labels"], strict=True) if label != data.IGNORE_INDEX]
    # what is trained: the last assistant turn and the end of its turn, nothing of the context
    assert tokenizer.decode(trained) == "Blue0" + tokenizer.eos_token
    context = tokenizer.decode(first["input_ids"][: len(first["input_ids"]) - len(trained)])
    for text in ("Answer in one word.", "Colour number 0?", "Earlier answer.", "And now?"):
        assert text in context  # the whole conversation is the rendered context, in the model's chat template
    assert context == tokenizer.apply_chat_template(json.loads(rows["train"][0]["conversation"]),
                                                    add_generation_prompt=True, tokenize=False)  # fmt: skip
    record = run(cfg)
    assert record["status"] == "ok", record["error"]
    assert record["metrics"]["score"]["n"] == 4 and record["metrics"]["score"]["samples"][0]["reference"] == "Blue0"


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"messages": []}, "non-empty list"),
        ({"prompt": "x", "completion": "y"}, "non-empty list"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "the last message must be the assistant's"),
        ({"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]}, "no user message"),
        ({"messages": [{"role": "bot", "content": "x"}, {"role": "assistant", "content": "a"}]}, "role must be one of"),
        ({"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "a"}]}, "non-empty string"),
    ],
)
def test_a_malformed_conversation_is_refused_naming_its_line(make_config, tmp_path, chat_files, row, problem):
    bad = _write(tmp_path / "bad.jsonl", [CONVERSATIONS[0], row])
    cfg = make_config("dataset=chat", *chat_files, f"dataset.train_file={bad}")
    with pytest.raises(ConfigError, match=f"bad.jsonl:2: .*{problem}"):
        run(cfg)
