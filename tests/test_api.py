"""The Python API (cnntrain.train/sweep/load/compose, Run, Sweep) on real runs of tiny synthetic data.

The command's numbers are the reference: a `cnntrain` subprocess (a fresh process) runs the same overrides, and
the API's runs in this process, also after a failed and an interrupted call, must match it bit for bit.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import cnntrain
from cnntrain.config.compose import override_value
from cnntrain.errors import ConfigError, UserError

from helpers import REPO, cli_env, cnntrain_command

# Smaller than TINY_RUN's data: a run takes about two seconds here.
RUN = ("model=cnn2", "trainer.epochs=2", "trainer.batch_size=32", "report.plots=false", "trainer.progress=false")
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from synthetic_idx import write_idx_dataset

    root = tmp_path_factory.mktemp("api_data")
    write_idx_dataset(root, "MNIST", n_train=300, n_test=100, seed=3)
    return root


@pytest.fixture(scope="module")
def cli_run(small_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: `cnntrain RUN...` in a fresh process; its run directory."""
    cwd = tmp_path_factory.mktemp("cli")
    done = subprocess.run(
        [*cnntrain_command(), *RUN], cwd=cwd, env=cli_env(small_root), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return only_run(cwd)


@pytest.fixture
def api_cwd(tmp_path: Path, small_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNNTRAIN_DATA_ROOT", str(small_root))
    for key in ("CNNTRAIN_DEBUG", "HYDRA_FULL_ERROR"):
        monkeypatch.delenv(key, raising=False)
    return tmp_path


def only_run(cwd: Path) -> Path:
    runs = [p.parent for p in (cwd / "outputs").glob("*/*/summary.json")]
    assert len(runs) == 1, runs
    return runs[0]


def numbers(run_dir: Path) -> dict:
    """Everything a run measured, without the clock."""
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [{k: v for k, v in row.items() if k != "seconds"} for row in cnntrain.load(run_dir).metrics]
    return {
        "test": summary["test"],
        "test_last": summary["test_last"],
        "best": summary["best"],
        "epochs": rows,
        "confusion": summary["confusion_matrix"],
    }


def process_state() -> dict:
    return {
        "cwd": Path.cwd(),
        "argv": list(sys.argv),
        "argv_list": id(sys.argv),
        "signals": {s: signal.getsignal(s) for s in SIGNALS},
        "root_handlers": list(logging.getLogger().handlers),
        "root_level": logging.getLogger().level,
        "cnntrain_handlers": list(logging.getLogger("cnntrain").handlers),
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cudnn": (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark),
        "dtype": torch.get_default_dtype(),
        "hydra": hydra_initialized(),
        "env": dict(os.environ),
    }


def hydra_initialized() -> bool:
    from hydra.core.global_hydra import GlobalHydra

    return GlobalHydra.instance().is_initialized()


def test_import_is_light_and_names_are_exported():
    code = "import sys, cnntrain; print(sorted(m for m in ('torch', 'hydra', 'omegaconf') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    for name in ("train", "sweep", "load", "compose", "audit", "Run", "Sweep", "UserError"):
        assert name in dir(cnntrain) and getattr(cnntrain, name) is not None
    assert cnntrain.UserError is UserError
    with pytest.raises(AttributeError):
        cnntrain.trian  # noqa: B018


@pytest.mark.slow
def test_api_run_matches_the_command_and_keeps_its_layout(api_cwd, small_root, cli_run):
    run = cnntrain.train(
        *RUN[:1], **{"trainer.epochs": 2, "trainer.batch_size": 32, "report.plots": False, "trainer.progress": False}
    )
    assert run.dir == only_run(api_cwd)
    assert run.dir.parent.parent == api_cwd / "outputs"  # outputs/<date>/<time> of the working directory
    for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
        assert (run.dir / ".hydra" / name).is_file()
    assert numbers(run.dir) == numbers(cli_run)
    assert run.summary["status"] == "done" and len(run.metrics) == 2
    assert run.config.trainer.epochs == 2
    assert run.summary["command"] == [
        "cnntrain",
        "model=cnn2",
        "trainer.epochs=2",
        "trainer.batch_size=32",
        "report.plots=false",
        "trainer.progress=false",
    ]
    again = subprocess.run(
        [*cnntrain_command("cnntrain-reproduce", "cnntrain.commands.reproduce"), str(run.dir)],
        cwd=api_cwd,
        env=cli_env(small_root),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout + again.stderr  # the command runs it again: identical numbers


@pytest.mark.slow
def test_train_after_a_failed_and_an_interrupted_call_gives_the_fresh_numbers(
    api_cwd, small_root, cli_run, monkeypatch
):
    import cnntrain.training.loop as engine

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)  # set here: the run changes it, and must put it back
    logging.getLogger().addHandler(own := logging.NullHandler())
    signal.signal(signal.SIGUSR1, own_handler := (lambda *_: None))
    try:
        before = process_state()
        with pytest.raises(ConfigError) as failed:
            cnntrain.train(*RUN, "model=lenett")
        assert "unknown model 'lenett'" in str(failed.value) and process_state() == before

        real_train_epoch = engine.train_epoch

        def ctrl_c_in_epoch_two(*args, **kwargs):
            if args[7] == 2:  # the epoch argument: a real SIGINT to this process, as Ctrl-C sends
                signal.raise_signal(signal.SIGINT)
            return real_train_epoch(*args, **kwargs)

        monkeypatch.setattr(engine, "train_epoch", ctrl_c_in_epoch_two)
        with pytest.raises(KeyboardInterrupt) as stopped:
            cnntrain.train(*RUN)
        monkeypatch.setattr(engine, "train_epoch", real_train_epoch)
        assert isinstance(stopped.value, UserError) and "cnntrain resume=" in str(stopped.value)
        assert process_state() == before
        assert not list(api_cwd.glob("outputs/*/*/summary.json"))  # not finished: it is there to be resumed
        (interrupted,) = [path.parent for path in api_cwd.glob("outputs/*/*/.hydra")]

        run = cnntrain.train(*RUN)  # in its own directory, even when started in the same second as the last
        assert process_state() == before
        assert numbers(run.dir) == numbers(cli_run)
        assert signal.getsignal(signal.SIGUSR1) is own_handler and own in logging.getLogger().handlers
        resumed = subprocess.run(
            [*cnntrain_command(), f"resume={interrupted}"],
            cwd=api_cwd,
            env=cli_env(small_root),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert resumed.returncode == 0, resumed.stderr  # the command continues the API's interrupted run
        assert numbers(interrupted) == numbers(cli_run)
    finally:
        logging.getLogger().removeHandler(own)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)


@pytest.mark.slow
def test_resume_from_python(api_cwd, monkeypatch):
    import cnntrain.training.loop as engine

    real_train_epoch = engine.train_epoch

    def interrupt(*args, **kwargs):
        if args[7] == 2:
            raise KeyboardInterrupt
        return real_train_epoch(*args, **kwargs)

    monkeypatch.setattr(engine, "train_epoch", interrupt)
    with pytest.raises(cnntrain.UserError) as stopped:  # also a KeyboardInterrupt
        cnntrain.train(*RUN)
    monkeypatch.setattr(engine, "train_epoch", real_train_epoch)
    run_dir = next((api_cwd / "outputs").glob("*/*"))
    assert f"cnntrain resume={run_dir}" in str(stopped.value)
    stopped_run = cnntrain.load(run_dir)
    assert stopped_run.summary == {} and "no summary.json yet" in stopped_run._repr_html_()
    assert "running or stopped" in repr(stopped_run) and len(stopped_run.metrics) == 1
    run = cnntrain.train(resume=cnntrain.load(run_dir))
    assert run.dir == run_dir and [row["epoch"] for row in run.metrics] == [1, 2]


def test_errors_carry_the_commands_line(api_cwd, small_root):
    done = subprocess.run(
        [*cnntrain_command(), "model=lenett", "trainer.epochs=0"],
        cwd=api_cwd,
        env=cli_env(small_root),
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = done.stderr.strip()
    assert done.returncode == 2 and line.startswith("error: ")
    with pytest.raises(UserError) as caught:
        cnntrain.train("model=lenett", **{"trainer.epochs": 0})
    assert str(caught.value) == line.removeprefix("error: ")
    with pytest.raises(UserError) as caught:
        cnntrain.compose("model=lenett", **{"trainer.epochs": 0})
    assert str(caught.value) == line.removeprefix("error: ")
    assert not (api_cwd / "outputs").exists()


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda: cnntrain.train("-m", "model=cnn2"), "flags are for the command line"),
        (lambda: cnntrain.train(3), "is not a string"),
        (lambda: cnntrain.train(**{"trainer.epochs": object()}), "cannot be written as an override"),
        (lambda: cnntrain.train("model=cnn2,lenet"), "lists several values"),
        (lambda: cnntrain.compose(**{"trainer.epochs": -1}), "trainer.epochs"),
        (lambda: cnntrain.compose(**{"trainer.epoch": 3}), "did you mean 'trainer.epochs'"),
        (lambda: cnntrain.load("no/such/run"), "run directory not found"),
        (lambda: cnntrain.train(config_dir="no/such/folder"), "config_dir=no/such/folder: no such folder"),
    ],
)
def test_bad_calls_are_one_line_user_errors(api_cwd, call, fragment):
    with pytest.raises(UserError) as caught:
        call()
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert not (api_cwd / "outputs").exists()


def test_a_call_in_the_same_second_as_the_last_run_waits_for_its_own_directory(api_cwd):
    import time

    from cnntrain.api import _next_free_second

    taken = time.strftime("%Y-%m-%d/%H-%M-%S")
    (api_cwd / "outputs" / taken).mkdir(parents=True)
    _next_free_second(["model=cnn2"])
    assert time.strftime("%Y-%m-%d/%H-%M-%S") != taken
    assert not (api_cwd / "outputs" / time.strftime("%Y-%m-%d/%H-%M-%S")).exists()


def test_config_dir_adds_models_of_ones_own(api_cwd):
    mine = api_cwd / "my_configs" / "model"
    mine.mkdir(parents=True)
    (mine / "mine.yaml").write_text(
        (REPO / "configs" / "model" / "lenet.yaml").read_text().replace("name: lenet", "name: mine")
    )
    assert cnntrain.compose("model=mine", config_dir=api_cwd / "my_configs").model.name == "mine"
    with pytest.raises(UserError, match="unknown model 'mine'"):
        cnntrain.compose("model=mine")


def test_compose_takes_keywords_in_hydra_syntax(api_cwd):
    cfg = cnntrain.compose(
        "dataset=fashion",
        model="lenet",
        **{
            "trainer.epochs": 3,
            "optimizer.lr": 3e-4,
            "trainer.early_stopping.enabled": False,
            "threads": None,
            "dataset.augment": [{"random_crop": 4}, "hflip"],
            "data_root": api_cwd / "my data",
        },
    )
    assert (cfg.model.name, cfg.dataset.name, cfg.trainer.epochs, cfg.optimizer.lr) == ("lenet", "fashion", 3, 3e-4)
    assert cfg.trainer.early_stopping.enabled is False and cfg.threads is None
    assert cfg.data_root == str(api_cwd / "my data")
    assert len(cfg.dataset.augment) == 2
    assert override_value([1e-3, 3e-4], sweep=True) == "0.001,0.0003"
    assert override_value("a b") == "'a b'" and override_value("1e-3,3e-4") == "1e-3,3e-4"


@pytest.fixture(scope="module")
def api_run(small_root: Path, tmp_path_factory: pytest.TempPathFactory) -> cnntrain.Run:
    """One API run with its pictures, for the Run methods."""
    cwd = tmp_path_factory.mktemp("api_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        mp.setenv("CNNTRAIN_DATA_ROOT", str(small_root))
        return cnntrain.train(*RUN, "report.plots=true", "trainer.epochs=1")


@pytest.mark.slow
def test_run_model_predict_evaluate_export(api_run, tmp_path):

    run = cnntrain.load(str(api_run.dir))
    assert run.dir == api_run.dir and "oc.env" in str(run.config.data_root)  # read as data, not resolved
    images = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    model = run.model()
    assert not model.training and model.classes == run.summary["classes"]
    with torch.no_grad():
        from_uint8 = model(images)
        from_float = model(images.float() / 255)
    assert torch.allclose(from_uint8, from_float, atol=1e-5) and from_uint8.shape == (4, 10)
    top = run.predict(images, top_k=3)
    assert len(top) == 4 and len(top[0]) == 3
    assert top[0][0][0] == run.summary["classes"][int(from_uint8[0].argmax())]
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image.numpy()).save(paths[-1])
    assert [t[0][0] for t in run.predict(paths, top_k=1)] == [t[0][0] for t in top]
    assert run.predict(str(paths[0]))[0][0][0] == top[0][0][0]
    evaluated = run.evaluate(device="cpu")
    assert evaluated["test"]["acc"] == run.summary["test"]["acc"]
    assert (run.dir / "eval_summary.json").is_file()
    exported = run.export(format="torchscript", path=tmp_path / "m.pt")
    scripted = torch.jit.load(str(exported))
    assert torch.allclose(scripted(images.unsqueeze(1)), from_uint8, atol=1e-5)
    frame = run.metrics_frame()
    assert frame.index.name == "epoch" and list(frame["val/acc"]) == [row["val/acc"] for row in run.metrics]
    page = run._repr_html_()
    assert "data:image/png;base64," in page and "test accuracy" in page
    assert repr(run).startswith("Run(")


@pytest.mark.slow
@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda run: run.predict(torch.zeros(2, 3, 28, 28, dtype=torch.uint8)), "the model takes [N,1,28,28]"),
        (lambda run: run.predict(torch.full((1, 28, 28), 2.0)), "expected 0..1"),
        (lambda run: run.predict(["no/such.png"]), "no/such.png"),
        (lambda run: run.predict(torch.zeros(1, 28, 28), top_k=0), "top_k=0"),
        (lambda run: run.export(format="tflite"), "format='tflite'"),
        (lambda run: run.evaluate(**{"model.name": "x"}), "only dataset.KEY=VALUE and data_root=VALUE"),
        (lambda run: run.evaluate(batch_size=0), "batch_size=0"),
        (lambda run: run.model(checkpoint="middle"), "middle"),
        (lambda run: run.model(device="gpu"), "gpu"),
    ],
)
def test_run_methods_refuse_bad_input_in_one_line(api_run, call, fragment):
    with pytest.raises(UserError) as caught:
        call(api_run)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.slow
def test_sweep_jobs_table_and_best(api_cwd):
    before = process_state()
    sweep = cnntrain.sweep(*RUN, **{"trainer.epochs": 1, "optimizer.lr": [1e-3, 3e-3]})
    assert sweep.dir.parent.parent == api_cwd / "outputs" / "multirun"  # as the command puts it
    assert [run.dir.name for run in sweep.runs] == ["0", "1"]
    assert len(sweep.table) == 2 and {row["status"] for row in sweep.table} == {"done"}
    best = max(sweep.runs, key=lambda run: run.summary["best"]["value"])
    assert sweep.best.dir == best.dir == sweep.dir / str(sweep.table[0]["job"])
    assert "optimizer.lr=0.001" in sweep._repr_html_()
    assert process_state() == before  # Hydra's own entry point (argv, logging, its global state) left no trace
