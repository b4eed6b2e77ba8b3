"""WebDataset shards: tar files of samples (`<key>.png` + `<key>.cls`, ...), streamed, never loaded whole.

    dataset.train='/data/train-{000000..000099}.tar'   a brace range (quoted for Hydra), a list, or a glob
    dataset.val, dataset.test                           the same; null: taken from train by key hash

`describe` indexes every shard once: the tar members' names and the label entries are read, no image is
decoded, so the run knows each split's size and labels (what class weights, the balance checks and the
confusion matrix use). Samples are then streamed (cnntrain.data.streams.StreamedImages); this module gives it
`read_parts`, the worker-side reader. The `webdataset` package is imported here only; shards are local files,
opened by us (no `pipe:` URLs, no environment substitution).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any

import torch

from cnntrain.config.names import TASK_MULTILABEL
from cnntrain.config.schema import DatasetConfig
from cnntrain.data import shard_tar
from cnntrain.data.batch_decode import check_decode_device, finish, plan_batch
from cnntrain.data.containers import SourceSplit
from cnntrain.data.description import DataDescription
from cnntrain.data.images import GRAYSCALE_MODES, NamedBytes, open_image
from cnntrain.data.shard_index import ShardIndex, read_member, shard_index, split_name
from cnntrain.data.shard_names import expand_all
from cnntrain.data.sources.base import Source, SourceSplits
from cnntrain.data.sources.shard_labels import entry_delimiter, shard_classes, single_label_note, task_of
from cnntrain.data.stream_parts import ShardPart
from cnntrain.data.streams import StreamedImages, StreamSettings, chunk_size
from cnntrain.errors import DataError
from cnntrain.reading import MAX_MEMBER_BYTES

_META = re.compile(r"__[^/]*__($|/)")  # webdataset's skip_meta: members that are no sample's
EVAL_NEEDS_ALL = (
    "dataset.skip_bad_images leaves bad images out of training passes only: an evaluation split needs every "
    "sample it counted (rewrite the shard without it)"
)
QUOTE_HINT = "quote a brace range for Hydra: \"dataset.train='/data/train-{000000..000099}.tar'\""


def _webdataset() -> Any:
    try:
        import webdataset
    except ImportError:
        raise DataError("dataset=webdataset needs the webdataset package: pip install 'cnntrain[webdataset]'") from None
    return webdataset


@dataclass
class ShardScan:
    """What indexing the shards found: each split's parts (None: not given), the classes, the input shape."""

    train: list[ShardPart]
    val: list[ShardPart] | None
    test: list[ShardPart] | None
    classes: list[str]
    input_shape: tuple[int, int, int]
    task: str = "single"  # multilabel: each label entry is a set of labels (label_delimiter)
    label_delimiter: str | None = None
    note: str = ""  # for the data line: where the class names came from, label sets a single-label run sees


class WebDatasetSource(Source):
    kind = "webdataset"
    found_type = ShardScan

    def find(self) -> ShardScan:
        return scan_shards(self.cfg)

    def labels(self, description: DataDescription) -> SourceSplits:
        return self.read(description)  # nothing is decoded either way: the streams read when batches are asked for

    def read(self, description: DataDescription) -> SourceSplits:
        scan = self.found(description)
        cfg = self.cfg
        settings = StreamSettings(
            read_parts,
            tuple(description.input_shape),
            image_keys(cfg),
            str(cfg.label_key),
            tuple(scan.classes),
            int(cfg.shuffle_buffer),
            int(cfg.num_workers),
            str(cfg.resize),
            scan.label_delimiter,
            bool(cfg.skip_bad_images),
            str(cfg.decode_device),
        )
        check_decode_device(settings.decode_device)

        def split(parts: list[ShardPart] | None) -> SourceSplit | None:
            if parts is None:
                return None
            images = StreamedImages(parts, settings)
            return SourceSplit(images, images.labels)

        return SourceSplits(train=split(scan.train), val=split(scan.val), test=split(scan.test))

    def location(self) -> str:
        return str(self.cfg.train)

    def layout(self, description: DataDescription) -> str:
        scan = self.found(description)
        given = [
            f"{name} {len(parts)} shard(s), {sum(p.count for p in parts)} samples"
            for name, parts in (("train", scan.train), ("val", scan.val), ("test", scan.test))
            if parts
        ]
        missing = [name for name, parts in (("validation", scan.val), ("test", scan.test)) if parts is None]
        rest = f"; {' and '.join(missing)} taken from train by key hash" if missing else ""
        sets = (
            f"; multi-label: {len(scan.classes)} labels, entries split on {json.dumps(scan.label_delimiter)}"
            if scan.task == TASK_MULTILABEL
            else ""
        )
        return f"webdataset shards (streamed): {', '.join(given)}{rest}{sets}{scan.note}"


def image_keys(cfg: DatasetConfig) -> tuple[str, ...]:
    return tuple(k.strip().lower().lstrip(".") for k in str(cfg.image_key).split(";") if k.strip())


def scan_shards(cfg: DatasetConfig) -> ShardScan:
    """Expand the shard specs, index every shard (names and labels only) and find the classes and input shape."""
    _webdataset()
    if not cfg.train:
        raise DataError(f"dataset.train is empty: name the training shards; {QUOTE_HINT}")
    specs = {
        name: shard_paths(getattr(cfg, name), f"dataset.{name}") if getattr(cfg, name) else None
        for name in ("train", "val", "test")
    }
    keys = image_keys(cfg)
    label_key, cache_dir = str(cfg.label_key), cfg.cache_dir
    indexes = {
        name: None if paths is None else [(p, shard_index(p, keys, label_key, cache_dir)) for p in paths]
        for name, paths in specs.items()
    }
    entries = [text for found in indexes.values() for _, index in found or [] for text in index.labels]
    delimiter = entry_delimiter(cfg, entries)  # the classes and the task follow from the entries (shard_labels.py)
    classes, named = shard_classes(cfg, specs["train"][0], entries, delimiter)
    first: list[tuple[str, bytes]] = []
    indexed = {
        name: None if found is None else [index_shard(p, index, classes, first, delimiter) for p, index in found]
        for name, found in indexes.items()
    }
    if not any(part.count for part in indexed["train"]):
        raise DataError(f"the training shards {cfg.train} hold no samples")
    return ShardScan(
        indexed["train"],
        indexed["val"],
        indexed["test"],
        classes,
        _input_shape(cfg, first[0]),
        task_of(delimiter),
        delimiter,
        named + single_label_note(entries, delimiter),
    )


def shard_paths(spec: Any, key: str) -> list[str]:
    """A brace range, a glob or a list of them -> the shard files, in order (each once), counted before expanding
    (cnntrain.data.shard_names)."""
    items = [spec] if isinstance(spec, str) else list(spec) if hasattr(spec, "__iter__") else None
    if items is None or not all(isinstance(item, str) for item in items):
        raise DataError(f"{key}={spec}: expected shard files as a brace range, a glob or a list; {QUOTE_HINT}")
    return expand_all(items, key)


def parse_label(data: bytes, classes: list[str], where: str, delimiter: str | None = None) -> Any:
    """A class index; with a `delimiter` (multi-label), the entry's labels (split by it, or a JSON list; names or
    indices; empty: no label) as a multi-hot tuple."""
    text = data.decode("utf-8", errors="replace").strip()
    if delimiter is not None:
        try:
            items = json.loads(text) if text.startswith("[") else [t for t in text.split(delimiter) if t.strip()]
        except ValueError:
            raise DataError(f"{where}: label entry '{text[:40]}' is not a JSON list of labels") from None
        if not isinstance(items, list):
            raise DataError(f"{where}: label entry '{text[:40]}' is not a list of labels")
        hot = [0] * len(classes)
        for item in items:
            hot[parse_label(str(item).encode(), classes, where)] = 1
        return tuple(hot)
    try:
        label = int(text)
    except ValueError:
        if text in classes:
            return classes.index(text)
        raise DataError(f"{where}: label '{text[:40]}' is neither a class index nor a class name") from None
    if not 0 <= label < len(classes):
        raise DataError(f"{where}: label {label} is outside the {len(classes)} classes (0..{len(classes) - 1})")
    return label


def index_shard(
    path: str, index: ShardIndex, classes: list[str], first: list[tuple[str, bytes]], delimiter: str | None = None
) -> ShardPart:
    """One shard's sample keys and labels, from its index (cnntrain.data.shard_index: the member names and label
    entries, cached); the very first image of all is read and kept in `first`, for the input shape."""
    labels = tuple(
        parse_label(text.encode(), classes, f"shard {path}, sample {key}", delimiter)
        for key, text in zip(index.keys, index.labels)
    )
    if not first and index.first_image is not None:
        first.append((f"{path}:{index.first_image}", read_member(path, index.first_image)))
    return ShardPart(path, index.keys, labels, spans=index.spans)


def _input_shape(cfg: DatasetConfig, first: tuple[str, bytes]) -> tuple[int, int, int]:
    """dataset.channels / dataset.image_size when set, else the first training image's colour and size."""
    channels, size = cfg.channels, cfg.image_size
    if channels is None or size is None:
        with open_image(NamedBytes(first[1], first[0])) as image:
            mode, (width, height) = image.mode, image.size
        channels = channels if channels is not None else (1 if mode in GRAYSCALE_MODES else 3)
        size = size if size is not None else [height, width]
    return int(channels), int(size[0]), int(size[1])


def read_parts(parts: list[ShardPart], settings: StreamSettings, seed: int | None, with_index: bool) -> Any:
    """Stream the samples of `parts` this DataLoader worker gets (webdataset's split_by_worker), through a seeded
    shuffle buffer when `seed` is set, decoded as training on files decodes them; yields (images, labels,
    canonical indices) chunks, or a DataError's line (a worker's exception would reach the user as a traceback)."""
    try:
        yield from _read(parts, settings, seed, with_index)
    except DataError as err:
        yield str(err)


def _read(parts: list[ShardPart], settings: StreamSettings, seed: int | None, with_index: bool) -> Any:
    wds = _webdataset()
    worker = torch.utils.data.get_worker_info()
    mine = list(wds.split_by_worker(parts))
    wanted_suffixes = {*settings.image_keys, settings.label_key}

    def samples() -> Any:
        for part in mine:
            if part.spans is not None:  # indexed: the images' bytes at their offsets, labels from the index
                found = shard_tar.spans(part.path, [(offset, size) for offset, size, _ in part.spans])
                for j, (data, key, label, span) in enumerate(zip(found, part.keys, part.labels, part.spans)):
                    yield f"{part.path}:{key}.{settings.image_keys[span[2]]}", data, label, part.offset + j
                continue
            position = 0
            for key, sample in _grouped(part.path, wanted_suffixes):  # the tar walked, as webdataset groups it
                if not part.takes(key):
                    continue
                index = part.offset + position
                position += 1
                where = f"shard {part.path}, sample {key}"
                image_key = next((k for k in settings.image_keys if k in sample), None)
                if image_key is None:
                    raise DataError(f"{where}: no image ({', '.join(settings.image_keys)}; dataset.image_key)")
                if settings.label_key not in sample:
                    raise DataError(f"{where}: no label '{settings.label_key}' (dataset.label_key)")
                label = parse_label(sample[settings.label_key], list(settings.classes), where, settings.label_delimiter)
                yield f"{part.path}:{key}.{image_key}", sample[image_key], label, index

    stream = samples()
    if seed is not None and settings.shuffle_buffer > 1:
        rng = random.Random(seed * 1009 + (worker.id if worker is not None else 0))
        stream = wds.shuffle(settings.shuffle_buffer, initial=settings.shuffle_buffer, rng=rng)(stream)
    batch: list[tuple] = []
    chunk = chunk_size(settings.input_shape)
    for sample in stream:
        batch.append(sample)
        if len(batch) == chunk:
            yield _chunk(batch, settings, with_index)
            batch = []
    if batch:
        yield _chunk(batch, settings, with_index)


def _grouped(path: str, suffixes: set[str]) -> Any:
    """(key, {suffix: bytes}) of each sample of a shard, as webdataset's tar_file_expander and group_by_keys give
    them (consecutive members of one key; `__...__` members left out), read by cnntrain.data.shard_tar; only the
    members whose suffix is one of `suffixes` are read."""

    def wanted(name: str) -> int:
        suffix = split_name(name)[1]
        return MAX_MEMBER_BYTES if suffix is not None and suffix.lower() in suffixes else 0

    current: tuple[str, dict[str, bytes | None]] | None = None
    for name, data, _, _ in shard_tar.members(path, wanted):
        if (
            name.startswith("__")
            and _META.match(name)
            or "/" not in name
            and name.startswith("__")
            and name.endswith("__")
        ):
            continue
        prefix, suffix = split_name(name)
        if prefix is None:
            continue
        suffix = suffix.lower()
        if current is None or prefix != current[0]:
            if current is not None:
                yield current
            current = (prefix, {})
        if suffix in current[1]:
            raise DataError(f"cannot read shard {path}: {name}: the sample {prefix} holds {suffix} twice")
        current[1][suffix] = data
    if current is not None:
        yield current


def _chunk(batch: list[tuple], settings: StreamSettings, with_index: bool) -> tuple[Any, ...]:
    """A chunk of samples as (images, labels, canonical indices, (name, reason) of those left out): the images decoded
    together (cnntrain.data.batch_decode), or with dataset.decode_device=cuda a Plan the main process finishes on
    the GPU. Only a training pass leaves a bad image out (skip_bad); an evaluation pass needs every sample."""
    skip = settings.skip_bad and not with_index
    items = [(name, data) for name, data, _, _ in batch]
    labels = torch.tensor([label for _, _, label, _ in batch], dtype=torch.int64)
    indices = torch.tensor([index for _, _, _, index in batch], dtype=torch.int64)
    try:
        plan = plan_batch(items, settings.input_shape, settings.resize, skip_bad=skip)
        if settings.decode_device != "cpu":
            return plan, labels, indices, []
        images, keep, skipped = finish(plan, settings.input_shape, settings.resize, skip_bad=skip)
    except DataError as err:
        if settings.skip_bad and with_index:
            raise DataError(f"{err}; {EVAL_NEEDS_ALL}") from None
        raise
    return images, labels[keep], indices[keep], skipped
