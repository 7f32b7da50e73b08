"""The model presets of conf/model/ whose architecture fields are stated: what the memory model can count.

Why a module of its own: `budget`, the claims and the reports all name models by preset, and none of them
should need another's module for it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

CONF_MODEL_DIR = Path(__file__).resolve().parent.parent / "conf" / "model"


class UnknownModel(ValueError):
    """A model name that is no preset with an architecture."""


def model_presets() -> dict[str, dict]:
    """Model configs in conf/model/ that state their architecture (what the memory model needs)."""
    presets = {}
    for path in sorted(CONF_MODEL_DIR.glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
        if cfg.get("architecture", {}).get("model_type"):
            presets[path.stem] = cfg
    return presets


def architecture_of(model: str) -> tuple[str, dict]:
    """(name, architecture) of a preset."""
    presets = model_presets()
    if model not in presets:
        raise UnknownModel(f"--model {model!r}: unknown; known models: {', '.join(presets)} (conf/model/*.yaml)")
    cfg = presets[model]
    return cfg["name"], cfg["architecture"]
