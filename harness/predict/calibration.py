"""The memory model against GPU records: which records calibrate it, the fit per method family, and the
measured peak that stands in for a prediction where a record of exactly the asked conditions exists.

Why a module of its own: `budget`, the reports and the claims all need these, and the one peak they compare
with is the NVML process peak (results.peak_memory), which is what the fit predicts.
"""

from __future__ import annotations

import json

from harness.predict import memory_model as mm
from harness.predict.memory_model import MIB, Calibrations, Setting
from harness.results import peak_memory

FAMILIES = ("full", "lora", "qlora")


def _targets(names: list[str] | str | None) -> tuple[str, ...]:
    """A record's target modules as the memory model's Setting takes them ("all-linear" stays one name)."""
    if isinstance(names, str):
        return (names,)
    return tuple(names or Setting.target_modules)


def setting_of_record(record: dict) -> Setting:
    cfg = record["config"]
    m, t = cfg["method"], cfg["train"]
    return Setting(
        method=m["name"],
        batch=t["batch_size"],
        seq_len=t["max_seq_len"],
        gradient_checkpointing=t["gradient_checkpointing"],
        optim=t["optim"],
        r=m.get("r") or 16,
        target_modules=_targets(m.get("target_modules")),
        quant_type=m.get("quant_type") or "nf4",
        double_quant=bool(m.get("double_quant")),
        weights_dtype=m.get("weights_dtype") or "fp32",
        use_dora=bool(m.get("use_dora")),
    )


def gpu_records(records: list[dict]) -> list[dict]:
    """Scale-sweep records measured on a GPU with an NVML process peak: what calibrates and counts as measured.

    Only synthetic-data runs: their sequences are exactly max_seq_len long, while a task's batches are padded
    to their longest example, so max_seq_len would overstate what those runs held. Only eager runs without
    Liger's kernels (no torch.compile, no train.liger_kernel)."""
    return [
        r
        for r in records
        if r.get("run", {}).get("device") == "cuda"
        and r.get("config", {}).get("dataset", {}).get("source") == "synthetic"
        and r.get("status") in ("ok", "oom")
        and peak_memory(r)[1] == "nvml process"
        and r.get("config", {}).get("model", {}).get("architecture", {}).get("model_type")
        # the memory model counts eager autograd; a compiled graph saves other tensors, and Liger's fused linear +
        # cross-entropy never holds the logits the model counts
        and not r.get("config", {}).get("train", {}).get("torch_compile", False)
        and not r.get("config", {}).get("train", {}).get("liger_kernel", False)
    ]


def configuration_key(record: dict) -> str:
    """What decides a record's memory: the architecture and the Setting (two seeds are one configuration)."""
    arch = record["config"]["model"]["architecture"]
    return json.dumps([sorted(arch.items()), repr(setting_of_record(record))], default=str)


def calibrate(records: list[dict]) -> Calibrations:
    """The memory model's fit per method family on the ok GPU records among `records`."""
    rows: dict[str, list[tuple[float, float, float, str]]] = {f: [] for f in FAMILIES}
    contexts = []
    for r in gpu_records(records):
        mem = r["metrics"]["memory"]
        if mem.get("peak_torch_reserved_mib"):
            contexts.append((mem["peak_nvml_process_mib"] - mem["peak_torch_reserved_mib"]) * MIB)
        if r["status"] != "ok":
            continue  # an oom peak is a lower bound, not the run's peak
        setting = setting_of_record(r)
        try:
            tensors = mm.counted_tensors(mm.predict(r["config"]["model"]["architecture"], setting))
        except (ValueError, RuntimeError):
            continue
        context = (mem["peak_nvml_process_mib"] - (mem.get("peak_torch_reserved_mib") or 0)) * MIB
        rows[setting.method].append((tensors, mem["peak_nvml_process_mib"] * MIB, context, configuration_key(r)))
    return Calibrations(
        by_family={f: mm.fit_calibration(rows[f], family=f) for f in FAMILIES if rows[f]},
        context_bytes=sum(contexts) / len(contexts) if contexts else 0.0,
    )


def measured_peak(records: list[dict], model_name: str, setting: Setting) -> tuple[float, str] | None:
    """(NVML process peak in bytes, status) of a GPU record of exactly this model and setting, if one exists."""
    for r in gpu_records(records):
        if r["config"]["model"]["name"] == model_name and setting_of_record(r) == setting:
            return peak_memory(r)[0] * MIB, r["status"]
    return None
