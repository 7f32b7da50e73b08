"""What a method puts on the loaded base: nothing for full FT (its gradients on every weight), a peft LoRA
adapter for LoRA and its variants, the same on a 4-bit base for QLoRA; then what peft built, read back for the
record, and the adapter merged for scoring where that leaves the predictions the same.

Why apart from models.py: loading a base (GGUF, 4-bit, random) and choosing a method are two steps a reader
looks for separately; the methods differ only in config (harness/config.py), and this is where that config
becomes peft's.
"""

from __future__ import annotations

import contextlib
import logging

import torch

from harness.config import ALL_LINEAR, ConfigError, MethodConfig, RunConfig

log = logging.getLogger(__name__)


# The default list of conf/method/lora.yaml: Llama's projections (also Mistral's, Qwen2's, Gemma's).
LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _is_linear(module: torch.nn.Module) -> bool:
    """A layer LoRA can adapt: nn.Linear, bitsandbytes' 4-bit Linear, or the Conv1D of GPT-2-family models (a
    linear layer with its weight transposed, which peft adapts too)."""
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, torch.nn.Linear | Conv1D) or type(module).__name__.startswith("Linear4bit")


def linear_layer_names(torch_model: torch.nn.Module) -> list[str]:
    """Distinct leaf names of the model's linear layers (what LoRA's target_modules may name)."""
    return sorted({name.rsplit(".", 1)[-1] for name, module in torch_model.named_modules() if _is_linear(module)})


def resolve_target_modules(torch_model: torch.nn.Module, method: MethodConfig) -> list[str] | str | None:
    """What peft adapts: the names given, or "all-linear" when asked for, or when the list is the Llama default
    (every linear layer of a Llama) and the model lacks some of its names (GPT-2's c_attn has none, Phi-3's
    fused qkv_proj and gate_up_proj leave only o_proj and down_proj). A list naming layers the model lacks is a
    ConfigError listing the model's linear layers."""
    if method.name == "full":
        return None
    if method.target_modules == ALL_LINEAR:
        return ALL_LINEAR
    available = linear_layer_names(torch_model)
    missing = [m for m in method.target_modules or [] if m not in available]
    if missing and list(method.target_modules) == LLAMA_PROJECTIONS:
        log.info(
            "the default target modules %s are not all in this model (its linear layers: %s): adapting all its "
            "linear layers (all-linear)", missing, ", ".join(available),
        )  # fmt: skip
        return ALL_LINEAR
    if missing:
        raise ConfigError(
            f"method.target_modules: {missing} not in this model; its linear layers are: {', '.join(available)} "
            f"(or method.target_modules={ALL_LINEAR})"
        )
    return list(method.target_modules)


def check_liger_supports(torch_model: torch.nn.Module) -> None:
    """train.liger_kernel=true on a model type Liger has no kernels for: refused before training.

    Why: Liger (through HF Trainer) applies nothing to such a model and says so in an info log only, so a
    `+liger` run would silently measure the plain model under Liger's name."""
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    model_type = getattr(getattr(torch_model, "config", None), "model_type", None)
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        raise ConfigError(
            f"train.liger_kernel=true: liger-kernel has no kernels for model type {model_type!r} (it has them for "
            f"{', '.join(sorted(MODEL_TYPE_TO_APPLY_LIGER_FN))}); set it to false for this model"
        )


def apply_method(
    torch_model: torch.nn.Module,
    *,
    method: MethodConfig,
    gradient_checkpointing: bool,
    target_modules: list[str] | str | None = None,
) -> torch.nn.Module:
    """Full FT trains everything; LoRA and QLoRA wrap the frozen base with a peft adapter."""
    if method.name == "full":
        if gradient_checkpointing:
            torch_model.gradient_checkpointing_enable()
        return torch_model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if method.name == "qlora":
        torch_model = prepare_model_for_kbit_training(torch_model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        torch_model.gradient_checkpointing_enable()
        torch_model.enable_input_require_grads()
    lora = LoraConfig(
        r=method.r,
        lora_alpha=method.alpha,
        lora_dropout=method.dropout,
        target_modules=target_modules or resolve_target_modules(torch_model, method),
        bias="none",
        task_type="CAUSAL_LM",
        # the variants (MethodConfig): peft's own fields; LoRA+ is the optimizer's (trainer.loraplus_optimizer)
        use_dora=method.use_dora,
        use_rslora=method.use_rslora,
        init_lora_weights=True if method.init_lora_weights == "default" else method.init_lora_weights,
    )
    return get_peft_model(torch_model, lora)


def adapter_description(torch_model: torch.nn.Module, method: MethodConfig) -> dict:
    """What peft built, read back from the model's LoraConfig (the record's `run.adapter`): the variant fields as
    peft took them, and the parameters DoRA's magnitude vectors add. Empty for full FT."""
    config = getattr(torch_model, "peft_config", {}).get("default")
    if config is None:
        return {}
    magnitude = sum(p.numel() for n, p in torch_model.named_parameters() if "lora_magnitude_vector" in n)
    return {
        "variant": method.variant or "lora",
        "use_dora": bool(config.use_dora),
        "use_rslora": bool(config.use_rslora),
        "init_lora_weights": config.init_lora_weights,
        "scaling": config.lora_alpha / (config.r**0.5 if config.use_rslora else config.r),
        "loraplus_lr_ratio": method.loraplus_lr_ratio,
        "dora_magnitude_params": magnitude,
    }


def adapter_input_casting(torch_model: torch.nn.Module, cfg: RunConfig) -> contextlib.AbstractContextManager:
    """peft's input cast to the adapter dtype, off while training when train.adapter_input_cast=false."""
    from peft.helpers import disable_input_dtype_casting

    return disable_input_dtype_casting(torch_model, active=not cfg.train.adapter_input_cast)


@contextlib.contextmanager
def merged_for_scoring(torch_model: torch.nn.Module, cfg: RunConfig, dtype: torch.dtype):
    """The trained adapter merged into its base for the block (yields True), unmerged after; yields False where it
    stays unmerged: full FT (no adapter), a 4-bit base (merging would requantise it), a base held in a half dtype
    (the merged weight would be rounded to it, which the unmerged adapter is not), or eval.merge_for_scoring=false.

    Why: unmerged, every adapted layer adds two matmuls per decoding step (DoRA also its weight norm), which made
    scoring the larger half of a CPU job; merged in fp32 it is the same function (tests/test_run.py checks the
    predictions example by example)."""
    merge = (
        cfg.eval.merge_for_scoring
        and cfg.method.name != "full"
        and cfg.method.quant_type is None
        and dtype == torch.float32
        and hasattr(torch_model, "merge_adapter")
    )
    if not merge:
        yield False
        return
    torch_model.merge_adapter()
    try:
        yield True
    finally:
        torch_model.unmerge_adapter()
