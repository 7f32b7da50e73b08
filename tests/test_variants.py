"""LoRA's variants (DoRA, QDoRA, rsLoRA, PiSSA, OLoRA, LoRA+): methods as config, built by peft as asked, trained
by the real entry point under both launchers, and the combinations peft cannot make refused before loading."""

import json
import subprocess
from pathlib import Path

import pytest
import torch

from harness.config import ConfigError, adapter_variant, method_label
from harness.results import run_key
from harness.run import adapters, models

from .conftest import ROOT, compose_config

VARIANTS = {
    "dora": "dora-r16",
    "qdora": "qdora-nf4-r16",
    "rslora": "rslora-r16",
    "pissa": "pissa-r16",
    "olora": "olora-r16",
    "loraplus": "loraplus-r16",
}


def test_variant_names_are_their_parts_in_one_order():
    assert adapter_variant(False, False, "default", None) == ""
    assert adapter_variant(True, True, "pissa_niter_4", 16.0) == "dora-rslora-pissa-niter4-loraplus"
    assert method_label("lora", 16, None, None, variant="dora") == "dora-r16"
    assert method_label("qlora", 16, "fp4", True, variant="dora") == "qdora-fp4-dq-r16"
    assert method_label("qlora", 16, "nf4", False) == "qlora-nf4-r16"  # plain methods keep their names


@pytest.mark.parametrize(("method", "label"), VARIANTS.items())
def test_every_variant_composes_to_its_own_label_and_key(make_config, method, label):
    cfg = make_config(f"method={method}")
    plain = make_config("method=qlora" if method == "qdora" else "method=lora")
    assert cfg.method.label == label and plain.method.label != label
    assert run_key(cfg) != run_key(plain)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method=qlora", "method.init_lora_weights=pissa"], "cannot start from a 4-bit base"),
        (["method=qlora", "method.init_lora_weights=pissa_niter_4"], "cannot start from a 4-bit base"),
        (["method=full", "method.use_dora=true"], "full fine-tuning has no adapters: use method=lora"),
        (["method=full", "method.loraplus_lr_ratio=16"], "full fine-tuning has no adapters"),
        (["method=lora", "method.init_lora_weights=svd"], "method.init_lora_weights='svd': one of default"),
        (["method=lora", "method.init_lora_weights=pissa_niter_0"], "pissa_niter_<n> (n > 0)"),
        (["method=loraplus", "method.loraplus_lr_ratio=0.5"], "method.loraplus_lr_ratio=0.5: B's learning rate"),
    ],
)
def test_combinations_peft_cannot_make_are_refused_before_loading(make_config, monkeypatch, overrides, message):
    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(models, "load_base_model", no_loading)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_config(*overrides)


def _tiny_base(make_config, method: str):
    cfg = make_config(f"method={method}", "eval.enabled=false")
    base = models.load_base_model(
        model=cfg.model, method=cfg.method, cache_dir=cfg.cache_dir, dtype=torch.float32, device="cpu", seed=0,
        attn_implementation="sdpa",
    )  # fmt: skip
    return cfg, base


@pytest.mark.parametrize("method", ["pissa", "olora"])
def test_pissa_and_olora_start_from_the_weight_itself_and_leave_the_model_unchanged(make_config, method):
    """Their adapters start non-zero, from the weight's SVD / QR, and the base keeps the residual: the model's
    function before training is the base model's (to fp32 rounding), unlike a random adapter's would be."""
    cfg, base = _tiny_base(make_config, method)
    ids = torch.arange(24).reshape(2, 12) % base.config.vocab_size
    with torch.no_grad():
        before = base(input_ids=ids).logits
        original = base.model.layers[0].self_attn.q_proj.weight.clone()
    model = adapters.apply_method(base, method=cfg.method, gradient_checkpointing=False)
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    with torch.no_grad():
        after = model(input_ids=ids).logits
        delta = layer.scaling["default"] * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    assert delta.abs().max() > 1e-3  # an adapter that starts from the weight, not B = 0
    assert not torch.allclose(layer.base_layer.weight, original)  # the base keeps the residual ...
    torch.testing.assert_close(layer.base_layer.weight + delta, original, atol=1e-4, rtol=1e-4)  # ... W = res + BA
    torch.testing.assert_close(after, before, atol=1e-3, rtol=1e-3)


def test_dora_adds_a_trained_magnitude_per_output_column(make_config):
    cfg, base = _tiny_base(make_config, "dora")
    outputs = sum(m.out_features for n, m in base.named_modules() if isinstance(m, torch.nn.Linear)
                  and n.rsplit(".", 1)[-1] in cfg.method.target_modules)  # fmt: skip
    model = adapters.apply_method(base, method=cfg.method, gradient_checkpointing=False)
    described = adapters.adapter_description(model, cfg.method)
    assert described["use_dora"] and described["dora_magnitude_params"] == outputs > 0


def test_loraplus_trains_b_at_its_ratio_of_a_s_learning_rate(make_config, tmp_path):
    from harness.run.trainer import loraplus_optimizer, training_arguments

    cfg, base = _tiny_base(make_config, "loraplus")
    model = adapters.apply_method(base, method=cfg.method, gradient_checkpointing=False)
    args = training_arguments(cfg, precision="fp32", device="cpu", output_dir=str(tmp_path))
    optimizer = loraplus_optimizer(model, args, cfg.method.loraplus_lr_ratio)
    names = {id(p): n for n, p in model.named_parameters()}
    lr_of = {names[id(p)]: g["lr"] for g in optimizer.param_groups for p in g["params"]}
    a = {lr for n, lr in lr_of.items() if "lora_A" in n}
    b = {lr for n, lr in lr_of.items() if "lora_B" in n}
    assert sorted(a) == pytest.approx([2.5e-4]) and sorted(b) == pytest.approx([2.5e-4 * 16])
    assert len(lr_of) == sum(p.requires_grad for p in model.parameters())  # every trainable parameter, once


@pytest.mark.parametrize("launcher", ["per_process", "forked"])
def test_every_variant_trains_under_both_launchers_and_records_what_peft_built(tmp_path, cache_dir, launcher):
    from .test_sweep import _env, _sweep_cmd

    # under one launcher, the plain twins too, for the report's section on the variants
    twins = ["lora", "qlora"] if launcher == "per_process" else []
    methods = ",".join([*VARIANTS, *twins])
    cmd = _sweep_cmd(tmp_path, methods, f"hydra/launcher={launcher}", "eval.base_model=false")
    done = subprocess.run(cmd, cwd=ROOT, env=_env(cache_dir), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = {
        r["run"]["method_label"]: r for r in map(json.loads, map(Path.read_text, (tmp_path / "results").glob("*.json")))
    }
    assert sorted(records) == sorted([*VARIANTS.values(), *(["lora-r16", "qlora-nf4-r16"] if twins else [])])
    if twins:
        md = (tmp_path / "reports" / "report.md").read_text()
        section = md[md.index("## LoRA variants against plain LoRA") : md.index("## Learning curves")]
        for label in VARIANTS.values():
            twin = "qlora-nf4-r16" if label.startswith("q") else "lora-r16"
            assert f"| {label} " in section and f"| {twin} " in section.split(f"| {label} ")[1].split("\n")[0]
        assert "7B peak GiB, predicted" in section
        claims = md[md.index("## Claims check") :]
        for claim in ("dora-gain", "dora-tie", "pissa-gain"):
            row = claims.split(f"| {claim} ")[1].split("\n")[0]
            assert "inconclusive" in row and "two or more seeds of" in row, row
        matrix = md[md.index("## Trade-off matrix") : md.index("## Claims check")]
        assert all(f"| {label} " in matrix for label in VARIANTS.values())
        # the documents' matrix speaks of LoRA as such: not of DoRA
        assert "2-5 % below" in matrix.split("| lora-r16 ")[1].split("\n")[0]
        assert "2-5 % below" not in matrix.split("| dora-r16 ")[1].split("\n")[0]
    for method, label in VARIANTS.items():
        r = records[label]
        assert r["status"] == "ok", r.get("error")
        adapter = r["run"]["adapter"]
        assert adapter["use_dora"] == (method in ("dora", "qdora"))
        assert adapter["use_rslora"] == (method == "rslora")
        assert adapter["scaling"] == pytest.approx(32 / 4 if method == "rslora" else 32 / 16)
        assert adapter["init_lora_weights"] == {"pissa": "pissa", "olora": "olora"}.get(method, True)
        assert adapter["loraplus_lr_ratio"] == (16 if method == "loraplus" else None)
        assert (adapter["dora_magnitude_params"] > 0) == (method in ("dora", "qdora"))
        assert r["config"]["method"]["name"] == ("qlora" if method == "qdora" else "lora")
        assert r["metrics"]["score"]["n"] > 0 and r["metrics"]["train_loss"] > 0


def test_the_variants_sweep_shares_the_evidence_sets_baselines():
    """Its LoRA r16 and QLoRA nf4 jobs are the evidence sweep's (same key, same folder): resumed, not run again,
    and the variants are paired with them on the same examples and seeds."""
    from harness.run.checks import load_run_config

    for method in ("lora", "qlora"):
        evidence = load_run_config(compose_config(["+sweeps=evidence", f"method={method}"]))
        variants = load_run_config(compose_config(["+sweeps=variants", f"method={method}"]))
        assert run_key(evidence) == run_key(variants) and evidence.results_dir == variants.results_dir


def test_a_variants_time_per_step_compares_the_fastest_run_of_each_on_one_machine():
    """Work beside a run only slows it: of each label the fastest run on a machine stands for its time per step,
    and runs on another machine never enter the ratio (a Xeon's LoRA against an EPYC's DoRA is not DoRA's cost)."""
    import pandas as pd

    from harness.report.lora_variants import step_time_ratio

    rows = [("lora-r16", "EPYC", 100.0), ("lora-r16", "EPYC", 60.0), ("lora-r16", "Xeon", 300.0),
            ("dora-r16", "EPYC", 50.0), ("dora-r16", "EPYC", 40.0), ("pissa-r16", "Xeon", 290.0)]  # fmt: skip
    runs = pd.DataFrame(
        [
            {"label": label, "machine": machine, "steady_tokens_per_s": tps, "tokens_per_s": tps / 2, "status": "ok"}
            for label, machine, tps in rows
        ]  # fmt: skip
    )
    assert step_time_ratio(runs, "dora-r16", "lora-r16") == "2.00x (EPYC; fastest of 2 / 2 runs)"
    assert step_time_ratio(runs, "pissa-r16", "lora-r16") == "1.03x (Xeon; fastest of 1 / 1 runs)"
    lora_on_epyc_only = runs[(runs["label"] != "lora-r16") | (runs["machine"] == "EPYC")]
    assert (
        step_time_ratio(lora_on_epyc_only, "pissa-r16", "lora-r16")
        == "- (no run of lora-r16 on the machine pissa-r16 ran on)"
    )
    assert step_time_ratio(runs, "dora-r16", None) == "-"


def test_a_sweep_of_variants_alone_still_gets_its_report(tmp_path):
    """`+sweeps=variants method=dora,pissa`: the sweep's own report holds no plain LoRA run (the twins ran in
    another sweep), so the variants' section has no pair to show; it says so rather than failing (the sweep's end
    callback raised KeyError 'metric' on this, and the report was not written)."""
    from harness.report.command import write_report

    folder = ROOT / "results" / "published" / "cpu-evidence" / "smollm2-135m-extraction"
    # a test-scored DoRA run (the search jobs beside it score nothing, so they have no section row to show)
    scored = [
        r
        for p in sorted(folder.glob("*_dora-r16_*.json"))
        if not (r := json.loads(p.read_text()))["config"]["eval"].get("validation_only")
    ]
    records = scored[:1]
    assert records, "the committed DoRA evidence record"
    write_report(records, tmp_path, title="variants alone")
    md = (tmp_path / "report.md").read_text()
    section = md[md.index("## LoRA variants against plain LoRA") : md.index("## Learning curves")]
    assert "| dora-r16 " in section and "no plain twin with per-example results" in section
