"""Property-based fuzzing of what cnntrain reads back from run directories and checkpoints.

The promise: whatever a saved .hydra/*.yaml file or a checkpoint's config holds, reading it either works or is
a UserError with a one-line message, quickly; never a traceback or a hang, never a resolved secret, never a
replayed hydra setting or flag. Examples are few and derandomized, so this stays a few seconds.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from cnntrain.commands.compare import read_run
from cnntrain.commands.entry import one_line
from cnntrain.commands.reproduce import replayed_overrides
from cnntrain.config.names import EPOCH_COLUMNS
from cnntrain.config.saved import read_saved_yaml
from cnntrain.errors import UserError
from cnntrain.training.checkpoints import load_checkpoint, save_checkpoint
from cnntrain.training.saved_run import saved_config

from helpers import TINY_RUN, compose_config

SECRET_ENV = "CNNTRAIN_FUZZ_SECRET"
SECRET = "fuzz-s3cr3t-91b2"
SECONDS = 20  # per example: a hang fails; the budgets refuse a bomb in well under a second on an idle machine
FRAGMENTS = [
    "- ",
    "a: ",
    "b:\n  ",
    "&x ",
    "*x",
    "<<: *x\n",
    "${oc.env:" + SECRET_ENV + "}",
    "${",
    "}",
    "[",
    "]",
    "{",
    "'",
    '"',
    "\n",
    "  ",
    "\t",
    "!!python/object/apply:os.system ['true']",
    "!!binary aGk=",
    "? ",
    ": ",
    "# c\n",
    "---\n",
    "%YAML 1.1\n",
    "model=cnn2",
    "seed=3",
    "+hydra.callbacks.x._target_=os.system",
    "hydra.output_subdir=/tmp",
    "++hydra.job.env_set.A=1",
    "~hydra.verbose",
    "--config-dir=/tmp",
    "model.layers=[{_target_: os.system}]",
    "logger=[csv,wandb]",
    "optimizer.lr=${oc.decode:'1'}",
    "\x1b[31m",
    "[/bold]",
    "\u202e",
    "<script>",
    "1e3",
    "null",
    "~",
    ",",
    "=",
    "\x00",
]
yaml_texts = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=30).map("".join)


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def works_or_one_line(call: Any) -> Any:
    """The call's result, or None when it raised a UserError whose message is one non-empty line; within SECONDS."""
    started = time.perf_counter()
    try:
        return call()
    except UserError as err:
        message = one_line(str(err))
        assert message.strip() and "\n" not in message and "\x1b" not in message
        return None
    finally:
        assert time.perf_counter() - started < SECONDS


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The files of a run directory the readers need besides the fuzzed one."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- model=cnn2\n")
    (tmp_path / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (tmp_path / "metrics.csv").write_text(",".join(EPOCH_COLUMNS) + "\n" + ",".join("1" for _ in EPOCH_COLUMNS) + "\n")
    return tmp_path


@fuzz(40)
@given(text=yaml_texts)
def test_saved_overrides_are_replayed_checked_or_refused_in_one_line(run_dir, text):
    (run_dir / ".hydra" / "overrides.yaml").write_text(text, encoding="utf-8")
    result = works_or_one_line(lambda: replayed_overrides(run_dir))
    if result is not None:
        replayed, left_out = result
        for override in replayed:
            assert not override.lstrip("+~").startswith("hydra") and not override.startswith("-")
            assert "${oc." not in override and "_target_" not in override


@fuzz(40)
@given(text=yaml_texts)
def test_a_saved_config_yaml_is_read_as_data_or_refused_in_one_line(run_dir, text):
    (run_dir / ".hydra" / "config.yaml").write_text(text, encoding="utf-8")
    run = works_or_one_line(lambda: read_run(run_dir, "run"))
    if run is not None:
        assert SECRET not in repr(run.config)  # read as written, never resolved


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.sampled_from(FRAGMENTS)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=10,
)
SUMMARY_KEYS = [
    "model",
    "dataset",
    "classes",
    "status",
    "best",
    "test",
    "test_last",
    "per_class_accuracy",
    "confusion_matrix",
    "analysis",
    "versions",
    "git",
    "command",
    "model_summary",
    "params",
    "timing",
    "final_epoch",
    "epochs_run",
    "platform",
    "deterministic",
    "device",
    "threads",
    "train_seconds",
]


@fuzz(40)
@given(summary=st.dictionaries(st.sampled_from(SUMMARY_KEYS), json_values, max_size=8))
def test_a_saved_summary_makes_a_page_and_a_comparison_or_one_line(run_dir, summary):
    """summary.json as cnntrain-report and cnntrain-compare read it: any JSON gives a page (text escaped) and a
    table row, or a one-line error."""
    from cnntrain.commands.compare import compare_rows
    from cnntrain.reporting.page import run_page

    (run_dir / "summary.json").write_text(json.dumps(summary))
    page = works_or_one_line(lambda: run_page(run_dir))
    assert page is None or ("\x1b" not in page and "<script" not in page)
    works_or_one_line(lambda: compare_rows([read_run(run_dir, "run")], []))


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9)
    )
    path = tmp_path / "config.yaml"
    path.write_text(bomb)
    assert len(bomb) < 600
    started = time.perf_counter()
    with pytest.raises(UserError, match="anchor or alias"):
        read_saved_yaml(path)
    assert time.perf_counter() - started < 1


# ---- checkpoints' configs ----


@pytest.fixture(scope="module")
def base_config() -> dict[str, Any]:
    return OmegaConf.to_container(compose_config(*TINY_RUN), resolve=False) | {"data_root": "data"}


def _shared(child: Any, times: int) -> list[Any]:
    return [child] * times  # one object, many references: what a pickle can hold


leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.sampled_from(
        [
            "${oc.env:" + SECRET_ENV + "}",
            "${oc.decode:'[1]'}",
            "${nosuch}",
            "\\${x}",
            "${dataset.num_classes}",
            "[/bold]",
            "\x1b[2J",
            "\u202e",
            "${oc.env:" + SECRET_ENV + ",${oc.env:" + SECRET_ENV + "}}",
        ]
    ),
    st.text(max_size=6),
    st.binary(max_size=4),
    st.just(torch.zeros(2)),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), inner, max_size=4),
        st.builds(_shared, inner, st.integers(2, 12)),
    ),
    max_leaves=20,
)
places = st.sampled_from(
    ["model.extra", "model.name", "model.layers", "dataset.classes", "trainer.epochs", "seed", "extra", "dataset"]
)


@fuzz(30)
@given(place=places, value=values, nesting=st.integers(0, 8))
def test_a_checkpoint_config_is_data_or_refused_in_one_line(base_config, tmp_path_factory, place, value, nesting):
    for _ in range(nesting):
        value = _shared(value, 10)  # shared-reference bombs of up to 10**8 values
    config = copy.deepcopy(base_config)
    node = config
    *parents, leaf = place.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint(path, {"config": config, "model": {}})

    def read() -> Any:
        loaded = saved_config(load_checkpoint(path), path)
        return OmegaConf.to_container(loaded, resolve=True)

    os.environ[SECRET_ENV] = SECRET
    try:
        result = works_or_one_line(read)
    finally:
        del os.environ[SECRET_ENV]
    if result is not None:
        assert SECRET not in repr(result)
