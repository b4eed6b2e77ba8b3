"""The built-in layers a model config can name, each one registered builder that sizes itself from its input.

Argument checks come first in every builder, so a bad value is reported by name (ArgError) before torch
sees it; shape checks name the input that does not fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

from cnntrain.errors import ModelConfigError, did_you_mean
from cnntrain.models.registry import ArgError, Shape, fmt_shape, fmt_value, register

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


def probability_arg(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ArgError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def bool_arg(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ArgError(f"{name} must be true or false, got {value!r}")
    return value


def choice_arg(name: str, value: Any, options: list[str]) -> str:
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
        padded = f" (with padding {fmt_value(padding)})" if any(padding) else ""
        raise ModelConfigError(f"input is {fmt_shape(in_shape)}{padded}, smaller than the kernel {fmt_shape(kernel)}")


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
    text = f"{kw['out_channels']}, k{fmt_value(kw['kernel_size'])}"
    text += f", s{fmt_value(kw['stride'])}" if kw["stride"] != 1 else ""
    text += f", p{fmt_value(kw['padding'])}" if kw["padding"] != 0 else ""
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
    bias = bool_arg("bias", bias)
    channels, _, _ = _need_image("conv2d", in_shape)
    _check_window(in_shape, kernel, pad)
    layer = nn.Conv2d(channels, out_channels, kernel, stride=stride_hw, padding=pad, bias=bias)
    apply_init(layer.weight, init)
    return layer


@register("linear", primary="out_features")
def linear(in_shape: Shape, out_features: int, bias: bool = True, init: str | None = None) -> nn.Module:
    """Fully connected layer; in_features comes from the (flat) input."""
    out_features, bias = _int("out_features", out_features), bool_arg("bias", bias)
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
    return nn.Dropout(probability_arg("p", p))


@register("dropout2d", primary="p")
def dropout2d(in_shape: Shape, p: float = 0.5) -> nn.Module:
    """Zero whole channels with probability p while training."""
    p = probability_arg("p", p)
    if len(in_shape) != 3:
        raise ModelConfigError(f"input is {fmt_shape(in_shape)}, but dropout2d needs a CxHxW input; use 'dropout'")
    return nn.Dropout2d(p)


def _pool(kind: type[nn.Module], name: str, in_shape: Shape, kernel_size: Any, stride: Any, padding: Any) -> nn.Module:
    kernel = _pair("kernel_size", kernel_size)
    stride_hw = kernel if stride is None else _pair("stride", stride)
    pad = _pair("padding", padding, 0)
    if pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:
        raise ArgError(f"padding {fmt_value(pad)} is more than half the kernel {fmt_shape(kernel)}")
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
