"""What keeps a long run alive and bounded: checkpoints inside an epoch and the training time budget.

`trainer.checkpoint.every_steps` / `every_minutes` write checkpoints/last.pt between epochs' ends, and
`trainer.time_limit` bounds the wall clock of training. Checked here, before anything runs, with no torch
import (cnntrain.training.interruptions acts on them).
"""

from __future__ import annotations

import math
import re
from typing import Any

from omegaconf import DictConfig

from cnntrain.errors import ConfigError

UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")
DURATION_HELP = "seconds (e.g. 5400) or a duration such as 1h30m, 90m, 45s, 2d; null: no limit"


def parse_duration(value: Any, key: str = "trainer.time_limit") -> float | None:
    """Seconds of a duration given as a number of seconds or as '1h30m'-style text; None for null.

    Raises ConfigError naming `key` and the allowed forms for anything else (0, negatives, 'soon', '1x')."""
    if value is None:
        return None
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        match = DURATION.fullmatch(text)
        if text and match and any(match.groups()):
            seconds = sum(float(part) * unit for part, unit in zip(match.groups(), UNITS.values()) if part)
        elif re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{key}={value}: expected a time > 0 as {DURATION_HELP}")
    return seconds


def check_budgets(trainer: DictConfig) -> None:
    """trainer.checkpoint.every_steps (a whole number >= 1), every_minutes (a number > 0) and trainer.time_limit,
    each null when unused."""
    steps = trainer.checkpoint.every_steps
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ConfigError(
            f"trainer.checkpoint.every_steps={steps}: expected a whole number >= 1 (optimizer steps "
            f"between checkpoints inside an epoch) or null"
        )
    minutes = trainer.checkpoint.every_minutes
    if minutes is not None and (
        isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not math.isfinite(minutes) or minutes <= 0
    ):
        raise ConfigError(
            f"trainer.checkpoint.every_minutes={minutes}: expected a number of minutes > 0 (e.g. 10 or 0.5) or null"
        )
    parse_duration(trainer.time_limit)
