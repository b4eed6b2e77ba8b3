"""The augmentations a config can name in `dataset.augment`, each registered once by the module that defines it
(cnntrain.data.augment_ops, cnntrain.data.augment_policies), and the argument checks their builders share.

This module knows no op: the ops import it to register, so the registry sits below them and nothing imports back
up. cnntrain.data.augment looks names up (loading the torchvision policies only when a config names one).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cnntrain.errors import ConfigError

KEY = "dataset.augment"


@dataclass(frozen=True)
class AugmentSpec:
    """One registered augmentation: its builder (keyword arguments -> op), the argument a scalar fills, a line."""

    name: str
    builder: Callable[..., Any]
    primary: str | None
    doc: str

    @property
    def arguments(self) -> dict[str, Any]:
        return {p.name: p.default for p in inspect.signature(self.builder).parameters.values()}


_REGISTRY: dict[str, AugmentSpec] = {}


def register(name: str, *, primary: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: make an op builder usable in `dataset.augment` under `name`. A builder checks its arguments
    and raises ConfigError naming `dataset.augment.<name>.<argument>`."""

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"augmentation '{name}' is already registered")
        _REGISTRY[name] = AugmentSpec(name, builder, primary, (builder.__doc__ or "").strip())
        return builder

    return decorate


def registered(name: str) -> AugmentSpec | None:
    """The augmentation registered as `name`, None if there is none (yet: the policies register when loaded)."""
    return _REGISTRY.get(name)


def registered_names() -> list[str]:
    """The names registered so far, sorted."""
    return sorted(_REGISTRY)


def number(label: str, value: Any, low: float, high: float, *, whole: bool = False, open_low: bool = False) -> Any:
    """`value` if it is a number (a whole one when asked) in [low, high] ((low, high] with open_low), else a
    ConfigError naming `dataset.augment.<label>`."""
    kind = "a whole number" if whole else "a number"
    ok_type = isinstance(value, int) if whole else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise ConfigError(f"{KEY}.{label}={value}: expected {kind}")
    if (value <= low if open_low else value < low) or value > high:
        left = "(" if open_low else "["
        bound = f"> {low}" if open_low else f">= {low}"
        span = bound if high == math.inf else f"in {left}{low}, {high}]"
        raise ConfigError(f"{KEY}.{label}={value}: must be {span}")
    return value


def number_range(label: str, value: Any, low: float, high: float) -> tuple[float, float]:
    """A [min, max] pair of numbers within [low, high], min <= max."""
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError(f"{KEY}.{label}={value}: expected [min, max]")
    a, b = (number(label, v, low, high) for v in value)
    if a > b:
        raise ConfigError(f"{KEY}.{label}=[{a}, {b}]: min must be <= max")
    return float(a), float(b)
