"""What opening a Hugging Face dataset tells before any image is decoded (HFScan): shared by the source
(cnntrain.data.sources.huggingface, which makes it), its images (huggingface_images) and its labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class HFScan:
    """What opening the dataset and its features tell, before any image is decoded."""

    name: str  # dataset.path as given
    form: str  # save_to_disk | parquet | arrow | Hub cache
    tables: dict[str, Any]  # role (train/val/test) -> datasets.Dataset with the image column left undecoded
    split_names: dict[str, str]  # role -> the dataset's own split name
    unused: dict[str, int]  # splits cnntrain does not use (or has no labels for) -> rows
    image_column: str
    label_column: str
    label_kind: str  # ClassLabel | values
    classes: list[str]
    input_shape: tuple[int, int, int]
    cache_root: Path
    fingerprints: dict[str, str] = field(default_factory=dict)  # role -> the split's datasets fingerprint
    values: dict[Any, int] | None = None  # a label column of plain values: value -> class index
    resize: str = "stretch"  # dataset.resize, as decode_image takes it
    task: str = "single"  # multilabel: the label column is a Sequence(ClassLabel) (huggingface_labels)
    inside: str | None = None  # the real folder a row's image path must lie in; None: anywhere (allow_outside_paths)
