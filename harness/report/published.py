"""The committed reports: each is regenerated from committed records, never edited.

reports/published/manifest.yaml lists every committed report with the records folder it comes from and its
title. `python -m harness report --published` (report.regenerate) rewrites them all; CI
(tests/test_published.py) regenerates each into a scratch folder and fails when a committed report differs from
what its records give, so a report can only change with its records or with the code that writes it, in the
same commit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "reports" / "published" / "manifest.yaml"
_INLINE_PNG = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")


@dataclass(frozen=True)
class PublishedReport:
    out: Path  # relative to the repository root
    records: Path
    title: str


def published_reports(manifest: Path = MANIFEST) -> list[PublishedReport]:
    entries = yaml.safe_load(manifest.read_text(encoding="utf-8"))["reports"]
    return [PublishedReport(Path(e["out"]), Path(e["records"]), e["title"]) for e in entries]


def comparable(path: Path) -> str | bytes:
    """A report file as compared: text with its inlined plots left out (the PNG files are compared apart by
    name, since their bytes follow the fonts and matplotlib of the machine that draws them)."""
    if path.suffix in (".md", ".html"):
        return _INLINE_PNG.sub("data:image/png;base64,...", path.read_text(encoding="utf-8"))
    return path.name.encode()
