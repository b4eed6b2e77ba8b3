"""What a person reads from a bench: the recommendation (the fastest format within the accuracy budget) and the
console table, both from the rows as bench.json holds them (plain dicts), so the command, the API and
benchmarks/deploy.py say the same thing.
"""

from __future__ import annotations

from typing import Any

Rows = list[dict[str, Any]]
SLACK = 1e-9  # a drop equal to the budget is within it, whatever the float rounding


def _speed(row: dict[str, Any], optimize: str) -> float:
    """Larger is faster: images/s at batch 32, or the inverse of the batch-1 p50."""
    return float(row["throughput"]) if optimize == "throughput" else 1.0 / float(row["p50_ms"])


def _said(row: dict[str, Any], optimize: str) -> str:
    if optimize == "throughput":
        return f"{row['throughput']:,.0f} images/s at batch 32"
    return f"{row['p50_ms']:.3g} ms per image at batch 1"


def recommend(rows: Rows, budget: float, optimize: str, metric: str = "accuracy") -> dict[str, Any]:
    """The fastest measured row whose accuracy (mAP) is at most `budget` points below eager float32, with notes
    where an int8 file is slower than its float32 one or over the budget (so left out)."""
    ok = [row for row in rows if row.get("status") == "ok" and row.get("p50_ms") is not None]
    notes = []
    for row in ok:
        if not row["name"].endswith("-int8"):
            continue
        if row["drop_pt"] > budget + SLACK:
            notes.append(
                f"{row['name']} is left out: {row['drop_pt']:.2f} pt below eager, over the {budget:g} pt budget"
            )
        sibling = next((other for other in ok if other["name"] == row["name"].removesuffix("-int8")), None)
        if sibling is not None and _speed(row, optimize) < _speed(sibling, optimize):
            notes.append(
                f"{row['name']} is slower than {sibling['name']} float32 here ({_said(row, optimize)} against "
                f"{_said(sibling, optimize)}): int8 does not pay on this model"
            )
    within = [row for row in ok if row["drop_pt"] <= budget + SLACK]
    if not within:
        return {
            "format": None,
            "by": optimize,
            "text": f"no format measured keeps the accuracy within {budget:g} pt of eager float32",
            "notes": notes,
        }
    best = max(within, key=lambda row: _speed(row, optimize))
    base = next((row for row in ok if row["name"] == "eager"), None)
    ratio = f" ({_speed(best, optimize) / _speed(base, optimize):.1f}x eager float32)" if base else ""
    text = (
        f"ship {best['name']}: {_said(best, optimize)}{ratio}, test {metric} "
        f"{best['metric']:.2f}%, {best['drop_pt']:.2f} pt below eager (budget {budget:g} pt)"
    )
    if best["name"] == "compile":
        text += f"; it compiles for {best.get('compile_seconds') or 0:.1f} s at every start"
    return {"format": best["name"], "by": optimize, "text": text, "notes": notes}


def _cell(value: Any, spec: str, width: int) -> str:
    return f"{'-' if value is None else format(value, spec):>{width}}"


def table_lines(result: dict[str, Any]) -> list[str]:
    """The bench as fixed-width console lines: one row per format, then the recommendation and the reasons for
    rows not measured."""
    metric = "mAP" if result.get("metric") == "map" else "acc"
    rows = result["rows"]
    base = next((row for row in rows if row["name"] == "eager" and row.get("p50_ms")), None)
    lines = [
        f"{result['images']} test images of {result['run_dir']} (epoch {result['epoch']}); latency: best of "
        f"{result['rounds']} rounds of {result['latency_runs']} calls; threads: torch {result['torch_threads']}, "
        f"runtimes {result.get('runtime_threads') or 'their default'}; "
        f"{result['cpu_count']} CPUs ({(result.get('cpu') or {}).get('model') or 'unknown CPU'})",
        f"{'format':<15}{metric + ' %':>8}{'drop pt':>8}{'agree %':>8}{'ECE':>7}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'b1 x':>7}{'b32 img/s':>10}{'MB':>8}{'load s':>7}",
    ]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"{row['name']:<15}  {row['status']}")
            continue
        speedup = base["p50_ms"] / row["p50_ms"] if base else None
        size = row["size_bytes"] / 1e6 if row.get("size_bytes") is not None else None
        lines.append(
            f"{row['name']:<15}{_cell(row['metric'], '.2f', 8)}{_cell(row['drop_pt'], '.2f', 8)}"
            f"{_cell(row['agreement'], '.2f', 8)}{_cell(row['ece'], '.3f', 7)}{_cell(row['p50_ms'], '.3f', 9)}"
            f"{_cell(row['p95_ms'], '.3f', 9)}{_cell(speedup, '.2f', 7)}{_cell(row['throughput'], ',.0f', 10)}"
            f"{_cell(size, '.2f', 8)}{_cell(row.get('load_seconds'), '.2f', 7)}"
        )
    recommendation = result["recommendation"]
    lines.append(f"recommendation: {recommendation['text']}")
    lines += [f"note: {note}" for note in recommendation["notes"]]
    lines += [f"{row['name']} {row['status']}: {row['reason']}" for row in rows if row["status"] != "ok"]
    compiled = [row for row in rows if row.get("compile_seconds") is not None]
    lines += [f"{row['name']}: compiled in {row['compile_seconds']:.1f} s (its load time)" for row in compiled]
    return lines
