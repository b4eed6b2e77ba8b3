"""The `cnntrain` command: Hydra in, one clear line out on any user mistake.

Before Hydra creates a run directory, a preflight composes the config for every job the command
line asks for and checks it (schema and ranges, device, data files, model shapes), so that a bad
override ends with one sentence and exit status 2, and never with a half-written output folder.
Torch is imported only once a run really starts (or a check needs it), so `--help` stays fast.
This is the only module that touches Hydra.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from cnntrain.config import CONFIG_GROUPS, config_dir, group_options, unknown_key_message, validate
from cnntrain.entry import debugging, report, run_command
from cnntrain.errors import ConfigError, Interrupted, UserError, did_you_mean

PROCESS_STARTED = time.perf_counter()  # as early as the command can read a clock: start-up is measured from here
INFO_FLAGS = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc",
              "--version", "--resolve", "--package", "-p"}
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                    "--config-dir", "-cd", "--experimental-rerun"}
PREFLIGHT_JOB_LIMIT = 256  # larger sweeps are checked job by job as they run

def split_argv(argv: list[str]) -> tuple[list[str], list[str], bool]:
    """(hydra flags, overrides, multirun?) from the command line."""
    flags: list[str] = []
    overrides: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg.startswith("-"):
            flags.append(arg)
            if arg in FLAGS_WITH_VALUE:
                flags.append(next(args, ""))
        else:
            overrides.append(arg)
    return flags, overrides, "-m" in flags or "--multirun" in flags


def _parse_overrides(overrides: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            parsed.extend(parser.parse_overrides([text]))
        except OverrideParseException as err:
            reason = str(err).strip().splitlines()[0]
            raise ConfigError(f"cannot parse override '{text}': {reason}") from None
    return parsed


def _check_group_choices(parsed: list[Any], multirun: bool) -> None:
    """`model=lenett` -> one sentence with the closest name and every available one."""
    for override in parsed:
        group = override.key_or_group
        if group not in CONFIG_GROUPS or override.is_delete():
            continue
        if override.is_sweep_override() and not multirun:
            raise ConfigError(f"'{override.input_line}' lists several values; add -m to run a sweep")
        values = list(override.sweep_string_iterator()) if override.is_discrete_sweep() else \
            [override.get_value_element_as_str()] if not override.is_sweep_override() else []
        options = group_options(group)
        for value in values:
            if value not in options:
                raise ConfigError(f"unknown {group} '{value}'{did_you_mean(value, options)}; "
                                  f"available: {', '.join(options)}")


def expand_jobs(parsed: list[Any]) -> list[list[str]]:
    """The override list of every job a (multi)run will launch; non-enumerable sweeps are left out."""
    import itertools

    choices: list[list[str]] = []
    for override in parsed:
        if override.is_hydra_override():
            continue
        key = override.get_key_element()
        if override.is_sweep_override():
            if override.is_discrete_sweep():
                choices.append([f"{key}={v}" for v in override.sweep_string_iterator()])
        else:
            choices.append([f"{key}={override.get_value_element_as_str()}" if not override.is_delete()
                            else override.input_line])
    return [list(combo) for combo in itertools.islice(itertools.product(*choices), PREFLIGHT_JOB_LIMIT)]


def compose_train(overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose(config_name="train", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_composition_message(err, overrides)) from None


def _composition_message(err: Exception, overrides: list[str]) -> str:
    text = f"{err}\n{err.__cause__ or ''}"
    bad = re.search(r"Could not override '([^']+)'", text)
    if bad and "not in struct" in text:
        key = bad.group(1)
        parent = key.rpartition(".")[0]
        rest = [o for o in overrides if not o.split("=", 1)[0].lstrip("+~") == key]
        node = compose_train(rest)
        from omegaconf import DictConfig, OmegaConf

        target = OmegaConf.select(node, parent) if parent else node
        allowed = sorted(target.keys()) if isinstance(target, DictConfig) else []
        return unknown_key_message(key, allowed)
    plugin = re.search(r"Could not find 'hydra/(launcher|sweeper)/([^']+)'", text)
    if plugin:
        kind, name = plugin.groups()
        available = re.findall(r"^\t(\S+)$", text, flags=re.MULTILINE)
        return (f"unknown hydra/{kind} '{name}'; available: {', '.join(available) or 'basic'} (the optuna sweeper "
                f"and the joblib and submitit launchers come with pip install 'cnntrain[optuna,joblib,slurm]')")
    exists = re.search(r"Could not append to config. An item is already at '([^']+)'", text)
    if exists:
        return f"config key '{exists.group(1)}' already exists; drop the '+' to override it"
    first = next((line for line in text.splitlines() if line.strip()), type(err).__name__)
    return f"bad override: {first.strip()}"


def preflight(overrides: list[str], multirun: bool) -> None:
    """Check every job's config before Hydra creates anything on disk."""
    parsed = _parse_overrides(overrides)
    _check_group_choices(parsed, multirun)
    configs = [validate(compose_train(job)) for job in expand_jobs(parsed)]
    _check_environment(configs)


def _check_environment(configs: Iterable[Any]) -> None:
    """Device, data files and model shapes: the checks that need torch, done once per distinct value."""
    from omegaconf import OmegaConf

    from cnntrain.data import fill_dataset_config

    seen: set[str] = set()
    facts: dict[str, Any] = {}
    for cfg in configs:
        data_key = OmegaConf.to_yaml(cfg.dataset, resolve=True)
        if data_key not in facts:
            facts[data_key] = _check_data(cfg.dataset)
        fill_dataset_config(cfg.dataset, facts[data_key])  # an image folder's shape and classes, for the model
        checks = {
            f"device:{cfg.device}:{cfg.trainer.precision}": lambda c=cfg: _check_device(c.device, c.trainer.precision),
            f"logger:{cfg.logger}": lambda c=cfg: _check_logger(c.logger),
            f"model:{OmegaConf.to_yaml(cfg.model)}:{list(cfg.dataset.input_shape)}": lambda c=cfg: _check_model(c),
        }
        for key, check in checks.items():
            if key not in seen:
                seen.add(key)
                check()


def _check_device(device: str, precision: str) -> None:
    if device not in ("auto", "cpu") or precision != "fp32":
        from cnntrain.accel import Accel
        from cnntrain.device import resolve_device

        Accel(resolve_device(device), precision)


def _check_data(dataset: Any) -> Any:
    """Files present (or downloaded); returns the data's input shape and classes."""
    from cnntrain.data import describe_data, ensure_available

    ensure_available(dataset)
    return describe_data(dataset)


def _check_logger(logger: str) -> None:
    if logger == "tensorboard":
        from cnntrain.tensorboard_log import check_available

        check_available()


def _check_model(cfg: Any) -> None:
    from cnntrain.model import build_model

    build_model(cfg.model.layers, list(cfg.dataset.input_shape), model_name=cfg.model.name)


def resume_target(overrides: list[str], multirun: bool) -> Path | None:
    """The run directory of `cnntrain resume=RUN_DIR`, checked; None for any other command."""
    values = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == "resume" and "=" in o]
    if not values or values == ["null"]:
        return None
    others = [o for o in overrides if o.split("=", 1)[0].lstrip("+") != "resume"]
    if multirun or len(values) > 1 or others:
        raise ConfigError(f"resume={values[0]} continues one run with its saved config; drop -m and the other "
                          f"overrides ({' '.join(others) or 'a second resume='})")
    from cnntrain.train import load_resume_checkpoint

    run_dir = Path(values[0].strip("'\"")).resolve()
    load_resume_checkpoint(run_dir)
    return run_dir


def resume_argv(flags: list[str], run_dir: Path) -> list[str]:
    """The command Hydra sees for a resume: the original run directory, whose .hydra/ it must not rewrite."""
    return [*flags, f"resume='{run_dir}'", f"hydra.run.dir='{run_dir}'", "hydra.output_subdir=null"]


class JobStopped(BaseException):
    """Carries a UserError out of a job past Hydra, which would print its own line for an Exception."""

    def __init__(self, error: UserError) -> None:
        super().__init__(str(error))
        self.error = error


def _task(cfg: Any) -> float:
    """What Hydra runs for each job: validate once more (cheap), then train (or continue a run)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from cnntrain.train import resume_run, run

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        if cfg.get("resume") is not None:
            return resume_run(run_dir)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return _sweep_job(cfg, run_dir, hydra_cfg.job.num)
        return run(validate(cfg), run_dir, started=PROCESS_STARTED)
    except UserError as err:
        raise JobStopped(err) from err


def _sweep_job(cfg: Any, run_dir: Path, job_num: int) -> float:
    """One job of a sweep: a failure is recorded in its summary.json and the sweep goes on (returns NaN).

    Any exception counts (a CUDA out-of-memory from a large batch size is a typical one); Ctrl-C still
    stops the whole sweep, and CNNTRAIN_DEBUG=1 lets the first failure end it with its traceback.
    """
    from cnntrain.run_files import write_failure
    from cnntrain.train import run

    started = time.perf_counter()
    try:
        return run(validate(cfg), run_dir)
    except Interrupted:
        raise
    except Exception as err:
        if debugging():
            raise
        message = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}".splitlines()[0]
        write_failure(run_dir / "summary.json", message, time.perf_counter() - started)
        report(f"job {job_num} failed: {message}")
        return float("nan")


def print_help(overrides: list[str]) -> None:
    """`cnntrain --help`: the template in train.yaml (hydra.help) filled with our groups and the config.

    Rendered here rather than by Hydra, whose help also walks every installed launcher and sweeper
    group (a second with the optional plugins installed).
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    _check_group_choices(_parse_overrides(overrides), multirun=False)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    template = cfg.hydra.help.template
    groups = "\n".join(f"{group}: {', '.join(group_options(group))}" for group in CONFIG_GROUPS)
    cfg = OmegaConf.to_container(cfg, resolve=False)
    cfg.pop("hydra")
    text = template.replace("$APP_CONFIG_GROUPS", groups + "\n").replace("$CONFIG", OmegaConf.to_yaml(cfg))
    sys.stdout.write(text + "\n")


def _run_hydra() -> None:
    import hydra

    entry = hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")(_task)
    entry()


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt("SIGTERM")  # the same clean stop as Ctrl-C (train.run says how to resume)


def main() -> None:
    """Console-script entry point: preflight, then hand over to Hydra; user errors exit with status 2."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let exceptions reach us; we print them as one line
    signal.signal(signal.SIGTERM, _on_sigterm)
    run_command(_main)


def _main(argv: list[str]) -> None:
    flags, overrides, multirun = split_argv(argv)
    try:
        resume_dir = resume_target(overrides, multirun)
        if resume_dir is not None:
            sys.argv = [sys.argv[0], *resume_argv(flags, resume_dir)]
        elif flags and set(flags) <= {"--help", "-h"}:
            print_help(overrides)
            return
        elif not INFO_FLAGS.intersection(flags):
            preflight(overrides, multirun)
        _run_hydra()
    except JobStopped as stopped:
        raise stopped.error from None
    except Exception as err:
        if debugging() or isinstance(err, UserError) or not _is_config_exception(err):
            raise
        raise ConfigError(_composition_message(err, overrides)) from None


def _is_config_exception(err: Exception) -> bool:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return isinstance(err, (HydraException, OmegaConfBaseException))


if __name__ == "__main__":
    main()
