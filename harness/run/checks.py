"""The run's config checked before anything loads: Hydra's composed config merged onto the schema (config.py),
the rules each naming the bad field, the rules of the device, and `train.learning_rate_scale=tuned` resolved.

Why apart from the schema: every part reads the schema (the reports from records); these checks are a run's
first step, and they look at the machine (torch, transformers, the CPU's flags) and at the search's records.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from harness.config import (
    ALL_LINEAR,
    ATTENTIONS,
    COMPILE_MODES,
    DTYPES,
    INIT_LORA_WEIGHTS,
    METHODS,
    PRECISIONS,
    QUANT_TYPES,
    REPORT_KINDS,
    SAMPLINGS,
    TRACKERS,
    TUNED,
    ConfigError,
    RunConfig,
    trackers,
)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


# Long on purpose: every rule of the schema in one list, one line each, so a reader finds them all in one place.
def check(cfg: RunConfig) -> RunConfig:
    """Semantic checks that types alone cannot express; returns cfg for chaining."""
    m = cfg.method
    _require(m.name in METHODS, f"method.name={m.name!r}: must be one of {', '.join(METHODS)}")
    _require(m.learning_rate > 0, f"method.learning_rate={m.learning_rate}: must be > 0")
    if m.name == "full":
        _require(m.quant_type is None, "method.quant_type is set, but full fine-tuning has no quantised base")
        _require(m.weights_dtype in (None, "fp32", "bf16"), f"method.weights_dtype={m.weights_dtype!r}: fp32 or bf16")
    else:
        _require(
            m.weights_dtype is None,
            "method.weights_dtype is for full fine-tuning (a LoRA base follows train.precision, a QLoRA base is 4-bit)",
        )
        _require(m.r is not None and m.r > 0, f"method.r={m.r}: the LoRA rank must be a positive integer")
        _require(m.alpha is not None and m.alpha > 0, f"method.alpha={m.alpha}: must be > 0")
        _require(0 <= m.dropout < 1, f"method.dropout={m.dropout}: must be in [0, 1)")
        names = m.target_modules if isinstance(m.target_modules, list) else []
        _require(
            m.target_modules == ALL_LINEAR or (bool(names) and all(isinstance(x, str) and x for x in names)),
            f"method.target_modules={m.target_modules!r}: a list of linear layer names, or {ALL_LINEAR!r}",
        )
    if m.name == "qlora":
        _require(m.quant_type in QUANT_TYPES, f"method.quant_type={m.quant_type!r}: must be nf4 or fp4")
        _require(m.double_quant is not None, "method.double_quant must be set explicitly (true or false)")
        _require(
            m.compute_dtype == "auto" or m.compute_dtype in DTYPES,
            f"method.compute_dtype={m.compute_dtype!r}: auto (the run's precision) or one of {DTYPES}",
        )
    elif m.name == "lora":
        _require(m.quant_type is None, "method.quant_type is set for lora: use method=qlora for a 4-bit base")
    if m.name == "full":
        _require(
            not m.variant,
            f"method.use_dora / use_rslora / init_lora_weights / loraplus_lr_ratio make a LoRA variant "
            f"({m.variant}), but full fine-tuning has no adapters: "
            f"use method=lora (or method={m.variant.split('-')[0]})",
        )
    else:
        init = m.init_lora_weights
        niter = init.removeprefix("pissa_niter_")
        _require(
            init in INIT_LORA_WEIGHTS or (init.startswith("pissa_niter_") and niter.isdigit() and int(niter) > 0),
            f"method.init_lora_weights={init!r}: one of {', '.join(INIT_LORA_WEIGHTS)}, or pissa_niter_<n> (n > 0)",
        )
        _require(
            m.loraplus_lr_ratio is None or m.loraplus_lr_ratio >= 1,
            f"method.loraplus_lr_ratio={m.loraplus_lr_ratio}: B's learning rate over A's, >= 1 (LoRA+ uses 16)",
        )
        # peft's PiSSA takes an SVD of the base weight and writes the residual back into it: it raises TypeError
        # on a 4-bit bitsandbytes weight (peft's recipe: PiSSA on the full-precision base, then quantise the
        # residual, which is another method than QLoRA's quantised pretrained base)
        _require(
            not (m.name == "qlora" and init.startswith("pissa")),
            "method.init_lora_weights=pissa cannot start from a 4-bit base (peft's PiSSA needs the base weight in "
            "fp32/fp16/bf16): use method=lora for PiSSA, or another initialisation for QLoRA",
        )

    mo = cfg.model
    _require(mo.source in ("gguf", "hub"), f"model.source={mo.source!r}: must be gguf or hub")
    _require(mo.init in ("pretrained", "random"), f"model.init={mo.init!r}: must be pretrained or random")
    if mo.init == "random":
        _require("model_type" in mo.architecture, "model.init=random needs model.architecture.model_type")
    if mo.source == "gguf":
        _require(
            bool(mo.path) or bool(mo.gguf_package and mo.gguf_file),
            "model.source=gguf needs model.path (a .gguf file) or model.gguf_package and model.gguf_file",
        )
    else:
        _require(bool(mo.hub_id or mo.path), "model.source=hub needs model.hub_id or model.path")

    d = cfg.dataset
    _require(
        d.source in ("builtin", "jsonl", "chat", "hub", "synthetic"),
        f"dataset.source={d.source!r}: builtin, jsonl, chat, hub or synthetic",
    )
    if d.source == "synthetic":
        _require(not cfg.eval.enabled, "dataset.source=synthetic has nothing to score: set eval.enabled=false")
        _require(
            int(mo.architecture.get("vocab_size") or 0) > 0,
            "dataset.source=synthetic draws tokens from model.architecture.vocab_size, which is not set",
        )
        _require(d.n_train > 0, f"dataset.n_train={d.n_train}: must be > 0")
    _require(d.scorer in ("json_fields", "exact_match"), f"dataset.scorer={d.scorer!r}: json_fields or exact_match")
    if d.source == "builtin":
        for split in ("n_train", "n_validation", "n_test"):
            _require(getattr(d, split) > 0, f"dataset.{split}={getattr(d, split)}: must be > 0")
    if d.source in ("jsonl", "chat"):
        for split in ("train_file", "validation_file", "test_file"):
            _require(bool(getattr(d, split)), f"dataset.{split} is not set (dataset={d.source} needs all three files)")
    if d.source == "hub":
        _require(bool(d.hub_id), "dataset.hub_id is not set")
        _require(bool(d.prompt_columns), "dataset.prompt_columns is empty")

    t = cfg.train
    _require(t.max_steps > 0 or (t.num_epochs or 0) > 0, "set train.max_steps > 0 or train.num_epochs > 0")
    _require(t.batch_size > 0, f"train.batch_size={t.batch_size}: must be > 0")
    _require(t.grad_accum > 0, f"train.grad_accum={t.grad_accum}: must be > 0")
    _require(t.learning_rate_scale > 0, f"train.learning_rate_scale={t.learning_rate_scale}: must be > 0")
    if t.reference_batch is not None:
        _require(t.reference_batch > 0, f"train.reference_batch={t.reference_batch}: must be > 0")
        _require(t.max_steps > 0, "train.reference_batch counts train.max_steps, which is not set (> 0)")
        per_step = t.batch_size * t.grad_accum
        _require(
            t.max_steps * t.reference_batch % per_step == 0,
            f"train.max_steps={t.max_steps} steps of train.reference_batch={t.reference_batch} examples "
            f"({t.max_steps * t.reference_batch}) are not a whole number of steps of batch_size x grad_accum = "
            f"{per_step}",
        )
    _require(t.max_seq_len > 8, f"train.max_seq_len={t.max_seq_len}: must be > 8")
    _require(t.precision in PRECISIONS, f"train.precision={t.precision!r}: one of {PRECISIONS}")
    _require(cfg.report_kind in REPORT_KINDS, f"report_kind={cfg.report_kind!r}: one of {REPORT_KINDS}")
    for tracker in trackers(t.report_to):
        _require(tracker in TRACKERS, f"train.report_to={t.report_to!r}: none, or some of {', '.join(TRACKERS)}")
        _require(
            any(importlib.util.find_spec(p) is not None for p in TRACKERS[tracker]),
            f"train.report_to={tracker} needs the {TRACKERS[tracker][0]} package: pip install {TRACKERS[tracker][0]}",
        )
    if t.pad_to_length is not None:
        _require(
            t.pad_to_length >= t.max_seq_len,
            f"train.pad_to_length={t.pad_to_length}: must be >= train.max_seq_len={t.max_seq_len}",
        )
        _require(not t.packing, "train.pad_to_length and train.packing exclude each other")
    if t.pad_to_multiple_of is not None:
        _require(t.pad_to_multiple_of > 0, f"train.pad_to_multiple_of={t.pad_to_multiple_of}: must be > 0")
        _require(not t.packing, "train.pad_to_multiple_of and train.packing exclude each other")
    if t.torch_compile_mode is not None:
        _require(
            t.torch_compile_mode in COMPILE_MODES,
            f"train.torch_compile_mode={t.torch_compile_mode!r}: one of {', '.join(COMPILE_MODES)}",
        )
        _require(t.torch_compile, "train.torch_compile_mode needs train.torch_compile=true")
    _require(t.sampling in SAMPLINGS, f"train.sampling={t.sampling!r}: one of {', '.join(SAMPLINGS)}")
    _require(t.dataloader_workers >= 0, f"train.dataloader_workers={t.dataloader_workers}: must be >= 0")
    _require(
        t.attn_implementation in ATTENTIONS,
        f"train.attn_implementation={t.attn_implementation!r}: one of {', '.join(ATTENTIONS)}",
    )
    if t.attn_implementation == "flash_attention_2":
        _require(
            importlib.util.find_spec("flash_attn") is not None,
            "train.attn_implementation=flash_attention_2 needs the flash-attn package (pip install flash-attn)",
        )
    unsupported = attention_unsupported(cfg.model.architecture.get("model_type"), t.attn_implementation)
    _require(
        unsupported is None,
        f"train.attn_implementation={t.attn_implementation}: {unsupported} has no such attention in transformers; "
        "set train.attn_implementation=eager",
    )
    _require(cfg.memory.sample_interval_s > 0, f"memory.sample_interval_s={cfg.memory.sample_interval_s}: must be > 0")
    _require(cfg.device in ("auto", "cpu", "cuda"), f"device={cfg.device!r}: auto, cpu or cuda")
    for name in ("forgetting_chunks", "latency_prompts", "curve_points"):
        _require(getattr(cfg.eval, name) >= 0, f"eval.{name}={getattr(cfg.eval, name)}: must be >= 0 (0 turns it off)")
    _require(cfg.eval.forgetting_chunk_tokens > 1, "eval.forgetting_chunk_tokens must be > 1")
    _require(cfg.eval.latency_new_tokens > 0, "eval.latency_new_tokens must be > 0")
    _require(cfg.eval.batch_size > 0, f"eval.batch_size={cfg.eval.batch_size}: must be > 0")
    _require(
        cfg.eval.enabled or not cfg.eval.validation_only,
        "eval.validation_only=true measures the validation loss, but eval.enabled=false turns evaluation off",
    )
    return cfg


# The class attribute by which transformers says a model supports an attention implementation.
ATTENTION_SUPPORT = {
    "sdpa": "_supports_sdpa",
    "flash_attention_2": "_supports_flash_attn",
    "flex_attention": "_supports_flex_attn",
}


def attention_unsupported(model_type: str | None, attn_implementation: str) -> str | None:
    """The causal-LM class of `model_type` when it lacks `attn_implementation` (Gemma 2 has no SDPA path in
    transformers 5), else None. Why here: transformers raises it while loading, after the job has started and
    written a failed record; read from the class, it is a config error before anything loads."""
    flag = ATTENTION_SUPPORT.get(attn_implementation)
    if not model_type or flag is None:
        return None
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    class_name = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    model_class = getattr(transformers, class_name, None) if class_name else None
    if model_class is None or getattr(model_class, flag, True):
        return None
    return class_name


def resolve_device(requested: str) -> str:
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA GPU is visible")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def cpu_has_bf16() -> bool:
    """bf16 autocast runs on this CPU (oneDNN), natively or emulated: see cpu_native_bf16 for which."""
    import torch

    return bool(getattr(torch.backends.mkldnn, "is_available", lambda: False)()) and bool(
        torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


# /proc/cpuinfo flags of native bf16 arithmetic: x86's AVX512-BF16 and AMX-BF16, aarch64's BF16 feature
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_native_bf16(cpuinfo: str | None = None) -> list[str]:
    """The flags by which this CPU has native bf16 arithmetic (empty: none, or not Linux).

    Why not oneDNN's own check (cpu_has_bf16): it is true on any AVX512 CPU, and one without AVX512-BF16
    emulates bf16. Measured on a 2-core Xeon with AVX512F only (2026-11-26, `python -m harness method=lora
    profile=cpu_quick`): bf16 58.4 tokens/s, fp32 139.6; a whole `make sweep` took 29.5 minutes in bf16.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return [f for f in NATIVE_BF16_FLAGS if f in flags]


def resolve_precision(requested: str, device: str) -> str:
    """auto: bf16 where the hardware has it natively (GPU, or a CPU with AVX512-BF16/AMX), else fp16 on GPU, fp32."""
    if requested != "auto":
        if requested == "fp16" and device == "cpu":
            raise ConfigError("train.precision=fp16 needs a GPU; use bf16, fp32 or auto on CPU")
        return requested
    if device == "cpu":
        return "bf16" if cpu_native_bf16() and cpu_has_bf16() else "fp32"
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def precision_reason(requested: str, device: str, precision: str) -> str:
    """Why a run trains in `precision`, as the record and the report state it."""
    if requested != "auto":
        return f"train.precision={requested}"
    if device != "cpu":
        return "auto: the GPU's " + ("bf16" if precision == "bf16" else "fp16 (no bf16 on this GPU)")
    native = cpu_native_bf16()
    if precision == "bf16":
        return f"auto: the CPU has native bf16 ({', '.join(native)})"
    return "auto: the CPU has no native bf16 (" + "/".join(NATIVE_BF16_FLAGS[:2]) + "), so fp32"


def check_for_device(cfg: RunConfig) -> tuple[str, str]:
    """The rules that depend on the device the run will get (device=auto is resolved here): the device and
    precision, or ConfigError. A sweep runs this for every job before the first starts (jobs inherit the
    sweep's GPUs), so a recipe the machine cannot train fails the sweep at once, not midway."""
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.train.precision, device)
    _require(
        cfg.train.adapter_input_cast or precision in ("bf16", "fp16"),
        f"train.adapter_input_cast=false needs autocast (train.precision bf16 or fp16, here {precision}): "
        "without it the adapter's matmuls would run in the input's dtype instead of its own",
    )
    _require(
        not (device == "cpu" and cfg.train.attn_implementation == "flex_attention"),
        "train.attn_implementation=flex_attention: torch's flex attention has no backward on a CPU "
        "(NotImplementedError at the first step); use sdpa or eager there",
    )
    _require(
        cfg.method.name != "qlora" or importlib.util.find_spec("bitsandbytes") is not None,
        "method=qlora needs bitsandbytes, which is not installed: pip install bitsandbytes",
    )
    if cfg.train.liger_kernel:
        _require(
            device.startswith("cuda"),
            f"train.liger_kernel=true: Liger's kernels are Triton kernels for CUDA GPUs, and this run's device is "
            f"{device}; set it to false here",
        )
        _require(
            importlib.util.find_spec("liger_kernel") is not None,
            "train.liger_kernel=true needs the liger-kernel package, which is not installed: pip install "
            "liger-kernel (on the GPU machine, build the kit with ../shared/device/prepare.sh liger-kernel==0.8.5)",
        )
    return device, precision


def inputs_key(cfg: RunConfig) -> str | None:
    """What a run's inputs depend on (the tokenizer's source, the dataset, the length prompts must fit in), as one
    string: jobs of a sweep with equal keys meet the same input errors, so a sweep whose jobs all share one key
    needs no check of its own (its first job finds them before it trains). None for synthetic data: random
    tokens, nothing to read, nothing the config check has not seen."""
    if cfg.dataset.source == "synthetic":
        return None
    tokenizer_source = {k: v for k, v in asdict(cfg.model).items() if k not in ("architecture", "init")}
    return json.dumps(
        {"model": tokenizer_source, "dataset": asdict(cfg.dataset), "max_seq_len": cfg.train.max_seq_len},
        sort_keys=True,
        default=str,
    )


def load_run_config(cfg: DictConfig) -> RunConfig:
    """Merge Hydra's composed config onto the schema, then check it. Raises ConfigError."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("hydra", None)  # Hydra's own node may hold interpolations only a running job can resolve
    plain = OmegaConf.to_container(cfg, resolve=True)
    # train.learning_rate_scale=tuned: the rate the method's learning-rate search chose (resolved below)
    tuned = isinstance(plain.get("train"), dict) and plain["train"].get("learning_rate_scale") == TUNED
    if tuned:
        plain["train"]["learning_rate_scale"] = 1.0
    try:
        merged = OmegaConf.merge(OmegaConf.structured(RunConfig), plain)
        run_cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise ConfigError(f"invalid configuration: {e}") from None
    assert isinstance(run_cfg, RunConfig)
    source = run_cfg.model.path or run_cfg.model.hub_id
    if run_cfg.model.source == "hub" and not run_cfg.model.architecture and source:
        run_cfg.model.architecture = architecture_of_source(source)
    if tuned:
        run_cfg.train.learning_rate_scale = tuned_learning_rate_scale(run_cfg)
    return check(run_cfg)


def tuned_learning_rate_scale(cfg: RunConfig) -> float:
    """The scale that gives the rate chosen by this config's learning-rate search, read from the records under
    cfg.results_dir (harness/lr_choice.py); a ConfigError, before anything loads, where there is no choice."""
    from harness.lr_choice import choice_for  # late: it reads records with pandas

    choice = choice_for(asdict(cfg), cfg.results_dir)
    if choice is None:
        raise ConfigError(
            f"train.learning_rate_scale=tuned: no learning-rate search of {cfg.method.label} in {cfg.results_dir}; "
            "run it first (python -m harness +sweeps=lr_search with this config's overrides)"
        )
    problem = choice.problem()
    if problem is not None:
        raise ConfigError(f"train.learning_rate_scale=tuned: {problem}")
    assert choice.chosen is not None
    return float(f"{choice.chosen / cfg.method.learning_rate:.6g}")


def architecture_of_source(source: str) -> dict[str, Any]:
    """A hub model's architecture read from its config.json (a local folder, or a hub id: offline where cached),
    for `model=hub` without a YAML of its own; what transformers cannot take (a model_type it lacks, a model with
    its own code) is a ConfigError before anything loads."""
    from harness.predict import presets

    try:
        return presets.architecture_of_source(source, dense_only=False)[1]
    except presets.UnknownModel as e:
        raise ConfigError(str(e).replace("--model", "model.hub_id / model.path", 1)) from None
