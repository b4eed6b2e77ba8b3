"""The dataset's keys checked: splits, folds, the task and label-set keys, each kind's own keys, shapes and
normalisation; part of cnntrain.config.validate (no torch, no Hydra)."""

from __future__ import annotations

import math
from pathlib import Path

from omegaconf import DictConfig, ListConfig

from cnntrain.config.checks import choice, listed, require
from cnntrain.config.names import DATASET_KINDS, DECODE_DEVICES, RESIZE_MODES, TASKS, VAL_STRATEGIES
from cnntrain.errors import ConfigError
from cnntrain.files import kind_of


def check_dataset(ds: DictConfig) -> None:
    split = ds.val_split
    if isinstance(split, bool) or not isinstance(split, (int, float)):
        raise ConfigError(f"dataset.val_split={split}: expected a fraction in (0, 1) or a whole number of images")
    if isinstance(split, float):
        require(0.0 < split < 1.0, f"dataset.val_split={split}: a fraction must be in (0, 1)")
    else:
        require(split >= 1, f"dataset.val_split={split}: a count must be >= 1")
    choice(ds, "val_strategy", VAL_STRATEGIES, prefix="dataset.")
    _check_task(ds)
    _check_folds(ds.folds, ds.fold)
    require(
        math.isfinite(ds.fraction) and 0.0 < ds.fraction <= 1.0,
        f"dataset.fraction={ds.fraction}: must be in (0, 1], the share of the training split to train on",
    )
    # dataset.augment (names, arguments, ranges, sizes against the images) is checked by the preflight's
    # check_model with the data's shape: its registry needs torch, which this package never imports
    choice(ds, "kind", DATASET_KINDS, prefix="dataset.")
    if ds.kind == "torchvision":
        require(bool(ds.torchvision_class), "dataset.torchvision_class is empty: name a torchvision dataset class")
    if ds.kind == "labels":
        require(
            bool(ds.file),
            "dataset.file is not set: name a label file (.csv, .tsv, .jsonl or .ndjson) of image "
            "paths and labels, e.g. dataset.file=data/labels.csv",
        )
        for key in ("path_column", "label_column", "split_column"):
            require(
                ds[key] is None or bool(str(ds[key]).strip()),
                f"dataset.{key} is empty: name a column of the label file, or null to find it by its usual names",
            )
    if ds.kind == "huggingface":  # dataset.path is checked by its source: every shipped config validates alone
        for key in ("image_column", "label_column"):
            require(
                ds[key] is None or bool(str(ds[key]).strip()),
                f"dataset.{key} is empty: name a column, or null to find it from the features",
            )
        require(
            ds.image_column is None or ds.image_column != ds.label_column,
            f"dataset.image_column and dataset.label_column are both '{ds.image_column}': name two columns",
        )
    if ds.kind == "webdataset":
        _check_shards(ds)
    require(ds.num_classes is None or ds.num_classes >= 2, f"dataset.num_classes={ds.num_classes}: must be >= 2")
    require(
        ds.input_shape is None or (len(ds.input_shape) == 3 and all(d > 0 for d in ds.input_shape)),
        f"dataset.input_shape={listed(ds.input_shape)}: expected [channels, height, width] or null",
    )
    require(
        ds.image_size is None or (len(ds.image_size) == 2 and all(d > 0 for d in ds.image_size)),
        f"dataset.image_size={listed(ds.image_size)}: expected [height, width] or null",
    )
    require(ds.channels in (None, 1, 3), f"dataset.channels={ds.channels}: expected 1, 3 or null")
    require(0.0 < ds.test_split < 1.0, f"dataset.test_split={ds.test_split}: must be in (0, 1)")
    require(ds.num_workers >= 0, f"dataset.num_workers={ds.num_workers}: must be >= 0")
    choice(ds, "resize", RESIZE_MODES, prefix="dataset.")
    choice(ds, "decode_device", DECODE_DEVICES, prefix="dataset.")
    require(
        ds.cache_dir is None
        or not Path(ds.cache_dir).expanduser().exists()
        or Path(ds.cache_dir).expanduser().is_dir(),
        f"dataset.cache_dir={ds.cache_dir}: is a file, not a folder; name a folder (it is made if missing) or "
        f"null for ~/.cache/cnntrain",
    )
    require((ds.mean is None) == (ds.std is None), "dataset.mean and dataset.std: give both, or neither (null)")
    channels = ds.input_shape[0] if ds.input_shape is not None else ds.channels
    for key in ("mean", "std"):
        require(
            ds[key] is None or channels is None or len(ds[key]) == channels,
            f"dataset.{key}={listed(ds[key])}: expected {channels} value(s), one per channel",
        )
    require(ds.std is None or all(s > 0 for s in ds.std), f"dataset.std={listed(ds.std)}: every value must be > 0")


def _check_shards(ds: DictConfig) -> None:
    """dataset=webdataset: shard specs given as text or lists of text, hashed splits as fractions."""
    # an empty dataset.train is refused by the source, so every shipped dataset config validates alone
    for key in ("train", "val", "test"):
        value = ds.get(key)
        if (
            value is not None
            and not isinstance(value, str)
            and not (isinstance(value, ListConfig) and all(isinstance(v, str) for v in value))
        ):
            raise ConfigError(
                f"dataset.{key}: expected shard files as text or a list of text, got {kind_of(value)}; "
                f"quote a brace range for Hydra: \"dataset.{key}='/data/{key}-{{000000..000099}}.tar'\""
            )
    require(
        isinstance(ds.val_split, float) or ds.get("val") is not None or ds.folds is not None,
        f"dataset.val_split={ds.val_split}: shards are split by key hash, so give a fraction in (0, 1)",
    )
    require(ds.shuffle_buffer >= 0, f"dataset.shuffle_buffer={ds.shuffle_buffer}: must be >= 0")
    require(bool(str(ds.image_key).strip(";")), "dataset.image_key is empty: e.g. 'jpg;png;jpeg;webp'")
    require(bool(str(ds.label_key)), "dataset.label_key is empty: e.g. cls")


def _check_folds(folds: int | None, fold: int | None) -> None:
    """K-fold cross-validation: both keys or neither, K >= 2, fold in 0..K-1."""
    if folds is None:
        require(
            fold is None, f"dataset.fold={fold} needs dataset.folds, the number of folds (>= 2), e.g. dataset.folds=5"
        )
        return
    require(
        folds >= 2,
        f"dataset.folds={folds}: must be >= 2 (the number of cross-validation folds), or null "
        f"to validate on dataset.val_split",
    )
    require(
        fold is not None,
        f"dataset.folds={folds} needs dataset.fold, the fold that validates (0..{folds - 1}); "
        f"run every fold with -m dataset.fold={','.join(map(str, range(folds)))}",
    )
    require(0 <= fold < folds, f"dataset.fold={fold} is out of range for dataset.folds={folds}: use 0..{folds - 1}")


def _check_task(ds: DictConfig) -> None:
    """dataset.task and the label-file keys that say how a row names several labels."""
    require(
        ds.get("task") in (None, *TASKS),
        f"dataset.task={ds.get('task')}: expected one of {', '.join(TASKS)}, or null (found from the data)",
    )
    delimiter, columns = ds.get("label_delimiter"), ds.get("label_columns")
    require(
        delimiter is None or str(delimiter) != "",
        "dataset.label_delimiter is empty: give the text that "
        "separates labels in a cell (e.g. ' ', ';' or '|'), or null",
    )
    if columns is not None:
        require(
            len(columns) > 0 and all(str(c).strip() for c in columns),
            "dataset.label_columns is empty or names an empty column: list the 0/1 columns, one per label",
        )
        require(
            delimiter is None,
            "dataset.label_columns and dataset.label_delimiter are both set: a label file "
            "gives its labels one way, as 0/1 columns or as one delimited column",
        )
    require(
        not (ds.get("task") == "single" and (delimiter is not None or columns is not None)),
        "dataset.task=single but dataset.label_delimiter or dataset.label_columns is set (several labels per "
        "image): use dataset.task=multilabel (or null)",
    )
