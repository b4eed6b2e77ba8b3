"""The pictures of a multi-label run: each label's AP and F1 (worst first), precision-recall curves of the worst
labels, and the test images whose predicted label set is furthest from the true one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnntrain.reporting.figures import new_figure, save_png
from cnntrain.reporting.label_metrics import precision_recall_curve
from cnntrain.reporting.plots import mosaic, titled_mosaic

COLUMNS = 6


def plot_label_bars(per_label: dict[str, dict[str, Any]], path: Path) -> None:
    """per_class.png: AP and F1 of each label as paired horizontal bars, the worst AP at the top."""
    rows = sorted(per_label.items(), key=lambda item: (_value(item[1]["ap"]), item[0]))
    n = len(rows)
    fig = new_figure(figsize=(7, max(2.5, 0.36 * n + 1.2)), layout="constrained")
    ax = fig.subplots()
    positions = torch.arange(n, 0, -1, dtype=torch.float64).tolist()
    ax.barh([p + 0.2 for p in positions], [_value(m["ap"]) for _, m in rows], height=0.4, color="tab:blue", label="AP")
    ax.barh(
        [p - 0.2 for p in positions],
        [_value(m["f1"]) for _, m in rows],
        height=0.4,
        color="tab:orange",
        label="F1 at the threshold",
    )
    ax.set_yticks(positions, [f"{name} ({m['support']})" for name, m in rows])
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("score on the test split")
    ax.set_ylabel("label (test images with it)")
    ax.set_title("per-label AP and F1, worst AP first")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.06), ncol=2, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    save_png(fig, path)


def plot_pr_curves(
    scores: torch.Tensor,
    targets: torch.Tensor,
    classes: list[str],
    per_label: dict[str, dict[str, Any]],
    path: Path,
    count: int,
) -> None:
    """pr_curves.png: precision against recall for the `count` labels with the lowest AP."""
    worst = sorted(
        (k for k, name in enumerate(classes) if per_label[name]["ap"] is not None),
        key=lambda k: (per_label[classes[k]]["ap"], classes[k]),
    )[:count]
    fig = new_figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.subplots()
    for k in worst:
        curve = precision_recall_curve(scores[:, k], targets[:, k])
        assert curve is not None
        precision, recall = curve
        ax.step(
            [0.0, *recall.tolist()],
            [float(precision[0]), *precision.tolist()],
            where="post",
            label=f"{classes[k]} (AP {per_label[classes[k]]['ap']:.3f})",
        )
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"precision-recall of the {len(worst)} labels with the lowest AP (test)")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    save_png(fig, path)


def plot_worst_sets(images: torch.Tensor, worst: list[dict[str, Any]], path: Path) -> None:
    """worst_mistakes.png: the test images with the largest errors, titled with their true and predicted sets."""
    cols = min(COLUMNS, len(worst))
    canvas, origins = mosaic(images.cpu(), cols)
    titles = [f"true {{{', '.join(item['true'])}}}\npred {{{', '.join(item['predicted'])}}}" for item in worst]
    fig = titled_mosaic(
        canvas,
        origins,
        titles,
        images.shape[3],
        cols * 2.0,
        f"{len(worst)} test images with the largest errors: true and predicted label sets",
        margin=0.6,
        fontsize=7,
    )
    save_png(fig, path)


def _value(v: float | None) -> float:
    return 0.0 if v is None else v
