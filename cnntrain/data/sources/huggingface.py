"""Hugging Face datasets: a save_to_disk folder, a folder of Parquet/Arrow files, or a Hub name in the local cache.

    dataset.path=/data/shapes        written by DatasetDict.save_to_disk (or Dataset.save_to_disk: train only)
    dataset.path=/data/shapes-pq     *.parquet or *.arrow files; split names from the file names as `datasets`
                                     reads them (train-*.parquet, data/validation-00000-of-00001.parquet, ...)
    dataset.path=user/name           a Hub dataset already in the local cache, loaded offline (never downloads)

The image column is the Image feature and the label column the ClassLabel feature unless dataset.image_column /
dataset.label_column name them; class names come from the ClassLabel (a column of plain ints or strings: its
sorted values). The dataset's train, validation (valid, val, dev) and test splits are used; a missing one is
split off train by cnntrain.data.loading. Images are read undecoded (Image(decode=False): bytes or a path) and
decoded by cnntrain.data.images.decode_image, as cnntrain-predict decodes, once into a cache keyed by the split's
fingerprint and the target shape, or per batch by DataLoader workers (dataset.in_memory=false).
`datasets` is imported here only: it takes half a second.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cnntrain.config.schema import DatasetConfig
from cnntrain.data.containers import SourceSplit
from cnntrain.data.description import DataDescription
from cnntrain.data.images import image_input_shape
from cnntrain.data.sources.base import Source, SourceSplits
from cnntrain.data.sources.huggingface_files import check_data_files, check_hub_name, check_saved_folder
from cnntrain.data.sources.huggingface_images import ArrowImages, cache_root, decode_split, image_source
from cnntrain.data.sources.huggingface_labels import find_classes, label_set_feature, raw_labels, read_labels
from cnntrain.data.sources.huggingface_scan import HFScan
from cnntrain.errors import DataError, first_line

INSTALL = "dataset=huggingface needs the datasets package: pip install 'cnntrain[hf]'"
# the dataset's own split names, for cnntrain's three roles (the first found wins)
SPLIT_NAMES = {
    "train": ("train", "training"),
    "val": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing"),
}
LABEL_NAMES = ("label", "labels", "target")  # a label column without a ClassLabel feature, by name
DATA_SUFFIXES = {"parquet": (".parquet",), "arrow": (".arrow",)}
BYTES_OR_PATHS = ("binary", "large_binary", "string", "large_string")  # a plain column that can hold images
HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


class HuggingFaceSource(Source):
    kind = "huggingface"
    found_type = HFScan

    def find(self) -> HFScan:
        return scan_dataset(self.cfg)

    def labels(self, description: DataDescription) -> SourceSplits:
        scan = self.found(description)
        return _splits(scan, lambda role: SourceSplit(None, read_labels(scan, role)))

    def read(self, description: DataDescription) -> SourceSplits:
        scan, cfg = self.found(description), self.cfg
        shape = description.input_shape
        if bool(cfg.in_memory):
            return _splits(scan, lambda role: SourceSplit(decode_split(scan, role, shape), read_labels(scan, role)))
        workers = int(cfg.num_workers)
        return _splits(
            scan, lambda role: SourceSplit(ArrowImages.of(scan, role, shape, workers), read_labels(scan, role))
        )

    def location(self) -> str:
        return str(self.cfg.path)

    def layout(self, description: DataDescription) -> str:
        scan = self.found(description)
        used = ", ".join(f"{scan.split_names[role]} {len(table)}" for role, table in scan.tables.items())
        unused = f" (not used: {', '.join(f'{k} {v}' for k, v in scan.unused.items())})" if scan.unused else ""
        missing = [word for role, word in (("val", "validation"), ("test", "test")) if role not in scan.tables]
        rest = f"; {' and '.join(missing)} split off train (stratified)" if missing else ""
        if self.cfg.allow_outside_paths:
            rest += "; images outside its folder allowed (dataset.allow_outside_paths)"
        return (
            f"Hugging Face dataset {scan.name} ({scan.form}): splits {used}{unused}; image column "
            f"'{scan.image_column}', label column '{scan.label_column}' ({scan.label_kind}, "
            f"{len(scan.classes)} classes){rest}"
        )


# ----------------------------------------------------------------------------------------------------- opening


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise DataError(INSTALL) from None
    datasets.disable_progress_bars()  # cnntrain prints its own progress; bars would break one-line errors
    datasets.logging.set_verbosity_error()
    return datasets


@contextmanager
def _offline(datasets: Any) -> Any:
    """Never reach the network: cnntrain reads local folders and the local cache only (HF_HUB_OFFLINE=1, for
    this call, also when `datasets` was imported before the variable could be set)."""
    before = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = before


def open_dataset(name: str) -> tuple[dict[str, Any], str, Path | None]:
    """(split name -> Dataset, form, local folder or None) for dataset.path; DataError when it is none."""
    datasets = _datasets()
    path = Path(name).expanduser()
    if path.exists():
        folder = path if path.is_dir() else path.parent
        try:
            with _offline(datasets):
                opened = _open_local(datasets, path)
        except DataError:
            raise
        except Exception as err:
            raise DataError(f"cannot read Hugging Face dataset {path}: {first_line(err)}") from None
        return opened[0], opened[1], folder
    if not HUB_NAME.fullmatch(name) or name.startswith(("/", ".", "~")):
        raise DataError(
            f"dataset.path={name}: no such folder; give a folder written by save_to_disk, a folder of "
            f"Parquet/Arrow files, or a Hub name (user/name) in the local Hugging Face cache"
        )
    check_hub_name(name)
    try:
        with _offline(datasets):
            loaded = datasets.load_dataset(name)
    except Exception:
        cache = datasets.config.HF_DATASETS_CACHE
        raise DataError(
            f"dataset.path={name}: no such folder, and Hugging Face dataset '{name}' is not in the local "
            f"cache {cache} (cnntrain never downloads); fill the cache on a machine with internet: "
            f"python -c \"import datasets; datasets.load_dataset('{name}')\" (with HF_HOME set to the "
            f"same cache), or save_to_disk it and set dataset.path to that folder"
        ) from None
    return dict(loaded), "Hub cache", None


def _open_local(datasets: Any, path: Path) -> tuple[dict[str, Any], str]:
    if path.is_dir() and (
        (path / "dataset_dict.json").is_file()
        or ((path / "state.json").is_file() and (path / "dataset_info.json").is_file())
    ):
        check_saved_folder(path)  # bounded JSON, Arrow files that are regular files inside the folder
        loaded = datasets.load_from_disk(str(path))
        return (dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}), "save_to_disk"
    if path.is_file():
        builder = next((b for b, suffixes in DATA_SUFFIXES.items() if path.suffix.lower() in suffixes), None)
        if builder is None:
            raise DataError(
                f"{path} is not a Hugging Face dataset: expected a folder (save_to_disk, or Parquet/Arrow "
                f"files) or a .parquet/.arrow file"
            )
        check_data_files([path])
        return dict(datasets.load_dataset(builder, data_files={"train": [str(path)]})), builder
    for builder, suffixes in DATA_SUFFIXES.items():
        files = _data_files(datasets, path, suffixes)
        if files:
            check_data_files([file for found in files.values() for file in found])
            return dict(datasets.load_dataset(builder, data_files=files)), builder
    raise DataError(
        f"{path} is not a Hugging Face dataset: no dataset_dict.json or state.json (save_to_disk) and "
        f"no .parquet or .arrow files in it"
    )


def _data_files(datasets: Any, root: Path, suffixes: tuple[str, ...]) -> dict[str, list[str]]:
    """split name -> files, found the way `datasets` finds them in a folder (its split-name patterns; hidden
    folders such as .cnntrain-cache are skipped), keeping the files with these suffixes."""
    from datasets.data_files import DataFilesDict, get_data_patterns

    try:
        patterns = get_data_patterns(str(root))
    except Exception:
        return {}
    resolved = DataFilesDict.from_patterns(patterns, base_path=str(root))
    files = {split: sorted(f for f in found if f.lower().endswith(suffixes)) for split, found in resolved.items()}
    return {split: found for split, found in files.items() if found}


# ----------------------------------------------------------------------------------------------------- scanning


def scan_dataset(cfg: DatasetConfig) -> HFScan:
    """Open dataset.path, pick the splits and the columns, find the classes and the input shape."""
    datasets = _datasets()
    name = str(cfg.path or "")
    if not name:
        raise DataError(
            "dataset.path is empty: give a folder written by save_to_disk, a folder of Parquet/Arrow "
            "files, or a Hub name (user/name) in the local Hugging Face cache"
        )
    opened, form, folder = open_dataset(name)
    roles = _roles(name, opened)
    train = opened[roles["train"]]
    image_column = _image_column(name, train.features, cfg.image_column, datasets)
    label_column = _label_column(name, train.features, cfg.label_column, image_column, datasets)
    tables, fingerprints, unused = {}, {}, {}
    for role, split in roles.items():
        table = opened[split]
        for column in (image_column, label_column):
            if column not in table.features:
                raise DataError(
                    f"split '{split}' of {name} has no column '{column}' (train has it); its columns: "
                    f"{_listed_columns(table.features)}"
                )
        fingerprints[role] = str(table._fingerprint)
        tables[role] = table.select_columns([image_column, label_column]).cast_column(
            image_column, datasets.Image(decode=False)
        )
    unused.update({split: len(t) for split, t in opened.items() if split not in roles.values()})
    label = train.features[label_column]
    scan = HFScan(
        name,
        form,
        tables,
        roles,
        unused,
        image_column,
        label_column,
        "ClassLabel" if isinstance(label, datasets.ClassLabel) else "values",
        [],
        (0, 0, 0),
        cache_root(folder, name, cfg.cache_dir),
        fingerprints,
        resize=str(cfg.resize),
        inside=None if cfg.allow_outside_paths or folder is None else os.path.realpath(folder),
    )
    find_classes(scan, label, datasets)
    for role in [r for r in ("val", "test") if r in scan.tables and scan.values is None and scan.task == "single"]:
        if raw_labels(scan, role) is None:  # shipped without labels (all -1, as some Hub test splits): split off train
            scan.unused[f"{roles[role]} (no labels)"] = len(scan.tables.pop(role))
    if len(tables["train"]) == 0:
        raise DataError(f"split '{roles['train']}' of {name} has no rows")
    scan.input_shape = image_input_shape(cfg, image_source(scan, "train", 0))
    return scan


def _roles(name: str, opened: dict[str, Any]) -> dict[str, str]:
    by_name = {split.lower(): split for split in opened}
    roles = {}
    for role, names in SPLIT_NAMES.items():
        found = next((by_name[n] for n in names if n in by_name), None)
        if found is not None:
            roles[role] = found
    if "train" not in roles:
        raise DataError(
            f"{name} has split(s) {', '.join(opened) or 'none'} but no train split (train, training); "
            f"cnntrain trains on 'train' and uses validation/valid/val and test when present"
        )
    return roles


def _listed_columns(features: Any) -> str:
    return ", ".join(f"{column} ({_type_name(feature)})" for column, feature in features.items())


def _type_name(feature: Any) -> str:
    kind = type(feature).__name__
    dtype = getattr(feature, "dtype", None)
    return f"{kind} {dtype}" if kind == "Value" else kind


def _image_column(name: str, features: Any, named: Any, datasets: Any) -> str:
    if named:
        column = str(named)
        if column not in features:
            raise DataError(
                f"dataset.image_column={column}: {name} has no such column; its columns: {_listed_columns(features)}"
            )
        feature = features[column]
        ok = isinstance(feature, datasets.Image) or (
            isinstance(feature, datasets.Value) and feature.dtype in BYTES_OR_PATHS
        )
        if not ok:
            raise DataError(
                f"dataset.image_column={column}: column '{column}' of {name} is {_type_name(feature)}, "
                f"not images (an Image feature, image bytes or paths)"
            )
        return column
    found = [column for column, feature in features.items() if isinstance(feature, datasets.Image)]
    if len(found) != 1:
        why = "no image column (no Image feature)" if not found else f"several image columns ({', '.join(found)})"
        raise DataError(f"{name} has {why}; its columns: {_listed_columns(features)}; set dataset.image_column")
    return found[0]


def _label_column(name: str, features: Any, named: Any, image_column: str, datasets: Any) -> str:
    if named:
        column = str(named)
        if column not in features:
            raise DataError(
                f"dataset.label_column={column}: {name} has no such column; its columns: {_listed_columns(features)}"
            )
    else:
        found = [
            column
            for column, feature in features.items()
            if isinstance(feature, datasets.ClassLabel) or label_set_feature(feature, datasets) is not None
        ]
        if len(found) > 1:
            raise DataError(f"{name} has several ClassLabel columns ({', '.join(found)}); set dataset.label_column")
        found = found or [c for c in features if c.lower() in LABEL_NAMES and c != image_column][:1]
        if not found:
            raise DataError(
                f"{name} has no label column (no ClassLabel feature, none named "
                f"{'/'.join(LABEL_NAMES)}); its columns: {_listed_columns(features)}; set "
                f"dataset.label_column"
            )
        column = found[0]
    feature = features[column]
    plain = isinstance(feature, datasets.Value) and (
        feature.dtype.startswith(("int", "uint")) or feature.dtype in ("string", "large_string")
    )
    labelled = isinstance(feature, datasets.ClassLabel) or label_set_feature(feature, datasets) is not None
    if column == image_column or not (labelled or plain):
        raise DataError(
            f"dataset.label_column={column}: column '{column}' of {name} is {_type_name(feature)}; a "
            f"label column holds a ClassLabel, whole numbers or strings"
        )
    return column


def _splits(scan: HFScan, make: Any) -> SourceSplits:
    return SourceSplits(**{role: make(role) for role in scan.tables})
