"""cnntrain: train image CNNs from YAML configs with one command, or from Python.

    import cnntrain
    run = cnntrain.train("model=lenet", "dataset=fashion", **{"trainer.epochs": 3})

The Python API (cnntrain.api) is imported on first use, so `import cnntrain` and `cnntrain --help` stay light.
"""

from __future__ import annotations

import types as _types
from typing import TYPE_CHECKING, Any

import cnntrain.audit as _audit_package  # light: the package's __init__ imports nothing
from cnntrain.version import __version__

_LAZY = {
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
    from cnntrain.api import compose, load, sweep, train
    from cnntrain.errors import UserError
    from cnntrain.results import Run, Sweep


class _CallableAudit(_types.ModuleType):
    """`cnntrain.audit` is both the sub-package that audits data (cnntrain/audit/) and the function
    `cnntrain.audit(...)` (cnntrain.api.audit): Python binds the name to the package whenever one of its modules is
    imported, so the package itself is made callable, the call going to the API."""

    def __call__(self, *overrides: str, **keys: Any) -> Any:
        from cnntrain.api import audit as run_audit  # torch, Hydra: when an audit runs

        return run_audit(*overrides, **keys)


_audit_package.__class__ = _CallableAudit
audit = _audit_package


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cnntrain' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
