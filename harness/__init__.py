"""ft-harness: full fine-tuning vs LoRA vs QLoRA, measured."""

from harness.startup import mark as _mark

_mark("harness_imported")  # the first import of the package: where a job's own start-up begins
