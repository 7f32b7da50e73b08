"""Datasets as prompt/completion rows, tokenised for causal-LM training with the prompt masked.

Three sources give the same shape: the built-in generated task (written as JSONL under the cache dir),
a user's JSONL files, and a hub dataset with a column mapping. Tokenisation applies the model's chat
template where it has one and builds prompt + completion as ONE sequence whose prompt positions are
labelled -100 (the documents' sample code labels the completion alone, misaligned with the prompt).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict, load_dataset
from transformers import PreTrainedTokenizerBase

from harness.config import ConfigError, DatasetConfig
from harness.run import task

IGNORE_INDEX = -100
SPLITS = ("train", "validation", "test")


def builtin_files(dataset: DatasetConfig, cache_dir: str) -> dict[str, Path]:
    """Generate the built-in task (deterministic from its seed and sizes) as JSONL, once."""
    key = f"{dataset.name}-s{dataset.seed}-{dataset.n_train}-{dataset.n_validation}-{dataset.n_test}"
    out_dir = Path(cache_dir).expanduser() / "datasets" / key
    paths = {split: out_dir / f"{split}.jsonl" for split in SPLITS}
    if not all(p.is_file() for p in paths.values()):
        splits = task.generate_splits(
            seed=dataset.seed, n_train=dataset.n_train, n_validation=dataset.n_validation, n_test=dataset.n_test
        )
        paths = task.write_jsonl(splits, out_dir)
    return paths


def _read_jsonl(path: Path, split: str) -> Dataset:
    if not path.is_file():
        raise ConfigError(f"dataset.{split}_file={path}: no such file")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
    if not rows:
        raise ConfigError(f"dataset.{split}_file={path}: the file is empty")
    missing = {"prompt", "completion"} - set(rows[0])
    if missing:
        raise ConfigError(f"{path}: rows lack the column(s) {sorted(missing)}; each row needs prompt and completion")
    for lineno, row in enumerate(rows, 1):
        if not isinstance(row.get("prompt"), str) or not isinstance(row.get("completion"), str):
            raise ConfigError(f"{path}: row {lineno} needs string prompt and completion")
    return Dataset.from_list(rows)


CHAT_ROLES = ("system", "user", "assistant")


def _conversation_problem(row: object) -> str | None:
    """What is wrong with one chat row ({"messages": [...]}), or None."""
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages:
        return 'needs "messages": a non-empty list of {"role", "content"} objects'
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in CHAT_ROLES:
            return f"message {i + 1}: role must be one of {', '.join(CHAT_ROLES)}"
        if not isinstance(m.get("content"), str) or not m["content"].strip():
            return f"message {i + 1} ({m['role']}): content must be a non-empty string"
    if messages[-1]["role"] != "assistant":
        return "the last message must be the assistant's (it is what the model learns to answer)"
    if not any(m["role"] == "user" for m in messages[:-1]):
        return "no user message before the last assistant turn"
    return None


def _read_chat_jsonl(path: Path, split: str) -> Dataset:
    """Chat JSONL ({"messages": [...]} per line) as rows: the conversation before the last assistant turn (JSON,
    rendered with the model's chat template), that turn as the completion, the last user message as the prompt
    shown in reports. Every message but the last assistant turn is context: its positions are not trained."""
    if not path.is_file():
        raise ConfigError(f"dataset.{split}_file={path}: no such file")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            problem = _conversation_problem(row)
            if problem:
                raise ConfigError(f"{path}:{lineno}: {problem}")
            messages = row["messages"]
            context = [{"role": m["role"], "content": m["content"]} for m in messages[:-1]]
            prompt = next(m["content"] for m in reversed(context) if m["role"] == "user")
            rows.append({"prompt": prompt, "conversation": json.dumps(context), "completion": messages[-1]["content"]})
    if not rows:
        raise ConfigError(f"dataset.{split}_file={path}: the file is empty")
    return Dataset.from_list(rows)


def _from_hub(dataset: DatasetConfig) -> DatasetDict:
    """A hub (or local-folder) dataset mapped to prompt/completion by its columns."""
    raw = load_dataset(dataset.hub_id, dataset.hub_config)
    template = dataset.prompt_template or "\n\n".join("{" + c + "}" for c in dataset.prompt_columns)
    out = {}
    for split in SPLITS:
        source_split = dataset.splits.get(split)
        if source_split not in raw:
            raise ConfigError(f"dataset.splits.{split}={source_split!r}: the dataset has {list(raw)}")
        columns = raw[source_split].column_names
        missing = [c for c in [*dataset.prompt_columns, dataset.completion_column] if c not in columns]
        if missing:
            raise ConfigError(f"dataset {dataset.hub_id}: column(s) {missing} not found; it has {columns}")

        def to_pair(row: dict) -> dict:
            values = {c: (row[c] or "") for c in dataset.prompt_columns}
            prompt = template.format(**values).strip()
            return {"prompt": prompt, "completion": str(row[dataset.completion_column])}

        out[split] = raw[source_split].map(to_pair, remove_columns=columns)
    return DatasetDict(out)


def load_splits(dataset: DatasetConfig, cache_dir: str) -> DatasetDict:
    """train / validation / test as prompt/completion rows, from whichever source the config names."""
    if dataset.source == "hub":
        return _from_hub(dataset)
    if dataset.source == "builtin":
        files = builtin_files(dataset, cache_dir)
    else:
        files = {split: Path(getattr(dataset, f"{split}_file")).expanduser() for split in SPLITS}
    read = _read_chat_jsonl if dataset.source == "chat" else _read_jsonl
    return DatasetDict({split: read(files[split], split) for split in SPLITS})


def render_prompt(
    tokenizer: PreTrainedTokenizerBase, prompt: str, use_chat_template: bool, conversation: str | None = None
) -> str:
    """The prompt text the model sees: inside the chat template (with the assistant turn opened) if any; a chat
    row's whole conversation before its last assistant turn (JSON) where it has one."""
    if conversation is not None:
        return tokenizer.apply_chat_template(json.loads(conversation), add_generation_prompt=True, tokenize=False)
    if use_chat_template and tokenizer.chat_template:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
    return prompt + "\n"


def encode_example(
    tokenizer: PreTrainedTokenizerBase,
    *,
    prompt: str,
    completion: str,
    max_seq_len: int,
    use_chat_template: bool,
    conversation: str | None = None,
) -> dict[str, list[int]]:
    """prompt + completion + EOS as one sequence; labels are -100 over the prompt. Truncates the end."""
    text = render_prompt(tokenizer, prompt, use_chat_template, conversation)
    prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    input_ids = (prompt_ids + completion_ids)[:max_seq_len]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + completion_ids)[:max_seq_len]
    return {"input_ids": input_ids, "labels": labels, "prompt_len": len(prompt_ids)}


def tokenize_split(
    rows: Dataset, tokenizer: PreTrainedTokenizerBase, *, max_seq_len: int, use_chat_template: bool, split: str
) -> Dataset:
    """Tokenise a split and drop examples whose prompt leaves no room for the completion."""
    encoded = rows.map(
        lambda row: encode_example(
            tokenizer,
            prompt=row["prompt"],
            completion=row["completion"],
            max_seq_len=max_seq_len,
            use_chat_template=use_chat_template,
            conversation=row.get("conversation"),
        ),
        remove_columns=rows.column_names,
    )
    kept = encoded.filter(lambda row: row["prompt_len"] < max_seq_len)
    if len(kept) == 0:
        longest = max(encoded["prompt_len"])
        raise ConfigError(
            f"train.max_seq_len={max_seq_len}: every {split} prompt is at least that long "
            f"(longest {longest} tokens); raise train.max_seq_len"
        )
    return kept.remove_columns("prompt_len")


def synthetic_split(n: int, *, seq_len: int, vocab_size: int, seed: int) -> Dataset:
    """n sequences of exactly seq_len uniform random tokens, every position trained.

    For memory and speed at scale (the `scale` sweep): what a step costs depends on the shapes, not on the
    text, and no tokenizer or hub download is needed. Nothing is scored on them.
    """
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (n, seq_len), generator=generator).tolist()
    return Dataset.from_dict({"input_ids": ids, "labels": ids})


@dataclass
class CompletionCollator:
    """Right-pads a batch: input_ids with the pad token, labels with -100, attention_mask 0 on padding."""

    pad_token_id: int
    pad_to: int | None = None  # fixed width (the documents' recipe); None: the batch's longest example
    multiple_of: int | None = None  # round the width up to a multiple of this: few distinct shapes

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        width = max(width, self.pad_to or 0)
        if self.multiple_of:
            width = -(-width // self.multiple_of) * self.multiple_of
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[i, :n] = torch.tensor(f["input_ids"])
            labels[i, :n] = torch.tensor(f["labels"])
            attention_mask[i, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def collator(packing: bool, *, pad_token_id: int, pad_to: int | None = None, multiple_of: int | None = None):
    """Right-padded batches (to the longest example, or to `pad_to`, rounded up to `multiple_of`), or
    padding-free ones (no pad token computed at all; see TrainConfig.packing)."""
    if packing:
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening()
    return CompletionCollator(pad_token_id=pad_token_id, pad_to=pad_to, multiple_of=multiple_of)
