"""What cnntrain's own composition refuses: callbacks that are not cnntrain's, and `_target_` in its groups.

Hydra instantiates whatever `hydra.callbacks` names when a run or sweep starts, and a config file chosen from
a --config-dir can set it through `# @package _global_`: in Hydra's trust model config files are code.
cnntrain needs no callback but its own sweep summary and instantiates nothing from its config groups (the
layer registry builds models from names), so anything else is refused in one line before Hydra sees it.
Hydra's own launcher and sweeper groups keep their `_target_` (Hydra loads those only from its plugin
package).
"""

from __future__ import annotations

from typing import Any

from cnntrain.errors import ConfigError

OWN_CALLBACKS = {"sweep_summary": {"_target_": "cnntrain.commands.sweep_end.SweepSummary"}}
"""configs/train.yaml's hydra.callbacks: the only ones a composition may hold."""
TARGET = "_target_"


def check_overrides(keys: list[str]) -> None:
    """Override keys (without their +, ++, ~) that would add a callback: refused before anything composes."""
    for key in keys:
        if key in ("hydra.callbacks", "hydra/callbacks") or key.startswith(("hydra.callbacks.", "hydra/callbacks/")):
            raise ConfigError(
                f"override '{key}': cnntrain runs no Hydra callbacks but its own "
                f"({', '.join(OWN_CALLBACKS)}); hydra.callbacks cannot be set"
            )
        if key.rpartition(".")[2] == TARGET and not key.startswith("hydra."):
            raise ConfigError(
                f"override '{key}': cnntrain instantiates nothing from its config; {TARGET} is not "
                f"allowed in its config groups"
            )


def check_composed(cfg: Any) -> None:
    """A composed config (with its `hydra` node when it has one): hydra.callbacks exactly cnntrain's own, no
    `_target_` outside the hydra node. Read unresolved: nothing here runs or resolves."""
    from omegaconf import DictConfig, OmegaConf

    hydra = cfg.get("hydra") if isinstance(cfg, DictConfig) else None
    if hydra is not None:
        callbacks = OmegaConf.to_container(hydra, resolve=False).get("callbacks") or {}
        foreign = (
            [name for name, spec in callbacks.items() if OWN_CALLBACKS.get(name) != spec]
            if isinstance(callbacks, dict)
            else ["(not a mapping)"]
        )
        if foreign:
            raise ConfigError(
                f"hydra.callbacks.{foreign[0]}: cnntrain runs no Hydra callbacks but its own "
                f"({', '.join(OWN_CALLBACKS)}); a config file or override that adds one is refused"
            )
    tree = OmegaConf.to_container(cfg, resolve=False)
    tree.pop("hydra", None)
    found = _target_key(tree, "")
    if found is not None:
        raise ConfigError(
            f"config key '{found}': cnntrain instantiates nothing from its config groups; "
            f"{TARGET} is not allowed there (a config file that sets it is refused)"
        )


def _target_key(tree: Any, prefix: str) -> str | None:
    if isinstance(tree, dict):
        for key, value in tree.items():
            path = f"{prefix}{key}"
            if key == TARGET:
                return path
            found = _target_key(value, f"{path}.")
            if found is not None:
                return found
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found = _target_key(value, f"{prefix.rstrip('.')}[{index}].")
            if found is not None:
                return found
    return None
