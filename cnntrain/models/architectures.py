"""Whole networks by name as layers of a model config: any torchvision classification model (`torchvision`)
and, with the timm extra, any timm model (`timm`).

    layers:
      - torchvision: {arch: resnet18, weights: IMAGENET1K_V1, classes: ${dataset.num_classes}}

The network is fitted to the data rather than the data to the network: the stem convolution takes the
input's channels (RGB-pretrained weights are summed over their colour channels for one-channel images, as
timm does), `small_input: true` takes the early downsampling out of the stem (stride 1, no stem max-pool) so
28x28 and 32x32 images keep a spatial map, and `classes` sizes a new head (null: no head, the layer outputs
the pooled features, for a custom head after it). Pretrained weights are a torchvision weights name, a timm
pretrained tag, or a local file (state dict or checkpoint); named weights also bring their preprocessing:
the input is resized on the device to their resolution (`resize`) and the run normalises with their
mean/std (`normalize: weights`).

Rebuilding a trained model (eval, predict, export, resume) runs under `saved_weights()`: the checkpoint holds
every tensor, so nothing is downloaded or read again.

Here: the two layers, the Architecture module they build, and the checks of a build. Beside it: the catalogues of
names and named weights (catalogue.py, torchvision_catalogue.py, timm_catalogue.py), weights files (weights.py)
and the stem and head surgery (surgery.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from cnntrain.errors import ModelConfigError, first_line
from cnntrain.models.catalogue import Catalogue, Expects
from cnntrain.models.registry import ArgError, Shape, fmt_shape, register
from cnntrain.models.surgery import first_conv, set_head, set_stem_channels, small_stem
from cnntrain.models.timm_catalogue import TimmCatalogue
from cnntrain.models.torchvision_catalogue import TorchvisionCatalogue
from cnntrain.models.weights import fit_to_file, is_weights_file, load_exactly, read_weights

SMALL_INPUT = 64  # small_input: auto takes the stem's downsampling out below this many pixels
_SAVED_WEIGHTS: ContextVar[bool] = ContextVar("saved_weights", default=False)


@contextlib.contextmanager
def saved_weights() -> Iterator[None]:
    """Build models without loading pretrained weights: the caller loads a checkpoint over them."""
    token = _SAVED_WEIGHTS.set(True)
    try:
        yield
    finally:
        _SAVED_WEIGHTS.reset(token)


class Architecture(nn.Module):
    """A named network with its preprocessing: resize on the device, then the network.

    `head` is the dotted name of the classifier inside `net` (None when the layer outputs features); every
    other parameter is the backbone, which fine-tuning can freeze (its BatchNorm then stays in eval mode).
    """

    def __init__(
        self, net: nn.Module, head: str | None, resize: tuple[int, int] | None, expects: Expects | None, normalize: str
    ) -> None:
        super().__init__()
        self.net = net
        self.head = head
        self.height, self.width = resize if resize else (0, 0)  # 0: no resize (plain ints, for TorchScript)
        self.expects = expects
        self.normalize = normalize
        self.frozen = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.height > 0:
            images = F.interpolate(images, size=(self.height, self.width), mode="bilinear", align_corners=False)
        return self.net(images)

    def summary_blocks(self) -> list[tuple[str, nn.Module]]:
        """The network's top-level blocks, for the model summary."""
        return list(self.net.named_children())

    def backbone_parameters(self) -> list[nn.Parameter]:
        head = {id(p) for p in self.head_parameters()}
        return [p for p in self.net.parameters() if id(p) not in head]

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.net.get_submodule(self.head).parameters()) if self.head else []

    def freeze_backbone(self, frozen: bool) -> None:
        """Stop (or resume) training the backbone: no gradients, and its BatchNorm statistics kept."""
        self.frozen = frozen
        for parameter in self.backbone_parameters():
            parameter.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> Architecture:
        super().train(mode)
        if self.frozen and mode:
            head = set(self.net.get_submodule(self.head).modules()) if self.head else set()
            for module in self.net.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and module not in head:
                    module.eval()
        return self


def architectures(model: nn.Module) -> list[Architecture]:
    """The named networks inside a built model, in order."""
    return [module for module in model.modules() if isinstance(module, Architecture)]


def expected_stats(model: nn.Module, channels: int) -> tuple[list[float], list[float]] | None:
    """The mean/std the model's first named network wants its `channels`-channel input normalised with, when it
    names weights that bring them and was not told `normalize: data`. RGB statistics for a grayscale input are
    averaged, as its stem's filters were summed."""
    for arch in architectures(model):
        if arch.expects is not None and arch.normalize == "weights":
            return tuple(  # type: ignore[return-value]
                list(values) if len(values) == channels else [sum(values) / len(values)] * channels
                for values in (arch.expects.mean, arch.expects.std)
            )
    return None


# ---------------------------------------------------------------------------------------------- layers


def _describe(given: dict[str, Any], kw: dict[str, Any]) -> str:
    parts = [str(kw["arch"])]
    if kw["weights"] is not None:
        parts.append(f"weights={Path(str(kw['weights'])).name}")
    if kw["small_input"] is True:
        parts.append("small input")
    parts.append("features" if kw["classes"] is None else f"{kw['classes']} classes")
    return ", ".join(parts)


@register("torchvision", primary="arch", describe=_describe)
def torchvision_layer(
    in_shape: Shape,
    arch: str,
    weights: str | None = None,
    classes: int | None = None,
    small_input: Any = "auto",
    resize: Any = "auto",
    normalize: str = "weights",
) -> nn.Module:
    """A torchvision classification model by name (resnet18, mobilenet_v3_small, efficientnet_b0, ...)."""
    return _build(TorchvisionCatalogue(), in_shape, arch, weights, classes, small_input, resize, normalize)


@register("timm", primary="arch", describe=_describe)
def timm_layer(
    in_shape: Shape,
    arch: str,
    weights: str | None = None,
    classes: int | None = None,
    small_input: Any = "auto",
    resize: Any = "auto",
    normalize: str = "weights",
) -> nn.Module:
    """A timm model by name (pip install 'cnntrain[timm]'); weights: a pretrained tag such as a1_in1k."""
    return _build(TimmCatalogue(), in_shape, arch, weights, classes, small_input, resize, normalize)


def _build(
    source: Catalogue,
    in_shape: Shape,
    arch: Any,
    weights: Any,
    classes: Any,
    small_input: Any,
    resize: Any,
    normalize: Any,
) -> nn.Module:
    if len(in_shape) != 3:
        raise ModelConfigError(f"input is {fmt_shape(in_shape)}, but {source.layer} needs a CxHxW image input")
    if not isinstance(arch, str) or not arch:
        raise ArgError(f"arch must be an architecture name, got {arch!r}")
    if classes is not None and (isinstance(classes, bool) or not isinstance(classes, int) or classes < 1):
        raise ArgError(f"classes must be a whole number >= 1, or null for the features, got {classes!r}")
    if not isinstance(small_input, bool) and small_input != "auto":
        raise ArgError(
            f"small_input must be true, false or auto (true under {SMALL_INPUT} pixels), got {small_input!r}"
        )
    if normalize not in ("weights", "data"):
        raise ArgError(f"normalize must be weights (their mean/std) or data (the dataset's), got {normalize!r}")
    if weights is not None and (not isinstance(weights, str) or not weights):
        raise ArgError(f"weights must be a weights name, a pretrained tag or a file path, got {weights!r}")
    source.check_arch(arch)
    channels = in_shape[0]
    named = weights is not None and not is_weights_file(weights)
    expects = source.expects(arch, weights) if named else None
    size = _resize(resize, expects)
    if small_input == "auto":
        small_input = min(size or in_shape[1:]) < SMALL_INPUT
    net = source.pretrained(arch, weights) if named and not _SAVED_WEIGHTS.get() else source.create(arch)
    state = None
    if weights is not None and not named and not _SAVED_WEIGHTS.get():
        state = read_weights(weights)
    head = source.head(net)
    stem = first_conv(net)
    if state is not None:
        fit_to_file(net, state, stem, head, arch, weights)
        load_exactly(net, state, weights, arch)
    set_stem_channels(net, stem, channels)
    if small_input:
        small_stem(net, stem)
    head = set_head(net, head, classes)
    module = Architecture(net, head, size, expects, normalize)
    _check_downsampling(module, (channels, *(size or in_shape[1:])), arch, small_input)
    return module


def _resize(resize: Any, expects: Expects | None) -> tuple[int, int] | None:
    if resize == "auto":
        return expects.size if expects is not None else None
    if resize is None or resize is False:
        return None
    if isinstance(resize, int) and not isinstance(resize, bool) and resize >= 1:
        return resize, resize
    if (
        isinstance(resize, (list, tuple))
        and len(resize) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in resize)
    ):
        return int(resize[0]), int(resize[1])
    raise ArgError(f"resize must be auto (the weights' resolution), null, a size or [height, width], got {resize!r}")


def _check_downsampling(module: Architecture, shape: tuple[int, ...], arch: str, small_input: bool) -> None:
    """An input too small for the network's downsampling is refused before training: a strided convolution or
    pooling that receives a 1-pixel map has nothing left to reduce."""
    found: list[str] = []

    def look(name: str) -> Any:
        def hook(layer: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            stride = getattr(layer, "stride", 1)
            strides = stride if isinstance(stride, (tuple, list)) else (stride, stride)
            image = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            if not found and image is not None and image.dim() == 4 and max(strides) > 1 and min(image.shape[-2:]) == 1:
                found.append(name)

        return hook

    handles = [
        layer.register_forward_hook(look(name))
        for name, layer in module.net.named_modules()
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))
    ]
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(torch.zeros(1, *shape))
    except Exception as err:
        raise ModelConfigError(f"{arch} fails on input {fmt_shape(shape)}: {first_line(err)}") from None
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)
    if found:
        hint = "resize: 64 (or larger)" if small_input else "small_input: true (no early downsampling) or resize: 64"
        raise ModelConfigError(
            f"input {fmt_shape(shape)} is too small for {arch}: its downsampling reaches 1x1 "
            f"before {found[0]}; use {hint}"
        )
