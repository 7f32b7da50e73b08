"""Puts the repository root on Hydra's search path, so the sweep files in sweeps/ form the group `sweeps`:
`python -m harness +sweeps=tradeoff`."""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

REPO_ROOT = Path(__file__).resolve().parents[2]


class SweepsSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if (REPO_ROOT / "sweeps").is_dir():
            search_path.append(provider="ft-harness-sweeps", path=f"file://{REPO_ROOT}")
