"""Hydra plugins of ft-harness: a launcher that runs each sweep job in its own process, one at a time."""
