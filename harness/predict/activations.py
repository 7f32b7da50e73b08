"""Activations: the bytes autograd saves for backward, counted on the real model class with fake tensors, and
kept per architecture and adapter shape (in memory and on disk), so a prediction at any batch and length is a
few arithmetic operations.

Why apart from memory_model.py: counting runs transformers' and peft's model code under FakeTensorMode; the rest
of the memory model is arithmetic on shapes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.config import cache_root
from harness.results import write_json_atomic

# A memory_model.Setting (batch, length, method, adapter shape): typed loosely here, since memory_model imports
# this module and the imports run one way.
Setting = Any

log = logging.getLogger(__name__)

# Part of the disk cache's key: raised whenever the count itself changes (2: QLoRA counted on its own fp32 layout;
# 3: only what is still saved when the forward ends, and DoRA), so counts kept by an earlier version are not read
# back.
COUNT_VERSION = 3

_ACTIVATION_CACHE: dict[tuple, tuple[ActivationCount, ActivationCount, ActivationCount]] = {}


def _peft_targets(setting: Setting) -> list[str] | str:
    return "all-linear" if "all-linear" in setting.target_modules else list(setting.target_modules)


def _frozen(architecture: dict[str, Any]) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in architecture.items()))


def _config(architecture: dict[str, Any]):
    from transformers import AutoConfig

    return AutoConfig.for_model(**architecture)


def meta_model(architecture: dict[str, Any], dtype: torch.dtype = torch.bfloat16) -> torch.nn.Module:
    """The transformers model of `architecture` with no storage: every tensor on the meta device."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(_config(architecture), dtype=dtype)


class _FourBitMatmul(torch.autograd.Function):
    """What bitsandbytes' MatMul4Bit keeps for backward with a frozen 4-bit weight: the weight only, held by the
    function's context and not through save_for_backward (the input is not saved), so saved-tensor hooks see
    nothing of it (bitsandbytes 0.50, autograd/_functions.py)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.weight = weight
        return torch.nn.functional.linear(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad @ ctx.weight.to(grad.dtype), None, None


class FourBitLinear(torch.nn.Linear):
    """A stand-in for bitsandbytes' Linear4bit in the fake-tensor count: its input cast to the compute dtype,
    the product in it, the output cast back to the input's dtype (what Linear4bit.forward does), and nothing of
    the input saved. Its weight is the dequantised one (bf16); being a Linear, peft wraps it as it wraps any."""

    compute_dtype = torch.bfloat16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _FourBitMatmul.apply(x.to(self.compute_dtype), self.weight, self.bias).to(x.dtype)


def as_qlora_base(model: torch.nn.Module) -> torch.nn.Module:
    """`model` (bf16, on the meta device) laid out as a QLoRA run trains it: peft's own
    prepare_model_for_kbit_training casts every parameter that is not 4-bit (embeddings, norms, the head) to
    fp32, and every linear layer but the output head (what transformers quantises) is a 4-bit stand-in.

    Why it matters: with fp32 norms and embeddings, the residual stream and every 4-bit layer's output are fp32
    (Linear4bit casts back to its input's dtype), so a QLoRA layer saves fp32 tensors where LoRA's bf16 base
    saves bf16 ones, and autocast saves a bf16 copy of the fp32 head."""
    from peft import prepare_model_for_kbit_training

    prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)  # no Params4bit yet: all to fp32
    for name, module in model.named_modules():
        if type(module) is torch.nn.Linear and not name.endswith("lm_head"):
            module.__class__ = FourBitLinear
            module.weight.data = module.weight.data.to(FourBitLinear.compute_dtype)  # dequantised, frozen
    return model


@dataclass
class ActivationCount:
    per_layer: float  # bytes saved for backward by one decoder layer
    outside_layers: float  # embeddings, final norm, logits and loss
    layer_input: float  # one layer's input (what gradient checkpointing keeps per layer)
    largest_transient: float  # the logits' gradient, allocated at the start of backward
    # DoRA: the most one layer's forward saved for a graph it dropped before returning (the weight norm's product
    # of the adapter with an identity matrix, computed and detached per layer); 0 for the other methods
    dropped_in_layer: float = 0.0


class _Saved:
    """What a saved-tensor hook hands autograd in place of a tensor: autograd holds it as long as the graph that
    saved it lives, so a weak reference to it says, after the forward, whether the tensor is still saved."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


# Long on purpose: the fake-tensor set-up, the hooks and the count share locals that a split would pass around.
def count_saved_activations(
    architecture: dict[str, Any], setting: Setting, max_layers: int | None = 2
) -> ActivationCount:
    """Bytes autograd saves for backward on one forward at (batch, seq_len), counted on fake tensors.

    The model is built and run under torch's FakeTensorMode: real shapes, dtypes and autograd graph, no storage.
    LoRA is counted on a bf16 base, QLoRA on its own layout (as_qlora_base: fp32 non-linear parameters, 4-bit
    layers that save nothing of their input; bitsandbytes dequantises one weight at a time, a transient the
    calibration absorbs). Checked against a real forward of each (tests/test_memory_model.py). Not counted:
    the (batch, 1, seq, seq) causal mask that tracing makes transformers build; on a GPU, SDPA runs causal
    without one.

    Only what is still saved when the forward returns counts: DoRA (peft) computes each layer's weight norm through
    the adapter applied to an identity matrix and detaches it, so that graph and what it saved (an in x in matrix
    per layer) is freed within the layer; it is kept apart as `dropped_in_layer`, a transient.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    # the harness's dtypes: full FT trains fp32 weights, LoRA/QLoRA a bf16 base with fp32 adapters (peft's
    # default), both under bf16 autocast, whose bf16 copies of weights and inputs are what backward keeps
    # every decoder layer saves the same, so two layers give the per-layer count of any depth (and keep a 70B
    # count to a fraction of a second)
    depth = int(architecture["num_hidden_layers"])
    two_layers = {**architecture, "num_hidden_layers": min(max_layers, depth) if max_layers else depth}
    fp32 = setting.method == "full" and setting.weights_dtype != "bf16"
    model = meta_model(two_layers, dtype=torch.float32 if fp32 else torch.bfloat16)
    if setting.method == "qlora":
        with torch.device("meta"):
            model = as_qlora_base(model)
    if setting.method != "full":
        from peft import LoraConfig, get_peft_model

        with torch.device("meta"):
            model = get_peft_model(
                model,
                LoraConfig(
                    r=setting.r,
                    lora_alpha=2 * setting.r,
                    target_modules=_peft_targets(setting),
                    use_dora=getattr(setting, "use_dora", False),
                ),
            )
    with FakeTensorMode(allow_non_fake_inputs=True):
        # meta parameters -> fake CPU ones (same shapes and dtypes, no storage; on fake tensors transformers skips
        # its data-dependent checks, and CPU autocast applies as CUDA autocast does on a GPU)
        for module in model.modules():
            for name, p in list(module._parameters.items()):
                if p is not None:
                    fake = torch.empty(p.shape, dtype=p.dtype)
                    module._parameters[name] = torch.nn.Parameter(fake, requires_grad=p.requires_grad)
        for module in model.modules():
            for name, b in list(module._buffers.items()):
                if b is not None:
                    module._buffers[name] = torch.empty(b.shape, dtype=b.dtype)
        params = {id(p) for p in model.parameters()}
        layers = _decoder_layers(model)
        current: list[int | None] = [None]
        layer_input_bytes: list[int] = []  # one element of a layer's input: 2 (bf16 stream) or 4 (QLoRA's fp32)
        # (layer, id of the saved storage's tensor, bytes, weak reference to what autograd holds). Nothing here
        # holds a saved tensor: holding one would hold its graph, and with it what a dropped graph saved. An id is
        # unique among the tensors still saved at the end (each holder holds its tensor, and a view its base).
        saved: list[tuple[int | None, int, int, weakref.ref]] = []
        mask_shape = (setting.batch, 1, setting.seq_len, setting.seq_len)

        def pack(t: torch.Tensor) -> torch.Tensor | _Saved:
            root = t._base if t._base is not None else t
            if id(root) in params or id(t) in params or tuple(root.shape) == mask_shape:
                return t
            held = _Saved(t)
            saved.append((current[0], id(root), root.numel() * root.element_size(), weakref.ref(held)))
            return held

        def enter(index: int):
            def hook(module, args, kwargs):
                current[0] = index
                hidden = args[0] if args else kwargs["hidden_states"]
                layer_input_bytes.append(hidden.element_size())

            return hook

        def leave(module, args, output):
            current[0] = None

        handles = []
        for i, layer in enumerate(layers):
            handles.append(layer.register_forward_pre_hook(enter(i), with_kwargs=True))
            handles.append(layer.register_forward_hook(leave))
        ids = torch.zeros(setting.batch, setting.seq_len, dtype=torch.long)
        try:
            with (
                torch.autograd.graph.saved_tensors_hooks(pack, lambda h: h.tensor if isinstance(h, _Saved) else h),
                torch.autocast("cpu", dtype=torch.bfloat16),
            ):
                output = model(input_ids=ids, labels=ids, use_cache=False)  # its graph holds what backward needs
            alive: dict[int | None, dict[int, int]] = {}
            dropped: dict[int | None, list[int]] = {}  # freed before the end: ids may repeat, so summed as listed
            for layer, root, size, held in saved:
                if held() is not None:
                    alive.setdefault(layer, {})[root] = size
                else:
                    dropped.setdefault(layer, []).append(size)
            del output
        finally:
            for h in handles:
                h.remove()
    per_layer = [sum(alive.get(i, {}).values()) for i in range(len(layers))]
    dropped_per_layer = [sum(dropped.get(i, [])) for i in range(len(layers))]
    hidden = architecture["hidden_size"]
    logits_fp32 = setting.batch * setting.seq_len * architecture["vocab_size"] * 4
    return ActivationCount(
        per_layer=float(max(per_layer)) if per_layer else 0.0,
        outside_layers=float(sum(alive.get(None, {}).values())),
        layer_input=float(setting.batch * setting.seq_len * hidden * max(layer_input_bytes, default=2)),
        largest_transient=float(logits_fp32),
        dropped_in_layer=float(max(dropped_per_layer, default=0)),
    )


def _decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0 and hasattr(module[0], "self_attn"):
            return list(module)
    raise ValueError("no decoder layers (a ModuleList of blocks with self_attn) found in this model")


def activation_bytes(count: ActivationCount, num_layers: int, gradient_checkpointing: bool) -> float:
    if gradient_checkpointing:
        # each layer keeps its input; one layer's activations are rebuilt at a time in backward
        return num_layers * count.layer_input + count.per_layer + count.outside_layers
    return num_layers * count.per_layer + count.outside_layers


# Calibrated only with this many distinct configurations of a method family (a fit on fewer has no error worth
# stating on configurations it was not fitted on).


def _counts_file(architecture: dict[str, Any], base: Setting) -> Path:
    """Where the three counts of (architecture, adapter shape) are kept between processes.

    The key holds the library versions, since the count runs their model code."""
    import peft
    import transformers

    key = json.dumps(
        [
            _frozen(architecture),
            dataclasses.asdict(base),
            COUNT_VERSION,
            torch.__version__,
            transformers.__version__,
            peft.__version__,
        ],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_root() / "activation_counts" / f"{architecture.get('model_type', 'model')}-{base.label}-{digest}.json"


def _stored_counts(architecture: dict[str, Any], base: Setting) -> tuple[ActivationCount, ...]:
    """The counts at (1, 128), (1, 256) and (2, 128), from the disk cache or counted and stored there.

    Why on disk: counting takes seconds per model (about 20 s of every sweep's report went to it, measured on
    an H200 on 2026-11-26), and the answer only changes with the model's shapes and the library versions."""
    path = _counts_file(architecture, base)
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        return tuple(ActivationCount(**c) for c in stored["counts"])
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as e:  # damaged or foreign: counted again, replaced
        log.warning("activation count cache %s unreadable (%s): counting again", path, e)
    counts = (
        count_saved_activations(architecture, base),
        count_saved_activations(architecture, dataclasses.replace(base, seq_len=256)),
        count_saved_activations(architecture, dataclasses.replace(base, batch=2)),
    )
    try:
        write_json_atomic(
            path,
            {
                "architecture": architecture,
                "setting": dataclasses.asdict(base),
                "counts": [dataclasses.asdict(c) for c in counts],
            },
        )
    except OSError as e:  # a read-only cache costs time, not the answer
        log.warning("activation counts not cached (%s)", e)
    return counts


def cached_activations(architecture: dict[str, Any], setting: Setting) -> ActivationCount:
    """The count at (batch, seq_len), from three counts per model and adapter shape.

    Saved bytes are c + a * batch * seq_len + b * seq_len: a constant (autocast's bf16 copies of weights), a
    per-token part (SDPA keeps no seq x seq matrix) and a per-position part shared by the batch (the rotary
    tables). Counts at (1, 128), (1, 256) and (2, 128) give all three, so any (batch, seq_len) is exact and the
    budget command stays fast.
    """
    # activations do not depend on the optimizer, checkpointing or the 4-bit format (nf4 or fp4, double
    # quantisation or not), but QLoRA's fp32 layout saves more than LoRA's bf16 base
    base = dataclasses.replace(
        setting,
        weights_dtype=setting.weights_dtype if setting.method == "full" else "fp32",
        optim="adamw_torch",
        gradient_checkpointing=False,
        quant_type="nf4",
        double_quant=False,
        batch=1,
        seq_len=128,
    )
    key = (_frozen(architecture), base)
    if key not in _ACTIVATION_CACHE:
        _ACTIVATION_CACHE[key] = _stored_counts(architecture, base)
    one_128, one_256, two_128 = _ACTIVATION_CACHE[key]

    def at(field: str) -> float:
        a_, b_, c_ = getattr(one_128, field), getattr(one_256, field), getattr(two_128, field)
        per_position = (b_ - c_) / 128
        per_token = (c_ - a_) / 128
        constant = a_ - 128 * per_token - 128 * per_position
        return constant + per_token * setting.batch * setting.seq_len + per_position * setting.seq_len

    return ActivationCount(**{f.name: at(f.name) for f in dataclasses.fields(ActivationCount)})
