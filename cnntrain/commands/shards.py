"""`cnntrain-shards KEY=VALUE ... --output DIR`: write the dataset those overrides name as WebDataset shards.

The dataset is read as a `cnntrain` run would read it (same files, same seeded train/val/test split) and each
split is written to DIR/<split>-000000.tar, ... (`--shard-size` samples a shard), every sample as `<key>.png`
(lossless: the uint8 pixels a run on the folder trains on) and `<key>.cls` (the class index), plus
DIR/classes.txt (one name a line, which dataset=webdataset reads by default) and DIR/sizes.json. Train on them
with: cnntrain dataset=webdataset "dataset.train='DIR/train-{000000..00000N}.tar'" dataset.val=... dataset.test=...

torch, Pillow, Hydra and webdataset (an optional extra) are imported inside the functions that use them,
so `--help` and a bad argument answer without them.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from cnntrain.commands.entry import ArgumentParser, in_process_only, run_command
from cnntrain.errors import UserError, first_line
from cnntrain.files import write_text

SPLITS = ("train", "val", "test")


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="cnntrain-shards", description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="cnntrain config overrides naming the dataset, e.g. dataset=fashion")
    p.add_argument("--output", type=Path, required=True, help="the folder to write the shards into (new or empty)")
    p.add_argument("--shard-size", type=int, default=10000, help="samples per shard (default 10000)")
    return p


def png_bytes(image: Any) -> bytes:
    """A uint8 [C, H, W] tensor as PNG bytes (grayscale or RGB), losslessly."""
    from PIL import Image

    array = image.cpu().numpy()
    if array.shape[0] == 1:
        picture = Image.fromarray(array[0], "L")
    else:
        picture = Image.fromarray(array.transpose(1, 2, 0), "RGB")
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


def write_shards(data: Any, output: Path, shard_size: int) -> dict[str, dict[str, int]]:
    """Every split of `data` (a DataBundle) into shards under `output`; returns each split's samples and shards."""
    import webdataset as wds

    from cnntrain.data.containers import iterate_batches

    written: dict[str, dict[str, int]] = {}
    for name in SPLITS:
        split = getattr(data, name)
        with wds.ShardWriter(str(output / f"{name}-%06d.tar"), maxcount=shard_size, verbose=0) as sink:
            count = 0
            for images, labels in iterate_batches(split, 256, shuffle=False):
                for image, label in zip(images, labels.tolist()):
                    sink.write({"__key__": f"{name}-{count:09d}", "png": png_bytes(image), "cls": str(label)})
                    count += 1
        written[name] = {"samples": count, "shards": -(-count // shard_size)}
    return written


def _main(argv: list[str]) -> None:
    in_process_only()
    args = parser().parse_intermixed_args(argv)
    if args.shard_size < 1:
        raise UserError(f"--shard-size {args.shard_size}: must be >= 1")
    if args.output.is_symlink():  # planted in a shared folder, it would send the shards elsewhere
        raise UserError(
            f"--output {args.output} is a symbolic link; cnntrain writes no output folder through a link "
            f"(name the folder it points to, or another one)"
        )
    if args.output.exists() and (not args.output.is_dir() or any(args.output.iterdir())):
        raise UserError(f"--output {args.output}: give a new or empty folder (shards are never overwritten)")
    try:
        import webdataset  # noqa: F401
    except ImportError:
        raise UserError("cnntrain-shards needs the webdataset package: pip install 'cnntrain[webdataset]'") from None
    from cnntrain.commands.preflight import parse_overrides
    from cnntrain.config.compose import compose_train
    from cnntrain.config.validate import validate
    from cnntrain.data.loading import load_data

    parse_overrides(args.overrides)  # one line for a bad override (and how to quote a brace range)
    cfg = validate(compose_train(list(args.overrides)))  # the dataset alone: no model is built or checked
    data = load_data(cfg.dataset, seed=cfg.seed, device="cpu")
    try:
        args.output.mkdir(parents=True, exist_ok=True)
        written = write_shards(data, args.output, args.shard_size)
        write_text(args.output / "classes.txt", "".join(f"{c}\n" for c in data.classes))
        write_text(args.output / "sizes.json", json.dumps(written, indent=2) + "\n")
    except OSError as err:
        raise UserError(f"cannot write shards into {args.output}: {first_line(err)}") from None
    for name, facts in written.items():
        last = facts["shards"] - 1
        print(
            f"{name}: {facts['samples']} samples in {facts['shards']} shard(s): "
            f"{args.output}/{name}-{{000000..{last:06d}}}.tar"
        )
    print(f"classes: {args.output}/classes.txt ({len(data.classes)} classes)")


def main() -> None:
    """Console-script entry point of cnntrain-shards."""
    run_command(_main)


if __name__ == "__main__":
    main()
