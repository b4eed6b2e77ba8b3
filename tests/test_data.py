"""Data module: IDX loading through torchvision, the seeded split, batching, normalising, errors."""

from __future__ import annotations

import gzip
import os
import socket
import time
from pathlib import Path

import pytest
import torch

from cnntrain.data.batches import num_batches
from cnntrain.data.containers import TensorSplit, iterate_batches
from cnntrain.data.description import DataDescription
from cnntrain.data.loading import DataBundle, load_data
from cnntrain.data.sources import torchvision_datasets as data
from cnntrain.data.split import split_indices
from cnntrain.errors import ConfigError, DataError

from helpers import dataset_section
from synthetic_idx import truncate_file


def dataset_cfg(root: Path | str, folder: str = "MNIST", **overrides):
    """A dataset config shaped like configs/dataset/mnist.yaml, pointing at `root`."""
    cfg = {
        "name": "fashion" if folder == "FashionMNIST" else "mnist",
        "torchvision_class": folder,
        "root": str(root),
        "download": False,
        "input_shape": [1, 28, 28],
        "num_classes": 10,
        "classes": [str(i) for i in range(10)],
        "mean": [0.1307],
        "std": [0.3081],
        "val_split": 0.1,
        "val_strategy": "random",
    }
    cfg.update(overrides)
    return dataset_section(cfg)


def class_counts(labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    return torch.bincount(labels.cpu(), minlength=num_classes)


# ---------------------------------------------------------------- loading


@pytest.mark.parametrize("folder", ["MNIST", "FashionMNIST"])
def test_synthetic_idx_loads_through_torchvision(synthetic_data_root, folder):
    bundle = load_data(dataset_cfg(synthetic_data_root, folder), seed=0)

    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (1080, 120, 300)
    for split in (bundle.train, bundle.val, bundle.test):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (1, 28, 28)
        assert split.labels.dtype == torch.int64 and split.labels.shape == (len(split),)
        assert 0 <= int(split.labels.min()) and int(split.labels.max()) == 9
    assert bundle.input_shape == (1, 28, 28)
    assert bundle.classes == [str(i) for i in range(10)]
    assert bundle.mean.shape == bundle.std.shape == (1, 1, 1, 1)
    assert class_counts(bundle.test.labels).tolist() == [30] * 10


def test_load_data_is_deterministic_per_seed(synthetic_data_root):
    cfg = dataset_cfg(synthetic_data_root)
    first, again, other = load_data(cfg, seed=3), load_data(cfg, seed=3), load_data(cfg, seed=4)

    assert torch.equal(first.val.images[:], again.val.images[:])
    assert torch.equal(first.val.labels, again.val.labels)
    assert not torch.equal(first.val.images[:], other.val.images[:])


def test_load_data_stratified_val_keeps_classes_balanced(synthetic_data_root):
    bundle = load_data(dataset_cfg(synthetic_data_root, val_strategy="stratified"), seed=0)

    assert class_counts(bundle.val.labels).tolist() == [12] * 10
    assert class_counts(bundle.train.labels).tolist() == [108] * 10


def test_input_shape_mismatch_names_both_shapes(synthetic_data_root):
    with pytest.raises(DataError, match=r"\[3, 32, 32\].*1x28x28"):
        load_data(dataset_cfg(synthetic_data_root, input_shape=[3, 32, 32]), seed=0)


def test_small_images_against_mnist_config(make_data_root):
    root = make_data_root(n_train=50, n_test=20, image_size=14)
    with pytest.raises(DataError, match=r"\[1, 28, 28\].*1x14x14"):
        load_data(dataset_cfg(root), seed=0)


def test_class_names_must_match_num_classes(synthetic_data_root):
    with pytest.raises(DataError, match="9 names.*num_classes is 10"):
        load_data(dataset_cfg(synthetic_data_root, classes=[str(i) for i in range(9)]), seed=0)


def test_labels_beyond_num_classes(synthetic_data_root):
    cfg = dataset_cfg(synthetic_data_root, num_classes=5, classes=list("abcde"))
    with pytest.raises(DataError, match="0..9.*num_classes=5"):
        load_data(cfg, seed=0)


def test_mean_std_must_match_channels(synthetic_data_root):
    with pytest.raises(DataError, match="dataset.mean has 3 values"):
        load_data(dataset_cfg(synthetic_data_root, mean=[0.5, 0.5, 0.5]), seed=0)


def test_unsupported_torchvision_class(synthetic_data_root):
    with pytest.raises(ConfigError, match="'Places365'.*CIFAR10, CIFAR100, EMNIST, FashionMNIST, KMNIST, MNIST"):
        load_data(dataset_cfg(synthetic_data_root, torchvision_class="Places365"), seed=0)


@pytest.mark.parametrize(
    ("name", "keep_fraction"),
    [
        ("train-images-idx3-ubyte", 0.5),
        ("train-labels-idx1-ubyte", 0.5),
        ("t10k-images-idx3-ubyte", 0.001),  # header cut short
    ],
)
def test_truncated_file_names_it(make_data_root, name, keep_fraction):
    root = make_data_root(n_train=100, n_test=50)
    truncate_file(root / "MNIST" / "raw" / name, keep_fraction)

    with pytest.raises(DataError, match=f"{name} is corrupt or truncated"):
        load_data(dataset_cfg(root), seed=0)


def test_image_and_label_counts_must_agree(make_data_root):
    root = make_data_root(n_train=100, n_test=50)
    other = make_data_root(n_train=80, n_test=50)
    name = "train-labels-idx1-ubyte"
    (root / "MNIST" / "raw" / name).write_bytes((other / "MNIST" / "raw" / name).read_bytes())

    with pytest.raises(DataError, match="100 train images but 80 labels"):
        load_data(dataset_cfg(root), seed=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_load_to_cuda_and_batch_with_cpu_generator(synthetic_data_root):
    bundle = load_data(dataset_cfg(synthetic_data_root), seed=0, device="cuda")

    for tensor in (bundle.train.images[:], bundle.val.labels, bundle.test.images[:], bundle.mean, bundle.std):
        assert tensor.is_cuda
    images, labels = next(iterate_batches(bundle.train, 32, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert images.is_cuda and labels.is_cuda and bundle.normalize(images).is_cuda


@pytest.mark.realdata
def test_real_mnist():
    root = os.environ.get("CNNTRAIN_DATA_ROOT")
    if not root or not (Path(root) / "MNIST" / "raw").is_dir():
        pytest.skip("set CNNTRAIN_DATA_ROOT to a folder holding MNIST/raw")
    bundle = load_data(dataset_cfg(root, val_split=5000), seed=0)

    assert (len(bundle.train) + len(bundle.val), len(bundle.val), len(bundle.test)) == (60000, 5000, 10000)
    assert bundle.train.images.shape[1:] == (1, 28, 28) and bundle.train.images.dtype == torch.uint8
    assert sorted(torch.unique(bundle.test.labels).tolist()) == list(range(10))


# ---------------------------------------------------------------- finding the files


def test_raw_folder(tmp_path):
    assert data.raw_folder(dataset_cfg(tmp_path, "FashionMNIST")) == tmp_path / "FashionMNIST" / "raw"


def test_missing_files_without_download_name_the_folder(tmp_path):
    cfg = dataset_cfg(tmp_path / "nowhere")
    with pytest.raises(DataError) as info:
        data.ensure_available(cfg)

    message = str(info.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "dataset.download=false" in message and "(missing" not in message


def test_partly_missing_files_are_listed(make_data_root):
    root = make_data_root(n_train=20, n_test=10)
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()

    with pytest.raises(DataError, match=r"\(missing t10k-labels-idx1-ubyte\)"):
        data.ensure_available(dataset_cfg(root))


def test_present_files_pass(synthetic_data_root):
    data.ensure_available(dataset_cfg(synthetic_data_root, download=True))


def test_gz_files_are_unpacked(make_data_root):
    root = make_data_root(n_train=30, n_test=10)
    raw = root / "MNIST" / "raw"
    for path in list(raw.iterdir()):
        (raw / f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()

    data.ensure_available(dataset_cfg(root))
    assert len(load_data(dataset_cfg(root), seed=0).test) == 10


def test_broken_gz_leaves_nothing_behind(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"x" * 1000)[:20])

    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz cannot be unpacked"):
        data.ensure_available(dataset_cfg(tmp_path))
    assert sorted(p.name for p in raw.iterdir()) == ["train-images-idx3-ubyte.gz"]


@pytest.mark.download
def test_failed_download_is_one_clean_error(tmp_path, monkeypatch):
    import torchvision

    # A closed local port: the real torchvision download code runs and fails at once, with or without internet.
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    started = time.monotonic()
    with pytest.raises(DataError, match=r"MNIST not found under .* and download failed \(no network\?\)"):
        data.ensure_available(dataset_cfg(tmp_path, download=True))
    assert time.monotonic() - started < 5


@pytest.mark.download
def test_download_that_never_answers_is_cut_off(tmp_path, monkeypatch):
    import torchvision

    # Accepts connections (via the listen backlog) but never replies: without a timeout urlopen waits forever.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [f"http://127.0.0.1:{port}/"])
        monkeypatch.setattr(data, "DOWNLOAD_TIMEOUT_S", 0.3)
        started = time.monotonic()
        with pytest.raises(DataError, match="download failed"):
            data.ensure_available(dataset_cfg(tmp_path, download=True))
    assert time.monotonic() - started < 5
    assert socket.getdefaulttimeout() is None


# ---------------------------------------------------------------- split


def test_split_by_fraction_is_disjoint_and_complete():
    labels = torch.arange(1000) % 10
    train_idx, val_idx = split_indices(labels, 0.15, "random", seed=0)

    assert len(val_idx) == 150 and len(train_idx) == 850
    assert torch.equal(torch.cat([train_idx, val_idx]).sort().values, torch.arange(1000))
    assert train_idx.dtype == val_idx.dtype == torch.int64


def test_split_by_count():
    train_idx, val_idx = split_indices(torch.zeros(300, dtype=torch.long), 42, "random", seed=0)
    assert (len(train_idx), len(val_idx)) == (258, 42)


@pytest.mark.parametrize("strategy", ["random", "stratified"])
def test_split_is_seeded(strategy):
    labels = torch.arange(500) % 10
    first = split_indices(labels, 0.2, strategy, seed=7)
    again = split_indices(labels, 0.2, strategy, seed=7)
    other = split_indices(labels, 0.2, strategy, seed=8)

    assert torch.equal(first[1], again[1]) and torch.equal(first[0], again[0])
    assert not torch.equal(first[1], other[1])


@pytest.mark.parametrize("val_split", [0.1, 0.33, 77])
def test_stratified_keeps_class_proportions(val_split):
    sizes = [50, 120, 7, 300, 23]
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])[torch.randperm(sum(sizes))]
    train_idx, val_idx = split_indices(labels, val_split, "stratified", seed=0)

    n_val = val_split if isinstance(val_split, int) else round(val_split * sum(sizes))
    assert len(val_idx) == n_val
    share = n_val / sum(sizes)
    for c, n in enumerate(sizes):
        assert abs(int((labels[val_idx] == c).sum()) - share * n) < 1
    assert torch.equal(torch.cat([train_idx, val_idx]).sort().values, torch.arange(sum(sizes)))


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.2, 0, -3, 100, 250, 0.001, "lots", True])
def test_bad_val_split_names_the_value(bad):
    with pytest.raises(DataError, match="dataset.val_split") as info:
        split_indices(torch.arange(100) % 10, bad, "random", seed=0)
    assert str(bad) in str(info.value)


def test_bad_strategy_names_the_value_and_the_choices():
    with pytest.raises(DataError, match="'kfold'.*random, stratified"):
        split_indices(torch.arange(100) % 10, 0.1, "kfold", seed=0)


# ---------------------------------------------------------------- batching


def numbered_split(n: int) -> TensorSplit:
    """Labels are the sample numbers, so a batch says exactly which samples it holds."""
    return TensorSplit(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1), torch.arange(n))


@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_cover_every_sample_once(shuffle):
    generator = torch.Generator().manual_seed(0)
    batches = list(iterate_batches(numbered_split(103), 10, shuffle=shuffle, generator=generator))
    seen = torch.cat([labels for _, labels in batches])

    assert len(batches) == num_batches(103, 10, drop_last=False) == 11
    assert [len(labels) for _, labels in batches[-2:]] == [10, 3]
    assert torch.equal(seen.sort().values, torch.arange(103))
    assert torch.equal(seen, torch.arange(103)) != shuffle
    assert all(torch.equal(images.view(-1).long(), labels) for images, labels in batches)


def test_drop_last():
    batches = list(iterate_batches(numbered_split(103), 10, shuffle=True, drop_last=True))

    assert len(batches) == num_batches(103, 10, drop_last=True) == 10
    assert all(len(labels) == 10 for _, labels in batches)
    assert len(torch.cat([labels for _, labels in batches]).unique()) == 100


def test_same_generator_seed_same_order():
    def order(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        batches = iterate_batches(numbered_split(50), 8, shuffle=True, generator=generator)
        return torch.cat([labels for _, labels in batches])

    assert torch.equal(order(1), order(1))
    assert not torch.equal(order(1), order(2))


def test_num_batches():
    assert [num_batches(n, 4, False) for n in (0, 1, 4, 5)] == [0, 1, 1, 2]
    assert [num_batches(n, 4, True) for n in (0, 3, 4, 9)] == [0, 0, 1, 2]


# ---------------------------------------------------------------- normalize


def bundle_with_stats(mean: list[float], std: list[float]) -> DataBundle:
    empty = TensorSplit(torch.zeros(0, len(mean), 2, 2, dtype=torch.uint8), torch.zeros(0, dtype=torch.long))
    return DataBundle(
        train=empty,
        val=empty,
        test=empty,
        description=DataDescription((len(mean), 2, 2), ["a", "b"], mean, std),
        mean=torch.tensor(mean).view(1, -1, 1, 1),
        std=torch.tensor(std).view(1, -1, 1, 1),
    )


def test_normalize_known_values():
    images = torch.tensor([0, 255, 51, 153], dtype=torch.uint8).view(1, 1, 2, 2)
    out = bundle_with_stats([0.5], [0.25]).normalize(images)

    assert out.dtype == torch.float32
    assert torch.allclose(out.view(-1), torch.tensor([-2.0, 2.0, -1.2, 0.4]), atol=1e-6)
    assert images.dtype == torch.uint8 and int(images[0, 0, 0, 1]) == 255


def test_normalize_is_per_channel():
    images = torch.full((2, 3, 2, 2), 255, dtype=torch.uint8)
    out = bundle_with_stats([0.0, 0.5, 1.0], [1.0, 0.5, 0.25]).normalize(images)

    assert out[:, 0].eq(1.0).all() and out[:, 1].eq(1.0).all() and out[:, 2].eq(0.0).all()
