"""One fine-tuning run, top to bottom: check inputs, build, score the base, train, evaluate, record.

Everything that can be wrong with the input (config, dataset, target modules, prompt lengths) is found
before training starts and raised as ConfigError, which leaves no record. Once the model is being built,
a failure still writes a record: status `oom` (with the peak reached) or `failed` with the error text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import shutil
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import torch
from transformers import Trainer, set_seed

from harness import startup
from harness.config import ConfigError, RunConfig, curve_steps, optimizer_steps, trackers
from harness.predict import flops
from harness.results import Status, new_record, record_path, write_json_atomic, write_jsonl_atomic
from harness.run import adapters, data, env, evaluation, models
from harness.run.checks import check_for_device, precision_reason
from harness.run.inputs import prepare_inputs
from harness.run.monitor import MemorySampler, StepLogger, check_foreign_gpu_memory, compile_stats, reset_compile_stats
from harness.run.scratch import artifact_bytes, remove_dead_scratch, scratch_dir
from harness.run.trainer import (  # noqa: F401 (training_arguments: tests, tools)
    SyncFreeTrainer,
    loraplus_optimizer,
    training_arguments,
)

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _environment(name: str, value: str | None):
    """Set an environment variable for the block (nothing where value is None), then restore it."""
    if value is None:
        yield
        return
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


@contextlib.contextmanager
def _timed(parts: dict[str, float], name: str):
    """Add the block's wall time to parts[name] (a part may be timed in several blocks)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        parts[name] = parts.get(name, 0.0) + time.perf_counter() - start


def _throughput(metrics: dict, environment: dict, cfg: RunConfig, samples: int) -> dict:
    """FLOPs per trained token and MFU against the GPU's bf16 peak (None on a CPU or an unlisted GPU)."""
    arch = {k: v for k, v in metrics["architecture"].items() if v is not None}
    mean_len = metrics["train_tokens"] / max(samples, 1)
    try:
        per_token = flops.flops_per_token(
            arch,
            method=cfg.method.name,
            seq_len=mean_len,
            adapter_params=metrics["params"]["trainable"] if cfg.method.name != "full" else 0,
        )
    except (ValueError, KeyError, TypeError) as e:  # an architecture transformers cannot rebuild from its fields
        log.warning("no FLOPs count for this architecture (%s): MFU not recorded", e)
        return {"flops_per_token": None, "gpu_peak_flops": None, "mfu": None, "mfu_after_first_step": None}
    peak = flops.gpu_peak_flops(environment.get("gpu_name"))
    steady = metrics.get("tokens_per_s_after_first_step")
    return {
        "flops_per_token": per_token,
        "gpu_peak_flops": peak,
        "mfu": flops.mfu(per_token, metrics["tokens_per_s"], peak),
        # the steady state, as a plain training loop's MFU is usually quoted (first step left out)
        "mfu_after_first_step": flops.mfu(per_token, steady, peak) if steady else None,
    }


@dataclasses.dataclass
class _Run:
    """What the steps of one run share: its inputs, where it runs, its record and its scratch folder."""

    cfg: RunConfig
    device: str
    precision: str
    tokenizer: object
    tokenized: dict
    test_rows: object
    sampler: MemorySampler
    record: dict
    work_dir: Path
    # each test example's outcome, trained model and base model: written beside the record at the end
    examples: dict[str, list[dict]] = dataclasses.field(default_factory=dict)

    @property
    def metrics(self) -> dict:
        return self.record["metrics"]


# Long on purpose: the run's steps and the three ways it can end (ok, oom/failed, stopped) in one view.
def run(cfg: RunConfig) -> dict:
    """Run one configuration and write its record; returns the record. ConfigError leaves no record.

    The steps: check and prepare the inputs (nothing loaded yet: every input error is a ConfigError), build the
    base model, check the base (score, forgetting, latency before training), train, evaluate, write. Each step
    adds its part to the record."""
    started = time.perf_counter()
    startup.mark("run_started")
    started_at = datetime.now(UTC).isoformat()
    device, precision = check_for_device(cfg)
    set_seed(cfg.train.seed)
    if cfg.train.sync_free_steps and not hasattr(Trainer, "_track_num_input_tokens"):
        raise ConfigError(
            "train.sync_free_steps=true: this transformers' Trainer has no _track_num_input_tokens to keep the "
            "token count on the GPU (5.17-5.23 have it); set it to false"
        )
    tokenizer, tokenized, test_rows = prepare_inputs(cfg)

    remove_dead_scratch()
    sampler = MemorySampler(device=device, interval_s=cfg.memory.sample_interval_s, background=cfg.memory.sampler)
    foreign_mib = check_foreign_gpu_memory(cfg, sampler)
    record = new_record(
        cfg,
        started_at=started_at,
        environment=env.collect(device),
        device=device,
        # the sweep launcher that started this job's process (none for a single run)
        launcher=os.environ.get("FT_HARNESS_LAUNCHER"),
        precision=precision,
        precision_reason=precision_reason(cfg.train.precision, device, precision),
        # what the run trains with, where recipes derive it (train.reference_batch, learning_rate_scale)
        optimizer_steps=optimizer_steps(
            cfg.train.max_steps, cfg.train.batch_size, cfg.train.grad_accum, cfg.train.reference_batch
        ),
        learning_rate=cfg.method.learning_rate * cfg.train.learning_rate_scale,
    )
    record["metrics"]["memory"] = {"foreign_gpu_mib_at_start": foreign_mib}
    state = _Run(cfg, device, precision, tokenizer, tokenized, test_rows, sampler, record,
                 scratch_dir("run"))  # fmt: skip
    try:
        base = _build_base(state)
        before = _check_base(state, base)
        torch_model = adapters.apply_method(
            base,
            method=cfg.method,
            gradient_checkpointing=cfg.train.gradient_checkpointing,
            target_modules=record["run"]["target_modules"],
        )
        state.metrics["params"] = models.parameter_counts(torch_model)
        record["run"]["adapter"] = adapters.adapter_description(torch_model, cfg.method)
        if cfg.train.packing:
            models.prepare_for_packing(torch_model)
        trainer = _train(state, torch_model)
        # eval.enabled=false trains only (memory and speed at scale): no scoring, no checkpoint written
        if cfg.eval.enabled:
            _evaluate(state, trainer, torch_model, before)
        record["status"] = Status.OK
    except (ConfigError, KeyboardInterrupt, SystemExit):
        # Nothing to record: a bad config, or a run stopped (Ctrl-C; the sweep launcher's SIGINT when the sweep
        # is stopped). Its scratch folder goes too, so a stopped run leaves nothing behind; a rerun starts afresh.
        shutil.rmtree(state.work_dir, ignore_errors=True)
        raise
    except torch.OutOfMemoryError as e:
        state.metrics["memory"].update(sampler.peaks())
        record["status"], record["error"] = Status.OOM, f"{type(e).__name__}: {e}"
    except Exception as e:
        state.metrics["memory"].update(sampler.peaks())
        record["status"], record["error"] = Status.FAILED, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
    return _finish(state, started)


def _build_base(state: _Run) -> torch.nn.Module:
    """The base model, checked against the method; its part of the record."""
    cfg, record = state.cfg, state.record
    dtype = models.weights_dtype(cfg, state.precision)
    record["run"]["weights_dtype"] = str(dtype).removeprefix("torch.")
    start = time.perf_counter()
    base = models.load_base_model(
        model=cfg.model,
        method=cfg.method,
        cache_dir=cfg.cache_dir,
        dtype=dtype,
        device=state.device,
        seed=cfg.train.seed,
        attn_implementation=cfg.train.attn_implementation,
    )
    # building the base (random weights drawn and quantised, or a checkpoint read) is stated apart in the time
    # table: on the H200 it was 257 s of a 276 s 7B QLoRA job before weights were drawn layer by layer
    state.metrics["build_seconds"] = time.perf_counter() - start
    # what transformers actually picked (it may fall back from the one asked for)
    record["run"]["attn_implementation"] = getattr(base.config, "_attn_implementation", None)
    # what peft adapts, as resolved against this model (all-linear where asked, or where the default names are
    # another family's)
    record["run"]["target_modules"] = adapters.resolve_target_modules(base, cfg.method)
    if cfg.train.liger_kernel:
        adapters.check_liger_supports(base)
    state.metrics["architecture"] = models.describe_architecture(base)
    return base


def _check_base(state: _Run, base: torch.nn.Module) -> dict:
    """The untrained model's score, its loss on general text and (full FT) its latency, before training.

    Returns what evaluation compares against. Scoring a 4-bit base leaves it as it was
    (models.keep_4bit_layout_for_training)."""
    cfg, device, metrics = state.cfg, state.device, state.metrics
    start = time.perf_counter()
    # a learning-rate search job measures the validation loss alone: nothing about the base is needed
    evaluate = cfg.eval.enabled and not cfg.eval.validation_only
    if evaluate and cfg.eval.base_model:
        dtype = models.weights_dtype(cfg, state.precision)
        metrics["base_score"] = evaluation.base_score(base, state.tokenizer, state.test_rows, cfg, device, dtype)
        state.examples["base_examples"] = metrics["base_score"].pop("examples")
    forgetting_before = evaluation.forgetting_loss(base, state.tokenizer, cfg, device) if evaluate else None
    # Full FT changes the base itself, so its base is timed now; LoRA/QLoRA time theirs after training with
    # the adapter switched off (_evaluate).
    timed_before = evaluate and cfg.eval.latency_prompts and cfg.method.name == "full"
    latency = (
        {"base": evaluation.run_latency(base, state.tokenizer, state.test_rows, cfg, device)} if timed_before else {}
    )
    metrics["base_eval_seconds"] = time.perf_counter() - start
    return {"forgetting": forgetting_before, "latency": latency}


def _train(state: _Run, torch_model: torch.nn.Module) -> Trainer:
    """HF Trainer over the training split, with the memory sampler and the step log; the training's figures."""
    cfg, metrics, sampler = state.cfg, state.metrics, state.sampler
    validation_steps = ()
    if cfg.eval.enabled and cfg.eval.curve_points:
        t = cfg.train
        validation_steps = curve_steps(
            optimizer_steps(t.max_steps, t.batch_size, t.grad_accum, t.reference_batch), cfg.eval.curve_points
        )
    step_logger = StepLogger(state.work_dir / "steps.jsonl", sampler, validation_steps)
    tracker_dir = None
    if trackers(cfg.train.report_to):
        # beside the records, not in the scratch folder Trainer writes to (it goes when the run ends)
        tracker_dir = str(Path(cfg.results_dir) / "trackers" / state.record["run"]["id"])
        state.record["run"]["tracker_dir"] = tracker_dir
    # TensorBoard's callback reads its folder from the environment when Trainer builds it (transformers 5.18+)
    with _environment("TENSORBOARD_LOGGING_DIR", tracker_dir):
        args = training_arguments(
            cfg,
            precision=state.precision,
            device=state.device,
            output_dir=str(state.work_dir / "trainer"),
            tracker_dir=tracker_dir,
        )
        ratio = cfg.method.loraplus_lr_ratio
        trainer = (SyncFreeTrainer if cfg.train.sync_free_steps else Trainer)(
            model=torch_model,
            args=args,
            optimizers=(loraplus_optimizer(torch_model, args, ratio) if ratio else None, None),
            train_dataset=state.tokenized["train"],
            # the learning curve's passes (StepLogger asks for them at validation_steps; evaluation order and
            # dropout 0 leave the training itself unchanged)
            eval_dataset=state.tokenized["validation"] if validation_steps else None,
            data_collator=data.collator(
                cfg.train.packing,
                pad_token_id=state.tokenizer.pad_token_id if state.tokenizer else 0,
                pad_to=cfg.train.pad_to_length,
                multiple_of=cfg.train.pad_to_multiple_of,
            ),
            callbacks=[step_logger],
        )
    if cfg.train.torch_compile:
        reset_compile_stats()
    sampler.reset()
    with sampler, adapters.adapter_input_casting(torch_model, cfg):
        train_output = trainer.train()
    metrics["memory"].update(sampler.peaks())
    if cfg.train.torch_compile:
        metrics["compile"] = compile_stats()
    trained = trainer.state
    metrics["train_seconds"] = step_logger.train_seconds
    if validation_steps:
        metrics["validation_curve"] = step_logger.validation
        metrics["validation_curve_seconds"] = step_logger.validation_seconds
    if metrics["memory"].get("sampler_cpu_seconds") is not None:
        # the monitoring's cost: the sampler thread's CPU time over the training's wall time
        metrics["memory"]["sampler_cpu_share"] = metrics["memory"]["sampler_cpu_seconds"] / step_logger.train_seconds
    metrics["steps"] = trained.global_step
    metrics["train_tokens"] = trained.num_input_tokens_seen
    metrics["tokens_per_s"] = trained.num_input_tokens_seen / step_logger.train_seconds
    metrics["tokens_per_s_after_first_step"] = step_logger.steady_tokens_per_s
    samples = trained.global_step * cfg.train.batch_size * cfg.train.grad_accum
    metrics["samples_per_s"] = samples / step_logger.train_seconds
    metrics["train_loss"] = train_output.training_loss
    metrics.update(_throughput(metrics, state.record["environment"], cfg, samples))
    return trainer


def _evaluate(state: _Run, trainer: Trainer, torch_model: torch.nn.Module, before: dict) -> None:
    """Validation loss, the test score, forgetting and latency against the checks before training, the saved
    artifact's size; where the evaluation's time goes, so the report can tell scoring from the optional probes."""
    cfg, device, metrics = state.cfg, state.device, state.metrics
    tokenizer, test_rows, latency = state.tokenizer, state.test_rows, before["latency"]
    parts: dict[str, float] = {}
    with _timed(parts, "validation_loss"):
        eval_out = trainer.evaluate(eval_dataset=state.tokenized["validation"])
    metrics["eval_loss"] = eval_out["eval_loss"]
    if "validation_curve" in metrics:  # its last point: the end of training, on the same validation examples
        metrics["validation_curve"].append({"step": metrics["steps"], "eval_loss": eval_out["eval_loss"]})
    metrics["eval_perplexity"] = math.exp(eval_out["eval_loss"]) if eval_out["eval_loss"] < 50 else None
    if cfg.eval.validation_only:  # a learning-rate search job: chosen on this loss, never on the test examples
        metrics["eval_parts_seconds"] = parts
        metrics["eval_seconds"] = sum(parts.values())
        return
    dtype = models.weights_dtype(cfg, state.precision)
    with _timed(parts, "test_generation"), adapters.merged_for_scoring(torch_model, cfg, dtype) as merged:
        metrics["score"] = evaluation.run_score(torch_model, tokenizer, test_rows, cfg, device)
    metrics["score"]["adapter_merged"] = merged
    state.examples["examples"] = metrics["score"].pop("examples")
    if merged and cfg.eval.check_merged_scoring:
        with _timed(parts, "unmerged_check"):
            unmerged = evaluation.run_score(torch_model, tokenizer, test_rows, cfg, device, label="scoring unmerged")
        metrics["merged_scoring_check"] = evaluation.compare_predictions(
            state.examples["examples"], unmerged.pop("examples"), unmerged
        )
    if before["forgetting"] is not None:
        with _timed(parts, "forgetting"):
            after = evaluation.forgetting_loss(torch_model, tokenizer, cfg, device)
        metrics["forgetting"] = {
            "loss_before": before["forgetting"]["loss"],
            "loss_after": after["loss"],
            "delta": after["loss"] - before["forgetting"]["loss"],
            "tokens": after["tokens"],
            "source": after["source"],
        }
    if cfg.eval.latency_prompts:
        with _timed(parts, "latency"):
            # full FT: the trained model; LoRA: adapter unmerged; QLoRA: the 4-bit base with its adapter.
            latency["trained" if cfg.method.name == "full" else "unmerged"] = evaluation.run_latency(
                torch_model, tokenizer, test_rows, cfg, device
            )
            if cfg.method.name != "full":
                # The base with the adapter switched off, in the same process state as the adapter's
                # timings (on CPU, the trained full-FT model generated ~2x slower than its own base
                # before training).
                with torch_model.disable_adapter():
                    latency["base"] = evaluation.run_latency(torch_model, tokenizer, test_rows, cfg, device)
    save_start = time.perf_counter()
    stem = state.record["run"]["id"]
    metrics["artifact_bytes"], state.record["run"]["artifact_dir"] = artifact_bytes(torch_model, cfg, stem)
    metrics["save_seconds"] = time.perf_counter() - save_start
    if cfg.eval.latency_prompts and cfg.method.name == "lora":
        with _timed(parts, "latency"):
            # Last, since merging changes the model in place. (QLoRA is not merged: that would requantise.)
            torch_model = torch_model.merge_and_unload()
            latency["merged"] = evaluation.run_latency(torch_model, tokenizer, test_rows, cfg, device)
    if latency:
        metrics["inference"] = latency
    metrics["eval_parts_seconds"] = parts
    metrics["eval_seconds"] = sum(parts.values())


def _finish(state: _Run, started: float) -> dict:
    """The run's times, its step log beside the record, the record written atomically; the scratch folder gone."""
    record, metrics = state.record, state.metrics
    metrics["total_seconds"] = time.perf_counter() - started
    # the whole job process so far (interpreter start, imports, Hydra): the sweep's overhead per job
    metrics["process_seconds"] = startup.process_age_s()
    metrics["startup_seconds"] = startup.startup_seconds()
    record["run"]["finished_at"] = datetime.now(UTC).isoformat()
    path = record_path(state.cfg)
    partial_steps = state.work_dir / "steps.jsonl"
    if partial_steps.exists():
        steps_path = path.with_name(f"{path.stem}.steps.jsonl")
        steps_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(partial_steps, steps_path)
        record["run"]["steps_log"] = steps_path.name
    # each test example's outcome (trained, and base model where scored), for the report's paired comparisons;
    # written before the record, so a record that exists has its files
    for kind, rows in state.examples.items():
        examples_path = path.with_name(f"{path.stem}.{kind}.jsonl")
        write_jsonl_atomic(examples_path, rows)
        record["run"][f"{kind}_log"] = examples_path.name
    write_json_atomic(path, record)
    shutil.rmtree(state.work_dir, ignore_errors=True)
    record["run"]["record_path"] = str(path)
    return record
