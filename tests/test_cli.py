"""The real entry point through Hydra, in a subprocess: a multirun over all four methods, and bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import FAST, ROOT


def _harness(args: list[str], tmp_path: Path, cache_dir: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FT_HARNESS_CACHE": cache_dir, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            *args,
            f"hydra.run.dir={tmp_path}/hydra",
            f"hydra.sweep.dir={tmp_path}/hydra-sweep",
            f"report_dir={tmp_path}/reports",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_multirun_over_the_method_group_prints_the_table(tmp_path, cache_dir):
    results = tmp_path / "results"
    proc = _harness(
        ["--multirun", "method=full,lora,qlora,qlora_fp4", *FAST, f"results_dir={results}"], tmp_path, cache_dir
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in results.glob("*.json")]
    assert sorted(r["run"]["method_label"] for r in records) == ["full", "lora-r16", "qlora-fp4-r16", "qlora-nf4-r16"]
    assert all(r["status"] == "ok" for r in records)
    table = proc.stdout[proc.stdout.index("4 run(s) of this sweep") :]
    for label in ("| full ", "| lora-r16 ", "| qlora-nf4-r16 ", "| qlora-fp4-r16 "):
        assert label in table
    for column in ("peak mem MiB", "tokens/s", "train s", "eval loss", "task score", "trainable %", "adapter/ckpt MiB"):
        assert column in table


def test_unknown_method_lists_the_choices_and_writes_nothing(tmp_path, cache_dir):
    results = tmp_path / "results"
    proc = _harness(["method=lorax", *FAST, f"results_dir={results}"], tmp_path, cache_dir)
    assert proc.returncode != 0
    assert "Could not find 'method/lorax'" in proc.stderr
    for choice in ("full", "lora", "qlora", "qlora_fp4"):
        assert choice in proc.stderr
    assert not results.exists()


def test_unknown_model_preset_lists_the_choices(tmp_path, cache_dir):
    proc = _harness(["model=gpt-5", *FAST[1:], f"results_dir={tmp_path / 'results'}"], tmp_path, cache_dir)
    assert proc.returncode != 0
    assert "Could not find 'model/gpt-5'" in proc.stderr and "smollm2-135m" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_bad_rank_is_one_clear_error_and_writes_nothing(tmp_path, cache_dir):
    results = tmp_path / "results"
    proc = _harness(["method.r=0", *FAST, f"results_dir={results}"], tmp_path, cache_dir)
    assert proc.returncode == 2
    assert "configuration error: method.r=0" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not results.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the rule is about a CPU")
def test_a_sweep_with_a_recipe_the_cpu_cannot_train_starts_no_job(tmp_path, cache_dir):
    """flex attention has no backward on a CPU: the sweep's plan finds it before the first job, instead of the
    speedups ablation failing at its packed_flex job after the ones before it ran."""
    results = tmp_path / "results"
    args = ["-m", "recipe=baseline,baseline_packed_flex", *FAST, f"results_dir={results}"]
    proc = _harness(args, tmp_path, cache_dir)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "recipe=baseline_packed_flex" in out and "flex attention has no backward on a CPU" in out
    assert "no job started" in out and "Traceback" not in out
    assert not results.exists()
