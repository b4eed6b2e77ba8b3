"""Malicious saved runs, checkpoints and config files, over every command that reads them.

Each payload is harmless: where it would run code, the code is `trust_marker` (a module the test puts on the
path) which writes a marker file when imported or called; where it would leak, it names an environment
variable holding a made-up secret; where it would write elsewhere, it names a folder that must stay empty.
Every case asserts: no marker, the secret in no output and no file, no new file outside the run directory
and the folder the command was told to write, a one-line error with exit status 2 (or a clean success),
within a few seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from cnntrain.commands import compare, evaluate, export, lr_find, predict, report_page, reproduce, train
from cnntrain.reporting.console import Reporter
from cnntrain.reporting.tables import per_class_table
from cnntrain.training.checkpoints import load_checkpoint, save_checkpoint

from helpers import TINY_RUN, assert_one_line_error, run_main

SECRET_ENV = "CNNTRAIN_TRUST_SECRET"
SECRET = "s3cr3t-7f3a9c1e"
MARKER_ENV = "CNNTRAIN_TRUST_MARKER"
ENV_SECRET = "${oc.env:" + SECRET_ENV + "}"
NASTY_CLASS = "[/bold]\x1b[31mred\u202eevil<script>"
MARKER_MODULE = f'''import os, pathlib
pathlib.Path(os.environ["{MARKER_ENV}"]).write_text("imported")
def touch(*args, **kwargs):
    pathlib.Path(os.environ["{MARKER_ENV}"]).write_text("called")
'''
SECONDS = 15  # in this process, on a loaded two-core machine; each case takes one or two here
MAINS = {
    "reproduce": reproduce.main,
    "eval": evaluate.main,
    "predict": predict.main,
    "export": export.main,
    "compare": compare.main,
    "report": report_page.main,
    "train": train.main,
    "lr-find": lr_find.main,
}


@pytest.fixture(scope="module")
def synthetic_data_root(small_data_root: Path) -> Path:
    """The runs here are what hostile configs meet, whatever the data: they train on the small set."""
    return small_data_root


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, synthetic_data_root: Path) -> Path:
    """A finished one-epoch run made by `cnntrain`."""
    folder = tmp_path_factory.mktemp("trusted")
    argv = [*TINY_RUN, "trainer.epochs=1", "trainer.progress=false", f"hydra.run.dir='{folder / 'run'}'"]
    with pytest.MonkeyPatch.context() as patch:
        result = run_main(train.main, argv, folder, patch, CNNTRAIN_DATA_ROOT=str(synthetic_data_root))
    assert result.returncode == 0, result.stderr
    return folder / "run"


@dataclass
class Where:
    """The folders of one case: the run (a copy), what the command may write besides, what must stay empty."""

    tmp: Path
    run: Path

    @property
    def allowed(self) -> Path:
        return self.tmp / "allowed"

    @property
    def outside(self) -> Path:
        return self.tmp / "outside"

    @property
    def config_dir(self) -> Path:
        return self.tmp / "allowed" / "confs"


@dataclass
class Case:
    command: str
    edit: Callable[[Where], None]
    argv: Callable[[Where], list[str]]
    fragments: tuple[str, ...] = ()  # a one-line error naming each of these (unless ok)
    ok: bool = False


# ---- payloads ----


def write(relative: str, text: str) -> Callable[[Where], None]:
    return lambda where: _write(where.run / relative, text)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def overrides(*items: str) -> Callable[[Where], None]:
    """overrides.yaml holding the run's own overrides and these."""
    return lambda where: _write(
        where.run / ".hydra/overrides.yaml", "".join(f"- {_quoted(item, where)}\n" for item in (*TINY_RUN, *items))
    )


def _quoted(item: str, where: Where) -> str:
    return "'" + item.replace("OUTSIDE", str(where.outside)).replace("'", "''") + "'"


Change = Callable[[dict[str, Any], Where], None]


def checkpoint(change: Change, name: str = "best") -> Callable[[Where], None]:
    def edit(where: Where) -> None:
        path = where.run / "checkpoints" / f"{name}.pt"
        payload = load_checkpoint(path)
        change(payload, where)
        save_checkpoint(path, payload)

    return edit


def config_value(dotted: str, value: Any) -> Change:
    """Set a key of the checkpoint's config (a value "OUTSIDE" names the folder that must stay empty)."""

    def change(payload: dict[str, Any], where: Where) -> None:
        node = payload["config"]
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = str(where.outside) if value == "OUTSIDE" else value

    return change


def nasty_classes(payload: dict[str, Any], where: Where) -> None:
    """Every class named with markup, an escape sequence, a bidi override and HTML."""
    names = [f"{NASTY_CLASS}{number}" for number in range(len(payload["data"]["classes"]))]
    payload["data"]["classes"] = payload["config"]["dataset"]["classes"] = names


def shared_reference_bomb() -> list[Any]:
    """30 levels of one list shared 10 times: 10**30 values when walked, a few hundred bytes pickled."""
    bomb: list[Any] = [0] * 10
    for _ in range(30):
        bomb = [bomb] * 10
    return bomb


def deep(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {}
    for _ in range(levels):
        node = {"a": node}
    return node


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9)
)
CALLBACK = "hydra.callbacks.evil._target_=trust_marker.touch"
GLOBAL_CALLBACK = """# @package _global_
hydra:
  callbacks:
    evil:
      _target_: trust_marker.touch
model:
  name: mine
  layers: [flatten, {linear: 10}]
"""


def rename_class(where: Where, name: str) -> None:
    """Class '0' of summary.json renamed `name` wherever the file names it (a key or a value)."""

    def renamed(tree: Any) -> Any:
        if isinstance(tree, dict):
            return {name if key == "0" else key: renamed(value) for key, value in tree.items()}
        if isinstance(tree, list):
            return [renamed(item) for item in tree]
        return name if tree == "0" else tree

    path = where.run / "summary.json"
    path.write_text(json.dumps(renamed(json.loads(path.read_text()))))


def config_file(name: str, text: str) -> Callable[[Where], None]:
    return lambda where: _write(where.config_dir / "model" / f"{name}.yaml", text)


def also(*edits: Callable[[Where], None]) -> Callable[[Where], None]:
    def edit(where: Where) -> None:
        for each in edits:
            each(where)

    return edit


def second_run(where: Where) -> None:
    shutil.copytree(where.run, where.allowed / "run2")


def image(where: Where) -> None:
    where.allowed.mkdir(parents=True, exist_ok=True)
    Image.new("L", (28, 28), 128).save(where.allowed / "digit.png")


def run_arg(*rest: str) -> Callable[[Where], list[str]]:
    return lambda where: [str(where.run), *(r.replace("ALLOWED", str(where.allowed)) for r in rest)]


CASES = {
    # cnntrain-reproduce: .hydra/overrides.yaml and config.yaml
    "reproduce-callback": Case(
        "reproduce", overrides(f"+{CALLBACK}"), run_arg("--out", "ALLOWED/again"), ("hydra.callbacks",)
    ),
    "reproduce-callback-plusplus": Case(
        "reproduce", overrides(f"++{CALLBACK}"), run_arg("--out", "ALLOWED/again"), ("hydra.callbacks",)
    ),
    "reproduce-callback-group": Case(
        "reproduce", overrides("+hydra/callbacks=evil"), run_arg("--out", "ALLOWED/again"), ("hydra/callbacks",)
    ),
    "reproduce-target": Case(
        "reproduce",
        overrides("model.layers=[{_target_: trust_marker.touch}]"),
        run_arg("--out", "ALLOWED/again"),
        ("_target_",),
    ),
    "reproduce-env-secret": Case(
        "reproduce",
        overrides(f"optimizer.lr={ENV_SECRET}"),
        run_arg("--out", "ALLOWED/again"),
        ("resolver", "overrides.yaml"),
    ),
    "reproduce-decode": Case(
        "reproduce", overrides("seed=${oc.decode:'1'}"), run_arg("--out", "ALLOWED/again"), ("resolver",)
    ),
    "reproduce-flag-rerun": Case(
        "reproduce",
        overrides("--experimental-rerun=OUTSIDE/config.pickle"),
        run_arg("--out", "ALLOWED/again"),
        ("command-line flag",),
    ),
    "reproduce-flag-config-dir": Case(
        "reproduce", overrides("--config-dir=OUTSIDE"), run_arg("--out", "ALLOWED/again"), ("command-line flag",)
    ),
    "reproduce-unknown-key": Case(
        "reproduce", overrides("+evil=1"), run_arg("--out", "ALLOWED/again"), ("unknown config key 'evil'",)
    ),
    "reproduce-alias-bomb": Case(
        "reproduce", write(".hydra/overrides.yaml", ALIAS_BOMB), run_arg("--out", "ALLOWED/again"), ("anchor or alias",)
    ),
    "reproduce-config-alias-bomb": Case(
        "reproduce", write(".hydra/config.yaml", ALIAS_BOMB), run_arg("--out", "ALLOWED/again"), ("anchor or alias",)
    ),
    "reproduce-huge-overrides": Case(
        "reproduce",
        write(".hydra/overrides.yaml", "- seed=1\n" * 120_000),
        run_arg("--out", "ALLOWED/again"),
        ("larger than 1,000,000 bytes",),
    ),
    "reproduce-many-values": Case(
        "reproduce",
        write(".hydra/config.yaml", "- 1\n" * 30_000),
        run_arg("--out", "ALLOWED/again"),
        ("more than 20,000 values",),
    ),
    "reproduce-deep-overrides": Case(
        "reproduce",
        write(".hydra/overrides.yaml", "[" * 15_000 + "]" * 15_000),
        run_arg("--out", "ALLOWED/again"),
        ("overrides.yaml", "nesting depth"),
    ),
    "compare-deep-config": Case(
        "compare",
        write(".hydra/config.yaml", "a:\n" + "".join(" " * level + "- \n" for level in range(0, 400, 2))),
        run_arg("--out", "ALLOWED/compare.png"),
        ("config.yaml", "nested more than 64 levels"),
    ),
    # cnntrain-compare: config.yaml, summary.json
    "compare-alias-bomb": Case(
        "compare",
        write(".hydra/config.yaml", ALIAS_BOMB),
        run_arg("--out", "ALLOWED/compare.png"),
        ("anchor or alias",),
    ),
    "compare-markup-and-secret": Case(
        "compare",
        also(
            second_run,
            lambda where: _write(
                where.run / ".hydra/config.yaml",
                (where.run / ".hydra/config.yaml").read_text()
                + f"evil: '{ENV_SECRET}'\nname: {json.dumps(NASTY_CLASS)}\n",
            ),
        ),
        run_arg("ALLOWED/run2", "--out", "ALLOWED/compare.png", "--html", "ALLOWED/compare.html"),
        ok=True,
    ),
    "compare-math-in-legend": Case(
        "compare",
        also(
            second_run,
            lambda where: _write(
                where.run / ".hydra/config.yaml",
                (where.run / ".hydra/config.yaml").read_text() + "mathy: '$\\oops{$'\n",
            ),
        ),
        run_arg("ALLOWED/run2", "--out", "ALLOWED/compare.png"),
        ok=True,
    ),
    # cnntrain-report: summary.json and config.yaml shown in a page
    "report-markup-and-secret": Case(
        "report",
        also(
            lambda where: rename_class(where, NASTY_CLASS),
            lambda where: _write(
                where.run / ".hydra/config.yaml",
                (where.run / ".hydra/config.yaml").read_text() + f"evil: '{ENV_SECRET}'\n",
            ),
        ),
        run_arg(),
        ok=True,
    ),
    "report-deep-summary": Case("report", write("summary.json", "[" * 100_000), run_arg(), ("nested too deeply",)),
    "compare-deep-summary": Case(
        "compare", write("summary.json", "[" * 100_000), run_arg("--out", "ALLOWED/compare.png"), ("nested too deeply",)
    ),
    # cnntrain-eval / -predict / -export: the checkpoint's config and data
    "eval-secret-in-config": Case(
        "eval", checkpoint(config_value("model.name", ENV_SECRET)), run_arg("--device", "cpu"), ok=True
    ),
    "export-secret-in-config": Case(
        "export", checkpoint(config_value("model.name", ENV_SECRET)), run_arg("--format", "torchscript"), ok=True
    ),
    "export-cache-dir-elsewhere": Case(
        "export", checkpoint(config_value("dataset.cache_dir", "OUTSIDE")), run_arg("--format", "torchscript"), ok=True
    ),
    "predict-markup-classes": Case(
        "predict", also(image, checkpoint(nasty_classes)), run_arg("ALLOWED/digit.png", "--top-k", "10"), ok=True
    ),
    "predict-shared-bomb": Case(
        "predict",
        also(image, checkpoint(config_value("model.extra", shared_reference_bomb()))),
        run_arg("ALLOWED/digit.png"),
        ("best.pt", "more than 200,000 values"),
    ),
    "predict-deep-config": Case(
        "predict",
        also(image, checkpoint(config_value("model.extra", deep(200)))),
        run_arg("ALLOWED/digit.png"),
        ("best.pt", "nested more than"),
    ),
    "eval-callback-in-config": Case(
        "eval",
        checkpoint(config_value("hydra", {"callbacks": {"evil": {"_target_": "trust_marker.touch"}}})),
        run_arg("--device", "cpu"),
        ok=True,
    ),
    "export-object-in-config": Case(
        "export",
        checkpoint(config_value("model.extra", b"bytes")),
        run_arg("--format", "torchscript"),
        ("model.extra", "not a plain value"),
    ),
    # cnntrain resume=: the last checkpoint's config
    "resume-env-secret": Case(
        "train",
        checkpoint(config_value("trainer.epochs", ENV_SECRET), "last"),
        lambda where: [f"resume={where.run}"],
        ("trainer.epochs",),
    ),
    "resume-shared-bomb": Case(
        "train",
        checkpoint(config_value("model.extra", shared_reference_bomb()), "last"),
        lambda where: [f"resume={where.run}"],
        ("last.pt", "more than 200,000 values"),
    ),
    # cnntrain, cnntrain-lr-find: config files and overrides
    "train-global-callback": Case(
        "train",
        config_file("mine", GLOBAL_CALLBACK),
        lambda where: ["--config-dir", str(where.config_dir), "model=mine"],
        ("hydra.callbacks.evil",),
    ),
    "sweep-global-callback": Case(
        "train",
        config_file("mine", GLOBAL_CALLBACK),
        lambda where: ["-m", "--config-dir", str(where.config_dir), "model=mine", "seed=1,2"],
        ("hydra.callbacks.evil",),
    ),
    "train-target-in-group": Case(
        "train",
        config_file("tgt", "name: tgt\n_target_: trust_marker.touch\nlayers: [flatten, {linear: 10}]\n"),
        lambda where: ["--config-dir", str(where.config_dir), "model=tgt"],
        ("model._target_",),
    ),
    "train-callback-override": Case("train", lambda where: None, lambda where: [f"+{CALLBACK}"], ("hydra.callbacks",)),
    "sweep-callback-override": Case(
        "train", lambda where: None, lambda where: ["-m", f"+{CALLBACK}", "seed=1,2"], ("hydra.callbacks",)
    ),
    "train-experimental-rerun": Case(
        "train",
        lambda where: None,
        lambda where: ["--experimental-rerun", str(where.outside / "config.pickle")],
        ("--experimental-rerun",),
    ),
    "lr-find-callback": Case("lr-find", lambda where: None, lambda where: [f"+{CALLBACK}"], ("hydra.callbacks",)),
}


@pytest.mark.parametrize("name", CASES)
def test_a_malicious_input_runs_nothing_leaks_nothing_writes_nothing_elsewhere(
    name, finished, tmp_path, monkeypatch, synthetic_data_root
):
    case = CASES[name]
    where = Where(tmp_path, Path(shutil.copytree(finished, tmp_path / "run")))
    where.allowed.mkdir()
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "trust_marker.py").write_text(MARKER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "modules"))
    marker = tmp_path / "marker"
    case.edit(where)
    before = _files(tmp_path)
    started = time.perf_counter()
    result = run_main(
        MAINS[case.command],
        case.argv(where),
        where.allowed,
        monkeypatch,
        **{SECRET_ENV: SECRET, MARKER_ENV: str(marker), "CNNTRAIN_DATA_ROOT": str(synthetic_data_root)},
    )
    elapsed = time.perf_counter() - started
    if case.ok:
        assert result.returncode == 0, result.stderr
    else:
        assert_one_line_error(result, *case.fragments)
    assert elapsed < SECONDS, f"{name} took {elapsed:.1f} s"
    assert not marker.exists(), f"{name} ran the payload's code"
    assert not where.outside.exists() or not any(where.outside.iterdir()), f"{name} wrote outside"
    written = [
        path
        for path in _files(tmp_path) - before
        if not path.is_relative_to(where.run) and not path.is_relative_to(where.allowed)
    ]
    assert not written, f"{name} wrote {written}"
    for text in (result.stdout, result.stderr):
        assert SECRET not in text and "\x1b" not in text and "\u202e" not in text
    for path in _files(tmp_path):
        assert SECRET.encode() not in path.read_bytes(), f"the secret reached {path}"


def test_text_from_data_is_shown_escaped_in_tables_and_pages(finished, tmp_path, monkeypatch, synthetic_data_root):
    """Predict and compare print a class name and a config value with markup as written; the page escapes it."""
    where = Where(tmp_path, Path(shutil.copytree(finished, tmp_path / "run")))
    image(where)
    checkpoint(nasty_classes)(where)
    result = run_main(
        predict.main, [str(where.run), str(where.allowed / "digit.png"), "--top-k", "10"], tmp_path, monkeypatch
    )
    assert result.returncode == 0, result.stderr
    assert "[/bold]" in result.stdout and "\\x1b[31mred\\u202eevil" in result.stdout
    rename_class(where, "<script>alert(1)</script>\x1b")
    result = run_main(report_page.main, [str(where.run)], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    page = (where.run / "report.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;\\x1b" in page


def test_train_log_gets_class_names_escaped(tmp_path):
    """train.log mirrors the console (and is appended to on resume, with the checkpoint's class names)."""
    log = tmp_path / "train.log"
    reporter = Reporter(log)
    reporter.print(per_class_table([NASTY_CLASS, "b"], [0.5, 1.0], torch.tensor([[1, 1], [0, 2]])))
    reporter.close()
    text = log.read_text()
    assert "\x1b" not in text and "\u202e" not in text and "[/bold]\\x1b[31mred\\u202eevil<script>" in text


@pytest.mark.slow
def test_reproduce_replays_only_the_task_overrides(finished, tmp_path, monkeypatch, synthetic_data_root):
    """Hydra settings that would write elsewhere, set environment variables or add callbacks, and trackers, saved
    in overrides.yaml or hydra.yaml, are left out: the re-run is the run, in --out, and says what it left out."""
    where = Where(tmp_path, Path(shutil.copytree(finished, tmp_path / "run")))
    overrides(
        "trainer.epochs=1",
        "trainer.progress=false",
        "hydra.output_subdir=OUTSIDE",
        f"+hydra.job.env_set.LEAK={ENV_SECRET}".replace(ENV_SECRET, "x"),
        "logger=[csv,wandb]",
        "hydra.run.dir=OUTSIDE",
    )(where)
    hydra_yaml = where.run / ".hydra/hydra.yaml"
    hydra_yaml.write_text(
        hydra_yaml.read_text().replace(
            "  callbacks:\n", "  callbacks:\n    evil:\n      _target_: trust_marker.touch\n", 1
        )
    )
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "trust_marker.py").write_text(MARKER_MODULE)
    marker = tmp_path / "marker"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "modules"), os.environ.get("PYTHONPATH", "")]))
    result = run_main(
        reproduce.main,
        [str(where.run), "--out", str(tmp_path / "again"), "--no-compare"],
        tmp_path,
        monkeypatch,
        **{MARKER_ENV: str(marker), "CNNTRAIN_DATA_ROOT": str(synthetic_data_root)},
    )
    assert result.returncode == 0, result.stderr
    assert "not replayed" in result.stdout and "hydra.output_subdir" in result.stdout
    assert not marker.exists() and not where.outside.exists()
    assert (tmp_path / "again" / "summary.json").is_file() and (tmp_path / "again" / ".hydra").is_dir()


def _files(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file() and not path.is_symlink()}


@pytest.mark.parametrize(
    "text, shown",
    [
        ("[/bold]", "[/bold]"),
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
        ("line\nbreak\r\ttab", "line\\nbreak\\r\\ttab"),
        ("bell\x07 del\x7f c1\x9b", "bell\\x07 del\\x7f c1\\x9b"),
        ("abc\u202edcba \u2066x\u2069 \u200f", "abc\\u202edcba \\u2066x\\u2069 \\u200f"),
        ("naïve 日本 ✓", "naïve 日本 ✓"),
    ],
)
def test_text_from_data_is_shown_as_written_with_control_characters_escaped(text, shown):
    from rich.console import Console

    from cnntrain.reporting.text import html_text, markup, plain

    assert plain(text) == shown
    console = Console(record=True, width=200, color_system=None)
    console.print(markup(text))  # rich reads the markup and prints the text as written
    assert console.export_text().rstrip("\n") == shown
    assert html_text("<b>" + text) == "&lt;b&gt;" + shown.replace("&", "&amp;")
    assert plain("a\nb\tc", keep_lines=True) == "a\nb\tc"


def test_a_sweep_is_checked_with_the_config_dir_it_names(tmp_path, synthetic_data_root):
    """The preflight of a sweep composes its jobs with --config-dir, as Hydra will: a model file there is found
    (and checked: one that adds a callback is refused above, one that does not passes)."""
    from cnntrain.commands.preflight import preflight

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.yaml").write_text("name: mine\nlayers: [flatten, {linear: 10}]\n")
    checked = preflight(
        [f"data_root={synthetic_data_root}", "model=mine", "seed=1,2"], multirun=True, extra_dir=str(tmp_path)
    )
    assert [cfg.model.name for cfg in checked.configs] == ["mine", "mine"]
    assert [cfg.seed for cfg in checked.configs] == [1, 2]


@pytest.mark.parametrize("name", ["run-${oc.env:" + SECRET_ENV + "}", "it's", "back\\slash\\", "a\\${x}"])
def test_a_run_directory_name_is_never_resolved_into_another_path(tmp_path, monkeypatch, name):
    """A folder from an archive may be named `${oc.env:...}`: resume= and reproduce's re-run pass it to Hydra
    quoted, so the run continues in that folder, not in one the name resolves to."""
    from cnntrain.commands.train import resume_overrides
    from cnntrain.config.compose import compose_train

    monkeypatch.setenv(SECRET_ENV, SECRET)
    folder = tmp_path / name
    cfg = compose_train([*resume_overrides(folder), "hydra.mode=RUN"], hydra_config=True)
    assert cfg.resume == str(folder) and cfg.hydra.run.dir == str(folder)  # read resolved


@pytest.mark.slow
def test_a_resume_keeps_the_checkpoint_config_literal_in_every_output(tmp_path, monkeypatch, synthetic_data_root):
    """`${oc.env:...}` and markup in an interrupted run's last.pt (its model name) stay text through the resume:
    summary.json, train.log, metrics and the new checkpoints hold no secret, the log no escape byte."""
    from helpers import compose_config, run_stopped_in_epoch

    cfg = compose_config(*TINY_RUN, "trainer.progress=false", data_root=synthetic_data_root)
    run_dir = tmp_path / "run"
    run_stopped_in_epoch(cfg, run_dir, 2, monkeypatch)
    where = Where(tmp_path, run_dir)
    name = "[/bold]\x1b[31m" + ENV_SECRET
    checkpoint(config_value("model.name", name), "last")(where)
    before = _files(tmp_path)
    result = run_main(
        train.main,
        [f"resume={run_dir}"],
        tmp_path,
        monkeypatch,
        **{SECRET_ENV: SECRET, "CNNTRAIN_DATA_ROOT": str(synthetic_data_root)},
    )
    assert result.returncode == 0, result.stderr
    assert not [path for path in _files(tmp_path) - before if not path.is_relative_to(run_dir)]
    assert SECRET not in result.stdout + result.stderr
    for path in _files(tmp_path):
        assert SECRET.encode() not in path.read_bytes(), f"the secret reached {path}"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "done" and summary["model"] == name  # the text, as the file had it
    log = (run_dir / "train.log").read_text()
    assert "\x1b" not in log and "[/bold]\\x1b[31m" + ENV_SECRET in log
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["config"]["model"]["name"] == name
