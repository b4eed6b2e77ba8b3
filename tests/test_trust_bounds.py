"""Trust, round two: files others made are read within bounds, whatever reader meets them (issue 29).

Each case builds its payload here (harmless: at most a marker file in the test's folder) and runs the real
reader in a child process under a memory limit (RLIMIT_AS, set in preexec_fn) and a timeout: the intact control
passes, the hostile input ends in one `error:` line with exit status 2, well inside both limits. An unbounded
reader would instead be killed by the timeout or fail to allocate (a MemoryError traceback, not one line)."""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from helpers import REPO, assert_one_line_error

LIGHT = 1 << 30  # the address space a child that imports no torch gets
HEAVY = 6 << 30  # importing torch maps about 4 GiB of address space before anything is read
TIMEOUT = 60.0  # a bounded refusal takes a few seconds, imports included
GIB = 1 << 30


def run_bounded(body: str, cwd: Path, limit: int = LIGHT) -> tuple[subprocess.CompletedProcess, float]:
    """`body` (Python, may use `cwd`) run as a cnntrain command would run it (UserError: one line, exit 2) in a
    child limited to `limit` bytes of address space and TIMEOUT seconds; returns the result and its seconds."""
    script = (
        "from pathlib import Path\nfrom cnntrain.commands.entry import run_command\n"
        f"cwd = Path({str(cwd)!r})\ndef body(argv):\n{textwrap.indent(textwrap.dedent(body), '    ')}\n"
        "run_command(body, [])\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
    )
    return result, time.monotonic() - started


def refused(body: str, cwd: Path, *fragments: str, limit: int = LIGHT) -> None:
    result, seconds = run_bounded(body, cwd, limit)
    assert_one_line_error(result, *fragments)
    assert seconds < TIMEOUT / 2, f"{seconds:.1f} s"


def passes(body: str, cwd: Path, expected: str, limit: int = LIGHT) -> None:
    result, _ = run_bounded(body, cwd, limit)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout, result.stdout


def sparse(path: Path, size: int, head: bytes = b"") -> Path:
    """A file of `size` bytes that takes no disk: `head`, then a hole."""
    with path.open("wb") as file:
        file.write(head)
        file.truncate(size)
    return path


# -- 1. one bounded reader: label files, class lists, run files ------------------------------------------------

READ_TABLE = """
from cnntrain.data.sources.label_files import _read_table
header, rows = _read_table(cwd / "labels.csv", ".csv")
print("rows", len(rows))
"""
READ_JSONL = """
from cnntrain.data.sources.label_files import _read_jsonl
columns, rows = _read_jsonl(cwd / "labels.jsonl")
print("rows", len(rows))
"""


def test_a_label_file_with_a_line_of_300000_columns_is_one_line(tmp_path):
    good = "path,label\n" + "".join(f"a{i}.png,cat\n" for i in range(100))
    (tmp_path / "labels.csv").write_text(good)
    passes(READ_TABLE, tmp_path, "rows 100", limit=HEAVY)
    (tmp_path / "labels.csv").write_text(good + "x," * 300_000 + "\n")
    refused(READ_TABLE, tmp_path, "labels.csv, line 102", "longer than 65,536 characters", limit=HEAVY)
    (tmp_path / "labels.csv").write_text(",".join(f"c{i}" for i in range(2_000)) + "\n" + good)
    refused(READ_TABLE, tmp_path, "labels.csv, line 1", "2,000 fields, more than the 1,024", limit=HEAVY)


def test_a_jsonl_label_file_nested_deep_or_with_a_4_gib_hole_is_one_line(tmp_path):
    good = "".join(json.dumps({"path": f"a{i}.png", "label": [1, 2]}) + "\n" for i in range(10))
    (tmp_path / "labels.jsonl").write_text(good)
    passes(READ_JSONL, tmp_path, "rows 10", limit=HEAVY)
    (tmp_path / "labels.jsonl").write_text(good + '{"path": "b.png", "label": ' + "[" * 30_000 + "]" * 30_000 + "}\n")
    refused(READ_JSONL, tmp_path, "labels.jsonl, line 11", "nested too deeply (more than 64 levels)", limit=HEAVY)
    sparse(tmp_path / "labels.jsonl", 4 * GIB, good.encode())
    refused(READ_JSONL, tmp_path, "labels.jsonl is larger than 1,073,741,824 bytes", limit=HEAVY)


def test_a_classes_file_of_gigabytes_and_a_fifo_shard_are_refused(tmp_path):
    body = """
from cnntrain.config.schema import DatasetConfig
from cnntrain.data.sources.shard_labels import shard_classes
cfg = DatasetConfig(name="shards", root=".", kind="webdataset")
print("classes", len(shard_classes(cfg, str(cwd / "train-0.tar"), [], None)[0]))
"""
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    passes(body, tmp_path, "classes 2", limit=HEAVY)
    sparse(tmp_path / "classes.txt", 2 * GIB, b"cat\ndog\n")
    refused(body, tmp_path, "classes file", "larger than 16,777,216 bytes", limit=HEAVY)
    glob_body = """
from cnntrain.data.shard_names import expand
print("shards", expand(str(cwd / "train-*.tar"), "dataset.train_shards"))
"""
    (tmp_path / "train-0.tar").write_bytes(b"")
    passes(glob_body, tmp_path, "train-0.tar")
    (tmp_path / "train-0.tar").unlink()
    os.mkfifo(tmp_path / "train-0.tar")
    refused(glob_body, tmp_path, "dataset.train_shards: no shard matches")


def test_a_shard_member_of_gigabytes_is_refused_from_its_header(tmp_path):
    body = """
from cnntrain.data.shard_index import read_index
index = read_index(str(cwd / "train-0.tar"), ("png",), "cls")
print("samples", len(index.keys))
"""

    def shard(size: int) -> None:
        with tarfile.open(tmp_path / "train-0.tar", "w") as tar:
            for name, data in (("a.cls", b"0"), ("a.png", b"x" * 10)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            if size:
                info = tarfile.TarInfo("b.png")
                info.size = size
                tar.addfile(info)  # the header alone: a reader that trusts it would read `size` bytes
        if size:
            with (tmp_path / "train-0.tar").open("r+b") as file:
                file.truncate(file.seek(0, 2) + size + 1024)  # a hole where the member's bytes would be

    shard(0)
    passes(body, tmp_path, "samples 1", limit=HEAVY)
    shard(3 * GIB)
    refused(body, tmp_path, "member b.png is larger than 268,435,456 bytes", limit=HEAVY)


def test_hashing_an_image_that_is_a_proc_file_or_a_huge_hole_is_bounded(tmp_path):
    Image.new("L", (8, 8), 7).save(tmp_path / "a.png")
    body = """
import hashlib
from cnntrain.reading import hash_file
digest = hashlib.sha256()
hash_file(cwd / "a.png", digest, what="image")
print("hashed", digest.hexdigest()[:8])
"""
    passes(body, tmp_path, "hashed")
    (tmp_path / "a.png").unlink()
    (tmp_path / "a.png").symlink_to("/proc/self/pagemap")  # "regular", size 0, reads hundreds of gigabytes
    refused(body, tmp_path, "a.png is a special file (/proc/", "cnntrain reads only regular files")
    (tmp_path / "a.png").unlink()
    sparse(tmp_path / "a.png", 4 * GIB, b"\x89PNG\r\n\x1a\n")
    refused(body, tmp_path, "image", "a.png is larger than 1,073,741,824 bytes")


# -- 2. bounded expansion ---------------------------------------------------------------------------------------


def test_a_brace_pattern_of_billions_of_names_is_counted_not_expanded(tmp_path):
    for index in range(3):
        (tmp_path / f"train-{index}.tar").write_bytes(b"")
    body = """
from cnntrain.data.shard_names import expand
print("shards", len(expand(PATTERN, "dataset.train_shards")))
"""
    passes(body.replace("PATTERN", repr(str(tmp_path / "train-{0..2}.tar"))), tmp_path, "shards 3")
    bomb = str(tmp_path / "train-0") + "{,}" * 40 + ".tar"
    refused(body.replace("PATTERN", repr(bomb)), tmp_path, "names more than 100,000 shard files")
    nested = str(tmp_path / "t") + "{a," * 200 + "b" + "}" * 200
    refused(body.replace("PATTERN", repr(nested)), tmp_path, "nests braces more than 32 deep")


def test_brace_counts_match_braceexpand():
    import braceexpand

    from cnntrain.data.shard_names import count

    for pattern in (
        "a",
        "a{1..3}",
        "{a,b}{c,d,e}",
        "x{0..10..2}",
        "{a,{b,c}}",
        "{x}",
        "{a..e}",
        "p{00..99}/s{0..4}.tar",
        "{,}",
    ):
        assert count(pattern) == len(list(braceexpand.braceexpand(pattern))), pattern


# -- 3. every text is encodable ---------------------------------------------------------------------------------


def test_a_lone_surrogate_is_escaped_on_the_terminal_and_in_files(tmp_path):
    from cnntrain.files import open_append, write_text
    from cnntrain.reporting.text import html_text, plain

    name = "cat\udc80"
    assert plain(name) == "cat\\udc80" and html_text(name) == "cat\\udc80"
    write_text(tmp_path / "classes.txt", name + "\n")
    with open_append(tmp_path / "train.log") as log:
        log.write(name + "\n")
    assert (tmp_path / "classes.txt").read_text() == (tmp_path / "train.log").read_text() == "cat\\udc80\n"
    body = """
import sys
print("class", "cat\\udc80")
raise __import__("cnntrain.errors").errors.DataError("class cat\\udc80 is bad")
"""
    result, _ = run_bounded(body, tmp_path)
    assert "class cat\\udc80" in result.stdout
    assert_one_line_error(result, "class cat\\udc80 is bad")


# -- 4. image decoding errors of any kind -----------------------------------------------------------------------


def exif_orientation(kind: int, count: int, value: bytes) -> bytes:
    """A little-endian EXIF block whose one entry is an orientation of TIFF type `kind` (2 text, 3 short, 5
    fraction), its value inline or (longer than 4 bytes) right after the entry."""
    import struct

    inline = len(value) <= 4
    entry = struct.pack("<HHI", 0x0112, kind, count) + (value.ljust(4, b"\0") if inline else struct.pack("<I", 26))
    return b"Exif\0\0II*\0" + struct.pack("<IH", 8, 1) + entry + struct.pack("<I", 0) + (b"" if inline else value)


@pytest.mark.parametrize(
    "exif",
    [
        exif_orientation(2, 4, b"six\0"),  # text
        exif_orientation(8, 1, b"\xff\xff"),  # -1
        exif_orientation(3, 1, b"\x63\0"),  # 99
        exif_orientation(5, 1, b"\x0d\0\0\0\x02\0\0\0"),  # 13/2
    ],
)
def test_an_exif_orientation_of_an_odd_type_decodes_as_stored(tmp_path, exif):
    from cnntrain.data.images import decode_image, image_input_shape

    image = Image.new("RGB", (12, 8), (200, 10, 10))
    image.save(tmp_path / "odd.jpg", exif=exif, quality=100)
    assert image_input_shape(type("Cfg", (), {"channels": None, "image_size": None})(), tmp_path / "odd.jpg") == (
        3,
        8,
        12,
    )
    image.save(tmp_path / "plain.jpg", quality=100)
    odd = decode_image(tmp_path / "odd.jpg", 3, 8, 12)
    assert odd.shape == (3, 8, 12)
    assert (odd == decode_image(tmp_path / "plain.jpg", 3, 8, 12)).all()


def test_a_turned_exif_orientation_still_turns(tmp_path):
    from cnntrain.data.images import decode_image

    image = Image.new("L", (12, 8), 0)
    image.putpixel((0, 0), 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # turned: 8 x 12 upright
    image.save(tmp_path / "turned.png", exif=exif)
    decoded = decode_image(tmp_path / "turned.png", 1, 12, 8)
    assert decoded.shape == (1, 12, 8) and decoded[0, 0, -1] == 255


def test_a_broken_image_in_a_shard_is_one_line_in_the_streams_first_image(tmp_path):
    body = """
from cnntrain.data.images import NamedBytes, open_image
with open_image(NamedBytes(DATA, "train-0.tar:a.png")) as image:
    print("size", image.size)
"""
    good = io.BytesIO()
    Image.new("L", (4, 4)).save(good, format="PNG")
    passes(body.replace("DATA", repr(good.getvalue())), tmp_path, "size (4, 4)", limit=HEAVY)
    broken = good.getvalue()[:40] + b"\0" * 20
    refused(body.replace("DATA", repr(broken)), tmp_path, "cannot read image train-0.tar:a.png", limit=HEAVY)


# -- 5. typed summary.json --------------------------------------------------------------------------------------

SUMMARY = """
from cnntrain.reporting.page import run_page
print("page", len(run_page(cwd)))
"""


def summary(tmp_path: Path, **changes) -> None:
    data = {
        "status": "done",
        "model": "lenet",
        "dataset": "mnist",
        "classes": ["a", "b"],
        "confusion_matrix": [[3, 1], [0, 4]],
        "test": {"acc": 0.875, "loss": 0.3},
        "epochs_run": 1,
    }
    (tmp_path / "summary.json").write_text(json.dumps({**data, **changes}))


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"test": []}, "'test' is a list, not a mapping"),
        ({"test": {"acc": "high"}}, "'test.acc' is a string, not a number"),
        ({"classes": "ab"}, "'classes' is a string, not a list"),
        ({"confusion_matrix": [[1, 2], "x"]}, "'confusion_matrix' row 1 is a string"),
    ],
)
def test_a_summary_of_the_wrong_types_is_one_line(tmp_path, changes, fragment):
    summary(tmp_path)
    passes(SUMMARY, tmp_path, "page", limit=HEAVY)
    summary(tmp_path, **changes)
    refused(SUMMARY, tmp_path, "summary.json", fragment, limit=HEAVY)


def test_a_summary_with_a_huge_confusion_matrix_is_refused_in_little_memory(tmp_path):
    side = 3_000
    (tmp_path / "summary.json").write_text(
        json.dumps(
            {
                "status": "done",
                "classes": [f"c{i}" for i in range(side)],
                "confusion_matrix": [[1] * side for _ in range(side)],
            },
            separators=(",", ":"),
        )
    )
    refused(SUMMARY, tmp_path, "'confusion_matrix' has 3,000 rows, more than the 2,000", limit=HEAVY)


def test_most_confused_keeps_the_top_cells_in_order():
    from cnntrain.reporting.page import confused_from_matrix

    matrix = [[5, 2, 2], [3, 5, 0], [2, 1, 5]]
    found = [(p["true"], p["predicted"], p["count"]) for p in confused_from_matrix(["a", "b", "c"], matrix)]
    assert found == [("b", "a", 3), ("a", "b", 2), ("a", "c", 2), ("c", "a", 2), ("c", "b", 1)]


# -- 6. a downloaded run chooses no destination ---------------------------------------------------------------


def test_a_checkpoints_trackers_and_cache_folder_are_never_taken(tmp_path):
    from cnntrain.config.saved import destinations_notice, local_destinations, saved_config_data

    sent = {
        "logger": ["csv", "mlflow"],
        "mlflow": {"tracking_uri": "http://sender.example", "experiment": "x", "log_checkpoint": True},
        "wandb": {"mode": "online", "project": "theirs", "entity": "them", "log_checkpoint": True},
        "dataset": {"name": "mnist", "cache_dir": str(tmp_path / "elsewhere")},
        "seed": 1,
    }
    data = saved_config_data(sent, "ckpt")
    assert data["dataset"]["cache_dir"] is None and data["seed"] == 1
    assert "sender" not in json.dumps(data) and "theirs" not in json.dumps(data)
    assert local_destinations(sent)[1] == ["mlflow", "wandb", "dataset.cache_dir"]
    assert local_destinations(data)[1] == []
    assert data["logger"] == ["csv", "mlflow"], "which trackers is kept: where they log is this machine's"
    assert "not taken" in destinations_notice(["mlflow"], "the checkpoint")


def test_reproduce_leaves_out_the_cache_folder_and_refuses_a_builder_as_dataset_path(tmp_path, synthetic_data_root):
    from cnntrain.commands.reproduce import check_dataset_path, compose_saved, replayed_overrides
    from cnntrain.errors import UserError

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(
        f"- data_root={synthetic_data_root}\n- dataset.cache_dir={tmp_path / 'theirs'}\n- seed=3\n"
    )
    replayed, left_out = replayed_overrides(tmp_path)
    assert replayed == [f"data_root={synthetic_data_root}", "seed=3"]
    assert left_out == [f"dataset.cache_dir={tmp_path / 'theirs'}"]
    cfg = compose_saved(["dataset=huggingface", "dataset.path=imagefolder"])
    with pytest.raises(UserError, match=r"dataset.path=imagefolder, which is not a folder or file here"):
        check_dataset_path(cfg, tmp_path)
    check_dataset_path(compose_saved(["dataset=huggingface", f"dataset.path={tmp_path}"]), tmp_path)


def test_run_config_keeps_resolvers_as_text_and_references_working(tmp_path, monkeypatch):
    from cnntrain.results import Run

    monkeypatch.setenv("CNNTRAIN_TEST_SECRET", "s3cret")
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(
        "seed: 4\nagain: ${seed}\nsecret: ${oc.env:CNNTRAIN_TEST_SECRET}\nmixed: a-${seed}-${oc.env:HOME}\n"
    )
    (tmp_path / "summary.json").write_text('{"status": "done"}')
    config = Run(tmp_path).config
    assert config.again == 4 and config.secret == "${oc.env:CNNTRAIN_TEST_SECRET}"
    assert config.mixed == "a-4-${oc.env:HOME}"


# -- 7. the debatable cases, decided ----------------------------------------------------------------------------


def test_output_folders_that_are_links_are_refused(tmp_path):
    from cnntrain.commands.predict import cam_paths
    from cnntrain.errors import UserError

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "cams").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="cams is a symbolic link; cnntrain writes no output folder through a link"):
        cam_paths([tmp_path / "a.png"], tmp_path / "cams")
    assert cam_paths([tmp_path / "a.png"], tmp_path / "elsewhere") == [tmp_path / "elsewhere" / "a.cam.png"]


def test_shards_output_that_is_a_link_is_one_line(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "elsewhere")
    body = """
from cnntrain.commands.shards import _main
_main(["dataset=mnist", "--output", str(cwd / "out")])
"""
    refused(body, tmp_path, "--output", "out is a symbolic link", limit=HEAVY)
    assert not any((tmp_path / "elsewhere").iterdir())


def test_allow_outside_paths_takes_a_boolean_only():
    from cnntrain.errors import ConfigError

    from helpers import compose_config

    assert compose_config("dataset=labels").dataset.allow_outside_paths is False
    assert compose_config("dataset=labels", "dataset.allow_outside_paths=true").dataset.allow_outside_paths is True
    with pytest.raises(ConfigError, match="allow_outside_paths"):
        compose_config("dataset=labels", "dataset.allow_outside_paths=maybe")


def test_a_saved_hugging_face_folder_naming_files_outside_or_a_fifo_is_refused(tmp_path):
    pytest.importorskip("datasets", reason="the hf extra is not installed")
    from cnntrain.data.sources.huggingface_files import check_saved_folder
    from cnntrain.errors import DataError, UserError

    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "dataset_info.json").write_text("{}")
    (tmp_path / "outside.arrow").write_bytes(b"x")
    for name, message in (("../outside.arrow", "not a name inside its folder"), ("pipe.arrow", "named pipe")):
        (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": name}]}))
        if name == "pipe.arrow":
            os.mkfifo(folder / name)
        with pytest.raises((DataError, UserError), match=message):
            check_saved_folder(folder)
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data.arrow"}]}))
    (folder / "data.arrow").write_bytes(b"x")
    check_saved_folder(folder)
    sparse(folder / "state.json", 2 * GIB, b"{")
    with pytest.raises(DataError, match="larger than 16,777,216 bytes"):
        check_saved_folder(folder)


def test_hugging_face_rows_naming_image_files_outside_the_folder_are_refused(tmp_path):
    datasets = pytest.importorskip("datasets", reason="the hf extra is not installed")
    from cnntrain.data.loading import load_data
    from cnntrain.errors import DataError

    from helpers import dataset_section

    (tmp_path / "elsewhere").mkdir()
    paths = []
    for index in range(12):
        Image.new("L", (8, 8), 20 * index).save(tmp_path / "elsewhere" / f"{index}.png")
        paths.append(str(tmp_path / "elsewhere" / f"{index}.png"))
    features = datasets.Features(
        {"image": datasets.Image(decode=False), "label": datasets.ClassLabel(names=["a", "b"])}
    )
    table = datasets.Dataset.from_dict(
        {"image": [{"path": p, "bytes": None} for p in paths], "label": [i % 2 for i in range(12)]}, features=features
    )
    (tmp_path / "shared").mkdir()
    table.to_parquet(str(tmp_path / "shared" / "train.parquet"))  # save_to_disk would embed the bytes
    cfg = {"name": "huggingface", "kind": "huggingface", "root": ".", "path": str(tmp_path / "shared")}
    with pytest.raises(DataError, match=r"leads outside the dataset's folder .*allow_outside_paths=true"):
        load_data(dataset_section(cfg), seed=0)
    bundle = load_data(dataset_section({**cfg, "allow_outside_paths": True}), seed=0)
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 12
    assert "images outside its folder allowed" in bundle.layout


def test_an_export_path_that_is_a_folder_is_one_line_before_any_work(tmp_path):
    from cnntrain.errors import UserError
    from cnntrain.inference.export import export_run

    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match=r"out is a folder; --output names the model file to write"):
        export_run(None, "onnx", tmp_path / "out")  # refused before the model is touched
    (tmp_path / "model.onnx.json").mkdir()
    with pytest.raises(UserError, match=r"model.onnx.json is a folder"):
        export_run(None, "onnx", tmp_path / "model.onnx")
