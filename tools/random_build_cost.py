"""Time and peak memory of building a random-weight base, layer by layer (the harness's path) or whole model
first (the path it replaced), one build per process so the peak is that build's own.

    python tools/random_build_cost.py conf/model/llama-3.2-1b.yaml layered --quant nf4
    python tools/random_build_cost.py conf/model/llama-3.2-1b.yaml whole --quant none

On a CPU the peak is the process's peak RSS (ru_maxrss); on a GPU, torch's peak reserved memory as well.
The figures in docs/measurements.md (2026-11-26) come from this script on the CPU machine.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch
import yaml
from transformers import AutoConfig, AutoModelForCausalLM, BitsAndBytesConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.run import models  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_yaml", type=Path, help="a conf/model/*.yaml with architecture fields")
    parser.add_argument("path", choices=("layered", "whole"))
    parser.add_argument("--quant", choices=("nf4", "fp4", "none"), default="nf4")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    config = AutoConfig.for_model(**yaml.safe_load(args.model_yaml.read_text())["architecture"])
    quant = None
    if args.quant != "none":
        quant = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=args.quant, bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_quant_storage=torch.uint8,
        )  # fmt: skip
    start = time.perf_counter()
    if args.path == "layered":
        built = models._random_model(
            config, quant, seed=0, device=args.device, dtype=torch.bfloat16, attn_implementation="sdpa"
        )
    else:  # the whole bf16 model drawn by from_config, then (QLoRA) quantised from its state dict
        torch.manual_seed(0)
        with torch.device(args.device):
            built = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        if quant is not None:
            state, model_class = built.state_dict(), type(built)
            del built
            built = model_class.from_pretrained(
                None, config=config, state_dict=state, dtype=torch.bfloat16, quantization_config=quant,
                device_map={"": args.device},
            )  # fmt: skip
            del state
    seconds = time.perf_counter() - start
    peak = f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    if args.device.startswith("cuda"):
        peak += f", peak torch reserved {torch.cuda.max_memory_reserved() / 2**20:.0f} MiB"
    footprint = built.get_memory_footprint() / 2**20
    print(
        f"{args.model_yaml.stem} {args.path} quant={args.quant}: build {seconds:.1f} s, {peak}, "
        f"model {footprint:.0f} MiB"
    )


if __name__ == "__main__":
    main()
