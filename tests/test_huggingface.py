"""dataset=huggingface: save_to_disk folders, Parquet folders and the Hub cache, built with the real `datasets`
library from drawn images, through the same loading and commands as every other source."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

datasets = pytest.importorskip("datasets")

from cnntrain.commands import evaluate, predict, train  # noqa: E402
from cnntrain.data.containers import iterate_batches  # noqa: E402
from cnntrain.data.image_cache import fallback_cache_dir  # noqa: E402
from cnntrain.data.loading import load_data, train_labels  # noqa: E402
from cnntrain.data.sources import huggingface, huggingface_images  # noqa: E402
from cnntrain.errors import DataError  # noqa: E402

from helpers import assert_one_line_error, compose_config, run_main  # noqa: E402
from synthetic_hf import shapes, split_of, with_rows  # noqa: E402
from synthetic_images import CLASSES, draw  # noqa: E402

RUN = (
    "dataset=huggingface",
    "model=cnn2",
    "trainer.epochs=1",
    "trainer.batch_size=16",
    "report.plots=false",
    "trainer.progress=false",
)


@pytest.fixture(autouse=True)
def private_caches(tmp_path, monkeypatch):
    """`datasets`' own cache (Parquet folders are converted into it) and cnntrain's per-user cache in tmp_path."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


@pytest.fixture
def saved(tmp_path) -> Path:
    """A DatasetDict (Image + ClassLabel; train 36, validation 9, test 9) written by save_to_disk."""
    shapes().save_to_disk(str(tmp_path / "saved"))
    return tmp_path / "saved"


def to_parquet_folder(dataset_dict, folder: Path) -> Path:
    """The Hub's layout: data/<split>-00000-of-00001.parquet."""
    (folder / "data").mkdir(parents=True)
    for split, table in dataset_dict.items():
        table.to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    return folder


def hf_cfg(path: Path | str, *overrides: str):
    return compose_config("dataset=huggingface", f"dataset.path={path}", *overrides).dataset


def find_run(cwd: Path) -> Path:
    summaries = list((cwd / "outputs").rglob("summary.json"))
    assert len(summaries) == 1, summaries
    return summaries[0].parent


def test_save_to_disk_trains_then_eval_and_predict_on_the_run(tmp_path, saved, monkeypatch):
    result = run_main(train.main, [*RUN, f"dataset.path={saved}"], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    run_dir = find_run(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["classes"] == list(CLASSES)
    assert summary["sizes"] == {"train": 36, "val": 9, "test": 9}, "the dataset's own validation and test splits"
    assert summary["data"]["layout"] == (
        f"Hugging Face dataset {saved} (save_to_disk): splits train 36, validation 9, test 9; image column 'image', "
        f"label column 'label' (ClassLabel, 3 classes)"
    )
    assert list(fallback_cache_dir(saved).glob("hf-train-*.pt")), "decoded once into the dataset's cache folder"
    assert not (saved / ".cnntrain-cache").exists()

    result = run_main(evaluate.main, [str(run_dir), "--device", "cpu"], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    evaluated = json.loads((run_dir / "eval_summary.json").read_text())
    assert evaluated["test"]["acc"] == pytest.approx(summary["test"]["acc"])
    assert evaluated["confusion_matrix"] == summary["confusion_matrix"]

    image = tmp_path / "square.png"
    draw(2, 16, np.random.default_rng(9), False).save(image)
    result = run_main(predict.main, [str(run_dir), str(image), "--json"], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    [record] = json.loads(result.stdout)
    assert {row["class"] for row in record["top"]} == set(CLASSES)


def test_parquet_folder_reads_like_save_to_disk(tmp_path, saved):
    folder = to_parquet_folder(datasets.load_from_disk(str(saved)), tmp_path / "parquet")
    from_disk = load_data(hf_cfg(saved), seed=0)
    from_parquet = load_data(hf_cfg(folder), seed=0)
    assert from_parquet.layout.startswith(
        f"Hugging Face dataset {folder} (parquet): splits train 36, validation 9, test 9"
    )
    for split in ("train", "val", "test"):
        a, b = getattr(from_disk, split), getattr(from_parquet, split)
        assert torch.equal(a.images[:], b.images[:]) and torch.equal(a.labels, b.labels)
    assert from_disk.train.images.shape == (36, 1, 16, 16) and from_disk.train.images[:].float().std() > 10
    assert torch.bincount(from_disk.test.labels).tolist() == [3, 3, 3]
    # a second load (its cache now lies among the Parquet files) reads the same; a resize and RGB are honoured
    again = load_data(hf_cfg(folder, "dataset.image_size=[12,12]", "dataset.channels=3"), seed=0)
    assert again.train.images.shape == (36, 3, 12, 12) and torch.equal(again.test.labels, from_parquet.test.labels)


def test_images_are_decoded_once_then_read_from_the_cache(saved, monkeypatch):
    first = load_data(hf_cfg(saved), seed=0)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(huggingface_images, "decode_image", no_decoding)
    second = load_data(hf_cfg(saved), seed=0)
    assert torch.equal(first.train.images[:], second.train.images[:])
    assert torch.equal(first.val.images[:], second.val.images[:])
    with pytest.raises(AssertionError, match="decoded again"):  # another shape is another cache entry
        load_data(hf_cfg(saved, "dataset.image_size=[8,8]"), seed=0)


def test_string_labels_and_named_columns(tmp_path):
    parts = shapes(validation=0, test=6, strings=True, columns=("picture", "kind"), rgb=True)
    # a second Image column: finding the images by feature is then ambiguous, naming the column settles it
    parts = datasets.DatasetDict(
        {
            name: t.add_column("thumb", t.cast_column("picture", datasets.Image(decode=False))["picture"]).cast_column(
                "thumb", datasets.Image()
            )
            for name, t in parts.items()
        }
    )
    parts.save_to_disk(str(tmp_path / "named"))
    with pytest.raises(DataError, match=r"several image columns \(picture, thumb\).*set dataset.image_column"):
        load_data(hf_cfg(tmp_path / "named"), seed=0)
    with pytest.raises(DataError, match=r"no label column .*picture \(Image\), kind \(Value string\)"):
        load_data(hf_cfg(tmp_path / "named", "dataset.image_column=picture"), seed=0)
    bundle = load_data(hf_cfg(tmp_path / "named", "dataset.image_column=picture", "dataset.label_column=kind"), seed=0)
    assert bundle.classes == sorted(CLASSES) and bundle.input_shape == (3, 16, 16)
    assert "label column 'kind' (values, 3 classes)" in bundle.layout and "validation split off train" in bundle.layout
    # the class names are sorted, so the drawn class i is the name CLASSES[i] wherever it sorts
    expected = torch.tensor([sorted(CLASSES).index(CLASSES[i % 3]) for i in range(6)])
    assert torch.equal(bundle.test.labels, expected)


def test_a_train_split_alone_has_validation_and_test_split_off(tmp_path):
    split_of(40, 0).save_to_disk(str(tmp_path / "single"))  # Dataset.save_to_disk: one split, read as train
    bundle = load_data(hf_cfg(tmp_path / "single"), seed=0)
    assert len(bundle.test) == 8 and len(bundle.train) + len(bundle.val) == 32
    assert sorted(torch.bincount(bundle.test.labels).tolist()) == [2, 3, 3], "held out stratified"
    assert bundle.layout.endswith("validation and test split off train (stratified)")


def test_labels_are_read_without_decoding_an_image(saved, monkeypatch):
    cfg = hf_cfg(saved, "dataset.folds=3", "dataset.fold=1")
    expected = load_data(cfg, seed=5).train.labels

    def no_decoding(*args, **kwargs):
        raise AssertionError("labels() decoded an image")

    monkeypatch.setattr(huggingface_images, "decode_image", no_decoding)
    monkeypatch.setattr(huggingface, "image_input_shape", lambda cfg, source: (1, 16, 16))
    labels = train_labels(cfg, seed=5)
    assert torch.equal(labels, expected) and len(labels) == 30, "folds: validation joins train, 2 of 3 folds train"


def test_folds_with_balanced_weights_and_sampler_run_end_to_end(tmp_path, saved, monkeypatch):
    result = run_main(
        train.main,
        [
            *RUN,
            f"dataset.path={saved}",
            "dataset.folds=3",
            "dataset.fold=2",
            "trainer.class_weights=balanced",
            "trainer.sampler=balanced",
        ],
        tmp_path,
        monkeypatch,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((find_run(tmp_path) / "summary.json").read_text())
    assert summary["sizes"] == {"train": 30, "val": 15, "test": 9}, "train + validation, cut into 3 folds"


@pytest.mark.parametrize("workers", [0, 1])
def test_streamed_rows_give_the_same_batches_as_in_memory(saved, workers):
    memory = load_data(hf_cfg(saved, "dataset.folds=3", "dataset.fold=0"), seed=0)
    streamed = load_data(
        hf_cfg(saved, "dataset.folds=3", "dataset.fold=0", "dataset.in_memory=false", f"dataset.num_workers={workers}"),
        seed=0,
    )
    assert isinstance(streamed.train.images, huggingface_images.ArrowImages)
    assert torch.allclose(streamed.mean, memory.mean) and torch.allclose(streamed.std, memory.std)
    for split in ("train", "val", "test"):
        a = list(iterate_batches(getattr(memory, split), 7, shuffle=True, generator=torch.Generator().manual_seed(3)))
        b = list(iterate_batches(getattr(streamed, split), 7, shuffle=True, generator=torch.Generator().manual_seed(3)))
        assert len(a) == len(b) > 0
        for (images_a, labels_a), (images_b, labels_b) in zip(a, b):
            assert torch.equal(images_a, images_b) and torch.equal(labels_a, labels_b)


def fill_hub_cache(parquet: Path, name: str) -> None:
    """Put a dataset into `datasets`' cache the way a download of Hub dataset `name` leaves it."""
    datasets.load_dataset("parquet", data_dir=str(parquet))
    built = next(p for p in (datasets.config.HF_DATASETS_CACHE / "parquet").glob("*/*/*") if p.is_dir())
    user, dataset = name.split("/")
    target = datasets.config.HF_DATASETS_CACHE / f"{user}___{dataset}" / "default" / "0.0.0" / built.name
    shutil.copytree(built, target)
    for arrow in target.glob("parquet-*.arrow"):
        arrow.rename(target / arrow.name.replace("parquet-", f"{dataset}-"))
    info = json.loads((target / "dataset_info.json").read_text())
    info.update(builder_name=dataset, dataset_name=dataset)
    (target / "dataset_info.json").write_text(json.dumps(info))


def test_a_hub_name_is_read_offline_from_the_cache(tmp_path, saved, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fill_hub_cache(to_parquet_folder(datasets.load_from_disk(str(saved)), tmp_path / "pq"), "someone/shapes")
    bundle = load_data(hf_cfg("someone/shapes"), seed=0)
    assert bundle.layout.startswith("Hugging Face dataset someone/shapes (Hub cache): splits train 36, validation 9")
    assert torch.equal(bundle.test.images[:], load_data(hf_cfg(saved), seed=0).test.images[:])
    assert list((tmp_path / "user-cache" / "cnntrain").rglob("hf-test-*.pt")), (
        "no dataset folder of its own: decoded images are cached per user"
    )


def test_a_hub_name_not_in_the_cache_names_the_cache_and_the_command(tmp_path, monkeypatch):
    empty = tmp_path / "empty-home"
    empty.mkdir()
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", empty / "datasets")
    result = run_main(
        train.main,
        [*RUN, "dataset.path=someone/not-here"],
        tmp_path,
        monkeypatch,
        HF_HOME=str(empty),
        HF_HUB_OFFLINE="1",
    )
    assert_one_line_error(
        result,
        f"Hugging Face dataset 'someone/not-here' is not in the local cache {empty / 'datasets'}",
        "python -c \"import datasets; datasets.load_dataset('someone/not-here')\"",
        cwd=tmp_path,
    )


def test_without_the_datasets_package_one_line_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now raises ImportError
    result = run_main(train.main, [*RUN, f"dataset.path={tmp_path}"], tmp_path, monkeypatch)
    assert_one_line_error(
        result, "dataset=huggingface needs the datasets package: pip install 'cnntrain[hf]'", cwd=tmp_path
    )


def test_an_undecodable_image_names_its_split_and_row(tmp_path):
    broken = with_rows(split_of(12, 0), lambda rows: rows[7].update(image={"bytes": b"not a picture", "path": None}))
    datasets.DatasetDict(train=broken).save_to_disk(str(tmp_path / "broken"))
    with pytest.raises(DataError, match=r"cannot read image in split 'train' of .*broken, row 7"):
        load_data(hf_cfg(tmp_path / "broken"), seed=0)
