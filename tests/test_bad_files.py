"""Damaged run files: a YAML, JSON or CSV file of a run directory that does not parse, a checkpoint that lacks
what a command needs or holds values of the wrong type, and a bad --batch-size. Each is one `error:` line
naming the file (and line), exit status 2, no traceback.

One tiny run is trained per module through the CLI; each case damages its own copy.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from cnntrain.commands import evaluate, export, predict, reproduce, train
from cnntrain.inference.load import load_run
from cnntrain.training.checkpoints import load_checkpoint, save_checkpoint
from cnntrain.training.run import load_resume_checkpoint

from helpers import TINY_RUN, assert_one_line_error, run_main


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, synthetic_data_root: Path) -> Path:
    """A finished one-epoch run made by `cnntrain`, with the .hydra/ files Hydra writes."""
    folder = tmp_path_factory.mktemp("finished")
    argv = [
        *TINY_RUN,
        "trainer.epochs=1",
        "trainer.progress=false",
        "report.plots=false",
        f"hydra.run.dir='{folder / 'run'}'",
    ]
    with pytest.MonkeyPatch.context() as patch:
        result = run_main(train.main, argv, folder, patch, CNNTRAIN_DATA_ROOT=str(synthetic_data_root))
    assert result.returncode == 0, result.stderr
    return folder / "run"


@pytest.fixture
def copy(finished: Path, tmp_path: Path) -> Path:
    """This test's own copy of the finished run."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


def replace_line(path: Path, number: int, change: Callable[[str], str]) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[number - 1] = change(lines[number - 1])
    path.write_text("".join(lines), encoding="utf-8")


def edit_checkpoint(run_dir: Path, name: str, edit: Callable[[dict[str, Any]], None]) -> None:
    path = run_dir / "checkpoints" / f"{name}.pt"
    payload = load_checkpoint(path)
    edit(payload)
    save_checkpoint(path, payload)


# ---- cnntrain-reproduce: .hydra/*.yaml, summary.json, metrics.csv ----

REPRODUCE_CASES = {
    "overrides-tab": (
        ".hydra/overrides.yaml",
        lambda p: replace_line(p, 2, lambda line: "\t" + line),
        ["overrides.yaml line 2: not valid YAML", "'\\t'", "restore it from a copy of the run"],
    ),
    "overrides-unclosed": (
        ".hydra/overrides.yaml",
        lambda p: p.write_text("- [model=cnn2\n- seed=1\n"),
        ["overrides.yaml line 3: not valid YAML"],
    ),
    "overrides-mapping": (
        ".hydra/overrides.yaml",
        lambda p: p.write_text("model: cnn2\n"),
        ["overrides.yaml: holds a mapping, not a list of KEY=VALUE overrides"],
    ),
    "overrides-item": (
        ".hydra/overrides.yaml",
        lambda p: p.write_text("- model=cnn2\n- {seed: 1}\n"),
        ["overrides.yaml: item 2 is a mapping"],
    ),
    "overrides-blank": (
        ".hydra/overrides.yaml",
        lambda p: p.write_text("\n"),
        ["overrides.yaml: holds nothing (null), not a list"],
    ),
    "overrides-binary": (
        ".hydra/overrides.yaml",
        lambda p: p.write_bytes(b"\xff\xfe- model=cnn2\n"),
        ["cannot read", "overrides.yaml", "utf-8"],
    ),
    "overrides-stale": (
        ".hydra/overrides.yaml",
        lambda p: p.write_text("- model=nosuchmodel\n"),
        ["overrides.yaml do not compose today", "nosuchmodel"],
    ),
    "config-syntax": (
        ".hydra/config.yaml",
        lambda p: p.write_text(p.read_text() + "seed: [1\n"),
        ["config.yaml line", "not valid YAML"],
    ),
    "config-list": (
        ".hydra/config.yaml",
        lambda p: p.write_text("- seed\n"),
        ["config.yaml holds a list, not the mapping of the run's config"],
    ),
    "config-missing": (".hydra/config.yaml", Path.unlink, ["config.yaml not found"]),
    "summary-comma": (
        "summary.json",
        lambda p: p.write_text('{\n  "status": "done"\n  "epochs_run": 1\n}\n'),
        ["summary.json line 3: not valid JSON (Expecting ',' delimiter)"],
    ),
    "summary-truncated": (
        "summary.json",
        lambda p: p.write_text(p.read_text()[:100]),
        ["summary.json line", "not valid JSON"],
    ),
    "summary-list": (
        "summary.json",
        lambda p: p.write_text("[1, 2]\n"),
        ["summary.json holds a list, not the JSON object a run writes"],
    ),
    "summary-versions": (
        "summary.json",
        lambda p: p.write_text('{"versions": "2.3"}'),
        ["summary.json: 'versions' is a string"],
    ),
    "metrics-column": (
        "metrics.csv",
        lambda p: replace_line(p, 1, lambda line: line.replace(",val/acc", "")),
        ["metrics.csv lacks the column val/acc"],
    ),
    "metrics-torn-row": (
        "metrics.csv",
        lambda p: p.write_text(p.read_text().splitlines()[0] + "\n1,0.5,0.9\n"),
        ["metrics.csv line 2 has 3 cells, not the header's 7"],
    ),
    "metrics-missing": ("metrics.csv", Path.unlink, ["metrics.csv not found"]),
}


@pytest.mark.parametrize("case", REPRODUCE_CASES)
def test_reproduce_of_a_damaged_run_is_one_line(copy, tmp_path, monkeypatch, case):
    name, damage, fragments = REPRODUCE_CASES[case]
    damage(copy / name)
    result = run_main(reproduce.main, [str(copy), "--out", str(tmp_path / "again")], tmp_path, monkeypatch)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "again").exists(), "nothing may be re-run for a damaged run"


# ---- cnntrain-eval / -predict / -export: a checkpoint that lacks or mangles what load_run needs ----


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda payload: payload.pop(key)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(payload: dict[str, Any]) -> None:
        *parents, leaf = path.split("/")
        node = payload
        for part in parents:
            node = node[part]
        node[leaf] = value

    return edit


def _old_checkpoint_without_mean(payload: dict[str, Any]) -> None:
    payload.pop("data")
    payload["config"]["dataset"].pop("mean")


def _rename_weight(payload: dict[str, Any]) -> None:
    payload["model"]["conv.weight"] = payload["model"].pop("0.0.weight")


def _wrong_shape(payload: dict[str, Any]) -> None:
    payload["model"]["0.0.weight"] = torch.zeros(1, 2, 3)


LOAD_RUN_CASES = {
    "no-model": ("eval", _drop("model"), ["best.pt lacks 'model'"]),
    "model-list": ("predict", _set("model", [1, 2]), ["best.pt: its 'model' is a list"]),
    "config-list": ("export", _set("config", ["model=cnn2"]), ["best.pt: its 'config' is a list, not the mapping"]),
    "config-invalid": (
        "eval",
        _set("config/trainer/epochs", "many"),
        ["its 'config' is not valid today (trainer.epochs=many: expected a whole number)"],
    ),
    "config-no-layers": ("eval", lambda p: p["config"]["model"].pop("layers"), ["has no model.layers list"]),
    "layers-do-not-build": (
        "predict",
        _set("config/model/layers", ["nosuchlayer"]),
        ["best.pt: the model its config describes does not build", "nosuchlayer"],
    ),
    "no-data-no-mean": (
        "export",
        _old_checkpoint_without_mean,
        ["best.pt: its config's dataset (it holds no 'data') lacks mean"],
    ),
    "data-shape": ("eval", _set("data/input_shape", [28, 28]), ["its 'data' has input_shape [28, 28]"]),
    "data-mean": ("predict", _set("data/mean", [0.1, 0.2, 0.3]), ["its 'data' has 3 mean values for 1 channel;"]),
    "data-string": ("export", _set("data", "mnist"), ["its 'data' is a string"]),
    "weights-renamed": (
        "eval",
        _rename_weight,
        ["weights do not fit the model its config builds", "missing 0.0.weight", "unexpected conv.weight"],
    ),
    "weights-shape": ("predict", _wrong_shape, ["shape 0.0.weight is [1, 2, 3] in the file"]),
    "epoch-string": ("export", _set("epoch", "one"), ["best.pt: its 'epoch' is a string"]),
}
COMMANDS = {
    "eval": (evaluate.main, ["--device", "cpu"]),
    "predict": (predict.main, ["image.png"]),
    "export": (export.main, ["--format", "torchscript"]),
}


@pytest.mark.parametrize("case", LOAD_RUN_CASES)
def test_eval_predict_export_of_a_damaged_checkpoint_is_one_line(copy, tmp_path, monkeypatch, case):
    command, edit, fragments = LOAD_RUN_CASES[case]
    edit_checkpoint(copy, "best", edit)
    main, extra = COMMANDS[command]
    result = run_main(main, [str(copy), *extra], tmp_path, monkeypatch)
    assert_one_line_error(result, str(copy / "checkpoints" / "best.pt"), *fragments)
    assert not (copy / "export").exists() and not (copy / "eval_summary.json").exists()


@pytest.mark.parametrize("size", ["0", "-3"])
def test_eval_refuses_a_batch_size_below_one(finished, tmp_path, monkeypatch, size):
    result = run_main(evaluate.main, [str(finished), "--batch-size", size], tmp_path, monkeypatch)
    assert_one_line_error(result, f"--batch-size={size}: must be >= 1")


# ---- cnntrain resume=RUN_DIR: last.pt values of the wrong type ----

RESUME_CASES = {
    "config-list": (_set("config", ["model=cnn2"]), ["its 'config' is a list, not a mapping"]),
    "config-invalid": (
        _set("config/trainer/epochs", "many"),
        ["its 'config' is not valid today (trainer.epochs=many: expected a whole number)"],
    ),
    "history-mapping": (_set("history", {"epoch": 1}), ["its 'history' is a mapping, not a list"]),
    "history-row": (lambda p: p["history"][0].pop("seconds"), ["row 1 of its 'history' lacks a number for seconds"]),
    "epoch-string": (_set("epoch", "1"), ["its 'epoch' is a string, not a whole number"]),
    "epoch-zero": (_set("epoch", 0), ["its 'epoch' is 0"]),
    "scheduler-list": (_set("scheduler", []), ["its 'scheduler' is a list, not a mapping or null"]),
    "best-unknown-key": (_set("best/patience", 3), ["its 'best' has unknown keys patience"]),
    "early-monitor": (_set("early_stopping/monitor", "val/f1"), ["its 'early_stopping' monitor is 'val/f1'"]),
    "rng-not-tensor": (_set("rng/torch", [1, 2, 3]), ["its 'rng' lacks a valid 'torch' random state"]),
    "optimizer-groups": (_set("optimizer/param_groups", {}), ["its 'optimizer' is not an optimizer state"]),
    "optimizer-size": (
        lambda p: p["optimizer"]["param_groups"][0]["params"].pop(),
        ["its 'optimizer' holds state for"],
    ),
    "config-interpolation": (_set("config/seed", "${nosuch}"), ["seed=${nosuch}: expected a whole number"]),
    "weights-shape": (_wrong_shape, ["its 'model' weights do not fit", "shape 0.0.weight"]),
}


@pytest.mark.parametrize("case", RESUME_CASES)
def test_resume_of_a_damaged_last_checkpoint_is_one_line(copy, tmp_path, monkeypatch, case):
    edit, fragments = RESUME_CASES[case]
    edit_checkpoint(copy, "last", edit)
    before = sorted(p.name for p in copy.rglob("*"))
    result = run_main(train.main, [f"resume={copy}"], tmp_path, monkeypatch)
    assert_one_line_error(result, str(copy / "checkpoints" / "last.pt"), *fragments)
    assert sorted(p.name for p in copy.rglob("*")) == before, "a refused resume must not touch the run"


def test_an_undamaged_run_passes_every_check(finished):
    """The checks refuse damaged files only: the run's own checkpoints load for a resume and for inference."""
    assert load_resume_checkpoint(finished)["epoch"] == 1
    assert load_run(finished).epoch == 1
    assert reproduce.saved_command(finished)[: len(TINY_RUN)] == list(TINY_RUN)
