"""Build a model from its layer list, inferring every size from the input shape; count its parameters and
multiply-adds per image.

One config item becomes one child of an nn.Sequential, so the summary rows, the config lines and the
error messages all use the same 1-based index. This module knows nothing about training.

An input shape may come from someone else's data (a first image of 9000x9000) or checkpoint, so before anything
is allocated the layers are built and run once on the meta device (shapes only, no memory), layer by layer:
a model with more than MAX_PARAMETERS parameters, or a layer whose output for one image holds more than
MAX_VALUES_PER_IMAGE values, is one ModelConfigError before the real build, not gigabytes and then an error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import device, nn

from cnntrain.errors import ModelConfigError, first_line
from cnntrain.models.registry import (
    ArgError,
    DryRun,
    Shape,
    bind_args,
    describe,
    dry_run,
    fmt_shape,
    get_spec,
    parse_item,
)

MAX_PARAMETERS = 1_000_000_000  # 4 GB of float32 weights, before gradients and optimizer state
MAX_VALUES_PER_IMAGE = 1 << 28  # 268,435,456: one layer's output for one image, 1 GiB as float32


@dataclass(frozen=True)
class LayerRow:
    """One line of the model summary: a config item and what it became.

    `macs` are the multiply-adds for one image (conv/linear/matmul weight uses, as OpenMMLab's get_flops and
    timm count them). A layer whose module has summary_blocks() gets one sub-row per block in `blocks`
    (index: the block's 1-based position); they break the layer down and are not counted again in totals.
    """

    index: int
    name: str
    detail: str
    output_shape: Shape
    params: int
    macs: int
    blocks: tuple[LayerRow, ...] = ()


def build_model(
    layers: Sequence[Any], input_shape: Sequence[int], model_name: str = "model", *, count_macs: bool = True
) -> tuple[nn.Sequential, list[LayerRow]]:
    """Build the layers in order, each sized from the previous output; raise ModelConfigError on any mistake.

    count_macs=False leaves the rows' MACs at 0: rebuilding a saved model (eval, predict, export) then does not
    load torch's FLOP counter, whose first use imports about a second of modules a training run needs anyway."""
    items = _plain_layers(layers, model_name)
    shape = _plain_shape(input_shape, model_name)
    check_size(items, shape, model_name)
    model, rows = nn.Sequential(), []
    for index, item in enumerate(items, start=1):
        module, row = _build_one(item, index, shape, model_name, count_macs)
        model.append(module)
        rows.append(row)
        shape = row.output_shape
    return model, rows


def check_size(items: list[Any], shape: Shape, model_name: str = "model") -> None:
    """Raise ModelConfigError when the model on this input would exceed MAX_PARAMETERS or MAX_VALUES_PER_IMAGE,
    found by building and running it on the meta device, which allocates nothing. A layer that fails there is left
    to the real build to report in its own words: every layer before it is within the limits."""
    _check_values(math.prod(shape), shape, model_name, "its input")
    params, current = 0, shape
    with device("meta"):
        for index, item in enumerate(items, start=1):
            try:
                _, row = _build_one(item, index, current, model_name, count_macs=False)
            except Exception:
                return
            params += row.params
            if params > MAX_PARAMETERS:
                raise ModelConfigError(
                    f"model {model_name!r} on input {fmt_shape(shape)}: {params:,} parameters by layer {index} "
                    f"({row.name}), more than the {MAX_PARAMETERS:,} cnntrain builds; use smaller images "
                    f"(dataset.image_size) or a smaller model"
                )
            _check_values(math.prod(row.output_shape), row.output_shape, model_name, f"layer {index} ({row.name})")
            current = row.output_shape


def _check_values(count: int, shape: Shape, model_name: str, what: str) -> None:
    if count > MAX_VALUES_PER_IMAGE:
        raise ModelConfigError(
            f"model {model_name!r}: {what} holds {fmt_shape(shape)} = {count:,} values per image, more than the "
            f"{MAX_VALUES_PER_IMAGE:,} cnntrain allows; set dataset.image_size to a smaller size"
        )


def count_parameters(model: nn.Module) -> int:
    """All parameters (the figure the reference tutorials print), trainable or not."""
    return sum(p.numel() for p in model.parameters())


def check_outputs(rows: list[LayerRow], num_classes: int, model_name: str = "model") -> None:
    """A classifier ends in one score per class: a flat output of num_classes values."""
    shape = rows[-1].output_shape
    fix = f"end its layer list with linear: {num_classes} (or linear: ${{dataset.num_classes}})"
    if len(shape) != 1:
        raise ModelConfigError(
            f"model {model_name!r} ends in {fmt_shape(shape)} outputs, not one score per class; "
            f"add flatten and {fix.removeprefix('end its layer list with ')} at the end"
        )
    if shape[0] != num_classes:
        raise ModelConfigError(
            f"model {model_name!r} ends in {shape[0]} outputs, the dataset has {num_classes} classes; {fix}"
        )


def ends_with_log_softmax(layers: Sequence[Any]) -> bool:
    """True when the last layer is log_softmax: such models already output log-probabilities (NLLLoss)."""
    return last_layer_name(layers) == "log_softmax"


def last_layer_name(layers: Sequence[Any]) -> str | None:
    """The registry name of the model's last layer (None when the list cannot be read: the build says why)."""
    try:
        items = _plain_layers(layers, "model")
        name, _ = parse_item(items[-1])
    except (ModelConfigError, IndexError):
        return None
    return name


def _build_one(
    item: Any, index: int, in_shape: Shape, model_name: str, count_macs: bool = True
) -> tuple[nn.Module, LayerRow]:
    """Parse, check, build and dry-run one config item, turning every failure into one sentence."""
    where = f"model {model_name!r}, layer {index}"
    try:
        name, raw = parse_item(item)
        spec = get_spec(name)
    except ModelConfigError as err:
        raise ModelConfigError(f"{where}: {err}") from err
    try:
        given, kwargs = bind_args(spec, raw)
    except ModelConfigError as err:
        raise ModelConfigError(f"{where} ({name}): {err}") from err
    detail = _safe_describe(spec, given, kwargs)
    label = f"{name} {detail}".strip()
    try:
        module = spec.builder(in_shape, **kwargs)
        if not isinstance(module, nn.Module):
            raise TypeError(f"its builder returned {type(module).__name__}, not a torch module")
        run = dry_run(module, in_shape, count_macs)
    except ArgError as err:
        raise ModelConfigError(f"{where} ({name}): {err}") from err
    except ModelConfigError as err:
        raise ModelConfigError(f"{where} ({label}): {err}") from err
    except Exception as err:
        raise ModelConfigError(f"{where} ({label}): fails on input {fmt_shape(in_shape)}: {first_line(err)}") from err
    return module, LayerRow(index, name, detail, run.output_shape, count_parameters(module), run.macs, _block_rows(run))


def _block_rows(run: DryRun) -> tuple[LayerRow, ...]:
    """The sub-rows of a composite layer, detailed by the block's class (Sequential, Conv2d, ...)."""
    return tuple(
        LayerRow(
            i, block.name, type(block.module).__name__, block.output_shape, count_parameters(block.module), block.macs
        )
        for i, block in enumerate(run.blocks, start=1)
    )


def _safe_describe(spec: Any, given: dict[str, Any], kwargs: dict[str, Any]) -> str:
    """Details text; a describer choking on a bad value must not hide the real error, and a bad value's line
    break or control character (init: "a\\nb") is escaped, so the error that names it stays one line."""
    try:
        text = describe(spec, given, kwargs)
    except Exception:
        return ""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def to_plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _plain_layers(layers: Any, model_name: str) -> list[Any]:
    """The layer list as plain Python, interpolations such as ${dataset.num_classes} resolved."""
    try:
        items = to_plain(layers)
        items = [to_plain(item) for item in items] if isinstance(items, (list, tuple)) else items
    except OmegaConfBaseException as err:
        raise ModelConfigError(f"model {model_name!r}: cannot resolve its layers: {first_line(err)}") from err
    if not isinstance(items, (list, tuple)) or not items:
        raise ModelConfigError(f"model {model_name!r}: layers must be a non-empty list, got {items!r}")
    return list(items)


def _plain_shape(input_shape: Any, model_name: str) -> Shape:
    try:
        shape = to_plain(input_shape)
    except OmegaConfBaseException as err:
        raise ModelConfigError(f"model {model_name!r}: cannot resolve its input_shape: {first_line(err)}") from err
    ok = isinstance(shape, (list, tuple)) and len(shape) > 0
    if not ok or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ModelConfigError(f"model {model_name!r}: input_shape must be a list of positive sizes, got {shape!r}")
    return tuple(shape)
