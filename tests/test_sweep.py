"""Sweeps: every sweep file composes and checks; a job that dies is recorded and the sweep goes on; a sweep
killed mid-job (kill -9) leaves no half-written record and, run again, runs only what is missing."""

import contextlib
import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from harness.config import ConfigError
from harness.results import run_key
from harness.run.checks import load_run_config
from harness.startup import STARTUP_PARTS

from .conftest import FAST, ROOT, compose_config

SWEEPS = sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("sweep", SWEEPS)
def test_every_job_of_every_sweep_composes_and_checks(sweep):
    sweep_file = yaml.safe_load((ROOT / "sweeps" / f"{sweep}.yaml").read_text())
    params = sweep_file["hydra"]["sweeper"]["params"]
    axes = [[f"{key}={value}" for value in str(values).split(",")] for key, values in params.items()]
    labels, keys = [], set()
    for job in itertools.product(*axes):
        cfg = compose_config([f"+sweeps={sweep}", *job])
        assert cfg.sweep_name == sweep_file["sweep_name"] == sweep
        run_cfg = load_run_config(cfg)
        keys.add(run_key(run_cfg))
        if run_cfg.method.label not in labels:
            labels.append(run_cfg.method.label)
    assert len(keys) == math.prod(len(a) for a in axes), "two jobs of one sweep would measure the same config"
    if sweep == "tradeoff":
        assert labels == [
            "full", "lora-r4", "lora-r8", "lora-r16", "lora-r32", "lora-r64",
            "qlora-nf4-r16", "qlora-nf4-dq-r16", "qlora-fp4-r16", "qlora-fp4-dq-r16",
        ]  # fmt: skip
    if sweep == "evidence":
        # the methods most claims compare first (an interrupted sweep has decided the most it can), fp32 pinned,
        # its records where the published report reads them
        assert labels[:4] == ["full", "lora-r16", "qlora-nf4-r16", "qlora-fp4-r16"] and len(labels) == 10
        assert run_cfg.train.precision == "fp32" and run_cfg.profile_name == "full"
        assert run_cfg.results_dir == "results/published/cpu-evidence/smollm2-135m-extraction"


def _sweep_cmd(tmp_path: Path, methods: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "harness", "-m", f"method={methods}", *FAST,
        f"results_dir={tmp_path / 'results'}", f"report_dir={tmp_path / 'reports'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}", "eval.latency_prompts=0", "eval.forgetting_chunks=0", *extra,
    ]  # fmt: skip


def _env(cache_dir: str) -> dict:
    return {**os.environ, "FT_HARNESS_CACHE": cache_dir, "HF_HUB_OFFLINE": "1"}


LAUNCHERS = ["per_process", "forked"]


def _is_job(p: psutil.Process) -> bool:
    """A submitit job process, or a forked job (its output goes to its job folder under .forked/)."""
    if "submitit.core._submit" in " ".join(p.cmdline()):
        return True
    return any("/.forked/" in f.path for f in p.open_files())


def _job_processes(parent: psutil.Process) -> list[psutil.Process]:
    """The live job processes under the sweep (zombies and vanished ones left out)."""
    jobs = []
    for p in parent.children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and _is_job(p):
                jobs.append(p)
        except psutil.Error:
            continue
    return jobs


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_job_whose_process_dies_is_recorded_and_the_sweep_goes_on(tmp_path, cache_dir, launcher):
    proc = subprocess.Popen(
        _sweep_cmd(tmp_path, "lora,lora_r4", f"hydra/launcher={launcher}"), cwd=ROOT, env=_env(cache_dir),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    first_job = _wait_for(lambda: _job_processes(psutil.Process(proc.pid)), 120, "the first job's process")[0]
    first_job.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    records = {
        r["run"]["method_label"]: r for r in map(json.loads, map(Path.read_text, (tmp_path / "results").glob("*.json")))
    }
    assert records["lora-r16"]["status"] == "failed"
    assert "job process died" in records["lora-r16"]["error"]
    assert records["lora-r4"]["status"] == "ok"
    assert "2/2 jobs done" in out
    table = out[out.index("2 run(s) of this sweep") :]
    assert "| lora-r16 " in table and "failed" in table and "| lora-r4 " in table
    assert (tmp_path / "reports" / "report.md").exists()


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_bad_input_only_a_job_can_see_stops_the_sweep_with_one_clear_error(tmp_path, cache_dir, launcher):
    """Prompts longer than train.max_seq_len are found once the job tokenises the data: the sweep stops there
    with that message (exit 2), records nothing for it and starts no further job (each would have "died")."""
    proc = subprocess.run(
        _sweep_cmd(tmp_path, "lora,lora_r4", f"hydra/launcher={launcher}", "train.max_seq_len=16"), cwd=ROOT,
        env=_env(cache_dir), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "configuration error in job #0 (method=lora" in out
    assert "every train prompt is at least that long" in out
    assert "job #1 started" not in out and "died" not in out
    assert not list((tmp_path / "results").glob("*.json"))


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_jobs_that_differ_in_their_inputs_have_them_checked_before_the_first_starts(tmp_path, cache_dir, launcher):
    """A max_seq_len axis: the value too short for every prompt stops the sweep before any job trains, naming the
    job, though an earlier job could have run; no record, no job started."""
    cmd = [*_sweep_cmd(tmp_path, "lora", f"hydra/launcher={launcher}"), "train.max_seq_len=256,16"]
    cmd.remove("train.max_seq_len=256")
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(cache_dir), capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "checking the inputs of 2 job(s)" in out
    assert "configuration error: job #1 (method=lora" in out and "job #0 (" not in out
    assert "train.max_seq_len=16): train.max_seq_len=16: every train prompt is at least that long" in out
    assert "Map:" not in out  # the check is quiet (the jobs show their own progress bars)
    assert "no job started" in out and not re.search(r"job #\d+ started", out)
    assert not list((tmp_path / "results").glob("*.json"))


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_sigterm_to_the_sweep_stops_its_running_job_too(tmp_path, cache_dir, launcher):
    """submitit's job process ignores SIGTERM: a SIGTERM to the sweep alone (a scheduler, `kill PID`) must not
    leave it training on, unseen, after the sweep has gone."""
    cmd = _sweep_cmd(tmp_path, "lora", "train.max_steps=100000", "eval.enabled=false", f"hydra/launcher={launcher}")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(cache_dir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        job = _wait_for(lambda: _job_processes(psutil.Process(proc.pid)), 120, "the job's process")[0]
        time.sleep(5)  # into its imports or training
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) != 0
        # seconds on an idle machine; minutes when CPU-bound work runs beside the suite (seen here: over 120 s)
        _wait_for(lambda: not job.is_running() or job.status() == psutil.STATUS_ZOMBIE, 300, "the job to stop")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_sweep_from_a_background_shell_stopped_during_a_jobs_imports_stops_the_job(tmp_path, cache_dir, launcher):
    """A background shell starts the sweep with SIGINT ignored. A SIGTERM while the job still imports its
    libraries (before the run installs its own SIGINT handler) must stop the job with the cancel's SIGINT, well
    inside the grace after which the launcher would kill it (set long here, so only the SIGINT can do it)."""
    cmd = _sweep_cmd(tmp_path, "lora", "train.max_steps=100000", "eval.enabled=false", f"hydra/launcher={launcher}",
                     "hydra.launcher.cancel_grace_s=600")  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(cache_dir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=_ignore_sigint)  # fmt: skip
    try:
        job = _wait_for(lambda: _job_processes(psutil.Process(proc.pid)), 120, "the job's process")[0]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) != 0
        assert not job.is_running() or job.status() == psutil.STATUS_ZOMBIE
        assert not list((tmp_path / "results").glob("*.json"))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_job_that_ignores_the_cancel_is_killed_after_the_grace():
    from hydra_plugins.ft_harness.launcher import PerProcessLauncher

    class Job:  # what the launch loop asks of a job; its id is its process id, as under both launchers
        def __init__(self) -> None:
            code = "import signal as s, time; s.signal(s.SIGINT, s.SIG_IGN); print(1, flush=True); time.sleep(99)"
            self.process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
            self.process.stdout.readline()  # SIGINT is ignored from here on
            self.job_id = str(self.process.pid)

        def done(self) -> bool:
            return self.process.poll() is not None

        def cancel(self) -> None:
            self.process.send_signal(signal.SIGINT)

    launcher = PerProcessLauncher(submitit_folder="unused", timeout_min=1, cancel_grace_s=1.0)
    job = Job()
    start = time.monotonic()
    launcher._stop([job])
    assert job.process.returncode == -signal.SIGKILL
    assert 1.0 <= time.monotonic() - start < 30


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_sweep_killed_mid_job_resumes_with_only_what_is_missing(tmp_path, cache_dir, launcher):
    results = tmp_path / "results"
    # 20 steps (about 8 s a job here): a forked job of the smoke profile's 4 steps ends in 3-4 s, close to the
    # 3 s this waits after the second job starts
    cmd = _sweep_cmd(tmp_path, "lora_r4,lora_r8,lora", f"hydra/launcher={launcher}", "train.max_steps=20")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(cache_dir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    # Note the first job's process while it runs (read after its record, it could already be the second job's: a
    # forked job starts within a second of the first one's end), wait for the first record, then for the second
    # job's process, then kill the whole sweep.
    parent = psutil.Process(proc.pid)
    first_job = _wait_for(lambda: _job_processes(parent), 120, "the first job's process")
    first_job_pids = {p.pid for p in first_job}
    _wait_for(lambda: list(results.glob("*.json")), 300, "the first record")
    _wait_for(lambda: {p.pid for p in _job_processes(parent)} - first_job_pids, 120, "the second job's process")
    time.sleep(3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    left = sorted(p.name for p in results.iterdir())
    records = [json.loads(p.read_text()) for p in results.glob("*.json")]
    assert len(records) == 1 and records[0]["run"]["method_label"] == "lora-r4", left
    assert not [n for n in left if n.endswith(".tmp")], left
    first = results / next(n for n in left if n.endswith(".json"))  # its per-example files sort before it
    first_started = records[0]["run"]["started_at"]

    rerun = subprocess.run(cmd, cwd=ROOT, env=_env(cache_dir), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    log = rerun.stdout + rerun.stderr
    assert "3 job(s): 2 to run, 1 already have an ok record" in log
    records = {r["run"]["method_label"]: r for r in map(json.loads, map(Path.read_text, results.glob("*.json")))}
    assert sorted(records) == ["lora-r16", "lora-r4", "lora-r8"]
    assert all(r["status"] == "ok" for r in records.values())
    assert records["lora-r4"]["run"]["started_at"] == first_started, "the finished job ran again"
    for r in records.values():  # a sweep job's start is split in full, and the split adds up to the start
        m = r["metrics"]
        assert list(m["startup_seconds"]) == [part for _, part in STARTUP_PARTS]
        assert all(v >= 0 for v in m["startup_seconds"].values())
        start = m["process_seconds"] - m["total_seconds"]
        assert abs(sum(m["startup_seconds"].values()) - start) < 0.05, (m["startup_seconds"], start)
    assert first.exists()
    table = log[log.index("3 run(s) of this sweep") :]
    assert all(f"| {label} " in table for label in ("lora-r4", "lora-r8", "lora-r16"))

    assert {r["run"]["launcher"] for r in records.values()} == {launcher}
    # force=true reruns a job that has an ok record
    forced = subprocess.run(
        [*_sweep_cmd(tmp_path, "lora_r4", f"hydra/launcher={launcher}", "train.max_steps=20"), "force=true"], cwd=ROOT,
        env=_env(cache_dir), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert forced.returncode == 0
    again = json.loads(first.read_text())
    assert again["run"]["started_at"] != first_started


def test_the_launcher_gives_jobs_the_visible_gpus_and_never_requeues(monkeypatch):
    from harness.config import ConfigError
    from hydra_plugins.ft_harness.launcher import PerProcessLauncher, visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert visible_gpus() == [2, 5]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-4f2a")
    with pytest.raises(ConfigError, match="takes GPU indices"):
        visible_gpus()
    # submitit requeues a timed-out job whose callable checkpoints; a benchmark job must not run twice.
    assert PerProcessLauncher.checkpoint(object()) is None


def test_scale_sweep_trains_only_and_writes_the_scale_report(tmp_path, cache_dir):
    """The scale sweep's path on CPU: random-init model, synthetic tokens, no evaluation, a memory record per
    job and the scale report (measured next to predicted)."""
    report_dir = tmp_path / "report"
    cmd = [
        sys.executable, "-m", "harness", "+sweeps=scale", "model=tiny", "method=lora,qlora",
        "train.gradient_checkpointing=true", "train.optim=adamw_torch", "train.max_seq_len=64",
        "train.batch_size=2", "train.max_steps=2", f"results_dir={tmp_path / 'results'}",
        f"report_dir={report_dir}", f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ]  # fmt: skip
    # The launcher hands each job the GPUs the sweep may use (submitit would otherwise hide them all and
    # every job would train on the CPU, as it did on the first GPU machine).
    env = {**_env(cache_dir), "CUDA_VISIBLE_DEVICES": "3"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "results").glob("*.json")]
    assert sorted(r["run"]["method_label"] for r in records) == ["lora-r16", "qlora-nf4-r16"]
    for r in records:
        assert r["status"] == "ok"
        assert r["environment"]["cuda_visible_devices"] == "3"
        assert r["config"]["dataset"]["source"] == "synthetic"
        assert "score" not in r["metrics"] and "eval_loss" not in r["metrics"]
        assert r["metrics"]["train_tokens"] == 2 * 2 * 64  # every position of every sequence trained
        assert r["metrics"]["memory"]["peak_rss_mib"] > 0
    report = (report_dir / "report.md").read_text()
    assert "| tiny    | lora-r16" in report and "predicted MiB" in report
    # the sweep's overhead beside the training MFU sees, a row per job, the start split from the records
    overhead = report[report.index("## Where the time went") :]
    assert "| tiny lora-r16 (2 x 64, compile off, sync-free off, sdpa)" in overhead
    assert "median per job: interpreter and launcher" in overhead


# Run in a fresh interpreter: torch.cuda as NVML describes a one-GPU machine (is_available, device_count answer
# without the CUDA runtime), and every call that would initialise CUDA recorded and refused.
_CUDA_SPY = """
import json, sys
import torch
calls = []
def refuse(name):
    def call(*args, **kwargs):
        calls.append(name)
        raise RuntimeError(f"torch.cuda.{name} would initialise CUDA")
    return call
torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: 1
for name in ("_lazy_init", "init", "get_device_capability", "get_device_properties", "current_device",
             "set_device", "is_bf16_supported", "synchronize", "mem_get_info"):
    setattr(torch.cuda, name, refuse(name))
from hydra_plugins.ft_harness.launcher import SAFE_PRELOAD, preload
modules = sys.argv[1:] or list(SAFE_PRELOAD)
preload(modules)
print(json.dumps({"calls": calls, "imported": [m for m in modules if m in sys.modules],
                  "heavy_left": [m for m in ("peft", "bitsandbytes") if m in sys.modules]}))
"""


def _preload_under_spy(*modules: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTORCH_NVML_BASED_CUDA_CHECK"}
    out = subprocess.run([sys.executable, "-c", _CUDA_SPY, *modules], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_forked_launchers_preload_never_initialises_cuda():
    """A CUDA context made in the sweep's process before fork would leave every forked job without a GPU."""
    from hydra_plugins.ft_harness.launcher import SAFE_PRELOAD

    safe = _preload_under_spy()
    assert safe == {"calls": [], "imported": list(SAFE_PRELOAD), "heavy_left": []}
    # what the per_process launcher imports in the sweep's process to check jobs' inputs
    inputs_preload = {"calls": [], "imported": ["harness.run.inputs"], "heavy_left": []}
    assert _preload_under_spy("harness.run.inputs") == inputs_preload
    # the check can fail: bitsandbytes (and peft, which imports it) ask the GPU for its compute capability
    assert "get_device_capability" in _preload_under_spy("bitsandbytes")["calls"]
    assert "get_device_capability" in _preload_under_spy("peft")["calls"]


def test_a_forked_job_ends_when_its_sweep_is_killed(tmp_path, cache_dir):
    """kill -9 of the sweep's process alone (no finally runs there): its forked job is not left training on."""
    cmd = _sweep_cmd(tmp_path, "lora", "train.max_steps=100000", "eval.enabled=false", "hydra/launcher=forked")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(cache_dir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        job = _wait_for(lambda: _job_processes(psutil.Process(proc.pid)), 120, "the job's process")[0]
        time.sleep(5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # seconds on an idle machine; minutes when CPU-bound work runs beside the suite (seen here: over 120 s)
        _wait_for(lambda: not job.is_running() or job.status() == psutil.STATUS_ZOMBIE, 300, "the job to stop")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not list((tmp_path / "results").glob("*.json")) if (tmp_path / "results").exists() else True


def test_forked_jobs_record_what_per_process_jobs_record(tmp_path, cache_dir):
    """The same job under both launchers: the same training and scores; only the start differs (no interpreter,
    no torch/transformers import in a forked job)."""
    records = {}
    for launcher in LAUNCHERS:
        out = tmp_path / launcher
        cmd = _sweep_cmd(out, "lora_r4,qlora", f"hydra/launcher={launcher}")
        done = subprocess.run(cmd, cwd=ROOT, env=_env(cache_dir), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        records[launcher] = {
            r["run"]["method_label"]: r for r in map(json.loads, map(Path.read_text, (out / "results").glob("*.json")))
        }
    assert sorted(records["forked"]) == sorted(records["per_process"]) == ["lora-r4", "qlora-nf4-r16"]
    for label, per_process in records["per_process"].items():
        forked = records["forked"][label]
        assert forked["status"] == per_process["status"] == "ok"
        assert forked["run"]["key"] == per_process["run"]["key"]
        assert (forked["run"]["launcher"], per_process["run"]["launcher"]) == ("forked", "per_process")
        for name in ("train_loss", "eval_loss", "train_tokens", "steps", "params", "artifact_bytes"):
            assert forked["metrics"][name] == per_process["metrics"][name], (label, name)
        untimed = [{k: v for k, v in r["metrics"]["score"].items() if k != "generation"} for r in (forked, per_process)]
        assert untimed[0] == untimed[1], label
        start = {k: r["metrics"]["startup_seconds"] for k, r in (("forked", forked), ("per_process", per_process))}
        assert start["forked"]["interpreter_and_launcher"] < 0.1
        assert start["forked"]["library_imports"] < start["per_process"]["library_imports"] / 2, start


def _makefile_sweeps() -> list[list[str]]:
    """The overrides of every `python -m harness` sweep line of the Makefile (not `report`): a make `$(if ..,X)`
    taken as X (the CPU branch), other make variables dropped."""
    lines = []
    for line in (ROOT / "Makefile").read_text().splitlines():
        if "-m harness" not in line or "-m harness report" in line:
            continue
        text = re.sub(r"\$\([A-Z]+\)", "", line.split("-m harness", 1)[1])
        words = re.sub(r"\$\(if \$\([^)]*\),([^)]*)\)", r"\1", text).split()
        lines.append([w for w in words if w not in ("--multirun", "-m")])
    return lines


@pytest.mark.parametrize("overrides", _makefile_sweeps(), ids=" ".join)
def test_every_makefile_sweep_line_is_one_hydra_accepts_and_its_jobs_check(overrides):
    # Hydra refuses a sweep over its own keys ("Sweeping over Hydra's configuration is not supported"):
    # `hydra.sweeper.params.method=a,b` failed so, after the sweep started; `method=a,b` overrides the file's grid
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    sweeps = [o for o in parsed if o.is_sweep_override()]
    assert not [o.key_or_group for o in sweeps if o.key_or_group.startswith("hydra.")]
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    axes = [[f"{o.key_or_group}={v}" for v in o.sweep_string_iterator()] for o in sweeps]
    for job in itertools.product(*axes):
        try:
            load_run_config(compose_config([*fixed, *job]))
        except ConfigError as e:
            # the seeds at the chosen rate: a clear refusal until the committed search has chosen one
            assert "train.learning_rate_scale=tuned" in fixed and str(e).startswith("train.learning_rate_scale=tuned:")
