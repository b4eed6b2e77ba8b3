"""Class folders: images sorted into one sub-folder per class, in the layouts datasets ship in.

    <root>/<class>/...                               no split folders: val and test are split off (seeded)
    <root>/train/<class>/...                         plus, when present, <root>/val|valid|validation/<class>/...
                                                     and <root>/test/<class>/...

Class names are the sub-folder names (sorted); images may sit in nested folders below a class folder
(as torchvision's ImageFolder reads them). Hidden files and folders (".DS_Store", "._x.jpg", the cache) are
skipped. The input shape is the configured (or first image's) size and colour.
"""

from __future__ import annotations

import os
from pathlib import Path

from cnntrain.config.schema import DatasetConfig
from cnntrain.data.image_cache import ImageFiles
from cnntrain.data.images import IMAGE_SUFFIXES, image_input_shape
from cnntrain.data.sources.file_lists import FileListing, FileListSource
from cnntrain.errors import DataError

TRAIN_DIRS = ("train", "training")
VAL_DIRS = ("val", "valid", "validation")
TEST_DIRS = ("test", "testing")
NOT_CLASSES = ("__MACOSX",)  # what zip archives made on a Mac carry beside the data: never a class


def _hidden(name: str) -> bool:
    return name.startswith(".") or name in NOT_CLASSES


class ClassFolderSource(FileListSource):
    kind = "imagefolder"

    def find(self) -> FileListing:
        return scan_folder(self.cfg)


def scan_folder(cfg: DatasetConfig) -> FileListing:
    """Find the layout, classes and files under dataset.root; raise DataError saying what the layouts are."""
    root = Path(str(cfg.root))
    layouts = (
        f"expected {root}/<class>/<images>, or {root}/train/<class>/<images> with optional "
        f"val/ (valid/, validation/) and test/ folders of the same classes"
    )
    if not root.is_dir():
        raise DataError(
            f"image folder {root} not found; {layouts}; set dataset.root to such a folder (by default "
            f"dataset=imagefolder reads <data_root>/images)"
        )
    train_dir = _first_dir(root, TRAIN_DIRS)
    val_dir, test_dir = _first_dir(root, VAL_DIRS), _first_dir(root, TEST_DIRS)
    if train_dir is None and (val_dir or test_dir):
        raise DataError(f"{root} has {(val_dir or test_dir).name}/ but no train/ folder; {layouts}")
    class_root = train_dir or root
    classes = sorted(d.name for d in class_root.iterdir() if d.is_dir() and not _hidden(d.name))
    if len(classes) < 2:
        raise DataError(
            f"{class_root} has {len(classes)} class folder(s); an image folder needs at least 2 ({layouts})"
        )
    train_files = _files(class_root, classes)
    empty = [name for i, name in enumerate(classes) if not any(label == i for _, label in train_files)]
    if empty:
        raise DataError(
            f"class folder(s) {', '.join(empty)} under {class_root} hold no images ({', '.join(IMAGE_SUFFIXES)})"
        )
    unlabelled = [d for d in (val_dir, test_dir) if d is not None and not _class_dirs(d)]
    val_dir, test_dir = (None if d in unlabelled else d for d in (val_dir, test_dir))
    val_files = _split_files(val_dir, classes, class_root) if val_dir else None
    test_files = _split_files(test_dir, classes, class_root) if test_dir else None
    layout = _describe_layout(root, class_root, val_dir, test_dir)
    if unlabelled:  # a competition's test/ of loose images has no labels to test with
        layout += f" ({', '.join(f'{d.name}/' for d in unlabelled)} has no class folders: not used)"
    return FileListing(
        root, classes, image_input_shape(cfg, train_files[0][0]), train_files, val_files, test_files, layout
    )


def _first_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    """The split folder among its usual spellings (any case), or None."""
    by_name = {d.name.lower(): d for d in root.iterdir() if d.is_dir()}
    return next((by_name[name] for name in names if name in by_name), None)


def _class_dirs(folder: Path) -> list[str]:
    return [d.name for d in folder.iterdir() if d.is_dir() and not _hidden(d.name)]


def _split_files(folder: Path, classes: list[str], train_dir: Path) -> ImageFiles:
    unknown = sorted(name for name in _class_dirs(folder) if name not in classes)
    if unknown:
        raise DataError(
            f"{folder} has class folder(s) {', '.join(unknown)} that {train_dir} lacks; "
            f"train classes: {', '.join(classes)}"
        )
    files = _files(folder, classes)
    if not files:
        raise DataError(f"{folder} holds no images; fill it or remove it to split this set off train")
    return files


def _files(folder: Path, classes: list[str]) -> ImageFiles:
    """Every image below each class folder (nested folders too, symbolic links to folders not followed),
    sorted by path, with the class's index."""
    found: ImageFiles = []
    for label, name in enumerate(classes):
        class_dir = folder / name
        if not class_dir.is_dir():
            continue
        paths = []
        for parent, dirs, names in os.walk(class_dir):
            dirs[:] = [d for d in dirs if not _hidden(d)]
            paths.extend(Path(parent) / n for n in names if not _hidden(n) and Path(n).suffix.lower() in IMAGE_SUFFIXES)
        found.extend((p, label) for p in sorted(paths) if p.is_file())
    return found


def _describe_layout(root: Path, class_root: Path, val_dir: Path | None, test_dir: Path | None) -> str:
    if class_root == root:
        return f"class folders {root}/<class>/; validation and test split off (stratified)"
    taken = [f"{d.name}/" for d in (class_root, val_dir, test_dir) if d is not None]
    missing = [name for name, d in (("validation", val_dir), ("test", test_dir)) if d is None]
    rest = f"; {' and '.join(missing)} split off train (stratified)" if missing else ""
    return f"class folders in {root}: {', '.join(taken)}{rest}"
