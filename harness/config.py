"""Typed run configuration, checked once before any model or dataset is loaded.

Hydra composes YAML from conf/; `load_run_config` merges it onto these dataclasses (so unknown keys and
wrong types fail at once) and `check` adds the semantic rules, each error naming the bad field.
Defaults live in one place, the YAML of conf/ (what a user composes and reads); the run-wide dataclasses here
are the schema, their fields MISSING, so a field the YAML does not set is an error, not a second default.
Methods differ only in config: `lora` is `full` plus adapter fields, `qlora` is `lora` plus a 4-bit
quantisation of the frozen base.
"""

# Over ~350 lines on purpose: the whole schema and its rules in one file, the one place a field is defined.

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

METHODS = ("full", "lora", "qlora")
QUANT_TYPES = ("nf4", "fp4")
DTYPES = ("bfloat16", "float16", "float32")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
REPORT_KINDS = ("tradeoff", "bench", "scale")
# HF Trainer's report_to names this harness passes through, and the package each needs
TRACKERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",)}
ALL_LINEAR = "all-linear"  # peft's shorthand for every linear layer but the output head
SAMPLINGS = ("random", "group_by_length")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# flash_attention_2 needs the flash-attn package; flex_attention needs torch >= 2.5.
ATTENTIONS = ("sdpa", "eager", "flash_attention_2", "flex_attention")


class ConfigError(ValueError):
    """A bad configuration value, reported before anything is loaded or written."""


@dataclass
class ModelConfig:
    name: str = "???"
    # gguf: a GGUF file (from `path`, or `gguf_file` inside the installed `gguf_package`);
    # hub: a hub id (`hub_id`) or a local transformers directory (`path`).
    source: str = "gguf"
    # pretrained weights, or random weights built from `architecture` alone (no download).
    init: str = "pretrained"
    hub_id: str | None = None
    path: str | None = None
    gguf_package: str | None = None
    gguf_file: str | None = None
    architecture: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodConfig:
    name: str = "???"
    learning_rate: float = 1e-4
    r: int | None = None
    alpha: float | None = None
    dropout: float = 0.0
    # the linear layers LoRA adapts: a list of leaf names, or "all-linear" (peft's shorthand: every linear layer
    # but the output head). Any: OmegaConf's types cannot say "a list or that string"; check() does.
    target_modules: Any = None
    quant_type: str | None = None
    double_quant: bool | None = None
    compute_dtype: str | None = None
    # full FT only: fp32 (master weights, bf16 autocast) or bf16 (pure bf16 weights, gradients and AdamW states:
    # half the memory, the variant people run to fit 7-8B on one 24-48 GB card)
    weights_dtype: str | None = None
    # LoRA's variants, as peft's LoraConfig names them (LoRA and QLoRA only; conf/method/dora.yaml and others):
    # DoRA (a trained magnitude per output column, the weight's direction from LoRA), rsLoRA (alpha / sqrt(r)
    # instead of alpha / r), the adapters' initialisation (default: A random, B zero; pissa / pissa_niter_<n>:
    # the weight's top singular vectors, the base keeping the residual; olora: a QR of the weight), and LoRA+
    # (B's learning rate this many times A's; peft.optimizers.create_loraplus_optimizer). Their defaults are
    # plain LoRA, and records of plain LoRA keep their keys (results.LATER_FIELDS).
    use_dora: bool = False
    use_rslora: bool = False
    init_lora_weights: str = "default"
    loraplus_lr_ratio: float | None = None

    @property
    def variant(self) -> str:
        return adapter_variant(self.use_dora, self.use_rslora, self.init_lora_weights, self.loraplus_lr_ratio)

    @property
    def label(self) -> str:
        return method_label(
            self.name, self.r, self.quant_type, self.double_quant, self.weights_dtype, variant=self.variant
        )


INIT_LORA_WEIGHTS = ("default", "gaussian", "pissa", "olora")  # and pissa_niter_<n>: PiSSA by a fast SVD


def adapter_variant(
    use_dora: bool | None, use_rslora: bool | None, init_lora_weights: str | None, loraplus_lr_ratio: float | None
) -> str:
    """The LoRA variant a method's fields make, as one name: "" for plain LoRA, else its parts in a fixed order
    (dora, rslora, the initialisation, loraplus): "dora", "rslora", "pissa", "pissa-niter4", "dora-rslora".
    Plain values, not a MethodConfig, so frames and the report can apply it to a record's config."""
    parts = ["dora"] * bool(use_dora) + ["rslora"] * bool(use_rslora)
    init = init_lora_weights or "default"
    if init != "default":
        parts.append(init.replace("_niter_", "-niter"))
    if loraplus_lr_ratio is not None:
        parts.append("loraplus")
    return "-".join(parts)


def adapter_variant_of(method: dict) -> str:
    """adapter_variant of a record's method config (a dict; records before the variants have none of its fields)."""
    return adapter_variant(
        method.get("use_dora"),
        method.get("use_rslora"),
        method.get("init_lora_weights"),
        method.get("loraplus_lr_ratio"),
    )


def method_label(
    name: str,
    r: int | None,
    quant_type: str | None,
    double_quant: bool | None,
    weights_dtype: str | None = None,
    *,
    variant: str = "",
) -> str:
    """The one short name of a method, in records, tables and `budget`: full, full-bf16, lora-r16, qlora-nf4-r16,
    qlora-fp4-dq-r16; a LoRA variant goes by its own name (dora-r16, rslora-r16, pissa-r16, loraplus-r16) and on a
    4-bit base with a q before it (qdora-nf4-r16)."""
    if name == "full":
        return "full-bf16" if weights_dtype == "bf16" else "full"
    if name == "lora":
        return f"{variant or 'lora'}-r{r}"
    return f"q{variant or 'lora'}-{quant_type or 'nf4'}{'-dq' if double_quant else ''}-r{r}"


@dataclass
class DatasetConfig:
    name: str = "???"
    # builtin: the generated extraction task; jsonl: prompt/completion files; hub: a hub dataset;
    # synthetic: random tokens at exactly train.max_seq_len, for memory and speed only (needs eval.enabled=false).
    source: str = "builtin"
    seed: int = 0
    n_train: int = 2000
    n_validation: int = 64
    n_test: int = 400
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    hub_id: str | None = None
    hub_config: str | None = None
    splits: dict[str, str] = field(
        default_factory=lambda: {"train": "train", "validation": "validation", "test": "test"}
    )
    prompt_columns: list[str] = field(default_factory=list)
    prompt_template: str | None = None
    completion_column: str = "completion"
    # json_fields: completions are JSON objects, scored by exact match and per-field accuracy;
    # exact_match: completions are compared as stripped strings.
    scorer: str = "json_fields"
    use_chat_template: bool = True


@dataclass
class TrainConfig:
    max_steps: int = MISSING
    num_epochs: float | None = MISSING
    # The speed benchmark's recipes differ in batch size; this keeps them on the same examples. When set,
    # max_steps counts optimizer steps of reference_batch examples, and a recipe with another batch_size x
    # grad_accum takes max_steps x reference_batch / (batch_size x grad_accum) steps (a whole number, checked).
    # null: max_steps as given. See optimizer_steps().
    reference_batch: int | None = MISSING
    # Multiplies the method's learning rate (method.learning_rate): a recipe that takes larger batches, hence
    # fewer steps over the same examples, can take a larger rate.
    learning_rate_scale: float = MISSING
    batch_size: int = MISSING
    grad_accum: int = MISSING
    max_seq_len: int = MISSING
    precision: str = MISSING
    seed: int = MISSING
    gradient_checkpointing: bool = MISSING
    # Padding-free batches (transformers' DataCollatorWithFlattening): a batch's examples are concatenated into
    # one row with position ids restarting at each example, and attention stays inside each example.
    packing: bool = MISSING
    # Pad every batch to this many tokens (the documents' recipe pads to 512); null pads to the batch's longest.
    pad_to_length: int | None = MISSING
    # Round each batch's width up to a multiple of this (null: exact longest): a few distinct shapes, so
    # torch.compile does not recompile for every new length and each CUDA graph is reused.
    pad_to_multiple_of: int | None = MISSING
    warmup_ratio: float = MISSING
    weight_decay: float = MISSING
    lr_scheduler: str = MISSING
    max_grad_norm: float = MISSING
    logging_steps: int = MISSING
    # Any optimizer name HF Trainer takes: adamw_torch, adamw_torch_fused, adamw_bnb_8bit, paged_adamw_8bit, ...
    optim: str = MISSING
    # The knobs of the speed benchmark (sweeps/speedups.yaml measures each one alone):
    # random, or group_by_length (batches of similar lengths, less padding; HF's LengthGroupedSampler).
    sampling: str = MISSING
    dataloader_workers: int = MISSING
    torch_compile: bool = MISSING
    # torch.compile's mode (Trainer's torch_compile_mode): null (torch's default), default, reduce-overhead
    # (CUDA graphs: no per-kernel launch cost, for static shapes), max-autotune, max-autotune-no-cudagraphs.
    torch_compile_mode: str | None = MISSING
    attn_implementation: str = MISSING
    # true: no host-device synchronisation between logging steps. Stock HF Trainer waits for the GPU twice per
    # micro-batch (its nan/inf loss check and its token count's .item()) and copies each batch with a blocking
    # copy, so the CPU cannot queue the next step while the GPU works; here the loss filter is off, the token
    # count stays on the GPU until the next log, and batches are copied non-blocking from pinned memory.
    sync_free_steps: bool = MISSING
    # peft casts each adapted layer's input to the adapter's dtype (fp32) before its matmuls, which autocast then
    # casts back to bf16: a lossless round trip (bf16 -> fp32 -> bf16) that costs two casts per layer forward and
    # two in backward. false skips it during training (peft.helpers.disable_input_dtype_casting); LoRA/QLoRA
    # only (full FT has no adapters), and it needs autocast (precision bf16/fp16) to stay lossless.
    adapter_input_cast: bool = MISSING
    # Liger's Triton kernels, applied by HF Trainer (use_liger_kernel): fused RMSNorm, RoPE and SwiGLU, and a
    # linear + cross-entropy that never materialises the logits. Fewer kernel launches per step and less memory
    # traffic; CUDA only, and needs the liger-kernel package (not a dependency: `pip install liger-kernel`).
    liger_kernel: bool = MISSING
    # Experiment trackers HF Trainer reports to, comma-separated: none, tensorboard (works offline: event files
    # under results_dir/trackers/<run>/), wandb, mlflow (their packages and accounts are the user's).
    report_to: str = MISSING


@dataclass
class EvalConfig:
    # false: train only (memory and speed), no validation loss, score, forgetting or latency.
    enabled: bool = MISSING
    batch_size: int = MISSING
    max_test_examples: int | None = MISSING
    max_new_tokens: int = MISSING
    base_model: bool = MISSING
    # Forgetting: loss on general text (not the task) before and after training; 0 chunks turns it off.
    forgetting_chunks: int = MISSING
    forgetting_chunk_tokens: int = MISSING
    # Inference cost: latency of base / adapter unmerged / merged on the first N test prompts; 0 turns it off.
    latency_prompts: int = MISSING
    latency_new_tokens: int = MISSING
    # The learning curve: validation loss at this many evenly spaced steps before the end (the end's is always
    # measured), so a report can say whether a method had stopped improving; 0 turns it off.
    curve_points: int = MISSING
    # true: a learning-rate search job (sweeps/lr_search.yaml). It measures the validation loss at the end of
    # training and nothing else: no test scoring, base-model scoring, forgetting, latency or saved artifact. The
    # rate is chosen on the validation split alone (harness/lr_choice.py), so a search job costs about its training.
    validation_only: bool = False
    # Score a trained (unquantised) adapter merged into its base, unmerged again afterwards: the same function,
    # without the adapter's extra matmuls at every decoding step (DoRA's recomputed weight norm among them); a
    # 4-bit base is never merged (that would requantise it). check_merged_scoring also scores it unmerged and
    # records how many predictions differ (harness/train.py), the check behind this default.
    merge_for_scoring: bool = True
    check_merged_scoring: bool = False


@dataclass
class MemoryConfig:
    # The background sampler (RSS, and NVML on a GPU) during training; false leaves torch's own peak counters
    # and the readings at each logged step (the way to measure the sampler's own overhead).
    sampler: bool = MISSING
    sample_interval_s: float = MISSING
    # GPU memory held by other processes at start above which the run warns (or, when strict, refuses).
    foreign_gpu_mib_limit: float = MISSING
    strict: bool = MISSING


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    results_dir: str = MISSING
    cache_dir: str = MISSING
    device: str = MISSING
    # Keep the saved adapter / checkpoint under results_dir/artifacts (it is always saved once to measure it).
    keep_artifact: bool = MISSING
    # Rerun even when a record of this config exists with status ok (otherwise the run is skipped: resume).
    force: bool = MISSING
    # The sweep this run belongs to (names the report folder); not part of the run's key.
    sweep_name: str = MISSING
    # Which report the sweep's records make (REPORT_KINDS), set by the sweep file; not part of the run's key.
    report_kind: str = MISSING
    # Where a sweep's report is written.
    report_dir: str = MISSING
    # A named set of reduced settings (conf/profile/), stated in the report; "full" = the settings as composed.
    # A named training recipe (conf/recipe/): documents, baseline or harness; "custom" = as composed.
    recipe_name: str = MISSING
    profile_name: str = MISSING
    profile_note: str = MISSING


def trackers(report_to: str) -> list[str]:
    """train.report_to as a list of tracker names ("none": no tracker)."""
    return [x.strip() for x in str(report_to).split(",") if x.strip() and x.strip() != "none"]


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


def curve_steps(steps: int, points: int) -> tuple[int, ...]:
    """The optimizer steps before the last at which the learning curve measures validation loss: `points`
    evenly spaced ones (60 steps, 2 points: 20 and 40), none that repeat or reach the end."""
    return tuple(sorted({round(steps * i / (points + 1)) for i in range(1, points + 1)} - {0, steps}))


def optimizer_steps(max_steps: int, batch_size: int, grad_accum: int, reference_batch: int | None) -> int:
    """The optimizer steps a run takes (<= 0: none set, the run goes by epochs). Plain values, not a TrainConfig,
    so the report can apply it to a record's config."""
    if reference_batch is None or max_steps <= 0:
        return max_steps
    return max_steps * reference_batch // (batch_size * grad_accum)


def resolve_device(requested: str) -> str:
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA GPU is visible")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


DEFAULT_CACHE_DIR = "~/.cache/ft-harness"


def cache_root() -> Path:
    """The harness's cache folder: FT_HARNESS_CACHE, else ~/.cache/ft-harness (conf/config.yaml's cache_dir
    reads it through the `ft_harness_cache` resolver, so the default is written here only)."""
    return Path(os.environ.get("FT_HARNESS_CACHE") or DEFAULT_CACHE_DIR).expanduser()


if not OmegaConf.has_resolver("ft_harness_cache"):
    OmegaConf.register_new_resolver("ft_harness_cache", lambda: str(cache_root()))
if not OmegaConf.has_resolver("ft_harness_model_name"):
    OmegaConf.register_new_resolver("ft_harness_model_name", lambda hub_id, path: model_name_of(hub_id, path))


def model_name_of(hub_id: str | None, path: str | None) -> str:
    """The name a model without a preset goes by in records and folders (conf/model/hub.yaml): the last part of
    its local folder or hub id, lower-cased."""
    source = str(path or hub_id or "").rstrip("/")
    return source.rsplit("/", 1)[-1].lower() or "model"


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


# The value of train.learning_rate_scale that takes the rate the method's learning-rate search chose.
TUNED = "tuned"


def tuned_learning_rate_scale(cfg: RunConfig) -> float:
    """The scale that gives the rate chosen by this config's learning-rate search, read from the records under
    cfg.results_dir (harness/lr_choice.py); a ConfigError, before anything loads, where there is no choice."""
    from harness.lr_choice import choice_for  # reads records, which import this module

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
    from harness import presets

    try:
        return presets.architecture_of_source(source, dense_only=False)[1]
    except presets.UnknownModel as e:
        raise ConfigError(str(e).replace("--model", "model.hub_id / model.path", 1)) from None
