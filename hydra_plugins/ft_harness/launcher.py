"""`hydra/launcher=per_process`: every sweep job in a fresh process (submitit's local executor), in turn.

Why not the stock launchers: Hydra's basic launcher runs all jobs in one process, so one job's CUDA
context, allocator cache and leftover tensors count in the next job's memory figures; submitit's local
launcher starts every job at once, so jobs compete for the GPU and CPU they are measuring. This one keeps
submitit's process isolation, logs and timeouts and adds what a benchmark sweep needs:

- jobs run one at a time, or one per GPU in parallel when `gpus` lists several (CUDA_VISIBLE_DEVICES);
- every job's config is composed and checked before the first job starts, and its inputs too where jobs differ
  in them (one clear error, nothing run);
- jobs whose record already exists with status ok are skipped (resume), unless `force=true`;
- a job whose process dies (killed, segfault, out of host memory) gets a `failed` record, and the sweep
  goes on;
- the terminal shows each job's own output (its progress bar) and `jobs done/total` with an ETA.
"""

import contextlib
import importlib
import json
import logging
import os
import pickle
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
    # When the sweep stops (Ctrl-C, SIGTERM), a running job gets SIGINT; one still running this long after is killed.
    cancel_grace_s: float = 30.0


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
    NAME = "per_process"
    _executor: Any = None

    def checkpoint(self, *args: Any, **kwargs: Any) -> None:
        """No requeue after a timeout: a benchmark job that ran out of time is recorded as failed, not rerun."""
        return None

    def __init__(self, **params: Any) -> None:
        self.gpus: list[int] = list(params.pop("gpus", []) or [])
        self.stream_output: bool = bool(params.pop("stream_output", True))
        self.poll_s: float = float(params.pop("poll_s", 0.5))
        self.cancel_grace_s: float = float(params.pop("cancel_grace_s", 30.0))
        super().__init__(**params)

    def _job_config(self, overrides: Sequence[str]) -> DictConfig:
        assert self.hydra_context is not None and self.config is not None
        return self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))

    def _plan(self, job_overrides: Sequence[Sequence[str]]) -> list[tuple[int, list[str], Any, bool]]:
        """Compose and check every job before any starts; mark those with an ok record as done."""
        from harness.config import ConfigError
        from harness.results import existing_ok_record
        from harness.run.checks import check_for_device, load_run_config

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
        if not errors:
            errors = self._check_inputs(plan)
        if errors:
            for line in errors:
                log.error("configuration error: %s", line)
            log.error("no job started: fix the %d bad configuration(s) above", len(errors))
            sys.exit(2)
        return plan

    @staticmethod
    def _check_inputs(plan: list[tuple[int, list[str], Any, bool]]) -> list[str]:
        """Read and tokenise the inputs of the jobs to run, once per distinct input, where jobs differ in them (a
        dataset or train.max_seq_len axis): a prompt too long for one job's max_seq_len, or a damaged file of one
        dataset, then stops the sweep before any job trains. Where every job shares its inputs the first job finds
        such a problem before it trains, so nothing is loaded here (the libraries' import alone takes seconds)."""
        from harness.config import ConfigError
        from harness.run.checks import inputs_key

        first_job_of: dict[str, tuple[int, list[str], Any]] = {}
        for idx, overrides, run_cfg, done in plan:
            key = None if done else inputs_key(run_cfg)
            if key is not None:
                first_job_of.setdefault(key, (idx, overrides, run_cfg))
        if len(first_job_of) < 2:
            return []
        from datasets import disable_progress_bars

        from harness.run.inputs import prepare_inputs  # torch, transformers, datasets; never CUDA (tests/test_sweep.py)

        disable_progress_bars()  # in this process only: the jobs show their own
        log.info("checking the inputs of %d job(s) that differ in them before the first job", len(first_job_of))
        errors = []
        for idx, overrides, run_cfg in first_job_of.values():
            try:
                prepare_inputs(run_cfg)
            except ConfigError as e:
                errors.append(f"job #{idx} ({' '.join(filter_overrides(overrides))}): {e}")
        return errors

    def _start_job(self, overrides: list[str], job_num: int, slot: int | None, inherited: list[int], sweep_dir: Path):
        """Start one job in a fresh process (submitit's local executor); returns its submitit job."""
        import submitit

        if self._executor is None:
            self._executor = submitit.AutoExecutor(cluster="local", folder=self.params["submitit_folder"])
            self._executor.update_parameters(timeout_min=self.params["timeout_min"], tasks_per_node=1)
        gpus = [slot] if slot is not None else inherited
        # submitit's local executor sets CUDA_VISIBLE_DEVICES to exactly the GPUs it is given
        # (none when given none): name them, or every job would train on the CPU.
        # (AutoExecutor does not pass visible_gpus on: set it on the local executor itself.)
        self._executor._executor.update_parameters(gpus_per_node=len(gpus), visible_gpus=gpus)
        # A sweep started from a background shell has SIGINT ignored, and an ignored signal stays ignored through
        # exec: its job would miss the cancel's SIGINT until the run installs its own handler, seconds into its
        # imports. A handled signal is reset to the default in the new program, so the job starts with Python's.
        ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        in_main_thread = threading.current_thread() is threading.main_thread()
        if ignored and in_main_thread:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            return self._executor.submit(
                self, overrides, "hydra.sweep.dir", job_num, f"job_id_for_{job_num}", Singleton.get_state()
            )
        finally:
            if ignored and in_main_thread:
                signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _plan_and_gpus(self, job_overrides: Sequence[Sequence[str]]) -> tuple[list, list[int]]:
        """The checked plan and the GPUs jobs inherit; exits 2 on a bad configuration."""
        from harness.config import ConfigError

        plan = self._plan(job_overrides)
        try:
            return plan, visible_gpus()
        except ConfigError as e:
            log.error("configuration error: %s; no job started", e)
            sys.exit(2)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from harness.results import RECORD_POINTER, config_error_file, record_path, write_process_failure
        from harness.run import env  # late: env imports torch

        assert self.config is not None
        os.environ["FT_HARNESS_LAUNCHER"] = self.NAME  # the jobs' records say which launcher ran them
        plan, inherited = self._plan_and_gpus(job_overrides)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)

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
                    job_num = initial_job_idx + idx
                    job = self._start_job(overrides, job_num, slot, inherited, sweep_dir)
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
                        error_file = config_error_file(sweep_dir, initial_job_idx + idx)
                        if error_file.exists():  # bad input the pre-sweep check could not see: no record, stop
                            log.error(
                                "configuration error in job #%d (%s): %s; the sweep stops, no record written for "
                                "it (fix the configuration and run the sweep again: finished jobs are kept)",
                                initial_job_idx + idx,
                                " ".join(filter_overrides(overrides)),
                                json.loads(error_file.read_text(encoding="utf-8"))["error"],
                            )
                            sys.exit(2)
                        path = write_process_failure(
                            run_cfg, f"job process died: {type(e).__name__}: {e}", env.collect("cpu")
                        )
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
            self._stop([job for job, _, _, _ in running.values()])
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous)
        return [returns[p[0]] for p in plan]

    def _stop(self, jobs: Sequence[Any]) -> None:
        """SIGINT to each running job, as submitit's cancel sends it (the run removes its scratch folder and writes
        no record); SIGKILL to any still running cancel_grace_s later, so that no job trains on, unseen, after its
        sweep has gone. A job's id is its process id under both launchers."""
        running = [job for job in jobs if not job.done()]
        for job in running:
            log.error("sweep stopped: cancelling job %s (it gets SIGINT)", job.job_id)
            job.cancel()
        deadline = time.monotonic() + self.cancel_grace_s
        while any(not job.done() for job in running) and time.monotonic() < deadline:
            time.sleep(0.1)
        for job in running:
            if not job.done():
                log.error("job %s still runs %.0f s after its SIGINT: killing it", job.job_id, self.cancel_grace_s)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(job.job_id), signal.SIGKILL)
                while not job.done():
                    time.sleep(0.1)


# What the forked launcher imports once, in the sweep's own process, before any job: the libraries whose import
# does not touch the CUDA driver (tests/test_sweep.py checks it). Left to each job: peft and bitsandbytes, whose
# import asks the GPU for its compute capability (bitsandbytes.cuda_specs), which initialises CUDA; a CUDA
# context made before fork is unusable in the child. torch's compiler modules are the larger part of
# bitsandbytes' import time, and they are in the list.
SAFE_PRELOAD = (
    "torch",
    "torch._dynamo",
    "torch._inductor.compile_fx",
    "transformers",
    "transformers.modeling_utils",
    "transformers.models.auto.modeling_auto",
    "accelerate",
    "datasets",
    "evaluate",
    "pandas",
)


@dataclass
class ForkedLauncherConf(PerProcessLauncherConf):
    _target_: str = "hydra_plugins.ft_harness.launcher.ForkedLauncher"
    submitit_folder: str = "${hydra.sweep.dir}/.forked/%j"
    # Modules imported once before the first job; each job is a fork of that process.
    preload: list[str] = field(default_factory=lambda: list(SAFE_PRELOAD))


ConfigStore.instance().store(group="hydra/launcher", name="forked", node=ForkedLauncherConf, provider="ft-harness")


def preload(modules: Sequence[str]) -> dict[str, float]:
    """Import `modules` in this process, CUDA checks through NVML only; returns seconds per module.

    PYTORCH_NVML_BASED_CUDA_CHECK makes torch.cuda.is_available() ask NVML instead of the CUDA runtime, whose
    first call would initialise the driver in this process and leave the forked jobs without CUDA."""
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    seconds: dict[str, float] = {}
    for name in modules:
        start = time.perf_counter()
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 (an optimisation only: the job imports what it needs itself)
            log.warning("preload of %s failed (%s); the jobs import it themselves", name, e)
        seconds[name] = time.perf_counter() - start
    return seconds


def cuda_initialised() -> bool:
    """Whether this process has a CUDA context (a fork of it could not use CUDA)."""
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


@dataclass
class _ForkedPaths:
    stdout: Path
    stderr: Path
    result: Path


class _ForkedJob:
    """One job in a child forked from the sweep's process; answers what the launch loop asks of a submitit job."""

    def __init__(self, pid: int, folder: Path, timeout_s: float) -> None:
        self.pid = pid
        self.job_id = str(pid)
        self.paths = _ForkedPaths(folder / "stdout", folder / "stderr", folder / "result.pkl")
        self.started = time.monotonic()
        self.timeout_s = timeout_s
        self.exit: str | None = None  # how the process ended, once it has

    def done(self) -> bool:
        if self.exit is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit = (
                    f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
                    if os.WIFSIGNALED(status)
                    else f"exit code {os.waitstatus_to_exitcode(status)}"
                )
            elif time.monotonic() - self.started > self.timeout_s:
                log.error("job %s ran past timeout_min: killing it", self.job_id)
                self._kill(signal.SIGKILL)
        return self.exit is not None

    def results(self) -> list[JobReturn]:
        """The child's JobReturn; raises when the process ended without one (killed, crashed)."""
        if not self.paths.result.exists():
            raise RuntimeError(f"the job's process ended without a result ({self.exit})")
        with self.paths.result.open("rb") as f:
            return [pickle.load(f)]

    def _kill(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def cancel(self) -> None:
        """SIGINT as submitit's cancel sends it (the run cleans up and leaves no record); the launcher kills a job
        still running after its grace."""
        self._kill(signal.SIGINT)


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGINT when the sweep's process dies (kill -9 included), so no job trains
    on, orphaned, after its sweep has gone. SIGINT: the run then removes its scratch folder as on Ctrl-C."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGINT)


class ForkedLauncher(PerProcessLauncher):
    """`hydra/launcher=forked`: the heavy libraries are imported once per sweep; each job runs in a child forked
    from that process, so it starts in well under a second instead of re-importing torch and transformers.

    What a job keeps from running in a process of its own: its CUDA context and caching allocator (CUDA is never
    initialised in the parent: the plan, which asks the GPU about bf16, runs in a forked child too), its own
    record, `oom`/`failed` records when it dies, Ctrl-C / SIGTERM / kill -9 handling and resume.
    """

    NAME = "forked"

    def __init__(self, **params: Any) -> None:
        self.preload_modules: list[str] = list(params.pop("preload", SAFE_PRELOAD))
        super().__init__(**params)

    def _plan_and_gpus(self, job_overrides: Sequence[Sequence[str]]) -> tuple[list, list[int]]:
        """The plan is made in a forked child: checking a job asks the GPU (bf16 support), which would create a
        CUDA context in this process."""
        seconds = preload(self.preload_modules)
        log.info("preloaded %d module(s) for the forked jobs in %.1f s", len(seconds), sum(seconds.values()))
        if cuda_initialised():
            log.error("a preloaded module initialised CUDA, so forked jobs could not use the GPU; no job started "
                      "(drop it from hydra.launcher.preload, or use hydra/launcher=per_process)")  # fmt: skip
            sys.exit(2)
        read, write = os.pipe()
        _flush()
        pid = os.fork()
        if pid == 0:  # the planning child
            os.close(read)
            code = 0
            try:
                payload = ("ok", super()._plan_and_gpus(job_overrides))
            except SystemExit as e:
                payload, code = ("exit", e.code), 0
            except BaseException as e:  # noqa: BLE001 (handed to the parent, which raises it)
                payload = ("error", f"{type(e).__name__}: {e}")
            with os.fdopen(write, "wb") as f:
                pickle.dump(payload, f)
            _flush()
            os._exit(code)
        os.close(write)
        with os.fdopen(read, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        if not data:
            raise RuntimeError("the sweep's planning process died before it answered")
        kind, value = pickle.loads(data)
        if kind == "exit":
            sys.exit(value)
        if kind == "error":
            raise RuntimeError(f"planning the sweep failed: {value}")
        return value

    def _start_job(self, overrides: list[str], job_num: int, slot: int | None, inherited: list[int], sweep_dir: Path):
        folder = Path(str(self.params["submitit_folder"]).replace("%j", f"job{job_num}"))
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("stdout", "stderr", "result.pkl"):
            (folder / name).unlink(missing_ok=True)
        _flush()
        pid = os.fork()
        if pid == 0:
            self._run_child(overrides, job_num, slot, folder)  # never returns
        return _ForkedJob(pid, folder, timeout_s=self.params["timeout_min"] * 60)

    def _run_child(self, overrides: list[str], job_num: int, slot: int | None, folder: Path) -> None:
        """The job, in the forked child: output to its files, the GPU it was given, Hydra's own run_job."""
        code = 1
        try:
            from harness import startup

            startup.forked()
            _die_with_parent()
            # SIGINT (Ctrl-C, cancel) raises KeyboardInterrupt and SIGTERM (the parent's handler, inherited)
            # SystemExit: either way the run removes its scratch folder and writes no record
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for fd, name in ((1, "stdout"), (2, "stderr")):
                target = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(target, fd)
                os.close(target)
            if slot is not None:  # before anything in this process touches CUDA
                os.environ["CUDA_VISIBLE_DEVICES"] = str(slot)
            result = self._run_here(overrides, job_num)
            tmp = folder / "result.pkl.tmp"
            with tmp.open("wb") as f:
                pickle.dump(result, f)
            os.replace(tmp, folder / "result.pkl")
            code = 0
        except KeyboardInterrupt:
            code = 128 + signal.SIGINT
        except BaseException:  # noqa: BLE001 (the parent records a job that ended without a result)
            import traceback

            traceback.print_exc()
        finally:
            _flush()
            os._exit(code)

    def _run_here(self, overrides: list[str], job_num: int) -> JobReturn:
        """BaseSubmititLauncher.__call__ without submitit's job environment (there is none in a fork)."""
        from hydra.core.utils import run_job, setup_globals
        from omegaconf import open_dict

        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        setup_globals()
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(sweep_config.hydra.job) as job:
            job.id = f"forked_{os.getpid()}"
            job.num = job_num
        return run_job(
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            config=sweep_config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )


def _flush() -> None:
    """Before fork: what this process has buffered would otherwise be written twice."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
