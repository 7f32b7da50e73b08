"""The report: claim checks on measured frames, report.md/report.html from real tiny-model records, HTML
escaping of model outputs, and the page as a person sees it (headless Chromium)."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from harness.report import claims
from harness.report.command import write_report
from harness.report.frames import runs_frame, variants_frame
from harness.run.train import run

from .conftest import FAST, ROOT, compose_config

METHODS = ("full", "lora_r4", "lora_r8", "lora", "qlora", "qlora_fp4")


@pytest.fixture(scope="module")
def results(tmp_path_factory, cache_dir):
    from harness.run.checks import load_run_config

    out = tmp_path_factory.mktemp("results")
    for method in METHODS:
        # the CPU smoke profile make sweep uses, shrunk further by FAST
        overrides = ["profile=cpu_quick", *FAST, f"method={method}", f"results_dir={out}", f"cache_dir={cache_dir}",
                     "eval.latency_prompts=2", "eval.latency_new_tokens=4", "eval.forgetting_chunks=2",
                     "eval.forgetting_chunk_tokens=64"]  # fmt: skip
        run(load_run_config(compose_config(overrides)))
    return out


def _records(results):
    from harness.results import load_records

    return load_records(results)


def test_records_carry_forgetting_and_inference_cost(results):
    for record in _records(results):
        m = record["metrics"]
        f = m["forgetting"]
        assert f["tokens"] == 128 and f["delta"] == pytest.approx(f["loss_after"] - f["loss_before"])
        latency = m["inference"]
        assert latency["base"]["new_tokens"] == 4 and latency["base"]["mean_latency_s"] > 0
        method = record["config"]["method"]["name"]
        assert set(latency) == {"full": {"base", "trained"}, "lora": {"base", "unmerged", "merged"},
                                "qlora": {"base", "unmerged"}}[method]  # fmt: skip


def test_report_has_every_section_claim_and_plot(results, tmp_path):
    records = _records(results)
    md_path, html_path = write_report(records, tmp_path, title="tiny test")
    md = md_path.read_text()
    for section in ("## Conditions", "## Runs", "## Trade-off matrix", "## Claims check", "## Plots"):
        assert section in md
    # every run wrote its per-example file: each method is compared with full FT example by example
    paired = re.sub(" +", " ", md[md.index("## Quality, example by example") : md.index("## Learning curves")])
    for label in ("lora-r4", "lora-r16", "qlora-nf4-r16", "qlora-fp4-r16"):
        assert f"| below full FT | full - {label} | exact match |" in paired
    assert "| nf4 minus fp4 | qlora-nf4-r16 - qlora-fp4-r16 |" in paired and "No per-example results" not in paired
    # cpu_quick draws no learning curve: the report says that whether methods had stopped improving is unknown
    curves = md[md.index("## Learning curves") : md.index("## Conditions")]
    assert "No learning curve in these records" in curves and "4 steps x 4 examples = 16 training examples" in curves
    # the summary first (no pick: nothing scored above 0 in a few steps), its figure, then the decision: the GPU
    # sizes x method table, peaks predicted (a CPU sweep), scores with their error
    summary = md[md.index("## ") : md.index("## Which method fits which GPU")]
    assert summary.startswith("## Summary") and "No pick" in summary and "![pareto](pareto.png)" in summary
    first = md[md.index("## Which method fits which GPU") : md.index("## Answer")]
    assert "| 24 GB " in first and "| 141 GB " in first and "predicted" in first and "± " in first
    assert "on a CPU (tokens/s is the CPU's; GPU peaks predicted)" in first
    # no method scored above 0 in a few steps: no winner is named
    answer = md[md.index("## Answer") : md.index("## Conditions")]
    assert "training was too short to compare" in answer and "Best task score" not in answer
    claim_ids = [c["id"] for c in claims.load_claims()["claims"]]
    table = md[md.index("## Claims check") : md.index("## Plots")]
    for claim_id in claim_ids:
        assert f"| {claim_id} " in table
    verdicts = claims.check_claims(runs_frame(records), variants_frame(runs_frame(records)))
    assert set(verdicts["verdict"]) <= {claims.HOLDS, claims.FAILS, claims.PARTLY, claims.INCONCLUSIVE,
                                        claims.UNTESTABLE}  # fmt: skip
    by_id = verdicts.set_index("id")
    # these have the data they need in this sweep, so they must get a verdict of their own
    tested = by_id.loc[["trainable", "rank-linear", "speed-order", "adapter-mb", "merge-latency"]]
    assert (tested["verdict"] != claims.UNTESTABLE).all(), tested
    # but a smoke sweep on a CPU decides no measured claim: each waits, saying what is missing
    measured = by_id.loc[["gap-lora", "gap-qlora", "pct-95", "rank-linear", "speed-order", "nf4-stable",
                          "merge-latency", "rank-start-8"]]  # fmt: skip
    assert (measured["verdict"] == claims.INCONCLUSIVE).all(), measured[["verdict", "why"]]
    assert measured["why"].str.startswith("missing: ").all()
    assert measured["why"].str.contains("reduced profile cpu_quick").all()
    # counted claims need no sweep of their size: 4-bit 70B weights alone exceed 24 GB, 7B full FT's states 28 GB
    assert (
        by_id.loc["qlora-70b-24gb", "verdict"] == claims.FAILS and by_id.loc["mem-7b-full", "verdict"] == claims.HOLDS
    )
    assert "at llama-2-7b: adapters" in by_id.loc["adapter-mb", "measured"]
    for plot in ("memory", "speed", "pareto", "ranks", "nf4_fp4", "loss_curves"):
        assert (tmp_path / f"{plot}.png").stat().st_size > 1000
        assert f"![{plot}]({plot}.png)" in md
    page = html_path.read_text()
    # the six plots, and the score-memory one again on the first screen
    assert page.count("<img alt=") == 7 and page.count("data:image/png;base64,") == 7


def test_a_plot_whose_runs_were_withdrawn_leaves_the_report_folder(results, tmp_path):
    """Regenerating after QLoRA's records are removed: nf4_fp4.png, drawn last time, is gone, not left stale."""
    out = tmp_path / "report"
    write_report(_records(results), out, title="all")
    assert (out / "nf4_fp4.png").is_file()
    md = write_report([r for r in _records(results) if r["config"]["method"]["name"] != "qlora"], out, title="no 4-bit")
    assert not (out / "nf4_fp4.png").exists() and "nf4_fp4.png" not in md[0].read_text()
    assert (out / "memory.png").is_file()


def test_records_without_per_example_files_still_make_a_report_that_names_them(results, tmp_path):
    """Records written before per-example files (or with the file gone): the report is written, those runs are in
    no paired comparison and are named; the quality claims say the error is not paired."""
    old = tmp_path / "old"
    shutil.copytree(results, old)
    for path in old.glob("*full*.examples.jsonl"):
        path.unlink()
    (next(old.glob("*lora-r4*.examples.jsonl"))).write_text("{not json\n")
    records = _records(old)
    md = write_report(records, tmp_path / "report", title="old records")[0].read_text()
    paired = re.sub(" +", " ", md[md.index("## Quality, example by example") : md.index("## Learning curves")])
    assert "No per-example results for full (seed 0), lora-r4 (seed 0)" in paired
    assert "below full FT" not in paired and "| nf4 minus fp4 |" in paired
    claims_table = md[md.index("## Claims check") : md.index("## Plots")]
    assert "per-example results of lora-r4 and full on the same test examples" in claims_table


def test_a_sweep_that_scored_nothing_still_makes_a_report(tmp_path, cache_dir):
    from harness.run.checks import load_run_config

    out = tmp_path / "results"
    for method in ("full", "lora"):
        overrides = ["profile=cpu_quick", *FAST, f"method={method}", f"results_dir={out}", f"cache_dir={cache_dir}",
                     "eval.enabled=false"]  # fmt: skip
        run(load_run_config(compose_config(overrides)))
    md = write_report(_records(out), tmp_path / "report", title="no scores")[0].read_text()
    assert "No two methods here have per-example results" in md and "eval.enabled=false scores nothing" in md


def test_model_outputs_are_escaped_in_html(results, tmp_path):
    records = _records(results)
    records[0]["metrics"]["score"]["samples"][0]["prediction"] = "<script>alert('x')</script>"
    _, html_path = write_report(records, tmp_path, title="<b>title</b>")
    page = html_path.read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>title</b>" not in page


def test_report_command_regenerates_from_records(results, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness", "report", str(results), "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.html").exists()
    missing = subprocess.run([sys.executable, "-m", "harness", "report", str(tmp_path / "nope")], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert missing.returncode == 2 and "not a folder" in missing.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("FT_HARNESS_REQUIRE_CHROMIUM"),
    reason="Debian's chromium is not installed (.ci/run installs it and requires this test)",
)
def test_report_renders_in_headless_chromium(results, tmp_path):
    from matplotlib import image

    assert CHROMIUM, "chromium is not installed: apt-get install chromium"
    _, html_path = write_report(_records(results), tmp_path / "report", title="tiny test")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", html_path.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout  # fmt: skip
    assert dom.count("<table") >= 4, "the rendered page lacks its tables"
    inlined = html_path.read_text().count("<img")
    assert inlined >= 6, "the report inlines fewer plots than its sections draw"
    assert dom.count("<img") == inlined, "the browser dropped some of the inlined plots"
    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1280,4000", f"--screenshot={shot}", html_path.as_uri()],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    pixels = image.imread(shot)
    assert pixels.shape[0] == 4000 and pixels.shape[1] == 1280
    assert float(np.std(pixels)) > 0.05, "the screenshot is blank"


def _variant_frames(rows: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    base = {"seed": 0, "status": "ok", "n_test": 100, "quant_type": None, "r": None, "losses": [],
            "profile": "full", "device": "cuda",
            "forgetting_delta": None, "grad_accum": 1, "target_modules": "q_proj", "params_total": 1e8,
            "artifact_mib": 1.0, "peak_mem_mib": 1000.0, "mem_source": "rss", "tokens_per_s": 100.0,
            "trainable_pct": 1.0, "double_quant": None}  # fmt: skip
    runs = pd.DataFrame([{**base, **row} for row in rows])
    return runs, variants_frame(runs)


@pytest.mark.parametrize(("lora_score", "n_test", "verdict"), [
    (0.79, 2000, claims.HOLDS),  # gap 1.25 % + 2 SE 3.2 % inside the 5 % band
    (0.50, 2000, claims.FAILS),
    (0.74, 2000, claims.INCONCLUSIVE),  # 7.5 % ± 3.2: could be either side of 5 %
    (0.79, 100, claims.INCONCLUSIVE),  # the same gap on 100 examples: 2 SE (14 %) wider than the band
])  # fmt: skip
def test_score_gap_verdict_follows_the_scores_and_their_standard_errors(lora_score, n_test, verdict):
    runs, variants = _variant_frames([
        {"label": "full", "method": "full", "score": 0.80, "n_test": n_test},
        {"label": "lora-r8", "method": "lora", "r": 8, "score": lora_score, "n_test": n_test},
    ])  # fmt: skip
    result = claims.score_gap(runs, variants, {"method": "lora", "max_gap_pct": 5})
    assert result["verdict"] == verdict, result
    assert ("more test examples or seeds" in result["why"]) == (n_test == 100)


def test_a_smoke_profile_decides_no_measured_claim():
    smoke = {"n_test": 2000, "profile": "cpu_quick"}
    rows = [{"label": "full", "method": "full", "score": 0.80, **smoke},
            {"label": "lora-r8", "method": "lora", "r": 8, "score": 0.50, **smoke}]  # fmt: skip
    runs, variants = _variant_frames(rows)
    result = claims.score_gap(runs, variants, {"method": "lora", "max_gap_pct": 5})
    assert result["verdict"] == claims.INCONCLUSIVE and "reduced profile cpu_quick" in result["why"]


def test_speed_order_and_rank_linearity_follow_the_measurements():
    rows = [
        {"label": "full", "method": "full", "score": 0.5, "tokens_per_s": 100.0},
        {"label": "lora-r4", "method": "lora", "r": 4, "score": 0.5, "tokens_per_s": 300.0, "peak_mem_mib": 1004.0},
        {"label": "lora-r8", "method": "lora", "r": 8, "score": 0.5, "tokens_per_s": 290.0, "peak_mem_mib": 1008.0},
        {"label": "lora-r16", "method": "lora", "r": 16, "score": 0.5, "tokens_per_s": 280.0, "peak_mem_mib": 1016.0},
        {"label": "qlora-nf4-r16", "method": "qlora", "r": 16, "quant_type": "nf4", "score": 0.5,
         "tokens_per_s": 150.0},
    ]  # fmt: skip
    runs, variants = _variant_frames(rows)
    assert claims.speed_order(runs, variants, {})["verdict"] == claims.PARTLY  # QLoRA slower than LoRA
    assert claims.rank_linear(runs, variants, {"min_r2": 0.95})["verdict"] == claims.HOLDS
    rows[1]["peak_mem_mib"], rows[3]["peak_mem_mib"] = 1016.0, 1004.0  # memory falls with r
    runs, variants = _variant_frames(rows)
    assert claims.rank_linear(runs, variants, {"min_r2": 0.95})["verdict"] == claims.FAILS
    # the same figures from a CPU: its RSS and timings decide nothing about a GPU
    runs, variants = _variant_frames([{**row, "device": "cpu"} for row in rows])
    for check in (claims.speed_order, claims.rank_linear):
        result = check(runs, variants, {"min_r2": 0.95})
        assert result["verdict"] == claims.INCONCLUSIVE and "runs on a GPU" in result["why"]


def test_a_methods_speed_is_its_fastest_seeds_and_its_score_the_seeds_mean():
    """A LoRA seed that ran beside other work (a third of its speed) would put LoRA below full FT in tokens/s."""
    runs, variants = _variant_frames([
        {"label": "full", "method": "full", "score": 0.6, "tokens_per_s": 100.0},
        {"label": "lora-r16", "method": "lora", "r": 16, "score": 0.4, "tokens_per_s": 40.0},
        {"label": "lora-r16", "method": "lora", "r": 16, "seed": 1, "score": 0.6, "tokens_per_s": 120.0},
    ])  # fmt: skip
    lora = variants.set_index("label").loc["lora-r16"]
    assert lora["tokens_per_s"] == 120.0 and lora["score"] == pytest.approx(0.5) and lora["n_seeds"] == 2


def test_the_answer_names_its_winners_from_the_means_and_sends_the_reader_to_the_paired_verdict():
    """A mean's lead over three seeds is often inside its error: the answer must not read as a verdict."""
    from harness.report.tradeoff_report import _answer

    _, variants = _variant_frames([
        {"label": "full", "method": "full", "score": 0.6, "field_acc": 0.9, "tokens_per_s": 100.0},
        {"label": "lora-r16", "method": "lora", "r": 16, "score": 0.59, "field_acc": 0.9, "tokens_per_s": 150.0},
    ])  # fmt: skip
    answer = _answer(variants)
    assert "Best task score" in answer and "**full**" in answer
    assert "read from the means, errors left out" in answer and "paired intervals" in answer


def test_nf4_stability_compares_forgetting_only_over_seeds_and_within_its_error():
    """One run of each format says nothing of forgetting (its seed-to-seed spread is unknown): no verdict from it.
    Over three seeds each, a gap beyond its 95 % interval (Welch's t: 2.78 at 4 df, not the 2 of two standard
    errors) decides; one inside it is a tie."""
    params = {"spike_ratio": 1.5, "window": 5, "forgetting_tie": 0.005}
    losses = [1.0] * 12  # no spikes in either

    def frames(nf4: list[float], fp4: list[float]):
        rows = [{"label": f"qlora-{quant}-r16", "method": "qlora", "r": 16, "quant_type": quant, "seed": seed,
                 "score": 0.5, "forgetting_delta": value, "losses": losses}
                for quant, values in (("nf4", nf4), ("fp4", fp4)) for seed, value in enumerate(values)]  # fmt: skip
        return _variant_frames(rows)

    one_each = claims.nf4_vs_fp4(*frames([0.138], [0.145]), params)
    assert one_each["verdict"] == claims.INCONCLUSIVE and "two or more seeds of nf4 and of fp4" in one_each["why"]
    clear = claims.nf4_vs_fp4(*frames([0.130, 0.131, 0.129], [0.150, 0.151, 0.149]), params)
    assert clear["verdict"] == claims.HOLDS
    assert "forgetting nf4 - fp4: -0.0200 ± 0.0023 (95 %, Welch's t over seeds, 4.0 df)" in clear["measured"]
    noisy = claims.nf4_vs_fp4(*frames([0.12, 0.15, 0.135], [0.13, 0.16, 0.145]), params)
    assert noisy["verdict"] == claims.INCONCLUSIVE  # -0.010, but ± 0.034 over these seeds
    # a tie on both says what could separate them: runs with spikes, and the seeds that would shrink the interval
    # enough (its half-width t(0.975, df) x 0.0122 x sqrt(3 / m) falls under 0.010 at m = 19 seeds each)
    assert "loss spikes: none to compare" in noisy["why"], noisy
    assert "about 19 seeds of each would take a difference of this size outside it" in noisy["why"], noisy
    tie = claims.nf4_vs_fp4(*frames([0.130, 0.150, 0.140], [0.131, 0.151, 0.141]), params)
    assert tie["verdict"] == claims.INCONCLUSIVE and "under the 0.005 tie, which more seeds" in tie["why"], tie
    worse = claims.nf4_vs_fp4(*frames([0.150, 0.151, 0.149], [0.130, 0.131, 0.129]), params)
    assert worse["verdict"] == claims.FAILS


def test_nf4_stability_never_takes_runs_with_and_without_double_quantisation_for_seeds():
    """Seed 0 of nf4 and fp4, each with and without double quantisation, is one seed of two configurations, not two
    seeds of one: forgetting is not compared. Where one configuration has the seeds, it alone is compared."""
    params = {"spike_ratio": 1.5, "window": 5, "forgetting_tie": 0.005}
    losses = [1.0] * 12

    def row(quant: str, dq: bool, seed: int, forgetting: float) -> dict:
        label = f"qlora-{quant}{'-dq' if dq else ''}-r16"
        return {"label": label, "method": "qlora", "r": 16, "quant_type": quant, "double_quant": dq, "seed": seed,
                "score": 0.5, "forgetting_delta": forgetting, "losses": losses}  # fmt: skip

    pooled = [row("nf4", False, 0, 0.130), row("nf4", True, 0, 0.131), row("fp4", False, 0, 0.150),
              row("fp4", True, 0, 0.151)]  # fmt: skip
    result = claims.nf4_vs_fp4(*_variant_frames(pooled), params)
    assert result["verdict"] == claims.INCONCLUSIVE and "two or more seeds of nf4 and of fp4" in result["why"]
    assert result["measured"].startswith("r16: nf4:") and "(1 runs)" in result["measured"]
    seeded = [*pooled, row("nf4", True, 1, 0.129), row("fp4", True, 1, 0.149), row("nf4", True, 2, 0.130),
              row("fp4", True, 2, 0.150)]  # fmt: skip
    result = claims.nf4_vs_fp4(*_variant_frames(seeded), params)
    assert result["verdict"] == claims.HOLDS and result["measured"].startswith("r16, double quantisation: nf4:")
    assert "(3 runs)" in result["measured"]


def test_loss_spikes_are_counted_against_the_running_median():
    assert claims._spikes([1.0, 0.9, 0.8, 0.8, 0.7, 2.0, 0.7, 0.6], ratio=1.5, window=5) == 1
    assert claims._spikes([1.0, 0.9, 0.8, 0.8, 0.7, 0.75, 0.7, 0.6], ratio=1.5, window=5) == 0


def test_bench_report_compares_recipes_per_method(tmp_path):
    from harness.report.bench_report import bench_frame, write_bench_report

    def record(label: str, recipe: str, tokens_per_s: float, finished: str) -> dict:
        return {
            "run": {"method_label": label, "finished_at": finished, "precision": "bf16", "learning_rate": 5e-4},
            "config": {
                "recipe_name": recipe,
                "train": {"batch_size": 4, "grad_accum": 4, "packing": recipe == "harness",
                          "pad_to_length": 512 if recipe == "documents" else None},
            },
            "metrics": {"steps": 2, "tokens_per_s": tokens_per_s, "mfu": None, "memory": {"peak_rss_mib": 100.0},
                        "train_seconds": 1.6, "process_seconds": 10.0, "total_seconds": 8.0,
                        "score": {"exact_match": 0.5, "field_accuracy": 0.9}},
            "environment": {"cpu": "test cpu", "gpu_name": None},
            "status": "ok",
        }  # fmt: skip

    records = [
        record("lora-r16", "documents", 999.0, "2026-01-01"),  # superseded by the newer documents run
        record("lora-r16", "documents", 100.0, "2026-01-02"),
        record("lora-r16", "baseline", 250.0, "2026-01-02"),
        record("lora-r16", "harness", 500.0, "2026-01-02"),
    ]
    frame = bench_frame(records)
    assert list(frame["recipe"]) == ["documents", "baseline", "harness"]
    assert list(frame["x documents"]) == [1.0, 2.5, 5.0]
    assert list(frame["x baseline"]) == [0.4, 1.0, 2.0]
    assert list(frame["padding"]) == ["to 512", "to longest", "packed"]
    assert list(frame["examples"]) == [32, 32, 32]
    assert list(frame["learning rate"]) == ["0.0005"] * 3
    assert list(frame["ms per micro-batch"]) == [200.0, 200.0, 200.0]  # 1.6 s over 2 steps x 4 micro-batches
    md, _ = write_bench_report(records, tmp_path, title="bench")
    text = " ".join(md.read_text().split())
    assert "| lora-r16 | harness" in text
    # the sweep's overhead, per job of the table (the superseded documents run left out), named with its recipe
    overhead = text[text.index("## Where the time went") :]
    assert re.findall(r"\| (lora-r16 / \w+) \|", overhead) == [
        "lora-r16 / documents", "lora-r16 / baseline", "lora-r16 / harness"
    ]  # fmt: skip
    assert "Training took 16.0 % of the jobs' process time" in overhead

    # the ablation (sweeps/speedups.yaml): each change alone, ordered as in the ladder, ratios to the baseline
    ablation = [
        record("lora-r16", "baseline-sampler", 245.0, "2026-01-03"),
        record("lora-r16", "baseline+packed", 300.0, "2026-01-03"),
        record("lora-r16", "baseline", 250.0, "2026-01-03"),
        record("lora-r16", "baseline+grouped", 400.0, "2026-01-03"),
    ]
    frame = bench_frame(ablation)
    assert list(frame["recipe"]) == ["baseline", "baseline+grouped", "baseline+packed", "baseline-sampler"]
    assert list(frame["x baseline"]) == [1.0, 1.6, 1.2, 0.98]
    assert "x documents" not in frame.columns  # no documents run in this folder: no column of blanks
    assert "compile s" not in frame.columns  # nor compile columns without a compiled run
    assert "sampler CPU %" not in frame.columns  # records from before the sampler's cost was recorded

    ablation[2]["metrics"]["memory"]["sampler_cpu_share"] = 0.0014  # the baseline, sampler on
    assert bench_frame(ablation).set_index("recipe").loc["baseline", "sampler CPU %"] == pytest.approx(0.14)

    compiled = record("lora-r16", "baseline+compile", 260.0, "2026-01-04")
    compiled["metrics"]["compile"] = {"graphs": 2, "graph_breaks": 0, "compile_seconds": 41.5}
    frame = bench_frame([*ablation, compiled]).set_index("recipe")
    assert frame.loc["baseline+compile", ["compile s", "graphs"]].tolist() == [41.5, 2]
    assert frame.loc["baseline", ["compile s", "graphs"]].isna().all()


def test_where_the_time_went_splits_each_jobs_process_time():
    """The parts (start and imports, base checks, training, scoring, probes, the rest) add up to the job's time;
    a record from before the probes were timed apart keeps them in its scoring time."""
    import pandas as pd

    from harness.report.frames import time_table

    runs = pd.DataFrame(
        {"label": ["full", "lora-r16"], "process_s": [100.0, 60.0], "total_s": [90.0, 50.0],
         "base_eval_s": [20.0, 5.0], "train_s": [30.0, 20.0], "eval_s": [25.0, 15.0], "probe_s": [None, 6.0]}
    )  # fmt: skip
    table, note = time_table(runs)
    parts = table[["start and imports s", "base model checks s", "training s", "scoring s",
                   "latency and forgetting probes s", "data, loading, saving s"]].fillna(0).sum(axis=1)  # fmt: skip
    assert list(parts) == list(table["job process s"]) == [100.0, 60.0]
    assert list(table["start and imports s"]) == [10.0, 10.0]
    assert list(table["scoring s"]) == [25.0, 9.0]
    assert list(table["data, loading, saving s"]) == [15.0, 10.0]
    assert "31.2 % of the jobs' process time (50 of 160 s)" in note
    assert "probes (generation latency, forgetting on general text) took 6 s" in note
    assert "median per job" not in note  # these records carry no split of their start
    # a record that times its model build: stated apart, taken out of the rest
    runs["build_s"] = [None, 7.0]
    table, _ = time_table(runs)
    assert list(table["data, loading, saving s"]) == [15.0, 3.0]
    assert table["model build s"].tolist()[1] == 7.0 and pd.isna(table["model build s"].tolist()[0])
    parts = table[["start and imports s", "model build s", "base model checks s", "training s", "scoring s",
                   "latency and forgetting probes s", "data, loading, saving s"]].fillna(0).sum(axis=1)  # fmt: skip
    assert list(parts) == [100.0, 60.0]


def test_the_time_table_states_the_median_split_of_the_jobs_start():
    import pandas as pd

    from harness.report.frames import time_table

    startup = [
        {"interpreter_and_launcher": 1.0, "hydra_job_setup": 0.5, "library_imports": 6.0, "config_check": 0.1},
        {"interpreter_and_launcher": 3.0, "hydra_job_setup": 0.7, "library_imports": 8.0, "config_check": 0.3},
        None,  # a record from before the split
    ]
    runs = pd.DataFrame(
        {"label": ["a", "b", "c"], "process_s": [100.0] * 3, "total_s": [90.0] * 3, "base_eval_s": [0.0] * 3,
         "train_s": [50.0] * 3, "eval_s": [20.0] * 3, "startup": startup}
    )  # fmt: skip
    _, note = time_table(runs)
    assert (
        "median per job: interpreter and launcher 2.0 s, hydra job setup 0.6 s, library imports 7.0 s, "
        "config check 0.2 s" in note
    )


def test_the_report_kind_is_the_one_the_sweep_file_names():
    """Each sweep file names its report; a record keeps it, and the report is chosen by it, not guessed (records
    from before the field fall back to what they ran)."""
    from harness.report.command import report_kind
    from harness.run.checks import load_run_config

    for sweep, kind in (("tradeoff", "tradeoff"), ("ranks", "tradeoff"), ("bench", "bench"), ("speedups", "bench"),
                        ("scale", "scale"), ("mfu", "scale")):  # fmt: skip
        cfg = load_run_config(compose_config([f"+sweeps={sweep}"]))
        assert cfg.report_kind == kind, sweep
    # a tradeoff record with evaluation off (the guess would say scale) stays a trade-off one
    record = {"config": {"report_kind": "tradeoff", "eval": {"enabled": False}}}
    assert report_kind(record) == "tradeoff"
    assert report_kind({"config": {"eval": {"enabled": False}}}) == "scale"  # an older record


def test_a_damaged_or_foreign_json_is_skipped_with_a_warning_naming_it(results, tmp_path):
    """A record truncated by a crash and another tool's JSON in the results folder: the report and budget go on
    with the readable records, each skipped file named once; resume runs the job of a damaged record again."""
    folder = tmp_path / "results"
    shutil.copytree(results, folder)
    good = sorted(folder.glob("*.json"))[0]
    truncated = folder / "truncated.json"
    truncated.write_text(good.read_text()[:200])
    foreign = folder / "package.json"
    foreign.write_text('{"name": "not a record"}')
    proc = subprocess.run([sys.executable, "-m", "harness", "report", str(folder), "--out", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = proc.stdout + proc.stderr
    assert log.count(f"skipping {truncated}") == 1 and log.count(f"skipping {foreign}") == 1
    assert (tmp_path / "out" / "report.md").exists()
    budget = subprocess.run([sys.executable, "-m", "harness", "budget", "--gpu-memory", "24GB", "--model",
                             "llama-3.2-1b", "--results", str(folder)], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert budget.returncode == 0 and f"skipping {truncated}" in budget.stderr

    from harness.results import existing_ok_record, record_path
    from harness.run.checks import load_run_config

    cfg = load_run_config(compose_config([*FAST, "method=lora", f"results_dir={folder}"]))
    record_path(cfg).write_text("{")  # a crash mid-write (written atomically, it cannot: this is a copy gone bad)
    assert existing_ok_record(cfg) is None


def test_a_report_is_written_from_records_missing_any_part_and_says_which(results, tmp_path):
    """Records lacking scores, latency, forgetting or a steps log, or of an older format: the report is written
    (markdown and HTML) and its Runs section names what each lacks, so a '-' is never read as a zero."""
    mixed = tmp_path / "mixed"
    shutil.copytree(results, mixed)

    def edit(pattern: str, change) -> None:
        path = next(p for p in mixed.glob(f"*{pattern}_*.json"))
        record = json.loads(path.read_text())
        change(record)
        path.write_text(json.dumps(record))

    edit("full", lambda r: r["metrics"].pop("inference"))
    edit("lora-r4", lambda r: r["metrics"].pop("forgetting"))
    edit("qlora-fp4-r16", lambda r: r["metrics"].pop("score"))
    edit("lora-r16", lambda r: [r.pop("schema_version"), r["run"].pop("launcher"), r["run"].pop("precision_reason")])
    for path in mixed.glob("*qlora-nf4-r16_*.steps.jsonl"):
        path.unlink()
    md_path, html_path = write_report(_records(mixed), tmp_path / "report", title="mixed records")
    md = md_path.read_text()
    assert html_path.stat().st_size > 1000
    runs_section = md[md.index("## Runs") : md.index("## Where the time went")]
    for part in (
        "no scores in the records of qlora-fp4-r16 (seed 0)",
        "no generation latency in the records of full (seed 0)",
        "no forgetting in the records of lora-r4 (seed 0)",
        "no steps log in the records of qlora-nf4-r16 (seed 0)",
        "record format version 1 (this harness writes 2): lora-r16 (seed 0)",
    ):
        assert part in runs_section
    # the complete records say nothing of the kind
    complete = write_report(_records(results), tmp_path / "complete", title="complete")[0].read_text()
    assert "Missing ('-' in the tables)" not in complete


def test_the_conditions_tell_two_cpus_of_one_name_apart_by_their_native_bf16():
    """Two AMD EPYCs, with and without AVX512-BF16, share a model name and differ in speed: the conditions list
    them apart where records keep the flags, and say nothing of flags for a record from before they were kept."""
    from harness.report.conditions import conditions

    def record(**flags):
        return {"environment": {"cpu": "AMD EPYC", "cpu_count": 2, "gpu_name": None, **flags}}

    table = conditions([record(cpu_native_bf16=["avx512_bf16"]), record(cpu_native_bf16=[]), record()])
    device = table.set_index("condition").loc["device", "value"]
    assert device == (
        "CPU: AMD EPYC (2 cores, native bf16: avx512_bf16), CPU: AMD EPYC (2 cores, native bf16: none), "
        "CPU: AMD EPYC (2 cores)"
    )
