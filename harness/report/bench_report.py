"""The speed benchmark's report: each method under the documents' recipe, a competent HF Trainer baseline and
the harness's training, with non-padding tokens/s, the ratio to the documents' recipe, MFU, memory and the
score after the same number of examples.

Why its own report: the three recipes differ in training fields on purpose, so the trade-off report's rule
(compare only records of one set of conditions) would keep one recipe and hide the comparison.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.report.frames import runs_frame, time_table
from harness.report.report_page import write_table_page
from harness.results import peak_memory


def recipe_order(recipe: str) -> tuple[int, str]:
    """Table order: the documents' recipe, the baseline, each change alone on the baseline (baseline+X or
    baseline-X, sweeps/speedups.yaml), the harness's recipe, its candidates (harness+X); by name within a group.
    A rule, not a list, so a new recipe needs no entry here."""
    groups = ("documents", "baseline", "baseline*", "harness", "harness*")
    for rank, group in enumerate(groups):
        if recipe == group or (group.endswith("*") and recipe.startswith(group[:-1])):
            return rank, recipe
    return len(groups), recipe


def is_bench_record(record: dict) -> bool:
    """A record made under a named recipe (conf/recipe/), not the default "custom" training settings."""
    return record.get("config", {}).get("recipe_name", "custom") != "custom"


def _micro_batch_ms(metrics: dict, train: dict) -> float | None:
    """Training time per micro-batch (forward + backward; the optimizer step shared among accumulated ones)."""
    micro_batches = (metrics.get("steps") or 0) * train["grad_accum"]
    seconds = metrics.get("train_seconds")
    return 1000 * seconds / micro_batches if seconds and micro_batches else None


def newest_per_job(records: list[dict]) -> list[dict]:
    """The newest record of each (method, recipe), in the table's order: by method, then recipe_order."""
    newest: dict[tuple[str, str], dict] = {}
    for r in sorted(records, key=lambda r: r.get("run", {}).get("finished_at") or ""):
        newest[(r["run"]["method_label"], r["config"]["recipe_name"])] = r
    return [newest[key] for key in sorted(newest, key=lambda key: (key[0], recipe_order(key[1])))]


def bench_frame(records: list[dict]) -> pd.DataFrame:
    """One row per (method, recipe): the newest record of each."""
    rows = []
    for r in newest_per_job(records):
        label, recipe = r["run"]["method_label"], r["config"]["recipe_name"]
        m, t = r.get("metrics", {}), r["config"]["train"]
        mem = m.get("memory", {})
        score = m.get("score", {})
        rows.append(
            {
                "method": label,
                "recipe": recipe,
                "status": r["status"],
                "batch x accum": f"{t['batch_size']} x {t['grad_accum']}",
                # a recipe with larger batches takes fewer steps over the same examples, and maybe a larger rate
                # (records before run.learning_rate: the method's, which they trained with); as text, since the
                # table's rounding to 3 decimals would print 5e-4 as 0
                "learning rate": f"{r['run'].get('learning_rate') or r['config']['method']['learning_rate']:.3g}",
                "padding": "packed"
                if t.get("packing")
                else f"to {t['pad_to_length']}"
                if t.get("pad_to_length")
                else "to longest",
                "precision": r["run"].get("precision"),
                "examples": (m.get("steps") or 0) * t["batch_size"] * t["grad_accum"],
                "tokens/s": m.get("tokens_per_s"),
                "tokens/s after step 1": m.get("tokens_per_s_after_first_step"),
                "ms per micro-batch": _micro_batch_ms(m, t),
                "MFU %": m["mfu"] * 100 if m.get("mfu") is not None else None,
                # torch.compile's seconds within training, and its graphs (more than one: breaks or new shapes)
                "compile s": (m.get("compile") or {}).get("compile_seconds"),
                "graphs": (m.get("compile") or {}).get("graphs"),
                "peak MiB": peak_memory(r)[0],
                # the memory sampler thread's CPU time over the training time: the monitoring's overhead
                "sampler CPU %": mem["sampler_cpu_share"] * 100 if mem.get("sampler_cpu_share") is not None else None,
                "eval loss": m.get("eval_loss"),
                "score": score.get("exact_match"),
                "field acc": score.get("field_accuracy"),
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    documents = frame[frame["recipe"] == "documents"].set_index("method")["tokens/s"]
    baseline = frame[frame["recipe"] == "baseline"].set_index("method")["tokens/s"]
    frame["x documents"] = [
        t / documents.get(m, float("nan")) for m, t in zip(frame["method"], frame["tokens/s"], strict=True)
    ]
    frame["x baseline"] = [
        t / baseline.get(m, float("nan")) for m, t in zip(frame["method"], frame["tokens/s"], strict=True)
    ]
    # a sweep without one of the reference recipes (the ablation has no documents run) has no such ratio,
    # and one without torch.compile no compile columns
    optional = ("x documents", "x baseline", "compile s", "graphs", "sampler CPU %")
    frame = frame.drop(columns=[c for c in optional if frame[c].isna().all()])
    return frame.sort_values(["method", "recipe"], key=lambda c: c.map(recipe_order) if c.name == "recipe" else c)


def write_bench_report(records: list[dict], out_dir: Path, *, title: str) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = bench_frame([r for r in records if is_bench_record(r)]).round(3)
    devices = sorted({r["environment"].get("gpu_name") or r["environment"].get("cpu") or "?" for r in records})
    note = (
        f"Device: {', '.join(devices)}. Non-padding tokens/s over training time (and after the first step, which "
        "carries one-off costs such as torch.compile's compilation); ratios are to the same method "
        "under the documents' recipe and the baseline, where the folder has them. MFU is blank without a GPU "
        "peak (CPU). Every recipe trains on the same number of examples (column examples), so scores compare "
        "after the same examples; a recipe with larger batches takes fewer optimizer steps over them. Where ms per "
        "micro-batch barely changes with the micro-batch's size (4 x 512 padded "
        "tokens against 16 unpadded examples), the step is bound by launching kernels, not by the arithmetic."
    )
    # The sweep's overhead (process start, imports, scoring) beside the training it measures, for the same jobs
    # as the table above, each named by its method and recipe.
    jobs = newest_per_job([r for r in records if is_bench_record(r)])
    runs = runs_frame(jobs)
    runs["label"] = [f"{r['run']['method_label']} / {r['config']['recipe_name']}" for r in jobs]
    time, time_note = time_table(runs)
    sections = [("Where the time went", time_note, time)] if time is not None else []
    return write_table_page(out_dir, title=title, note=note, table=frame, sections=sections)
