"""Where a job's time goes before its run starts, as marks of the process's age.

A sweep job spends seconds before training (14-21 s each on the H100 machine, 6-8 s on the CPU one): the
interpreter and the launcher, Hydra, importing torch, transformers, peft and bitsandbytes. The record splits
that time so a report can say which part to cut. Ages come from the kernel's own clock for the process
(its start time in clock ticks since boot, against CLOCK_BOOTTIME), good to 10 ms: psutil's create_time()
adds the boot time in whole seconds, which put the start up to a second too early.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings

_marks: dict[str, float] = {}


class _DropMessages(logging.Filter):
    """Drops a library's log records that start with one of `prefixes`; every other record of its logger passes."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def quiet_known_noise() -> None:
    """Silence, at their source, two lines every CPU job printed that tell a user nothing, and nothing else:

    - bitsandbytes 0.50.2, on a CPU with AVX512-BF16, warns at import that it cannot fetch the optional
      kernels-community gemm_4bit_forward (it needs `pip install kernels` and the hub). That kernel only serves the
      packed layout the harness keeps off for training (models.keep_4bit_layout_for_training), so it would never
      run; models.py says once which 4-bit path does.
    - transformers 5.x deprecates `is_gradient_checkpointing`, which peft reads for every model it wraps: a
      FutureWarning per job about code that is not ours.
    Real errors and other warnings of both libraries stay loud."""
    bnb = logging.getLogger("bitsandbytes.backends.cpu.ops")
    if not any(isinstance(f, _DropMessages) for f in bnb.filters):
        bnb.addFilter(_DropMessages("Failed to load CPU gemm_4bit_forward from kernels-community"))
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


# The intervals a record states, each from the mark before it (or the process start) to its own mark.
STARTUP_PARTS = (
    ("harness_imported", "interpreter_and_launcher"),  # python, site, submitit and the launcher's unpickling
    ("job_entered", "hydra_job_setup"),  # the entry point's imports (Hydra, pandas), then Hydra's job set-up
    ("libraries_imported", "library_imports"),  # torch, transformers, peft, bitsandbytes, datasets, evaluate
    ("run_started", "config_check"),  # the typed config and the look for an existing record
)


def process_age_s() -> float:
    """Seconds since this process started."""
    if sys.platform.startswith("linux"):
        with open("/proc/self/stat") as f:
            # field 22, start time in clock ticks since boot; the command name before it may hold spaces
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    import psutil  # noqa: PLC0415 (elsewhere: whole-second boot time, the best there is)

    return time.time() - psutil.Process().create_time()


def mark(name: str) -> None:
    """Note the process's age now under a name (the first mark of a name stands)."""
    _marks.setdefault(name, process_age_s())


def startup_seconds() -> dict[str, float]:
    """The intervals of STARTUP_PARTS whose marks this process took, in seconds."""
    parts: dict[str, float] = {}
    previous: float | None = 0.0
    for name, part in STARTUP_PARTS:
        now = _marks.get(name)
        if now is not None and previous is not None:  # an interval is stated only where both its ends were marked
            parts[part] = now - previous
        previous = now
    return parts


def forked() -> None:
    """In a child forked from a sweep's process (hydra/launcher=forked): its age counts from the fork, and the
    parent's marks are not its own. The interpreter and the libraries the parent imported cost it nothing."""
    _marks.clear()
    mark("harness_imported")
