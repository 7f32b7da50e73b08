"""The report's two files, written the same way for every sweep: report.md with its plots beside it, and a
self-contained report.html (plots inlined, every text escaped) that can be mailed or attached as one file.

Why one module: the trade-off, bench and scale reports differ in what they compute, not in how a page is
laid out, and a reader moving between them should find the same header, the same "do not edit" line and the
same table style.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

GENERATED = "Generated from run records by `python -m harness report`; do not edit."
STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
    "font-size:13px;margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}"
    "th{background:#f0f0f0}img{max-width:100%;display:block;margin:1em 0}pre{white-space:pre-wrap;"
    "background:#f7f7f7;padding:.5em}"
)


def html_head(title: str) -> list[str]:
    """The HTML page's opening lines up to and including its title and the "do not edit" line."""
    return [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(GENERATED).replace('`', '')}</p>",
    ]


def inline_image(alt: str, path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"<img alt='{html.escape(alt, quote=True)}' src='data:image/png;base64,{data}'>"


def write_table_page(
    out_dir: Path,
    *,
    title: str,
    note: str,
    table: pd.DataFrame,
    plots: dict[str, Path] | None = None,
    sections: list[tuple[str, str, pd.DataFrame]] | None = None,
) -> list[Path]:
    """A one-table report (a note, the table, its plots, then any further (heading, note, table) sections) as
    report.md and report.html in out_dir."""
    out_dir = Path(out_dir)
    plots = plots or {}
    sections = sections or []
    md = [f"# {title}", "", GENERATED, "", note, "", table.to_markdown(index=False), ""]
    md += [f"![{name}]({path.name})\n" for name, path in plots.items()]
    for heading, section_note, section_table in sections:
        md += [f"## {heading}", "", section_note, "", section_table.to_markdown(index=False), ""]
    md_path = out_dir / "report.md"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    h = html_head(title) + [f"<p>{html.escape(note)}</p>", table.to_html(index=False, escape=True, border=0)]
    h += [inline_image(name, path) for name, path in plots.items()]
    for heading, section_note, section_table in sections:
        h += [f"<h2>{html.escape(heading)}</h2>", f"<p>{html.escape(section_note)}</p>"]
        h.append(section_table.to_html(index=False, escape=True, border=0))
    h.append("</body></html>")
    html_path = out_dir / "report.html"
    html_path.write_text("\n".join(h), encoding="utf-8")
    return [md_path, html_path]
