"""The "name or {name: arguments}" list format, parsed once for the two lists written in it: a model's layers
(`model.layers`, cnntrain.models.registry) and the augmentations (`dataset.augment`, cnntrain.data.augment).

    - relu                              -> ("relu", None)
    - linear: 500                       -> ("linear", 500)
    - conv2d: {out_channels: 20, ...}   -> ("conv2d", {"out_channels": 20, ...})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def named_item(item: Any) -> tuple[Any, Any] | None:
    """(name, raw arguments) of one list entry: a name alone gives (name, None); a one-key mapping its key and
    value. None when the entry is neither, so that each list words its own error."""
    if isinstance(item, str):
        return item, None
    if isinstance(item, Mapping) and len(item) == 1:
        return next(iter(item.items()))
    return None
