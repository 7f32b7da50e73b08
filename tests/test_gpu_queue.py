"""tools/gpu_queue.sh, the queue a GPU session starts in the background: every job of its default list composes
and checks, and a queue runs its sweeps in turn, packs each into a tarball with its exit code, and goes on
after a failing one."""

import itertools
import os
import re
import shlex
import subprocess
import sys
import tarfile

from harness.config import load_run_config

from .conftest import ROOT, compose_config

SCRIPT = ROOT / "tools" / "gpu_queue.sh"


def _default_queue() -> list[tuple[str, list[str]]]:
    text = SCRIPT.read_text()
    block = re.search(r"DEFAULT_QUEUE='(.*?)'\n", text, re.S).group(1)
    lines = [line.split("|", 1) for line in block.splitlines()]
    return [(name, shlex.split(words.replace("$MODEL", "/tmp/models/m.gguf"))) for name, words in lines]


def test_every_job_of_the_default_queue_composes_and_checks():
    queue = _default_queue()
    assert [name for name, _ in queue] == ["mfu", "bench", "bench_liger", "mfu_liger", "speedups", "scale"]
    for name, overrides in queue:
        sweep = next(o.split("=", 1)[1] for o in overrides if o.startswith("+sweeps="))
        assert name.split("_")[0] == sweep
        # the queue's own comma lists (e.g. the bench's four recipes), expanded as Hydra's sweeper would
        axes = [[f"{o.split('=', 1)[0]}={v}" for v in o.split("=", 1)[1].split(",")] for o in overrides]
        jobs = list(itertools.product(*axes))
        for job in jobs:
            load_run_config(compose_config(list(job)))
        if name == "bench":
            assert len(jobs) == 3  # documents, harness, harness_compiled (x the sweep's methods)
        if name == "mfu_liger":  # the MFU sweep's compile x attention axes, with Liger and sync-free steps fixed
            cfg = load_run_config(compose_config(list(jobs[0])))
            assert cfg.train.liger_kernel and cfg.train.sync_free_steps


def test_the_queue_packs_each_sweep_and_goes_on_after_a_failure(tmp_path, cache_dir):
    work = tmp_path / "work"
    queue = "\n".join(
        [
            "bad|method=nonexistent",
            # names $MODEL, so it waits for READY, which is there: it runs (the model path is not used by tiny)
            "tiny|model=tiny train=smoke train.max_steps=2 dataset.n_train=24 dataset.n_validation=4 "
            f"dataset.n_test=4 eval.enabled=false cache_dir={cache_dir} profile_note=$MODEL",
        ]
    )
    ready = tmp_path / "READY"
    ready.touch()
    env = {**os.environ, "WORK": str(work), "QUEUE": queue, "READY": str(ready), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    out = work / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "01_bad.done", "01_bad.tar.gz", "02_tiny.done", "02_tiny.tar.gz", "ALL.done"
    ]  # fmt: skip
    assert (out / "01_bad.done").read_text().split()[0] != "0"
    assert (out / "02_tiny.done").read_text().split()[0] == "0"
    with tarfile.open(out / "02_tiny.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.startswith("tiny/results/") and n.endswith(".json") for n in names)
    assert "tiny/sweep.log" in names


def test_a_sweep_that_needs_the_model_waits_for_ready_while_the_others_run(tmp_path):
    import time

    work, ready = tmp_path / "work", tmp_path / "READY"
    queue = "first|method=nonexistent\nsecond|method=nonexistent model.path=$MODEL"
    env = {**os.environ, "WORK": str(work), "QUEUE": queue, "READY": str(ready), "PYTHON": sys.executable}
    proc = subprocess.Popen(["bash", str(SCRIPT)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (work / "out" / "01_first.done").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # time enough for the second to start, were it not waiting
        assert (work / "out" / "01_first.done").exists()
        assert not (work / "out" / "02_second.done").exists() and proc.poll() is None
        ready.touch()
        assert proc.wait(timeout=120) == 0
        assert (work / "out" / "02_second.done").exists() and (work / "out" / "ALL.done").exists()
    finally:
        proc.kill()
