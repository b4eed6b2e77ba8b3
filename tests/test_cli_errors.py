"""Every user mistake ends in one line on stderr, exit status 2, no traceback and no output folder."""

from __future__ import annotations

import pytest

from cnntrain.commands import train

from helpers import assert_one_line_error, repo_group_line, run_main

CASES = [
    (["model=lenett"], "unknown model 'lenett' (did you mean 'lenet'?); available: cnn2, cnn3, cnn3-deep"),
    (
        ["dataset=fashon"],
        "unknown dataset 'fashon' (did you mean 'fashion'?); available: cifar10, emnist, fashion, huggingface, "
        "imagefolder, kmnist, labels, mnist, webdataset",
    ),
    (["optimizer=adamm"], "unknown optimizer 'adamm' (did you mean 'adam'?); available: adam, adamw, rmsprop, sgd"),
    (["scheduler=cosin"], "unknown scheduler 'cosin' (did you mean 'cosine'?)"),
    (["trainer.epoch=3"], "unknown config key 'trainer.epoch' (did you mean 'trainer.epochs'?)"),
    (["+trainer.epoch=3"], "unknown config key 'trainer.epoch' (did you mean 'trainer.epochs'?)"),
    (["optimizer.lr=fast"], "optimizer.lr=fast: expected a number"),
    (["trainer.epochs=two"], "trainer.epochs=two: expected a whole number"),
    (["trainer.epochs=0"], "trainer.epochs=0: must be > 0"),
    (["~0"], "cannot parse override '~0'"),
    (["trainer.epochs=-1"], "trainer.epochs=-1: must be > 0"),
    (["trainer.batch_size=0"], "trainer.batch_size=0: must be > 0"),
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1: must be > 0"),
    (["dataset.val_split=1.5"], "dataset.val_split=1.5: a fraction must be in (0, 1)"),
    (["dataset.val_split=0.0"], "dataset.val_split=0.0: a fraction must be in (0, 1)"),
    (["trainer.checkpoint.monitor=val/f1"], "trainer.checkpoint.monitor=val/f1: expected one of train/loss"),
    (["device=tpu"], "device=tpu: expected one of auto, cpu, cuda, cuda:N, mps"),
    (["logger=wandbb"], "logger=wandbb: unknown logger 'wandbb' (did you mean 'wandb'?)"),
    (["dataset=imagefolder", "dataset.root=/no/such/folder"], "image folder /no/such/folder not found; expected"),
    (["model=lenet,cnn2"], "lists several values; add -m to run a sweep"),
    (["x=["], "cannot parse override 'x=['"),
    (["model.layers=[{conv3d: 8}]"], "model 'lenet', layer 1: unknown layer 'conv3d' (did you mean 'conv2d'?)"),
    (
        ["model.layers=[{conv2d: {out_channels: 4, kernel_size: 40}}]"],
        "model 'lenet', layer 1 (conv2d 4, k40): input is 1x28x28, smaller than the kernel",
    ),
    (
        ["model.layers=[{conv2d: {out_channels: 4, kernal_size: 3}}]"],
        "unknown argument 'kernal_size' (did you mean 'kernel_size'?)",
    ),
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_user_mistake_is_one_line_exit_2(tmp_path, monkeypatch, synthetic_data_root, args, expected):
    """In this process (the console script's own `main`, Hydra and the preflight included): a subprocess per case
    would spend its seconds importing torch; the cases below run as users run them."""
    result = run_main(train.main, args, tmp_path, monkeypatch, CNNTRAIN_DATA_ROOT=str(synthetic_data_root))
    assert_one_line_error(result, expected, cwd=tmp_path)


AS_USERS_RUN_THEM = [CASES[0], CASES[8], CASES[21]]  # Hydra's config groups, the validation, the model's build


@pytest.mark.parametrize(("args", "expected"), AS_USERS_RUN_THEM, ids=[" ".join(a) for a, _ in AS_USERS_RUN_THEM])
def test_user_mistake_from_the_console_script_is_one_line_exit_2(run_cli, tmp_path, args, expected):
    assert_one_line_error(run_cli(*args), expected, cwd=tmp_path)


def test_missing_data_names_folder_and_fix(run_cli, tmp_path):
    empty = tmp_path / "nodata"
    empty.mkdir()
    result = run_cli("dataset.download=false", data_root=empty)
    assert_one_line_error(result, f"MNIST not found under {empty / 'MNIST' / 'raw'}", cwd=tmp_path)
    assert "dataset.root" in result.stderr


def test_missing_data_with_failed_download(run_cli, tmp_path):
    empty = tmp_path / "nodata"
    empty.mkdir()
    result = run_cli("dataset=fashion", data_root=empty)
    assert_one_line_error(result, "FashionMNIST not found under", cwd=tmp_path)
    assert "download failed" in result.stderr


def test_unavailable_device(run_cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_one_line_error(run_cli("device=cuda"), "device=cuda: CUDA is not available on this machine", cwd=tmp_path)


def test_bad_sweep_value_is_caught_before_any_job(run_cli, tmp_path):
    result = run_cli("-m", "model=lenet,cnn2", "trainer.epochs=1,0")
    assert_one_line_error(result, "trainer.epochs=0: must be > 0", cwd=tmp_path)


def test_debug_env_shows_traceback(run_cli):
    result = run_cli("trainer.epochs=0", CNNTRAIN_DEBUG="1")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr


def test_help_lists_groups_and_does_not_run(run_cli, tmp_path):
    result = run_cli("--help")
    assert result.returncode == 0
    for text in (
        repo_group_line("model"),
        "optimizer: adam, adamw",
        "scheduler: cosine, none, onecycle, plateau, step",
        repo_group_line("dataset"),
    ):
        assert text in result.stdout
    assert not (tmp_path / "outputs").exists()


def test_fp16_on_a_cpu_machine(run_cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_one_line_error(run_cli("trainer.precision=fp16"), "trainer.precision=fp16 needs a CUDA device", cwd=tmp_path)


@pytest.mark.parametrize(("argv", "code"), [(["trainer.epochs=0"], 2), (["model=lenett"], 2), (["--help"], 0)])
def test_help_and_config_errors_do_not_import_torch(tmp_path, argv, code):
    """Start-up cost: help and bad overrides are answered before torch (seconds to import) is loaded."""
    import subprocess
    import sys

    script = (
        "import sys\nfrom cnntrain.commands.train import main\nsys.argv=['cnntrain', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    print('exit', e.code or 0, 'torch' in sys.modules)\n"
        "else:\n    print('exit', 0, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split()[-3:] == ["exit", str(code), "False"], out.stderr


def test_help_shows_the_config_with_overrides(run_cli):
    result = run_cli("model=cnn2", "optimizer.lr=0.123", "--help")
    assert result.returncode == 0, result.stderr
    assert "name: cnn2" in result.stdout and "lr: 0.123" in result.stdout


def test_diverging_run_is_one_line_exit_2(run_cli, tmp_path):
    result = run_cli(
        "model=cnn2",
        "trainer.epochs=1",
        "trainer.batch_size=64",
        "optimizer=sgd",
        "optimizer.lr=1e12",
        "hydra.run.dir=diverged",
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: training loss became ") and ", batch " in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
