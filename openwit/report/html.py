"""What openwit's HTML reports share: the page frame, styles, escaping, number formats and
matplotlib charts saved as PNG files beside the page.

A report is one folder: ``index.html`` and the files it shows, all relative -- no script,
no web font, no remote URL -- so it opens offline, can be copied anywhere, and opening it
fetches nothing. Text from the data (URLs, captions) is escaped and URLs are shown, never
linked. Used by the build report (:mod:`openwit.report`) and the overlap audit
(:mod:`openwit.dedup.report`).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1150px;
       color: #1d2330; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 2em; }
.muted { color: #667; } .note { background: #f4f6fa; padding: .6em .9em; border-radius: 6px; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: .35em .7em; border-bottom: 1px solid #dde; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f6fa; }
img.chart { max-width: 100%; border: 1px solid #eee; }
"""

#: Chart colours: kept records, rejected records, a third series, reference lines.
KEPT, REJECTED, OTHER, REFERENCE = "#4c72b0", "#c44e52", "#55a868", "#888888"


def esc(value: Any) -> str:
    """``value`` as HTML text (None as empty)."""
    return html.escape("" if value is None else str(value))


def pct(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage; a dash for None."""
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def num(value: int | float | None) -> str:
    """A count with thousands separators; a dash for None."""
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def table(head: list[str], rows: list[list[Any]], cls: str = "") -> str:
    """An HTML table; cells are escaped unless they are :class:`Raw`."""
    cells = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><tr>{cells}</tr>{body}</table>"


class Raw(str):
    """HTML that :func:`table` puts in a cell as it is (already escaped)."""


def _cell(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool) or value is None:
        return esc(value)
    if isinstance(value, int | float):
        return num(value)
    return esc(value)


def chart_img(src: str, alt: str) -> str:
    return f'<img class="chart" src="{esc(src)}" alt="{esc(alt)}">'


def page(title: str, body: str, extra_css: str = "") -> str:
    """A whole HTML document with the shared styles."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{CSS}{extra_css}</style></head>
<body>
{body}
</body></html>
"""


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(width: float, height: float) -> tuple[Any, Any]:
    """A figure with one axes, without the top and right spines."""
    fig, ax = pyplot().subplots(figsize=(width, height), dpi=110)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def save(fig: Any, path: Path) -> Path:
    """Lay out, write as PNG and close ``fig``; returns ``path``."""
    fig.tight_layout()
    # No timestamp in the file: an unchanged report is the same bytes.
    fig.savefig(path, metadata={"Software": None})
    pyplot().close(fig)
    return path
