"""What the catalogues of named networks (torchvision_catalogue.py, timm_catalogue.py) share: the interface the
architecture layers build through (architectures.py), and the preprocessing that named weights bring."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cnntrain.errors import did_you_mean
from cnntrain.models.registry import ArgError
from cnntrain.models.surgery import last_classifier


@dataclass(frozen=True)
class Expects:
    """The preprocessing named weights were trained with: resolution (None: any) and per-channel mean/std."""

    size: tuple[int, int] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]


class Catalogue:
    """Where the architectures of one layer kind (`torchvision`, `timm`) and their named weights come from: the
    names it knows, a network by name (fresh or pretrained), the preprocessing named weights expect, its head."""

    layer = ""
    listing = ""  # the command that lists the names, for the message about an unknown one

    def names(self) -> list[str]:
        """The architecture names it knows."""

    def check_arch(self, arch: str) -> None:
        names = self.names()
        if arch not in names:
            raise ArgError(
                f"unknown {self.layer} architecture {arch!r}{did_you_mean(arch, names)}; list them with: {self.listing}"
            )

    def create(self, arch: str) -> nn.Module:
        """The network `arch`, freshly initialised."""

    def pretrained(self, arch: str, weights: str) -> nn.Module:
        """The network `arch` with its named `weights` loaded (from the cache, or downloaded)."""

    def expects(self, arch: str, weights: str) -> Expects:
        """The preprocessing the named `weights` of `arch` were trained with."""

    def head(self, net: nn.Module) -> str | None:
        """The dotted name of the classifier inside `net` (None: it has none)."""
        return last_classifier(net)
