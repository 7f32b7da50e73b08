"""How many tensor operations one training micro-step dispatches: each is at least one GPU kernel launch.

Why: on the H100 a micro-step of SmolLM2-135M took the same time whatever its size (docs/speed.md, "Measured on
an H100"), so its cost is launching kernels from the CPU, not computing. The number of dispatched ops says
how much launching a method needs per micro-step; it does not depend on the batch, which is why larger
micro-batches (or CUDA graphs, which replay all of them at once) are what pays there.

    python tools/dispatch.py method=lora model.init=random     # any run overrides; prints one line per batch
"""

from __future__ import annotations

import collections
import sys

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.module_tracker import ModuleTracker

# Ops that only change a tensor's metadata (no kernel runs).
METADATA_OPS = frozenset(
    "view _unsafe_view t transpose expand reshape _reshape_alias slice select unsqueeze squeeze permute "
    "detach alias as_strided split unbind lift_fresh empty empty_like empty_strided".split()
)


class _CountOps(TorchDispatchMode):
    """Counts ops by name and, for kernel-launching ops of the forward, by the class of the innermost module
    running them (torch's ModuleTracker): which layers' launches a fused kernel would replace. The backward is
    one count: the tracker's backward attribution is approximate."""

    def __init__(self, tracker: ModuleTracker, classes: dict[str, str]) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()
        self.by_module: collections.Counter[str] = collections.Counter()
        self.tracker, self.classes = tracker, classes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        self.counts[name] += 1
        if name not in METADATA_OPS:
            if self.tracker.is_bw:  # ModuleTracker's backward attribution is approximate: counted as a whole
                self.by_module["(backward, all modules)"] += 1
            else:
                innermost = max(self.tracker.parents, key=lambda fqn: fqn.count("."))
                self.by_module[self.classes.get(innermost, "(outside any module)")] += 1
        return func(*args, **(kwargs or {}))


def dispatched_ops(torch_model: torch.nn.Module, input_ids: torch.Tensor, autocast_dtype: torch.dtype | None) -> dict:
    """Ops dispatched by one forward + backward on `input_ids` (labels = inputs), after one warm-up step."""
    device_type = input_ids.device.type

    def step() -> None:
        with torch.autocast(device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            loss = torch_model(input_ids=input_ids, labels=input_ids).loss
        loss.backward()

    step()  # lazy initialisation happens once, not per step
    torch_model.zero_grad(set_to_none=True)
    root = type(torch_model).__name__
    classes = {f"{root}.{name}" if name else root: type(m).__name__ for name, m in torch_model.named_modules()}
    tracker = ModuleTracker()
    counter = _CountOps(tracker, classes)
    with tracker, counter:
        step()
    torch_model.zero_grad(set_to_none=True)
    kernels = sum(n for op, n in counter.counts.items() if op not in METADATA_OPS)
    return {
        "ops": kernels,
        "ops_with_metadata": sum(counter.counts.values()),
        "top": counter.counts.most_common(5),
        # kernel-launching ops of the forward by the class of the innermost module that ran them; backward whole
        "by_module": dict(counter.by_module.most_common()),
    }


def main(argv: list[str]) -> int:
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from harness.run import adapters, models
    from harness.run.adapters import adapter_input_casting
    from harness.run.checks import check_for_device, load_run_config
    from harness.run.models import weights_dtype

    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parent.parent / "conf"), version_base="1.3"):
        cfg = load_run_config(compose(config_name="config", overrides=argv))
    device, precision = check_for_device(cfg)
    torch_model = models.load_base_model(
        model=cfg.model, method=cfg.method, cache_dir=cfg.cache_dir, dtype=weights_dtype(cfg, precision),
        device=device, attn_implementation=cfg.train.attn_implementation,
    )  # fmt: skip
    torch_model = adapters.apply_method(torch_model, method=cfg.method, gradient_checkpointing=False).train()
    vocab = torch_model.config.vocab_size
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    for batch in (4, 16):
        ids = torch.randint(0, vocab, (batch, 128), device=device)
        with adapter_input_casting(torch_model, cfg):  # as the run trains: train.adapter_input_cast
            n = dispatched_ops(torch_model, ids, autocast)
        print(
            f"{cfg.model.name} {cfg.method.label} {precision} batch {batch} x 128: {n['ops']} ops per forward + "
            f"backward ({n['ops_with_metadata']} with metadata-only ones); most: {n['top']}; by module class: "
            f"{n['by_module']}"
        )
    return 0


if __name__ == "__main__":
    from harness.config import ConfigError

    try:
        sys.exit(main(sys.argv[1:]))
    except ConfigError as e:
        sys.exit(f"configuration error: {e}")
