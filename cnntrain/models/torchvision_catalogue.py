"""torchvision's classification models by name, for the `torchvision` layer (architectures.py); torchvision.models
is imported when a network is asked for, not when the layer registry loads."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnntrain.errors import ModelConfigError, did_you_mean, first_line
from cnntrain.models.catalogue import Catalogue, Expects
from cnntrain.models.registry import ArgError
from cnntrain.models.weights import AUX_HEADS, load_exactly


class TorchvisionCatalogue(Catalogue):
    """Every torchvision classification model, and its weights enums (IMAGENET1K_V1, ...) downloaded through
    torch.hub's cache."""

    layer = "torchvision"
    listing = "python -c 'import torchvision; print(torchvision.models.list_models(torchvision.models))'"

    def names(self) -> list[str]:
        from torchvision import models  # only when a torchvision layer is built: it takes a second to import

        return models.list_models(module=models)

    def create(self, arch: str) -> nn.Module:
        from torchvision import models  # only when a torchvision layer is built: it takes a second to import

        kwargs = {"aux_logits": False, "init_weights": True} if arch in ("googlenet", "inception_v3") else {}
        return models.get_model(arch, weights=None, **kwargs)

    def _weights(self, arch: str, weights: str) -> Any:
        from torchvision import models  # only when a torchvision layer is built: it takes a second to import

        enum = models.get_model_weights(arch)
        names = list(enum.__members__)
        if weights not in names:
            raise ArgError(
                f"unknown weights {weights!r} for {arch}{did_you_mean(weights, names)}; available: "
                f"{', '.join(names)}, or a path to a weights file"
            )
        return enum[weights]

    def expects(self, arch: str, weights: str) -> Expects:
        transforms = self._weights(arch, weights).transforms()
        crop = list(transforms.crop_size)
        return Expects((crop[0], crop[-1]), tuple(transforms.mean), tuple(transforms.std))

    def pretrained(self, arch: str, weights: str) -> nn.Module:
        from torchvision import models  # only when a torchvision layer is built: it takes a second to import

        chosen = self._weights(arch, weights)
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(chosen.url)
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # torch.hub's "Downloading: ..." line
                state = chosen.get_state_dict(progress=False, check_hash=True)
        except Exception as err:  # no network (URLError), a proxy's refusal, a torn download: one line
            raise ModelConfigError(
                f"weights {arch} {weights} are not in the cache ({cached}) and could not be downloaded "
                f"({first_line(err)}); download {chosen.url} on a machine with internet into that folder, or set "
                f"weights: /path/to/{cached.name}"
            ) from None
        side_heads = arch in ("googlenet", "inception_v3")
        kwargs = {"aux_logits": False, "init_weights": False} if side_heads else {}
        net = models.get_model(
            arch, weights=None, num_classes=len(chosen.meta.get("categories") or range(1000)), **kwargs
        )
        state = {key: value for key, value in state.items() if not key.startswith(AUX_HEADS)}
        load_exactly(net, state, f"{arch} {weights}", arch)
        return net
