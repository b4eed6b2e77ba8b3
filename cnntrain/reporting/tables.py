"""The tables a person reads: the model summary, the per-class test accuracy, and key-value results.

Rich renders them on the terminal and, without colour, into train.log (cnntrain.reporting.console).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from rich.table import Table
from rich.text import Text

from cnntrain.models.builder import LayerRow, to_plain
from cnntrain.models.registry import fmt_shape
from cnntrain.reporting.console import format_macs, format_metric
from cnntrain.reporting.text import markup, plain


def summary_table(rows: list[LayerRow], model_name: str, input_shape: Sequence[int]) -> Table:
    """The torchsummary-style table: one row per config item with its output shape, parameters and
    multiply-adds per image; a composite layer's blocks follow it, indented, so a whole network stays a
    dozen lines. Totals count the config items only (their blocks are part of them)."""
    table = Table(title=f"model {markup(model_name)}", show_footer=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("layer", footer="total", overflow="fold")
    table.add_column("details", overflow="fold", ratio=1)  # on a narrow console the text folds, numbers stay whole
    for name, footer in (
        ("output shape", None),
        ("params", f"{sum(r.params for r in rows):,}"),
        ("MACs", format_macs(sum(r.macs for r in rows))),
    ):
        table.add_column(
            name, justify="right", no_wrap=True, footer=footer or "", min_width=max(len(name), len(footer or ""))
        )
    table.add_row("", "input", "", fmt_shape(tuple(to_plain(input_shape))), "", "")
    for r in rows:
        table.add_row(
            str(r.index),
            markup(r.name),
            markup(r.detail),
            fmt_shape(r.output_shape),
            f"{r.params:,}",
            format_macs(r.macs),
        )
        for b in r.blocks:
            table.add_row(
                f"{r.index}.{b.index}",
                Text(f"  {plain(b.name)}"),
                markup(b.detail),
                fmt_shape(b.output_shape),
                f"{b.params:,}",
                format_macs(b.macs),
            )
    return table


def key_value_table(title: str, rows: list[tuple[str, str]]) -> Table:
    """A two-column table: what was measured, and its value (shown as text, folded, never cut off, on a narrow
    terminal: values name files and datasets)."""
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column(justify="left")
    table.add_column(justify="right", overflow="fold")
    for key, value in rows:
        table.add_row(markup(key), markup(value))
    return table


def per_class_table(classes: list[str], accuracies: list[float | None], matrix: torch.Tensor) -> Table:
    """Images, correct predictions and accuracy of each class, from the confusion matrix."""
    table = Table(title="per-class test accuracy", title_justify="left")
    for name, justify in (("class", "left"), ("images", "right"), ("correct", "right"), ("acc", "right")):
        table.add_column(name, justify=justify)
    totals = matrix.sum(dim=1).tolist()
    for name, acc, total, hits in zip(classes, accuracies, totals, matrix.diagonal().tolist()):
        table.add_row(markup(name), str(total), str(hits), format_metric("acc", acc))  # class names are data
    return table


def most_confused_table(pairs: list[dict[str, Any]]) -> Table:
    """The (true, predicted) class pairs the model mixes up most, from summary.json's analysis."""
    table = Table(title="most confused (test, best checkpoint)", title_justify="left")
    for name, justify in (("true", "left"), ("predicted as", "left"), ("images", "right")):
        table.add_column(name, justify=justify)
    for pair in pairs:
        table.add_row(markup(pair["true"]), markup(pair["predicted"]), str(pair["count"]))
    return table
