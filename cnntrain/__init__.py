"""cnntrain: train image CNNs from YAML configs with one command, or from Python.

    import cnntrain
    run = cnntrain.train("model=lenet", "dataset=fashion", **{"trainer.epochs": 3})

The Python API (cnntrain.api) is imported on first use, so `import cnntrain` and `cnntrain --help` stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cnntrain.version import __version__

_LAZY = {
    "audit": "cnntrain.api",
    "train": "cnntrain.api",
    "sweep": "cnntrain.api",
    "load": "cnntrain.api",
    "compose": "cnntrain.api",
    "Run": "cnntrain.results",
    "Sweep": "cnntrain.results",
    "UserError": "cnntrain.errors",
}
__all__ = ["Run", "Sweep", "UserError", "__version__", "audit", "compose", "load", "sweep", "train"]

if TYPE_CHECKING:
    from cnntrain.api import audit, compose, load, sweep, train
    from cnntrain.errors import UserError
    from cnntrain.results import Run, Sweep


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cnntrain' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
