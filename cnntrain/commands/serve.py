"""`cnntrain-serve RUN_DIR | MODEL_FILE`: a finished run's model (its checkpoint, or a file cnntrain-export wrote)
as an HTTP service: POST /predict answers what `cnntrain-predict --json` prints, requests are batched dynamically,
bad requests are refused in one line, SIGTERM stops it cleanly (docs/serving.md).

The work is cnntrain.serving's (app: start and stop; gate: reading and limits; worker: the batches; metrics); this
module parses and checks the options, each bad one a single line before anything is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnntrain.commands.entry import ArgumentParser, run_command


def parser() -> ArgumentParser:
    from cnntrain.serving.app import ServeOptions
    from cnntrain.serving.model import FORMATS

    d = ServeOptions()
    p = ArgumentParser(
        prog="cnntrain-serve",
        description="Serve a trained run (or an exported model file) over HTTP with dynamic batching.",
    )
    p.add_argument(
        "target",
        type=Path,
        metavar="RUN_DIR|MODEL",
        help="a run directory written by cnntrain, or a model.onnx, model.xml or model.pt2 from cnntrain-export",
    )
    p.add_argument("--format", choices=FORMATS, help="for a run directory: its checkpoint (eager, the default) or "
                   "one of its exports in RUN_DIR/export/")  # fmt: skip
    p.add_checkpoint()
    p.add_argument("--device", default="cpu", help="cpu (default) | auto | cuda | cuda:N | mps (checkpoints only)")
    p.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host}: this machine only)")
    p.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port}; 0: any free port)")
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=d.max_batch_size,
        help=f"requests run as one batch at most (default {d.max_batch_size}; 1: no batching)",
    )
    p.add_argument(
        "--batch-timeout-ms",
        type=float,
        default=d.batch_timeout_ms,
        help=f"how long a batch waits for more requests (default {d.batch_timeout_ms:g} ms)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        help=f"inference worker processes, each with the model (default {d.workers})",
    )
    p.add_argument("--top-k", type=int, default=d.top_k, help=f"classes in each answer (default {d.top_k})")
    p.add_argument(
        "--queue",
        type=int,
        default=d.queue,
        help=f"requests the server holds at once; more are answered 503 (default {d.queue})",
    )
    p.add_argument(
        "--max-body-mb",
        type=float,
        default=d.max_body_mb,
        help=f"largest request body in MiB; larger ones are answered 413 (default {d.max_body_mb:g})",
    )
    p.add_argument("--max-images", type=int, default=d.max_images,
                   help=f"images in one batch-form request at most (default {d.max_images})")  # fmt: skip
    p.add_argument("--body-timeout-s", type=float, default=d.body_timeout_s,
                   help=f"seconds a request body may take to arrive; slower ones are answered 408 (default "
                   f"{d.body_timeout_s:g})")  # fmt: skip
    p.add_argument("--keep-alive-s", type=float, default=d.keep_alive_s,
                   help=f"seconds an idle connection stays open for the client's next request; longer than the "
                   f"client's or load balancer's own idle timeout (default {d.keep_alive_s:g})")  # fmt: skip
    return p


def options(args: Any) -> Any:
    """The checked options; one line naming the first bad value and what is allowed."""
    from cnntrain.serving.app import ServeOptions, check_options

    chosen = ServeOptions(**{name: getattr(args, name) for name in ServeOptions.__dataclass_fields__ if name in args})
    check_options(chosen, lambda name: "--" + name.replace("_", "-"))
    return chosen


def _main(argv: list[str]) -> None:
    from cnntrain.config.validate import check_device
    from cnntrain.serving.app import serve
    from cnntrain.serving.model import model_source

    args = parser().parse_args(argv)
    chosen = options(args)
    check_device(args.device)
    serve(model_source(args.target, args.format, args.checkpoint, args.device), chosen)


def main() -> None:
    """Console-script entry point of cnntrain-serve."""
    run_command(_main)


if __name__ == "__main__":
    main()
