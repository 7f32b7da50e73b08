"""Shared fixtures: compose the real configs from conf/ and run the real flow on a tiny random model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from harness.config import RunConfig
from harness.run.checks import load_run_config

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"

# Small everything: a tiny random Llama, a small slice of the built-in task, a few steps.
FAST = [
    "model=tiny",
    "train=smoke",
    "train.max_seq_len=256",
    "dataset.n_train=48",
    "dataset.n_validation=8",
    "dataset.n_test=8",
    "eval.max_test_examples=4",
    "eval.max_new_tokens=8",
    "eval.batch_size=4",
]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    """One cache per test session (the GGUF tokenizer/model conversion happens once), or FT_HARNESS_CACHE."""
    return os.environ.get("FT_HARNESS_CACHE") or str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session", autouse=True)
def _cache_outside_runs(cache_dir):
    """What the harness caches outside a run (activation counts) goes to the test cache, not the user's."""
    previous = os.environ.get("FT_HARNESS_CACHE")
    os.environ["FT_HARNESS_CACHE"] = cache_dir
    yield
    if previous is None:
        os.environ.pop("FT_HARNESS_CACHE", None)


def compose_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.fixture
def make_config(tmp_path, cache_dir):
    """Build a checked RunConfig from the real conf/ plus the fast overrides and the test's own."""

    def make(*overrides: str) -> RunConfig:
        cfg = compose_config([*FAST, f"results_dir={tmp_path / 'results'}", f"cache_dir={cache_dir}", *overrides])
        return load_run_config(cfg)

    return make
