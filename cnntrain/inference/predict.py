"""Classify images with a finished run's model: the task's answer per image and, on request, class activation
maps. cnntrain-predict and `Run.predict()` both come here (cnntrain.inference.classifier reads the images)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from cnntrain.errors import UserError
from cnntrain.files import atomic_write
from cnntrain.inference.classifier import ImageClassifier, ImagesOrPaths
from cnntrain.inference.load import SavedRun
from cnntrain.models.cam import find_cam_layer, predicted_maps
from cnntrain.models.registry import parse_item
from cnntrain.reporting.analysis_plots import cam_overlay

CAM_PIXELS = 224  # an overlay's longer side at least (small images are enlarged, nearest neighbour)


def predict(saved: SavedRun, images_or_paths: ImagesOrPaths, top_k: int) -> list[Any]:
    """Per image (files, or a tensor or array of images), the task's answer: the top-k (class, probability) pairs,
    most likely first; for a multi-label run, the labels at or above their thresholds with their probabilities,
    and the top-k labels."""
    classifier = ImageClassifier(saved)
    return classifier.predictions(classifier.images(images_or_paths), top_k)


def write_cams(saved: SavedRun, images_uint8: torch.Tensor, classes: list[int], paths: list[Path]) -> str:
    """The overlays of `classes` (one per image) into `paths`; returns the layer they were taken at."""
    device = saved.mean.device
    layer = find_cam_layer(
        saved.model, saved.input_shape, OmegaConf.select(saved.config, "report.cam_layer"), layer_names(saved.config)
    )
    if layer is None:
        raise UserError(
            f"model {saved.config.model.name!r} has no feature map larger than 1x1 to take a class "
            f"activation map at; drop --cam"
        )
    cams = predicted_maps(
        saved.model, layer, saved.normalize(images_uint8.to(device)), torch.tensor(classes), saved.tta
    )  # the classes were predicted with the run's TTA: so are their maps
    for image, cam, path in zip(images_uint8, cams, paths):
        overlay = cam_overlay(image.cpu(), cam)
        scale = max(1, -(-CAM_PIXELS // max(overlay.shape[1:])))
        big = overlay.repeat_interleave(scale, 1).repeat_interleave(scale, 2).permute(1, 2, 0).contiguous()
        picture = Image.fromarray(big.numpy())
        atomic_write(path, lambda tmp, picture=picture: picture.save(tmp, format="PNG"))
    return layer.label


def layer_names(config: DictConfig) -> list[str] | None:
    """The config items' layer names (the model summary's), to name the CAM layer as the summary does."""
    try:
        return [parse_item(item)[0] for item in OmegaConf.to_container(config.model.layers, resolve=True)]
    except Exception:  # names only label the layer; the saved model was built from these layers already
        return None
