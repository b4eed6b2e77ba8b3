"""cnntrain-eval writes the analysis the end of a run writes (most confused, per class, calibration, worst
mistakes), by the task's own code: on the same weights and data it is the run's analysis, and it gets its own
pictures and page in RUN_DIR/eval/. A multi-label run's eval page is read back: its tables and pictures."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cnntrain.commands import evaluate, train

from helpers import TINY_RUN, run_main
from synthetic_labelsets import SHAPES, write_sets


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, synthetic_data_root: Path) -> Path:
    """A one-epoch run with its pictures (best weights = last: the eval sees the run's test pass again)."""
    folder = tmp_path_factory.mktemp("finished")
    argv = [
        *TINY_RUN,
        "trainer.epochs=1",
        "trainer.progress=false",
        "report.plots=true",
        "report.worst=4",
        f"hydra.run.dir='{folder / 'run'}'",
    ]
    with pytest.MonkeyPatch.context() as patch:
        result = run_main(train.main, argv, folder, patch, CNNTRAIN_DATA_ROOT=str(synthetic_data_root))
    assert result.returncode == 0, result.stderr
    return folder / "run"


def test_eval_writes_the_runs_analysis_its_pictures_and_its_page(finished, tmp_path, monkeypatch):
    result = run_main(evaluate.main, [str(finished), "--device", "cpu"], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    run_analysis = json.loads((finished / "summary.json").read_text())["analysis"]
    analysis = json.loads((finished / "eval_summary.json").read_text())["analysis"]
    assert analysis["most_confused"] == run_analysis["most_confused"]
    assert analysis["per_class"] == run_analysis["per_class"]
    assert analysis["calibration"]["count"] == run_analysis["calibration"]["count"]
    assert analysis["calibration"]["ece"] == pytest.approx(run_analysis["calibration"]["ece"], rel=1e-6)
    assert [m["index"] for m in analysis["worst_mistakes"]] == [m["index"] for m in run_analysis["worst_mistakes"]]
    assert len(analysis["worst_mistakes"]) == 4
    out = finished / "eval"
    for name in ("worst_mistakes.png", "reliability.png", "per_class.png", "report.html"):
        assert (out / name).is_file(), name
    assert not (out / "curves.png").exists(), "the eval draws the analysis, not the training curves"
    page = (out / "report.html").read_text()
    assert all(f"<h2>{name}</h2>" in page for name in ("Result", "Per class", "Worst mistakes", "Calibration"))
    assert "data:image/png;base64," in page
    assert f"report: {out / 'report.html'}" in result.stdout


class Page(HTMLParser):
    """A report page read back: its section titles, each table's rows of cell texts, each picture's bytes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.titles: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.pictures: dict[str, bytes] = {}
        self._cell: list[str] | None = None
        self._in_title = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "h2":
            self._in_title = True
            self.titles.append("")
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img" and (found.get("src") or "").startswith("data:image/png;base64,"):
            self.pictures[str(found["alt"])] = base64.b64decode(str(found["src"]).split(",", 1)[1])

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_title = False
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif self._in_title:
            self.titles[-1] += data

    def table_with(self, header: str) -> list[list[str]]:
        (rows,) = [rows for rows in self.tables if rows and rows[0] and rows[0][0] == header]
        return rows


@pytest.mark.slow
def test_the_eval_page_of_a_multi_label_run_shows_its_labels_errors_and_pictures(tmp_path, monkeypatch):
    file = write_sets(tmp_path / "data", "delimited", count=96)
    run_dir = tmp_path / "run"
    argv = [
        "dataset=labels",
        f"dataset.file={file}",
        "dataset.task=multilabel",
        "model=cnn2",
        "trainer.epochs=1",
        "trainer.batch_size=16",
        "trainer.progress=false",
        "report.plots=true",
        "report.worst=3",
        f"hydra.run.dir='{run_dir}'",
    ]
    assert run_main(train.main, argv, tmp_path, monkeypatch).returncode == 0
    result = run_main(evaluate.main, [str(run_dir), "--device", "cpu"], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "eval_summary.json").read_text())
    out = run_dir / "eval"
    page = Page((out / "report.html").read_text())

    assert page.titles == ["Result", "Per label", "Largest errors"], "no single-label section (confusion, calibration)"
    metrics = page.table_with("test metric")[1:]
    assert metrics == [[key, f"{value:.3f}"] for key, value in summary["test"].items() if key != "images"]
    assert ["test images", str(summary["test"]["images"])] in page.tables[1]
    assert ["checkpoint", str(run_dir / "checkpoints" / "best.pt")] in page.tables[1]

    labels = page.table_with("label")
    assert labels[0] == ["label", "AP", "F1", "precision", "recall", "test images", "threshold"]
    assert sorted(row[0] for row in labels[1:]) == sorted(SHAPES)
    for name, scores, threshold, support in [
        (row[0], [float(cell) for cell in row[1:5]], float(row[6]), int(row[5])) for row in labels[1:]
    ]:
        kept = summary["per_label"][name]
        assert scores == [round(kept[key], 3) for key in ("ap", "f1", "precision", "recall")], name
        assert threshold == round(summary["thresholds"][name], 3) and support == kept["support"]

    worst = summary["analysis"]["worst_errors"]
    assert 0 < len(worst) <= 3
    errors = page.table_with("test image")[1:]
    assert [row[0] for row in errors] == [str(w["index"]) for w in worst]
    assert [row[1] for row in errors] == [", ".join(w["true"]) or "(none)" for w in worst]

    assert set(page.pictures) == {"per_class.png", "pr_curves.png", "worst_mistakes.png"}
    for name, data in page.pictures.items():
        assert data == (out / name).read_bytes(), f"{name}: the page shows the eval's own picture"
    assert all(not (out / name).exists() for name in ("confusion_matrix.png", "reliability.png", "curves.png"))
