"""Data sources: one module per kind of dataset, one interface (cnntrain.data.sources.base.Source).

`source_for` picks the source once from `dataset.kind`; each module is imported only when its kind is
used, so a heavy library (Hugging Face `datasets`, `webdataset`) costs nothing to runs that do not need it.
"""

from __future__ import annotations

import importlib

from cnntrain.config.names import DATASET_KINDS
from cnntrain.config.schema import DatasetConfig
from cnntrain.data.sources.base import Source, SourceSplits
from cnntrain.errors import ConfigError

# dataset.kind -> "module:class" under cnntrain.data.sources
SOURCES = {
    "torchvision": "torchvision_datasets:TorchvisionSource",
    "imagefolder": "class_folders:ClassFolderSource",
    "labels": "label_files:LabelFileSource",
    "huggingface": "huggingface:HuggingFaceSource",
    "webdataset": "webdataset_shards:WebDatasetSource",  # not webdataset.py: that would shadow the package
}

__all__ = ["SOURCES", "Source", "SourceSplits", "dataset_kind", "source_for"]


def dataset_kind(cfg: DatasetConfig) -> str:
    kind = str(cfg.kind)
    if kind not in DATASET_KINDS or kind not in SOURCES:
        raise ConfigError(f"dataset.kind={kind}: expected one of {', '.join(DATASET_KINDS)}")
    return kind


def source_for(cfg: DatasetConfig) -> Source:
    """The source that reads the dataset `cfg` (a dataset config) names."""
    module_name, class_name = SOURCES[dataset_kind(cfg)].split(":")
    module = importlib.import_module(f"cnntrain.data.sources.{module_name}")
    return getattr(module, class_name)(cfg)
