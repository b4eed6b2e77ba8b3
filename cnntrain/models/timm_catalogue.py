"""timm's models by name, for the `timm` layer (architectures.py), with the timm extra (pip install
'cnntrain[timm]'); timm is imported only when a timm network is asked for, so the extra stays optional."""

from __future__ import annotations

from typing import Any

from torch import nn

from cnntrain.errors import ModelConfigError, did_you_mean, first_line
from cnntrain.models.catalogue import Catalogue, Expects
from cnntrain.models.registry import ArgError
from cnntrain.models.surgery import last_classifier


class TimmCatalogue(Catalogue):
    """Every timm model, and its pretrained tags (a1_in1k, ...) from the Hugging Face cache; timm is an extra."""

    layer = "timm"
    listing = "python -c 'import timm; print(timm.list_models())'"

    def _timm(self) -> Any:
        try:
            import timm  # optional: the timm extra
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
            raise ArgError(
                f"unknown weights {weights!r} for {arch}{did_you_mean(weights, shown)}; available: "
                f"{', '.join(shown) or 'none'}, or a path to a weights file"
            )
        return full

    def expects(self, arch: str, weights: str) -> Expects:
        from timm.models import get_pretrained_cfg  # optional: the timm extra

        cfg = get_pretrained_cfg(self._tag(arch, weights))
        size = tuple(cfg.input_size[1:]) if cfg.input_size else None
        return Expects(size, tuple(cfg.mean), tuple(cfg.std))  # type: ignore[arg-type]

    def pretrained(self, arch: str, weights: str) -> nn.Module:
        tag = self._tag(arch, weights)
        try:
            return self._timm().create_model(tag, pretrained=True)
        except Exception as err:  # offline without the file in the Hugging Face cache
            from huggingface_hub.constants import HF_HUB_CACHE  # comes with timm (optional)

            raise ModelConfigError(
                f"weights {tag} are not in the Hugging Face cache ({HF_HUB_CACHE}) and could not be downloaded "
                f"({first_line(err)}); on a machine with internet run `huggingface-cli download timm/{tag}` and "
                f"copy the cache, or set weights: /path/to/a/weights/file"
            ) from None

    def head(self, net: nn.Module) -> str | None:
        classifier = getattr(net, "pretrained_cfg", {}).get("classifier")
        if isinstance(classifier, str):
            try:
                module = net.get_submodule(classifier)
            except AttributeError:
                module = None
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                return classifier
        return last_classifier(net)
