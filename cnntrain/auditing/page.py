"""audit.html: one self-contained page (every thumbnail inline as a data: URI, no script, nothing fetched), in
the style of a run's report.html: the counts, then each likely label error beside the most typical images of
its given and of its suggested class, the duplicate pairs side by side, the outliers."""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

import torch

from cnntrain.auditing.duplicates import Pair
from cnntrain.auditing.folds import Predictions
from cnntrain.auditing.label_issues import LabelIssue
from cnntrain.auditing.outliers import Outlier
from cnntrain.auditing.result import AuditResult
from cnntrain.auditing.tables import names
from cnntrain.reporting.html import Raw, cards, esc, page, section, table
from cnntrain.reporting.html import write_page as write_html

if TYPE_CHECKING:
    from pathlib import Path

SHOWN = 50  # rows per section; the CSVs hold every one
EXAMPLES = 3  # typical images of a class shown beside a suspect
THUMB = 64  # pixels on the longer side


def thumbnail(image: torch.Tensor) -> Raw:
    """A uint8 [C, H, W] image as an inline PNG, scaled up (nearest) so small images stay visible."""
    from PIL import Image  # Pillow: with the page

    array = image.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    scale = max(1, THUMB // max(picture.size))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return Raw(f'<img src="{uri}" alt="" width="{picture.width}" height="{picture.height}" style="margin: 0 3px 0 0">')


def typical(pred: Predictions, cls: int, skip: set[int]) -> list[int]:
    """The images of class `cls` the out-of-fold models were surest of (given that label, not flagged)."""
    has = pred.labels[:, cls] > 0 if pred.multilabel else pred.labels == cls
    score = torch.where(has, pred.probs[:, cls], torch.full_like(pred.probs[:, cls], -1.0))
    order = [int(i) for i in torch.argsort(score, descending=True).tolist() if score[i] >= 0 and int(i) not in skip]
    return order[:EXAMPLES]


def _strip(pred: Predictions, indices: list[int]) -> Raw:
    return Raw("".join(thumbnail(pred.images[i]) for i in indices) or "-")


def write_page(
    folder: Path,
    pred: Predictions,
    issues: list[LabelIssue],
    pairs: list[Pair],
    found: list[Outlier],
    result: AuditResult,
) -> Path:
    flagged = {x.index for x in issues}
    examples: dict[int, list[int]] = {}

    def of(classes: list[int]) -> Raw:
        shown = []
        for c in classes[:2]:
            shown += examples.setdefault(c, typical(pred, c, flagged))
        return _strip(pred, shown)

    issue_rows = [
        [
            thumbnail(pred.images[x.index]),
            pred.keys[x.index].key,
            pred.splits[x.index],
            names(pred.classes, x.given) or "(none)",
            names(pred.classes, x.suggested) or "(none)",
            f"{x.quality:.3f}",
            of(x.given),
            of(x.suggested),
        ]
        for x in issues[:SHOWN]
    ]
    pair_rows = [
        [
            thumbnail(pred.images[p.a]),
            thumbnail(pred.images[p.b]),
            p.kind,
            "leak" if p.leak(pred.splits) else "",
            f"{pred.keys[p.a].key} ({pred.splits[p.a]})",
            f"{pred.keys[p.b].key} ({pred.splits[p.b]})",
            p.distance,
            f"{p.cosine:.3f}",
        ]
        for p in pairs[:SHOWN]
    ]
    outlier_rows = [
        [
            thumbnail(pred.images[o.index]),
            o.reason,
            pred.keys[o.index].key,
            pred.splits[o.index],
            f"{o.score:.4f}",
            o.detail,
        ]
        for o in found[:SHOWN]
    ]
    folds = max(pred.fold_of) + 1
    headline = cards(
        [
            ("images audited", f"{result.images:,}"),
            ("likely label errors", f"{result.label_issues:,}"),
            ("duplicate pairs", f"{result.duplicates:,}"),
            ("across splits (leaks)", f"{result.leaks:,}"),
            ("outliers", f"{result.outliers:,}"),
            ("left out / relabelled", f"{result.dropped:,} / {result.relabelled:,}"),
        ]
    )
    more = f'<p class="note">The first {SHOWN} of each are shown; the CSVs beside this page hold all.</p>'
    how = (
        f"<p>Out-of-fold probabilities of {folds} fold runs: each image was predicted by the model that did not "
        f"train on it (test images by the mean of all {folds}). Label issues: cleanlab's confident learning, ranked by "
        f"label quality (low: likely wrong). Duplicates: same content hash, or perceptual hashes within a few bits; "
        f"the cosine is in fold 0's embedding space. Outliers: cleanlab's out-of-distribution score on embeddings, "
        f"and nearly constant or oddly sized files.</p>"
    )
    command = (
        f"<p>Train on the cleaned labels:</p><pre>{esc(result.train_command)}</pre>" if result.train_command else ""
    )
    files = "".join(f"<li><code>{esc(p.name)}</code></li>" for p in result.files.values())
    sections = [
        section("counts", "Counts", headline + how + more),
        section(
            "labels",
            "Likely label errors",
            table(
                ["image", "key", "split", "given", "suggested", "quality", "typical of given", "typical of suggested"],
                issue_rows,
                numeric=[5],
            )
            if issue_rows
            else '<p class="note">none flagged</p>',
        ),
        section(
            "duplicates",
            "Duplicates and leaks",
            table(
                ["a", "b", "kind", "leak", "key a", "key b", "pHash bits", "cosine"],
                pair_rows,
                numeric=[6, 7],
                bad=[i for i, p in enumerate(pairs[:SHOWN]) if p.leak(pred.splits)],
            )
            if pair_rows
            else '<p class="note">none found</p>',
        ),
        section(
            "outliers",
            "Outliers",
            table(["image", "reason", "key", "split", "score", "detail"], outlier_rows, numeric=[4])
            if outlier_rows
            else '<p class="note">none found</p>',
        ),
        section("files", "Files", f"<ul>{files}<li><code>audit.html</code></li></ul>{command}"),
    ]
    text = page("Data audit", f"{result.images:,} images, {len(pred.classes)} classes, {folds} folds", sections)
    return write_html(folder, folder / "audit.html", text)
