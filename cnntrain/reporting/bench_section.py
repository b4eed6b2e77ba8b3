"""The "Which format to ship" section of a run's report.html: cnntrain-bench's bench.json as a table and its
recommendation. The file is read as data (bounded, any value may be missing or of another type and shows as "-");
one that cannot be read is a note on the page, never a failed page."""

from __future__ import annotations

from cnntrain.errors import UserError, first_line
from cnntrain.reading import MAX_RUN_FILE_BYTES, json_value, read_bytes
from cnntrain.reporting.html import esc, number, section, table
from cnntrain.reporting.page_sections import fixed, get
from cnntrain.reporting.run_dir import RunDir

HEADERS = ["format", "precision", "metric %", "drop pt", "agree %", "ECE", "p50 ms", "p95 ms", "b32 img/s", "MB"]


def bench_section(paths: RunDir) -> tuple[str, str, str] | None:
    """The bench's table and recommendation; None when the run has no bench.json."""
    path = paths.bench_json
    if not path.exists() and not path.is_symlink():
        return None
    try:
        bench = json_value(read_bytes(path, MAX_RUN_FILE_BYTES, "bench file"), "bench file", str(path))
    except (UserError, OSError, ValueError, RecursionError) as err:
        note = f"bench.json cannot be read ({first_line(err)}); run cnntrain-bench again"
        return section("bench", "Which format to ship", f'<p class="note">{esc(note)}</p>')
    rows = get(bench, "rows")
    rows = [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []
    body = [
        (
            str(row.get("name", "?")),
            str(row.get("precision", "-")),
            *(fixed(row.get(key), 2) for key in ("metric", "drop_pt", "agreement")),
            fixed(row.get("ece"), 3),
            *(fixed(row.get(key), 3) for key in ("p50_ms", "p95_ms")),
            fixed(row.get("throughput"), 0),
            fixed((number(row.get("size_bytes")) or 0) / 1e6, 2) if number(row.get("size_bytes")) else "-",
        )
        if row.get("status") == "ok"
        else (str(row.get("name", "?")), f"{row.get('status', '?')}: {row.get('reason', '')}", *["-"] * 8)
        for row in rows
    ]
    headers = list(HEADERS)
    headers[2] = "mAP %" if get(bench, "metric") == "map" else "accuracy %"
    recommendation = get(bench, "recommendation", "text")
    notes = get(bench, "recommendation", "notes")
    facts = (
        f"{get(bench, 'images')} test images, checkpoint epoch {get(bench, 'epoch')}; batch-1 latency: best of "
        f"{get(bench, 'rounds')} rounds of {get(bench, 'latency_runs')} calls; torch threads "
        f"{get(bench, 'torch_threads')} of {get(bench, 'cpu_count')} CPUs ({get(bench, 'cpu', 'model') or '?'})"
    )
    html = (
        f"<p><b>{esc(recommendation if isinstance(recommendation, str) else 'no recommendation in bench.json')}"
        f"</b></p>"
        + "".join(f'<p class="note">{esc(note)}</p>' for note in (notes if isinstance(notes, list) else []))
        + table(headers, body, numeric=tuple(range(2, 10)))
        + f'<p class="note">{esc(facts)}; fastest by {esc(get(bench, "optimize") or "?")} (bench.json)</p>'
    )
    return section("bench", "Which format to ship", html)
