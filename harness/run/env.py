"""The environment a run measured in: package versions, hardware, git state."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

import torch

from harness.run.checks import cpu_native_bf16

PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "bitsandbytes",
    "datasets",
    "evaluate",
    "hydra-core",
    "accelerate",
    "triton",
    "liger-kernel",
)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect(device: str) -> dict:
    """Versions, hardware and git SHA/dirty flag, for the record's `environment` section."""
    import os

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {p: _version(p) for p in PACKAGES},
        "cpu": _cpu_name(),
        # two CPUs of one model name can differ in this (AMD EPYCs with and without AVX512-BF16 both read
        # "AMD EPYC"), and with it in bf16 speed; kept so that timings across records can be told apart
        "cpu_native_bf16": cpu_native_bf16(),
        "cpu_count": os.cpu_count(),
        "device": device,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # what the sweep launcher gave the job
        "cuda_runtime": torch.version.cuda,
        "gpu_name": None,
        "gpu_driver": None,
        "git_sha": _git("rev-parse", "HEAD"),
        "git_dirty": None,
    }
    status = _git("status", "--porcelain", "--untracked-files=no")
    env["git_dirty"] = None if status is None else bool(status)
    if device.startswith("cuda"):
        env["gpu_name"] = torch.cuda.get_device_name()
        try:
            import pynvml

            pynvml.nvmlInit()
            env["gpu_driver"] = pynvml.nvmlSystemGetDriverVersion()
        except Exception:
            pass
    return env
