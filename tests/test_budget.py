"""`python -m harness budget`: units, errors, the per-method answer and what it suggests when nothing fits."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import yaml

from harness.predict.calibration import calibrate, gpu_records, setting_of_record
from harness.predict.memory_model import GIB, MIB, Setting
from harness.report import budget, budget_costs

from .conftest import ROOT


@pytest.mark.parametrize(
    "text, expected",
    [("24GB", 24 * GIB), ("24 GiB", 24 * GIB), ("80g", 80 * GIB), ("40960MiB", 40 * GIB), ("0.5TB", 512 * GIB)],
)
def test_parse_memory(text: str, expected: float) -> None:
    assert budget.parse_memory(text) == expected


@pytest.mark.parametrize("text", ["24", "24XB", "GB", "0GB", "-5GB", "24 G B"])
def test_parse_memory_rejects_bad_input(text: str) -> None:
    with pytest.raises(budget.BudgetError, match="--gpu-memory"):
        budget.parse_memory(text)


def run_budget(*args: str) -> subprocess.CompletedProcess:
    """The command as a user runs it (one test); the others call `budget.main` in-process, which is faster."""
    return subprocess.run(
        [sys.executable, "-m", "harness", "budget", *args], capture_output=True, text=True, timeout=300
    )


def call_budget(capsys, *args: str) -> subprocess.CompletedProcess:
    code = budget.main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def test_budget_cli_answers_for_llama_3_8b_on_24gb(tmp_path) -> None:
    out = run_budget(
        "--gpu-memory", "24GB", "--model", "llama-3-8b", "--seq-len", "1024", "--batch", "4", "--results", str(tmp_path)
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for method in ("full", "lora-r16", "qlora-nf4-r16", "qlora-nf4-dq-r16", "qlora-fp4-r16"):
        assert f"| {method} " in text
    full_row = next(line for line in text.splitlines() if line.startswith("| full "))
    assert "| no " in full_row  # 8B x 16 bytes is far above 24 GiB
    assert "uncalibrated" in text and "predicted" in text
    # 8B at 4 x 1024 without checkpointing: the activations alone (32 GiB) outgrow 24 GiB for every method
    assert "recommendation:" not in text and "nothing fits at these conditions" in text
    assert "  - gradient checkpointing on: lora-r16 would need" in text


def test_budget_recommends_full_ft_when_it_fits_and_lora_cost_is_measured(tmp_path, capsys) -> None:
    # three evaluated records of one model: full FT scores 0.5, LoRA 0.4, QLoRA nf4 0.45
    for label, method, score in (
        ("full", {"name": "full"}, 0.5),
        ("lora-r16", {"name": "lora", "r": 16}, 0.4),
        ("qlora-nf4-r16", {"name": "qlora", "r": 16, "quant_type": "nf4", "double_quant": False}, 0.45),
    ):
        record = {
            "run": {"id": label, "method_label": label, "device": "cpu"},
            "config": {
                "model": {"name": "tiny", "architecture": {"model_type": "llama"}},
                "method": method,
                "train": {
                    "seed": 0,
                    "batch_size": 4,
                    "max_seq_len": 64,
                    "gradient_checkpointing": False,
                    "optim": "adamw_torch",
                    "grad_accum": 1,
                },
            },
            "metrics": {"score": {"exact_match": score, "field_accuracy": score, "n": 10}},
            "status": "ok",
            "error": None,
        }
        (tmp_path / f"{label}.json").write_text(json.dumps(record))
    out = call_budget(
        capsys,
        "--gpu-memory",
        "80GB",
        "--model",
        "llama-3.2-1b",
        "--seq-len",
        "512",
        "--batch",
        "2",
        "--results",
        str(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    assert "recommendation: full" in out.stdout
    # 10 test examples a run: two standard errors of a 50 % vs 40 % gap: 2 x sqrt(.25/10 + .24/10) = 44 points
    assert "LoRA also fits and costs +10.0 ± 44.3 points" in out.stdout
    assert "measured on tiny, NOT the queried model (llama-3.2-1b)" in out.stdout

    # the same records from the CPU smoke profile are no measured quality
    for path in tmp_path.glob("*.json"):
        record = json.loads(path.read_text())
        record["config"]["profile_name"] = "cpu_quick"
        path.write_text(json.dumps(record))
    out = call_budget(capsys, "--gpu-memory", "80GB", "--model", "llama-3.2-1b", "--seq-len", "512", "--batch", "2",
                      "--results", str(tmp_path))  # fmt: skip
    assert "+10.0" not in out.stdout and "not measured: the evaluated records are of a reduced profile" in out.stdout
    assert "LoRA also fits (its quality cost is not measured yet" in out.stdout


def test_budget_says_what_would_fit_when_nothing_does(tmp_path, capsys) -> None:
    out = call_budget(
        capsys,
        "--gpu-memory",
        "12GB",
        "--model",
        "llama-3-8b",
        "--seq-len",
        "4096",
        "--batch",
        "8",
        "--results",
        str(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    assert "nothing fits at these conditions" in out.stdout
    assert "  - all of: qlora-nf4-dq-r8, gradient checkpointing on, batch 1" in out.stdout


def test_budget_impossible_budget_says_no_single_gpu_setting(tmp_path, capsys) -> None:
    out = call_budget(capsys, "--gpu-memory", "8GB", "--model", "llama-2-70b", "--results", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "no single-GPU setting: the 4-bit weights alone take" in out.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--gpu-memory", "24GB", "--model", "llama-9000"], "no preset, file or folder of that name; give a preset"),
        (["--gpu-memory", "24XB", "--model", "llama-3-8b"], "unknown unit"),
        (["--gpu-memory", "0GB", "--model", "llama-3-8b"], "must be more than 0"),
        (["--gpu-memory", "24GB", "--model", "llama-3-8b", "--seq-len", "0"], "--seq-len 0"),
        (["--gpu-memory", "24GB", "--model", "llama-3-8b", "--optim", "lion"], "--optim 'lion'"),
    ],
)
def test_budget_bad_input_is_one_clear_error(args: list[str], message: str, tmp_path, capsys) -> None:
    out = call_budget(capsys, *args, "--results", str(tmp_path))
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert out.stdout == ""


def test_measured_gpu_record_overrides_the_prediction(tmp_path) -> None:
    setting = Setting(method="lora", batch=4, seq_len=1024)
    record = {
        "run": {"id": "x", "method_label": "lora-r16", "device": "cuda"},
        "config": {
            "model": {"name": "llama-3-8b", "architecture": {"model_type": "llama"}},
            "dataset": {"source": "synthetic"},
            "method": {"name": "lora", "r": 16, "target_modules": list(setting.target_modules)},
            "train": {"batch_size": 4, "max_seq_len": 1024, "gradient_checkpointing": False, "optim": "adamw_torch"},
        },
        "metrics": {"memory": {"peak_torch_reserved_mib": 20000.0, "peak_nvml_process_mib": 20500.0}},
        "status": "ok",
    }
    assert budget.measured_peak([record], "llama-3-8b", setting) == (20500.0 * MIB, "ok")
    assert budget.measured_peak([record], "llama-3-8b", Setting(method="lora", batch=2, seq_len=1024)) is None


def _claim_params(claim_id: str) -> dict:
    from harness.report.claims import load_claims

    return next(c for c in load_claims()["claims"] if c["id"] == claim_id)["params"]


def test_claims_at_scale_follow_from_the_memory_model() -> None:
    import pandas as pd

    from harness.report import claims

    empty = pd.DataFrame()
    seventy = claims.memory_at_scale(empty, empty, _claim_params("qlora-70b-24gb"))
    assert seventy["verdict"] == claims.FAILS  # 70e9 x 4 bits is ~33 GiB of weights alone
    assert "(4-bit weights: 34.8 GiB)" in seventy["why"] and "= " in seventy["measured"]
    thirteen = claims.memory_at_scale(empty, empty, _claim_params("full-13b"))
    assert "fully sharded (ZeRO-3/FSDP) over" in thirteen["measured"]
    # 13B over at most 8 x 40 GB: the resident states fit 6 cards, so only a calibrated model could decide
    assert thirteen["verdict"] == claims.INCONCLUSIVE and "calibrated for full" in thirteen["why"]
    full7 = claims.memory_at_scale(empty, empty, _claim_params("mem-7b-full"))
    assert full7["verdict"] == claims.HOLDS  # 16 bytes per parameter alone is > 100 GiB
    # LoRA and QLoRA at 7B: a prediction, which decides only where its family is calibrated
    lora7, qlora7 = (claims.memory_at_scale(empty, empty, _claim_params(c)) for c in ("mem-7b-lora", "mem-7b-qlora"))
    assert lora7["verdict"] == qlora7["verdict"] == claims.INCONCLUSIVE
    assert "missing: a GPU record at these conditions, or a memory model calibrated for lora" in lora7["why"]
    from harness.results import load_records

    calibration = calibrate(load_records(PUBLISHED, recursive=True))  # the H200 records calibrate LoRA only
    params = {**_claim_params("mem-7b-lora"), "_calibration": calibration}
    assert claims.memory_at_scale(empty, empty, params)["verdict"] != claims.INCONCLUSIVE
    params = {**_claim_params("mem-7b-qlora"), "_calibration": calibration}
    assert claims.memory_at_scale(empty, empty, params)["verdict"] == claims.INCONCLUSIVE


def _scale_record(model: str, method: dict, batch: int, seq: int, reserved: float) -> dict:
    return {
        "run": {"id": f"{model}-{method['name']}-{batch}", "method_label": method["name"], "device": "cuda"},
        "config": {
            "model": {"name": model, "architecture": yaml.safe_load(
                (budget.CONF_MODEL_DIR / f"{model}.yaml").read_text())["architecture"]},
            "dataset": {"source": "synthetic"},
            "eval": {"enabled": False},
            "method": {"target_modules": list(Setting.target_modules), "r": 16, **method},
            "train": {"batch_size": batch, "max_seq_len": seq, "gradient_checkpointing": False,
                      "optim": "adamw_torch"},
        },
        "metrics": {"memory": {"peak_torch_reserved_mib": reserved, "peak_nvml_process_mib": reserved + 500},
                    "tokens_per_s": 1000.0},
        "status": "ok",
    }  # fmt: skip


def test_scale_report_predicts_each_gpu_run_from_the_others(tmp_path) -> None:
    from harness.predict import memory_model as mm
    from harness.report.scale_report import scale_frame, write_scale_report

    # LoRA peaks that follow 1.2 x the counted tensors + a 500 MiB context exactly: the held-out error is ~0
    records = []
    for model, method, batch in [
        ("llama-3.2-1b", {"name": "lora"}, 1),
        ("llama-3.2-1b", {"name": "lora"}, 4),
        ("llama-3.2-3b", {"name": "lora"}, 2),
        ("llama-3.2-1b", {"name": "full"}, 2),
    ]:
        arch = yaml.safe_load((budget.CONF_MODEL_DIR / f"{model}.yaml").read_text())["architecture"]
        p = mm.predict(arch, Setting(method=method["name"], batch=batch, seq_len=512))
        reserved = 1.2 * mm.counted_tensors(p) / MIB
        records.append(_scale_record(model, method, batch, 512, reserved))
    frame = scale_frame(records)
    lora = frame[frame["method"] == "lora"]
    assert lora["held-out error %"].abs().max() < 0.5
    calibration = calibrate(records)
    assert calibration.for_method("lora").tensors_scale == pytest.approx(1.2)
    assert calibration.for_method("lora").n_configs == 3 and calibration.for_method("lora").calibrated
    # one full-FT configuration: fitted, not calibrated, and its prediction is no held-out evidence
    assert not calibration.for_method("full").calibrated
    assert frame[frame["method"] == "full"]["held-out error %"].isna().all()
    paths = write_scale_report(records, tmp_path, title="scale")
    assert (tmp_path / "predicted_vs_measured.png").stat().st_size > 0
    assert "within 10 % for 3 of 3" in paths[0].read_text()
    # a compiled run and one with Liger's fused cross-entropy hold other tensors than eager autograd counts:
    # shown in the report, left out of the calibration
    for field in ("torch_compile", "liger_kernel"):
        other = _scale_record("llama-3.2-1b", {"name": "lora"}, 8, 512, 1.0)
        other["config"]["train"][field] = True
        assert gpu_records([*records, other]) == records
    assert set(scale_frame([*records, other])["Liger kernels"]) == {"on", "off"}


def _speed_record(model: str, method: dict, checkpointing: bool, tokens_per_s: float, batch: int = 4) -> dict:
    return {
        "run": {"id": f"{model}-{checkpointing}-{batch}", "finished_at": "2026-11-23T00:00:00"},
        "config": {
            "model": {"name": model},
            "method": method,
            "recipe_name": "baseline+checkpointing" if checkpointing else "baseline",
            "results_dir": f"/tmp/{checkpointing}",  # not a condition: may differ within a pair
            "train": {"batch_size": batch, "gradient_checkpointing": checkpointing},
        },
        "environment": {"gpu_name": None, "cpu": "AMD EPYC"},
        "metrics": {"tokens_per_s": tokens_per_s},
        "status": "ok",
    }


def test_checkpointing_price_comes_from_a_pair_that_differs_in_nothing_else(tmp_path, capsys) -> None:
    """The ablation's pair states checkpointing's speed price per method; runs that differ in anything else
    (here the batch) or have no partner state none, and the queried model's pair wins over another's."""
    lora = {"name": "lora", "r": 16}
    nf4 = {"name": "qlora", "r": 16, "quant_type": "nf4", "double_quant": False}
    records = [
        _speed_record("smollm2-135m", lora, False, 200.0),
        _speed_record("smollm2-135m", lora, True, 150.0),
        _speed_record("smollm2-135m", lora, True, 20.0, batch=16),  # no partner at batch 16
        _speed_record("other-model", lora, False, 100.0),
        _speed_record("other-model", lora, True, 90.0),
        _speed_record("smollm2-135m", nf4, False, 100.0),
        _speed_record("smollm2-135m", {"name": "full"}, True, 50.0),  # no partner
    ]
    speed_costs = budget_costs.checkpointing_speed_costs
    assert speed_costs(records, "smollm2-135m") == {"lora": (0.75, "smollm2-135m on AMD EPYC")}
    assert speed_costs(records, "other-model")["lora"] == (0.9, "other-model on AMD EPYC")

    # the budget's "what would fit" states the price beside the suggestion
    for i, r in enumerate(records[:2]):
        (tmp_path / f"{i}.json").write_text(json.dumps(r))
    out = call_budget(capsys, "--gpu-memory", "6GB", "--model", "smollm2-135m", "--seq-len", "512", "--batch", "16",
                      "--results", str(tmp_path))  # fmt: skip
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("  - gradient checkpointing on:"))
    assert "lora-r16" in line and "(measured price: 0.75x the tokens/s without it, smollm2-135m on AMD EPYC)" in line


PUBLISHED = ROOT / "results" / "published" / "gpu"


def test_the_committed_h200_records_calibrate_lora_and_state_their_held_out_error() -> None:
    """Three LoRA configurations of the H200 records calibrate LoRA; one QLoRA configuration does not; the MFU
    run (compiled) is left out. Each LoRA configuration, predicted by a fit on the other two, is within 10 %."""
    from harness.results import load_records

    records = load_records(PUBLISHED, recursive=True)
    assert len(records) == 5
    calibration = calibrate(records)
    lora, qlora, full = (calibration.for_method(m) for m in ("lora", "qlora", "full"))
    assert lora.calibrated and lora.n_configs == 3 and lora.heldout_max_error_pct < 10
    assert not qlora.calibrated and qlora.n_configs == 1 and qlora.heldout_error_pct is None
    assert full.n_records == 0 and "uncalibrated" in full.describe()
    assert calibration.context_bytes / MIB == pytest.approx(758, abs=1)  # NVML minus torch reserved, each record
    for r in gpu_records(records):
        if r["config"]["method"]["name"] != "lora":
            continue
        others = [g for g in records if g is not r]
        predicted = budget.mm.predict(r["config"]["model"]["architecture"], setting_of_record(r), calibrate(others))
        measured = r["metrics"]["memory"]["peak_nvml_process_mib"] * MIB
        assert abs(predicted.peak_bytes - measured) / measured < 0.10


def test_budget_takes_target_modules_and_states_the_measured_peak_and_the_error_band(capsys) -> None:
    args = ["--gpu-memory", "80GB", "--model", "llama-2-7b", "--seq-len", "512", "--batch", "4", "--optim",
            "adamw_torch", "--target-modules", "q_proj,v_proj", "--results", str(PUBLISHED)]  # fmt: skip
    on = call_budget(capsys, *args, "--gradient-checkpointing")
    assert on.returncode == 0, on.stderr
    lora = next(line for line in on.stdout.splitlines() if line.startswith("| lora-r16 "))
    # the H200 record of exactly these conditions: 15,528 MiB
    assert f" {15528 / 1024:.2f} |" in lora and "| measured " in lora
    off = call_budget(capsys, *args)
    lora = next(line for line in off.stdout.splitlines() if line.startswith("| lora-r16 "))
    assert "| predicted " in lora and "| ±" in lora  # no record: predicted, with its family's band
    qlora = next(line for line in off.stdout.splitlines() if line.startswith("| qlora-nf4-r16 "))
    assert "| no fit " in qlora  # one QLoRA configuration: no band can be stated
    bad = call_budget(capsys, *args[:-2], "--target-modules", "q_proj,x_proj")
    assert bad.returncode == 2 and "x_proj not a layer of llama-2-7b" in bad.stderr


def test_a_measured_record_overrides_the_prediction_and_an_oom_record_means_no(tmp_path) -> None:
    """Inside answer(): a GPU record of exactly the asked conditions stands for the prediction (here a LoRA peak
    far above it: does not fit), an `oom` record is "no" whatever the prediction; full FT, predicted to fit,
    is then the recommendation; on a card too small for full FT, LoRA is."""
    lora = _scale_record("llama-3.2-1b", {"name": "lora"}, 2, 512, 79 * 1024.0)  # 79 GiB reserved
    qlora = _scale_record("llama-3.2-1b", {"name": "qlora", "quant_type": "nf4", "double_quant": False}, 2, 512, 9e3)
    qlora["status"] = "oom"
    for i, record in enumerate((lora, qlora)):
        (tmp_path / f"{i}.json").write_text(json.dumps(record))
    base = Setting(method="full", batch=2, seq_len=512)
    table, lines = budget.answer("llama-3.2-1b", 80 * GIB, base, results_dir=tmp_path)
    rows = table.set_index("method")
    assert rows.loc["lora-r16", ["from", "fits"]].tolist() == ["measured", "no"]
    assert rows.loc["lora-r16", "peak GiB"] == pytest.approx(
        (79 * 1024 + 500) / 1024, abs=0.01
    )  # NVML, not the prediction
    assert rows.loc["qlora-nf4-r16", ["from", "fits"]].tolist() == ["measured: oom", "no"]
    assert rows.loc["full", ["from", "fits"]].tolist() == ["predicted", "yes"]
    assert any(line.startswith("recommendation: full") for line in lines)
    small = budget.answer("llama-3.2-1b", 16 * GIB, base, results_dir=tmp_path / "none")[1]
    assert any(line.startswith("recommendation: lora-r16") and "full FT does not fit" in line for line in small)


def test_budget_states_the_largest_batch_and_length_that_fit_and_the_fsdp_share(tmp_path) -> None:
    """Per method: the largest batch at the asked length and the largest length at the asked batch that fit the
    card (predicted: one more does not fit), and full-shard FSDP's per-card need over N cards."""
    from harness.predict import memory_model as mm

    base = Setting(method="full", batch=4, seq_len=1024)
    table, _ = budget.answer("llama-3.2-1b", 24 * GIB, base, results_dir=tmp_path, fsdp_gpus=4)
    row = table.set_index("method").loc["lora-r16"]
    usable = 24 * GIB * 0.9
    _, arch = budget.architecture_of("llama-3.2-1b")
    lora = Setting(method="lora", batch=4, seq_len=1024)
    batch = row["max batch @ 1024"]
    assert mm.predict(arch, dataclasses.replace(lora, batch=batch)).peak_bytes <= usable
    assert mm.predict(arch, dataclasses.replace(lora, batch=batch + 1)).peak_bytes > usable
    seq = row["max seq @ batch 4"]
    assert seq % 64 == 0 and mm.predict(arch, dataclasses.replace(lora, seq_len=seq)).peak_bytes <= usable
    assert mm.predict(arch, dataclasses.replace(lora, seq_len=seq + 64)).peak_bytes > usable
    full = table.set_index("method").loc["full"]
    p = mm.predict(arch, dataclasses.replace(lora, method="full"))
    static = sum(p.components[k] for k in ("weights", "gradients", "optimizer_states"))
    expected = static / 4 + p.components["activations"] + p.components["logits_gradient"]
    assert full["FSDP x4 GiB/card (pred.)"] == pytest.approx(expected / GIB, abs=0.01)


@pytest.mark.parametrize(("nvml_mib", "verdict"), [(20_000.0, "holds"), (26_000.0, "does not hold")])
def test_a_gpu_record_at_a_claims_conditions_decides_it_in_the_scale_report(tmp_path, nvml_mib, verdict) -> None:
    """The GPU plan's big_qlora part measures the documents' "QLoRA fine-tunes 33B on one 24 GB GPU" at the
    claim's conditions; its record alone decides the claim, in the scale report that shows it."""
    from harness.report.claims import check_memory_claims
    from harness.report.scale_report import write_scale_report

    params = _claim_params("qlora-33b-24gb")
    record = _scale_record(
        "llama-33b", {"name": "qlora", "quant_type": "nf4", "double_quant": True}, 1, 512, nvml_mib - 500
    )
    record["config"]["train"].update(gradient_checkpointing=True, optim=params["optim"])
    before = check_memory_claims([]).set_index("id").loc["qlora-33b-24gb"]
    assert before["verdict"] == "inconclusive"  # 4-bit 33B weights fit 24 GB: only a measurement can decide
    after = check_memory_claims([record]).set_index("id")
    assert after.loc["qlora-33b-24gb", "verdict"] == verdict
    assert f"{nvml_mib / 1024:.1f} GiB (measured on a GPU" in after.loc["qlora-33b-24gb", "measured"]
    assert after.loc["qlora-70b-24gb", "verdict"] == "does not hold"  # the count decides it, record or not
    text = write_scale_report([record], tmp_path, title="big")[0].read_text()
    assert "## The documents' memory claims" in text and f"| {verdict} " in text


def test_budget_quality_cost_is_paired_over_the_same_examples_where_records_have_them(tmp_path, capsys) -> None:
    """Full FT right on 200 of 400 examples, LoRA on the same ones but 8: 2 points below, paired error ~1.4."""
    hits = {"full": [1] * 200 + [0] * 200, "lora-r16": [0] * 8 + [1] * 192 + [0] * 200}
    for label, method in (("full", {"name": "full"}), ("lora-r16", {"name": "lora", "r": 16})):
        rows = [{"id": i, "prompt_sha": f"p{i}", "unseen_phrasing": False, "exact_match": bool(h),
                 "field_accuracy": float(h)} for i, h in enumerate(hits[label])]  # fmt: skip
        (tmp_path / f"{label}.examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        score = sum(hits[label]) / 400
        record = {
            "run": {"id": label, "method_label": label, "device": "cpu", "examples_log": f"{label}.examples.jsonl"},
            "config": {
                "model": {"name": "llama-3.2-1b", "architecture": {"model_type": "llama"}},
                "method": method,
                "train": {
                    "seed": 0,
                    "batch_size": 4,
                    "max_seq_len": 64,
                    "gradient_checkpointing": False,
                    "optim": "adamw_torch",
                    "grad_accum": 1,
                    "max_steps": 60,
                    "lr_scheduler": "cosine",
                },
            },  # fmt: skip
            "metrics": {"score": {"exact_match": score, "field_accuracy": score, "n": 400}, "steps": 60},
            "status": "ok",
            "error": None,
        }
        (tmp_path / f"{label}.json").write_text(json.dumps(record))
    out = call_budget(capsys, "--gpu-memory", "80GB", "--model", "llama-3.2-1b", "--seq-len", "512", "--batch", "2",
                      "--results", str(tmp_path))  # fmt: skip
    assert out.returncode == 0, out.stderr
    # the paired error of 8 discordant examples in 400: sd of the differences sqrt(0.02 - 0.0004) / sqrt(400) = 0.7 %
    assert "LoRA also fits and costs +2.0 ± 1.4 points" in out.stdout
    assert "paired over the same 400 test examples" in out.stdout and "at 60 steps x 4 examples" in out.stdout


# Published config.json fields of four families (their model cards' config files) and the parameter counts their
# checkpoints state (safetensors metadata on the hub): fused projections (Phi-3), biases on q/k/v (Qwen2), an
# explicit head_dim and tied embeddings (Gemma 2), untied embeddings (Mistral, Qwen2, Phi-3).
FAMILY_CONFIGS = {
    "mistral-7b": (7_241_732_096, dict(
        model_type="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=32000, max_position_embeddings=32768, rms_norm_eps=1e-5,
        rope_theta=10000.0, sliding_window=4096, tie_word_embeddings=False, hidden_act="silu",
        architectures=["MistralForCausalLM"], torch_dtype="bfloat16",
    )),
    "qwen2.5-7b": (7_615_616_512, dict(
        model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064, max_position_embeddings=131072, rms_norm_eps=1e-6,
        rope_theta=1000000.0, tie_word_embeddings=False, hidden_act="silu", use_sliding_window=False,
        sliding_window=131072, max_window_layers=28, architectures=["Qwen2ForCausalLM"], torch_dtype="bfloat16",
    )),
    "phi-3-mini": (3_821_079_552, dict(
        model_type="phi3", hidden_size=3072, intermediate_size=8192, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096, original_max_position_embeddings=4096,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, hidden_act="silu", sliding_window=2047,
        pad_token_id=32000, bos_token_id=1, eos_token_id=32000, architectures=["Phi3ForCausalLM"],
        torch_dtype="bfloat16",
    )),
    "gemma-2-9b": (9_241_705_984, dict(
        model_type="gemma2", hidden_size=3584, intermediate_size=14336, num_hidden_layers=42, num_attention_heads=16,
        num_key_value_heads=8, head_dim=256, vocab_size=256000, max_position_embeddings=8192, rms_norm_eps=1e-6,
        rope_theta=10000.0, tie_word_embeddings=True, hidden_activation="gelu_pytorch_tanh",
        query_pre_attn_scalar=256, sliding_window=4096, final_logit_softcapping=30.0, attn_logit_softcapping=50.0,
        architectures=["Gemma2ForCausalLM"], torch_dtype="float32",
    )),
}  # fmt: skip


def _write_config(folder, fields: dict):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(fields), encoding="utf-8")
    return folder / "config.json"


@pytest.mark.parametrize("family", list(FAMILY_CONFIGS))
def test_budget_answers_for_a_config_json_of_any_family_transformers_knows(family, tmp_path, capsys) -> None:
    from harness.predict import memory_model as mm

    params, fields = FAMILY_CONFIGS[family]
    config = _write_config(tmp_path / family, fields)
    for model in (str(config), str(config.parent)):  # the file, or the folder holding it
        name, arch = budget.architecture_of(model)
        assert name == family and "architectures" not in arch and "torch_dtype" not in arch
        shapes = mm.cached_shapes(arch)
        assert shapes.total_params == params  # the checkpoint's own count: fused, biased, tied or not
        full = mm.static_bytes(shapes, Setting(method="full"))
        assert full["weights"] + full["gradients"] + full["optimizer_states"] == 16 * params
    out = call_budget(capsys, "--gpu-memory", "24GB", "--model", str(config), "--results", str(tmp_path / "none"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{family}: {params / 1e9:.2f}B parameters")
    for method in ("full", "lora-r16", "qlora-nf4-r16", "qlora-fp4-r16"):
        assert f"| {method} " in out.stdout
    # Phi-3 has no q_proj/k_proj/v_proj (one fused qkv_proj) nor gate_proj/up_proj: the default, every projection
    # of a Llama, is every linear layer of this model
    targets = "all-linear" if family == "phi-3-mini" else "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    assert f"LoRA r=16 on {targets};" in out.stdout


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(model_type="mixtral", num_local_experts=8, num_experts_per_tok=2), "a mixture of experts"),
        (dict(model_type="qwen2_moe", hidden_size=64, num_experts=60), "a mixture of experts (num_experts=60)"),
        (dict(model_type="custom", auto_map={"AutoConfig": "x.Config"}), "needs the model's own code (auto_map)"),
        (dict(model_type="no-such-family", hidden_size=64), "has no causal-LM class in transformers"),
        (dict(model_type="vit", hidden_size=64), "has no causal-LM class in transformers"),
        (dict(hidden_size=64), "the config has no model_type"),
    ],
)
def test_budget_refuses_what_the_memory_model_cannot_count_in_one_line(fields, message, tmp_path, capsys) -> None:
    config = _write_config(tmp_path / "m", fields)
    out = call_budget(capsys, "--gpu-memory", "24GB", "--model", str(config), "--results", str(tmp_path))
    assert (out.returncode, out.stdout, "Traceback" in out.stderr) == (2, "", False)
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_budget_model_paths_that_are_not_configs_are_one_clear_error(tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    for model, message in [
        (str(tmp_path / "empty"), "the folder holds no config.json"),
        (str(tmp_path / "broken.json"), "is not a readable JSON config"),
    ]:
        out = call_budget(capsys, "--gpu-memory", "24GB", "--model", model, "--results", str(tmp_path))
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    # a hub id neither cached nor reachable (offline, an empty cache): one line, as a user without the hub sees it
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run(
        [sys.executable, "-m", "harness", "budget", "--gpu-memory", "24GB", "--model", "mistralai/Mistral-7B-v0.1"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert len(errors) == 1 and "no config for this hub id here" in errors[0]


def test_budget_reads_a_hub_id_from_the_local_hub_cache_offline(tmp_path) -> None:
    """A hub id whose config.json is in the hub cache (as after any download) answers offline."""
    rev = "0" * 40
    repo = tmp_path / "hf" / "hub" / "models--mistralai--Mistral-7B-v0.1"
    _write_config(repo / "snapshots" / rev, FAMILY_CONFIGS["mistral-7b"][1])
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run(
        [sys.executable, "-m", "harness", "budget", "--gpu-memory", "80GB", "--model", "mistralai/Mistral-7B-v0.1",
         "--results", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("mistral-7b-v0.1: 7.24B parameters")


def test_budget_prices_dora_apart_from_lora_and_never_as_its_family(tmp_path) -> None:
    """DoRA and QDoRA have rows of their own: the memory model's peak with the magnitudes and the norm's saved
    activations (above LoRA's and QLoRA's at the same rank), no quality cost measured; and a DoRA record is its
    own family, so its score never stands for LoRA's and its GPU peak never for a LoRA prediction."""
    base = Setting(method="full", batch=4, seq_len=1024)
    table, lines = budget.answer("llama-3.2-1b", 80 * GIB, base, results_dir=tmp_path)
    rows = table.set_index("method")
    assert rows.loc["dora-r16", "peak GiB"] > rows.loc["lora-r16", "peak GiB"]
    assert rows.loc["qdora-nf4-r16", "peak GiB"] > rows.loc["qlora-nf4-r16", "peak GiB"]
    assert rows.loc["dora-r16", "quality cost (pts vs full)"] == "not measured"
    assert any(line.startswith("recommendation: full") for line in lines)
    assert budget_costs._family({"name": "lora", "use_dora": True}) == "dora"
    assert budget_costs._family({"name": "qlora", "quant_type": "nf4", "use_dora": True}) == "qdora-nf4"
    assert budget_costs._family({"name": "lora", "init_lora_weights": "pissa"}) == "pissa"
    assert budget_costs._family({"name": "lora", "use_dora": False, "init_lora_weights": "default"}) == "lora"
    dora = _scale_record("llama-3.2-1b", {"name": "lora", "use_dora": True}, 4, 1024, 70 * 1024.0)
    assert setting_of_record(dora).use_dora
    (tmp_path / "dora.json").write_text(json.dumps(dora))
    measured = budget.answer("llama-3.2-1b", 80 * GIB, base, results_dir=tmp_path)[0].set_index("method")
    assert measured.loc["dora-r16", "from"] == "measured"
    assert measured.loc["lora-r16", "from"] == "predicted"
