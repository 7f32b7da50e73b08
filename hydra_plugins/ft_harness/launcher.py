"""`hydra/launcher=per_process`: every sweep job in a fresh process (submitit's local executor), in turn.

Why not the stock launchers: Hydra's basic launcher runs all jobs in one process, so one job's CUDA
context, allocator cache and leftover tensors count in the next job's memory figures; submitit's local
launcher starts every job at once, so jobs compete for the GPU and CPU they are measuring. This one keeps
submitit's process isolation, logs and timeouts and adds what a benchmark sweep needs:

- jobs run one at a time, or one per GPU in parallel when `gpus` lists several (CUDA_VISIBLE_DEVICES);
- every job's config is composed and checked before the first job starts (one clear error, nothing run);
- jobs whose record already exists with status ok are skipped (resume), unless `force=true`;
- a job whose process dies (killed, segfault, out of host memory) gets a `failed` record, and the sweep
  goes on;
- the terminal shows each job's own output (its progress bar) and `jobs done/total` with an ETA.
"""

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import DictConfig

log = logging.getLogger("harness.sweep")


@dataclass
class PerProcessLauncherConf:
    _target_: str = "hydra_plugins.ft_harness.launcher.PerProcessLauncher"
    submitit_folder: str = "${hydra.sweep.dir}/.submitit/%j"
    # A job is killed after this long (minutes); a benchmark job on a CPU can take a while.
    timeout_min: int = 24 * 60
    # GPUs to spread jobs over, one job per GPU at a time; empty: one job at a time on what is visible.
    gpus: list[int] = field(default_factory=list)
    # Copy each job's output to this terminal while it runs.
    stream_output: bool = True
    poll_s: float = 0.5


ConfigStore.instance().store(
    group="hydra/launcher", name="per_process", node=PerProcessLauncherConf, provider="ft-harness"
)


def _fmt_s(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class _Tail:
    """Copies what a job appends to its stdout/stderr files onto this terminal."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.offsets = {p: 0 for p in paths}

    def pump(self) -> None:
        for path, offset in self.offsets.items():
            if not path.exists():
                continue
            with path.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
            if chunk:
                self.offsets[path] = offset + len(chunk)
                sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                sys.stdout.flush()


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def visible_gpus() -> list[int]:
    """The CUDA GPUs this process may use: CUDA_VISIBLE_DEVICES's indices where it is set, else all."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        entries = [x.strip() for x in env.split(",") if x.strip()]
        if not all(x.isdigit() for x in entries):
            # submitit passes GPUs on as indices only; a UUID (MIG) would silently leave every job on the CPU
            from harness.config import ConfigError

            raise ConfigError(f"CUDA_VISIBLE_DEVICES={env!r}: the sweep launcher takes GPU indices (e.g. 0,1)")
        return [int(x) for x in entries]
    import torch  # noqa: PLC0415 (only when a sweep launches: keeps plugin discovery fast)

    return list(range(torch.cuda.device_count()))


class PerProcessLauncher(BaseSubmititLauncher):
    _EXECUTOR = "local"

    def checkpoint(self, *args: Any, **kwargs: Any) -> None:
        """No requeue after a timeout: a benchmark job that ran out of time is recorded as failed, not rerun."""
        return None

    def __init__(self, **params: Any) -> None:
        self.gpus: list[int] = list(params.pop("gpus", []) or [])
        self.stream_output: bool = bool(params.pop("stream_output", True))
        self.poll_s: float = float(params.pop("poll_s", 0.5))
        super().__init__(**params)

    def _job_config(self, overrides: Sequence[str]) -> DictConfig:
        assert self.hydra_context is not None and self.config is not None
        return self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))

    def _plan(self, job_overrides: Sequence[Sequence[str]]) -> list[tuple[int, list[str], Any, bool]]:
        """Compose and check every job before any starts; mark those with an ok record as done."""
        from harness.config import ConfigError, check_for_device, load_run_config
        from harness.results import existing_ok_record

        plan, errors = [], []
        for idx, overrides in enumerate(job_overrides):
            try:
                run_cfg = load_run_config(self._job_config(overrides))
                check_for_device(run_cfg)
            except ConfigError as e:
                errors.append(f"job #{idx} ({' '.join(filter_overrides(overrides))}): {e}")
                continue
            done = not run_cfg.force and existing_ok_record(run_cfg) is not None
            plan.append((idx, list(overrides), run_cfg, done))
        if errors:
            for line in errors:
                log.error("configuration error: %s", line)
            log.error("no job started: fix the %d bad configuration(s) above", len(errors))
            sys.exit(2)
        return plan

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        from harness.results import RECORD_POINTER, record_path, write_process_failure

        assert self.config is not None
        plan = self._plan(job_overrides)
        from harness.config import ConfigError

        try:
            inherited = visible_gpus()
        except ConfigError as e:
            log.error("configuration error: %s; no job started", e)
            sys.exit(2)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        executor = submitit.AutoExecutor(cluster="local", folder=self.params["submitit_folder"])

        total = len(plan)
        skipped = [p for p in plan if p[3]]
        todo = [p for p in plan if not p[3]]
        log.info(
            "sweep of %d job(s): %d to run, %d already have an ok record (force=true reruns them)",
            total,
            len(todo),
            len(skipped),
        )
        for idx, overrides, _, done in plan:
            log.info(
                "\t#%d : %s%s",
                initial_job_idx + idx,
                " ".join(filter_overrides(overrides)),
                "  [done, skipped]" if done else "",
            )

        def point(job_num: int, path: Path) -> None:
            # The end-of-sweep callback finds the sweep's records through these pointers.
            folder = sweep_dir / ".pointers" / str(job_num)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / RECORD_POINTER).write_text(str(path))

        returns: dict[int, JobReturn] = {}
        for idx, overrides, run_cfg, _ in skipped:
            point(initial_job_idx + idx, record_path(run_cfg))
            returns[idx] = JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=None)

        slots: list[int | None] = list(self.gpus) if self.gpus else [None]
        executor.update_parameters(timeout_min=self.params["timeout_min"], tasks_per_node=1)
        running: dict = {}
        queue = list(todo)
        durations: list[float] = []
        sweep_start = time.perf_counter()
        # A SIGTERM to this process alone (a scheduler, `kill`) would end it and leave the running job's process
        # training on, unseen, since submitit's job ignores SIGTERM. Turned into SystemExit it reaches the finally
        # below, which stops the running jobs; Ctrl-C (KeyboardInterrupt) goes the same way.
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if in_main_thread else None
        try:
            while queue or running:
                for slot in slots:
                    if slot in running or not queue:
                        continue
                    entry = queue.pop(0)
                    idx, overrides = entry[0], entry[1]
                    gpus = [slot] if slot is not None else inherited
                    # submitit's local executor sets CUDA_VISIBLE_DEVICES to exactly the GPUs it is given
                    # (none when given none): name them, or every job would train on the CPU.
                    # (AutoExecutor does not pass visible_gpus on: set it on the local executor itself.)
                    executor._executor.update_parameters(gpus_per_node=len(gpus), visible_gpus=gpus)
                    job_num = initial_job_idx + idx
                    job = executor.submit(
                        self, overrides, "hydra.sweep.dir", job_num, f"job_id_for_{job_num}", Singleton.get_state()
                    )
                    log.info(
                        "job #%d started%s: %s",
                        job_num,
                        f" on GPU {slot}" if slot is not None else "",
                        " ".join(filter_overrides(overrides)),
                    )
                    streamed = self.stream_output and len(slots) == 1
                    tail = _Tail([job.paths.stdout, job.paths.stderr]) if streamed else None
                    running[slot] = (job, entry, time.perf_counter(), tail)
                time.sleep(self.poll_s)
                for slot, (job, entry, started, tail) in list(running.items()):
                    if tail is not None:
                        tail.pump()
                    if not job.done():
                        continue
                    if tail is not None:
                        tail.pump()
                    del running[slot]
                    idx, overrides, run_cfg, _ = entry
                    try:
                        returns[idx] = job.results()[0]
                        state = "finished"
                    except Exception as e:  # the process died: no record was written, so write one
                        path = write_process_failure(run_cfg, f"job process died: {type(e).__name__}: {e}")
                        point(initial_job_idx + idx, path)
                        returns[idx] = JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=None)
                        state = "died (recorded as failed)"
                    durations.append(time.perf_counter() - started)
                    done = len(returns)
                    left = total - done
                    eta = sum(durations) / len(durations) * left / len(slots)
                    log.info(
                        "[sweep] %d/%d jobs done (%d skipped) | job #%d %s in %s | elapsed %s | ETA %s",
                        done,
                        total,
                        len(skipped),
                        initial_job_idx + idx,
                        state,
                        _fmt_s(durations[-1]),
                        _fmt_s(time.perf_counter() - sweep_start),
                        _fmt_s(eta) if left else "-",
                    )
        finally:
            for job, _, _, _ in running.values():
                if not job.done():
                    log.error("sweep stopped: cancelling job %s (it gets SIGINT)", job.job_id)
                    job.cancel()
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous)
        return [returns[p[0]] for p in plan]
