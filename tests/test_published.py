"""Committed reports are pure functions of committed records: each regenerates identically."""

from __future__ import annotations

import pytest

from harness.report.command import regenerate
from harness.report.published import ROOT, comparable, published_reports

REPORTS = published_reports()


def test_every_published_report_has_its_records_committed():
    assert REPORTS, "reports/published/manifest.yaml lists no report"
    for report in REPORTS:
        assert (ROOT / report.records).is_dir() and list((ROOT / report.records).glob("*.json")), report.records
        assert (ROOT / report.out / "report.md").is_file(), f"{report.out}: not generated (report --published)"


@pytest.mark.parametrize("report", REPORTS, ids=[str(r.out) for r in REPORTS])
def test_a_published_report_regenerates_identically_from_its_records(report, tmp_path):
    regenerate(report, out_root=tmp_path)
    fresh, committed = tmp_path / report.out, ROOT / report.out
    names = sorted(p.name for p in committed.iterdir())
    assert sorted(p.name for p in fresh.iterdir()) == names
    for name in names:
        assert comparable(fresh / name) == comparable(committed / name), (
            f"{report.out}/{name} differs from what its records give: regenerate with "
            "`python -m harness report --published` and commit it with the change that caused it"
        )
