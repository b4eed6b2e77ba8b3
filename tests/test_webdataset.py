"""dataset=webdataset: tar shards streamed through the webdataset library, and cnntrain-shards that writes them.

Shards are written here with webdataset's own ShardWriter from drawn images (synthetic_images.draw), so the
reader meets files made by the library, not by cnntrain.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from cnntrain.commands import evaluate as evaluate_command
from cnntrain.commands import shards as shards_command
from cnntrain.commands import train as train_command
from cnntrain.data.batches import num_batches
from cnntrain.data.containers import images_at, iterate_batches
from cnntrain.data.loading import load_data

from helpers import assert_one_line_error, cli_env, cnntrain_command, compose_config, run_main
from synthetic_images import CLASSES, draw, make_folder

wds = pytest.importorskip("webdataset")

RUN = (
    "model=cnn2",
    "trainer.epochs=2",
    "trainer.batch_size=32",
    "report.plots=false",
    "trainer.progress=false",
    "trainer.early_stopping.enabled=false",
    "dataset.num_workers=0",
)


def png(image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def write_shards(
    folder: Path, split: str, count: int, per_shard: int, seed: int = 0, size: int = 16, label_key: str = "cls"
) -> str:
    """`count` drawn samples into folder/split-000000.tar, ...; returns the brace range naming them."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with wds.ShardWriter(str(folder / f"{split}-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for i in range(count):
            label = i % len(CLASSES)
            sink.write(
                {
                    "__key__": f"{split}{seed}-{i:06d}",
                    "png": png(draw(label, size, rng, rgb=False)),
                    label_key: str(label),
                }
            )
    last = (count - 1) // per_shard
    return f"{folder}/{split}-{{000000..{last:06d}}}.tar"


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shards")
    write_shards(folder, "train", 240, 60, seed=1)
    write_shards(folder, "val", 48, 24, seed=2)
    write_shards(folder, "test", 60, 30, seed=3)
    (folder / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    return folder


def spec(folder: Path, split: str, shards: int) -> str:
    return f"dataset.{split}='{folder}/{split}-{{000000..{shards - 1:06d}}}.tar'"


def own_splits(folder: Path) -> tuple[str, ...]:
    return ("dataset=webdataset", spec(folder, "train", 4), spec(folder, "val", 2), spec(folder, "test", 2))


def train(tmp_path: Path, monkeypatch, *overrides: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    result = run_main(train_command.main, [*RUN, *overrides], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    runs = [p.parent for p in (tmp_path / "outputs").rglob("summary.json")]
    assert len(runs) == 1, runs
    return runs[0], json.loads((runs[0] / "summary.json").read_text())


def metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


# -- the data path -----------------------------------------------------------------------------------------


def test_counted_sizes_labels_and_streamed_batches(shard_dir):
    cfg = compose_config(*own_splits(shard_dir), "dataset.num_workers=0")
    data = load_data(cfg.dataset, seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (240, 48, 60)
    assert data.input_shape == (1, 16, 16) and data.classes == list(CLASSES)
    assert torch.equal(data.train.labels, torch.arange(240) % 3)  # canonical order: shards, then tar order
    assert "webdataset shards (streamed)" in data.layout
    seen = [
        labels
        for _, labels in iterate_batches(data.train, 32, shuffle=True, generator=torch.Generator().manual_seed(0))
    ]
    assert [len(s) for s in seen] == [32] * 7 + [16]
    assert sorted(torch.cat(seen).tolist()) == sorted(data.train.labels.tolist())  # one process: each sample once
    again = [
        labels
        for _, labels in iterate_batches(data.train, 32, shuffle=True, generator=torch.Generator().manual_seed(0))
    ]
    other = [
        labels
        for _, labels in iterate_batches(data.train, 32, shuffle=True, generator=torch.Generator().manual_seed(1))
    ]
    assert all(torch.equal(a, b) for a, b in zip(seen, again))
    assert not all(torch.equal(a, b) for a, b in zip(seen, other))
    ordered = list(iterate_batches(data.test, 25, shuffle=False))
    assert torch.equal(torch.cat([labels for _, labels in ordered]), data.test.labels)
    in_order = torch.cat([images for images, _ in ordered])
    wanted = [59, 0, 31, 7]  # the pictures' images (misclassified, worst mistakes): any order, one pass
    assert torch.equal(images_at(data.test.images, wanted), in_order[wanted])


def test_a_fraction_of_the_stream_is_read_by_key_and_leaves_val_and_test(shard_dir):
    base = (*own_splits(shard_dir), "dataset.num_workers=0")
    whole = load_data(compose_config(*base).dataset, seed=0)
    part = load_data(compose_config(*base, "dataset.fraction=0.25").dataset, seed=0)
    assert len(part.train) == 60 and torch.bincount(part.train.labels).tolist() == [20, 20, 20]
    assert torch.equal(part.val.labels, whole.val.labels) and torch.equal(part.test.labels, whole.test.labels)
    read = [
        labels
        for _, labels in iterate_batches(part.train, 32, shuffle=True, generator=torch.Generator().manual_seed(0))
    ]
    assert sorted(torch.cat(read).tolist()) == sorted(part.train.labels.tolist()), "the reader takes the subset"
    wanted = [0, 59]
    assert torch.equal(
        images_at(part.train.images, wanted),
        images_at(whole.train.images, [int(i) for i in _kept_indices(whole, part, wanted)]),
    )


def _kept_indices(whole, part, wanted):
    """Where the subset's images at `wanted` sit in the whole split (by their keys)."""
    keys = [key for p in whole.train.images.parts for key in p.keys]
    kept = [key for p in part.train.images.parts for key in p.keys]
    return [keys.index(kept[i]) for i in wanted]


def test_ranks_take_equal_steps_from_their_own_shards(shard_dir):
    """3 ranks over 4 shards: every rank yields num_batches shares of the sizes one process's batches split into."""
    cfg = compose_config(*own_splits(shard_dir))
    split = load_data(cfg.dataset, seed=0).train
    n, world, batch = len(split), 3, 50
    gen = [torch.Generator().manual_seed(3) for _ in range(world)]
    shares = [
        list(iterate_batches(split, batch, shuffle=True, generator=gen[r], rank=r, world=world)) for r in range(world)
    ]
    count = num_batches(n, batch, False, world)
    assert all(len(s) == count for s in shares)
    for b in range(count):
        assert sum(len(shares[r][b][1]) for r in range(world)) == min(batch, n - b * batch)
    assert all(torch.equal(g.get_state(), gen[0].get_state()) for g in gen)


def test_workers_read_different_shards(shard_dir):
    """With 2 DataLoader workers, each reads its own shards (split_by_worker): every chunk a worker sends comes
    from its shards alone, and together they read each sample once."""
    from cnntrain.data.streams import StreamDataset

    cfg = compose_config(*own_splits(shard_dir), "dataset.num_workers=2")
    data = load_data(cfg.dataset, seed=0)
    seen = torch.cat(
        [
            labels
            for _, labels in iterate_batches(data.train, 40, shuffle=True, generator=torch.Generator().manual_seed(0))
        ]
    )
    assert len(seen) == 240 and torch.bincount(seen).tolist() == [80, 80, 80]
    parts = data.train.images.parts
    loader = torch.utils.data.DataLoader(
        StreamDataset(parts, data.train.images.settings, None, True), batch_size=None, num_workers=2
    )
    shard_of = {i: k for k, part in enumerate(parts) for i in range(part.offset, part.offset + part.count)}
    read, chunks = [], []
    for _, _, index, *_ in loader:  # (images, labels, indices, images left out)
        chunks.append({shard_of[i] for i in index.tolist()})
        read.extend(index.tolist())
    assert sorted(read) == list(range(240))
    assert all(c <= {0, 2} or c <= {1, 3} for c in chunks)  # worker 0 reads shards 0 and 2, worker 1 shards 1, 3
    assert any(c <= {0, 2} for c in chunks) and any(c <= {1, 3} for c in chunks)


# -- whole runs --------------------------------------------------------------------------------------------


def test_run_on_own_val_and_test_shards_then_eval_and_predict(shard_dir, tmp_path, monkeypatch):
    run_dir, found = train(tmp_path, monkeypatch, *own_splits(shard_dir), "trainer.epochs=2", "report.plots=true")
    for picture in ("curves.png", "confusion_matrix.png", "worst_mistakes.png", "reliability.png", "report.html"):
        assert (run_dir / picture).stat().st_size > 1000, picture
    assert len(found["analysis"]["worst_mistakes"]) == sum(
        n for i, row in enumerate(found["confusion_matrix"]) for j, n in enumerate(row) if i != j
    )
    assert found["sizes"] == {"train": 240, "val": 48, "test": 60}
    assert found["data"]["kind"] == "webdataset" and "train 4 shard(s), 240 samples" in found["data"]["layout"]
    assert sum(map(sum, found["confusion_matrix"])) == 60
    assert [sum(row) for row in found["confusion_matrix"]] == [20, 20, 20]  # each prediction with its own label
    assert found["test"]["acc"] > 0.5
    result = run_main(evaluate_command.main, [str(run_dir), "--device", "cpu"], tmp_path, monkeypatch)
    assert result.returncode == 0, result.stderr
    alone = json.loads((run_dir / "eval_summary.json").read_text())
    assert alone["test"]["acc"] == found["test"]["acc"]
    assert alone["confusion_matrix"] == found["confusion_matrix"]
    picture = tmp_path / "one.png"
    draw(2, 16, np.random.default_rng(9), rgb=False).save(picture)
    predicted = subprocess.run(
        [*cnntrain_command("cnntrain-predict", "cnntrain.commands.predict"), str(run_dir), str(picture)],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert predicted.returncode == 0, predicted.stderr
    assert "square" in predicted.stdout


def test_val_and_test_by_key_hash_are_repeatable(shard_dir, tmp_path, monkeypatch):
    """No val/test shards: both are taken from train by a hash of each key; the same command twice gives the
    same metrics, the split sizes add up to the training shards', and another seed moves val but not test."""
    base = ("dataset=webdataset", spec(shard_dir, "train", 4), "dataset.shuffle_buffer=50", "trainer.epochs=2")
    first, found = train(tmp_path / "a", monkeypatch, *base)
    second, again = train(tmp_path / "b", monkeypatch, *base)
    assert metrics(first) == metrics(second) and found["test"] == again["test"]
    sizes = found["sizes"]
    assert sum(sizes.values()) == 240 and 20 < sizes["test"] < 80 and 5 < sizes["val"] < 45
    cfg = compose_config(*base, "seed=7")
    other = load_data(cfg.dataset, seed=7)
    assert len(other.test) == sizes["test"] and torch.equal(
        other.test.labels, load_data(compose_config(*base).dataset, seed=0).test.labels
    )


def test_folds_with_balanced_class_weights(shard_dir, tmp_path, monkeypatch):
    """K folds by key hash: the folds partition the training samples; class weights come from the counted labels."""
    cfgs = [compose_config(*own_splits(shard_dir), "dataset.folds=3", f"dataset.fold={k}") for k in range(3)]
    splits = [load_data(cfg.dataset, seed=cfg.seed) for cfg in cfgs]
    assert sum(len(s.val) for s in splits) == 240 + 48  # val shards join train, as for every source
    assert all(len(s.train) + len(s.val) == 288 for s in splits)
    _, found = train(
        tmp_path,
        monkeypatch,
        *own_splits(shard_dir),
        "dataset.folds=3",
        "dataset.fold=1",
        "trainer.class_weights=balanced",
        "trainer.epochs=1",
    )
    assert found["sizes"]["val"] == len(splits[1].val)
    assert found["class_weights"] and len(found["class_weights"]) == 3


def test_cnntrain_shards_from_an_image_folder_then_train_on_them(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "images", rgb=True, size=12, per_class=20, test_per_class=6)
    out = tmp_path / "out"
    result = run_main(
        shards_command.main,
        ["dataset=imagefolder", f"dataset.root={root}", "--output", str(out), "--shard-size", "16"],
        tmp_path,
        monkeypatch,
    )
    assert result.returncode == 0, result.stderr
    sizes = json.loads((out / "sizes.json").read_text())
    assert {k: v["samples"] for k, v in sizes.items()} == {"train": 54, "val": 6, "test": 18}
    assert sizes["train"]["shards"] == 4 and (out / "train-000003.tar").is_file()
    assert (out / "classes.txt").read_text().split() == list(CLASSES)
    made = compose_config("dataset=imagefolder", f"dataset.root={root}")
    folder = load_data(made.dataset, seed=made.seed)
    shards = load_data(
        compose_config(
            "dataset=webdataset",
            spec(out, "train", 4),
            spec(out, "val", 1),
            spec(out, "test", 2),
            "dataset.num_workers=0",
        ).dataset,
        seed=made.seed,
    )
    for name in ("train", "val", "test"):  # lossless: the same pixels and labels, in the same order
        a, b = getattr(folder, name), getattr(shards, name)
        assert torch.equal(a.labels, b.labels)
        streamed = torch.cat([images for images, _ in iterate_batches(b, 64, shuffle=False)])
        assert torch.equal(a.images[:], streamed), name
    _, found = train(
        tmp_path / "run",
        monkeypatch,
        "dataset=webdataset",
        spec(out, "train", 4),
        spec(out, "val", 1),
        spec(out, "test", 2),
        "trainer.epochs=1",
    )
    assert found["sizes"] == {"train": 54, "val": 6, "test": 18}
    again = run_main(
        shards_command.main,
        ["dataset=imagefolder", f"dataset.root={root}", "--output", str(out)],
        tmp_path,
        monkeypatch,
    )
    assert_one_line_error(again, "--output", "new or empty folder")


@pytest.mark.slow
def test_two_ranks_give_exact_test_metrics(shard_dir, tmp_path, monkeypatch):
    """2 gloo ranks, each reading its own shards: the test accuracy and confusion matrix are cnntrain-eval's in
    one process for the same weights (every test sample once, each prediction with its own label)."""
    args = [*RUN, *own_splits(shard_dir), "trainer.devices=2", "trainer.epochs=1"]
    result = subprocess.run(
        [*cnntrain_command(), *args], cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True, timeout=400
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = [p.parent for p in (tmp_path / "outputs").rglob("summary.json")]
    found = json.loads((run_dir / "summary.json").read_text())
    assert found["parallel"]["world_size"] == 2 and found["sizes"]["test"] == 60
    alone = run_main(evaluate_command.main, [str(run_dir), "--device", "cpu"], run_dir, monkeypatch,
                     CNNTRAIN_DATA_ROOT=str(tmp_path))  # cnntrain-eval in this process  # fmt: skip
    assert alone.returncode == 0, alone.stderr
    evaluated = json.loads((run_dir / "eval_summary.json").read_text())
    assert evaluated["test"]["acc"] == found["test"]["acc"]
    assert evaluated["confusion_matrix"] == found["confusion_matrix"]
    assert evaluated["test"]["loss"] == pytest.approx(found["test"]["loss"], rel=1e-6)


# -- mistakes in the shard files ------------------------------------------------------------------------------


def bad_shard(path: Path, samples: list[dict]) -> None:
    with wds.TarWriter(str(path)) as sink:
        for sample in samples:
            sink.write(sample)


def good(i: int, label: str = "0") -> dict:
    return {"__key__": f"s{i}", "png": png(draw(0, 8, np.random.default_rng(i), rgb=False)), "cls": label}


@pytest.mark.parametrize(
    ("make", "extra", "expected"),
    [
        (lambda d: (d / "a.tar").write_bytes(b"not a tar file at all" * 40), (), "cannot read shard DIR/a.tar"),
        (
            lambda d: bad_shard(d / "a.tar", [good(0), {"__key__": "s1", "cls": "1"}]),
            (),
            "shard DIR/a.tar, sample s1: no image (jpg, png, jpeg, webp; dataset.image_key)",
        ),
        (
            lambda d: bad_shard(d / "a.tar", [good(0), {"__key__": "s1", "png": good(1)["png"]}]),
            (),
            "shard DIR/a.tar, sample s1: no label 'cls' (dataset.label_key)",
        ),
        (
            lambda d: bad_shard(d / "a.tar", [good(0), good(1, "7")]),
            (),
            "shard DIR/a.tar, sample s1: label 7 is outside the 3 classes (0..2)",
        ),
        (
            lambda d: (bad_shard(d / "a.tar", [good(0)]), (d / "names.txt").write_text("\n\n")),
            ("CLASSES",),
            "classes file DIR/names.txt names 0 class(es)",
        ),
        (
            lambda d: (
                bad_shard(d / "a.tar", [good(0), {"__key__": "s1", "png": b"garbage", "cls": "1"}]),
                bad_shard(d / "b.tar", [good(2), good(3, "1")]),
            ),
            (
                "dataset.num_workers=1",
                "dataset.val=DATA/b.tar",
                "dataset.test=DATA/b.tar",
                "dataset.mean=[0.5]",
                "dataset.std=[0.2]",
            ),
            "cannot read image DIR/a.tar:s1.png",
        ),  # found by a DataLoader worker
    ],
)
def test_shard_mistakes_are_one_line(tmp_path, monkeypatch, make, extra, expected):
    data = tmp_path / "d"
    data.mkdir()
    (data / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    make(data)
    args = [
        a.replace("CLASSES", f"dataset.classes_file={data / 'names.txt'}").replace("DATA", str(data)) for a in extra
    ]
    result = run_main(
        train_command.main, [*RUN, "dataset=webdataset", f"dataset.train={data}/a.tar", *args], tmp_path, monkeypatch
    )
    assert_one_line_error(result, expected.replace("DIR", str(data)))


@pytest.mark.slow
def test_a_run_stopped_in_epoch_2_resumes_to_the_uninterrupted_numbers(shard_dir, tmp_path, monkeypatch):
    """Resume on a stream repeats the interrupted epoch from its start, in the same order (each epoch's shard
    order and shuffle buffer are seeded from the generator state saved in last.pt): the resumed run's metrics
    equal an uninterrupted run's, workers reading the shards included."""
    from test_resume import without_seconds

    from cnntrain.training.run import resume_run, run

    from helpers import run_stopped_in_epoch

    overrides = (*RUN, *own_splits(shard_dir), "trainer.epochs=3", "dataset.shuffle_buffer=40", "dataset.num_workers=2")
    cfg = compose_config(*overrides)
    run(cfg, tmp_path / "reference")
    stopped = run_stopped_in_epoch(compose_config(*overrides), tmp_path / "stopped", 2, monkeypatch)
    assert stopped.exit_code == 130 and len(without_seconds(tmp_path / "stopped")) == 1
    resume_run(tmp_path / "stopped")
    assert without_seconds(tmp_path / "stopped") == without_seconds(tmp_path / "reference")


def test_the_shard_index_is_kept_and_a_changed_shard_is_indexed_again(tmp_path, monkeypatch):
    """Every run starts by indexing its shards; the index is cached (in the per-user cache, keyed by path, size,
    mtime, inode and ctime), so the next run reads no tar header, and a rewritten shard is indexed afresh."""
    from cnntrain.data import shard_index
    from cnntrain.data.image_cache import fallback_cache_dir

    folder = tmp_path / "s"
    write_shards(folder, "train", 30, 10, seed=4)
    (folder / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    cfg = compose_config("dataset=webdataset", spec(folder, "train", 3), "dataset.num_workers=0")
    first = load_data(cfg.dataset, seed=0)
    assert len(list(fallback_cache_dir(folder).glob("shard-*.json"))) == 3

    def no_tar_walk(*args):
        raise AssertionError("indexed a shard again")

    real = shard_index.read_index
    monkeypatch.setattr(shard_index, "read_index", no_tar_walk)
    again = load_data(cfg.dataset, seed=0)
    assert torch.equal(again.train.labels, first.train.labels) and torch.equal(again.test.labels, first.test.labels)
    write_shards(folder, "train", 30, 10, seed=5)  # new keys and images in the same files
    with pytest.raises(AssertionError, match="indexed a shard again"):
        load_data(cfg.dataset, seed=0)
    monkeypatch.setattr(shard_index, "read_index", real)
    fresh = load_data(cfg.dataset, seed=0)
    assert len(list(fallback_cache_dir(folder).glob("shard-*.json"))) == 6, "the rewritten shards' own entries"
    assert fresh.train.images.parts[0].keys[0] == "train5-000000"


@pytest.mark.slow
def test_a_stream_stopped_inside_an_epoch_resumes_to_the_uninterrupted_numbers(shard_dir, tmp_path, monkeypatch):
    """A checkpoint inside an epoch of a stream: the resume reads the epoch's first batches again and drops
    them (a stream cannot seek), in the same seeded order, workers included, and ends where the
    uninterrupted run does."""
    import signal

    from test_interruptions import signal_at
    from test_resume import without_seconds

    from cnntrain.errors import Stopped
    from cnntrain.training.run import resume_run, run

    overrides = (*RUN, *own_splits(shard_dir), "trainer.epochs=2", "dataset.shuffle_buffer=40", "dataset.num_workers=2")
    run(compose_config(*overrides), tmp_path / "reference")
    signal_at(monkeypatch, 6, signal.SIGTERM)
    with pytest.raises(Stopped):
        run(compose_config(*overrides), tmp_path / "stopped")
    monkeypatch.undo()
    resume_run(tmp_path / "stopped")
    assert without_seconds(tmp_path / "stopped") == without_seconds(tmp_path / "reference")
