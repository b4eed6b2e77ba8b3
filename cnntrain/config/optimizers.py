"""Every optimizer and learning-rate schedule, declared once: its torch class, its arguments and their ranges.

The YAML file of each (configs/optimizer/NAME.yaml, configs/scheduler/NAME.yaml) holds the defaults that
`--help` prints; the schema (cnntrain.config.schema) and the range checks (cnntrain.config.validate) are
derived from the declaration below, and so is the constructor call (cnntrain.training.optim). Adding
torch.optim.NAdam is one line here and one YAML file. Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cnntrain.config.names import ANNEAL_STRATEGIES, MODES, MONITORS


@dataclass(frozen=True)
class Arg:
    """One argument: its type in the schema, the rule its value must meet, and whether torch gets it."""

    type: Any
    rule: str = ""  # the end of the error message, e.g. "must be > 0"
    ok: Callable[[Any], bool] = lambda value: True
    to_torch: bool = True  # False: cnntrain's own argument (a plateau's monitor, a warm-up length)

    def check(self, key: str, value: Any) -> str | None:
        """The one-line complaint about a plain (resolved) `value`, or None when it is allowed."""
        if isinstance(value, float) and not math.isfinite(value):
            return f"{key}={value}: must be a finite number"
        return None if self.ok(value) else f"{key}={value}: {self.rule}"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


POSITIVE = Arg(float, "must be > 0", lambda v: v > 0)
NON_NEGATIVE = Arg(float, "must be >= 0", lambda v: v >= 0)
UNIT_OPEN = Arg(float, "must be in (0, 1)", lambda v: 0 < v < 1)
POSITIVE_INT = Arg(int, "must be > 0", lambda v: v > 0)
NON_NEGATIVE_INT = Arg(int, "must be >= 0", lambda v: v >= 0)
FLAG = Arg(bool)
BETAS = Arg(
    list[float],
    "expected two numbers, each in [0, 1)",
    lambda v: len(v) == 2 and all(_number(b) and 0 <= b < 1 for b in v),
)


def one_of(options: tuple[str, ...], to_torch: bool = True) -> Arg:
    return Arg(str, f"expected one of {', '.join(options)}", lambda v: v in options, to_torch)


@dataclass(frozen=True)
class Declared:
    """An optimizer or schedule: the torch class that implements it, the arguments a config sets, and the rules
    that tie arguments together (each returns a complaint or None)."""

    torch_class: str | None
    args: dict[str, Arg] = field(default_factory=dict)
    interval: str = "none"  # schedules: stepped per 'batch', per 'epoch', on a 'metric', or 'none'
    rules: tuple[Callable[[dict[str, Any]], str | None], ...] = ()


def _nesterov(values: dict[str, Any]) -> str | None:
    if values["nesterov"] and (values["momentum"] <= 0 or values["dampening"] != 0):
        return (
            f"optimizer.nesterov=true needs optimizer.momentum > 0 and optimizer.dampening=0 (they are "
            f"{values['momentum']} and {values['dampening']}); set optimizer.nesterov=false to use them"
        )
    return None


OPTIMIZERS: dict[str, Declared] = {
    "adam": Declared("Adam", dict(lr=POSITIVE, betas=BETAS, eps=POSITIVE, weight_decay=NON_NEGATIVE, amsgrad=FLAG)),
    "adamw": Declared("AdamW", dict(lr=POSITIVE, betas=BETAS, eps=POSITIVE, weight_decay=NON_NEGATIVE, amsgrad=FLAG)),
    "sgd": Declared(
        "SGD",
        dict(lr=POSITIVE, momentum=NON_NEGATIVE, nesterov=FLAG, dampening=NON_NEGATIVE, weight_decay=NON_NEGATIVE),
        rules=(_nesterov,),
    ),
    "rmsprop": Declared(
        "RMSprop",
        dict(
            lr=POSITIVE,
            alpha=NON_NEGATIVE,
            eps=POSITIVE,
            momentum=NON_NEGATIVE,
            centered=FLAG,
            weight_decay=NON_NEGATIVE,
        ),
    ),
}
"""torch.optim classes by config name; every one takes the model's parameters first."""

SCHEDULERS: dict[str, Declared] = {
    "none": Declared(None),
    "plateau": Declared(
        "ReduceLROnPlateau",
        dict(
            monitor=one_of(MONITORS, to_torch=False),
            mode=one_of(MODES),
            factor=UNIT_OPEN,
            patience=NON_NEGATIVE_INT,
            threshold=NON_NEGATIVE,
            min_lr=NON_NEGATIVE,
        ),
        interval="metric",
    ),
    "step": Declared("StepLR", dict(step_size=POSITIVE_INT, gamma=POSITIVE), interval="epoch"),
    "cosine": Declared(None, dict(eta_min=NON_NEGATIVE, warmup_epochs=Arg(float, to_torch=False)), interval="batch"),
    "onecycle": Declared(
        "OneCycleLR",
        dict(
            max_lr=Arg(float | None, "must be null (use optimizer.lr) or a number > 0", lambda v: v is None or v > 0),
            pct_start=UNIT_OPEN,
            div_factor=POSITIVE,
            final_div_factor=POSITIVE,
            anneal_strategy=one_of(ANNEAL_STRATEGIES),
            three_phase=FLAG,
        ),
        interval="batch",
    ),
}
"""torch.optim.lr_scheduler classes by config name (None: built by cnntrain.training.optim itself)."""

GROUPS: dict[str, dict[str, Declared]] = {"optimizer": OPTIMIZERS, "scheduler": SCHEDULERS}
