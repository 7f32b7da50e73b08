"""Every config composes and passes its checks; bad values fail with a message naming the field."""

from pathlib import Path

import pytest
import torch

from harness.config import ConfigError
from harness.run.checks import check_for_device, cpu_has_bf16, cpu_native_bf16, load_run_config, precision_reason

CONF_GROUPS = {
    "model": [
        "smollm2-135m",
        "smollm2-135m-hub",
        "tiny",
        "qwen2.5-0.5b",
        "llama-3.2-1b",
        "llama-3.2-3b",
        "llama-2-7b",
        "llama-3-8b",
        "llama-2-13b",
        "llama-33b",
        "llama-2-70b",
    ],  # fmt: skip
    "method": [
        "full",
        "full_bf16",
        "lora",
        "lora_r4",
        "lora_r8",
        "lora_r32",
        "lora_r64",
        "qlora",
        "qlora_dq",
        "qlora_fp4",
        "qlora_fp4_dq",
        # LoRA's variants (tests/test_variants.py)
        "dora",
        "qdora",
        "rslora",
        "pissa",
        "olora",
        "loraplus",
    ],  # fmt: skip
    "dataset": ["extraction"],
    "train": ["default", "smoke"],
    "profile": ["cpu_quick"],
    "recipe": [
        "documents",
        "baseline",
        "harness",
        "harness_batch64",
        "harness_compiled",
        "harness_liger",
        "baseline_grouped",
        "baseline_packed",
        "baseline_packed_flex",
        "baseline_fused_adamw",
        "baseline_workers",
        "baseline_compile",
        "baseline_compile_graphs",
        "baseline_batch16",
        "baseline_nosampler",
        "baseline_sync_free",
        "baseline_no_input_cast",
        "baseline_checkpointing",
        "baseline_liger",
    ],
}


def test_config_groups_match_the_files():
    from .conftest import CONF

    for group, names in CONF_GROUPS.items():
        assert sorted(p.stem for p in (CONF / group).glob("*.yaml")) == sorted(
            names
            + (["jsonl", "chat", "alpaca", "synthetic"] if group == "dataset" else [])
            + (["hub"] if group == "model" else [])  # needs model.hub_id or model.path: tests/test_families.py
        )


@pytest.mark.parametrize("model", CONF_GROUPS["model"])
@pytest.mark.parametrize("method", ["full", "lora", "qlora", "qlora_fp4"])
def test_every_model_and_method_composes(make_config, model, method):
    cfg = make_config(f"model={model}", f"method={method}")
    assert cfg.model.name == model
    assert cfg.method.name == method.split("_")[0]


@pytest.mark.parametrize("method", CONF_GROUPS["method"])
def test_every_method_variant_composes_with_its_label(make_config, method):
    cfg = make_config(f"method={method}")
    if "_r" in method:
        assert cfg.method.r == int(method.split("_r")[1]) and cfg.method.alpha == 2 * cfg.method.r
    assert ("-dq-" in cfg.method.label) == method.endswith("_dq")


def test_cpu_quick_profile_is_named_and_reduces_the_run(make_config):
    cfg = make_config("profile=cpu_quick")
    assert cfg.profile_name == "cpu_quick" and "cpu_quick" in cfg.profile_note
    assert cfg.train.max_steps < 10 and cfg.eval.base_model is False


def test_qlora_fields_are_explicit(make_config):
    nf4, fp4 = make_config("method=qlora"), make_config("method=qlora_fp4")
    assert (nf4.method.quant_type, fp4.method.quant_type) == ("nf4", "fp4")
    for cfg in (nf4, fp4):
        assert cfg.method.double_quant is False
        assert cfg.method.compute_dtype == "auto"
        assert cfg.method.r == 16 and cfg.method.target_modules
    assert fp4.method.label == "qlora-fp4-r16"
    assert make_config("method=qlora", "method.double_quant=true").method.label == "qlora-nf4-dq-r16"


def test_qlora_compute_dtype_auto_follows_the_precision(make_config):
    """auto computes in the run's precision: fp32 where a CPU has no native bf16 (bf16 is emulated there, a bf16
    matmul 100x slower than fp32 on the EPYC of 2026-12-02); an explicit dtype is kept."""
    import torch

    from harness.run.models import weights_dtype

    cfg = make_config("method=qlora")
    assert weights_dtype(cfg, "fp32") == torch.float32 and weights_dtype(cfg, "bf16") == torch.bfloat16
    assert weights_dtype(make_config("method=qlora", "method.compute_dtype=bfloat16"), "fp32") == torch.bfloat16
    with pytest.raises(ConfigError, match="compute_dtype"):
        make_config("method=qlora", "method.compute_dtype=int8")


def test_full_ft_learning_rate_is_lower_than_lora(make_config):
    assert make_config("method=full").method.learning_rate < make_config("method=lora").method.learning_rate / 4


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["method.r=0"], "method.r=0"),
        (["method.r=-4"], "method.r=-4"),
        (["method=qlora", "method.quant_type=int3"], "quant_type"),
        (["method=qlora", "method.double_quant=null"], "double_quant"),
        (["method=lora", "method.target_modules=[]"], "target_modules"),
        (["train.batch_size=0"], "batch_size"),
        (["train.precision=fp8"], "precision"),
        (["method.r=abc"], "method.r"),
        (["+method.rank=8"], "rank"),
        (["dataset=synthetic"], "set eval.enabled=false"),
        (["train.pad_to_length=100", "train.max_seq_len=256"], "pad_to_length=100"),
        (["train.pad_to_length=512", "train.packing=true"], "exclude each other"),
        (["dataset=synthetic", "eval.enabled=false", "model.architecture.vocab_size=0"], "vocab_size"),
        (["train.sampling=by_length"], "train.sampling='by_length'"),
        (["train.dataloader_workers=-1"], "dataloader_workers=-1"),
        (["train.attn_implementation=flash3"], "attn_implementation='flash3'"),
        (["memory.sample_interval_s=0"], "sample_interval_s=0"),
        (["train.pad_to_multiple_of=0"], "pad_to_multiple_of=0"),
        (["train.pad_to_multiple_of=64", "train.packing=true"], "exclude each other"),
        (["train.torch_compile=true", "train.torch_compile_mode=fast"], "torch_compile_mode='fast'"),
        (["train.torch_compile_mode=reduce-overhead"], "needs train.torch_compile=true"),
        (["train.learning_rate_scale=0"], "learning_rate_scale=0"),
        (["train.reference_batch=0"], "reference_batch=0"),
        (["train.reference_batch=16", "train.max_steps=0", "train.num_epochs=1"], "counts train.max_steps"),
        # 3 steps of 16 examples = 48, not a whole number of steps of 4 x 5 = 20
        (["train.reference_batch=16", "train.max_steps=3", "train.batch_size=4", "train.grad_accum=5"], "not a whole"),
    ],
)
def test_bad_values_fail_before_anything_loads(make_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config(*overrides)


def test_jsonl_dataset_needs_its_files():
    from harness.run.checks import load_run_config

    from .conftest import compose_config

    with pytest.raises(ConfigError, match="dataset.train_file"):
        load_run_config(compose_config(["dataset=jsonl"]))


def test_qlora_without_bitsandbytes_is_a_clear_error(make_config, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a)
    )
    cfg = make_config("method=qlora")
    with pytest.raises(ConfigError, match="method=qlora needs bitsandbytes"):
        check_for_device(cfg)  # a sweep runs it for every job before the first starts
    check_for_device(make_config("method=lora"))


def test_flash_attention_without_its_package_is_a_clear_error(make_config, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "flash_attn" else real(name, *a))
    with pytest.raises(ConfigError, match="needs the flash-attn package"):
        make_config("train.attn_implementation=flash_attention_2")


@pytest.mark.parametrize(
    "recipe, changed",
    [
        ("baseline_grouped", {"train.sampling": "group_by_length"}),
        ("baseline_packed", {"train.packing": True}),
        ("baseline_packed_flex", {"train.packing": True, "train.attn_implementation": "flex_attention"}),
        ("baseline_fused_adamw", {"train.optim": "adamw_torch_fused"}),
        ("baseline_workers", {"train.dataloader_workers": 2}),
        ("baseline_compile", {"train.torch_compile": True}),
        (
            "baseline_compile_graphs",
            {
                "train.torch_compile": True,
                "train.torch_compile_mode": "reduce-overhead",
                "train.pad_to_multiple_of": 64,
            },
        ),
        ("baseline_batch16", {"train.batch_size": 16, "train.grad_accum": 1}),
        ("baseline_nosampler", {"memory.sampler": False}),
        ("baseline_sync_free", {"train.sync_free_steps": True}),
        ("baseline_no_input_cast", {"train.adapter_input_cast": False}),
        ("baseline_checkpointing", {"train.gradient_checkpointing": True}),
        ("baseline_liger", {"train.liger_kernel": True}),
    ],
)
def test_each_speedup_recipe_is_the_baseline_with_one_change(make_config, recipe, changed):
    """The ablation is only honest if each recipe differs from the baseline in exactly the field it names."""
    import dataclasses

    def flat(cfg) -> dict:
        out = {}
        for section in ("train", "memory", "eval", "dataset", "method", "model"):
            for k, v in dataclasses.asdict(getattr(cfg, section)).items():
                out[f"{section}.{k}"] = v
        return out

    base, changed_cfg = flat(make_config("recipe=baseline")), flat(make_config(f"recipe={recipe}"))
    assert {k: v for k, v in changed_cfg.items() if base[k] != v} == changed
    assert make_config(f"recipe={recipe}").train.batch_size * make_config(f"recipe={recipe}").train.grad_accum == 16


@pytest.mark.parametrize("override", ["recipe=harnes", "profile=cpu_quik"])
def test_a_misspelled_recipe_or_profile_is_an_error_not_a_silent_default_run(override):
    """Both groups default to null; a name with no file must fail at composition, not train without it."""
    from hydra.errors import MissingConfigException

    from .conftest import compose_config

    with pytest.raises(MissingConfigException, match=override.split("=")[1]):
        compose_config([override])


def test_the_candidates_are_the_harness_recipe_plus_the_named_changes(make_config):
    """harness_batch64, harness_compiled and harness_liger are compared with harness in the bench: each must
    differ in what it says and no more."""
    import dataclasses

    def train(recipe: str) -> dict:
        return dataclasses.asdict(make_config(f"recipe={recipe}").train)

    harness, compiled = train("harness"), train("harness_compiled")
    assert {k: v for k, v in compiled.items() if harness[k] != v} == {
        "torch_compile": True,
        "torch_compile_mode": "reduce-overhead",
        "pad_to_multiple_of": 64,
        "optim": "adamw_torch_fused",
        "sync_free_steps": True,
    }
    batch64 = train("harness_batch64")
    assert {k: v for k, v in batch64.items() if harness[k] != v} == {"batch_size": 64, "learning_rate_scale": 4.0}
    liger = train("harness_liger")
    assert {k: v for k, v in liger.items() if harness[k] != v} == {
        "liger_kernel": True,
        "optim": "adamw_torch_fused",
        "sync_free_steps": True,
    }


@pytest.mark.skipif(torch.cuda.is_available(), reason="the rules are about a CPU")
@pytest.mark.parametrize(
    "override, message",
    [
        ("train.attn_implementation=flex_attention", "flex attention has no backward on a CPU"),
        ("train.precision=fp16", "train.precision=fp16 needs a GPU"),
        ("device=cuda", "no CUDA GPU is visible"),
        ("train.liger_kernel=true", "Liger's kernels are Triton kernels for CUDA GPUs"),
    ],
)
def test_what_the_device_cannot_do_is_a_config_error(make_config, override, message):
    cfg = make_config(override)  # valid on its own: the device decides
    with pytest.raises(ConfigError, match=message):
        check_for_device(cfg)
    native = cpu_has_bf16() and cpu_native_bf16()
    assert check_for_device(make_config()) == ("cpu", "bf16" if native else "fp32")


def test_skipping_peft_input_cast_needs_autocast(make_config):
    with pytest.raises(ConfigError, match="adapter_input_cast=false needs autocast"):
        check_for_device(make_config("train.adapter_input_cast=false", "train.precision=fp32"))


def test_liger_kernels_need_their_package_on_a_gpu(make_config, monkeypatch):
    """On a CUDA device without liger-kernel installed, the run is refused before loading, naming the package;
    with it, the flag reaches HF Trainer's use_liger_kernel."""
    import importlib.util

    from harness.run import checks
    from harness.run.train import training_arguments

    cfg = make_config("train.liger_kernel=true", "train.precision=bf16")
    monkeypatch.setattr(checks, "resolve_device", lambda requested: "cuda")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "liger_kernel" else find_spec(name, *a)
    )
    with pytest.raises(ConfigError, match="needs the liger-kernel package, which is not installed: pip install"):
        check_for_device(cfg)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "liger_kernel" else None)
    assert check_for_device(cfg) == ("cuda", "bf16")
    assert training_arguments(cfg, precision="bf16", device="cpu", output_dir="unused").use_liger_kernel
    assert not training_arguments(make_config(), precision="bf16", device="cpu", output_dir="unused").use_liger_kernel


def test_liger_on_a_model_type_it_has_no_kernels_for_is_refused(make_config, monkeypatch):
    """Liger applies nothing to an unsupported model type (an info log only): the run is refused instead of
    measuring the plain model under Liger's name. liger-kernel needs Triton, so its table is stood in for."""
    import sys
    import types

    from harness.run import adapters, models

    cfg = make_config("model=tiny")
    tiny = models.load_base_model(
        model=cfg.model, method=cfg.method, cache_dir=cfg.cache_dir, dtype=torch.float32, device="cpu"
    )
    table = types.ModuleType("liger_kernel.transformers.monkey_patch")
    for name in ("liger_kernel", "liger_kernel.transformers"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers.monkey_patch", table)
    table.MODEL_TYPE_TO_APPLY_LIGER_FN = {"qwen2": None, "gemma": None}
    with pytest.raises(ConfigError, match="no kernels for model type 'llama' \\(it has them for gemma, qwen2\\)"):
        adapters.check_liger_supports(tiny)
    table.MODEL_TYPE_TO_APPLY_LIGER_FN = {"llama": None}
    adapters.check_liger_supports(tiny)


def test_every_bench_recipe_trains_on_the_same_examples(make_config):
    """The bench compares scores after the same examples: recipes with another batch (harness+batch64) take
    fewer optimizer steps, through the sweep's train.reference_batch, and the record says how many."""
    from harness.config import optimizer_steps
    from harness.run.train import training_arguments

    examples = set()
    for recipe in sorted(p.stem for p in (Path(__file__).parent.parent / "conf" / "recipe").glob("*.yaml")):
        t = make_config("+sweeps=bench", f"recipe={recipe}", "train.max_steps=60").train
        examples.add(optimizer_steps(t.max_steps, t.batch_size, t.grad_accum, t.reference_batch) * t.batch_size
                     * t.grad_accum)  # fmt: skip
    assert examples == {960}
    big = make_config("+sweeps=bench", "recipe=harness_batch64", "train.max_steps=60", "method=lora")
    args = training_arguments(big, precision="fp32", device="cpu", output_dir="unused")
    assert (args.max_steps, args.per_device_train_batch_size, args.gradient_accumulation_steps) == (15, 64, 1)
    assert args.learning_rate == pytest.approx(big.method.learning_rate * big.train.learning_rate_scale)
    assert big.train.learning_rate_scale != 1.0
    # outside the bench (no reference batch) max_steps is taken as given
    assert training_arguments(make_config("recipe=harness_batch64", "train.max_steps=60"), precision="fp32",
                              device="cpu", output_dir="unused").max_steps == 60  # fmt: skip


@pytest.mark.parametrize(
    ("flags_line", "native"),
    [
        ("flags\t\t: fpu sse2 avx2 avx512f avx512bw", []),  # AVX512 without BF16: oneDNN emulates bf16
        ("flags\t\t: fpu avx512f avx512_bf16 avx512_fp16", ["avx512_bf16"]),
        ("flags\t\t: fpu avx512f amx_bf16 amx_tile", ["amx_bf16"]),
        ("Features\t: fp asimd bf16 i8mm", ["bf16"]),  # aarch64
    ],
)
def test_native_bf16_is_read_from_the_cpus_flags(flags_line, native):
    assert cpu_native_bf16(f"processor\t: 0\n{flags_line}\n\nprocessor\t: 1\n{flags_line}\n") == native


def test_auto_precision_on_a_cpu_that_emulates_bf16_is_fp32(make_config, monkeypatch):
    """oneDNN runs bf16 on any AVX512 CPU; only a native one is worth it (2.4x slower emulated)."""
    from harness.run import checks

    monkeypatch.setattr(checks, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(checks, "cpu_native_bf16", lambda cpuinfo=None: [])
    assert check_for_device(make_config()) == ("cpu", "fp32")
    assert "no native bf16" in precision_reason("auto", "cpu", "fp32")
    assert check_for_device(make_config("train.precision=bf16")) == ("cpu", "bf16")  # asked for, it is kept
    monkeypatch.setattr(checks, "cpu_native_bf16", lambda cpuinfo=None: ["amx_bf16"])
    assert check_for_device(make_config()) == ("cpu", "bf16")
    assert precision_reason("auto", "cpu", "bf16") == "auto: the CPU has native bf16 (amx_bf16)"


def test_the_full_profile_scores_enough_examples_to_separate_methods():
    """Two standard errors of an exact match at most 5 points, at the worst case p = 0.5 (issue: scores that can
    separate methods); the test split holds that many examples."""
    from .conftest import compose_config

    cfg = load_run_config(compose_config([]))
    n = cfg.eval.max_test_examples
    assert 2 * (0.25 / n) ** 0.5 <= 0.05 and cfg.dataset.n_test >= n
