"""What `cnntrain-reproduce` replays of a run directory: its saved overrides, read as data and checked.

A run directory may come from someone else: only KEY=VALUE overrides of cnntrain's own config are replayed,
with no resolver interpolation, no Hydra setting, no tracker and no cache folder (those are this machine's
choice), and a dataset.path only when it names a folder or file here. Split from commands/reproduce.py, which
re-runs and compares.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnntrain.config.saved import RESTORE, check_saved_overrides, read_saved_yaml
from cnntrain.errors import ConfigError, UserError
from cnntrain.files import kind_of
from cnntrain.reporting.run_dir import RunDir

NOT_REPLAYED = ("hydra", "logger", "mlflow", "wandb", "resume")
"""Top-level keys (and groups) of saved overrides a re-run leaves out: Hydra's settings (callbacks, where files go,
environment variables) and the trackers (where metrics are sent) belong to the original launch; resume= to
another command. None of them changes what the run computes."""
NOT_REPLAYED_KEYS = ("dataset.cache_dir",)
"""Keys a re-run leaves out too: where caches go is this machine's choice (default ~/.cache/cnntrain)."""


def saved_command(run_dir: Path) -> list[str]:
    """The overrides a re-run of run_dir replays (see replayed_overrides)."""
    return replayed_overrides(run_dir)[0]


def replayed_overrides(run_dir: Path) -> tuple[list[str], list[str]]:
    """(replayed, left out): the task overrides saved in run_dir, each parsed as Hydra parses it and checked
    (no flag, no resolver interpolation, no callback or _target_, known config groups), split into those a
    re-run replays and those of NOT_REPLAYED. .hydra/hydra.yaml is not read: nothing in it is replayed."""
    from cnntrain.commands.preflight import check_group_choices, parse_overrides

    paths = RunDir(run_dir)
    where = paths.overrides_yaml
    if not where.is_file():
        raise UserError(f"{run_dir} is not a cnntrain run directory (no .hydra/overrides.yaml)")
    saved = _override_list(read_saved_yaml(where), where)
    check_saved_overrides(saved, str(where))
    for number, item in enumerate(saved, 1):
        if item.lstrip().startswith("-"):
            raise UserError(
                f"{where}: item {number} ({item[:80]!r}) is a command-line flag, not a KEY=VALUE "
                f"override; a re-run replays overrides only; {RESTORE}"
            )
    try:
        parsed = parse_overrides(saved)
        check_group_choices(parsed, multirun=False)
    except ConfigError as err:
        raise ConfigError(
            f"the overrides saved in {where} do not compose today ({err}); edit them to today's config names"
        ) from None
    left_out = {
        o.input_line
        for o in parsed
        if o.key_or_group.split(".")[0].split("/")[0] in NOT_REPLAYED or o.key_or_group in NOT_REPLAYED_KEYS
    }
    return [o for o in saved if o not in left_out], [o for o in saved if o in left_out]


def check_dataset_path(cfg: Any, run_dir: Path) -> None:
    """A replayed dataset.path must be a folder or file here: a name that is neither (a Hub name, or a loader
    packaged with `datasets` such as imagefolder, which reads the working directory) is the sender's choice of
    what to read, refused in one line."""
    path = cfg.dataset.get("path")
    if path and not Path(str(path)).expanduser().exists():
        raise UserError(
            f"the overrides saved in {RunDir(run_dir).overrides_yaml} set dataset.path={path}, which is "
            f"not a folder or file here; cnntrain-reproduce replays a dataset.path only when it names "
            f"one (put the dataset there, or run cnntrain with your own dataset.path)"
        )


def _override_list(value: Any, path: Path) -> list[str]:
    """A saved list of override strings, checked: Hydra writes one string per item."""
    if not isinstance(value, list):
        raise UserError(f"{path}: holds {kind_of(value)}, not a list of KEY=VALUE overrides; {RESTORE}")
    for number, item in enumerate(value, 1):
        if not isinstance(item, str):
            raise UserError(
                f"{path}: item {number} is {kind_of(item)}, not a KEY=VALUE override string; "
                f"fix it or restore the file from a copy of the run"
            )
    return value
