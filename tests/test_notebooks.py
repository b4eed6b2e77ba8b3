"""The notebooks in examples/: committed without outputs, and each one runs from top to bottom on a real Jupyter
kernel (nbclient + ipykernel, the Python running these tests) on small generated data, with the outputs a
reader should see."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from helpers import REPO

NOTEBOOKS = sorted((REPO / "examples").glob("*.ipynb"))
KERNEL = "cnntrain-tests"


def test_notebooks_are_committed_without_outputs():
    assert {path.name for path in NOTEBOOKS} >= {"quickstart.ipynb", "sweep.ipynb", "finetune-folder.ipynb"}
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name} has outputs"


@pytest.fixture(scope="module")
def example_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fashion-MNIST-shaped IDX files and a small folder of RGB images, as the notebooks expect under their root."""
    from synthetic_idx import write_idx_dataset
    from synthetic_images import make_folder

    root = tmp_path_factory.mktemp("example_data")
    write_idx_dataset(root, "FashionMNIST", n_train=300, n_test=100, seed=5)
    make_folder(root / "images", rgb=True, size=16, per_class=10)
    return root


@pytest.fixture
def execute(example_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run a notebook on a kernel of this Python (a kernelspec written to a temporary JUPYTER_PATH) in a fresh
    working directory; returns its cells after the run."""
    import nbformat
    from nbclient import NotebookClient

    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "cnntrain tests",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("CNNTRAIN_EXAMPLE_DATA", str(example_data))
    monkeypatch.setenv("CNNTRAIN_EXAMPLE_QUICK", "1")
    monkeypatch.delenv("CNNTRAIN_DATA_ROOT", raising=False)
    work = tmp_path / "work"
    work.mkdir()

    def run(name: str | object) -> list[dict]:
        nb = nbformat.read(REPO / "examples" / name, as_version=4) if isinstance(name, str) else name
        NotebookClient(nb, kernel_name=KERNEL, timeout=300, resources={"metadata": {"path": str(work)}}).execute()
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                assert output["output_type"] != "error", "".join(output.get("traceback", []))
                assert output.get("name") != "stderr", output["text"]  # no warning for a reader to puzzle over
        return nb.cells

    return run


def texts(cells: list[dict]) -> str:
    """Everything the notebook printed or showed as text."""
    parts = []
    for cell in cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.extend(str(value) for key, value in output.get("data", {}).items() if key.startswith("text/"))
    return "\n".join(parts)


def kinds(cells: list[dict]) -> set[str]:
    return {key for cell in cells for output in cell.get("outputs", []) for key in output.get("data", {})}


@pytest.mark.slow
def test_quickstart_notebook(execute):
    cells = execute("quickstart.ipynb")
    shown = texts(cells)
    assert "test accuracy: " in shown and "%" in shown.split("test accuracy: ")[1][:8]
    assert "exported to model.pt: takes ['batch', 1, 28, 28]" in shown
    assert "image/png" in kinds(cells)  # the curves drawn in the notebook
    assert "data:image/png;base64," in shown  # the run's own pictures, inline in its display
    train_cell = next(cell for cell in cells if "cnntrain.train(" in cell.source)
    assert len(train_cell.outputs) < 25  # progress draws in place, not as a stream of lines
    shown_apart = [texts([{"outputs": [output]}]) for output in train_cell.outputs]
    tables = [text for text in shown_apart if "train/loss train/acc" in text]
    assert len(tables) == 1 and "\n       1 " in tables[0], tables  # the epoch rows: in the one updating output
    run_dir = Path(shown.split("run directory: ")[1].split()[0])
    assert "train/loss train/acc" in (run_dir / "train.log").read_text()  # the log is written, not shown


@pytest.mark.slow
def test_sweep_notebook(execute):
    cells = execute("sweep.ipynb")
    shown = texts(cells)
    assert "best: job " in shown and "optimizer.lr=0.001" in shown
    assert "evaluated again: test accuracy" in shown
    assert "image/png" in kinds(cells)


@pytest.mark.slow
def test_finetune_folder_notebook(execute):
    cells = execute("finetune-folder.ipynb")
    shown = texts(cells)
    assert "['circle', 'cross', 'square']" in shown
    assert "test accuracy: " in shown and "exported: " in shown
    assert "circle/" in shown and " -> " in shown


@pytest.mark.slow
def test_two_devices_from_a_notebook(execute, example_data):
    """The ranks are processes of their own, started from the kernel as the command starts them; torch's launcher
    sets signal handlers of its own, and the kernel's are back after the call (Ctrl-C still interrupts)."""
    from nbformat.v4 import new_code_cell, new_notebook

    cells = execute(
        new_notebook(
            cells=[
                new_code_cell(
                    "import signal, cnntrain\n"
                    "before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}\n"
                    "run = cnntrain.train('dataset=fashion', 'model=cnn2', 'device=cpu', "
                    f"data_root={str(example_data)!r},\n"
                    "                     **{'trainer.devices': 2, 'trainer.epochs': 1, 'report.plots': False})\n"
                    "print('world size', run.summary['parallel']['world_size'])\n"
                    "print('handlers kept', before == {s: signal.getsignal(s) for s in before})"
                )
            ]
        )
    )
    assert "world size 2" in texts(cells) and "handlers kept True" in texts(cells)


def test_ranks_started_from_a_notebook_draw_plain_lines(monkeypatch):
    """A rank's output may look like a terminal's (the kernel forces colour), but lands in the notebook as a
    stream: with the API's marker set it never starts a live display."""
    import io

    from rich.console import Console

    from cnntrain.reporting.console import PLAIN_PROGRESS_ENV, Reporter

    reporter = Reporter(console=Console(file=io.StringIO(), force_terminal=True))
    monkeypatch.delenv(PLAIN_PROGRESS_ENV, raising=False)
    assert reporter.epochs(3, progress=True).live_mode
    monkeypatch.setenv(PLAIN_PROGRESS_ENV, "1")
    assert not reporter.epochs(3, progress=True).live_mode
