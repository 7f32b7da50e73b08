"""Measurement apart from the training loop: a memory sampler thread and a per-step JSON-lines logger.

Peak memory is reported from several sources side by side because they answer different questions:
NVML sees what the driver gave this process (CUDA context and allocator cache included) and what the
whole device holds; torch's max_memory_allocated counts live tensors and max_memory_reserved what its
caching allocator holds. On CPU the only figure is the process's resident set (RSS), whose peak the Linux
kernel counts exactly (VmHWM), so sampling can be infrequent.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import psutil
import torch
from transformers import TrainerCallback

from harness.config import ConfigError, RunConfig

log = logging.getLogger(__name__)
MIB = 1024 * 1024


class GpuMemoryProbe:
    """NVML readings for one GPU: this process's usage and the device-wide used memory, in MiB."""

    def __init__(self, device_index: int) -> None:
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)

    def device_used_mib(self) -> float:
        return self._nvml.nvmlDeviceGetMemoryInfo(self.handle).used / MIB

    def process_used_mib(self, pid: int) -> float:
        total = 0
        for proc in self._nvml.nvmlDeviceGetComputeRunningProcesses(self.handle):
            if proc.pid == pid and proc.usedGpuMemory is not None:
                total += proc.usedGpuMemory
        return total / MIB

    def other_processes_mib(self, pid: int) -> float:
        return sum(
            (p.usedGpuMemory or 0) / MIB
            for p in self._nvml.nvmlDeviceGetComputeRunningProcesses(self.handle)
            if p.pid != pid
        )

    def info(self) -> dict:
        n = self._nvml
        return {
            "gpu_name": n.nvmlDeviceGetName(self.handle),
            "gpu_total_mib": n.nvmlDeviceGetMemoryInfo(self.handle).total / MIB,
            "driver": n.nvmlSystemGetDriverVersion(),
        }


def reset_rss_high_water_mark() -> bool:
    """Start the kernel's peak-RSS counter (VmHWM) afresh; False where that is not possible (not Linux >= 4.0).
    Writing 5 to clear_refs resets only that counter, nothing else about the process."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_high_water_mark_mib() -> float | None:
    """The process's peak RSS since the last reset, counted by the kernel: exact, whatever the sampling rate."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class MemorySampler:
    """Samples memory in a background thread and keeps the peaks; reset() starts a new window.

    With background=False no thread runs: the peaks are those of the explicit sample() calls (window start and
    end, and every logged step) plus torch's own counters, which cost nothing. That is how the thread's overhead
    is measured (the same run with it on and off).
    """

    def __init__(self, *, device: str, interval_s: float, background: bool = True) -> None:
        self.device = device
        self.interval_s = interval_s
        self.background = background
        self.pid = os.getpid()
        self.process = psutil.Process(self.pid)
        self.gpu: GpuMemoryProbe | None = None
        if device.startswith("cuda"):
            try:
                self.gpu = GpuMemoryProbe(torch.cuda.current_device())
            except Exception as e:  # NVML missing or not permitted: torch figures remain.
                log.warning("NVML unavailable (%s); NVML memory figures will be null", e)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.kernel_rss_peak = reset_rss_high_water_mark()
        self.background_samples, self.background_cpu_s = 0, 0.0
        with self._lock:
            self.peak_rss_mib = 0.0
            self.peak_nvml_process_mib = 0.0
            self.peak_nvml_device_mib = 0.0
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.sample()

    def sample(self) -> dict[str, float]:
        now = {"rss_mib": self.process.memory_info().rss / MIB}
        if self.gpu is not None:
            now["nvml_process_mib"] = self.gpu.process_used_mib(self.pid)
            now["nvml_device_mib"] = self.gpu.device_used_mib()
        with self._lock:
            self.peak_rss_mib = max(self.peak_rss_mib, now["rss_mib"])
            if self.gpu is not None:
                self.peak_nvml_process_mib = max(self.peak_nvml_process_mib, now["nvml_process_mib"])
                self.peak_nvml_device_mib = max(self.peak_nvml_device_mib, now["nvml_device_mib"])
        return now

    def _loop(self) -> None:
        # The thread's own CPU time is its cost to the run, measured in every run rather than only by
        # comparing runs with it on and off (which a noisy machine blurs): an upper bound for a training loop
        # that needs one core, since the two then share the GIL.
        start = time.thread_time()
        while not self._stop.wait(self.interval_s):
            self.sample()
            self.background_samples += 1
            self.background_cpu_s = time.thread_time() - start

    def __enter__(self) -> MemorySampler:
        self._stop.clear()
        if not self.background:
            return self
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def peaks(self) -> dict[str, float | None]:
        """Peaks since the last reset, in MiB; GPU fields are None on CPU."""
        cuda = self.device.startswith("cuda")
        # the kernel's high-water mark where there is one (Linux), else the samples' peak
        kernel_peak = rss_high_water_mark_mib() if self.kernel_rss_peak else None
        return {
            "sampler": "background" if self.background else "per-step only",
            "sampler_samples": self.background_samples if self.background else None,
            "sampler_cpu_seconds": self.background_cpu_s if self.background else None,
            "peak_rss_mib": max(self.peak_rss_mib, kernel_peak or 0.0),
            "peak_rss_source": "kernel high-water mark" if self.kernel_rss_peak else "sampled",
            "peak_nvml_process_mib": self.peak_nvml_process_mib if self.gpu else None,
            "peak_nvml_device_mib": self.peak_nvml_device_mib if self.gpu else None,
            "peak_torch_allocated_mib": torch.cuda.max_memory_allocated() / MIB if cuda else None,
            "peak_torch_reserved_mib": torch.cuda.max_memory_reserved() / MIB if cuda else None,
        }


class StepLogger(TrainerCallback):
    """One JSON line per logged step: loss, learning rate, grad norm, non-padding tokens/s, memory; and the
    validation loss at `validation_steps` (the learning curve, so a report can say whether a method had stopped
    improving at its training budget).

    The validation passes are timed apart and left out of every training time (train_seconds, tokens/s, each
    line's elapsed_s), so a run with a learning curve measures the same speed as one without."""

    def __init__(self, path: Path, sampler: MemorySampler, validation_steps: tuple[int, ...] = ()) -> None:
        self.path = path
        self.sampler = sampler
        self.validation_steps = set(validation_steps)
        self.validation: list[dict] = []
        self.validation_seconds = 0.0
        self._validation_start: float | None = None
        self._file = None
        self._last_time = 0.0
        self._last_tokens = 0
        self.train_seconds = 0.0
        self._train_start = 0.0
        # (time, tokens) at the first logged step: what follows is the steady state, without the first step's
        # one-off costs (CUDA/cuBLAS initialisation, allocator growth, torch.compile's compilation)
        self._first_log: tuple[float, int] | None = None
        self.steady_tokens_per_s: float | None = None

    def _sync(self) -> None:
        if self.sampler.device.startswith("cuda"):
            torch.cuda.synchronize()

    def on_train_begin(self, args, state, control, **kwargs):
        self._file = self.path.open("w", encoding="utf-8")
        self._sync()
        self._train_start = self._last_time = time.perf_counter()
        self._last_tokens = state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.validation_steps:
            control.should_evaluate = True
            self._validation_start = time.perf_counter()
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self._validation_start is None:
            return
        self._sync()
        spent = time.perf_counter() - self._validation_start
        self._validation_start = None
        self.validation_seconds += spent
        # shift every training clock by the pass, as if it had not happened
        self._train_start += spent
        self._last_time += spent
        if self._first_log is not None:
            self._first_log = (self._first_log[0] + spent, self._first_log[1])
        self.validation.append({"step": state.global_step, "eval_loss": (metrics or {}).get("eval_loss")})

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._file is None or not logs or "loss" not in logs:
            return
        self._sync()
        now = time.perf_counter()
        tokens = state.num_input_tokens_seen
        elapsed = now - self._last_time
        record = {
            "step": state.global_step,
            "epoch": state.epoch,
            "loss": logs.get("loss"),
            "learning_rate": logs.get("learning_rate"),
            "grad_norm": logs.get("grad_norm"),
            "tokens_per_s": (tokens - self._last_tokens) / elapsed if elapsed > 0 else None,
            "elapsed_s": now - self._train_start,
            **self.sampler.sample(),
        }
        if self.sampler.device.startswith("cuda"):
            record["torch_allocated_mib"] = torch.cuda.memory_allocated() / MIB
            record["torch_reserved_mib"] = torch.cuda.memory_reserved() / MIB
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self._last_time, self._last_tokens = now, tokens
        if self._first_log is None:
            self._first_log = (now, tokens)

    def on_train_end(self, args, state, control, **kwargs):
        self._sync()
        end = time.perf_counter()
        self.train_seconds = end - self._train_start
        if self._first_log is not None and state.num_input_tokens_seen > self._first_log[1]:
            first_time, first_tokens = self._first_log
            self.steady_tokens_per_s = (state.num_input_tokens_seen - first_tokens) / (end - first_time)
        if self._file is not None:
            self._file.close()
            self._file = None


def reset_compile_stats() -> None:
    """Zero torch.compile's counters (they are per process; a test runs several trainings in one)."""
    import torch._dynamo.utils as dynamo_utils

    dynamo_utils.counters.clear()
    dynamo_utils.compilation_time_metrics.clear()


def compile_stats() -> dict:
    """What torch.compile did during training: graphs compiled, graph breaks (each splits the model into more
    graphs, and CUDA graphs into more replays) with their most common reasons, and seconds spent compiling
    (Dynamo with the forward's Inductor compile, plus the backward's compile, which runs at the first backward).
    More graphs than graph breaks + 1 means recompilation: a new batch shape (see train.pad_to_multiple_of).

    Read from torch._dynamo's own counters; a name a torch version lacks reads as None, not 0."""
    import torch._dynamo.utils as dynamo_utils

    counters, times = dynamo_utils.counters, dynamo_utils.compilation_time_metrics
    breaks = counters.get("graph_break", {})
    seconds = [sum(times[k]) for k in ("_compile.compile_inner", "compile_fx.<locals>.bw_compiler") if k in times]
    inductor, aot = counters.get("inductor", {}), counters.get("aot_autograd", {})
    return {
        "graphs": counters.get("stats", {}).get("unique_graphs"),
        "graph_breaks": sum(breaks.values()),
        "graph_break_reasons": [reason for reason, _ in breaks.most_common(3)] if breaks else [],
        "compile_seconds": sum(seconds) if seconds else None,
        # whether this job compiled or reused what an earlier job of the machine compiled (Inductor's on-disk
        # caches, in TORCHINDUCTOR_CACHE_DIR: the GPU plan gives a whole plan one)
        "fx_graph_cache_hits": inductor.get("fxgraph_cache_hit", 0),
        "fx_graph_cache_misses": inductor.get("fxgraph_cache_miss", 0),
        "aot_autograd_cache_hits": aot.get("autograd_cache_hit", 0),
        "cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
    }


def check_foreign_gpu_memory(cfg: RunConfig, sampler: MemorySampler) -> float | None:
    """GPU memory other processes hold at start: warn (or refuse, when strict) above the limit."""
    if sampler.gpu is None:
        return None
    foreign = sampler.gpu.other_processes_mib(sampler.pid)
    if foreign > cfg.memory.foreign_gpu_mib_limit:
        message = (
            f"other processes hold {foreign:.0f} MiB of this GPU at start (limit "
            f"memory.foreign_gpu_mib_limit={cfg.memory.foreign_gpu_mib_limit:.0f}); device-wide NVML figures include it"
        )
        if cfg.memory.strict:
            raise ConfigError(message + "; refusing to start (memory.strict=true)")
        log.warning(message)
    return foreign
