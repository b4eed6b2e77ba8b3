"""The schema: every shipped config composes and validates; bad values are named in one sentence."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from cnntrain.config.compose import group_options
from cnntrain.config.validate import validate
from cnntrain.errors import ConfigError

from helpers import compose_config


@pytest.mark.parametrize("group", ["dataset", "model", "optimizer", "scheduler"])
def test_every_shipped_option_validates(group):
    options = group_options(group)
    assert len(options) >= 2
    for option in options:
        cfg = compose_config(f"{group}={option}")
        generic = group == "model" and option in ("torchvision", "timm")  # named after the architecture they build
        assert cfg[group].name == (cfg.model.arch if generic else option)


def test_required_options_exist():
    assert set(group_options("model")) >= {"lenet", "cnn2", "cnn3-deep", "cnn3", "fashion-cnn3", "leaky-cnn3"}
    assert set(group_options("optimizer")) >= {"adam", "adamw", "sgd", "rmsprop"}
    assert set(group_options("scheduler")) >= {"none", "plateau", "step", "cosine", "onecycle"}
    assert set(group_options("dataset")) >= {"mnist", "fashion"}


def test_validated_config_is_typed_and_closed():
    cfg = compose_config("optimizer.lr=3e-4", "trainer.epochs=7")
    assert cfg.optimizer.lr == pytest.approx(3e-4) and cfg.trainer.epochs == 7
    assert isinstance(cfg.trainer.epochs, int)
    with pytest.raises(Exception):  # noqa: B017 - OmegaConf's error type is not the point here
        cfg.trainer.not_a_key = 1


def test_interpolations_resolve():
    cfg = compose_config("dataset=fashion", "data_root=/somewhere")
    assert cfg.dataset.root == "/somewhere"
    assert OmegaConf.to_container(cfg.model.layers, resolve=True)[-1] == {"linear": 10}


def test_data_root_comes_from_env(monkeypatch):
    monkeypatch.setenv("CNNTRAIN_DATA_ROOT", "/from/env")
    assert compose_config().dataset.root == "/from/env"


def _validate_with(**changes):
    cfg = compose_config()
    raw = OmegaConf.create(OmegaConf.to_container(cfg))
    for key, value in changes.items():
        OmegaConf.update(raw, key.replace("__", "."), value, force_add=True)
    return validate(raw)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"optimizer__momentum": 0.9}, "unknown config key 'optimizer.momentum'"),
        ({"trainer__epochz": 3}, "unknown config key 'trainer.epochz' (did you mean 'trainer.epochs'?)"),
        ({"optimizer__lr": "fast"}, "optimizer.lr=fast: expected a number"),
        ({"trainer__early_stopping__enabled": "maybe"}, "expected true or false"),
        ({"trainer__eval_batch_size": 0}, "trainer.eval_batch_size=0: must be > 0"),
        ({"trainer__label_smoothing": 1.0}, "trainer.label_smoothing=1.0: must be in [0, 1)"),
        ({"trainer__loss": "mse"}, "trainer.loss=mse: expected one of auto, cross_entropy, nll"),
        ({"trainer__early_stopping__mode": "up"}, "trainer.early_stopping.mode=up: expected one of min, max"),
        ({"trainer__tta": "mirror"}, "trainer.tta=mirror: expected one of none, hflip"),
        ({"trainer__early_stopping__patience": -1}, "must be >= 0"),
        ({"dataset__val_split": 0}, "dataset.val_split=0: a count must be >= 1"),
        ({"dataset__val_split": "half"}, "dataset.val_split=half"),
        ({"dataset__val_strategy": "balanced"}, "expected one of random, stratified"),
        ({"dataset__mean": [0.1, 0.2]}, "dataset.mean=[0.1, 0.2]: expected 1 value(s)"),
        ({"dataset__std": [0.0]}, "dataset.std=[0.0]: every value must be > 0"),
        ({"optimizer__name": "lion"}, "unknown optimizer 'lion'; available: adam, adamw, sgd, rmsprop"),
        ({"device": "cuda:x"}, "device=cuda:x"),
        ({"threads": 0}, "threads=0"),
    ],
)
def test_bad_values_are_named(changes, message):
    with pytest.raises(ConfigError) as info:
        _validate_with(**changes)
    assert message in str(info.value)


def test_val_split_accepts_a_count():
    cfg = compose_config("dataset.val_split=5000")
    assert cfg.dataset.val_split == 5000


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["scheduler=plateau", "scheduler.factor=1.5"], "scheduler.factor=1.5: must be in (0, 1)"),
        (["scheduler=plateau", "scheduler.monitor=val/f1"], "scheduler.monitor=val/f1"),
        (["scheduler=onecycle", "scheduler.pct_start=0"], "scheduler.pct_start=0.0: must be in (0, 1)"),
        (["scheduler=onecycle", "scheduler.max_lr=-1"], "scheduler.max_lr=-1"),
        (["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size=0: must be > 0"),
        (["scheduler=cosine", "scheduler.warmup_epochs=20"], "scheduler.warmup_epochs=20.0"),
    ],
)
def test_scheduler_values_are_checked(overrides, message):
    with pytest.raises(ConfigError) as info:
        compose_config(*overrides)
    assert message in str(info.value)


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_every_experiment_composes_through_the_normal_path(experiment):
    cfg = compose_config(f"experiment={experiment}")
    assert cfg.trainer.epochs >= 1 and cfg.model.name in group_options("model")


def test_speedrun_recipe_settings():
    cfg = compose_config("experiment=mnist-speedrun")
    assert (cfg.model.name, cfg.scheduler.name, cfg.trainer.epochs) == ("speedrun-cnn", "onecycle", 1)
    assert cfg.trainer.precision == "auto", "bf16 where the CPU has it natively: issue 33's measured choice"
    assert compose_config("experiment=mnist-speedrun", "trainer.epochs=2").trainer.epochs == 2, (
        "command-line overrides beat the recipe"
    )


def test_dropout_knob_reaches_the_layer_and_is_a_probability(synthetic_data_root):
    cfg = compose_config("model=lenet", "model.dropout=0.25", data_root=synthetic_data_root)
    assert cfg.model.layers[9] == {"dropout": 0.25}
    with pytest.raises(ConfigError, match=r"model.dropout=1.5: must be in \[0, 1\)"):
        compose_config("model=lenet", "model.dropout=1.5", data_root=synthetic_data_root)
