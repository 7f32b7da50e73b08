"""The start-up split: process ages from the kernel's clock, intervals only between marks that were taken."""

import subprocess
import sys
import time

from harness import startup


def test_the_process_age_is_the_kernels_to_a_tick_not_psutils_whole_second():
    """A child that sleeps 0.3 s after its own start reports an age of 0.3 s and a bit, not up to a second more."""
    code = "import time; time.sleep(0.3); from harness.startup import process_age_s; print(process_age_s())"
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    age = float(out.stdout)
    assert 0.3 <= age <= wall + 0.02  # within the child's life as the parent timed it, give or take a 10 ms tick


def test_intervals_are_stated_only_where_both_ends_were_marked(monkeypatch):
    monkeypatch.setattr(startup, "_marks", {"harness_imported": 2.0, "job_entered": 2.5, "run_started": 9.0})
    # libraries_imported was not marked (run() called without the entry point): neither interval touching it
    assert startup.startup_seconds() == {"interpreter_and_launcher": 2.0, "hydra_job_setup": 0.5}


def test_the_first_mark_of_a_name_stands(monkeypatch):
    monkeypatch.setattr(startup, "_marks", {})
    startup.mark("job_entered")
    first = startup._marks["job_entered"]
    time.sleep(0.02)
    startup.mark("job_entered")
    assert startup._marks["job_entered"] == first


def test_the_known_library_noise_is_silenced_and_nothing_else():
    """bitsandbytes' line about an optional kernel that never runs here, and transformers' deprecation of a property
    peft reads, are dropped at their source; other records of the same logger and other FutureWarnings pass."""
    import logging
    import warnings

    import harness  # noqa: F401 (installs the filters)
    from harness.startup import quiet_known_noise

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    kept = []
    handler = logging.Handler()
    handler.emit = kept.append
    logger.addHandler(handler)
    try:
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure", "x")
        logger.warning("a real problem")
        logger.error("a real error")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in kept] == ["a real problem", "a real error"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_known_noise()  # in front of "always", as at import in front of the defaults
        warnings.warn("`is_gradient_checkpointing` is deprecated (v6).", FutureWarning, stacklevel=1)
        warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]
