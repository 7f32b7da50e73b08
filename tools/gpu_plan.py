"""The GPU plan: what a lent GPU machine should measure, in value order, time-boxed to the minutes at hand.

A lent GPU is 15 minutes a session, its start, the kit's transfer and idle time included, and at most 10 minutes
a call. So the plan is parts, each one sweep, run in value order while time is left; a part is skipped when its
first job would not finish in the time left, and stopped at the deadline (the jobs it finished keep their
records). Each part is packed into OUT/<NN>_<name>.tar.gz the moment it ends, and OUT/plan.json says for each
part what ran, how long it took, how many records it wrote, or why it was skipped.

    # call a (kit part a: no model file yet): the launcher check, the 33B/70B QLoRA claims, the calibration slice
    python tools/gpu_plan.py --minutes 7 --parts launcher,big_qlora,scale,variants --out $OUT
    # call b (kit part b: the model file arrives): the trade-off sweep users read first, then bench, then MFU
    python tools/gpu_plan.py --minutes 7 --parts tradeoff,bench,mfu,tradeoff_rest --out $OUT \
        --model /tmp/models/SmolLM2-135M-Instruct.Q4_1.gguf

    # before either, on the CPU machine: every part's combinations once, tiny model, real harness (minutes)
    python tools/gpu_plan.py --minutes 20 --rehearse --out /tmp/rehearsal

The parts (see PARTS for their exact overrides):
- launcher: one 7B LoRA scale job under hydra/launcher=per_process and again under hydra/launcher=forked; when
  both are ok and their NVML peaks agree within 1 %, the later parts of this plan (this call and later ones on
  the same machine) run forked, which saves each job the library imports (12.5-16.6 s a job on the H200).
- tradeoff: the trade-off sweep on SmolLM2 at the full profile, trained with the harness recipe (the bench's
  fastest at an equal score), its core four (full FT, LoRA r16, QLoRA nf4 and fp4): each method's learning rate
  searched first (hydra.sweeper.search_scales, docs/learning-rates.md), then three seeds at the chosen rate: the
  report users read first. tradeoff_rest: the other ranks and double quantisation, the same way.
- big_qlora: QLoRA (nf4, double quantisation, paged 8-bit AdamW, checkpointing, batch 1 x 512) of a 33B and a
  70B model, built layer by layer on the card (harness/run/random_init.py): the documents' "33B / 70B on one 24 GB
  GPU", measured (NVML peak) at the QLoRA paper's most frugal setting instead of predicted.
- scale: 1B/3B/7B/8B x full FT (fp32 master and pure bf16), LoRA, QLoRA nf4 x checkpointing on/off, 4 x 512:
  distinct configurations per method family for the memory model's calibration and its held-out error.
- variants: DoRA and QDoRA at the scale part's 1B and 7B conditions: what DoRA's magnitudes and weight norm cost
  in memory (NVML peak) and time per step against the scale part's LoRA and QLoRA jobs, and a GPU check of the
  memory model's DoRA count (rsLoRA, PiSSA, OLoRA and LoRA+ hold and compute what LoRA does per step).
- bench: the documents' recipe, the harness recipe and its compiled candidate (the 10x goal).
- mfu: 1B full FT, compiled and not; compile time is reported apart from training (metrics.compile).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACK_MARGIN_S = 15.0  # kept free at the end: stopping the last sweep and packing it
STOP_GRACE_S = 20.0  # after SIGTERM (the launcher cancels its job and exits), then SIGKILL


@dataclass(frozen=True)
class Part:
    name: str
    overrides: str  # words after `python -m harness`; $MODEL is the model file
    first_job_s: float  # the time its first job needs (start, build, train): less than that left, it is skipped
    needs_model: bool = False


SCALE_SLICE = "train.optim=adamw_torch train.max_seq_len=512 train.batch_size=4"
PARTS: tuple[Part, ...] = (
    Part(
        "launcher",
        f"+sweeps=scale model=llama-2-7b method=lora train.gradient_checkpointing=true {SCALE_SLICE}",
        first_job_s=60,
    ),
    Part(
        "tradeoff",
        "+sweeps=tradeoff model.path=$MODEL recipe=harness eval.batch_size=80 method=full,lora,qlora,qlora_fp4 "
        "train.seed=0,1,2",
        first_job_s=60,
        needs_model=True,
    ),
    Part(
        "big_qlora",
        "+sweeps=scale model=llama-33b,llama-2-70b model.init=random method=qlora_dq train.gradient_checkpointing=true "
        "train.optim=paged_adamw_8bit train.batch_size=1 train.max_seq_len=512",
        first_job_s=120,
    ),
    Part(
        "scale",
        "+sweeps=scale model=llama-3.2-1b,llama-3.2-3b,llama-2-7b,llama-3-8b method=full,full_bf16,lora,qlora "
        f"train.gradient_checkpointing=false,true {SCALE_SLICE}",
        first_job_s=40,
    ),
    Part(
        "variants",
        "+sweeps=scale model=llama-3.2-1b,llama-2-7b method=dora,qdora "
        f"train.gradient_checkpointing=false,true {SCALE_SLICE}",
        first_job_s=40,
    ),
    Part(
        "bench",
        "+sweeps=bench model.path=$MODEL recipe=documents,harness,harness_compiled",
        first_job_s=60,
        needs_model=True,
    ),
    Part("mfu", "+sweeps=mfu", first_job_s=90),
    Part(
        "tradeoff_rest",
        "+sweeps=tradeoff model.path=$MODEL recipe=harness eval.batch_size=80 "
        "method=lora_r4,lora_r8,lora_r32,lora_r64,qlora_dq,qlora_fp4_dq",
        first_job_s=60,
        needs_model=True,
    ),
)


def rehearsal_words(words: list[str]) -> list[str]:
    """A part's overrides cut for a CPU rehearsal: every model (a preset list or the GGUF file) becomes the tiny
    random one, 2 steps, 8 test examples, bf16 and sdpa attention, and where a part sets batch or length,
    2 x 64 tokens (the built-in task's prompts need the default length); every other axis (method,
    checkpointing, optimizer, recipe, launcher) is kept, so each combination the GPU will run is run once through
    the real harness first. force=true: a rehearsal runs every job again, where a plan's --work folder (kept between
    calls, for resume) would otherwise skip those with a record from an earlier rehearsal and report them ok."""
    sizes = {"train.max_seq_len": "64", "train.batch_size": "2"}
    # and what a CPU cannot run: fp16 (the documents' recipe) and flex attention's backward (an MFU axis)
    cut = {
        "train.max_steps": "2",
        "eval.max_test_examples": "8",
        "train.precision": "bf16",
        "train.attn_implementation": "sdpa",
    }
    kept = []
    for word in words:
        key = word.split("=", 1)[0]
        if key in sizes:
            kept.append(f"{key}={sizes[key]}")
        elif key not in {"model", "model.path", "model.init", *cut}:
            kept.append(word)
    return [*kept, "model=tiny", "model.init=random", *(f"{k}={v}" for k, v in cut.items()), "force=true"]


def records_in(folder: Path) -> list[dict]:
    """The run records under a folder (step logs and unreadable files left out)."""
    found = []
    for path in sorted(folder.rglob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and "status" in record and "run" in record:
            found.append(record)
    return found


def nvml_peak_mib(record: dict) -> float | None:
    memory = record.get("metrics", {}).get("memory", {})
    return memory.get("peak_nvml_process_mib")


def launcher_verdict(work: Path) -> dict | None:
    """Whether forked jobs measured what per-process ones did: both ok, NVML peaks within 1 %."""
    per_process = records_in(work / "launcher" / "per_process")
    forked = records_in(work / "launcher" / "forked")
    if not per_process or not forked:
        return None
    a, b = per_process[0], forked[0]
    peaks = nvml_peak_mib(a), nvml_peak_mib(b)
    ok = a["status"] == b["status"] == "ok" and None not in peaks
    diff = abs(peaks[1] - peaks[0]) / peaks[0] * 100 if ok else None
    return {
        "per_process": {"status": a["status"], "nvml_peak_mib": peaks[0], "startup_seconds": _start(a)},
        "forked": {"status": b["status"], "nvml_peak_mib": peaks[1], "startup_seconds": _start(b)},
        "nvml_peak_diff_pct": diff,
        "forked_ok": bool(ok and diff is not None and diff <= 1.0),
    }


def _start(record: dict) -> float | None:
    parts = record.get("metrics", {}).get("startup_seconds")
    return sum(parts.values()) if parts else None


class Plan:
    def __init__(self, args: argparse.Namespace) -> None:
        self.harness = shlex.split(args.harness) if args.harness else [sys.executable, "-m", "harness"]
        self.work = Path(args.work)
        self.out = Path(args.out)
        self.model = args.model
        self.deadline = time.monotonic() + args.minutes * 60
        self.launcher = args.launcher
        self.rehearse = args.rehearse
        self.summary: list[dict] = []
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)

    def left_s(self) -> float:
        return self.deadline - time.monotonic() - PACK_MARGIN_S

    def chosen_launcher(self) -> str:
        if self.launcher != "auto":
            return self.launcher
        verdict = launcher_verdict(self.work)
        return "forked" if verdict and verdict["forked_ok"] else "per_process"

    def sweep(self, part: Part, folder: Path, launcher: str) -> tuple[int | None, float, bool]:
        """Run one sweep into `folder` until it ends or the deadline; returns (exit code, seconds, stopped)."""
        words = shlex.split(part.overrides.replace("$MODEL", self.model or "MODEL-NOT-GIVEN"))
        if self.rehearse:
            words = rehearsal_words(words)
        cmd = [
            *self.harness, *words, f"hydra/launcher={launcher}", f"results_dir={folder / 'results'}",
            f"report_dir={folder / 'report'}", f"hydra.sweep.dir={folder / 'hydra'}",
        ]  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(self.work / "inductor-cache")}  # one per plan
        start = time.monotonic()
        with (folder / "sweep.log").open("w") as log:
            log.write(" ".join(cmd) + "\n")
            log.flush()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
            stopped = False
            while proc.poll() is None:
                if self.left_s() <= 0 and not stopped:
                    stopped = True
                    print(f"{_now()} {part.name}: deadline, stopping the sweep", flush=True)
                    proc.send_signal(signal.SIGTERM)  # the launcher cancels its running job
                    try:
                        proc.wait(timeout=STOP_GRACE_S)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                time.sleep(0.2)
        return proc.returncode, time.monotonic() - start, stopped

    def run_part(self, number: int, part: Part) -> None:
        entry: dict = {"part": part.name, "overrides": part.overrides}
        left = self.left_s()
        if part.needs_model and not self.rehearse and not (self.model and Path(self.model).is_file()):
            entry["skipped"] = f"needs the model file (--model), not given or missing: {self.model}"
        elif left < part.first_job_s:
            entry["skipped"] = f"its first job needs about {part.first_job_s:.0f} s, {max(left, 0):.0f} s were left"
        if "skipped" in entry:
            print(f"{_now()} {part.name}: skipped ({entry['skipped']})", flush=True)
            self.summary.append(entry)
            return
        folder = self.work / part.name
        print(f"{_now()} {part.name}: start ({left:.0f} s left)", flush=True)
        if part.name == "launcher":
            entry["sweeps"] = {}
            for launcher in ("per_process", "forked"):
                code, seconds, stopped = self.sweep(part, folder / launcher, launcher)
                entry["sweeps"][launcher] = {"exit": code, "seconds": round(seconds, 1), "stopped": stopped}
            entry["verdict"] = launcher_verdict(self.work)
            (self.work / "launcher_check.json").write_text(json.dumps(entry["verdict"], indent=2))
        else:
            entry["launcher"] = self.chosen_launcher()
            code, seconds, stopped = self.sweep(part, folder, entry["launcher"])
            entry.update(exit=code, seconds=round(seconds, 1), stopped_at_deadline=stopped)
        records = records_in(folder)
        entry["records"] = {s: sum(r["status"] == s for r in records) for s in ("ok", "oom", "failed")}
        tarball = self.out / f"{number:02d}_{part.name}.tar.gz"
        with tarfile.open(tarball, "w:gz") as tar:
            tar.add(folder, arcname=part.name, filter=lambda t: None if t.name.endswith(".safetensors") else t)
        entry["tarball"] = tarball.name
        print(f"{_now()} {part.name}: done {json.dumps({k: v for k, v in entry.items() if k != 'overrides'})}")
        self.summary.append(entry)
        self.write_summary()

    def write_summary(self) -> None:
        tmp = self.out / ".plan.json.tmp"
        tmp.write_text(json.dumps(self.summary, indent=2))
        os.replace(tmp, self.out / "plan.json")


def _now() -> str:
    return time.strftime("%H:%M:%S", time.gmtime())


def main(argv: list[str] | None = None) -> int:
    names = [p.name for p in PARTS]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, required=True, help="device minutes this call may use")
    parser.add_argument("--parts", default=",".join(names), help=f"which, in value order (of {','.join(names)})")
    parser.add_argument("--model", default=None, help="the SmolLM2 GGUF file (the kit's part b)")
    parser.add_argument("--work", default="/tmp/gpu-plan", help="where sweeps write (kept between calls)")
    parser.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu-plan/out"), help="where tarballs go")
    parser.add_argument("--launcher", choices=("auto", "forked", "per_process"), default="auto")
    parser.add_argument("--harness", default=None, help="command that runs a sweep (default: python -m harness)")
    parser.add_argument(
        "--rehearse",
        action="store_true",
        help="on the CPU, before a GPU call: every part with the tiny random model, 2 steps of 2 x 64 tokens",
    )
    args = parser.parse_args(argv)
    wanted = [w for w in args.parts.split(",") if w]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; the parts are {', '.join(names)}")
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    plan = Plan(args)
    for number, part in enumerate((p for p in PARTS if p.name in wanted), start=1):
        plan.run_part(number, part)
    plan.write_summary()
    print(f"{_now()} plan done: {plan.out / 'plan.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
