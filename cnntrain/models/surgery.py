"""Head and stem surgery on a named network, so that it fits the data rather than the data the network: the stem
convolution takes the input's channels, `small_input` takes the stem's early downsampling out, and the classifier
is sized for the classes (or removed, for the features)."""

from __future__ import annotations

from torch import nn

from cnntrain.errors import ModelConfigError


def first_conv(net: nn.Module) -> str:
    """The stem: the first convolution, which takes the input's channels."""
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            return name
    raise ModelConfigError("has no convolution to take the input's channels")


def last_classifier(net: nn.Module) -> str | None:
    """The classifier: the last Linear layer (a last 1x1 Conv2d for squeezenet-like nets)."""
    linear = [name for name, module in net.named_modules() if isinstance(module, nn.Linear)]
    if linear:
        return linear[-1]
    convs = [name for name, module in net.named_modules() if isinstance(module, nn.Conv2d)]
    return convs[-1] if convs else None


def set_stem_channels(net: nn.Module, stem: str, channels: int) -> None:
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


def small_stem(net: nn.Module, stem: str) -> None:
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


def set_head(net: nn.Module, head: str | None, classes: int | None) -> str | None:
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
