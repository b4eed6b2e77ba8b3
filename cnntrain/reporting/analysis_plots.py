"""The analysis's pictures ("why it fails"): the worst mistakes with their class activation maps, the
reliability diagram and per-class precision/recall/F1 (report.analysis; a run's standard pictures are plots.py).

matplotlib and Pillow are imported inside the functions, as in plots.py, so a run without pictures never loads
them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from cnntrain.files import atomic_write
from cnntrain.reporting.figures import new_figure, save_png
from cnntrain.reporting.plots import HEADER_PIXELS, TILE_PIXELS, mosaic

CAM_ALPHA = 0.45  # how much of an overlay pixel is the heat map (the rest is the image)


def cam_overlay(image: torch.Tensor, cam: torch.Tensor | None, alpha: float = CAM_ALPHA) -> torch.Tensor:
    """uint8 [3, H, W]: the image (gray or RGB uint8 [C, H, W]) with a CAM in [0, 1] [H, W] blended over it in
    matplotlib's 'jet' colours (red: where the evidence for the class is); the image alone without a CAM."""
    rgb = image.cpu().expand(3, -1, -1) if image.shape[0] == 1 else image.cpu()[:3]
    if cam is None:
        return rgb.clone()
    from matplotlib import colormaps  # only when pictures are drawn: matplotlib takes a second to import

    heat = torch.from_numpy(colormaps["jet"](cam.clamp(0, 1).numpy(), bytes=True)[..., :3]).permute(2, 0, 1)
    return (rgb.float() * (1 - alpha) + heat.float() * alpha).round().clamp(0, 255).to(torch.uint8)


def plot_worst_mistakes(
    images: torch.Tensor, cams: torch.Tensor | None, titles: list[str], path: Path, header: str
) -> None:
    """worst_mistakes.png: the worst mistakes (uint8 [N, C, H, W]) with their CAMs over them, titled
    'pred p=0.97\\n(true)', in Pillow as misclassified.png; a note when there is no mistake to show."""
    from PIL import Image, ImageDraw, ImageFont  # only when pictures are drawn (report.plots)

    font = ImageFont.load_default(size=13)
    if images.shape[0] == 0:
        image = Image.new("RGB", (360, 60), "white")
        ImageDraw.Draw(image).text((180, 30), "no misclassified test images", fill="black", font=font, anchor="mm")
        atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
        return
    tiles = torch.stack([cam_overlay(img, None if cams is None else cams[i]) for i, img in enumerate(images)])
    height, width = tiles.shape[2:]
    cols = min(8, tiles.shape[0])
    canvas, origins = mosaic(tiles, cols)
    scale = max(1, math.ceil(TILE_PIXELS / max(height, width)))
    big = canvas.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    image = Image.new("RGB", (max(big.shape[1], 420), big.shape[0] + HEADER_PIXELS), "white")
    image.paste(Image.fromarray(big.numpy()), (0, HEADER_PIXELS))
    draw = ImageDraw.Draw(image)
    draw.text(
        (image.width / 2, HEADER_PIXELS / 2), header, fill="black", font=ImageFont.load_default(size=16), anchor="mm"
    )
    for (top, left), title in zip(origins, titles):
        draw.multiline_text(
            ((left + width / 2) * scale, HEADER_PIXELS + top * scale - 2),
            title,
            fill=(214, 39, 40),
            font=font,
            anchor="md",
            align="center",
        )
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def plot_reliability(calibration: dict[str, Any], path: Path) -> None:
    """reliability.png: accuracy against mean confidence per confidence bin (bars, with the diagonal of a perfectly
    calibrated model), the images per bin below, and the expected calibration error in the title."""
    bins = calibration["bins"]
    width = 1.0 / bins
    centres = [(i + 0.5) * width for i in range(bins)]
    accuracy = [a if a is not None else 0.0 for a in calibration["accuracy"]]
    confidence = [c if c is not None else 0.0 for c in calibration["confidence"]]
    fig = new_figure(figsize=(6, 6.5))
    fig.subplots_adjust(left=0.12, right=0.96, bottom=0.09, top=0.92, hspace=0.08)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(
        centres,
        accuracy,
        width=width * 0.95,
        color="tab:blue",
        edgecolor="black",
        linewidth=0.5,
        label="accuracy in bin",
    )
    filled = [i for i, c in enumerate(calibration["confidence"]) if c is not None]
    top.scatter(
        [centres[i] for i in filled],
        [confidence[i] for i in filled],
        marker="_",
        s=400 / max(1, bins**0.5),
        linewidths=2.5,
        color="tab:red",
        zorder=3,
        label="mean confidence in bin",
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfectly calibrated")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(f"reliability diagram: ECE = {100 * calibration['ece']:.2f}% ({bins} bins)")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    bottom.bar(centres, calibration["count"], width=width * 0.95, color="tab:gray")
    bottom.set_yscale("symlog")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (probability of the predicted class)")
    bottom.set_ylabel("images")
    save_png(fig, path)


def plot_per_class(per_class: dict[str, dict[str, Any]], path: Path) -> None:
    """per_class.png: F1 of each class as horizontal bars, worst first (top), precision and recall as markers."""
    rows = sorted(per_class.items(), key=lambda item: (item[1]["f1"] if item[1]["f1"] is not None else -1, item[0]))
    n = len(rows)
    fig = new_figure(figsize=(7, max(2.5, 0.32 * n + 1.2)), layout="constrained")
    ax = fig.subplots()
    positions = list(range(n))[::-1]  # worst at the top
    value = lambda v: v if v is not None else 0.0
    ax.barh(positions, [value(m["f1"]) for _, m in rows], color="tab:blue", alpha=0.75, label="F1")
    ax.scatter(
        [value(m["precision"]) for _, m in rows],
        positions,
        marker="|",
        s=120,
        color="black",
        label="precision",
        zorder=3,
    )
    ax.scatter([value(m["recall"]) for _, m in rows], positions, marker="x", color="tab:red", label="recall", zorder=3)
    ax.set_yticks(positions, [f"{name} ({m['support']})" for name, m in rows])
    scores = [value(m[key]) for _, m in rows for key in ("f1", "precision", "recall")]
    low = math.floor(min(scores, default=0.0) * 10) / 10  # a decade below the lowest: 0.98s still tell apart
    ax.set_xlim(low if low >= 0.5 else 0.0, 1.02)
    ax.set_xlabel("score on the test split" + (f" (axis from {low:.1f})" if low >= 0.5 else ""))
    ax.set_ylabel("class (test images)")
    ax.set_title("per-class F1, worst first")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.06), ncol=3, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    save_png(fig, path)
