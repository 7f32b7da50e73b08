"""HF Trainer as the harness runs it: its TrainingArguments from a run's config, and the Trainer subclass for
train.sync_free_steps.

Why a module of its own: what the config asks of Trainer (recipes, speed knobs, the versions' differences) is
one concern; the run's steps (train.py) use it without knowing how each knob maps.
"""

from __future__ import annotations

import dataclasses

import torch
from transformers import Trainer, TrainingArguments

from harness.config import RunConfig, optimizer_steps, trackers


class SyncFreeTrainer(Trainer):
    """HF Trainer whose non-padding token count stays on the GPU between logging steps.

    Stock Trainer adds each micro-batch's count to `state.num_input_tokens_seen` with `.item()`, which makes
    the CPU wait for the GPU to finish everything queued so far, once per micro-batch. Here the counts add up
    on the device and reach the state when Trainer logs (`log` is its documented override point), where the
    step logger synchronises anyway. Used with train.sync_free_steps=true only.
    """

    _unlogged_tokens: torch.Tensor | int = 0

    def _track_num_input_tokens(self, inputs) -> None:
        # as stock Trainer counts "non_padding" without a tokenizer: the attention mask, else every token
        # (packed batches have no mask and no padding)
        mask = inputs.get("attention_mask")
        count = mask.sum() if mask is not None else inputs["input_ids"].numel()
        self._unlogged_tokens = self._unlogged_tokens + count

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        self.state.num_input_tokens_seen += int(self._unlogged_tokens)
        self._unlogged_tokens = 0
        super().log(logs, start_time)


def _sync_free_arguments(sync_free: bool, device: str) -> dict:
    """TrainingArguments for train.sync_free_steps: no nan/inf check of each micro-batch's loss (a sync; a nan
    loss is then logged as nan) and non-blocking batch copies (from the pinned memory the loader fills)."""
    if not sync_free:
        return {}
    arguments: dict = {"logging_nan_inf_filter": False}
    if device != "cpu":
        arguments["accelerator_config"] = {"non_blocking": True}
    return arguments


def _sampling_arguments(sampling: str) -> dict:
    """transformers' train_sampling_strategy (2026), or the older group_by_length flag where it is missing:
    pyproject allows transformers >= 5.17, which the GPU machine has."""
    if "train_sampling_strategy" in {f.name for f in dataclasses.fields(TrainingArguments)}:
        return {"train_sampling_strategy": sampling}
    return {"group_by_length": sampling == "group_by_length"}


def _tracker_arguments(cfg: RunConfig, tracker_dir: str | None) -> dict:
    """report_to for HF Trainer, and where a transformers that still has `logging_dir` (5.17) writes TensorBoard's
    files (later ones read TENSORBOARD_LOGGING_DIR, which the run sets)."""
    names = trackers(cfg.train.report_to)
    arguments: dict = {"report_to": names or "none"}
    if tracker_dir and "logging_dir" in {f.name for f in dataclasses.fields(TrainingArguments)}:
        arguments["logging_dir"] = tracker_dir
    return arguments


def loraplus_optimizer(model: torch.nn.Module, args: TrainingArguments, ratio: float) -> torch.optim.Optimizer:
    """LoRA+'s optimizer: the optimizer train.optim names (as Trainer would build it, with its arguments), its
    parameters in peft's LoRA+ groups (B and DoRA's magnitudes at `ratio` times A's learning rate). Trainer takes
    it through `optimizers=` and builds its scheduler over it, so warm-up and decay apply to every group."""
    from peft.optimizers import create_loraplus_optimizer

    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    kwargs = dict(kwargs)
    lr = kwargs.pop("lr", args.learning_rate)
    return create_loraplus_optimizer(
        model, optimizer_cls, lr=lr, loraplus_lr_ratio=ratio, loraplus_weight_decay=args.weight_decay, **kwargs
    )


def training_arguments(
    cfg: RunConfig, *, precision: str, device: str, output_dir: str, tracker_dir: str | None = None
) -> TrainingArguments:
    t = cfg.train
    steps = optimizer_steps(t.max_steps, t.batch_size, t.grad_accum, t.reference_batch)
    max_steps = steps if steps > 0 else -1
    return TrainingArguments(
        output_dir=output_dir,
        max_steps=max_steps,
        num_train_epochs=t.num_epochs or 1.0,
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=cfg.method.learning_rate * t.learning_rate_scale,
        weight_decay=t.weight_decay,
        warmup_steps=int(t.warmup_ratio * steps) if steps > 0 else 0,
        lr_scheduler_type=t.lr_scheduler,
        max_grad_norm=t.max_grad_norm,
        optim=t.optim,
        **_sampling_arguments(t.sampling),
        dataloader_num_workers=t.dataloader_workers,
        torch_compile=t.torch_compile,
        use_liger_kernel=t.liger_kernel,
        **({"torch_compile_mode": t.torch_compile_mode} if t.torch_compile_mode else {}),
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        logging_steps=t.logging_steps,
        logging_first_step=True,
        eval_strategy="no",
        save_strategy="no",
        **_tracker_arguments(cfg, tracker_dir),
        seed=t.seed,
        data_seed=t.seed,
        use_cpu=device == "cpu",
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        per_device_eval_batch_size=cfg.eval.batch_size,
        dataloader_pin_memory=device != "cpu",
        **_sync_free_arguments(t.sync_free_steps, device),
    )
