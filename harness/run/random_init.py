"""Random weights drawn one layer at a time, handed to transformers' loader as if read from a checkpoint.

Why: the scale sweep and the documents' "QLoRA fine-tunes a 33B / 70B model on one 24 GB GPU" need models
nobody downloads. Drawing the whole bf16 model first and quantising it after needs the card to hold the bf16
weights (140 GB for 70B): it cannot reach the models the claim is about, and on an H200 (2026-11-26) the
path through a file took 257 s of a 276 s 7B QLoRA job. Here the model is drawn in units (one decoder layer,
the embeddings, the head, ...), each on the device it trains on, and transformers' own loader (the one that
reads safetensors shards) takes each tensor, casts it, quantises it when the method is QLoRA, and drops it
before the next unit is drawn: at most one unit's full-precision weights are ever held beside the model. The
loader does with them what it does with a real checkpoint's shards (its caching-allocator warm-up, a tensor at a
time on the card, quantised there), so a random-weight run's memory is what a user's load of real weights gives.

Each unit is seeded from the run's seed and the unit's name, and initialised by the model class's own
`_init_weights` (the distributions transformers gives a fresh model), so the weights do not depend on the
order the loader asks for them, and the QLoRA, LoRA and full-FT runs of one seed start from the same model.
"""

from __future__ import annotations

import copy
import threading
import zlib
from collections.abc import Iterator, Mapping

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel


def meta_skeleton(config, *, dtype: torch.dtype, attn_implementation: str) -> PreTrainedModel:
    """The model's modules with no storage (meta tensors): names, shapes, dtypes and ties, for free at any size."""
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn_implementation)


def _units(skeleton: PreTrainedModel) -> list[tuple[str, torch.nn.Module, PreTrainedModel]]:
    """(name, module, the PreTrainedModel whose `_init_weights` applies) for each unit drawn at once.

    A unit is an element of a ModuleList (a decoder layer: its init may scale a child by depth, as GPT-2's
    c_proj) or, outside ModuleLists, a module holding tensors of its own (embeddings, final norm, head).
    """
    found: list[tuple[str, torch.nn.Module, PreTrainedModel]] = []

    def visit(prefix: str, module: torch.nn.Module, owner: PreTrainedModel, in_list: bool) -> None:
        if isinstance(module, PreTrainedModel):
            owner = module
        if in_list:
            found.append((prefix, module, owner))
            return
        has_own = any(True for _ in module.parameters(recurse=False)) or any(
            b is not None for b in module.buffers(recurse=False)
        )
        if has_own:
            found.append((prefix, module, owner))
        for name, child in module.named_children():
            visit(f"{prefix}.{name}" if prefix else name, child, owner, isinstance(module, torch.nn.ModuleList))

    visit("", skeleton, skeleton, False)
    return found


def unit_seed(seed: int, unit_name: str) -> int:
    """The seed of one unit: the run's seed and the unit's name, so no unit's weights depend on another's."""
    return (seed * 1_000_003 + zlib.crc32(unit_name.encode())) % (2**63)


def _children_first(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    for child in module.children():
        yield from _children_first(child)
    yield module


def draw_unit(
    module: torch.nn.Module, owner: PreTrainedModel, *, seed: int, name: str, device: str | torch.device
) -> dict[str, torch.Tensor]:
    """A unit's tensors, drawn on `device` by its model's own `_init_weights`, children first (as transformers
    initialises a fresh model), keyed by their names inside the unit."""
    unit = copy.deepcopy(module).to_empty(device=device)
    for tensor in [*unit.parameters(), *unit.buffers()]:
        if hasattr(tensor, "_is_hf_initialized"):  # transformers' init functions skip flagged tensors
            del tensor._is_hf_initialized
    torch.manual_seed(unit_seed(seed, name))
    with torch.no_grad():
        for sub in _children_first(unit):
            owner._init_weights(sub)
    return {key: value.detach() for key, value in unit.state_dict().items()}


class RandomCheckpoint(Mapping):
    """A checkpoint's state dict whose tensors are drawn when the loader reads them.

    Each value behaves like a safetensors slice (`value[...]` gives the tensor), which is how transformers'
    loader reads shards lazily. A unit is drawn on the first read of one of its tensors and kept until all of
    them were read; under on-the-fly quantisation the loader reads sequentially in name order, so one unit is
    held at a time. Tied weights are listed once (the loader ties the other name).
    """

    def __init__(self, skeleton: PreTrainedModel, *, seed: int, device: str | torch.device) -> None:
        self.seed = seed
        self.device = device
        self._lock = threading.Lock()
        self._held: dict[str, dict[str, torch.Tensor]] = {}
        persistent = set(skeleton.state_dict())
        kept = {name for name, _ in skeleton.named_parameters()} | {
            name for name, _ in skeleton.named_buffers() if name in persistent
        }
        self._units: dict[str, tuple[torch.nn.Module, PreTrainedModel, set[str]]] = {}
        self._key_unit: dict[str, tuple[str, str]] = {}
        for unit_name, module, owner in _units(skeleton):
            locals_kept = set()
            for local in module.state_dict():
                key = f"{unit_name}.{local}" if unit_name else local
                if key in kept and key not in self._key_unit:
                    self._key_unit[key] = (unit_name, local)
                    locals_kept.add(local)
            self._units[unit_name] = (module, owner, locals_kept)
        self.units_drawn = 0

    def __getitem__(self, key: str) -> _DrawnTensor:
        if key not in self._key_unit:
            raise KeyError(key)
        return _DrawnTensor(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._key_unit)

    def __len__(self) -> int:
        return len(self._key_unit)

    def take(self, key: str) -> torch.Tensor:
        """The tensor of `key`, drawing its unit if it is not held; a unit is dropped once all its keys were taken."""
        unit_name, local = self._key_unit[key]
        with self._lock:  # torch.manual_seed is process-wide: one unit is drawn at a time
            held = self._held.get(unit_name)
            if held is None or local not in held:
                module, owner, wanted = self._units[unit_name]
                drawn = draw_unit(module, owner, seed=self.seed, name=unit_name, device=self.device)
                self.units_drawn += 1
                held = self._held[unit_name] = {k: v for k, v in drawn.items() if k in wanted}
            tensor = held.pop(local)
            if not held:
                del self._held[unit_name]
            return tensor


class _DrawnTensor:
    """One entry of a RandomCheckpoint: drawn when indexed, like a safetensors slice."""

    def __init__(self, checkpoint: RandomCheckpoint, key: str) -> None:
        self.checkpoint = checkpoint
        self.key = key

    def __getitem__(self, index) -> torch.Tensor:
        return self.checkpoint.take(self.key)[index]
