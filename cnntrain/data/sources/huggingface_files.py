"""The files of a local Hugging Face dataset, checked before `datasets` opens them.

`datasets.load_from_disk` reads a folder's dataset_dict.json, state.json and dataset_info.json whole and then
memory-maps every Arrow file state.json names, joined to the folder: a shared folder could name a FIFO (a read
that never ends), a file elsewhere (`../../somewhere/data.arrow`), or hold a JSON file of gigabytes. So each JSON
file is read here through the bounded reader first, every named data file must be a plain file name inside its
folder and a regular file, and a Parquet/Arrow file found by pattern must be a regular file too. A `dataset.path`
that names one of the builders packaged with `datasets` (imagefolder, csv, json, ...) is not a dataset: loading
it would read the working directory's files, so it is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnntrain.errors import DataError, first_line
from cnntrain.reading import MAX_SHARD_BYTES, json_value, open_bounded, read_bytes

MAX_METADATA_BYTES = 16 << 20  # dataset_dict.json, state.json, dataset_info.json: a few KB when datasets writes them
MAX_DATA_FILE_BYTES = MAX_SHARD_BYTES  # one Arrow or Parquet file (memory-mapped or read by column)


def check_saved_folder(path: Path) -> None:
    """A save_to_disk folder (a DatasetDict's or one Dataset's): its JSON bounded, its Arrow files regular files
    named inside their folder; DataError naming the file otherwise."""
    if (path / "dataset_dict.json").exists():
        splits = _json(path / "dataset_dict.json").get("splits")
        if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
            raise DataError(
                f"{path / 'dataset_dict.json'}: 'splits' is not a list of split names; not a dataset save_to_disk wrote"
            )
        for split in splits:
            _check_dataset_folder(path / _plain_name(split, path / "dataset_dict.json"))
    else:
        _check_dataset_folder(path)


def check_data_files(files: list[str] | list[Path], what: str = "data file") -> None:
    """Each Parquet/Arrow file a regular file within MAX_DATA_FILE_BYTES (opened and closed: nothing read)."""
    for file in files:
        open_bounded(file, MAX_DATA_FILE_BYTES, what).close()


def check_hub_name(name: str) -> None:
    """A Hub name that is not one of the builders packaged with datasets (which would read local files)."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    if name.lower() in _PACKAGED_DATASETS_MODULES:
        raise DataError(
            f"dataset.path={name}: no such folder, and '{name}' names a loader packaged with datasets, "
            f"not a dataset (it would read this folder's files); give a folder written by save_to_disk, "
            f"a folder of Parquet/Arrow files, or a Hub name (user/name)"
        )


def _check_dataset_folder(folder: Path) -> None:
    _json(folder / "dataset_info.json")
    state = _json(folder / "state.json")
    data_files = state.get("_data_files")
    if not isinstance(data_files, list):
        raise DataError(f"{folder / 'state.json'}: '_data_files' is not a list; not a dataset save_to_disk wrote")
    for entry in data_files:
        name = entry.get("filename") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise DataError(
                f"{folder / 'state.json'}: a '_data_files' entry names no file; not a dataset save_to_disk wrote"
            )
        check_data_files([folder / _plain_name(name, folder / "state.json")], "Arrow file")


def _plain_name(name: str, where: Path) -> str:
    """`name` when it is a file or folder name inside its folder (no separator, not . or ..)."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        raise DataError(
            f"{where} names {name[:80]!r}, which is not a name inside its folder; refused (a saved "
            f"dataset names its own files)"
        )
    return name


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json_value(read_bytes(path, MAX_METADATA_BYTES, "dataset file"), "dataset file", str(path))
    except FileNotFoundError:
        raise DataError(f"{path} not found; not a dataset save_to_disk wrote") from None
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {path}: {first_line(err)}") from None
    if not isinstance(value, dict):
        raise DataError(f"{path} holds no JSON object; not a dataset save_to_disk wrote")
    return value
