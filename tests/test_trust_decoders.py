"""A Pillow plugin that raises an exception of its own (neither OSError nor ValueError) is one bad image like any
other (issue 29): the one-line `cannot read image` error in training and in predict, a skip under
dataset.skip_bad_images. The plugin is real: registered with Pillow for the test, found by Pillow from the file's
first bytes, whatever the file's name says."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from cnntrain.commands import predict, train
from cnntrain.data.loading import load_data

from helpers import assert_one_line_error, compose_config, run_main
from synthetic_images import make_folder

MAGIC = b"CNTXBUG"
IN_HEADER, IN_PIXELS = b"H", b"P"  # where the plugin breaks: reading the header, or decoding the pixels


class PluginBug(Exception):
    """What a third-party decoder might raise: a type of its own, which Pillow lets through."""


class BrokenImageFile(ImageFile.ImageFile):
    """An 8x8 grayscale format whose header parser or decoder breaks, as the file's eighth byte says."""

    format = "CNTXBUG"
    format_description = "a test plugin that breaks"

    def _open(self) -> None:
        header = self.fp.read(len(MAGIC) + 1)
        if header[len(MAGIC) :] == IN_HEADER:
            raise PluginBug("the plugin's header parser broke")
        self._mode, self._size = "L", (8, 8)
        self.tile = []

    def load(self) -> None:
        raise PluginBug("the plugin's decoder broke")


@pytest.fixture
def plugin() -> Iterator[None]:
    Image.init()
    Image.register_open(BrokenImageFile.format, BrokenImageFile, lambda prefix: prefix[: len(MAGIC)] == MAGIC)
    try:
        yield
    finally:
        Image.OPEN.pop(BrokenImageFile.format, None)
        Image.ID.remove(BrokenImageFile.format)


def broken(path: Path, where: bytes) -> Path:
    path.write_bytes(MAGIC + where + bytes(64))
    return path


def test_the_plugin_is_what_breaks(plugin, tmp_path):
    """The control: Pillow opens the file with the plugin and the plugin's own exception comes out."""
    with pytest.raises(PluginBug, match="header"):
        Image.open(broken(tmp_path / "a.png", IN_HEADER))
    with Image.open(broken(tmp_path / "b.png", IN_PIXELS)) as image, pytest.raises(PluginBug, match="decoder"):
        assert image.format == "CNTXBUG"
        image.load()


@pytest.mark.parametrize(("where", "reason"), [(IN_HEADER, "header parser"), (IN_PIXELS, "decoder")])
def test_predict_says_one_line(plugin, one_epoch_run, tmp_path, monkeypatch, where, reason):
    image = broken(tmp_path / "photo.png", where)
    result = run_main(predict.main, [str(one_epoch_run), str(image)], tmp_path, monkeypatch)
    assert_one_line_error(result, f"cannot read image {image}: the plugin's {reason} broke")


@pytest.mark.parametrize(("where", "reason"), [(IN_HEADER, "header parser"), (IN_PIXELS, "decoder")])
def test_training_says_one_line_and_skip_bad_images_leaves_it_out(plugin, tmp_path, monkeypatch, where, reason):
    root = make_folder(tmp_path / "data", rgb=False, size=12, per_class=4)
    bad = broken(root / "train" / "circle" / "zz-plugin.png", where)
    common = ["dataset=imagefolder", f"dataset.root={root}", "dataset.num_workers=0", "model=cnn2"]
    result = run_main(train.main, [*common, "trainer.epochs=1", "trainer.progress=false"], tmp_path, monkeypatch)
    assert_one_line_error(result, f"cannot read image {bad}: the plugin's {reason} broke", "dataset.skip_bad_images")

    bundle = load_data(compose_config(*common, "dataset.skip_bad_images=true").dataset, seed=0)
    assert [path for path, _ in bundle.skipped] == [bad] and f"the plugin's {reason} broke" in bundle.skipped[0][1]
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 12
