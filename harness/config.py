"""Typed run configuration: the schema every part reads (a run, the memory model, the reports from records).

Hydra composes YAML from conf/; `load_run_config` (harness/run/checks.py) merges it onto these dataclasses (so
unknown keys and wrong types fail at once) and `check` adds the semantic rules, each error naming the bad field.
Defaults live in one place, the YAML of conf/ (what a user composes and reads); the run-wide dataclasses here
are the schema, their fields MISSING, so a field the YAML does not set is an error, not a second default.
Methods differ only in config: `lora` is `full` plus adapter fields, `qlora` is `lora` plus a 4-bit
quantisation of the frozen base.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, OmegaConf

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
    # records how many predictions differ (harness/run/train.py), the check behind this default.
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


# The value of train.learning_rate_scale that takes the rate the method's learning-rate search chose.
TUNED = "tuned"
