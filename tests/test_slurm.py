"""The cluster path for real: a one-node SLURM cluster (Debian's slurm-wlm and munge) started here, a two-job tiny
sweep through hydra/launcher=slurm, its records and report, a resume that skips both, and what `scancel` of a
running job leaves. .ci/run installs the packages and requires this test (FT_HARNESS_REQUIRE_SLURM=1)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import FAST, ROOT

DAEMONS = ("munged", "slurmctld", "slurmd")
HAVE_SLURM = all(shutil.which(d) for d in DAEMONS) and hasattr(os, "geteuid") and os.geteuid() == 0
pytestmark = pytest.mark.skipif(
    not HAVE_SLURM and not os.environ.get("FT_HARNESS_REQUIRE_SLURM"),
    reason="needs Debian's slurm-wlm and munge, as root (.ci/run installs them and requires this test)",
)


def _conf(folder: Path) -> str:
    host = socket.gethostname().split(".")[0]
    memory_mb = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 - 1024
    return "\n".join([
        "ClusterName=ft", f"SlurmctldHost={host}", "AuthType=auth/munge", "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none", "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
        "SlurmUser=root", "SlurmdUser=root", f"StateSaveLocation={folder}/state", f"SlurmdSpoolDir={folder}/spool",
        f"SlurmctldPidFile={folder}/slurmctld.pid", f"SlurmdPidFile={folder}/slurmd.pid",
        f"SlurmctldLogFile={folder}/slurmctld.log", f"SlurmdLogFile={folder}/slurmd.log", "ReturnToService=2",
        "MpiDefault=none", "JobAcctGatherType=jobacct_gather/none", "KillWait=5",
        f"NodeName={host} CPUs={os.cpu_count()} RealMemory={memory_mb} State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", "",
    ])  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """munged, slurmctld -i and slurmd with a slurm.conf of this machine's CPUs and memory; stopped at the end."""
    assert HAVE_SLURM, "slurm-wlm and munge are not installed (or not root): apt-get install slurm-wlm munge"
    folder = tmp_path_factory.mktemp("slurm")
    (folder / "state").mkdir()
    (folder / "spool").mkdir()
    conf = folder / "slurm.conf"
    conf.write_text(_conf(folder))
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        subprocess.run(["mungekey", "--create"], check=True)
    subprocess.run(["chown", "munge:munge", str(key)], check=False)
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    subprocess.run(["chown", "munge:munge", "/run/munge"], check=False)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started = []
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
        subprocess.run(["munged", "--force"], check=True)
        started.append("munged")
    subprocess.run(["slurmctld", "-i", "-f", str(conf)], check=True, env=env)
    subprocess.run(["slurmd", "-f", str(conf)], check=True, env=env)
    started += ["slurmctld", "slurmd"]
    deadline = time.time() + 60
    while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=env).stdout:
        assert time.time() < deadline, (folder / "slurmctld.log").read_text()[-2000:]
        time.sleep(1)
    yield env
    for daemon in reversed(started):
        subprocess.run(["pkill", "-x", daemon], check=False)


def _sweep(tmp_path: Path, methods: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "harness", "+sweeps=ranks", f"method={methods}", *FAST, "eval.latency_prompts=0",
        "eval.forgetting_chunks=0", "hydra/launcher=slurm", "hydra.launcher.partition=debug",
        "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=4",
        f"results_dir={tmp_path / 'results'}", f"report_dir={tmp_path / 'reports'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}", *extra,
    ]  # fmt: skip


def _records(tmp_path: Path) -> dict[str, dict]:
    paths = (tmp_path / "results").glob("*.json")
    return {r["run"]["method_label"]: r for r in map(json.loads, map(Path.read_text, paths))}


def test_a_sweep_runs_on_slurm_writes_its_records_and_report_and_resumes(cluster, tmp_path, cache_dir):
    env = {**cluster, "FT_HARNESS_CACHE": cache_dir, "HF_HUB_OFFLINE": "1"}
    first = subprocess.run(_sweep(tmp_path, "lora_r4,lora_r8"), cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=900)  # fmt: skip
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    records = _records(tmp_path)
    assert sorted(records) == ["lora-r4", "lora-r8"] and all(r["status"] == "ok" for r in records.values())
    assert (tmp_path / "reports" / "report.md").exists()
    # run again: each job finds its ok record and skips (resume happens inside the job on a cluster)
    again = subprocess.run(_sweep(tmp_path, "lora_r4,lora_r8"), cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=900)  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    line = "a record of this config exists with status ok, skipping"
    skipped = [p for p in (tmp_path / "sweep").rglob("*.log") if line in p.read_text(errors="replace")]
    assert len(skipped) == 2  # each job's own Hydra log
    assert {k: r["run"]["started_at"] for k, r in _records(tmp_path).items()} == {
        k: r["run"]["started_at"] for k, r in records.items()
    }


def test_what_scancel_of_a_running_job_leaves(cluster, tmp_path, cache_dir):
    """scancel sends SIGTERM (which submitit's job ignores) and, after KillWait, SIGKILL: the job is gone from the
    queue and wrote no record. On a cluster without accounting (no slurmdbd, as here) submitit cannot learn that
    the job ended (sacct fails), so the sweep keeps waiting: stop it (Ctrl-C) and run it again to resume."""
    env = {**cluster, "FT_HARNESS_CACHE": cache_dir, "HF_HUB_OFFLINE": "1"}
    cmd = _sweep(tmp_path, "lora_r4", "train.max_steps=100000", "eval.enabled=false")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        deadline, job = time.time() + 300, ""
        while not job:
            assert time.time() < deadline and proc.poll() is None, "the job never ran"
            job = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i"], capture_output=True, text=True,
                                 env=env).stdout.strip()  # fmt: skip
            time.sleep(1)
        time.sleep(10)  # into its training
        subprocess.run(["scancel", job.splitlines()[0]], check=True, env=env)
        deadline = time.time() + 60
        while subprocess.run(["squeue", "-h"], capture_output=True, text=True, env=env).stdout.strip():
            assert time.time() < deadline, "the cancelled job stayed in the queue"
            time.sleep(1)
        time.sleep(15)
        assert not list((tmp_path / "results").glob("*.json")) if (tmp_path / "results").exists() else True
        assert proc.poll() is None, "the sweep ended: submitit learned the job's end after all (update the docs)"
        proc.send_signal(signal.SIGINT)  # what a user does (Hydra's launcher may take a while to give up)
        try:
            out, _ = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate(timeout=30)
        assert "sacct" in out  # submitit said why it could not tell the job's state
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
