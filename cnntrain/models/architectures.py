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
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from cnntrain.errors import ModelConfigError, did_you_mean, first_line
from cnntrain.models.registry import ArgError, Shape, fmt_shape, register

SMALL_INPUT = 64  # small_input: auto takes the stem's downsampling out below this many pixels
WEIGHT_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
AUX_HEADS = ("AuxLogits.", "aux1.", "aux2.")  # inception/googlenet side heads: never used here, never loaded
_SAVED_WEIGHTS: ContextVar[bool] = ContextVar("saved_weights", default=False)


@contextlib.contextmanager
def saved_weights() -> Iterator[None]:
    """Build models without loading pretrained weights: the caller loads a checkpoint over them."""
    token = _SAVED_WEIGHTS.set(True)
    try:
        yield
    finally:
        _SAVED_WEIGHTS.reset(token)


@dataclass(frozen=True)
class Expects:
    """The preprocessing named weights were trained with: resolution (None: any) and per-channel mean/std."""

    size: tuple[int, int] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]


class Architecture(nn.Module):
    """A named network with its preprocessing: resize on the device, then the network.

    `head` is the dotted name of the classifier inside `net` (None when the layer outputs features); every
    other parameter is the backbone, which fine-tuning can freeze (its BatchNorm then stays in eval mode).
    """

    def __init__(self, net: nn.Module, head: str | None, resize: tuple[int, int] | None, expects: Expects | None,
                 normalize: str) -> None:
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
                for values in (arch.expects.mean, arch.expects.std))
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
def torchvision_layer(in_shape: Shape, arch: str, weights: str | None = None, classes: int | None = None,
                      small_input: Any = "auto", resize: Any = "auto", normalize: str = "weights") -> nn.Module:
    """A torchvision classification model by name (resnet18, mobilenet_v3_small, efficientnet_b0, ...)."""
    return _build(TorchvisionSource(), in_shape, arch, weights, classes, small_input, resize, normalize)


@register("timm", primary="arch", describe=_describe)
def timm_layer(in_shape: Shape, arch: str, weights: str | None = None, classes: int | None = None,
               small_input: Any = "auto", resize: Any = "auto", normalize: str = "weights") -> nn.Module:
    """A timm model by name (pip install 'cnntrain[timm]'); weights: a pretrained tag such as a1_in1k."""
    return _build(TimmSource(), in_shape, arch, weights, classes, small_input, resize, normalize)


def _build(source: Source, in_shape: Shape, arch: Any, weights: Any, classes: Any, small_input: Any, resize: Any,
           normalize: Any) -> nn.Module:
    if len(in_shape) != 3:
        raise ModelConfigError(f"input is {fmt_shape(in_shape)}, but {source.layer} needs a CxHxW image input")
    if not isinstance(arch, str) or not arch:
        raise ArgError(f"arch must be an architecture name, got {arch!r}")
    if classes is not None and (isinstance(classes, bool) or not isinstance(classes, int) or classes < 1):
        raise ArgError(f"classes must be a whole number >= 1, or null for the features, got {classes!r}")
    if not isinstance(small_input, bool) and small_input != "auto":
        raise ArgError(f"small_input must be true, false or auto (true under {SMALL_INPUT} pixels), got "
                       f"{small_input!r}")
    if normalize not in ("weights", "data"):
        raise ArgError(f"normalize must be weights (their mean/std) or data (the dataset's), got {normalize!r}")
    if weights is not None and (not isinstance(weights, str) or not weights):
        raise ArgError(f"weights must be a weights name, a pretrained tag or a file path, got {weights!r}")
    source.check_arch(arch)
    channels = in_shape[0]
    named = weights is not None and not _is_file_name(weights)
    expects = source.expects(arch, weights) if named else None
    size = _resize(resize, expects)
    if small_input == "auto":
        small_input = min(size or in_shape[1:]) < SMALL_INPUT
    net = source.pretrained(arch, weights) if named and not _SAVED_WEIGHTS.get() else source.create(arch)
    state = None
    if weights is not None and not named and not _SAVED_WEIGHTS.get():
        state = read_weights(weights)
    head = source.head(net)
    stem = _first_conv(net)
    if state is not None:
        _fit_to_file(net, state, stem, head, arch, weights)
        load_exactly(net, state, weights, arch)
    _set_stem_channels(net, stem, channels)
    if small_input:
        _small_stem(net, stem)
    head = _set_head(net, head, classes)
    module = Architecture(net, head, size, expects, normalize)
    _check_downsampling(module, (channels, *(size or in_shape[1:])), arch, small_input)
    return module


def _is_file_name(weights: str) -> bool:
    return os.sep in weights or "/" in weights or weights.endswith(WEIGHT_FILE_SUFFIXES) or Path(weights).exists()


def _resize(resize: Any, expects: Expects | None) -> tuple[int, int] | None:
    if resize == "auto":
        return expects.size if expects is not None else None
    if resize is None or resize is False:
        return None
    if isinstance(resize, int) and not isinstance(resize, bool) and resize >= 1:
        return resize, resize
    if (isinstance(resize, (list, tuple)) and len(resize) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in resize)):
        return int(resize[0]), int(resize[1])
    raise ArgError(f"resize must be auto (the weights' resolution), null, a size or [height, width], got {resize!r}")


# ---------------------------------------------------------------------------------------------- sources


class Source:
    """Where architectures and their named weights come from."""

    layer = ""

    def names(self) -> list[str]: ...

    def check_arch(self, arch: str) -> None:
        names = self.names()
        if arch not in names:
            raise ArgError(f"unknown {self.layer} architecture {arch!r}{did_you_mean(arch, names)}; list them with: "
                           f"{self.listing}")

    listing = ""

    def create(self, arch: str) -> nn.Module: ...

    def pretrained(self, arch: str, weights: str) -> nn.Module: ...

    def expects(self, arch: str, weights: str) -> Expects: ...

    def head(self, net: nn.Module) -> str | None:
        return _last_classifier(net)


class TorchvisionSource(Source):
    layer = "torchvision"
    listing = "python -c 'import torchvision; print(torchvision.models.list_models(torchvision.models))'"

    def names(self) -> list[str]:
        from torchvision import models

        return models.list_models(module=models)

    def create(self, arch: str) -> nn.Module:
        from torchvision import models

        kwargs = {"aux_logits": False, "init_weights": True} if arch in ("googlenet", "inception_v3") else {}
        return models.get_model(arch, weights=None, **kwargs)

    def _weights(self, arch: str, weights: str) -> Any:
        from torchvision import models

        enum = models.get_model_weights(arch)
        names = list(enum.__members__)
        if weights not in names:
            raise ArgError(f"unknown weights {weights!r} for {arch}{did_you_mean(weights, names)}; available: "
                           f"{', '.join(names)}, or a path to a weights file")
        return enum[weights]

    def expects(self, arch: str, weights: str) -> Expects:
        transforms = self._weights(arch, weights).transforms()
        crop = list(transforms.crop_size)
        return Expects((crop[0], crop[-1]), tuple(transforms.mean), tuple(transforms.std))

    def pretrained(self, arch: str, weights: str) -> nn.Module:
        from torchvision import models

        chosen = self._weights(arch, weights)
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(chosen.url)
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # torch.hub's "Downloading: ..." line
                state = chosen.get_state_dict(progress=False, check_hash=True)
        except Exception as err:  # no network (URLError), a proxy's refusal, a torn download: one line
            raise ModelConfigError(
                f"weights {arch} {weights} are not in the cache ({cached}) and could not be downloaded "
                f"({first_line(err)}); download {chosen.url} on a machine with internet into that folder, or set "
                f"weights: /path/to/{cached.name}") from None
        side_heads = arch in ("googlenet", "inception_v3")
        kwargs = {"aux_logits": False, "init_weights": False} if side_heads else {}
        net = models.get_model(arch, weights=None, num_classes=len(chosen.meta.get("categories") or range(1000)),
                               **kwargs)
        state = {key: value for key, value in state.items() if not key.startswith(AUX_HEADS)}
        load_exactly(net, state, f"{arch} {weights}", arch)
        return net


class TimmSource(Source):
    layer = "timm"
    listing = "python -c 'import timm; print(timm.list_models())'"

    def _timm(self) -> Any:
        try:
            import timm
        except ImportError:
            raise ModelConfigError("the timm layer needs timm: pip install 'cnntrain[timm]'") from None
        return timm

    def names(self) -> list[str]:
        return self._timm().list_models()

    def create(self, arch: str) -> nn.Module:
        return self._timm().create_model(arch, pretrained=False)

    def _tag(self, arch: str, weights: str) -> str:
        full = weights if weights.startswith(f"{arch}.") else f"{arch}.{weights}"
        tags = self._timm().list_pretrained(f"{arch}.*")
        if full not in tags:
            shown = [tag.removeprefix(f"{arch}.") for tag in tags]
            raise ArgError(f"unknown weights {weights!r} for {arch}{did_you_mean(weights, shown)}; available: "
                           f"{', '.join(shown) or 'none'}, or a path to a weights file")
        return full

    def expects(self, arch: str, weights: str) -> Expects:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(self._tag(arch, weights))
        size = tuple(cfg.input_size[1:]) if cfg.input_size else None
        return Expects(size, tuple(cfg.mean), tuple(cfg.std))  # type: ignore[arg-type]

    def pretrained(self, arch: str, weights: str) -> nn.Module:
        tag = self._tag(arch, weights)
        try:
            return self._timm().create_model(tag, pretrained=True)
        except Exception as err:  # offline without the file in the Hugging Face cache
            from huggingface_hub.constants import HF_HUB_CACHE

            raise ModelConfigError(
                f"weights {tag} are not in the Hugging Face cache ({HF_HUB_CACHE}) and could not be downloaded "
                f"({first_line(err)}); on a machine with internet run `huggingface-cli download timm/{tag}` and "
                f"copy the cache, or set weights: /path/to/a/weights/file") from None

    def head(self, net: nn.Module) -> str | None:
        classifier = getattr(net, "pretrained_cfg", {}).get("classifier")
        if isinstance(classifier, str):
            try:
                module = net.get_submodule(classifier)
            except AttributeError:
                module = None
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                return classifier
        return _last_classifier(net)


# ---------------------------------------------------------------------------------------------- weights


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """A weights file as a state dict: a bare state dict, or a checkpoint that holds one under 'state_dict',
    'model' or 'model_state_dict' (cnntrain's checkpoints among them)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ArgError(f"weights file {file} not found; give a torchvision weights name, a timm tag, or an existing "
                       f"file")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            found: Any = load_file(str(file))
        else:
            found = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelConfigError(f"weights file {file} cannot be read ({first_line(err)}); it is not a PyTorch "
                               f"state dict or checkpoint") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(found, dict) and isinstance(found.get(key), dict):
            found = found[key]
            break
    if not isinstance(found, dict) or not found or not all(isinstance(v, torch.Tensor) for v in found.values()):
        raise ModelConfigError(f"weights file {file} holds no state dict (a mapping of names to tensors)")
    return found


def load_exactly(net: nn.Module, state: dict[str, torch.Tensor], what: str, arch: str) -> None:
    """Load every tensor of `state` into `net`; keys or shapes that do not fit are one line naming the first."""
    own = net.state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    reshaped = [f"{key} {list(state[key].shape)} vs {list(own[key].shape)}" for key in own
                if key in state and state[key].shape != own[key].shape]
    problems = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", reshaped)) if keys]
    if problems:
        raise ModelConfigError(f"weights {what} do not fit {arch}: {'; '.join(problems)}")
    net.load_state_dict(state)


def _fit_to_file(net: nn.Module, state: dict[str, torch.Tensor], stem: str, head: str | None, arch: str,
                 weights: str) -> None:
    """Make `net` take the file's tensors: keys with the file's prefix ('module.', a cnntrain checkpoint's
    '0.net.') are stripped, and the stem and head are sized as in the file (the run adapts them after)."""
    suffix = f"{stem}.weight"
    prefixes = [key[:-len(suffix)] for key in state if key.endswith(suffix)]
    prefix = min(prefixes, key=len) if prefixes else ""
    if prefix:
        kept = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        state.clear()
        state.update(kept)
    for key in [key for key in state if key.startswith(AUX_HEADS)]:
        del state[key]
    stem_weight = state.get(suffix)
    if stem_weight is not None and stem_weight.dim() == 4:
        _set_stem_channels(net, stem, stem_weight.shape[1])
    head_weight = state.get(f"{head}.weight") if head else None
    if head_weight is not None:
        _set_head(net, head, head_weight.shape[0])


# ---------------------------------------------------------------------------------------------- surgery


def _first_conv(net: nn.Module) -> str:
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            return name
    raise ModelConfigError("has no convolution to take the input's channels")


def _last_classifier(net: nn.Module) -> str | None:
    """The classifier: the last Linear layer (a last 1x1 Conv2d for squeezenet-like nets)."""
    linear = [name for name, module in net.named_modules() if isinstance(module, nn.Linear)]
    if linear:
        return linear[-1]
    convs = [name for name, module in net.named_modules() if isinstance(module, nn.Conv2d)]
    return convs[-1] if convs else None


def _set_stem_channels(net: nn.Module, stem: str, channels: int) -> None:
    """The stem convolution takes `channels` inputs: pretrained RGB filters summed for one channel, otherwise
    repeated over the channels and rescaled (timm's adapt_input_conv), so the response keeps its size."""
    conv = net.get_submodule(stem)
    if conv.in_channels == channels:
        return
    if conv.groups != 1:
        raise ModelConfigError(f"its stem {stem} is a grouped convolution; give it {conv.in_channels}-channel images")
    weight = conv.weight.detach()
    if channels == 1:
        adapted = weight.sum(dim=1, keepdim=True)
    else:
        repeats = -(-channels // weight.shape[1])
        adapted = weight.repeat(1, repeats, 1, 1)[:, :channels] * (weight.shape[1] / channels)
    conv.in_channels = channels
    conv.weight = nn.Parameter(adapted.contiguous())


def _small_stem(net: nn.Module, stem: str) -> None:
    """No early downsampling: the stem convolution at stride 1, and a max-pool before the next conv removed."""
    conv = net.get_submodule(stem)
    conv.stride = (1, 1)
    seen_stem = False
    for name, module in list(net.named_modules()):
        if name == stem:
            seen_stem = True
        elif seen_stem and isinstance(module, nn.Conv2d):
            return
        elif seen_stem and isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            _replace(net, name, nn.Identity())
            return


def _set_head(net: nn.Module, head: str | None, classes: int | None) -> str | None:
    """A new classifier for `classes` (kept when it already has that many outputs); None: no head (features)."""
    if head is None:
        if classes is None:
            return None
        raise ModelConfigError("has no classifier layer to size; give classes: null and add your own head")
    old = net.get_submodule(head)
    if classes is None:
        _replace(net, head, nn.Identity())
        return None
    outputs = old.out_features if isinstance(old, nn.Linear) else old.out_channels
    if outputs == classes:
        return head
    if isinstance(old, nn.Linear):
        new: nn.Module = nn.Linear(old.in_features, classes, bias=old.bias is not None)
    else:
        new = nn.Conv2d(old.in_channels, classes, old.kernel_size, bias=old.bias is not None)
    _replace(net, head, new)
    if hasattr(net, "num_classes"):
        net.num_classes = classes
    return head


def _replace(net: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, child, module)


def _check_downsampling(module: Architecture, shape: tuple[int, ...], arch: str, small_input: bool) -> None:
    """An input too small for the network's downsampling is refused before training: a strided convolution or
    pooling that receives a 1-pixel map has nothing left to reduce."""
    found: list[str] = []

    def look(name: str) -> Any:
        def hook(layer: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            stride = getattr(layer, "stride", 1)
            strides = stride if isinstance(stride, (tuple, list)) else (stride, stride)
            image = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            if (not found and image is not None and image.dim() == 4 and max(strides) > 1
                    and min(image.shape[-2:]) == 1):
                found.append(name)
        return hook

    handles = [layer.register_forward_hook(look(name)) for name, layer in module.net.named_modules()
               if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))]
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
        raise ModelConfigError(f"input {fmt_shape(shape)} is too small for {arch}: its downsampling reaches 1x1 "
                               f"before {found[0]}; use {hint}")
