"""The pieces every report page is made of: escaped text, tables, inlined PNGs, the page shell and its CSS.

A page is one file that opens anywhere (a zip, a mail attachment, a CI artifact): every picture is a
data: URI, the CSS is inline, there is no script, font or URL off the page, and long parts fold into
<details>. Everything a run wrote (class names, config values, layer names) goes through esc().
Pictures are read, never drawn: a PNG is inlined only when it is a plain file inside the folder the page
describes (not a symlink, not resolving elsewhere), starts with the PNG signature and is not huge.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cnntrain.errors import UserError
from cnntrain.files import write_text
from cnntrain.reporting.text import html_text

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PNG_BYTES = 32 * 2**20  # a picture bigger than this is named, not inlined
MAX_TEXT_BYTES = 2**20  # the config shown on the page

CSS = """
:root { --fg: #1d2329; --muted: #5b6670; --line: #d5dbe1; --band: #f3f5f7; --accent: #1f5f99; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1280px; padding: 1.2rem 1.5rem 3rem; color: var(--fg); background: #fff;
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
h1 { font-size: 1.5rem; margin: 0 0 .2rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 .6rem; padding-bottom: .25rem; border-bottom: 2px solid var(--line); }
p.sub, p.note { color: var(--muted); margin: .2rem 0 .8rem; }
nav { display: flex; flex-wrap: wrap; gap: .3rem .9rem; padding: .5rem .8rem; margin: .8rem 0 0;
      background: var(--band); border-radius: 6px; font-size: .9rem; }
a { color: var(--accent); }
table { border-collapse: collapse; margin: .3rem 0 .8rem; font-size: .9rem; }
th, td { padding: .25rem .7rem; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--band); font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tfoot td { font-weight: 600; border-top: 2px solid var(--line); }
tr.bad td { color: #a61b1b; }
.cards { display: flex; flex-wrap: wrap; gap: .8rem; margin: .8rem 0; }
.card { padding: .5rem .9rem; border: 1px solid var(--line); border-radius: 6px; min-width: 9rem; }
.card b { display: block; font-size: 1.35rem; }
.card span { color: var(--muted); font-size: .85rem; }
figure { margin: .5rem 0 1rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: .85rem; }
.row { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
.row > * { flex: 1 1 420px; min-width: 0; }
details { margin: .4rem 0 .8rem; }
summary { cursor: pointer; color: var(--accent); }
pre { background: var(--band); padding: .7rem; overflow-x: auto; font-size: .82rem; max-height: 40rem; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.wide { overflow-x: auto; }
"""


def esc(value: Any) -> str:
    """Any value as HTML text: markup in a class name or a config value shows as written."""
    return html_text(value)


def number(value: Any) -> float | None:
    """A finite number from a file (None for anything else: a hand-edited summary.json shows '-', not a crash)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def inside(root: Path, path: Path) -> bool:
    """Whether `path` is no symlink and, resolved, lies inside `root`: a page reads and writes nothing else."""
    try:
        return not path.is_symlink() and path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        return False


def png_uri(path: Path, root: Path | None) -> str | None:
    """A data: URI of the PNG at `path` (inside `root`, when given), or None when it is absent, outside,
    too big or not a PNG."""
    if root is not None and not inside(root, path):
        return None
    try:
        if not path.is_file() or path.stat().st_size > MAX_PNG_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(PNG_SIGNATURE):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure(path: Path, root: Path | None, caption: str, missing: str | None = None) -> str:
    """The picture with its caption, or a note that it is not there (`missing`; nothing when None)."""
    uri = png_uri(path, root)
    if uri is None:
        return f'<p class="note">{esc(missing)}</p>' if missing else ""
    return f'<figure><img src="{uri}" alt="{esc(path.name)}"><figcaption>{esc(caption)}</figcaption></figure>'


def read_text(path: Path, root: Path | None) -> str | None:
    """A small text file inside `root` (the config), or None."""
    if root is not None and not inside(root, path):
        return None
    try:
        if not path.is_file() or path.stat().st_size > MAX_TEXT_BYTES:
            return None
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


NUMERIC = ' class="n"'
Cell = Any  # str (escaped here), or Raw (already HTML)


class Raw(str):
    """HTML made here (a link), put into a table cell as it is."""


def cell(value: Cell) -> str:
    return value if isinstance(value, Raw) else esc(value)


def table(
    headers: Sequence[str] | None,
    rows: Iterable[Sequence[Cell]],
    numeric: Iterable[int] = (),
    footer: Sequence[Cell] | None = None,
    bad: Iterable[int] = (),
) -> str:
    """An HTML table (no header row when `headers` is None); columns in `numeric` are right-aligned, rows in `bad`
    (their index) drawn in red."""
    right = set(numeric)
    bad_rows = set(bad)

    def tr(cells: Sequence[Cell], tag: str, klass: str = "") -> str:
        tds = "".join(f"<{tag}{NUMERIC if i in right else ''}>{cell(c)}</{tag}>" for i, c in enumerate(cells))
        return f"<tr{klass}>{tds}</tr>"

    body = "".join(tr(row, "td", ' class="bad"' if i in bad_rows else "") for i, row in enumerate(rows))
    foot = f"<tfoot>{tr(footer, 'td')}</tfoot>" if footer else ""
    head = f"<thead>{tr(headers, 'th')}</thead>" if headers is not None else ""
    return f'<div class="wide"><table>{head}<tbody>{body}</tbody>{foot}</table></div>'


def cards(items: Iterable[tuple[str, str]]) -> str:
    """The headline numbers, big, with what each is."""
    return (
        '<div class="cards">'
        + "".join(f'<div class="card"><b>{esc(value)}</b><span>{esc(name)}</span></div>' for name, value in items)
        + "</div>"
    )


def section(anchor: str, title: str, body: str) -> tuple[str, str, str]:
    return anchor, title, f'<section id="{anchor}"><h2>{esc(title)}</h2>{body}</section>'


def folded(summary: str, body: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{esc(summary)}</summary>{body}</details>"


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole document: title, a line under it, a bar of in-page links, the sections."""
    nav = "".join(f'<a href="#{anchor}">{esc(name)}</a>' for anchor, name, _ in sections)
    body = "".join(html_ for _, _, html_ in sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n"
        f'<body><header><h1>{esc(title)}</h1><p class="sub">{esc(subtitle)}</p><nav>{nav}</nav></header>\n'
        f"{body}\n</body></html>\n"
    )


def write_page(root: Path, path: Path, text: str) -> Path:
    """Write a page atomically at `path`, which must lie inside `root` and not be a symlink."""
    if not inside(root, path) or path.resolve().parent != root.resolve():
        raise UserError(f"{path} is a symlink or lies outside {root}; not writing a report page through it")
    write_text(path, text)
    return path
