"""cnntrain-eval writes the analysis the end of a run writes (most confused, per class, calibration, worst
mistakes), by the task's own code: on the same weights and data it is the run's analysis, and it gets its own
pictures and page in RUN_DIR/eval/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnntrain.commands import evaluate, train

from helpers import TINY_RUN, run_main


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
