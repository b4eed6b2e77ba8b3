"""`cnntrain-report RUN_DIR...`: write report.html again from what a finished run (or a sweep) holds.

A run writes its page as it ends; this writes it again, for a run from before pages, or after the run's
analysis added pictures. A sweep directory gets a page for each finished job and its own page. Nothing is
trained or drawn and torch is not imported.
"""

from __future__ import annotations

from pathlib import Path

from cnntrain.commands.entry import ArgumentParser, in_process_only, run_command
from cnntrain.errors import UserError
from cnntrain.reporting.page import write_run_page
from cnntrain.reporting.run_dir import RunDir
from cnntrain.reporting.sweep_page import write_sweep_page
from cnntrain.reporting.sweep_rows import collect


def parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="cnntrain-report",
        description="Write report.html, a self-contained page, into finished run or sweep directories.",
    )
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories or sweep directories")
    return p


def _main(argv: list[str]) -> None:
    in_process_only()
    for path in parser().parse_intermixed_args(argv).runs:
        if not path.is_dir():
            raise UserError(f"run directory not found: {path}")
        if RunDir(path).summary_json.is_file():
            print(f"wrote {write_run_page(path).resolve()}")
            continue
        jobs = [d for d in sorted(path.iterdir()) if d.is_dir() and RunDir(d).overrides_yaml.is_file()]
        if not jobs:
            raise UserError(f"{path} is neither a finished run (no summary.json) nor a sweep directory")
        for job in jobs:
            if RunDir(job).summary_json.is_file():
                print(f"wrote {write_run_page(job).resolve()}")
        print(f"wrote {write_sweep_page(path, collect(path)).resolve()}")


def main() -> None:
    """Console-script entry point of cnntrain-report."""
    run_command(_main)


if __name__ == "__main__":
    main()
