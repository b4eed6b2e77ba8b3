"""The checks `cnntrain` makes before Hydra creates anything on disk, so a mistake never leaves a run directory.

It parses the overrides, checks group choices, composes and validates the config of every job the command
line asks for, then checks what needs torch once per distinct value: the device, the logger, the data
files (an image folder is scanned here), and the model's shapes. It returns what it learned (`Checked`: the
configs and each one's DataDescription); the descriptions are also kept in the command's state
(cnntrain.commands.state, read back by `known_data`) for the jobs Hydra starts, so a job does not read or scan
the data a second time.

torch, the data and the model code are imported inside the checks that need them: the config half runs,
and fails in one line, without them.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnntrain.commands.hints import cut_override, home_path_hint, own_config_hint
from cnntrain.commands.state import COMMAND
from cnntrain.config.compose import compose_train, config_dir, group_options, hydra_session
from cnntrain.config.guard import check_overrides
from cnntrain.config.names import CONFIG_GROUPS
from cnntrain.config.validate import check_class_weights, validate
from cnntrain.errors import ConfigError, did_you_mean, first_line
from cnntrain.files import kind_of, read_yaml

PREFLIGHT_JOB_LIMIT = 256  # larger sweeps are checked job by job as they run


@dataclass
class Checked:
    """What the preflight composed and learned, job by job: the composition, the validated config (with the
    data's facts filled in) and the DataDescription of its data."""

    composed: list[Any] = field(default_factory=list)
    configs: list[Any] = field(default_factory=list)
    descriptions: list[Any] = field(default_factory=list)


def known_data(dataset_cfg: Any) -> Any:
    """The DataDescription the preflight made for this dataset config in this process, or None."""
    return COMMAND.known_data.get(data_key(dataset_cfg))


def data_key(dataset_cfg: Any) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(dataset_cfg, resolve=True)


def preflight(
    overrides: list[str], multirun: bool, *, hydra: Any = None, extra_dir: str | None = None, keep_hydra: bool = False
) -> Checked:
    """Check every job's config. With keep_hydra (a single run), the one composition is made with its hydra
    node and logging set up, as the job will run it; a sweep's jobs are composed one by one to be checked."""
    checked = check_configs(overrides, multirun, hydra=hydra, extra_dir=extra_dir, keep_hydra=keep_hydra)
    check_environment(checked, devices_here=not runs_elsewhere(parse_overrides(overrides)))
    return checked


def check_configs(
    overrides: list[str], multirun: bool, *, hydra: Any = None, extra_dir: str | None = None, keep_hydra: bool = False
) -> Checked:
    """The preflight's first half: the overrides parsed, the group choices checked, every job composed and
    validated; nothing read from the data or the machine (what the docs test runs on README's commands)."""
    parsed = parse_overrides(overrides)
    check_group_choices(parsed, multirun, extra_dir)
    if hydra is None and extra_dir is not None:  # a sweep's jobs are checked with the user's configs too
        with hydra_session(extra_dir) as session:
            return check_configs(overrides, multirun, hydra=session, extra_dir=extra_dir, keep_hydra=keep_hydra)
    checked = Checked()
    if keep_hydra:
        checked.composed = [compose_train(overrides, hydra=hydra, hydra_config=True, log_configuration=True)]
    else:
        checked.composed = [compose_train(job, hydra=hydra) for job in expand_jobs(parsed)]
    checked.configs = [validate(composed) for composed in checked.composed]
    return checked


REMOTE_LAUNCHERS = ("slurm", "ray_cluster", "submitit_slurm", "ray")
"""Launchers whose jobs run on other machines: this machine's GPUs say nothing about theirs."""


def runs_elsewhere(parsed: list[Any]) -> bool:
    """Whether the sweep's jobs run on other machines (a SLURM or Ray launcher chosen on the command line)."""
    return any(o.key_or_group == "hydra/launcher" and str(o.value()) in REMOTE_LAUNCHERS for o in parsed)


def parse_overrides(overrides: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for index, text in enumerate(overrides):
        key = text.split("=", 1)[0].lstrip("+~")
        if "=" not in text and not text.startswith("~"):
            raise ConfigError(f"override '{text}' has no value; write {text}=VALUE (or ~{text} to remove a key)")
        if not key:
            raise ConfigError(f"override '{text}' has no key; write KEY=VALUE, e.g. trainer.epochs=5")
        try:
            parsed.extend(parser.parse_overrides([text]))
        except OverrideParseException as err:
            hint, whole = "", cut_override(overrides, index)
            if whole is not None:  # the shell split an unquoted list at its spaces
                hint = f'; the shell cut it at a space: quote it whole, "{whole}"'
            elif (tilde := home_path_hint(text)) is not None:  # `~/photos`: Hydra's lexer has no `~` in a value
                hint = tilde
            elif "{" in text.partition("=")[2]:  # a shard range: Hydra reads '{' as the start of a mapping
                hint = (
                    f"; quote a brace range for Hydra: \"{key}='{text.split('=', 1)[1]}'\" "
                    f"(the double quotes for the shell)"
                )
            raise ConfigError(f"cannot parse override '{text}': {first_line(err)}{hint}") from None
    check_overrides([o.key_or_group for o in parsed if not o.is_delete()])
    return parsed


def check_group_choices(parsed: list[Any], multirun: bool, extra_dir: str | None = None) -> None:
    """`model=lenett` -> one sentence with the closest name and every available one."""
    for override in parsed:
        group = override.key_or_group
        if group not in CONFIG_GROUPS or override.is_delete():
            continue
        if override.is_sweep_override() and not multirun:
            raise ConfigError(f"'{override.input_line}' lists several values; add -m to run a sweep")
        values = (
            list(override.sweep_string_iterator())
            if override.is_discrete_sweep()
            else [override.get_value_element_as_str()]
            if not override.is_sweep_override()
            else []
        )
        options = group_options(group, extra_dir)
        for value in values:
            if value not in options:
                close = did_you_mean(value, options)
                raise ConfigError(
                    f"unknown {group} '{value}'{close}; available: {', '.join(options)}"
                    f"{'' if close else own_config_hint(group, value, extra_dir)}"
                )
            check_group_file(group, value, extra_dir)


def check_group_file(group: str, value: str, extra_dir: str | None) -> None:
    """The YAML file a group choice names: readable, a mapping, and not hidden behind a preset of the same name
    (Hydra reads the preset, and the user's file would be ignored without a word)."""
    import yaml

    ours = config_dir() / group / f"{value}.yaml"
    theirs = Path(extra_dir) / group / f"{value}.yaml" if extra_dir else None
    if theirs is not None and theirs.is_file() and ours.is_file():
        raise ConfigError(
            f"{theirs}: {group}/{value}.yaml has the name of a built-in {group}, which Hydra reads "
            f"instead; rename the file (and choose it with {group}=NEW_NAME)"
        )
    path = theirs if theirs is not None and theirs.is_file() else ours
    read_yaml(path, fix="fix the file")  # a syntax error, named with its line
    content = yaml.safe_load(path.read_text(encoding="utf-8"))  # OmegaConf would make a bare word a key
    if not isinstance(content, dict):
        raise ConfigError(f"{path} must hold a mapping of keys (name: ..., ...), not {kind_of(content)}")


def expand_jobs(parsed: list[Any]) -> list[list[str]]:
    """The override list of every job a (multi)run will launch; non-enumerable sweeps are left out."""
    choices: list[list[str]] = []
    for override in parsed:
        if override.is_hydra_override():
            continue
        key = override.get_key_element()
        if override.is_sweep_override():
            if override.is_discrete_sweep():
                choices.append([f"{key}={v}" for v in override.sweep_string_iterator()])
        else:
            choices.append(
                [f"{key}={override.get_value_element_as_str()}" if not override.is_delete() else override.input_line]
            )
    return [list(combo) for combo in itertools.islice(itertools.product(*choices), PREFLIGHT_JOB_LIMIT)]


def check_environment(checked: Checked, *, devices_here: bool = True) -> None:
    """Device, logger, data files and model shapes: the checks that need torch, done once per distinct value.
    `devices_here`: the jobs run on this machine, so its devices are theirs (not so on a SLURM login node)."""
    from omegaconf import OmegaConf

    from cnntrain.data.loading import describe_data

    seen: set[str] = set()
    known = COMMAND.known_data
    for cfg in checked.configs:
        key = data_key(cfg.dataset)
        if key not in known:
            known[key] = describe_data(cfg.dataset)
        checked.descriptions.append(known[key])
        known[key].fill(cfg.dataset)  # an image folder's shape and classes, for the model
        machine = f"{cfg.device}:{cfg.trainer.precision}:{cfg.trainer.devices}:{cfg.trainer.sync_batchnorm}"
        checks = {
            f"device:{machine}": lambda c=cfg: _check_machine(
                c.device, c.trainer.precision, c.trainer.devices, c.trainer.sync_batchnorm
            ),
            f"logger:{list(cfg.logger)}:{cfg.mlflow.tracking_uri}": lambda c=cfg: check_logger(c),
            f"balance:{key}:{cfg.seed}:{cfg.trainer.class_weights}:{cfg.trainer.sampler}": lambda c=cfg, d=known[key]: (
                check_balance(c, d)
            ),
            f"model:{OmegaConf.to_yaml(cfg.model)}:{OmegaConf.to_yaml(cfg.dataset)}:{OmegaConf.to_yaml(cfg.trainer)}:"
            f"{OmegaConf.to_yaml(cfg.optimizer)}:{OmegaConf.to_yaml(cfg.scheduler)}:{cam_layer(cfg)}": lambda c=cfg: (
                check_model(c)
            ),
        }
        if not devices_here:
            checks = {name: check for name, check in checks.items() if not name.startswith("device:")}
        for name, check in checks.items():
            if name not in seen:
                seen.add(name)
                check()


def check_balance(cfg: Any, description: Any) -> None:
    """The balanced class weights or sampler need every class in the training split (after the validation
    split or fold is taken out): the split's labels are read (no images) and the first empty class named."""
    from cnntrain.data.balance import balanced_settings, check_every_class, class_counts
    from cnntrain.data.loading import train_labels

    settings = balanced_settings(cfg.trainer)
    if settings:
        labels = train_labels(cfg.dataset, cfg.seed, description)
        check_every_class(class_counts(labels, len(description.classes)), description.classes, settings)


def _check_machine(device: str, precision: str, devices: int, sync_batchnorm: bool) -> None:
    if device not in ("auto", "cpu") or precision != "fp32" or devices > 1 or sync_batchnorm:
        from cnntrain.training.accel import check_machine  # torch, only when there is something to check

        check_machine(device, precision, devices, sync_batchnorm)


def check_logger(cfg: Any) -> None:
    """Each chosen logger's package, and the form of MLflow's tracking URI: a run never starts with a tracker
    that cannot work (one that fails later costs only itself, see cnntrain.reporting.trackers)."""
    from cnntrain.reporting.loggers import check_available
    from cnntrain.reporting.mlflow_logger import check_tracking_uri

    if "tensorboard" in cfg.logger:
        check_available("tensorboard")
    if "mlflow" in cfg.logger:
        check_tracking_uri(cfg.mlflow.tracking_uri)
        check_available("mlflow")
    if "wandb" in cfg.logger:
        check_available("wandb")


def check_model(cfg: Any) -> None:
    """Build the model, check its output against the classes and its loss, then build the optimizer and the
    schedule on it, so that whatever torch refuses is one line naming the config group, before any output."""
    from cnntrain.data.augment import check_augment
    from cnntrain.models.architectures import saved_weights
    from cnntrain.models.builder import build_model, check_outputs
    from cnntrain.training.tasks import task_for

    with saved_weights() if cfg.get("resume") else contextlib.nullcontext():  # a resume has its checkpoint
        model, rows = build_model(cfg.model.layers, list(cfg.dataset.input_shape), model_name=cfg.model.name)
    check_outputs(rows, int(cfg.dataset.num_classes), cfg.model.name)
    check_class_weights(cfg.trainer.class_weights, int(cfg.dataset.num_classes))
    task_for(cfg.dataset.get("task"), cfg, int(cfg.dataset.num_classes)).check_config(cfg)  # the loss, its options
    check_augment(cfg.dataset.augment, tuple(cfg.dataset.input_shape))
    check_optimization(cfg, model)
    if cam_layer(cfg) is not None:
        from cnntrain.models.cam import find_cam_layer

        find_cam_layer(model, tuple(cfg.dataset.input_shape), cam_layer(cfg), [row.name for row in rows])


def cam_layer(cfg: Any) -> str | None:
    """report.cam_layer when the run will draw class activation maps with it, else None (nothing to check)."""
    return cfg.report.cam_layer if cfg.report.analysis and cfg.report.cam else None


def check_optimization(cfg: Any, model: Any) -> None:
    """The optimizer and the schedule, constructed as a run will; torch's refusal becomes a ConfigError."""
    from cnntrain.training.optim import build_optimizer, build_schedule, parameter_groups

    groups = parameter_groups(model, cfg.trainer, cfg.optimizer)
    optimizer = _constructed(cfg, "optimizer", lambda: build_optimizer(groups, cfg.optimizer))
    # the real number of steps per epoch comes with the data; whether torch accepts the arguments does not
    _constructed(cfg, "scheduler", lambda: build_schedule(optimizer, cfg.scheduler, cfg.trainer.epochs, 100))


def _constructed(cfg: Any, group: str, build: Any) -> Any:
    try:
        return build()
    except (ValueError, TypeError, RuntimeError, ArithmeticError) as err:
        settings = ", ".join(f"{group}.{key}={value}" for key, value in cfg[group].items() if key != "name")
        raise ConfigError(f"{group}={cfg[group].name} with {settings}: torch refuses it: {first_line(err)}") from None
