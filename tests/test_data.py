"""Label masking and padding: prompt + completion in one sequence, prompt labels -100."""

import json

import pytest

from harness.config import ConfigError
from harness.run import data, models


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory, cache_dir):
    from harness.config import ModelConfig

    from .conftest import compose_config

    cfg = compose_config(["model=tiny"])
    model = ModelConfig(**{k: v for k, v in cfg.model.items() if k != "architecture"})
    return models.load_tokenizer(model, cache_dir)


def test_prompt_positions_are_masked_and_completion_aligned(tokenizer):
    enc = data.encode_example(
        tokenizer, prompt="Say the answer.", completion='{"x":1}', max_seq_len=512, use_chat_template=True
    )
    ids, labels, n_prompt = enc["input_ids"], enc["labels"], enc["prompt_len"]
    assert len(ids) == len(labels)
    assert labels[:n_prompt] == [data.IGNORE_INDEX] * n_prompt
    # Every completion label is the input token at the same position (the documents' code breaks this).
    assert labels[n_prompt:] == ids[n_prompt:]
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[n_prompt:-1]) == '{"x":1}'
    assert "<|im_start|>assistant" in tokenizer.decode(ids[:n_prompt])


def test_collator_pads_labels_with_ignore_index(tokenizer):
    a = data.encode_example(tokenizer, prompt="a", completion="b", max_seq_len=64, use_chat_template=False)
    b = data.encode_example(
        tokenizer, prompt="a longer prompt here", completion="bb", max_seq_len=64, use_chat_template=False
    )
    batch = data.CompletionCollator(pad_token_id=tokenizer.pad_token_id)([a, b])
    short = len(a["input_ids"])
    assert batch["input_ids"].shape[1] == len(b["input_ids"])
    assert (batch["labels"][0, short:] == data.IGNORE_INDEX).all()
    assert batch["attention_mask"][0].sum() == short
    assert batch["attention_mask"][1].all()
    # rounded up to a multiple (few shapes for torch.compile / CUDA graphs): padding only, same tokens
    rounded = data.CompletionCollator(pad_token_id=tokenizer.pad_token_id, multiple_of=8)([a, b])
    assert rounded["input_ids"].shape[1] == -(-len(b["input_ids"]) // 8) * 8 > len(b["input_ids"]) - 8
    assert rounded["attention_mask"].sum() == batch["attention_mask"].sum()
    assert (rounded["labels"][:, batch["labels"].shape[1] :] == data.IGNORE_INDEX).all()


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_prompt_longer_than_max_len_everywhere_is_an_error(tokenizer, tmp_path):
    from datasets import Dataset

    rows = Dataset.from_list([{"prompt": "word " * 100, "completion": "x"}] * 3)
    with pytest.raises(ConfigError, match="max_seq_len"):
        data.tokenize_split(rows, tokenizer, max_seq_len=32, use_chat_template=False, split="train")


def test_jsonl_errors(tmp_path):
    from harness.config import DatasetConfig

    good = _write(tmp_path / "good.jsonl", [{"prompt": "p", "completion": "c"}])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    nocol = _write(tmp_path / "nocol.jsonl", [{"instruction": "p", "output": "c"}])
    cases = [
        (str(tmp_path / "missing.jsonl"), "no such file"),
        (str(empty), "empty"),
        (nocol, "prompt and completion"),
    ]
    for bad, message in cases:
        cfg = DatasetConfig(name="jsonl", source="jsonl", train_file=bad, validation_file=good, test_file=good)
        with pytest.raises(ConfigError, match=message):
            data.load_splits(cfg, str(tmp_path))


def test_hub_source_maps_columns_from_a_local_folder(tmp_path):
    from harness.config import DatasetConfig

    folder = tmp_path / "alpaca"
    folder.mkdir()
    row = {"instruction": "Add", "input": "1 and 2", "output": "3"}
    for split in ("train", "validation", "test"):
        _write(folder / f"{split}.jsonl", [row, row])
    cfg = DatasetConfig(
        name="alpaca",
        source="hub",
        hub_id=str(folder),
        prompt_columns=["instruction", "input"],
        prompt_template="{instruction}\n\n{input}",
        completion_column="output",
        scorer="exact_match",
    )
    splits = data.load_splits(cfg, str(tmp_path))
    assert splits["test"][0] == {"prompt": "Add\n\n1 and 2", "completion": "3"}
    cfg.completion_column = "answer"
    with pytest.raises(ConfigError, match="answer"):
        data.load_splits(cfg, str(tmp_path))
