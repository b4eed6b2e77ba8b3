"""Property-based fuzzing of every parser of user input: layer lists, command-line overrides, IDX files, image
files and checkpoints.

The promise under test: whatever a user hands us, the result either works or is a UserError (the right
subclass) with a one-line message, which the CLI prints as `error: ...` with exit status 2; never a
traceback. Examples are bounded and derandomized, so the suite stays fast and repeatable.
"""

from __future__ import annotations

import functools
import inspect
import io
import math
import pickle
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from PIL import Image
from torch import nn

from cnntrain.commands.entry import one_line
from cnntrain.commands.preflight import check_group_choices, parse_overrides
from cnntrain.config.compose import compose_train, group_options
from cnntrain.config.names import (
    ANNEAL_STRATEGIES,
    CONFIG_GROUPS,
    DATASET_KINDS,
    DEVICES,
    EPOCH_METRICS,
    LOGGERS,
    LOSSES,
    MODES,
    PRECISIONS,
    TTA_MODES,
    VAL_STRATEGIES,
)
from cnntrain.config.optimizers import GROUPS
from cnntrain.config.validate import validate
from cnntrain.data.images import decode_image
from cnntrain.data.sources.torchvision_datasets import read_idx
from cnntrain.errors import CheckpointError, DataError, ModelConfigError, UserError
from cnntrain.models.blocks import BLOCK_PARTS
from cnntrain.models.builder import build_model
from cnntrain.models.layers import INITS
from cnntrain.models.registry import available_layers, get_spec
from cnntrain.training.checkpoints import FORMAT, load_checkpoint, save_checkpoint


def fuzz(examples: int) -> settings:
    """Bounded, repeatable, no per-example deadline (a composition or a torch import can take a while)."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )


def assert_one_line(err: BaseException, kind: type[UserError]) -> None:
    """The error is ours, of the expected kind, and the line the commands print for it is one non-empty line
    (they show line breaks that the user typed escaped)."""
    assert isinstance(err, kind), f"{type(err).__name__} instead of {kind.__name__}: {err}"
    message = one_line(str(err))
    assert message.strip(), f"empty {type(err).__name__} message"
    assert "\n" not in message and "\r" not in message, f"multi-line message: {message!r}"


def works_or_fails_cleanly(call: Callable[[], Any], kind: type[UserError]) -> Any:
    """The call's result, or None after checking that it failed with a one-line `kind` error."""
    try:
        result = call()
    except UserError as err:
        assert_one_line(err, kind)
        event(f"refused: {type(err).__name__}")
        return None
    event("works")
    return result


# ---------------------------------------------------------------------------------------------- model builder

TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8)
SCALARS = st.one_of(
    st.integers(-3, 40),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.booleans(),
    st.none(),
    TEXT,
    st.text(alphabet="ab\n\r\t ", min_size=1, max_size=4),
    st.sampled_from(["relu", "max", "avg", "xavier_uniform", "conv", "pool", "a\nb", "${nope}", "${oc.env:NOPE}"]),
    st.lists(st.one_of(st.integers(-1, 9), TEXT), max_size=3),
    st.dictionaries(TEXT, st.integers(-1, 9), max_size=2),
)


SIZE = st.one_of(st.integers(1, 5), st.lists(st.integers(1, 5), min_size=2, max_size=2))
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "out_channels": st.integers(1, 12),
    "out_features": st.integers(1, 12),
    "kernel_size": SIZE,
    "stride": st.one_of(SIZE, st.none()),
    "pool": st.one_of(SIZE, st.none()),
    "output_size": SIZE,
    "padding": st.integers(0, 2),
    "pool_padding": st.integers(0, 1),
    "bias": st.booleans(),
    "batchnorm": st.booleans(),
    "dropout2d": st.booleans(),
    "init": st.sampled_from([None, *sorted(INITS)]),
    "p": st.floats(0, 0.9),
    "dropout": st.floats(0, 0.9),
    "eps": st.floats(1e-6, 0.1),
    "momentum": st.floats(0, 1),
    "negative_slope": st.floats(0, 0.5),
    "activation": st.one_of(
        st.sampled_from(["relu", "gelu", "tanh", "identity", "linear", None]),
        st.fixed_dictionaries({"leaky_relu": st.floats(0, 0.5)}),
    ),
    "pool_type": st.sampled_from(["max", "avg"]),
    "order": st.one_of(st.none(), st.permutations(BLOCK_PARTS), st.lists(st.sampled_from(BLOCK_PARTS), max_size=3)),
    # the named architectures (torchvision, timm): small networks, so a fuzz run stays quick
    "arch": st.sampled_from(["mobilenet_v3_small", "squeezenet1_1", "resnet18", "nope"]),
    "classes": st.one_of(st.none(), st.integers(1, 12)),
    "weights": st.one_of(st.none(), st.just("/no/such.pth")),
    "small_input": st.sampled_from([True, False, "auto"]),
    "resize": st.sampled_from(["auto", None, 32, [40, 36]]),
    "normalize": st.sampled_from(["weights", "data"]),
}
"""Argument values a user would likely write, so that a layer list often builds and the later layers are reached."""


IMAGE_LAYERS = [
    "conv2d",
    "conv_block",
    "conv_block",
    "maxpool2d",
    "avgpool2d",
    "adaptive_avgpool2d",
    "batchnorm",
    "dropout2d",
    "relu",
    "leaky_relu",
    "gelu",
    "silu",
    "identity",
]
FLAT_LAYERS = ["linear", "linear", "batchnorm", "dropout", "relu", "tanh", "sigmoid", "identity", "log_softmax"]


@st.composite
def plausible_items(draw: st.DrawFn, names: list[str] | None = None) -> Any:
    """A known layer (one of `names`), written as a user would: a bare name, a shorthand value, or arguments, now
    and then one of them wrong."""
    name = draw(st.sampled_from(names or available_layers()))
    spec = get_spec(name)
    wild = st.integers(0, 9).map(lambda n: n in (4, 5))  # about one value in five is any scalar at all
    required = [k for k, d in spec.arguments.items() if d is inspect.Parameter.empty]
    if spec.primary is not None and set(required) <= {spec.primary} and draw(st.booleans()):
        return {name: draw(SCALARS) if draw(wild) else draw(PLAUSIBLE[spec.primary])}
    optional = [k for k in spec.arguments if k not in required]
    chosen = required + (draw(st.lists(st.sampled_from(optional), max_size=3, unique=True)) if optional else [])
    if draw(wild):
        chosen.append(draw(TEXT))  # an unknown argument name
    args = {key: draw(SCALARS) if draw(wild) or key not in PLAUSIBLE else draw(PLAUSIBLE[key]) for key in chosen}
    return {name: args} if args or draw(st.booleans()) else name


@st.composite
def wild_items(draw: st.DrawFn) -> Any:
    """Anything in a layer list: unknown names, any scalar as the argument, unknown argument names, non-items."""
    known = draw(st.booleans())
    name = draw(st.sampled_from(available_layers())) if known else draw(TEXT)
    form = draw(st.sampled_from(["bare", "scalar", "args", "junk"]))
    if form == "bare":
        return name
    if form == "scalar":
        return {name: draw(SCALARS)}
    if form == "junk":
        return draw(
            st.one_of(
                st.integers(),
                st.none(),
                st.lists(st.just(name), max_size=2),
                st.fixed_dictionaries({name: st.none(), "relu": st.none()}),
            )
        )
    arguments = list(get_spec(name).arguments) if known else []
    keys = st.one_of(st.sampled_from(arguments), TEXT) if arguments else TEXT
    return {name: draw(st.dictionaries(keys, SCALARS, max_size=4))}


LAYER_ITEMS = st.one_of(plausible_items(), plausible_items(), plausible_items(), wild_items())
MODEL_SHAPED = st.builds(
    lambda image, flat: [*image, "flatten", *flat],
    st.lists(plausible_items(IMAGE_LAYERS), max_size=4),
    st.lists(plausible_items(FLAT_LAYERS), max_size=3),
)
ANY_LAYERS = st.one_of(
    st.lists(LAYER_ITEMS, min_size=1, max_size=6), st.lists(LAYER_ITEMS, min_size=1, max_size=2), st.just([]), SCALARS
)


@st.composite
def layer_lists(draw: st.DrawFn) -> Any:
    """Mostly the shape of a real model (image layers, flatten, flat layers), else anything."""
    return draw(MODEL_SHAPED if draw(st.integers(0, 9)) < 6 else ANY_LAYERS)


IMAGE_SHAPES = st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 40)).map(list)
SMALL_IMAGES = st.tuples(st.integers(1, 3), st.integers(6, 16), st.integers(6, 16)).map(list)
BAD_SHAPES = st.one_of(
    st.lists(st.one_of(st.integers(-2, 40), st.booleans(), st.floats(), TEXT, st.just("${nope}")), max_size=4),
    st.none(),
    TEXT,
    st.integers(),
)


def as_config_nodes(layers: Any, input_shape: Any) -> tuple[Any, Any]:
    """The two values as the CLI hands them over: nodes of a composed config, interpolations not yet resolved."""
    try:
        cfg = OmegaConf.create({"layers": layers, "input_shape": input_shape})
    except OmegaConfBaseException:
        return layers, input_shape  # not representable in a config: a user cannot write it in YAML either
    return cfg._get_node("layers"), cfg._get_node("input_shape")


@fuzz(200)
@given(
    layers=layer_lists(),
    input_shape=st.one_of(SMALL_IMAGES, IMAGE_SHAPES, IMAGE_SHAPES, st.integers(1, 50).map(lambda n: [n]), BAD_SHAPES),
    via_config=st.booleans(),
)
@example(
    layers=[{"conv2d": {"out_channels": 4, "kernel_size": 9, "init": "a\nb"}}], input_shape=[1, 5, 5], via_config=False
)  # the label quoted the bad init as it is: a two-line message
@example(
    layers=[{"conv_block": {"out_channels": 4, "kernel_size": 9, "activation": {"leaky_relu": "x\ny"}}}],
    input_shape=[1, 5, 5],
    via_config=False,
)
@example(
    layers=["flatten", {"linear": "${oc.env:NOPE}"}], input_shape=[1, 5, 5], via_config=True
)  # OmegaConf's three-line message was passed on whole
@example(layers=["relu"], input_shape=[1, "${nope}", 5], via_config=True)  # raised OmegaConf's own error
def test_fuzz_build_model(layers: Any, input_shape: Any, via_config: bool) -> None:
    if via_config:
        layers, input_shape = as_config_nodes(layers, input_shape)
    built = works_or_fails_cleanly(lambda: build_model(layers, input_shape, "fuzz"), ModelConfigError)
    if built is not None:
        model, rows = built
        assert isinstance(model, nn.Sequential) and len(model) == len(rows) == len(layers)
        assert all(d >= 1 for d in rows[-1].output_shape)


# ---------------------------------------------------------------------------------------------- overrides


@functools.cache
def _config_defaults() -> dict[str, Any]:
    """Every leaf key of the default composition, and every declared optimizer and scheduler argument, with a
    value of its type (the default itself where there is one)."""

    def walk(node: DictConfig, prefix: str) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key in node.keys():
            child, full = node._get_node(key), f"{prefix}{key}"
            found |= walk(child, f"{full}.") if isinstance(child, DictConfig) else {full: child._value()}
        return found

    samples = {bool: True, int: 3, float: 0.5, str: "auto", list[float]: [0.9, 0.99]}
    defaults = {
        f"{group}.{arg}": samples.get(spec.type)
        for group, declared in GROUPS.items()
        for d in declared.values()
        for arg, spec in d.args.items()
    }
    defaults |= {
        k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in walk(compose_train([]), "").items()
    }
    return defaults


@functools.cache
def _group_options() -> dict[str, list[str]]:
    return {group: group_options(group) for group in CONFIG_GROUPS}


def _typo(key: str, where: int, how: int) -> str:
    i = where % len(key)
    return [key[:i] + key[i + 1 :], key[:i] + key[i] + key[i:], key[:i] + "x" + key[i:]][how % 3]


def hydra_value(value: Any) -> str:
    """A Python value as a command-line override writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    return str(value)


CHOICE_WORDS = sorted(
    {
        *LOSSES,
        *PRECISIONS,
        *TTA_MODES,
        *LOGGERS,
        *DEVICES,
        *MODES,
        *EPOCH_METRICS,
        *VAL_STRATEGIES,
        *ANNEAL_STRATEGIES,
        *DATASET_KINDS,
        "MNIST",
        "CIFAR10",
        "cuda:1",
        "gpu",
    }
)


def plausible_value(default: Any) -> st.SearchStrategy[str]:
    """A value of the default's type, in a range a user would try (some of it out of range)."""
    if isinstance(default, bool):
        values: st.SearchStrategy[Any] = st.booleans()
    elif isinstance(default, int):
        values = st.integers(-1, 30)
    elif isinstance(default, float):
        values = st.one_of(st.floats(-0.5, 1.5), st.sampled_from([0.0, 1.0, 1e-3, 3e-4]))
    elif isinstance(default, str):
        values = st.sampled_from(CHOICE_WORDS)
    elif isinstance(default, list):
        values = st.lists(st.one_of(st.integers(0, 32), st.floats(0, 1)), max_size=4)
    else:
        values = st.one_of(st.none(), st.integers(0, 4), st.floats(0, 1))
    return values.map(hydra_value)


SPECIAL = "azAZ09_-./ =,:[]{}()'\"$\\~+*@#%!?\t\n\r"
PLAIN_VALUES = st.one_of(
    st.integers(-5, 2000),
    st.floats(-10, 10),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.sampled_from(CHOICE_WORDS),
    st.text(alphabet="abcxyz019_-/.", max_size=8),
)
WILD_VALUES = st.one_of(
    PLAIN_VALUES.map(hydra_value),
    st.lists(st.one_of(st.integers(-2, 40), st.floats(-2, 2), st.text(alphabet="abc01", max_size=3)), max_size=4).map(
        hydra_value
    ),
    st.dictionaries(st.text(alphabet="abc", min_size=1, max_size=3), PLAIN_VALUES, max_size=2).map(hydra_value),
    st.text(alphabet=SPECIAL, max_size=10),
    st.text(alphabet="abc 01=,\t", max_size=6).map(lambda s: "'" + s + "'"),
    st.sampled_from(
        [
            "${trainer.epochs}",
            "${nope}",
            "${oc.env:NOPE}",
            "${oc.env:HOME}",
            "${",
            "1,2",
            "range(1,3)",
            "choice(a,b)",
            "interval(0,1)",
            "''",
            "[]",
            "{}",
            "???",
        ]
    ),
)


@st.composite
def overrides(draw: st.DrawFn) -> str:
    """One command-line word: a real key with a value of its type, KEY=VALUE with any key (a real one, a typo
    or a new one, maybe with +, ++ or ~) and any value, GROUP=CHOICE, or random text."""
    defaults = _config_defaults()
    form = draw(st.integers(0, 9))
    if form < 4:
        key = draw(st.sampled_from(sorted(defaults)))
        return f"{key}={draw(plausible_value(defaults[key]))}"
    if form < 7:
        options = _group_options()
        group = draw(st.sampled_from(sorted(options)))
        choices = st.sampled_from(options[group]) if options[group] else TEXT
        choice = draw(st.one_of(choices, choices, st.text(alphabet="abcdeflnt0-_", max_size=8), WILD_VALUES))
        return f"{draw(st.sampled_from(['', '', '+', '~']))}{group}={choice}"
    if form == 9:
        return draw(st.text(alphabet=SPECIAL, max_size=16))
    real = st.sampled_from(sorted(defaults))
    key = draw(
        st.one_of(
            real,
            st.builds(_typo, real, st.integers(0, 40), st.integers(0, 2)),
            st.text(alphabet="abcxyz._", min_size=1, max_size=10),
        )
    )
    prefix = draw(st.sampled_from(["", "+", "++", "~"]))
    if prefix == "~" and draw(st.booleans()):
        return f"~{key}"
    return f"{prefix}{key}={draw(WILD_VALUES)}"


@fuzz(120)
@given(words=st.lists(overrides(), max_size=4))
@example(words=["optimizer=sgd", "optimizer.momentum=0.9", "scheduler=onecycle", "scheduler.pct_start=0.3"])
@example(words=["model=cnn2", "model.dropout=0.2", "dataset.val_split=500", "trainer.epochs=2"])
@example(words=["~dataset=0"])
@example(words=["device='a\nb'", "seed=99999999999999999999999", "threads=true"])
def test_fuzz_overrides(words: list[str]) -> None:
    def check() -> Any:
        parsed = parse_overrides(words)
        check_group_choices(parsed, multirun=False)
        return validate(compose_train(words))

    works_or_fails_cleanly(check, UserError)


# ---------------------------------------------------------------------------------------------- IDX files


def idx_bytes(dims: int, sizes: list[int], extra: int = 0, fill: int = 7) -> bytes:
    """An IDX header over `sizes`, then the announced data with `extra` bytes more (or fewer, when < 0); a
    header announcing more than 4 KiB is followed by 4 KiB only."""
    body = bytes([fill]) * max(0, min(math.prod(sizes), 4096) + extra)
    return bytes((0, 0, 0x08, dims)) + struct.pack(f">{len(sizes)}I", *sizes) + body


@st.composite
def idx_files(draw: st.DrawFn, dims: int) -> bytes:
    form = draw(st.sampled_from(["random", "valid", "valid", "mangled"]))
    if form == "random":
        return draw(st.binary(max_size=64))
    sizes = draw(st.lists(st.integers(0, 6), min_size=dims, max_size=dims))
    if draw(st.integers(0, 9)) == 0:
        sizes[draw(st.integers(0, dims - 1))] = draw(st.sampled_from([2**31, 2**32 - 1, 10**6]))
    extra = draw(st.sampled_from([0, 0, 0, -1, 1, -3, 5]))
    data = idx_bytes(dims, sizes, extra)
    if form == "mangled":
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.binary(max_size=8))
    return data


@fuzz(150)
@given(case=st.sampled_from([1, 3]).flatmap(lambda dims: st.tuples(st.just(dims), idx_files(dims))))
@example(case=(1, idx_bytes(1, [0])))  # zero items: torch.frombuffer refused the empty buffer (ValueError)
@example(case=(3, idx_bytes(3, [0, 28, 28])))
def test_fuzz_read_idx(tmp_path: Path, case: tuple[int, bytes]) -> None:
    dims, content = case
    path = tmp_path / "file-idx-ubyte"
    path.write_bytes(content)
    tensor = works_or_fails_cleanly(lambda: read_idx(path, dims), DataError)
    if tensor is not None:
        sizes = struct.unpack(f">{dims}I", content[4 : 4 + 4 * dims])
        assert tensor.dtype == torch.uint8 and tuple(tensor.shape) == sizes


# ---------------------------------------------------------------------------------------------- images


@functools.cache
def encoded_image(fmt: str, mode: str, width: int, height: int) -> bytes:
    """A real image file of that format, mode and size, with a little structure so the encoders have work to do."""
    image = Image.linear_gradient("L").resize((width, height)).convert(mode)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, bit_depth: int = 8, color_type: int = 2) -> bytes:
    """A well-formed PNG whose header claims any size over a few bytes of pixels: what a decompression bomb
    or a damaged header looks like."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(bytes(64)))
        + png_chunk(b"IEND", b"")
    )


ENCODINGS = [("PNG", m) for m in ("L", "RGB", "RGBA", "P", "1", "I;16", "LA")] + [
    ("JPEG", m) for m in ("L", "RGB", "CMYK")
]
OTHER_ENCODINGS = [
    ("GIF", "P"),
    ("BMP", "RGB"),
    ("TIFF", "RGB"),
    ("TIFF", "I;16"),
    ("WEBP", "RGB"),
    ("PPM", "L"),
    ("ICO", "RGBA"),
    ("TGA", "RGB"),
    ("PCX", "RGB"),
    ("SGI", "RGB"),
    ("IM", "RGB"),
    ("DDS", "RGB"),
    ("JPEG2000", "RGB"),
    ("QOI", "RGB"),
    ("EPS", "RGB"),
    ("XBM", "1"),
    ("SPIDER", "F"),
]
"""Pillow opens a file by its content, not its suffix: a misnamed file of another format takes those decoders."""
MAGIC = [
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"\x00\x00\x01\x00",
    b"8BPS",
    b"%!PS-Adobe-3.0 EPSF-3.0\n",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"P5\n",
    b"P6\n3 3\n255\n",
    b"\n\x05\x01\x08",
    b"DDS ",
    b"qoif",
    b"icns",
    b"\x00\x00\x00\x0cjP  \r\n\x87\n",
    b"#define ",
    b"/* XPM */",
    b"\x01\xda",
]


@st.composite
def image_files(draw: st.DrawFn) -> bytes:
    form = draw(st.sampled_from(["random", "real", "truncated", "truncated", "flipped", "header"]))
    if form == "random":
        return draw(st.sampled_from([b"", *MAGIC])) + draw(st.binary(max_size=48))
    if form == "header":
        side = st.one_of(st.integers(1, 64), st.integers(1, 2**31 - 1))
        return png_claiming(
            draw(side), draw(side), draw(st.sampled_from([1, 8, 16, 3])), draw(st.sampled_from([0, 2, 3, 4, 6, 1]))
        )
    fmt, mode = draw(st.sampled_from(ENCODINGS) if draw(st.integers(0, 2)) else st.sampled_from(OTHER_ENCODINGS))
    data = encoded_image(fmt, mode, draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    if form == "truncated":
        return data[: draw(st.integers(0, len(data) - 1))]
    if form == "flipped":
        mangled = bytearray(data)
        for at in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=4)):
            mangled[at] ^= draw(st.integers(1, 255))
        return bytes(mangled)
    return data


@fuzz(150)
@given(
    content=image_files(),
    channels=st.sampled_from([1, 3, 3, 1, 2, 4, 0]),
    height=st.integers(1, 32),
    width=st.integers(1, 32),
    suffix=st.sampled_from([".png", ".jpg"]),
)
@example(content=png_claiming(100_000, 100_000), channels=3, height=8, width=8, suffix=".png")  # decompression bomb
def test_fuzz_decode_image(tmp_path: Path, content: bytes, channels: int, height: int, width: int, suffix: str) -> None:
    path = tmp_path / f"image{suffix}"
    path.write_bytes(content)
    tensor = works_or_fails_cleanly(lambda: decode_image(path, channels, height, width), DataError)
    if tensor is not None:
        assert tensor.dtype == torch.uint8 and tuple(tensor.shape) == (channels, height, width)


# ---------------------------------------------------------------------------------------------- checkpoints


@functools.cache
def real_checkpoint() -> bytes:
    """The bytes of a small checkpoint written by save_checkpoint, as a run writes them."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3))
    optimizer = torch.optim.Adam(model.parameters())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "last.pt"
        save_checkpoint(
            path,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": 3,
                "rng": torch.get_rng_state(),
                "metrics": {"val/acc": 0.5},
            },
        )
        return path.read_bytes()


def torch_saved(value: Any) -> bytes:
    out = io.BytesIO()
    torch.save(value, out)
    return out.getvalue()


PLAIN = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)


@st.composite
def checkpoint_files(draw: st.DrawFn) -> bytes:
    form = draw(st.sampled_from(["random", "truncated", "truncated", "flipped", "appended", "saved", "pickled"]))
    if form == "random":
        return draw(st.one_of(st.binary(max_size=64), st.binary(max_size=32).map(lambda b: b"PK\x03\x04" + b)))
    if form == "saved":
        value = draw(PLAIN)
        if draw(st.booleans()):
            tag = draw(st.sampled_from(["cnntrain-checkpoint", "other", None]))
            value = {"format": tag, **draw(st.dictionaries(st.text(max_size=5), PLAIN, max_size=3))}
        return torch_saved(value)
    if form == "pickled":
        return pickle.dumps(draw(st.sampled_from([Path("x"), print, {"format": "cnntrain-checkpoint"}, [1, 2]])))
    data = real_checkpoint()
    if form == "truncated":
        return data[: draw(st.integers(0, len(data) - 1))]
    if form == "appended":
        return data + draw(st.binary(min_size=1, max_size=16))
    mangled = bytearray(data)
    for at in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=4)):
        mangled[at] ^= draw(st.integers(1, 255))
    return bytes(mangled)


@fuzz(150)
@given(content=checkpoint_files())
def test_fuzz_load_checkpoint(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "last.pt"
    path.write_bytes(content)
    payload = works_or_fails_cleanly(lambda: load_checkpoint(path), CheckpointError)
    if payload is not None:
        assert isinstance(payload, dict) and payload["format"] == FORMAT


def test_real_checkpoint_loads(tmp_path: Path) -> None:
    """The fuzzer's starting point is itself a good checkpoint, so the mangled ones are near misses."""
    path = tmp_path / "last.pt"
    path.write_bytes(real_checkpoint())
    assert load_checkpoint(path)["epoch"] == 3
