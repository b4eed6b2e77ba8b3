"""What the tests share: tiny run settings, composing a config the way the CLI does, running the commands
(in-process through `main`, or as the installed console scripts), and the one-line-error assertion."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

# Small enough to finish in seconds on two CPU cores, big enough to learn the synthetic classes. No pictures:
# drawing them costs about a second a run; the tests of the pictures ask for them (report.plots=true).
TINY_RUN = ("model=cnn2", "trainer.epochs=2", "trainer.batch_size=64", "report.plots=false")
REPO = Path(__file__).resolve().parents[1]


def compose_config(*overrides: str, data_root: Path | None = None):
    """The validated config a `cnntrain OVERRIDES` command would run, composed by the CLI's own code."""
    from cnntrain.config.compose import compose_train
    from cnntrain.config.validate import validate

    extra = [f"data_root={data_root}"] if data_root is not None else []
    return validate(compose_train([*extra, *overrides]))


def dataset_section(keys: dict):
    """A dataset section as the data functions get it, complete: `keys` over the schema's defaults (a validated
    config's dataset section is merged onto the same schema). num_workers is 0 unless given: these tests decode
    in the test process, as they always have (the schema's default starts worker processes)."""
    from omegaconf import OmegaConf

    from cnntrain.config.schema import DatasetConfig

    return OmegaConf.merge(OmegaConf.structured(DatasetConfig), {"num_workers": 0, **keys})


def cnntrain_command(script: str = "cnntrain", module: str = "cnntrain") -> list[str]:
    """The installed console script when there is one (as users run it), else the module."""
    path = Path(sys.executable).parent / script
    return [str(path)] if path.exists() else [sys.executable, "-m", module]


def cli_env(data_root: Path, **env: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("CNNTRAIN_DEBUG", "HYDRA_FULL_ERROR")}
    environ.update(CNNTRAIN_DATA_ROOT=str(data_root), **env)
    return environ


@dataclass
class Result:
    """What a command left: its exit status and output, like subprocess.CompletedProcess."""

    returncode: int
    stdout: str
    stderr: str


def run_main(main, argv: list[str], cwd: Path, monkeypatch, **env: str) -> Result:
    """Run a console script's `main` in this process, as `SCRIPT ARGV` in `cwd` (preflight, Hydra and the
    job all run), then put back what a command changes: Hydra's global state, the SIGTERM handler, argv,
    the preflight's memory of data it described. The process exit becomes a SystemExit."""
    from hydra.core.global_hydra import GlobalHydra

    from cnntrain.commands import entry
    from cnntrain.commands.state import COMMAND

    monkeypatch.setattr(entry, "leave", lambda code: sys.exit(code))
    monkeypatch.setattr(COMMAND, "known_data", {})
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["cnntrain", *argv])
    for key in ("CNNTRAIN_DEBUG", "HYDRA_FULL_ERROR"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    handler = signal.getsignal(signal.SIGTERM)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        GlobalHydra.instance().clear()
        signal.signal(signal.SIGTERM, handler)
        os.environ.pop("HYDRA_FULL_ERROR", None)
    return Result(code, out.getvalue(), err.getvalue())


def assert_one_line_error(
    result: subprocess.CompletedProcess | Result, *fragments: str, cwd: Path | None = None
) -> None:
    """Exit status 2, exactly one `error: ...` line on stderr naming every fragment, no traceback, and (given
    the command's folder) no output folder."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and result.stderr.count("\n") == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    if cwd is not None:
        assert not (cwd / "outputs").exists(), "a rejected command must not create a run directory"


def repo_group_line(group: str) -> str:
    """How --help should list a config group: every YAML file in the repository's configs/GROUP, sorted."""
    folder = REPO / "configs" / group
    return f"{group}: " + ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))


def run_stopped_in_epoch(cfg, run_dir: Path, epoch: int, monkeypatch):
    """Run `cfg` into run_dir as Ctrl-C during training epoch `epoch` leaves it (the earlier epochs saved, the
    resume line raised); returns the Interrupted error the run ended with."""
    import pytest

    import cnntrain.training.loop as engine
    from cnntrain.errors import Interrupted
    from cnntrain.training.run import run

    real_train_epoch = engine.train_epoch

    def interrupted(*args, **kwargs):
        if args[7] == epoch:  # the epoch argument
            raise KeyboardInterrupt
        return real_train_epoch(*args, **kwargs)

    monkeypatch.setattr(engine, "train_epoch", interrupted)
    try:
        with pytest.raises(Interrupted) as caught:
            run(cfg, run_dir)
    finally:
        monkeypatch.setattr(engine, "train_epoch", real_train_epoch)
    return caught.value
