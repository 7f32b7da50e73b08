"""FLOPs per token and MFU: the PaLM accounting on real architectures, the GPU table, and the records."""

from __future__ import annotations

import pytest
import yaml

from harness.predict import flops
from harness.report.budget import CONF_MODEL_DIR


def arch(name: str) -> dict:
    return yaml.safe_load((CONF_MODEL_DIR / f"{name}.yaml").read_text())["architecture"]


def test_full_ft_is_six_flops_per_matmul_parameter_plus_attention() -> None:
    a = arch("llama-2-7b")
    # Llama-2-7B: 6.74e9 parameters, of which the 32000 x 4096 input embedding does no matmul
    n = flops.matmul_params(a)
    assert n == 6_738_415_616 - 32000 * 4096 - (2 * 32 + 1) * 4096  # minus embedding and RMSNorm weights
    per_token = flops.flops_per_token(a, method="full", seq_len=2048)
    assert per_token == 6 * n + 12 * 32 * 32 * 128 * 2048


def test_frozen_base_skips_weight_gradients() -> None:
    a = arch("llama-3-8b")
    full = flops.flops_per_token(a, method="full", seq_len=1024)
    lora = flops.flops_per_token(a, method="lora", seq_len=1024, adapter_params=0)
    attention = 12 * 32 * 32 * 128 * 1024
    assert (lora - attention) / (full - attention) == pytest.approx(4 / 6)


@pytest.mark.parametrize(
    "name, peak",
    [
        ("NVIDIA H100 80GB HBM3", 989.4e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H200", 989.4e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA L4", 121e12),
        ("Tesla T4", None),
        (None, None),
    ],
)
def test_gpu_peak_by_name(name, peak) -> None:
    assert flops.gpu_peak_flops(name) == peak


def test_mfu() -> None:
    assert flops.mfu(6e9, 1000.0, 989.4e12) == pytest.approx(6e12 / 989.4e12)
    assert flops.mfu(6e9, 1000.0, None) is None
