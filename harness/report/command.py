"""`python -m harness report`: a report is a pure function of run records; this picks its kind and writes it.

`python -m harness report RESULTS_DIR [--out DIR]` regenerates one from records alone; a sweep writes it at its
end (callbacks.py); `python -m harness report --published` rewrites every committed report from its committed
records (published.py). The kind (trade-off, bench, scale) is the one the sweep file names (`report_kind`, kept
in each record); records from before that field say it through what they ran (no evaluation: scale; a recipe:
bench).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.config import REPORT_KINDS
from harness.report.bench_report import is_bench_record, write_bench_report
from harness.report.published import ROOT, PublishedReport, published_reports
from harness.report.scale_report import is_scale_record, write_scale_report
from harness.report.tradeoff_report import write_tradeoff_report
from harness.results import load_records


def report_kind(record: dict) -> str:
    """The record's report kind: the sweep's `report_kind`, or for older records what they ran."""
    kind = record.get("config", {}).get("report_kind")
    if kind in REPORT_KINDS:
        return kind
    return "scale" if is_scale_record(record) else "bench" if is_bench_record(record) else "tradeoff"


def write_report(records: list[dict], out_dir: Path, *, title: str) -> list[Path]:
    """The report of the newest record's kind, from the folder's records of that kind.

    The folder's plots are drawn afresh: one the records no longer make (its runs withdrawn) does not stay."""
    newest = max(records, key=lambda r: r.get("run", {}).get("finished_at") or "") if records else None
    kind = report_kind(newest) if newest is not None else "tradeoff"
    own = [r for r in records if report_kind(r) == kind]
    for plot in Path(out_dir).glob("*.png"):
        plot.unlink()
    if kind == "scale":
        return write_scale_report(own, out_dir, title=title)
    if kind == "bench":
        return write_bench_report(own, out_dir, title=title)
    return write_tradeoff_report(own, out_dir, title=title, all_records=records)


def regenerate(report: PublishedReport, *, root: Path = ROOT, out_root: Path | None = None) -> list[Path]:
    """Write one published report from its committed records (into out_root instead of root, if given)."""
    records = load_records(root / report.records)
    if not records:
        raise FileNotFoundError(f"{report.records}: no run records for the published report {report.out}")
    return write_report(records, (out_root or root) / report.out, title=report.title)


def default_out_dir(results_dir: Path) -> Path:
    """results/<model>/<dataset> -> reports/<model>/<dataset>/all"""
    parts = results_dir.resolve().parts
    tail = parts[parts.index("results") + 1 :] if "results" in parts else (results_dir.name,)
    return Path("reports", *tail, "all")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness report", description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", type=Path, nargs="?", help="a folder of run records (results/<model>/<dataset>)")
    parser.add_argument("--out", type=Path, help="report folder (default reports/<model>/<dataset>/all)")
    parser.add_argument("--title", default=None)
    parser.add_argument(
        "--published", action="store_true", help="rewrite every committed report (reports/published/manifest.yaml)"
    )
    args = parser.parse_args(argv)
    if args.published:
        for report in published_reports():
            for path in regenerate(report):
                print(path)
        return 0
    if args.results_dir is None:
        parser.error("give a folder of run records, or --published")
    if not args.results_dir.is_dir():
        parser.error(f"{args.results_dir}: not a folder")
    records = load_records(args.results_dir)
    if not records:
        parser.error(f"{args.results_dir}: no run records (*.json) in it")
    out = args.out or default_out_dir(args.results_dir)
    title = args.title or f"{records[0]['config']['model']['name']} on {records[0]['config']['dataset']['name']}"
    for path in write_report(records, out, title=title):
        print(path)
    return 0
