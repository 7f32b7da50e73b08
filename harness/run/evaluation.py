"""Task score by greedy generation on the test split, computed with the harness's own `evaluate` modules.

The metric modules live in harness/run/metrics/ and are loaded by path: `evaluate.load("exact_match")`
fetches from the hub, which this project cannot assume.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import evaluate
import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from harness.config import RunConfig
from harness.results import write_json_atomic
from harness.run.data import render_prompt

METRICS_DIR = Path(__file__).resolve().parent / "metrics"

log = logging.getLogger(__name__)


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def load_metric(name: str) -> evaluate.EvaluationModule:
    """One of the shipped metric modules (exact_match, field_accuracy), loaded by path."""
    return evaluate.load(str(METRICS_DIR / name))


@torch.no_grad()
def generate_completions(
    torch_model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    *,
    use_chat_template: bool,
    batch_size: int,
    max_new_tokens: int,
    device: str,
    conversations: list[str | None] | None = None,
    progress_label: str = "generating",
) -> tuple[list[str], dict]:
    """Greedy completions of prompts (a chat row: its conversation), batched with left padding; also returns
    timing figures."""
    conversations = conversations or [None] * len(prompts)
    was_training = torch_model.training
    torch_model.eval()
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: list[str] = []
    new_tokens = 0
    start = time.perf_counter()
    try:
        for i in range(0, len(prompts), batch_size):
            if i:  # minutes pass on a CPU: say how far scoring is and how long the rest should take
                elapsed = time.perf_counter() - start
                log.info(
                    "%s: %d/%d examples in %s, about %s left",
                    progress_label,
                    i,
                    len(prompts),
                    _minutes(elapsed),
                    _minutes(elapsed / i * (len(prompts) - i)),
                )
            texts = [
                render_prompt(tokenizer, p, use_chat_template, c)
                for p, c in zip(prompts[i : i + batch_size], conversations[i : i + batch_size], strict=True)
            ]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            generated = torch_model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            completions = generated[:, batch["input_ids"].shape[1] :]
            for row in completions:
                keep = row[row != tokenizer.pad_token_id] if tokenizer.pad_token_id is not None else row
                new_tokens += int(keep.numel())
                outputs.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    finally:
        tokenizer.padding_side = padding_side
        torch_model.train(was_training)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return outputs, {"seconds": seconds, "new_tokens": new_tokens, "tokens_per_s": new_tokens / seconds}


def score(predictions: list[str], references: list[str], scorer: str) -> dict:
    """exact_match always; field accuracy, JSON validity and per-field accuracy for JSON tasks. `per_example`
    holds each prediction's outcome as the metric module judged it."""
    result = load_metric("exact_match").compute(predictions=predictions, references=references)
    if scorer == "json_fields":
        fields = load_metric("field_accuracy").compute(predictions=predictions, references=references)
        # exact_match on JSON tasks compares parsed fields, so 2 and 2.0 or key spacing do not count.
        result = {"exact_match_text": result["exact_match"], **fields}
    else:
        result["per_example"] = [{"exact_match": bool(hit)} for hit in result["per_example"]]
    return result


def example_rows(test_rows: Dataset, predictions: list[str], per_example: list[dict]) -> list[dict]:
    """One row per test example: its position in the test split and a hash of its prompt (what pairs two runs'
    rows: the report refuses to pair rows whose hashes differ), seen/unseen phrasing, the reference, the
    prediction and its outcome. Written beside the record (`<record>.examples.jsonl`)."""
    unseen = test_rows["unseen_phrasing"] if "unseen_phrasing" in test_rows.column_names else [None] * len(predictions)
    rows = []
    for i, (prompt, reference, prediction, outcome, flag) in enumerate(
        zip(test_rows["prompt"], test_rows["completion"], predictions, per_example, unseen, strict=True)
    ):
        fields = outcome.get("fields")
        rows.append(
            {
                "id": i,
                "prompt_sha": hashlib.sha256(prompt.encode()).hexdigest()[:12],
                "unseen_phrasing": None if flag is None else bool(flag),
                "reference": reference,
                "prediction": prediction,
                "valid": outcome.get("valid"),
                "exact_match": outcome["exact_match"],
                "field_accuracy": sum(fields.values()) / len(fields) if fields else None,
                "fields": fields,
            }
        )
    return rows


def task_score(
    torch_model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    test_rows: Dataset,
    *,
    scorer: str,
    use_chat_template: bool,
    batch_size: int,
    max_new_tokens: int,
    device: str,
    n_samples: int = 3,
    progress_label: str = "scoring",
) -> dict:
    """Generate on the test rows and score them; every example's outcome under `examples` (the run writes them
    to a file of their own), a few kept in the record for the report."""
    predictions, timing = generate_completions(
        torch_model,
        tokenizer,
        list(test_rows["prompt"]),
        use_chat_template=use_chat_template,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        device=device,
        conversations=list(test_rows["conversation"]) if "conversation" in test_rows.column_names else None,
        progress_label=progress_label,
    )
    references = list(test_rows["completion"])
    result = score(predictions, references, scorer)
    result["examples"] = example_rows(test_rows, predictions, result.pop("per_example"))
    if "unseen_phrasing" in test_rows.column_names and scorer == "json_fields":
        for flag, key in ((True, "unseen"), (False, "seen")):
            idx = [i for i, u in enumerate(test_rows["unseen_phrasing"]) if bool(u) == flag]
            if idx:
                sub = score([predictions[i] for i in idx], [references[i] for i in idx], scorer)
                sub.pop("per_example")
                result[f"exact_match_{key}_phrasing"] = sub["exact_match"]
                result[f"n_{key}_phrasing"] = len(idx)
    result["n"] = len(references)
    result["generation"] = timing
    result["samples"] = [
        {"prompt": p, "reference": r, "prediction": q}
        for p, r, q in list(zip(test_rows["prompt"], references, predictions, strict=True))[:n_samples]
    ]
    return result


# General text that is not the task: docstrings of Python standard-library modules (Python 3.11, PSF
# licence). The loss on it before and after training is the run's forgetting.
GENERAL_TEXT = Path(__file__).resolve().parent / "texts" / "general.txt"


@torch.no_grad()
def general_text_loss(
    torch_model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    *,
    device: str,
    chunk_tokens: int,
    max_chunks: int,
) -> dict:
    """Mean next-token loss on fixed chunks of GENERAL_TEXT (one forward pass, no generation)."""
    text = GENERAL_TEXT.read_text(encoding="utf-8")
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    n_chunks = min(max_chunks, len(ids) // chunk_tokens)
    if n_chunks == 0:
        raise ValueError(f"general text has {len(ids)} tokens, fewer than one chunk of {chunk_tokens}")
    chunks = ids[: n_chunks * chunk_tokens].view(n_chunks, chunk_tokens).to(device)
    was_training = torch_model.training
    torch_model.eval()
    try:
        loss = torch_model(input_ids=chunks, labels=chunks).loss
    finally:
        torch_model.train(was_training)
    return {"loss": float(loss), "tokens": n_chunks * chunk_tokens, "source": GENERAL_TEXT.name}


@torch.no_grad()
def generation_latency(
    torch_model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    *,
    use_chat_template: bool,
    new_tokens: int,
    device: str,
) -> dict:
    """Latency of greedy generation, one prompt at a time, exactly `new_tokens` new tokens each.

    min_new_tokens = max_new_tokens, so every variant (base, adapter unmerged, merged) does the same
    work whatever it would answer; one short warm-up call is left out of the timing.
    """
    was_training = torch_model.training
    torch_model.eval()

    def generate(prompt: str, n: int) -> None:
        text = render_prompt(tokenizer, prompt, use_chat_template)
        batch = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(device)
        torch_model.generate(
            **batch, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    try:
        generate(prompts[0], 2)
        latencies = []
        for prompt in prompts:
            sync()
            start = time.perf_counter()
            generate(prompt, new_tokens)
            sync()
            latencies.append(time.perf_counter() - start)
    finally:
        torch_model.train(was_training)
    total = sum(latencies)
    mean = total / len(latencies)
    return {
        "mean_latency_s": mean,
        # the spread over prompts, so a difference between two latencies can be weighed against it
        "std_latency_s": (sum((x - mean) ** 2 for x in latencies) / (len(latencies) - 1)) ** 0.5
        if len(latencies) > 1
        else None,
        "tokens_per_s": new_tokens * len(latencies) / total,
        "new_tokens": new_tokens,
        "n_prompts": len(latencies),
    }


# ------------------------------------------------------------------ a run's checks, as its config sets them


def run_score(torch_model, tokenizer, test_rows, cfg: RunConfig, device: str, label: str = "scoring") -> dict:
    return task_score(
        torch_model,
        tokenizer,
        test_rows,
        scorer=cfg.dataset.scorer,
        use_chat_template=cfg.dataset.use_chat_template,
        batch_size=cfg.eval.batch_size,
        max_new_tokens=cfg.eval.max_new_tokens,
        device=device,
        progress_label=label,
    )


def compare_predictions(merged: list[dict], unmerged: list[dict], unmerged_score: dict) -> dict:
    """Merged against unmerged scoring of one trained adapter, example by example: how many predictions differ,
    which, and the unmerged scores (eval.check_merged_scoring)."""
    differ = [a["id"] for a, b in zip(merged, unmerged, strict=True) if a["prediction"] != b["prediction"]]
    return {
        "n": len(merged),
        "predictions_differ": len(differ),
        "differing_ids": differ[:50],
        "unmerged_exact_match": unmerged_score.get("exact_match"),
        "unmerged_field_accuracy": unmerged_score.get("field_accuracy"),
        "unmerged_seconds": unmerged_score.get("generation", {}).get("seconds"),
    }


def base_score_key(cfg: RunConfig, device: str, dtype: torch.dtype) -> str:
    """What the untrained model's score depends on: model, data, scoring settings, dtype and quantisation."""
    m = cfg.method
    key_fields = {
        "model": dataclasses.asdict(cfg.model),
        "dataset": dataclasses.asdict(cfg.dataset),
        "eval": [cfg.eval.batch_size, cfg.eval.max_test_examples, cfg.eval.max_new_tokens],
        "dtype": str(dtype),
        "quant": [m.quant_type, m.double_quant, str(dtype)] if m.name == "qlora" else None,
        "device": device,
        "seed": cfg.train.seed if cfg.model.init == "random" else None,
    }
    return hashlib.sha256(json.dumps(key_fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _base_score_in_records(results_dir: Path, key: str) -> dict | None:
    """A base score of this key that an earlier run of the same results folder recorded, with its examples:
    the folder is committed, so a sweep resumed on another machine does not score the same base again."""
    from harness.results import read_examples  # results imports nothing of evaluation's

    for path in sorted(results_dir.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        base = (record.get("metrics") or {}).get("base_score") or {}
        name = (record.get("run") or {}).get("base_examples_log")
        if base.get("key") == key and name and (path.parent / name).exists():
            return {**base, "examples": read_examples(path.parent / name), "cached_from": str(path)}
    return None


def base_score(torch_model, tokenizer, test_rows, cfg: RunConfig, device: str, dtype: torch.dtype) -> dict:
    """The untrained model's score, cached: every LoRA rank of a sweep shares one base (same weights,
    dtype and quantisation), so it is scored once per cache (or results folder) instead of once per run."""
    key = base_score_key(cfg, device, dtype)
    path = Path(cfg.cache_dir).expanduser() / "base_scores" / f"{key}.json"
    if path.exists():
        cached = json.loads(path.read_text(encoding="utf-8"))
        if "examples" in cached:  # caches written before per-example files lack them: score again
            cached["cached_from"] = str(path)
            return cached
    found = _base_score_in_records(Path(cfg.results_dir), key)
    if found is not None:
        return found
    result = {**run_score(torch_model, tokenizer, test_rows, cfg, device, label="scoring the base model"), "key": key}
    write_json_atomic(path, result)
    return result


def forgetting_loss(torch_model, tokenizer, cfg: RunConfig, device: str) -> dict | None:
    if not cfg.eval.forgetting_chunks:
        return None
    return general_text_loss(
        torch_model,
        tokenizer,
        device=device,
        chunk_tokens=cfg.eval.forgetting_chunk_tokens,
        max_chunks=cfg.eval.forgetting_chunks,
    )


def run_latency(torch_model, tokenizer, test_rows, cfg: RunConfig, device: str) -> dict:
    prompts = list(test_rows["prompt"][: cfg.eval.latency_prompts])
    return generation_latency(
        torch_model,
        tokenizer,
        prompts,
        use_chat_template=cfg.dataset.use_chat_template,
        new_tokens=cfg.eval.latency_new_tokens,
        device=device,
    )
