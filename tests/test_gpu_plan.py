"""tools/gpu_plan.py, what a lent GPU runs: every part's jobs compose and check; the plan runs its parts in value
order, skips what would not fit the minutes left, stops a part at the deadline keeping its finished records,
packs each part as it ends, and runs later parts forked only once the launcher check passed (fake sweeps here)."""

from __future__ import annotations

import itertools
import json
import shlex
import sys
import tarfile
import textwrap

import pytest
import yaml

from harness.run.checks import load_run_config

from .conftest import ROOT, compose_config

sys.path.insert(0, str(ROOT / "tools"))
import gpu_plan  # noqa: E402


def test_every_job_of_every_part_composes_and_checks():
    assert [p.name for p in gpu_plan.PARTS] == [
        "launcher", "tradeoff", "big_qlora", "scale", "variants", "bench", "mfu", "tradeoff_rest"
    ]  # fmt: skip
    for part in gpu_plan.PARTS:
        overrides = shlex.split(part.overrides.replace("$MODEL", "/tmp/models/m.gguf"))
        axes = [[f"{o.split('=', 1)[0]}={v}" for v in o.split("=", 1)[1].split(",")] for o in overrides]
        jobs = list(itertools.product(*axes))
        for job in jobs:
            cfg = load_run_config(compose_config(list(job)))
            if part.name in ("launcher", "scale"):  # the conditions of the H200 records the calibration joins
                assert (cfg.train.batch_size, cfg.train.max_seq_len, cfg.train.optim) == (4, 512, "adamw_torch")
        if part.name == "scale":
            assert len(jobs) == 4 * 4 * 2
        if part.name == "variants":  # DoRA at the scale part's conditions, to set against its LoRA and QLoRA
            configs = [load_run_config(compose_config(list(job))) for job in jobs]
            assert len(jobs) == 2 * 2 * 2 and all(c.method.use_dora for c in configs)
            assert {(c.train.batch_size, c.train.max_seq_len, c.train.optim) for c in configs} == {
                (4, 512, "adamw_torch")
            }
        if part.name == "big_qlora":  # the conditions of claims qlora-33b-24gb and qlora-70b-24gb
            claims = {
                c["id"]: c.get("params")
                for c in yaml.safe_load((ROOT / "harness" / "report" / "claims" / "claims.yaml").read_text())["claims"]
            }
            for job in jobs:
                cfg = load_run_config(compose_config(list(job)))
                wanted = claims[f"qlora-{cfg.model.name.removeprefix('llama-').removeprefix('2-')}-24gb"]
                assert cfg.model.init == "random" and cfg.method.name == "qlora" and cfg.method.double_quant
                assert (cfg.method.quant_type, cfg.train.batch_size, cfg.train.max_seq_len) == (
                    wanted["quant_type"],
                    wanted["batch"],
                    wanted["seq_len"],
                )
                assert (cfg.train.gradient_checkpointing, cfg.train.optim) == (True, wanted["optim"])
        if part.name == "tradeoff":
            assert load_run_config(compose_config(list(jobs[0]))).recipe_name == "harness"


# A stand-in for `python -m harness`: sleeps as FAKE says for its sweep, writing one record a second.
FAKE = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    results = Path(args["results_dir"])
    results.mkdir(parents=True, exist_ok=True)
    seconds = json.loads(os.environ["FAKE"])[args["+sweeps"]]
    mib = 1000.0 if args["hydra/launcher"] == "per_process" else float(os.environ.get("FORKED_MIB", "1005"))
    for i in range(int(seconds)):
        time.sleep(1)
        record = {"run": {"launcher": args["hydra/launcher"]}, "status": "ok",
                  "metrics": {"memory": {"peak_nvml_process_mib": mib}, "startup_seconds": {"imports": 1.0}}}
        (results / f"job{i}.json").write_text(json.dumps(record))
    """
)


@pytest.fixture
def plan_run(tmp_path, monkeypatch):
    fake = tmp_path / "fake_harness.py"
    fake.write_text(FAKE)
    model = tmp_path / "model.gguf"
    model.write_text("")

    def run(minutes: float, seconds: dict, *extra: str, forked_mib: float = 1005) -> list[dict]:
        monkeypatch.setenv("FAKE", json.dumps(seconds))
        monkeypatch.setenv("FORKED_MIB", str(forked_mib))
        out = tmp_path / "out"
        argv = ["--minutes", str(minutes), "--work", str(tmp_path / "work"), "--out", str(out),
                "--harness", f"{sys.executable} {fake}", "--model", str(model), *extra]  # fmt: skip
        assert gpu_plan.main(argv) == 0
        return json.loads((out / "plan.json").read_text())

    return run


def test_parts_run_in_value_order_packed_as_they_end(plan_run, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_plan, "PACK_MARGIN_S", 1.0)
    summary = plan_run(2, {"scale": 2, "tradeoff": 1, "bench": 1, "mfu": 1}, "--parts", "mfu,scale,tradeoff,bench")
    assert [e["part"] for e in summary] == ["tradeoff", "scale", "bench", "mfu"]
    assert all(e["exit"] == 0 and not e["stopped_at_deadline"] for e in summary)
    assert [e["records"]["ok"] for e in summary] == [1, 2, 1, 1]
    assert {e["launcher"] for e in summary} == {"per_process"}  # no launcher check has passed
    with tarfile.open(tmp_path / "out" / "02_scale.tar.gz") as tar:
        assert {"scale/results/job0.json", "scale/results/job1.json", "scale/sweep.log"} <= set(tar.getnames())


def test_a_part_is_stopped_at_the_deadline_and_what_does_not_fit_is_skipped(plan_run, monkeypatch):
    monkeypatch.setattr(gpu_plan, "PACK_MARGIN_S", 1.0)
    parts = tuple(gpu_plan.Part(p.name, p.overrides, first_job_s=2, needs_model=p.needs_model) for p in gpu_plan.PARTS)
    monkeypatch.setattr(gpu_plan, "PARTS", parts)
    # 9 s at hand: tradeoff (3 s) runs whole; scale (60 s) is stopped at the deadline with the records it wrote
    summary = plan_run(0.15, {"tradeoff": 3, "scale": 60, "bench": 1}, "--parts", "tradeoff,scale,bench")
    tradeoff, scale, bench = summary
    assert tradeoff["records"]["ok"] == 3 and not tradeoff["stopped_at_deadline"]
    assert scale["stopped_at_deadline"] and 1 <= scale["records"]["ok"] < 60 and scale["seconds"] < 12
    assert "skipped" in bench and "s were left" in bench["skipped"]


def test_later_parts_run_forked_only_after_the_launcher_check_passes(plan_run, monkeypatch):
    monkeypatch.setattr(gpu_plan, "PACK_MARGIN_S", 1.0)
    parts = tuple(gpu_plan.Part(p.name, p.overrides, 1, p.needs_model) for p in gpu_plan.PARTS)
    monkeypatch.setattr(gpu_plan, "PARTS", parts)
    seconds = {"scale": 1, "mfu": 1}
    failed = plan_run(1, seconds, "--parts", "launcher,mfu", forked_mib=1020)  # 2 % apart
    assert failed[0]["verdict"]["nvml_peak_diff_pct"] == pytest.approx(2.0)
    assert not failed[0]["verdict"]["forked_ok"] and failed[1]["launcher"] == "per_process"
    passed = plan_run(1, seconds, "--parts", "launcher,mfu", forked_mib=1005)
    assert passed[0]["verdict"]["forked_ok"] and passed[1]["launcher"] == "forked"
    # a later call on the same machine reads the check the earlier call left
    assert plan_run(1, seconds, "--parts", "mfu")[0]["launcher"] == "forked"


def test_a_part_that_needs_the_model_file_is_skipped_without_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE", json.dumps({"tradeoff": 1}))
    out = tmp_path / "out"
    argv = ["--minutes", "1", "--parts", "tradeoff", "--work", str(tmp_path / "w"), "--out", str(out),
            "--harness", "false"]  # fmt: skip
    assert gpu_plan.main(argv) == 0
    assert "needs the model file" in json.loads((out / "plan.json").read_text())[0]["skipped"]
    with pytest.raises(SystemExit):
        gpu_plan.main([*argv, "--parts", "nonsense"])


def test_a_rehearsal_keeps_every_axis_but_the_model_and_the_sizes():
    scale = next(p for p in gpu_plan.PARTS if p.name == "big_qlora")
    words = gpu_plan.rehearsal_words(shlex.split(scale.overrides))
    assert "model=tiny" in words and not any(w.startswith("model=llama") for w in words)
    assert "method=qlora_dq" in words and "train.optim=paged_adamw_8bit" in words
    assert "train.gradient_checkpointing=true" in words and "train.max_seq_len=64" in words
    assert len([w for w in words if w.startswith("train.batch_size=")]) == 1
    assert "force=true" in words  # every job runs again, whatever an earlier rehearsal left in --work
    tradeoff = next(p for p in gpu_plan.PARTS if p.name == "tradeoff")
    words = gpu_plan.rehearsal_words(shlex.split(tradeoff.overrides))
    assert not any("$MODEL" in w for w in words) and "recipe=harness" in words
    assert not any(w.startswith("train.max_seq_len=") for w in words)  # the task's prompts need its length
    load_run_config(compose_config([w.split(",")[0] for w in words]))  # a rehearsal job (its first) composes
