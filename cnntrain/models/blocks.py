"""conv_block: conv, optional batchnorm, activation, optional dropout and pool as one config item (one row)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from cnntrain.errors import ModelConfigError, did_you_mean
from cnntrain.models.layers import bool_arg, choice_arg, probability_arg
from cnntrain.models.registry import (
    ArgError,
    Shape,
    available_layers,
    build,
    fmt_value,
    output_shape,
    parse_item,
    register,
)

BLOCK_PARTS = ["conv", "batchnorm", "activation", "dropout", "pool"]
_ACTIVATION_LABELS = {
    "relu": "ReLU",
    "leaky_relu": "LeakyReLU",
    "gelu": "GELU",
    "silu": "SiLU",
    "tanh": "Tanh",
    "sigmoid": "Sigmoid",
    "identity": "Identity",
}


def _block_order(order: Any, on: dict[str, bool]) -> list[str]:
    """The parts to build, in order: the listed ones that are switched on."""
    order = BLOCK_PARTS if order is None else order
    valid = isinstance(order, (list, tuple)) and all(p in BLOCK_PARTS for p in order)
    if not valid or len(set(order)) != len(order):
        raise ArgError(f"order must list each of {', '.join(BLOCK_PARTS)} at most once, got {order!r}")
    left_out = [p for p in BLOCK_PARTS if on[p] and p not in order]
    if left_out:
        raise ArgError(f"{left_out[0]} is switched on but not listed in order {list(order)}")
    return [p for p in order if on[p]]


def _activation_spec(activation: Any) -> tuple[str, Any]:
    try:
        name, args = parse_item(activation)
    except ModelConfigError:
        raise ArgError(f"activation must be a layer name or a one-key mapping, got {activation!r}") from None
    if name not in available_layers():
        raise ArgError(
            f"unknown activation {name!r}{did_you_mean(name, _ACTIVATION_LABELS)}; "
            f"try one of {', '.join(sorted(_ACTIVATION_LABELS))}"
        )
    return name, args


def _describe_block(given: dict[str, Any], kw: dict[str, Any]) -> str:
    try:
        parts = _block_order(kw["order"], _block_switches(kw))
        act_name, act_arg = _activation_spec(kw["activation"]) if "activation" in parts else ("", None)
    except ModelConfigError:
        return f"{kw['out_channels']}"
    stride = f",s{fmt_value(kw['stride'])}" if kw["stride"] != 1 else ""
    act = _ACTIVATION_LABELS.get(act_name, act_name)
    act += f"({act_arg})" if act_arg is not None and not isinstance(act_arg, Mapping) else ""
    pool = ("MaxPool" if kw["pool_type"] == "max" else "AvgPool") + f"({fmt_value(kw['pool'])}"
    pool += f",p{fmt_value(kw['pool_padding'])})" if kw["pool_padding"] else ")"
    text = {
        "conv": f"Conv({kw['out_channels']},k{fmt_value(kw['kernel_size'])},p{fmt_value(kw['padding'])}{stride})",
        "batchnorm": "BN",
        "activation": act,
        "dropout": ("Drop2d" if kw["dropout2d"] else "Drop") + f"({kw['dropout']})",
        "pool": pool,
    }
    return " ".join(text[p] for p in parts)


def _block_switches(kw: dict[str, Any]) -> dict[str, bool]:
    return {
        "conv": True,
        "batchnorm": kw["batchnorm"] is True,
        "activation": kw["activation"] is not None,
        "dropout": kw["dropout"] != 0,
        "pool": kw["pool"] is not None,
    }


@register("conv_block", primary="out_channels", describe=_describe_block)
def conv_block(
    in_shape: Shape,
    out_channels: int,
    kernel_size: int | list[int] = 3,
    stride: int | list[int] = 1,
    padding: int | list[int] = 1,
    bias: bool = True,
    batchnorm: bool = False,
    activation: Any = "relu",
    dropout: float = 0.0,
    dropout2d: bool = True,
    pool: int | list[int] | None = 2,
    pool_padding: int | list[int] = 0,
    pool_type: str = "max",
    order: list[str] | None = None,
    init: str | None = None,
) -> nn.Module:
    """Conv, optional batchnorm, activation (null for none), optional dropout, optional pool: one row."""
    bool_arg("batchnorm", batchnorm)
    bool_arg("dropout2d", dropout2d)
    probability_arg("dropout", dropout)
    choice_arg("pool_type", pool_type, ["max", "avg"])
    kw = dict(batchnorm=batchnorm, activation=activation, dropout=dropout, pool=pool, order=order)
    recipe = {
        "conv": (
            "conv2d",
            dict(
                out_channels=out_channels, kernel_size=kernel_size, stride=stride, padding=padding, bias=bias, init=init
            ),
        ),
        "batchnorm": ("batchnorm", None),
        "activation": _activation_spec(activation) if activation is not None else None,
        "dropout": ("dropout2d" if dropout2d else "dropout", dropout),
        "pool": (f"{pool_type}pool2d", dict(kernel_size=pool, padding=pool_padding)),
    }
    block, shape = nn.Sequential(), in_shape
    for part in _block_order(order, _block_switches(kw)):
        name, raw = recipe[part]
        try:
            module = build(name, raw, shape)
        except ArgError as err:
            raise ArgError(f"{part}: {err}") from None
        except ModelConfigError as err:
            raise ModelConfigError(f"{part}: {err}") from None
        block.append(module)
        shape = output_shape(module, shape)
    return block
