"""Model FLOPs per trained token and MFU (model FLOPs utilisation) of a run.

Why: tokens/s alone does not say how close a run is to what the GPU can do, nor compare a 135M and an 8B
model. MFU = model FLOPs per token x non-padding tokens/s / the GPU's dense bf16 peak. Model FLOPs follow the
PaLM paper's accounting (Chowdhery et al. 2022, appendix B): 6N per token for a trained N-parameter matmul
stack (2N forward, 4N backward) plus 12 * layers * heads * head_dim * seq_len for attention; with a frozen base
(LoRA, QLoRA) the weight gradients of the base are skipped, so 4N, plus 6 per adapter parameter. Embedding
lookups are not FLOPs; the output head's matmul is. Padding and recomputation (gradient checkpointing) are
not useful work and are not counted, so they lower MFU as they should.
"""

from __future__ import annotations

from typing import Any

# Dense bf16 tensor-core peaks from the vendors' spec sheets (no sparsity), in FLOP/s. Matched against
# torch.cuda.get_device_name() by substring, most specific first.
GPU_PEAK_BF16: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("H100", 989.4e12),  # SXM / HBM3
    ("H200", 989.4e12),
    ("GH200", 989.4e12),
    ("A100", 312e12),
    ("L40S", 362.05e12),
    ("L4", 121e12),
)


def gpu_peak_flops(gpu_name: str | None) -> float | None:
    """The dense bf16 peak of a GPU by its CUDA name, or None when it is not in the table (or no GPU)."""
    if not gpu_name:
        return None
    for key, peak in GPU_PEAK_BF16:
        if key.lower() in gpu_name.lower():
            return peak
    return None


def matmul_params(architecture: dict[str, Any]) -> int:
    """Parameters that take part in a matmul per token: every decoder-layer linear weight plus the output head."""
    from harness.predict.memory_model import cached_shapes

    shapes = cached_shapes(architecture)
    head = architecture["vocab_size"] * architecture["hidden_size"]
    return sum(i * o for i, o in shapes.linear.values()) + head


def flops_per_token(architecture: dict[str, Any], *, method: str, seq_len: float, adapter_params: int = 0) -> float:
    """Training FLOPs per token. `seq_len` is the mean attended length (non-padding tokens per sequence)."""
    n = matmul_params(architecture)
    layers = architecture["num_hidden_layers"]
    heads = architecture["num_attention_heads"]
    head_dim = architecture.get("head_dim") or architecture["hidden_size"] // heads
    attention = 12 * layers * heads * head_dim * seq_len
    if method == "full":
        return 6 * n + attention
    return 4 * n + 6 * adapter_params + attention


def mfu(flops_token: float, tokens_per_s: float, peak: float | None) -> float | None:
    return flops_token * tokens_per_s / peak if peak else None
