"""Every preset in configs/model builds the reference network: exact parameter count, MACs, forward, summary."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from rich.console import Console
from torch import nn

from cnntrain.models.builder import build_model, count_parameters, ends_with_log_softmax
from cnntrain.models.registry import fmt_shape, register, unregister
from cnntrain.reporting.console import format_macs
from cnntrain.reporting.tables import summary_table

MODEL_DIR = Path(__file__).resolve().parents[1] / "configs" / "model"

# Exact counts from docs reference-models.md (input 1x28x28, 10 classes).
EXPECTED_PARAMS = {
    "lenet": 431_080,
    "cnn2": 50_186,
    "cnn3-deep": 1_379_557,
    "cnn3": 1_147_338,
    "fashion-cnn3": 242_250,
    "leaky-cnn3": 249_994,
    "speedrun-cnn": 106_194,  # ours from here on, not reference models: the speed recipes' nets
    "fast-cnn3": 171_298,
}


def load(name: str):
    cfg = OmegaConf.load(MODEL_DIR / f"{name}.yaml")
    return OmegaConf.create({"model": cfg, "dataset": {"num_classes": 10}}).model  # as Hydra nests it


def test_every_preset_file_is_covered():
    assert {p.stem for p in MODEL_DIR.glob("*.yaml")} >= set(EXPECTED_PARAMS)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_preset_matches_reference(name):
    cfg = load(name)
    assert cfg.name == name and cfg.description
    assert MODEL_DIR.joinpath(f"{name}.yaml").read_text().startswith("# ")
    model, rows = build_model(cfg.layers, (1, 28, 28), cfg.name)
    assert count_parameters(model) == EXPECTED_PARAMS[name]
    assert sum(r.params for r in rows) == EXPECTED_PARAMS[name]
    assert len(model) == len(cfg.layers) == len(rows)
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_preset_builds_for_3x32x32(name):
    _, rows = build_model(load(name).layers, (3, 32, 32), name)
    assert rows[-1].output_shape == (10,)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_log_softmax_only_in_leaky_cnn3(name):
    assert ends_with_log_softmax(load(name).layers) is (name == "leaky-cnn3")


def test_no_preset_states_input_sizes():
    for path in MODEL_DIR.glob("*.yaml"):
        text = path.read_text()
        assert "in_channels" not in text and "in_features" not in text, path.name


@pytest.mark.parametrize("name", ["lenet", "cnn3"])
def test_summary_table_renders(name):
    cfg = load(name)
    _, rows = build_model(cfg.layers, (1, 28, 28), cfg.name)
    console = Console(record=True, width=120)
    console.print(summary_table(rows, cfg.name, (1, 28, 28)))
    text = console.export_text()
    assert f"{EXPECTED_PARAMS[name]:,}" in text and "total" in text
    assert "output shape" in text and "1x28x28" in text and "MACs" in text
    assert format_macs(sum(r.macs for r in rows)) in text
    for row in rows:
        assert row.name in text
    if name == "cnn3":
        assert "Conv(32,k3,p1) BN ReLU Drop2d(0.3) MaxPool(2)" in text


def test_lenet_macs_by_hand():
    _, rows = build_model(load("lenet").layers, (1, 28, 28), "lenet")
    convs = 20 * 1 * 25 * 24 * 24 + 50 * 20 * 25 * 8 * 8
    assert sum(r.macs for r in rows) == convs + 800 * 500 + 500 * 10 == 2_293_000


def test_speedrun_cnn_macs_match_its_comment():
    _, rows = build_model(load("speedrun-cnn").layers, (1, 28, 28), "speedrun-cnn")
    by_hand = 8 * 1 * 25 * 24 * 24 + 24 * 8 * 25 * 8 * 8 + 384 * 256 + 256 * 10
    assert sum(r.macs for r in rows) == by_hand == 523_264
    assert "about 0.52M multiply-adds per image" in MODEL_DIR.joinpath("speedrun-cnn.yaml").read_text()


def test_format_macs():
    assert [format_macs(n) for n in (0, 512, 1000, 5120, 523_264, 999_999, 2_293_000, 1_814_073_344)] == [
        "0",
        "512",
        "1K",
        "5.12K",
        "523K",
        "1M",
        "2.29M",
        "1.81G",
    ]


def test_summary_table_shows_macs_and_indented_blocks():
    class Two(nn.Sequential):
        def summary_blocks(self):
            return [("features", self[0]), ("classifier", self[1])]

    register("test_two")(lambda in_shape: Two(nn.Flatten(), nn.Linear(784, 10)))
    try:
        _, rows = build_model(["test_two"], (1, 28, 28), "two")
    finally:
        unregister("test_two")
    console = Console(record=True, width=120)
    console.print(summary_table(rows, "two", (1, 28, 28)))
    lines = console.export_text().splitlines()
    header = next(line for line in lines if "params" in line)
    assert "MACs" in header
    first = next(i for i, line in enumerate(lines) if "test_two" in line)
    assert "1.1" in lines[first + 1] and "   features" in lines[first + 1] and "784" in lines[first + 1]
    assert "1.2" in lines[first + 2] and "   classifier" in lines[first + 2] and "7.84K" in lines[first + 2]
    total = next(line for line in lines if "total" in line)
    assert "7,850" in total and "7.84K" in total and "15,700" not in total, "blocks are not counted twice"


def test_a_narrow_console_folds_the_text_and_keeps_the_numbers_whole():
    """The model table at 56 columns: shapes, parameters and MACs are never cut; the details fold instead."""
    cfg = load("cnn3")
    _, rows = build_model(cfg.layers, (1, 28, 28), cfg.name)
    console = Console(record=True, width=56)
    console.print(summary_table(rows, cfg.name, (1, 28, 28)))
    text = console.export_text()
    assert "…" not in text
    for row in rows:
        assert f"{row.params:,}" in text and format_macs(row.macs) in text and fmt_shape(row.output_shape) in text
    assert f"{sum(r.params for r in rows):,}" in text


def test_output_to_a_pipe_is_wide_enough_for_the_model_table(monkeypatch):
    """Not a terminal (a CI log, `| tee`): PIPED_WIDTH columns, not rich's 80; COLUMNS still wins."""
    from cnntrain.reporting.console import PIPED_WIDTH, output_console

    monkeypatch.delenv("COLUMNS", raising=False)
    assert output_console().width == PIPED_WIDTH
    monkeypatch.setenv("COLUMNS", "90")
    assert output_console().width == 90
