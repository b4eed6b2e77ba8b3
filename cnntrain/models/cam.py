"""Where a model looks: class activation maps (CAM) on its last convolutional stage.

The map itself comes from torchcam's LayerCAM (frgfm/torch-cam): one forward and one backward pass for a
whole batch, each image explained for its own class. LayerCAM weighs every position of the feature map by
its own positive gradient (Grad-CAM averages the gradient over the map first), so on the small maps of
28x28 and 32x32 models the evidence stays where it is instead of being spread by one weight per channel.

The layer is named as the model summary shows it: the `#` of a config item ("2") or of a block inside a
named network ("1.8"), or a name from the summary's layer column when only one row has it ("layer4"). By
default it is the last one whose output is still a feature map larger than 1x1, i.e. the last stage before
the pooling, flatten and head.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from cnntrain.errors import ConfigError, UserError, did_you_mean
from cnntrain.models.registry import fmt_shape, summary_blocks

CAM_METHOD = "LayerCAM"


@dataclass(frozen=True)
class CamLayer:
    """A layer a CAM can be taken at: its summary number and name, the module, and its output [C, H, W]."""

    index: str  # "2", or "1.8" for a block of a named network
    name: str  # as the summary's layer column shows it: conv_block, layer4, ...
    module: nn.Module
    shape: tuple[int, ...]

    @property
    def label(self) -> str:
        return f"{self.index} ({self.name}, {fmt_shape(self.shape)})"


def cam_layers(model: nn.Module, input_shape: tuple[int, ...], names: Sequence[str] | None = None) -> list[CamLayer]:
    """The model's summary rows (config items and their blocks) whose output on one zero sample is a feature map
    with more than one position, in forward order: the layers a CAM can be taken at. `names` are the config
    items' layer names (the summary rows' `name`); without them an item is called by its module's class."""
    rows: list[tuple[str, str, nn.Module]] = []
    for i, (_, item) in enumerate(model.named_children(), 1):
        rows.append((str(i), names[i - 1] if names and i <= len(names) else type(item).__name__.lower(), item))
        rows += [(f"{i}.{j}", name, block) for j, (name, block) in enumerate(summary_blocks(item), 1)]
    shapes: dict[int, tuple[int, ...]] = {}
    handles = [
        module.register_forward_hook(
            lambda _m, _i, out, k=k: (
                shapes.__setitem__(k, tuple(out.shape[1:])) if isinstance(out, torch.Tensor) else None
            )
        )
        for k, (_, _, module) in enumerate(rows)
    ]
    flags = _training_flags(model)
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
        _restore(flags)
    return [
        CamLayer(index, name, module, shapes[k])
        for k, (index, name, module) in enumerate(rows)
        if len(shapes.get(k, ())) == 3 and shapes[k][1] * shapes[k][2] > 1 and not isinstance(module, nn.Identity)
    ]  # a placeholder (timm's norm_pre) repeats the layer before it


def find_cam_layer(
    model: nn.Module, input_shape: tuple[int, ...], name: str | None = None, names: Sequence[str] | None = None
) -> CamLayer | None:
    """The layer `name` names (report.cam_layer), or with None the last feature map before the head (None when
    the model has none, e.g. a model of linear layers only). An unknown name is a ConfigError listing them all."""
    layers = cam_layers(model, input_shape, names)
    if name is None:
        return layers[-1] if layers else None
    name = str(name)
    by_index = [layer for layer in layers if layer.index == name]
    by_name = [layer for layer in layers if layer.name == name]
    if by_index or len(by_name) == 1:
        return (by_index or by_name)[0]
    if not layers:
        raise ConfigError(
            f"report.cam_layer={name}: this model has no layer whose output is a feature map larger "
            f"than 1x1; set report.cam_layer=null (or report.cam=false)"
        )
    why = (
        f"several layers are called '{name}'; give its number"
        if by_name
        else f"no such layer{did_you_mean(name, [layer.index for layer in layers] + [layer.name for layer in layers])}"
    )
    raise ConfigError(
        f"report.cam_layer={name}: {why}; candidates (the model summary's #): "
        f"{', '.join(layer.label for layer in layers)}"
    )


def cam_available() -> bool:
    """Whether torchcam is installed (it is a dependency on Python 3.11+, which its 0.5 release needs)."""
    return importlib.util.find_spec("torchcam") is not None


def class_activation_maps(
    model: nn.Module, layer: CamLayer, inputs: torch.Tensor, classes: torch.Tensor
) -> torch.Tensor:
    """LayerCAM of each normalised input [N, C, H, W] for its class in `classes` [N]: float [N, H, W] in [0, 1]
    (each map scaled to its own peak), upsampled to the input's size. The model is run in eval mode and left as it
    was: its weights, their requires_grad flags, its modes, and no .grad written (gradients are taken with respect
    to the layer's output only; the input asks for them, so a frozen model has a graph too)."""
    if not cam_available():
        raise UserError("class activation maps need torchcam (Python 3.11+): pip install 'torchcam>=0.5,<0.6'")
    from torchcam.methods import LayerCAM  # optional: torchcam is not installed before Python 3.11

    if inputs.shape[0] == 0:
        return torch.zeros(0, *inputs.shape[2:])
    flags = _training_flags(model)
    model.eval()
    try:
        with torch.enable_grad(), LayerCAM(model, target_layer=layer.module) as extractor:
            x = inputs.detach().float().clone().requires_grad_(True)
            scores = model(x)
            (cams,) = extractor(class_idx=[int(c) for c in classes.tolist()], scores=scores)
    finally:
        _restore(flags)
    cams = torch.nan_to_num(cams.detach().float(), nan=0.0)
    if cams.shape[-2:] != inputs.shape[-2:]:
        cams = F.interpolate(
            cams.unsqueeze(1), size=tuple(inputs.shape[-2:]), mode="bilinear", align_corners=False
        ).squeeze(1)
    low = cams.flatten(1).amin(1)[:, None, None]
    high = cams.flatten(1).amax(1)[:, None, None]
    return ((cams - low) / (high - low).clamp(min=1e-8)).cpu()


def predicted_maps(
    model: nn.Module, layer: CamLayer, inputs: torch.Tensor, classes: torch.Tensor, tta: str
) -> torch.Tensor:
    """The maps of what was predicted: with tta='hflip' the prediction averaged the image and its mirror, so the
    map is the mean of both views' maps (the mirror's flipped back), scaled to its peak again; else the plain
    image's map (class_activation_maps)."""
    cams = class_activation_maps(model, layer, inputs, classes)
    if tta != "hflip" or inputs.shape[0] == 0:
        return cams
    mirrored = class_activation_maps(model, layer, inputs.flip(-1), classes).flip(-1)
    mean = (cams + mirrored) / 2
    return mean / mean.flatten(1).amax(1).clamp(min=1e-8)[:, None, None]


def _training_flags(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    return [(module, module.training) for module in model.modules()]


def _restore(flags: list[tuple[nn.Module, bool]]) -> None:
    for module, training in flags:
        module.training = training
