"""The real run flow on a tiny random model: every method trains a few steps and writes a full record."""

import json
import mmap
from pathlib import Path

import pytest

from harness.config import ConfigError
from harness.run.checks import cpu_has_bf16, cpu_native_bf16
from harness.run.train import run


def _lora_params(arch: dict, r: int, targets: list[str]) -> int:
    """LoRA adds r * (in + out) parameters per adapted linear layer."""
    h, i = arch["hidden_size"], arch["intermediate_size"]
    head = h // arch["num_attention_heads"]
    kv = arch["num_key_value_heads"] * head
    shapes = {
        "q_proj": (h, h),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (h, h),
        "gate_proj": (h, i),
        "up_proj": (h, i),
        "down_proj": (i, h),
    }
    return arch["num_hidden_layers"] * sum(r * (a + b) for a, b in (shapes[t] for t in targets))


@pytest.fixture(scope="module")
def records(tmp_path_factory, cache_dir):
    """Run full, LoRA, QLoRA nf4 and QLoRA fp4 once each; tests below inspect the records."""
    from harness.run.checks import load_run_config

    from .conftest import FAST, compose_config

    out = tmp_path_factory.mktemp("results")
    recs = {}
    for method in ("full", "lora", "qlora", "qlora_fp4"):
        cfg = load_run_config(
            compose_config([*FAST, f"method={method}", f"results_dir={out}", f"cache_dir={cache_dir}"])
        )
        recs[method] = run(cfg)
    return recs


@pytest.mark.parametrize("method", ["full", "lora", "qlora", "qlora_fp4"])
def test_every_method_runs_and_records(records, method):
    r = records[method]
    assert r["status"] == "ok", r["error"]
    m = r["metrics"]
    assert m["steps"] == 4
    assert m["train_tokens"] > 0 and m["tokens_per_s"] > 0 and m["samples_per_s"] > 0
    assert 0 < m["train_seconds"] < m["total_seconds"] < m["process_seconds"]
    # FLOPs counted from the architecture; no MFU on a CPU (no peak to divide by), not a made-up one
    assert m["flops_per_token"] > (6 if method == "full" else 4) * 64 * 64 and m["mfu"] is None
    # the steady state leaves out step 1: its tokens over its own (shorter) time
    first = json.loads((Path(r["run"]["record_path"]).parent / r["run"]["steps_log"]).open().readline())
    steady_tokens = m["train_tokens"] - first["tokens_per_s"] * first["elapsed_s"]
    assert m["tokens_per_s_after_first_step"] > 0 and m["mfu_after_first_step"] is None
    assert steady_tokens / m["tokens_per_s_after_first_step"] < m["train_seconds"]
    assert m["memory"]["sampler"] == "background"
    assert m["eval_loss"] > 0 and m["eval_perplexity"] > 1
    assert 0 <= m["score"]["exact_match"] <= 1 and m["score"]["n"] == 4
    assert 0 <= m["base_score"]["exact_match"] <= 1
    assert m["memory"]["peak_rss_mib"] > 0
    assert m["memory"]["peak_torch_reserved_mib"] is None  # CPU: no CUDA figures, not zeros
    assert m["artifact_bytes"] > 0
    # the evaluation's time by part (scoring against the optional probes), adding up to eval_seconds
    parts = m["eval_parts_seconds"]
    assert set(parts) == {"validation_loss", "test_generation", "forgetting", "latency"}
    assert all(v > 0 for v in parts.values()) and sum(parts.values()) == pytest.approx(m["eval_seconds"])
    assert m["train_seconds"] + m["eval_seconds"] + m["save_seconds"] + m["build_seconds"] < m["total_seconds"]
    assert m["build_seconds"] > 0
    env = r["environment"]
    assert env["packages"]["torch"] and env["packages"]["peft"] and env["python"]
    assert env["cpu_native_bf16"] == cpu_native_bf16()  # this CPU's flags, to tell two of one model name apart
    saved = json.loads(Path(r["run"]["record_path"]).read_text())
    assert saved["status"] == "ok" and saved["config"]["method"]["name"] == method.split("_")[0]
    steps = [json.loads(line) for line in (Path(r["run"]["record_path"]).parent / r["run"]["steps_log"]).open()]
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    assert all(s["loss"] > 0 and s["learning_rate"] is not None and "rss_mib" in s for s in steps)


def test_trainable_share_matches_lora_arithmetic(records):
    lora = records["lora"]
    cfg = lora["config"]
    expected = _lora_params(cfg["model"]["architecture"], cfg["method"]["r"], cfg["method"]["target_modules"])
    p = lora["metrics"]["params"]
    assert p["trainable"] == expected
    assert p["trainable_pct"] == pytest.approx(100 * expected / p["total"])
    # QLoRA trains the same adapter on a 4-bit base with the same logical parameter count.
    q = records["qlora"]["metrics"]["params"]
    assert q["trainable"] == expected and q["total"] == p["total"]


def test_full_trains_everything_and_its_checkpoint_dwarfs_the_adapter(records):
    p = records["full"]["metrics"]["params"]
    assert p["trainable"] == p["total"] and p["trainable_pct"] == 100
    assert records["full"]["metrics"]["artifact_bytes"] > 5 * records["lora"]["metrics"]["artifact_bytes"]


def test_qlora_records_the_quantisation(records):
    assert records["qlora"]["config"]["method"]["quant_type"] == "nf4"
    assert records["qlora_fp4"]["config"]["method"]["quant_type"] == "fp4"
    assert records["qlora"]["run"]["method_label"] == "qlora-nf4-r16"


def test_missing_target_module_lists_the_models_linear_layers(make_config, tmp_path):
    cfg = make_config("method=lora", "method.target_modules=[query_key_value]")
    with pytest.raises(ConfigError, match=r"query_key_value.*q_proj"):
        run(cfg)
    assert not list((tmp_path / "results").glob("*.json"))


def test_failure_during_training_writes_a_failed_record(make_config, monkeypatch, tmp_path):
    from transformers import Trainer

    def boom(self, *a, **k):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(Trainer, "train", boom)
    record = run(make_config("method=lora"))
    assert record["status"] == "failed" and "simulated crash" in record["error"]
    saved = json.loads(Path(record["run"]["record_path"]).read_text())
    assert saved["status"] == "failed"


def test_a_stopped_run_leaves_no_record_and_no_scratch_folder(make_config, monkeypatch, tmp_path):
    """Ctrl-C, or the sweep launcher stopping its job (SIGINT): nothing half-written, no scratch left in /tmp."""
    import tempfile

    from transformers import Trainer

    def stopped(self, *a, **k):
        raise KeyboardInterrupt

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(Trainer, "train", stopped)
    cfg = make_config("method=lora")
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    assert not list(scratch.iterdir())
    results = Path(cfg.results_dir)
    assert not results.exists() or not any(results.iterdir())


def test_oom_is_recorded_as_oom(make_config, monkeypatch):
    import torch
    from transformers import Trainer

    def oom(self, *a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "train", oom)
    record = run(make_config("method=full"))
    assert record["status"] == "oom"
    assert record["metrics"]["memory"]["peak_rss_mib"] > 0


@pytest.mark.skipif(not cpu_native_bf16(), reason="bitsandbytes repacks 4-bit weights only on CPUs with native bf16")
@pytest.mark.parametrize("method", ["qlora", "qdora"])
def test_4bit_training_is_unchanged_by_evaluating_the_model_on_the_way(make_config, method):
    """bitsandbytes repacks 4-bit weights on CPU for a kernel without backward when a layer runs in eval mode
    without grad (the base score, the forgetting probe, each validation pass of the learning curve), and peft's
    DoRA cannot read the packed weights. A run that evaluates on the way must train exactly as one that never
    does. Checked to fail with models.keep_4bit_layout_for_training removed, on an AMD EPYC with AVX512-BF16:
    QLoRA's steps differ from the one after the first validation pass, QDoRA's from the first (the forgetting
    probe ran before training)."""

    def first_steps(evaluated: bool) -> list[tuple]:
        probes = (
            ["eval.forgetting_chunks=1", "eval.forgetting_chunk_tokens=64", "eval.curve_points=2"]
            if evaluated
            else ["eval.forgetting_chunks=0", "eval.curve_points=0"]
        )
        record = run(make_config(f"method={method}", "eval.base_model=false", "eval.latency_prompts=0", *probes,
                                 f"results_dir={make_config().results_dir}/{evaluated}"))  # fmt: skip
        assert record["status"] == "ok", record["error"]
        assert ("forgetting" in record["metrics"]) == evaluated
        assert [p["step"] for p in record["metrics"].get("validation_curve", [])][:2] == ([1, 3] if evaluated else [])
        path = Path(record["run"]["record_path"]).parent / record["run"]["steps_log"]
        return [(s["loss"], s["grad_norm"]) for s in map(json.loads, path.open())]

    assert first_steps(True) == first_steps(False)


def test_speed_knobs_reach_the_trainer_and_the_model(make_config, monkeypatch):
    """Length-grouped batches, a dataloader worker, eager attention and no background sampler: the run trains,
    records what it used, and no sampler thread runs."""
    from harness.run import monitor, train
    from harness.run.train import training_arguments

    started = []
    monkeypatch.setattr(monitor.MemorySampler, "_loop", lambda self: started.append(True))
    cfg = make_config(
        "method=lora",
        "train.sampling=group_by_length",
        "train.dataloader_workers=1",
        "train.attn_implementation=eager",
        "train.pad_to_multiple_of=16",
        "memory.sampler=false",
        "eval.base_model=false",
        "eval.forgetting_chunks=0",
        "eval.latency_prompts=0",
        # 4 steps counted in steps of 2 examples, at batch 4: 2 optimizer steps, at 3x the method's rate
        "train.reference_batch=2",
        "train.learning_rate_scale=3",
    )
    args = training_arguments(cfg, precision="fp32", device="cpu", output_dir="unused")
    assert (args.train_sampling_strategy, args.dataloader_num_workers) == ("group_by_length", 1)
    assert train.training_arguments(make_config("train.torch_compile=true"), precision="fp32", device="cpu",
                                    output_dir="unused").torch_compile  # fmt: skip
    graphs = make_config("train.torch_compile=true", "train.torch_compile_mode=reduce-overhead")
    assert training_arguments(graphs, precision="fp32", device="cpu", output_dir="unused").torch_compile_mode == (
        "reduce-overhead"
    )
    record = run(cfg)
    assert record["status"] == "ok", record["error"]
    assert record["run"]["attn_implementation"] == "eager"
    assert (cfg.train.max_steps, cfg.train.batch_size) == (4, 4)
    assert record["metrics"]["steps"] == record["run"]["optimizer_steps"] == 2
    assert record["run"]["learning_rate"] == pytest.approx(3 * cfg.method.learning_rate)
    assert record["metrics"]["memory"]["sampler"] == "per-step only" and not started
    assert record["metrics"]["memory"]["peak_rss_mib"] > 0


def test_sync_free_steps_count_the_same_tokens_without_a_per_step_count(make_config, monkeypatch):
    """train.sync_free_steps: the token count reaches Trainer's state only when it logs (no .item() per
    micro-batch), and the run trains the same batches to the same total and losses as stock Trainer."""
    from harness.run import train
    from harness.run.monitor import StepLogger

    seen: list[int] = []
    monkeypatch.setattr(StepLogger, "on_step_end", lambda self, args, state, control, **kw: seen.append(
        state.num_input_tokens_seen), raising=False)  # fmt: skip

    def run_with(sync_free: bool) -> tuple[dict, list[int]]:
        seen.clear()
        cfg = make_config(
            "method=lora",
            "train.logging_steps=2",
            f"train.sync_free_steps={str(sync_free).lower()}",
            f"results_dir={make_config().results_dir}/{sync_free}",
            "eval.enabled=false",
        )
        args = train.training_arguments(cfg, precision="fp32", device="cpu", output_dir="unused")
        assert args.logging_nan_inf_filter is not sync_free
        record = run(cfg)
        assert record["status"] == "ok", record["error"]
        return record, list(seen)

    stock, stock_seen = run_with(False)
    sync_free, sync_free_seen = run_with(True)
    assert sync_free["metrics"]["train_tokens"] == stock["metrics"]["train_tokens"] > 0
    assert sync_free["metrics"]["train_loss"] == pytest.approx(stock["metrics"]["train_loss"], rel=1e-5)
    # stock: every step's end sees its own batch counted; sync-free: only what the last log flushed
    # (logs at steps 1, 2 and 4: step 3's end still sees the count of steps 1-2)
    assert len(stock_seen) == len(sync_free_seen) == 4 and stock_seen[-1] == stock["metrics"]["train_tokens"]
    assert sync_free_seen == [0, stock_seen[0], stock_seen[1], stock_seen[1]]


def test_sync_free_steps_copy_batches_non_blocking_on_a_gpu(make_config):
    from harness.run.train import training_arguments

    cfg = make_config("train.sync_free_steps=true")

    def non_blocking(device: str) -> bool:
        return training_arguments(
            cfg, precision="fp32", device=device, output_dir="unused"
        ).accelerator_config.non_blocking

    # pinned memory (the loader's, on a GPU only) is what makes a non-blocking copy safe
    assert non_blocking("cuda") and not non_blocking("cpu")


def test_a_compiled_run_records_what_torch_compile_did(make_config):
    """train.torch_compile: the record says how many graphs were compiled, the graph breaks and the seconds
    spent compiling. A LoRA model with batch widths rounded to 64 compiles as one graph without breaks
    (a break would split CUDA graphs too; a second graph would mean a recompilation for a new shape)."""
    cfg = make_config(
        "method=lora", "train.torch_compile=true", "train.pad_to_multiple_of=64", "train.max_steps=3",
        "eval.enabled=false",
    )  # fmt: skip
    record = run(cfg)
    assert record["status"] == "ok", record["error"]
    compiled = record["metrics"]["compile"]
    assert compiled["graphs"] == 1 and compiled["graph_breaks"] == 0 and compiled["graph_break_reasons"] == []
    assert 0 < compiled["compile_seconds"] < record["metrics"]["train_seconds"]
    assert "compile" not in run(make_config("method=lora", "eval.enabled=false"))["metrics"]


def test_a_second_compiled_job_reuses_the_first_ones_inductor_cache(make_config, tmp_path, monkeypatch):
    """The GPU plan gives its jobs one TORCHINDUCTOR_CACHE_DIR so only the first compiled job pays for Inductor's
    compilation; the record says whether a job compiled or reused (here: a fresh compile, then a cache hit)."""
    import torch._dynamo

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    overrides = ("method=lora", "train.torch_compile=true", "train.pad_to_multiple_of=64", "train.max_steps=2",
                 "eval.enabled=false", "force=true")  # fmt: skip
    torch._dynamo.reset()  # as in a fresh job process: nothing compiled in memory
    first = run(make_config(*overrides))["metrics"]["compile"]
    torch._dynamo.reset()
    second = run(make_config(*overrides))["metrics"]["compile"]
    assert first["fx_graph_cache_misses"] > 0 and first["cache_dir"] == str(tmp_path / "inductor")
    assert second["fx_graph_cache_hits"] > 0 and second["fx_graph_cache_misses"] == 0


@pytest.mark.parametrize("method", ["full", "qlora"])
def test_the_memory_samplers_own_cost_is_recorded(records, method):
    """The background sampler's CPU time is measured in every run (the issue's monitoring budget is 1 %), at
    the configured rate."""
    memory, train_seconds = records[method]["metrics"]["memory"], records[method]["metrics"]["train_seconds"]
    interval = records[method]["config"]["memory"]["sample_interval_s"]
    assert memory["sampler"] == "background"
    # the thread also runs while Trainer sets up, before its training clock starts
    assert train_seconds / interval / 2 < memory["sampler_samples"] < 2 * train_seconds / interval + 5
    assert 0 < memory["sampler_cpu_seconds"] < train_seconds
    assert memory["sampler_cpu_share"] == pytest.approx(memory["sampler_cpu_seconds"] / train_seconds)


def test_the_cpu_peak_is_the_kernels_high_water_mark_which_no_sampling_misses():
    from harness.run.monitor import MemorySampler

    sampler = MemorySampler(device="cpu", interval_s=3600, background=False)
    sampler.reset()
    before = sampler.sample()["rss_mib"]
    # a fresh anonymous mapping, so the pages are new to the process whatever earlier tests left resident in the
    # heap (a bytearray can reuse freed, still-resident heap pages and never raise the high-water mark)
    transient = mmap.mmap(-1, 300 * 2**20)
    for offset in range(0, len(transient), 4096):  # touch every page
        transient[offset] = 1
    transient.close()
    assert sampler.sample()["rss_mib"] < before + 100  # freed before any sample saw it
    peaks = sampler.peaks()
    assert peaks["peak_rss_source"] == "kernel high-water mark"
    assert peaks["peak_rss_mib"] > before + 250


@pytest.mark.skipif(not cpu_has_bf16(), reason="needs bf16 autocast on CPU")
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_skipping_peft_input_cast_trains_exactly_the_same(make_config, method):
    """train.adapter_input_cast=false drops a bf16 -> fp32 -> bf16 round trip, which loses nothing: the same
    losses and gradient norms, step for step."""

    def steps(cast: bool) -> list[tuple]:
        cfg = make_config(f"method={method}", "train.precision=bf16", f"train.adapter_input_cast={str(cast).lower()}",
                          "eval.enabled=false", f"results_dir={make_config().results_dir}/{cast}")  # fmt: skip
        record = run(cfg)
        assert record["status"] == "ok", record["error"]
        path = Path(record["run"]["record_path"]).parent / record["run"]["steps_log"]
        return [(s["loss"], s["grad_norm"]) for s in map(json.loads, path.open())]

    assert steps(True) == steps(False)


def test_tokens_per_s_counts_the_non_padding_tokens_of_padded_batches(make_config):
    """One epoch over 8 examples padded to 256 tokens: the record's trained tokens are the examples' own tokens
    (what tokens/s divides), not the 8 x 256 positions of the padded batches."""
    from harness.run.inputs import prepare_inputs

    one_epoch = ("train.max_steps=0", "train.num_epochs=1", "dataset.n_train=8", "train.batch_size=4")
    cfg = make_config("method=lora", *one_epoch, "train.grad_accum=1", "train.pad_to_length=256", "eval.enabled=false")
    record = run(cfg)
    assert record["status"] == "ok", record["error"]
    m = record["metrics"]
    own = sum(len(ids) for ids in prepare_inputs(cfg)[1]["train"]["input_ids"])
    assert m["steps"] == 2 and m["train_tokens"] == own < 8 * 256
    assert m["tokens_per_s"] == pytest.approx(own / m["train_seconds"])


def test_mfu_counts_a_lora_step_as_forward_and_input_gradients_plus_the_adapters():
    """MFU's wiring: with adapters, the FLOPs per token are 4N (the frozen base's forward and input gradients)
    plus 6 per adapter parameter, from the run's own trainable count; the peak is the GPU's by name."""
    from harness.predict import flops
    from harness.run.train import _throughput

    architecture = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000}  # fmt: skip
    metrics = {"architecture": architecture, "train_tokens": 4000, "tokens_per_s": 1000.0,
               "tokens_per_s_after_first_step": 1200.0, "params": {"trainable": 5000}}  # fmt: skip
    environment = {"gpu_name": "NVIDIA H100 80GB HBM3"}

    def cfg(method: str):
        return type("Cfg", (), {"method": type("M", (), {"name": method})()})()

    lora = _throughput(metrics, environment, cfg("lora"), samples=20)
    full = _throughput(metrics, environment, cfg("full"), samples=20)
    n = flops.matmul_params(architecture)
    attention = full["flops_per_token"] - 6 * n
    assert lora["flops_per_token"] == pytest.approx(4 * n + 6 * 5000 + attention)
    assert lora["gpu_peak_flops"] == flops.gpu_peak_flops("NVIDIA H100 80GB HBM3") > 0
    assert lora["mfu"] == pytest.approx(lora["flops_per_token"] * 1000.0 / lora["gpu_peak_flops"])
    assert lora["mfu_after_first_step"] == pytest.approx(lora["mfu"] * 1.2)
    assert _throughput(metrics, {"gpu_name": None}, cfg("lora"), samples=20)["mfu"] is None  # a CPU: no guess


def test_scratch_folders_of_dead_runs_are_removed_when_the_next_run_starts(monkeypatch, tmp_path):
    """kill -9 leaves a run's scratch folder behind (nothing in the run can clean up); the next run removes the
    folders whose process is gone, and only those."""
    import subprocess
    import sys
    import tempfile

    from harness.run import scratch

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    gone = tmp_path / f"ft-harness-{dead_pid}-run-abc"
    alive = tmp_path / "ft-harness-1-run-abc"  # pid 1 is always alive
    mine = scratch.scratch_dir("run")
    other = tmp_path / "ft-harness-cache"  # not a scratch folder of this form
    for folder in (gone, alive, other):
        folder.mkdir()
    assert scratch.remove_dead_scratch() == [gone]
    assert not gone.exists() and alive.exists() and mine.exists() and other.exists()


def test_report_to_tensorboard_writes_event_files_beside_the_records(make_config):
    """train.report_to=tensorboard works offline: HF Trainer's own callback writes its event files under
    results_dir/trackers/<run>/, which outlive the run's scratch folder; the record says where."""
    record = run(make_config("method=lora", "train.report_to=tensorboard", "eval.enabled=false"))
    assert record["status"] == "ok", record["error"]
    events = list(Path(record["run"]["tracker_dir"]).rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert Path(record["run"]["tracker_dir"]).parent == Path(make_config().results_dir) / "trackers"


@pytest.mark.parametrize(("value", "message"), [("comet", "none, or some of tensorboard, wandb, mlflow"),
                                                ("wandb", "needs the wandb package")])  # fmt: skip
def test_an_unknown_or_missing_tracker_is_refused_before_anything_loads(make_config, value, message):
    import importlib.util

    if value == "wandb" and importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(ConfigError, match=message):
        make_config(f"train.report_to={value}")


def test_full_fine_tuning_in_pure_bf16_trains_bf16_weights(make_config):
    record = run(make_config("method=full_bf16", "eval.enabled=false"))
    assert record["status"] == "ok", record["error"]
    assert record["run"]["weights_dtype"] == "bfloat16" and record["run"]["method_label"] == "full-bf16"
    assert record["metrics"]["params"]["trainable_pct"] == 100


@pytest.mark.parametrize("optim", ["adamw_bnb_8bit", "paged_adamw_8bit"])
@pytest.mark.parametrize("method", ["full", "full_bf16"])
def test_every_full_ft_variant_trains_and_has_a_memory_prediction(make_config, method, optim):
    """The full-FT variants people run (8-bit and paged 8-bit AdamW, over fp32 or bf16 weights) train a few steps
    here, and the memory model counts each (8-bit states: about a quarter of fp32 AdamW's)."""
    from harness.predict import memory_model as mm
    from harness.predict.calibration import setting_of_record

    record = run(make_config(f"method={method}", f"train.optim={optim}", "eval.enabled=false"))
    assert record["status"] == "ok", record["error"]
    assert record["metrics"]["steps"] > 0 and record["metrics"]["train_loss"] > 0
    setting = setting_of_record(record)
    prediction = mm.predict(record["config"]["model"]["architecture"], setting)
    n = mm.cached_shapes(record["config"]["model"]["architecture"]).total_params
    assert prediction.components["optimizer_states"] == pytest.approx(2 * n, rel=0.02)


def test_the_committed_records_keep_their_keys_under_todays_config():
    """A field added to the config since (train.report_to, method.weights_dtype) leaves earlier runs' keys as
    they were, so resume still finds their records: the CPU smoke sweep's, recomposed today."""
    from harness.results import load_records, run_key
    from harness.run.checks import load_run_config

    from .conftest import ROOT, compose_config

    method = {"full": "full", "lora-r4": "lora_r4", "lora-r8": "lora_r8", "lora-r16": "lora", "lora-r32": "lora_r32",
              "lora-r64": "lora_r64", "qlora-nf4-r16": "qlora", "qlora-nf4-dq-r16": "qlora_dq",
              "qlora-fp4-r16": "qlora_fp4", "qlora-fp4-dq-r16": "qlora_fp4_dq"}  # fmt: skip
    records = load_records(ROOT / "results/published/cpu-smoke/2026-11-26-amd-epyc/tradeoff")
    assert len(records) == 10
    for r in records:
        # QLoRA's compute dtype was bfloat16 then; its default is auto since 2026-12-02 (a changed value, not a
        # new field: on a CPU without native bf16 auto computes in fp32, another measurement, so another key)
        then = ["method.compute_dtype=bfloat16"] if r["run"]["method_label"].startswith("qlora") else []
        cfg = load_run_config(compose_config(["+sweeps=tradeoff", "profile=cpu_quick",
                                              f"method={method[r['run']['method_label']]}", *then]))  # fmt: skip
        assert run_key(cfg) == r["run"]["key"], r["run"]["method_label"]


@pytest.mark.parametrize("method", ["lora", "dora", "qlora"])
def test_a_trained_adapter_is_scored_merged_with_the_same_predictions(make_config, method):
    """Scoring merged (eval.merge_for_scoring, the default) gives the predictions scoring unmerged gives, example
    by example; a 4-bit base is never merged (that would requantise it)."""
    record = run(make_config(f"method={method}", "eval.check_merged_scoring=true", "eval.latency_prompts=0",
                             "eval.forgetting_chunks=0", "train.precision=fp32"))  # fmt: skip
    assert record["status"] == "ok", record["error"]
    m = record["metrics"]
    if method == "qlora":
        assert m["score"]["adapter_merged"] is False and "merged_scoring_check" not in m
        return
    check = m["merged_scoring_check"]
    assert m["score"]["adapter_merged"] is True and check["n"] == m["score"]["n"] > 0
    assert check["predictions_differ"] == 0, check
    assert check["unmerged_exact_match"] == m["score"]["exact_match"]
    assert "unmerged_check" in m["eval_parts_seconds"]
