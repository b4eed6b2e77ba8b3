"""cnntrain-bench and Run.benchmark() on a tiny finished run (the session's one_epoch_run, copied), the
recommendation's rules, the report section, every bad option; and the exporters failing for real on a layer
they cannot take: the dynamo ONNX exporter falling back to the legacy one, and torch.export naming the layer.

Every export and runtime is the real one (torch.export, onnxscript, ONNX Runtime); the layer that makes them fail
is a real module with a data-dependent branch, which torch.export cannot guard on and the legacy tracer records.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from cnntrain.commands import bench
from cnntrain.errors import ConfigError, UserError
from cnntrain.inference.bench_table import recommend
from cnntrain.inference.export import export_run
from cnntrain.inference.load import load_run
from cnntrain.reporting.bench_section import bench_section
from cnntrain.reporting.page import write_run_page
from cnntrain.reporting.run_dir import RunDir
from cnntrain.results import Run

from helpers import assert_one_line_error, run_main

needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("onnxscript") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="the onnx extra (onnx, onnxscript, onnxruntime) is not installed",
)


@pytest.fixture(scope="module")
def run_copy(one_epoch_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A writable copy of the session's one-epoch run (bench.json and report.html go into it)."""
    target = tmp_path_factory.mktemp("bench") / "run"
    shutil.copytree(one_epoch_run, target)
    return target


class Gate(nn.Module):
    """Passes its input through, after a branch on the data: torch.export cannot take it, a tracer can."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.abs().sum() >= 0:  # always true, but only known once the data is there
            return x
        return -x


def gated(run_dir: Path):
    """The run, loaded, with a Gate after its network (a layer a user might write)."""
    saved = load_run(run_dir)
    return dataclasses.replace(saved, model=nn.Sequential(saved.model, Gate()).eval())


@needs_onnx
def test_bench_table_json_recommendation_and_report(run_copy, tmp_path, monkeypatch, synthetic_data_root):
    argv = [str(run_copy), "--formats", "eager,onnx,onnx-int8", "--runs", "5", "--images", "300", "--threads", "1"]
    result = run_main(bench.main, argv, tmp_path, monkeypatch, CNNTRAIN_DATA_ROOT=str(synthetic_data_root))
    assert result.returncode == 0, result.stderr
    data = json.loads(RunDir(run_copy).bench_json.read_text())
    rows = {row["name"]: row for row in data["rows"]}
    assert list(rows) == ["eager", "onnx", "onnx-int8"] and data["images"] == 300 and data["metric"] == "acc"
    assert all(row["status"] == "ok" for row in rows.values())
    assert data["torch_threads"] == data["runtime_threads"] == 1 and rows["onnx"]["threads"] == "1"
    assert rows["eager"]["agreement"] == 100.0 and rows["eager"]["drop_pt"] == 0.0
    assert rows["onnx"]["agreement"] == 100.0 and abs(rows["onnx"]["metric"] - rows["eager"]["metric"]) < 1e-9
    assert rows["onnx"]["exporter"] == "dynamo" and rows["onnx-int8"]["precision"] == "int8"
    assert rows["onnx-int8"]["extra"]["int8"]["calibration_split"] == "train"
    for row in rows.values():
        assert 0 < row["p50_ms"] <= row["p95_ms"] and row["throughput"] > 0 and 0 <= row["ece"] <= 1
    assert rows["onnx"]["size_bytes"] > rows["onnx-int8"]["size_bytes"] > 0
    # the whole test split: the ECE is the one the run's own analysis computed on the same images
    summary = json.loads(RunDir(run_copy).summary_json.read_text())
    assert summary["sizes"]["test"] == 300
    assert rows["eager"]["ece"] == pytest.approx(summary["analysis"]["calibration"]["ece"], abs=1e-6)
    recommendation = data["recommendation"]
    assert recommendation["format"] in rows and recommendation["text"].startswith(f"ship {recommendation['format']}")
    assert "recommendation: ship" in result.stdout and "onnx-int8" in result.stdout
    assert f"wrote {RunDir(run_copy).bench_json}" in result.stdout
    page = write_run_page(run_copy).read_text()
    assert 'id="bench"' in page and "Which format to ship" in page and recommendation["text"] in page


def test_rows_not_measured_here_say_why_and_are_left_out_of_the_recommendation(
    run_copy, monkeypatch, synthetic_data_root
):
    """Formats the user did not name: eager bf16 on a CPU without bf16 arithmetic (an AVX2 machine's flags, as the
    provenance reads them) and OpenVINO without its package are rows marked skipped, each with its reason, in the
    returned figures and bench.json; the recommendation is among the measured rows."""
    import sys

    from cnntrain.inference import bench_timing
    from cnntrain.inference.bench import Options, bench_run

    monkeypatch.setattr(bench_timing, "cpu", lambda: {"capability": "AVX2", "isa_flags": ["avx", "avx2", "fma"]})
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if the openvino extra were not installed
    monkeypatch.setenv("CNNTRAIN_DATA_ROOT", str(synthetic_data_root))
    data = bench_run(run_copy, Options(formats=("eager", "eager-bf16", "openvino"), runs=5, images=100))
    rows = {row["name"]: row for row in data["rows"]}
    assert list(rows) == ["eager", "eager-bf16", "openvino"] and rows["eager"]["status"] == "ok"
    assert rows["eager-bf16"]["status"] == "skipped" and rows["eager-bf16"]["p50_ms"] is None
    assert "(AVX2) has no native bf16" in rows["eager-bf16"]["reason"]
    assert rows["openvino"]["status"] == "skipped" and rows["openvino"]["p50_ms"] is None
    assert rows["openvino"]["reason"] == "OpenVINO export needs openvino: pip install 'cnntrain[openvino]'"
    assert data["recommendation"]["format"] == "eager"
    assert json.loads(RunDir(run_copy).bench_json.read_text())["rows"] == data["rows"]


def test_recommendation_picks_the_fastest_within_budget_and_says_when_int8_is_slower():
    def row(name, p50, drop, tput=100.0):
        return {"name": name, "status": "ok", "p50_ms": p50, "drop_pt": drop, "throughput": tput, "metric": 90.0}

    rows = [
        row("eager", 1.0, 0.0, 100.0),
        row("onnx", 0.2, 0.0, 900.0),
        row("onnx-int8", 0.3, 0.1, 1200.0),  # slower at batch 1, faster at batch 32
        row("openvino", 0.5, 0.0, 500.0),
        row("openvino-int8", 0.1, 0.8, 2000.0),  # fastest, but over the budget
        {"name": "eager-bf16", "status": "skipped", "reason": "no bf16"},
    ]
    by_latency = recommend(rows, 0.5, "latency")
    assert by_latency["format"] == "onnx" and "5.0x eager float32" in by_latency["text"]
    assert any("onnx-int8 is slower than onnx float32" in note for note in by_latency["notes"])
    assert any("openvino-int8 is left out: 0.80 pt" in note for note in by_latency["notes"])
    assert recommend(rows, 0.5, "throughput")["format"] == "onnx-int8"
    assert recommend(rows, 1.0, "latency")["format"] == "openvino-int8"  # a wider budget lets it in
    assert recommend(rows[4:], 0.5, "latency")["format"] is None


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["--runs", "0"], ("--runs=0", "from 1 to")),
        (["--runs", "1000001"], ("--runs=1000001", "from 1 to")),
        (["--runs", "many"], ("--runs", "invalid int value")),
        (["--images", "0"], ("--images=0", "from 1 to")),
        (["--formats", "onnx,tflite"], ("'tflite' is not a format", "onnx-int8")),
        (["--formats", ""], ("--formats=''", "no format named")),
        (["--accuracy-budget", "-1"], ("--accuracy-budget=-1.0", "from 0 to 100")),
        (["--accuracy-budget", "nan"], ("--accuracy-budget=nan", "from 0 to 100")),
        (["--optimize", "size"], ("--optimize", "invalid choice")),
        (["--threads", "0"], ("--threads=0", "from 1 to")),
        (["--threads", "two"], ("--threads", "invalid int value")),
    ],
)
def test_bad_bench_options_are_one_line(tmp_path, monkeypatch, argv, fragments):
    result = run_main(bench.main, [str(tmp_path), *argv], tmp_path, monkeypatch)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "bench.json").exists()


def test_bench_of_a_folder_without_a_run_is_one_line(tmp_path, monkeypatch):
    result = run_main(bench.main, [str(tmp_path), "--formats", "eager"], tmp_path, monkeypatch)
    assert_one_line_error(result, str(tmp_path))


def test_a_folder_where_bench_json_goes_is_one_line_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "bench.json").mkdir()
    result = run_main(bench.main, [str(tmp_path), "--formats", "eager"], tmp_path, monkeypatch)
    assert_one_line_error(result, "bench.json is a folder")


def test_run_benchmark_returns_what_it_writes(one_epoch_run, tmp_path, synthetic_data_root):
    shutil.copytree(one_epoch_run, tmp_path / "run")
    result = Run(tmp_path / "run").benchmark(["eager"], runs=2, images=16, data_root=str(synthetic_data_root))
    assert json.loads(RunDir(tmp_path / "run").bench_json.read_text()) == result
    assert result["images"] == 16 and result["latency_runs"] == 2 and result["accuracy_budget_pt"] == 0.5
    assert result["recommendation"]["format"] == "eager" and [row["name"] for row in result["rows"]] == ["eager"]


def test_run_benchmark_refuses_bad_values_before_loading(run_copy):
    run = Run(run_copy)
    with pytest.raises(ConfigError, match="--runs=0"):
        run.benchmark(runs=0)
    with pytest.raises(ConfigError, match="'bogus' is not a format"):
        run.benchmark("eager,bogus")
    with pytest.raises(ConfigError, match="--optimize='fast'"):
        run.benchmark(["eager"], optimize="fast")


def test_report_section_reads_bench_json_as_data(tmp_path):
    paths = RunDir(tmp_path)
    assert bench_section(paths) is None
    paths.bench_json.write_text('{"rows": [{"name": "<b>x</b>", "status": "ok", "p50_ms": "fast"}, 7], "epoch": []}')
    _, _, html = bench_section(paths)
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html and "no recommendation" in html
    paths.bench_json.write_text("{torn")
    _, _, html = bench_section(paths)
    assert "bench.json cannot be read" in html


@needs_onnx
def test_dynamo_failure_falls_back_to_the_legacy_exporter_in_one_line(run_copy, tmp_path, synthetic_data_root):
    lines: list[str] = []
    path = tmp_path / "model.onnx"
    export_run(gated(run_copy), "onnx", path, say=lines.append, overrides=[f"data_root={synthetic_data_root}"])
    fallback = [line for line in lines if "legacy" in line]
    assert len(fallback) == 1 and "the dynamo ONNX exporter cannot take layer 1 (Gate) of this model" in fallback[0]
    assert "\n" not in fallback[0] and "\x1b" not in fallback[0]  # one line, no terminal colour codes
    contract = json.loads((tmp_path / "model.onnx.json").read_text())
    assert contract["exporter"] == "legacy" and contract["check"]["top1_agreement"] == 1.0


def test_an_export_that_fails_names_the_layer_and_the_format(run_copy, tmp_path, synthetic_data_root):
    with pytest.raises(UserError) as caught:
        export_run(gated(run_copy), "pt2", tmp_path / "model.pt2", overrides=[f"data_root={synthetic_data_root}"])
    message = str(caught.value)
    assert "the pt2 export cannot take layer 1 (Gate) of model 'cnn2'" in message and "\n" not in message
    assert not list(tmp_path.iterdir())  # nothing half-written
