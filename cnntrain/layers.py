"""The layer registry: every layer a model config can name, one registration each.

A builder is `fn(in_shape, **kwargs) -> nn.Module`. It gets the shape of one sample (no batch dim),
so no config ever states in_channels or in_features. Builders check their arguments and the input
shape first and raise ModelConfigError with a bare message; model.py adds the model name and layer
index. Argument mistakes raise ArgError, so model.py labels them with the layer name only.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

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
    if isinstance(item, str):
        return item, None
    if isinstance(item, Mapping) and len(item) == 1:
        name, args = next(iter(item.items()))
        if isinstance(name, str):
            return name, args
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
    parts = [_fmt(given[spec.primary])] if spec.primary in given else []
    parts += [f"{k}={_fmt(v)}" for k, v in given.items() if k != spec.primary]
    return ", ".join(parts)


def build(name: str, raw: Any, in_shape: Shape) -> nn.Module:
    """Build one layer by name from raw config args (used by composites such as conv_block)."""
    spec = get_spec(name)
    _, kwargs = bind_args(spec, raw)
    return spec.builder(in_shape, **kwargs)


def output_shape(module: nn.Module, in_shape: Shape) -> Shape:
    """Run `module` on one zero sample (CPU, eval, no grad) and return the output's sample shape."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, *in_shape))
    finally:
        module.train(was_training)
    return tuple(out.shape[1:])


def fmt_shape(shape: Shape) -> str:
    """'50x4x4' for images, '800' for flat features."""
    return "x".join(str(d) for d in shape)


def _fmt(value: Any) -> str:
    """3 -> '3', [3, 3] -> '3', [3, 5] -> '3x5'."""
    if isinstance(value, (list, tuple)):
        return str(value[0]) if len(set(map(str, value))) == 1 else "x".join(str(v) for v in value)
    return str(value)


# ---------------------------------------------------------------------------------------------- checks


def _int(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ArgError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def _pair(name: str, value: Any, low: int = 1) -> tuple[int, int]:
    """An int or a two-item list of ints, as (height, width)."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return _int(name, value[0], low), _int(name, value[1], low)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ArgError(f"{name} must be an integer >= {low} or a pair of them, got {value!r}")
    return value, value


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ArgError(f"{name} must be a number, got {value!r}")
    return float(value)


def _probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ArgError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ArgError(f"{name} must be true or false, got {value!r}")
    return value


def _choice(name: str, value: Any, options: list[str]) -> str:
    if value not in options:
        raise ArgError(f"{name} must be one of {', '.join(options)}, got {value!r}")
    return value


def _need_image(name: str, in_shape: Shape) -> tuple[int, int, int]:
    if len(in_shape) != 3:
        raise ModelConfigError(f"input is {fmt_shape(in_shape)}, but {name} needs a CxHxW input")
    return in_shape  # type: ignore[return-value]


def _need_flat(in_shape: Shape) -> int:
    if len(in_shape) != 1:
        raise ModelConfigError(f"input is {fmt_shape(in_shape)}, not flat; add 'flatten' before it")
    return in_shape[0]


def _check_window(in_shape: Shape, kernel: tuple[int, int], padding: tuple[int, int]) -> None:
    """A conv or pool window must fit in the (padded) input."""
    _, h, w = in_shape
    if h + 2 * padding[0] < kernel[0] or w + 2 * padding[1] < kernel[1]:
        padded = f" (with padding {_fmt(padding)})" if any(padding) else ""
        raise ModelConfigError(
            f"input is {fmt_shape(in_shape)}{padded}, smaller than the kernel {fmt_shape(kernel)}"
        )


# ---------------------------------------------------------------------------------------------- init

INITS: dict[str, Callable[[torch.Tensor], Any]] = {
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "kaiming_uniform": partial(nn.init.kaiming_uniform_, nonlinearity="relu"),
    "kaiming_normal": partial(nn.init.kaiming_normal_, nonlinearity="relu"),
    "orthogonal": nn.init.orthogonal_,
    "normal": partial(nn.init.normal_, mean=0.0, std=0.01),
    "zeros": nn.init.zeros_,
}
"""Weight initialisers a layer's `init` key may name; biases keep PyTorch's default."""


def apply_init(weight: torch.Tensor, init: str | None) -> None:
    """Re-initialise `weight` in place with the named initialiser (None keeps PyTorch's default)."""
    if init is None:
        return
    if not isinstance(init, str) or init not in INITS:
        hint = did_you_mean(init, INITS) if isinstance(init, str) else ""
        raise ArgError(f"unknown init {init!r}{hint}; allowed: {', '.join(sorted(INITS))}")
    with torch.no_grad():
        INITS[init](weight)


# ---------------------------------------------------------------------------------------------- layers


def _describe_conv(given: dict[str, Any], kw: dict[str, Any]) -> str:
    text = f"{kw['out_channels']}, k{_fmt(kw['kernel_size'])}"
    text += f", s{_fmt(kw['stride'])}" if kw["stride"] != 1 else ""
    text += f", p{_fmt(kw['padding'])}" if kw["padding"] != 0 else ""
    text += ", no bias" if kw["bias"] is False else ""
    return text + (f", {kw['init']}" if kw["init"] else "")


@register("conv2d", primary="out_channels", describe=_describe_conv)
def conv2d(
    in_shape: Shape,
    out_channels: int,
    kernel_size: int | list[int],
    stride: int | list[int] = 1,
    padding: int | list[int] = 0,
    bias: bool = True,
    init: str | None = None,
) -> nn.Module:
    """2-D convolution; in_channels comes from the input."""
    out_channels = _int("out_channels", out_channels)
    kernel, stride_hw, pad = _pair("kernel_size", kernel_size), _pair("stride", stride), _pair("padding", padding, 0)
    bias = _bool("bias", bias)
    channels, _, _ = _need_image("conv2d", in_shape)
    _check_window(in_shape, kernel, pad)
    layer = nn.Conv2d(channels, out_channels, kernel, stride=stride_hw, padding=pad, bias=bias)
    apply_init(layer.weight, init)
    return layer


@register("linear", primary="out_features")
def linear(in_shape: Shape, out_features: int, bias: bool = True, init: str | None = None) -> nn.Module:
    """Fully connected layer; in_features comes from the (flat) input."""
    out_features, bias = _int("out_features", out_features), _bool("bias", bias)
    layer = nn.Linear(_need_flat(in_shape), out_features, bias=bias)
    apply_init(layer.weight, init)
    return layer


@register("batchnorm")
def batchnorm(in_shape: Shape, eps: float = 1e-5, momentum: float = 0.1) -> nn.Module:
    """BatchNorm1d on flat features, BatchNorm2d on CxHxW maps."""
    eps, momentum = _number("eps", eps), _number("momentum", momentum)
    if len(in_shape) == 1:
        return nn.BatchNorm1d(in_shape[0], eps=eps, momentum=momentum)
    if len(in_shape) == 3:
        return nn.BatchNorm2d(in_shape[0], eps=eps, momentum=momentum)
    raise ModelConfigError(f"input is {fmt_shape(in_shape)}, but batchnorm needs a flat or CxHxW input")


@register("relu")
def relu(in_shape: Shape) -> nn.Module:
    """max(0, x)."""
    return nn.ReLU()


@register("leaky_relu", primary="negative_slope")
def leaky_relu(in_shape: Shape, negative_slope: float = 0.01) -> nn.Module:
    """ReLU with a small slope for negative inputs."""
    return nn.LeakyReLU(_number("negative_slope", negative_slope))


@register("gelu")
def gelu(in_shape: Shape) -> nn.Module:
    """Gaussian error linear unit."""
    return nn.GELU()


@register("silu")
def silu(in_shape: Shape) -> nn.Module:
    """x * sigmoid(x), a.k.a. swish."""
    return nn.SiLU()


@register("tanh")
def tanh(in_shape: Shape) -> nn.Module:
    """Hyperbolic tangent."""
    return nn.Tanh()


@register("sigmoid")
def sigmoid(in_shape: Shape) -> nn.Module:
    """Logistic sigmoid."""
    return nn.Sigmoid()


@register("dropout", primary="p")
def dropout(in_shape: Shape, p: float = 0.5) -> nn.Module:
    """Zero single activations with probability p while training."""
    return nn.Dropout(_probability("p", p))


@register("dropout2d", primary="p")
def dropout2d(in_shape: Shape, p: float = 0.5) -> nn.Module:
    """Zero whole channels with probability p while training."""
    p = _probability("p", p)
    if len(in_shape) != 3:
        raise ModelConfigError(f"input is {fmt_shape(in_shape)}, but dropout2d needs a CxHxW input; use 'dropout'")
    return nn.Dropout2d(p)


def _pool(kind: type[nn.Module], name: str, in_shape: Shape, kernel_size: Any, stride: Any, padding: Any) -> nn.Module:
    kernel = _pair("kernel_size", kernel_size)
    stride_hw = kernel if stride is None else _pair("stride", stride)
    pad = _pair("padding", padding, 0)
    if pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:
        raise ArgError(f"padding {_fmt(pad)} is more than half the kernel {fmt_shape(kernel)}")
    _need_image(name, in_shape)
    _check_window(in_shape, kernel, pad)
    return kind(kernel, stride=stride_hw, padding=pad)


@register("maxpool2d", primary="kernel_size")
def maxpool2d(in_shape: Shape, kernel_size: int | list[int], stride: Any = None, padding: Any = 0) -> nn.Module:
    """Max pooling; stride defaults to the kernel size."""
    return _pool(nn.MaxPool2d, "maxpool2d", in_shape, kernel_size, stride, padding)


@register("avgpool2d", primary="kernel_size")
def avgpool2d(in_shape: Shape, kernel_size: int | list[int], stride: Any = None, padding: Any = 0) -> nn.Module:
    """Average pooling; stride defaults to the kernel size."""
    return _pool(nn.AvgPool2d, "avgpool2d", in_shape, kernel_size, stride, padding)


@register("adaptive_avgpool2d", primary="output_size")
def adaptive_avgpool2d(in_shape: Shape, output_size: int | list[int] = 1) -> nn.Module:
    """Average-pool any HxW down to output_size, so the head does not depend on the image size."""
    size = _pair("output_size", output_size)
    _need_image("adaptive_avgpool2d", in_shape)
    return nn.AdaptiveAvgPool2d(size)


@register("flatten")
def flatten(in_shape: Shape) -> nn.Module:
    """CxHxW -> C*H*W features, ready for linear."""
    return nn.Flatten()


@register("log_softmax")
def log_softmax(in_shape: Shape) -> nn.Module:
    """Log-probabilities over the features; a model ending with it is trained with NLLLoss."""
    _need_flat(in_shape)
    return nn.LogSoftmax(dim=1)


@register("identity")
def identity(in_shape: Shape) -> nn.Module:
    """Does nothing; handy as a placeholder in sweeps."""
    return nn.Identity()


# ---------------------------------------------------------------------------------------------- conv_block

BLOCK_PARTS = ["conv", "batchnorm", "activation", "dropout", "pool"]
_ACTIVATION_LABELS = {"relu": "ReLU", "leaky_relu": "LeakyReLU", "gelu": "GELU", "silu": "SiLU",
                      "tanh": "Tanh", "sigmoid": "Sigmoid", "identity": "Identity"}


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
    if name not in _REGISTRY:
        raise ArgError(f"unknown activation {name!r}{did_you_mean(name, _ACTIVATION_LABELS)}; "
                       f"try one of {', '.join(sorted(_ACTIVATION_LABELS))}")
    return name, args


def _describe_block(given: dict[str, Any], kw: dict[str, Any]) -> str:
    try:
        parts = _block_order(kw["order"], _block_switches(kw))
        act_name, act_arg = _activation_spec(kw["activation"]) if "activation" in parts else ("", None)
    except ModelConfigError:
        return f"{kw['out_channels']}"
    stride = f",s{_fmt(kw['stride'])}" if kw["stride"] != 1 else ""
    act = _ACTIVATION_LABELS.get(act_name, act_name)
    act += f"({act_arg})" if act_arg is not None and not isinstance(act_arg, Mapping) else ""
    pool = ("MaxPool" if kw["pool_type"] == "max" else "AvgPool") + f"({_fmt(kw['pool'])}"
    pool += f",p{_fmt(kw['pool_padding'])})" if kw["pool_padding"] else ")"
    text = {
        "conv": f"Conv({kw['out_channels']},k{_fmt(kw['kernel_size'])},p{_fmt(kw['padding'])}{stride})",
        "batchnorm": "BN",
        "activation": act,
        "dropout": ("Drop2d" if kw["dropout2d"] else "Drop") + f"({kw['dropout']})",
        "pool": pool,
    }
    return " ".join(text[p] for p in parts)


def _block_switches(kw: dict[str, Any]) -> dict[str, bool]:
    return {"conv": True, "batchnorm": kw["batchnorm"] is True, "activation": kw["activation"] is not None,
            "dropout": kw["dropout"] != 0, "pool": kw["pool"] is not None}


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
    _bool("batchnorm", batchnorm)
    _bool("dropout2d", dropout2d)
    _probability("dropout", dropout)
    _choice("pool_type", pool_type, ["max", "avg"])
    kw = dict(batchnorm=batchnorm, activation=activation, dropout=dropout, pool=pool, order=order)
    recipe = {
        "conv": ("conv2d", dict(out_channels=out_channels, kernel_size=kernel_size, stride=stride,
                                padding=padding, bias=bias, init=init)),
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
