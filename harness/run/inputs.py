"""A run's inputs: its tokenizer and tokenised splits, every problem with them raised as ConfigError.

A module of its own so that a sweep can check the inputs of its jobs before the first one starts
(hydra_plugins/ft_harness/launcher.py) without importing the training stack: this imports torch,
transformers and datasets, never Trainer, peft or bitsandbytes, whose import makes a CUDA context
(tests/test_sweep.py checks it), which the sweep's own process must not hold while its jobs measure memory.
"""

from __future__ import annotations

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from harness.config import ConfigError, RunConfig
from harness.run import data, models


def prepare_inputs(cfg: RunConfig) -> tuple[PreTrainedTokenizerBase | None, dict[str, Dataset], Dataset | None]:
    """Tokenizer, tokenised train/validation splits and the test rows; raises ConfigError on any bad dataset input.

    Synthetic data needs no tokenizer (none is loaded: a random-init hub model then needs no download)."""
    if cfg.dataset.source == "synthetic":
        train = data.synthetic_split(
            cfg.dataset.n_train,
            seq_len=cfg.train.max_seq_len,
            vocab_size=int(cfg.model.architecture["vocab_size"]),
            seed=cfg.dataset.seed,
        )
        return None, {"train": train}, None
    tokenizer = models.load_tokenizer(cfg.model, cfg.cache_dir)
    if cfg.dataset.source == "chat" and not tokenizer.chat_template:
        raise ConfigError(f"dataset.source=chat needs a tokenizer with a chat template; {cfg.model.name}'s has none")
    rows = data.load_splits(cfg.dataset, cfg.cache_dir)
    tokenized = {
        split: data.tokenize_split(
            rows[split],
            tokenizer,
            max_seq_len=cfg.train.max_seq_len,
            use_chat_template=cfg.dataset.use_chat_template,
            split=split,
        )
        for split in ("train", "validation")
    }
    test = rows["test"]
    if cfg.eval.max_test_examples is not None:
        test = test.select(range(min(cfg.eval.max_test_examples, len(test))))
    return tokenizer, tokenized, test
