"""Model families beyond Llama: GPT-2's Conv1D layers and Qwen2, with peft's `all-linear`, for LoRA and QLoRA."""

from __future__ import annotations

import pytest

from harness.config import ConfigError
from harness.run.checks import load_run_config
from harness.run.train import run

from .conftest import FAST, compose_config


@pytest.mark.parametrize("family", ["gpt2", "qwen2"])
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_lora_and_qlora_train_any_family_with_all_linear(make_config, family, method):
    cfg = make_config(f"model.architecture.model_type={family}", f"method={method}", "method.target_modules=all-linear",
                      "eval.enabled=false")  # fmt: skip
    record = run(cfg)
    assert record["status"] == "ok", record["error"]
    assert record["run"]["target_modules"] == "all-linear"
    assert 0 < record["metrics"]["params"]["trainable_pct"] < 5


def test_the_default_names_fall_back_to_all_linear_where_the_family_has_none_of_them(make_config):
    """The default list names Llama's projections; a GPT-2 has none (c_attn, c_proj, c_fc, all Conv1D): every
    linear layer is adapted, and the record says so."""
    record = run(make_config("model.architecture.model_type=gpt2", "method=lora", "eval.enabled=false"))
    assert record["status"] == "ok", record["error"]
    assert record["run"]["target_modules"] == "all-linear"


def test_a_layer_the_model_lacks_is_refused_naming_its_real_layers(make_config):
    cfg = make_config("model.architecture.model_type=gpt2", "method=lora", "method.target_modules=[c_attn,nope]")
    with pytest.raises(ConfigError, match=r"\['nope'\] not in this model; its linear layers are: c_attn, c_fc, c_proj"):
        run(cfg)


@pytest.mark.parametrize("value", ["[]", "some-layer", "[1]"])
def test_target_modules_is_a_list_of_names_or_all_linear(make_config, value):
    with pytest.raises(ConfigError, match="a list of linear layer names, or 'all-linear'"):
        make_config("method=lora", f"method.target_modules={value}")


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_phi3_trains_with_the_default_targets_as_all_linear(make_config, method):
    """Phi-3 fuses q/k/v into qkv_proj and gate/up into gate_up_proj: of the default Llama names only o_proj and
    down_proj exist, so the default adapts every linear layer (it was refused before, after loading)."""
    record = run(make_config("model.architecture.model_type=phi3", f"method={method}", "eval.enabled=false"))
    assert record["status"] == "ok", record["error"]
    assert record["run"]["target_modules"] == "all-linear"


def test_gemma2_is_refused_before_loading_with_sdpa_and_trains_with_eager(make_config):
    """transformers has no SDPA path for Gemma 2: the run failed while loading, as a failed record; now the
    config check says what to set, and with it LoRA and QLoRA train."""
    with pytest.raises(ConfigError, match="Gemma2ForCausalLM has no such attention in transformers; set train.attn_"):
        make_config("model.architecture.model_type=gemma2", "method=lora", "train.attn_implementation=sdpa")
    for method in ("lora", "qlora"):
        cfg = make_config("model.architecture.model_type=gemma2", f"method={method}", "eval.enabled=false",
                          "train.attn_implementation=eager")  # fmt: skip
        record = run(cfg)
        assert record["status"] == "ok", record["error"]
        assert record["run"]["attn_implementation"] == "eager"


def test_model_hub_runs_a_local_folder_without_a_yaml_its_architecture_read_from_its_config(make_config, tmp_path):
    """`model=hub model.path=DIR` (or model.hub_id=ORG/NAME): no preset written; the name comes from the folder,
    the architecture from its config.json, checked before loading (here a Phi-3, so the attention and target
    rules of its family apply)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from harness.run.models import load_tokenizer

    tiny = make_config("method=lora")
    folder = tmp_path / "My-Phi3-Tiny"
    AutoModelForCausalLM.from_config(
        AutoConfig.for_model(**{**tiny.model.architecture, "model_type": "phi3"})
    ).save_pretrained(folder)
    load_tokenizer(tiny.model, tiny.cache_dir).save_pretrained(folder)
    overrides = [o for o in FAST if not o.startswith("model=")]
    cfg = load_run_config(compose_config([*overrides, "model=hub", f"model.path={folder}", "method=lora",
                                          "eval.enabled=false", f"results_dir={tmp_path / 'results'}",
                                          f"cache_dir={tiny.cache_dir}"]))  # fmt: skip
    assert cfg.model.name == "my-phi3-tiny" and cfg.model.architecture["model_type"] == "phi3"
    record = run(cfg)
    assert record["status"] == "ok", record["error"]
    assert record["config"]["model"]["architecture"]["hidden_size"] == tiny.model.architecture["hidden_size"]
    assert record["run"]["target_modules"] == "all-linear"
    # what it cannot take is refused before loading, in one line
    bad = tmp_path / "own-code"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "x", "auto_map": {"AutoConfig": "x.C"}}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"needs the model's own code \(auto_map\)"):
        load_run_config(compose_config([*overrides, "model=hub", f"model.path={bad}"]))
