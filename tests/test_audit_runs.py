"""cnntrain-audit end to end on small drawn data with a planted mislabel, a planted copy of a test image in train
(a leak) and a planted blank image: K fold runs through the sweep machinery, the CSVs, the cleaned label file
(and a run trained on it), audit.html (checked in headless Chromium where it is installed); an image folder of
one class per image, and a label file of label sets."""

from __future__ import annotations

import csv
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_report_page import check_self_contained, needs_chromium, render

from helpers import run_main
from synthetic_images import make_folder, write_label_file
from synthetic_labelsets import SHAPES, make_label_sets

needs_extra = pytest.mark.skipif(
    importlib.util.find_spec("cleanlab") is None or importlib.util.find_spec("imagehash") is None,
    reason="the audit extra (cleanlab, imagehash) is not installed: pip install 'cnntrain[audit]'",
)  # found, not imported: collection stays quick
pytestmark = [pytest.mark.slow, needs_extra]

# Two folds of a small net for a few short epochs: enough to learn the drawn shapes, seconds per fold.
RECIPE = (
    "--folds", "2", "--recipe", "config", "model=cnn2", "trainer.epochs=4", "trainer.batch_size=16",
    "optimizer.lr=0.003", "dataset.num_workers=0", "report.plots=false", "trainer.progress=false",
)  # fmt: skip


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def audit(cwd: Path, monkeypatch, *argv: str):
    from cnntrain.commands import audit as command

    result = run_main(command.main, [*RECIPE, *argv], cwd, monkeypatch)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def folder_audit(tmp_path_factory) -> tuple[Path, Path, object]:
    """An image folder (train/ and test/) with the three planted problems, audited once for the module."""
    work = tmp_path_factory.mktemp("audit_folder")
    root = make_folder(work / "data", rgb=False, size=16, per_class=16, test_per_class=4, seed=5)
    shutil.move(root / "train" / "circle" / "1.png", root / "train" / "cross" / "mislabel.png")
    shutil.copy(root / "test" / "square" / "1.png", root / "train" / "square" / "leak.png")
    Image.fromarray(np.full((16, 16), 128, np.uint8), "L").save(root / "train" / "circle" / "blank.png")
    mp = pytest.MonkeyPatch()
    try:
        result = audit(work, mp, "dataset=imagefolder", f"dataset.root={root}", "--out", str(work / "audit"))
    finally:
        mp.undo()
    return root, work / "audit", result


def test_the_folder_audit_finds_the_planted_mislabel_leak_and_blank_image(folder_audit):
    root, out, result = folder_audit
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("audit: 62 images, ") and str(out / "audit.html") in line
    issues = rows(out / "label_issues.csv")
    mislabel = str(root / "train" / "cross" / "mislabel.png")
    assert mislabel in [r["key"] for r in issues[:3]], issues[:5]
    assert next(r for r in issues if r["key"] == mislabel)["suggested"] == "circle"
    pairs = rows(out / "duplicates.csv")
    leak = {str(root / "train" / "square" / "leak.png"), str(root / "test" / "square" / "1.png")}
    assert any({p["key_a"], p["key_b"]} == leak and p["kind"] == "exact" and p["leak"] == "yes" for p in pairs)
    found = rows(out / "outliers.csv")
    blank = str(root / "train" / "circle" / "blank.png")
    assert any(r["key"] == blank and r["reason"] == "constant" for r in found)
    cleaned = [r["path"] for r in rows(out / "cleaned_labels.csv")]
    assert "train/square/leak.png" not in cleaned and "train/circle/blank.png" not in cleaned
    assert "test/square/1.png" in cleaned and "train/cross/mislabel.png" not in cleaned
    excluded = (out / "exclude.txt").read_text().splitlines()
    assert len(cleaned) + len(excluded) == 62 and mislabel in excluded
    assert sorted(p.name for p in (out / "folds").iterdir() if p.is_dir()) == ["0", "1"]  # the sweep's jobs


def test_the_page_is_self_contained_with_a_thumbnail_of_each_suspect(folder_audit):
    _, out, _ = folder_audit
    text = (out / "audit.html").read_text(encoding="utf-8")
    parsed = check_self_contained(text)
    assert len(parsed.all("img")) >= 3 * len(rows(out / "label_issues.csv")[:50])
    assert "mislabel.png" in text and "leak" in text


@needs_chromium
def test_chromium_renders_the_audit_page_with_every_image(folder_audit, tmp_path):
    _, out, _ = folder_audit
    counts = render(out / "audit.html", tmp_path / "shot.png", home=tmp_path)
    assert counts["images"] > 10 and counts["broken"] == 0 and counts["fetched"] == 0


def test_training_on_the_cleaned_labels_and_rerunning_keeps_the_folds(folder_audit, tmp_path, monkeypatch):
    from cnntrain.commands import train

    root, out, _ = folder_audit
    argv = [
        "dataset=labels", f"dataset.file={out / 'cleaned_labels.csv'}", f"dataset.image_dir={root}", "model=cnn2",
        "trainer.epochs=1", "dataset.num_workers=0", "report.plots=false", "trainer.progress=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    result = run_main(train.main, argv, tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = (tmp_path / "run" / "summary.json").read_text()
    assert '"status": "done"' in summary
    again = audit(tmp_path, monkeypatch, "dataset=imagefolder", f"dataset.root={root}", "--out", str(out))
    assert "done in an earlier run of this sweep, kept" in again.stdout + again.stderr


def test_a_label_file_of_label_sets_is_audited_by_its_rows(tmp_path, monkeypatch):
    drawn = make_label_sets(tmp_path / "data", count=64, size=16)
    sets = [{"path": p, "labels": " ".join(s)} for p, s in drawn]
    planted = next(i for i, (_, s) in enumerate(drawn) if len(s) == 3)
    sets[planted]["labels"] = ""  # every shape drawn, none given
    file = write_label_file(tmp_path / "data" / "labels.csv", sets)
    audit(
        tmp_path, monkeypatch, "dataset=labels", f"dataset.file={file}", "dataset.label_delimiter=' '",
        "--out", str(tmp_path / "audit"),
    )  # fmt: skip
    issues = rows(tmp_path / "audit" / "label_issues.csv")
    key = str(tmp_path / "data" / drawn[planted][0])
    assert key in [r["key"] for r in issues[:5]], issues[:5]
    assert set(next(r for r in issues if r["key"] == key)["suggested"].split(";")) <= set(SHAPES)
    cleaned = rows(tmp_path / "audit" / "cleaned_labels.csv")
    assert {r["split"] for r in cleaned} == {"train", "test"} and drawn[planted][0] not in {r["path"] for r in cleaned}
    assert len(cleaned) + len((tmp_path / "audit" / "exclude.txt").read_text().splitlines()) == 64


def test_cnntrain_audit_from_python_reads_the_same_folds_again(folder_audit, tmp_path):
    import cnntrain

    _, out, _ = folder_audit
    found = cnntrain.audit(runs=out / "folds", out=tmp_path / "again", fix="relabel")
    assert found.images == 62 and found.leaks >= 1 and found.files["cleaned_labels"].is_file()
    assert (tmp_path / "again" / "label_issues.csv").read_bytes() == (out / "label_issues.csv").read_bytes()
    assert found.relabelled > 0 and found.line().startswith("audit: 62 images")
    assert callable(cnntrain.audit)
