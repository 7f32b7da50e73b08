"""ft-harness: full fine-tuning vs LoRA vs QLoRA, measured."""

from harness.startup import mark as _mark
from harness.startup import quiet_known_noise as _quiet_known_noise

_mark("harness_imported")  # the first import of the package: where a job's own start-up begins
_quiet_known_noise()  # before any job imports bitsandbytes or peft
