"""The `audit` extra: cleanlab (confident learning, out-of-distribution scores) and imagehash (perceptual
hashes). Without them the audit is one line saying what to install."""

from __future__ import annotations

import importlib
from typing import Any

from cnntrain.errors import UserError

INSTALL = "pip install 'cnntrain[audit]'"


def require(module: str) -> Any:
    """The module of the audit extra, imported, or a UserError naming it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise UserError(f"cnntrain-audit needs {package}, which is not installed; {INSTALL}") from None


def check_installed() -> None:
    """Refuse before any fold is trained when the extra is missing."""
    require("cleanlab")
    require("imagehash")
