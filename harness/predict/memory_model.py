"""Peak training memory predicted from a model's shapes and a run's settings.

Why: users ask "does Llama-3-8B fit my 24 GB card with QLoRA at 1024 tokens?" before they own the card, and
measuring every model on every GPU is not possible. The prediction is built from what can be counted exactly
and calibrated for what cannot:

- weights, gradients and optimizer states: counted from the real transformers class built on the meta device
  (shapes only, no memory), with the dtypes the harness trains in (full FT: fp32 master weights under bf16
  autocast; LoRA: bf16 base, fp32 adapters; QLoRA: bitsandbytes 4-bit linear layers, the rest upcast to fp32
  by peft's `prepare_model_for_kbit_training`, fp32 adapters);
- 4-bit layers: packed values plus absmax constants per 64-value block (double quantisation stores those as
  8-bit with a second fp32 level per 256 blocks), checked in tests against bitsandbytes' own layers;
- activations: the bytes autograd saves for backward, counted with saved-tensor hooks on one forward of the
  meta model at the run's batch and sequence length (per decoder layer, so gradient checkpointing, which keeps
  only each layer's input plus one layer's activations, follows from the same count);
- the rest, per method family (harness/predict/calibration.py): the CUDA context, measured in every GPU record as the
  NVML process peak minus torch's reserved peak, plus a factor on the counted tensors for the allocator's
  cache and the kernels' workspaces, fitted on GPU records of that family, with its error on configurations
  left out of the fit. What is predicted is the NVML process peak: what the driver sees the process hold.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from harness.config import ALL_LINEAR, method_label
from harness.predict.activations import (  # noqa: F401 (the activation count is part of this model's interface)
    ActivationCount,
    _frozen,
    activation_bytes,
    cached_activations,
    count_saved_activations,
    meta_model,
)

MIB = 1024**2
GIB = 1024**3

# bitsandbytes 4-bit: block size of the absmax constants and of double quantisation's second level.
QUANT_BLOCK = 64
DOUBLE_QUANT_BLOCK = 256

# Optimizer state bytes per trainable parameter, by HF Trainer `optim` name.
OPTIMIZER_STATE_BYTES: dict[str, float] = {
    "adamw_torch": 8.0,  # exp_avg + exp_avg_sq in fp32
    "adamw_torch_fused": 8.0,
    "adamw_bf16": 4.0,  # both states in bf16 (what AdamW keeps for bf16 parameters)
    # bitsandbytes blockwise 8-bit: 1 byte per state + one fp32 absmax per 256 values (paged: same bytes, in
    # unified memory that can be evicted to the host under pressure).
    "adamw_bnb_8bit": 2.0 + 2 * 4 / 256,
    "adamw_8bit": 2.0 + 2 * 4 / 256,
    "paged_adamw_8bit": 2.0 + 2 * 4 / 256,
    "paged_adamw_32bit": 8.0,
    "sgd": 0.0,
}

# Which trainable-parameter dtype the harness uses, per method (see module docstring).
WEIGHT_BYTES = {"full": 4, "lora": 2}
ADAPTER_BYTES = 4


@dataclass(frozen=True)
class Setting:
    """What decides a training run's peak, besides the model."""

    method: str  # full | lora | qlora
    batch: int = 1
    seq_len: int = 512
    gradient_checkpointing: bool = False
    optim: str = "adamw_torch"
    r: int = 16
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    quant_type: str = "nf4"
    double_quant: bool = False
    weights_dtype: str = "fp32"  # full FT: fp32 master weights, or pure bf16 (method=full_bf16)
    # DoRA (method=dora, qdora): a magnitude per output feature of each adapted layer, and its norm's activations.
    # rsLoRA, PiSSA, OLoRA and LoRA+ change the scaling, the initialisation or the learning rate, not what is held.
    use_dora: bool = False

    @property
    def label(self) -> str:
        variant = "dora" if self.use_dora else ""
        dtype = self.weights_dtype
        return method_label(self.method, self.r, self.quant_type, self.double_quant, dtype, variant=variant)


@dataclass
class Shapes:
    """A model's parameter shapes, counted once from its meta-device build."""

    total_params: int
    linear: dict[str, tuple[int, int]]  # decoder-layer linear layers: full name -> (in_features, out_features)
    num_layers: int


def shapes(architecture: dict[str, Any]) -> Shapes:
    model = meta_model(architecture)
    linear: dict[str, tuple[int, int]] = {}
    for name, module in model.named_modules():
        # bitsandbytes quantises every nn.Linear except the output head (transformers keeps lm_head in bf16).
        if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head"):
            linear[name] = (module.in_features, module.out_features)
    total = sum(p.numel() for p in model.parameters())
    cfg = model.config
    return Shapes(
        total_params=total,
        linear=linear,
        num_layers=cfg.num_hidden_layers,
    )


def quantized_linear_bytes(numel: int, double_quant: bool) -> float:
    """Bytes bitsandbytes stores for one 4-bit weight of `numel` values (nf4 and fp4 alike)."""
    blocks = math.ceil(numel / QUANT_BLOCK)
    packed = math.ceil(numel / 2)
    if not double_quant:
        return packed + 4 * blocks  # one fp32 absmax per block
    blocks2 = math.ceil(blocks / DOUBLE_QUANT_BLOCK)
    # 8-bit absmax per block, fp32 absmax per 256 blocks, the 256-entry fp32 code, the fp32 offset
    return packed + blocks + 4 * blocks2 + 4 * 256 + 4


def _adapted(s: Shapes, target_modules: tuple[str, ...]) -> list[tuple[int, int]]:
    """(in, out) of each adapted layer; "all-linear" adapts every linear layer but the head."""
    every = ALL_LINEAR in target_modules
    return [shape for name, shape in s.linear.items() if every or name.rsplit(".", 1)[-1] in target_modules]


def lora_params(s: Shapes, r: int, target_modules: tuple[str, ...]) -> int:
    """LoRA's parameters: r x (in + out) per adapted layer."""
    return sum(r * (i + o) for i, o in _adapted(s, target_modules))


def dora_magnitude_params(s: Shapes, target_modules: tuple[str, ...]) -> int:
    """DoRA's magnitude vectors: one value per output feature of each adapted layer (peft's lora_magnitude_vector),
    trained in fp32 like the adapters."""
    return sum(o for _, o in _adapted(s, target_modules))


def static_bytes(s: Shapes, setting: Setting) -> dict[str, float]:
    """Weights, gradients and optimizer states of `setting`, in bytes."""
    state = OPTIMIZER_STATE_BYTES.get(setting.optim)
    if state is None:
        raise ValueError(f"optim={setting.optim!r}: known optimizers are {', '.join(OPTIMIZER_STATE_BYTES)}")
    linear_numel = sum(i * o for i, o in s.linear.values())
    if setting.method == "full":
        trainable = s.total_params
        width = 2 if setting.weights_dtype == "bf16" else WEIGHT_BYTES["full"]
        weights = s.total_params * width
        grads = trainable * width
        if width == 2 and setting.optim in ("adamw_torch", "adamw_torch_fused"):
            state = 4.0  # torch's AdamW keeps exp_avg and exp_avg_sq in the parameters' dtype
        return {
            "weights": weights,
            "gradients": grads,
            "optimizer_states": trainable * state,
            "trainable_params": trainable,
        }
    if setting.method not in ("lora", "qlora"):
        raise ValueError(f"method={setting.method!r}: one of full, lora, qlora")
    trainable = lora_params(s, setting.r, setting.target_modules)
    if trainable == 0:
        raise ValueError(f"target_modules={list(setting.target_modules)} match no linear layer of this model")
    if setting.use_dora:
        trainable += dora_magnitude_params(s, setting.target_modules)
    if setting.method == "lora":
        weights = s.total_params * WEIGHT_BYTES["lora"]
    else:
        quantised = sum(quantized_linear_bytes(i * o, setting.double_quant) for i, o in s.linear.values())
        weights = quantised + (s.total_params - linear_numel) * 4  # peft upcasts the unquantised rest to fp32
    return {
        "weights": weights,
        "adapter_weights": trainable * ADAPTER_BYTES,
        "gradients": trainable * 4,
        "optimizer_states": trainable * state,
        "trainable_params": trainable,
    }


MIN_CONFIGS = 3


@dataclass(frozen=True)
class Calibration:
    """NVML process peak = tensors_scale x (counted tensors) + context_bytes, for one method family.

    Why this form and not a free scale and constant: on the H200 records of 2026-11-26 the peak beyond the
    counted tensors was proportional to them (LoRA: 8.5-9.8 %) on top of a CUDA context that every record
    measures directly (NVML minus torch reserved: 758 MiB in each). Two of those three LoRA configurations have
    nearly the same activations, so a free scale and constant fitted on them extrapolated the third 53 % off;
    one factor over the measured context, 0.9 %."""

    tensors_scale: float = 1.0
    context_bytes: float = 0.0
    family: str = "all"
    n_records: int = 0
    n_configs: int = 0
    target: str = "nvml_process"  # which measured peak it was fitted on
    heldout_error_pct: float | None = None  # mean |error| over configurations left out of the fit, one at a time
    heldout_max_error_pct: float | None = None

    @property
    def calibrated(self) -> bool:
        return self.n_configs >= MIN_CONFIGS and self.heldout_error_pct is not None

    def describe(self) -> str:
        if not self.n_records:
            context = f" + CUDA context {self.context_bytes / MIB:.0f} MiB" if self.context_bytes else ""
            return f"{self.family}: uncalibrated (no GPU record of this family): counted tensors x 1.00{context}"
        fit = (
            f"counted tensors x {self.tensors_scale:.3f} + CUDA context {self.context_bytes / MIB:.0f} MiB, fitted on "
            f"{self.n_configs} configuration(s) ({self.n_records} GPU records, {self.target})"
        )
        if self.calibrated:
            return (
                f"{self.family}: calibrated, {fit}; error on a configuration left out of the fit: mean "
                f"{self.heldout_error_pct:.1f} %, worst {self.heldout_max_error_pct:.1f} %"
            )
        return f"{self.family}: not calibrated ({MIN_CONFIGS} configurations needed), {fit}; no held-out error"


@dataclass(frozen=True)
class Calibrations:
    """One Calibration per method family (full, lora, qlora): their extra memory differs (QLoRA's dequantised
    weights, full FT's optimizer step), so one family's records do not calibrate another."""

    by_family: dict[str, Calibration] = dataclasses.field(default_factory=dict)
    context_bytes: float = 0.0  # the CUDA context measured in any GPU record, for families without records

    def for_method(self, method: str) -> Calibration:
        return self.by_family.get(method) or Calibration(family=method, context_bytes=self.context_bytes)

    def describe(self) -> str:
        return "; ".join(self.for_method(f).describe() for f in ("full", "lora", "qlora"))


@dataclass
class Prediction:
    setting: Setting
    components: dict[str, float]  # bytes
    peak_bytes: float
    calibration: Calibration

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB

    def arithmetic(self) -> str:
        parts = [f"{k.replace('_', ' ')} {v / GIB:.2f}" for k, v in self.components.items() if v]
        return " + ".join(parts) + f" = {self.peak_gib:.2f} GiB"


_SHAPES_CACHE: dict[tuple, Shapes] = {}


def cached_shapes(architecture: dict[str, Any]) -> Shapes:
    key = _frozen(architecture)
    if key not in _SHAPES_CACHE:
        _SHAPES_CACHE[key] = shapes(architecture)
    return _SHAPES_CACHE[key]


def predict(
    architecture: dict[str, Any], setting: Setting, calibration: Calibration | Calibrations | None = None
) -> Prediction:
    if isinstance(calibration, Calibrations):
        calibration = calibration.for_method(setting.method)
    calibration = calibration or Calibration(family=setting.method)
    s = cached_shapes(architecture)
    static = static_bytes(s, setting)
    static.pop("trainable_params")
    count = cached_activations(architecture, setting)
    act = activation_bytes(count, s.num_layers, setting.gradient_checkpointing)
    components = dict(static)
    components["activations"] = act
    components["logits_gradient"] = count.largest_transient
    if count.dropped_in_layer > count.largest_transient:
        # DoRA's weight norm of one layer (the adapter through an identity matrix) outgrows the logits' gradient;
        # the two never coexist (forward against the start of backward), so the larger one stands
        components["dora_weight_norm"] = count.dropped_in_layer - count.largest_transient
    tensors = sum(components.values())
    if calibration.tensors_scale != 1.0:
        components["allocator_and_workspaces"] = (calibration.tensors_scale - 1.0) * tensors
    if calibration.context_bytes:
        components["cuda_context"] = calibration.context_bytes
    return Prediction(setting, components, sum(components.values()), calibration)


def counted_tensors(prediction: Prediction) -> float:
    """The bytes the model counts (weights, gradients, optimizer states, activations), before calibration."""
    extra = ("allocator_and_workspaces", "cuda_context")
    return sum(v for k, v in prediction.components.items() if k not in extra)


def fit_calibration(rows: list[tuple[float, float, float, str]], family: str = "all") -> Calibration:
    """The factor on counted tensors over the CUDA context, from (counted tensors, measured NVML peak, measured
    context, configuration key) rows: least squares through the origin of (peak - context) on tensors. The
    held-out error leaves out one configuration at a time (all its records), fits on the rest and predicts it."""
    import numpy as np

    if not rows:
        return Calibration(family=family)

    def solve(sub: list[tuple[float, float, float, str]]) -> float:
        x = np.array([r[0] for r in sub])
        y = np.array([r[1] - r[2] for r in sub])
        return float(x @ y / (x @ x))

    context = float(np.mean([r[2] for r in rows]))
    configs = sorted({r[3] for r in rows})
    errors = []
    if len(configs) >= MIN_CONFIGS:
        for left_out in configs:
            scale = solve([r for r in rows if r[3] != left_out])
            errors += [abs(scale * r[0] + r[2] - r[1]) / r[1] * 100 for r in rows if r[3] == left_out]
    return Calibration(
        tensors_scale=solve(rows),
        context_bytes=context,
        family=family,
        n_records=len(rows),
        n_configs=len(configs),
        heldout_error_pct=float(np.mean(errors)) if errors else None,
        heldout_max_error_pct=float(np.max(errors)) if errors else None,
    )


def accelerate_estimate_bytes(architecture: dict[str, Any]) -> float:
    """What `accelerate estimate-memory` reports for training in fp32 (its largest term, batch 1, no activations)."""
    from accelerate.commands.estimate import estimate_training_usage
    from accelerate.utils import calculate_maximum_sizes

    with contextlib.redirect_stdout(None):
        total, _ = calculate_maximum_sizes(meta_model(architecture, dtype=torch.float32))
    return float(max(estimate_training_usage(total, "float32").values()))
