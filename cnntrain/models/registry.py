"""The layer registry: every layer a model config can name, one registration each, and how a config
item becomes a call of its builder.

A builder is `fn(in_shape, **kwargs) -> nn.Module`. It gets the shape of one sample (no batch dim),
so no config ever states in_channels or in_features. Builders check their arguments and the input
shape first and raise ModelConfigError with a bare message; the builder of a whole model
(cnntrain.models.builder) adds the model name and layer index. Argument mistakes raise ArgError, so
they are labelled with the layer name only. The built-in layers live in cnntrain.models.layers and
cnntrain.models.blocks; the package registers them when it is first imported.

A layer's module may define `summary_blocks(self) -> list[tuple[str, nn.Module]]`: its top-level blocks in
forward order (a whole network's stem, stages and head), which the summary then shows under its row.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnntrain.config.named_items import named_item
from cnntrain.errors import ModelConfigError, did_you_mean

Shape = tuple[int, ...]
Builder = Callable[..., nn.Module]


class ArgError(ModelConfigError):
    """A bad argument value (type, range, name): the message names the argument, not the shapes."""


@dataclass(frozen=True)
class LayerSpec:
    """One registered layer: its builder, the argument the scalar shorthand fills, and a help line."""

    name: str
    builder: Builder
    primary: str | None
    doc: str
    describe: Callable[[dict[str, Any], dict[str, Any]], str] | None

    @property
    def arguments(self) -> dict[str, Any]:
        """Argument name -> default (inspect.Parameter.empty when required), in_shape left out."""
        params = list(inspect.signature(self.builder).parameters.values())[1:]
        return {p.name: p.default for p in params}


_REGISTRY: dict[str, LayerSpec] = {}


def register(
    name: str,
    *,
    primary: str | None = None,
    doc: str = "",
    describe: Callable[[dict[str, Any], dict[str, Any]], str] | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator: make a builder usable from a config under `name`.

    `describe(given, kwargs)` may return the summary's details text; by default it is built from
    the arguments the user wrote (`given`), the primary one first.
    """

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"layer '{name}' is already registered")
        spec = LayerSpec(name, builder, primary, doc or (builder.__doc__ or "").strip(), describe)
        if primary is not None and primary not in spec.arguments:
            raise ValueError(f"layer '{name}': primary '{primary}' is not an argument of its builder")
        _REGISTRY[name] = spec
        return builder

    return decorate


def unregister(name: str) -> None:
    """Remove a layer (for tests and plugins that register temporary layers)."""
    _REGISTRY.pop(name, None)


def available_layers() -> list[str]:
    """Names a config may use, sorted."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> LayerSpec:
    """The registered layer called `name`, or a ModelConfigError that suggests the closest names."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    raise ModelConfigError(
        f"unknown layer {name!r}{did_you_mean(name, _REGISTRY)}; available: {', '.join(available_layers())}"
    )


# ---------------------------------------------------------------------------------------------- parsing


def parse_item(item: Any) -> tuple[str, Any]:
    """Split one config entry into (name, raw args): `relu` -> ('relu', None), `{linear: 500}` -> ('linear', 500)."""
    parsed = named_item(item)
    if parsed is not None and isinstance(parsed[0], str):
        return parsed
    raise ModelConfigError(f"each layer is a name or a one-key mapping, got {item!r}")


def bind_args(spec: LayerSpec, raw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check raw args against the builder's signature; return (what the user gave, full kwargs)."""
    if raw is None:
        given: dict[str, Any] = {}
    elif isinstance(raw, Mapping):
        given = {str(k): v for k, v in raw.items()}
    elif not spec.arguments:
        raise ArgError(f"takes no arguments, got {raw!r}")
    elif spec.primary is None:
        raise ArgError(f"takes no shorthand value, got {raw!r}; write its arguments as a mapping")
    else:
        given = {spec.primary: raw}
    allowed = spec.arguments
    for key in given:
        if key not in allowed:
            options = ", ".join(sorted(allowed)) or "none"
            raise ArgError(f"unknown argument {key!r}{did_you_mean(key, allowed)}; allowed: {options}")
    missing = [k for k, d in allowed.items() if d is inspect.Parameter.empty and k not in given]
    if missing:
        raise ArgError(f"missing required argument {missing[0]!r}")
    kwargs = {k: d for k, d in allowed.items() if d is not inspect.Parameter.empty}
    kwargs.update(given)
    return given, kwargs


def describe(spec: LayerSpec, given: dict[str, Any], kwargs: dict[str, Any]) -> str:
    """Short text of a layer's arguments for tables and error labels, e.g. '500' or '2, padding=1'."""
    if spec.describe is not None:
        return spec.describe(given, kwargs)
    parts = [fmt_value(given[spec.primary])] if spec.primary in given else []
    parts += [f"{k}={fmt_value(v)}" for k, v in given.items() if k != spec.primary]
    return ", ".join(parts)


def build(name: str, raw: Any, in_shape: Shape) -> nn.Module:
    """Build one layer by name from raw config args (used by composites such as conv_block)."""
    spec = get_spec(name)
    _, kwargs = bind_args(spec, raw)
    return spec.builder(in_shape, **kwargs)


def output_shape(module: nn.Module, in_shape: Shape) -> Shape:
    """Run `module` on one zero sample (CPU, eval, no grad) and return the output's sample shape."""
    return tuple(_forward_one(module, in_shape).shape[1:])


@dataclass(frozen=True)
class BlockRun:
    """What one of a layer's summary blocks did in the dry run."""

    name: str
    module: nn.Module
    output_shape: Shape  # () when the block did not run or its output is not a tensor
    macs: int


@dataclass(frozen=True)
class DryRun:
    """One forward pass of a layer on one sample: what the summary shows about it, measured once."""

    output_shape: Shape
    macs: int  # multiply-adds of conv/linear/matmul: FlopCounterMode's FLOPs / 2
    blocks: tuple[BlockRun, ...] = ()


def dry_run(module: nn.Module, in_shape: Shape, count_macs: bool = True) -> DryRun:
    """Run `module` on one zero sample (CPU, eval, no grad) and measure its output shape and multiply-adds
    (0 unless count_macs), and those of its summary_blocks(), in that one pass, so building a model runs it once."""
    blocks = summary_blocks(module)
    shapes: dict[int, Shape] = {}
    flops = [0] * len(blocks)
    handles = []
    with FlopCounterMode(display=False) if count_macs else _NoCounter() as counter:
        for i, (_, block) in enumerate(blocks):

            def before(_module: nn.Module, _args: Any, i: int = i) -> None:
                flops[i] -= counter.get_total_flops()

            def after(_module: nn.Module, _args: Any, out: Any, i: int = i) -> None:
                flops[i] += counter.get_total_flops()
                shapes[i] = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else ()

            handles += [block.register_forward_pre_hook(before), block.register_forward_hook(after)]
        try:
            out = _forward_one(module, in_shape)
        finally:
            for handle in handles:
                handle.remove()
    runs = tuple(BlockRun(name, block, shapes.get(i, ()), flops[i] // 2) for i, (name, block) in enumerate(blocks))
    return DryRun(tuple(out.shape[1:]), counter.get_total_flops() // 2, runs)


class _NoCounter:
    """FlopCounterMode's place when MACs are not wanted: counts nothing."""

    def __enter__(self) -> _NoCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def get_total_flops(self) -> int:
        return 0


def summary_blocks(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The module's own (name, block) list when it defines summary_blocks(), else none; checked, since a
    wrong answer would otherwise surface as a puzzling hook error."""
    method = getattr(module, "summary_blocks", None)
    if not callable(method):
        return []
    blocks = list(method())
    for entry in blocks:
        ok = isinstance(entry, tuple) and len(entry) == 2
        if not ok or not isinstance(entry[0], str) or not isinstance(entry[1], nn.Module):
            raise TypeError(f"summary_blocks() must return (name, module) pairs, got {entry!r}")
    return blocks


def _forward_one(module: nn.Module, in_shape: Shape) -> torch.Tensor:
    """The module's output for one zero sample, in eval mode without grad; its train/eval mode restored."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            return module(torch.zeros(1, *in_shape))
    finally:
        module.train(was_training)


def fmt_shape(shape: Shape) -> str:
    """'50x4x4' for images, '800' for flat features."""
    return "x".join(str(d) for d in shape)


def fmt_value(value: Any) -> str:
    """3 -> '3', [3, 3] -> '3', [3, 5] -> '3x5'."""
    if isinstance(value, (list, tuple)):
        return str(value[0]) if len(set(map(str, value))) == 1 else "x".join(str(v) for v in value)
    return str(value)
