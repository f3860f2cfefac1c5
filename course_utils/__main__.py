"""Command line of the course helpers: ``python -m course_utils COMMAND`` (``--help`` lists them)."""
from __future__ import annotations

import argparse
import sys


def _doctor(args) -> int:
    from .doctor import run_doctor

    return run_doctor(verbose=not args.quiet)


def _build_assets(args) -> int:
    from pathlib import Path

    from .build_assets import build_assets
    from .notebook import quiet_libraries

    quiet_libraries()
    report = build_assets(Path(args.dest)) if args.dest else build_assets()
    return 0 if all(v >= 0.9 for k, v in report.items() if k.endswith("accuracy")) else 1


def _execute(args) -> int:
    from .execute import execute_many

    return execute_many(args.notebooks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("doctor", help="check the environment and every adapter load path")
    p.add_argument("--quiet", action="store_true", help="print only problems and the verdict")
    p.set_defaults(func=_doctor)
    p = sub.add_parser("build-assets", help="rebuild the shipped tiny model, tokenizer and adapters")
    p.add_argument("--dest", help="write here instead of the package's assets folder")
    p.set_defaults(func=_build_assets)
    p = sub.add_parser("execute", help="re-execute notebooks in place and store their outputs")
    p.add_argument("notebooks", nargs="+")
    p.set_defaults(func=_execute)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
