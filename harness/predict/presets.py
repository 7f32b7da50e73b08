"""The models the memory model can count: the presets of conf/model/ whose architecture fields are stated, and
any model transformers knows, named by a local folder, its config.json, or a hub id.

Why a module of its own: `budget`, the claims and the reports all name models, and none of them should need
another's module for it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

CONF_MODEL_DIR = Path(__file__).resolve().parents[2] / "conf" / "model"


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


# Fields of a config.json that describe a checkpoint or a library, not the shapes: left out of the architecture
# (they would only split the caches keyed on it). A pre-quantised checkpoint's quantization_config goes too: the
# harness quantises (or not) as the method says.
NOT_ARCHITECTURE = frozenset(
    {
        "_name_or_path", "transformers_version", "architectures", "torch_dtype", "dtype", "quantization_config",
        "_attn_implementation_autoset", "_commit_hash", "use_cache", "id2label", "label2id", "_attn_implementation",
    }
)  # fmt: skip

# Fields that make a decoder layer a mixture of experts, which the memory model (dense layers, every weight
# used by every token) cannot count.
EXPERT_FIELDS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts", "num_experts_per_tok")


def architecture_of(model: str) -> tuple[str, dict]:
    """(name, architecture) of a preset, a local folder holding config.json, a config.json, or a hub id.

    A hub id is read through AutoConfig (offline where the file is cached or HF_HUB_OFFLINE is set). What the
    memory model cannot count is refused with one line: a mixture of experts, a model with its own code
    (auto_map), a model_type transformers does not know."""
    presets = model_presets()
    if model in presets:
        cfg = presets[model]
        return cfg["name"], cfg["architecture"]
    return architecture_of_source(model, presets)


def architecture_of_source(model: str, presets: dict | None = None, *, dense_only: bool = True) -> tuple[str, dict]:
    """(name, architecture) of a local folder holding config.json, a config.json, or a hub id (no preset).
    dense_only=False lets a mixture of experts through: a run can train one, the memory model cannot count it."""
    presets = model_presets() if presets is None else presets
    path = Path(model).expanduser()
    hub_like = model.count("/") == 1 and not model.startswith((".", "/", "~")) and not path.exists()
    if not path.exists() and not hub_like:
        raise UnknownModel(
            f"--model {model!r}: no preset, file or folder of that name; give a preset ({', '.join(presets)}), "
            "a folder holding config.json, a config.json, or a hub id (ORG/NAME)"
        )
    if path.is_dir() and not (path / "config.json").is_file():
        raise UnknownModel(f"--model {model!r}: the folder holds no config.json")
    fields = _read_config(model, path, hub_like)
    return _name(model, path, hub_like), architecture_from_config(fields, model, dense_only=dense_only)


def _name(model: str, path: Path, hub_like: bool) -> str:
    if hub_like:
        return model.split("/")[-1].lower()
    folder = path if path.is_dir() else path.parent
    return (folder.name if path.is_dir() or path.name == "config.json" else path.stem).lower() or "model"


def _read_config(model: str, path: Path, hub_like: bool) -> dict:
    """The config's fields as stored, before transformers fills in its defaults."""
    import json

    if not hub_like:
        file = path / "config.json" if path.is_dir() else path
        try:
            fields = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UnknownModel(f"--model {model!r}: {file} is not a readable JSON config ({e})") from None
        if not isinstance(fields, dict):
            raise UnknownModel(f"--model {model!r}: {file} holds no JSON object")
        return fields
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model).to_diff_dict()
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnknownModel(f"--model {model!r}: no config for this hub id here ({first})") from None


def architecture_from_config(fields: dict, model: str, *, dense_only: bool = True) -> dict:
    """The architecture fields of a config (what AutoConfig.for_model rebuilds it from), checked: a model_type
    transformers knows, no code of its own, and (dense_only) a dense decoder."""
    from transformers import AutoConfig

    model_type = fields.get("model_type")
    if not model_type:
        raise UnknownModel(f"--model {model!r}: the config has no model_type")
    if fields.get("auto_map"):
        raise UnknownModel(
            f"--model {model!r}: model_type {model_type!r} needs the model's own code (auto_map); the memory "
            "model counts only architectures transformers ships"
        )
    experts = {k: fields[k] for k in EXPERT_FIELDS if fields.get(k)}
    if experts and dense_only:
        named = ", ".join(f"{k}={v}" for k, v in experts.items())
        raise UnknownModel(
            f"--model {model!r}: a mixture of experts ({named}); the memory model counts dense decoder layers "
            "only (every weight used by every token), so it cannot say what this model needs"
        )
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise UnknownModel(
            f"--model {model!r}: model_type {model_type!r} has no causal-LM class in transformers (one that "
            "fine-tuning for generation trains)"
        )
    architecture = {k: v for k, v in fields.items() if k not in NOT_ARCHITECTURE}
    try:
        AutoConfig.for_model(**architecture)
    except (ValueError, KeyError, TypeError) as e:
        raise UnknownModel(f"--model {model!r}: transformers cannot build model_type {model_type!r} ({e})") from None
    return architecture
