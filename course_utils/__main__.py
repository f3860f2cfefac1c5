"""Command line of the course helpers: ``python -m course_utils COMMAND`` (``--help`` lists them)."""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path


def _load(module: str):
    """Import a command's module when the command runs: ``--help`` and ``diagnose`` without ``--base`` stay
    free of torch and peft (4-5 s to import), and no command pays for another's dependencies."""
    return importlib.import_module(module, __package__)


def _doctor(args) -> int:
    run_doctor = _load(".doctor").run_doctor
    return run_doctor(verbose=not args.quiet)


def _build_assets(args) -> int:
    quiet_libraries = _load(".lesson_setup").quiet_libraries
    build_assets = _load(".maintenance.build_assets").build_assets
    quiet_libraries()
    report = build_assets(Path(args.dest)) if args.dest else build_assets()
    return 0 if all(v >= 0.9 for k, v in report.items() if k.endswith("accuracy")) else 1


def _execute(args) -> int:
    execute_many = _load(".maintenance.execute").execute_many
    return execute_many(args.notebooks)


def _grade(args) -> int:
    run_grade = _load(".grading.grader").run_grade
    return run_grade(args.paths, as_json=args.json, csv_path=args.csv, solutions=args.solutions,
                     cell_timeout=args.cell_timeout, total_timeout=args.total_timeout,
                     locked_timeout=args.locked_timeout, jobs=args.jobs, shard=args.shard, memory_gib=args.memory,
                     unsafe=args.unsafe_no_sandbox)


def _merge(args) -> int:
    run_merge = _load(".grading.gradebook").run_merge
    return run_merge(args.files, csv_path=args.csv, json_path=args.json_out)


def _exercises(args) -> int:
    copies = _load(".grading.student_copies")
    if args.action == "release":
        if not args.dest:
            print("exercises release needs the folder to write the handout into: exercises release DIR")
            return 2
        return copies.run_release(args.dest)
    return copies.run_build(check_only=args.check)


def _diagnose(args) -> int:
    if args.engine is not None:
        return _load(".engines").run_engine_check(args.path, args.engine, base=args.base)
    diagnose = _load(".diagnosis").diagnose
    if args.base is not None:
        quiet_libraries = _load(".lesson_setup").quiet_libraries
        quiet_libraries()
    report = diagnose(args.path, base_model=args.base)
    print(report)
    return 0 if report.ok else 1


def _export_gguf(args) -> int:
    return _load(".gguf_export").run_export(args.path, out=args.out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("doctor", help="check the environment and every adapter load path")
    p.add_argument("--quiet", action="store_true", help="print only problems and the verdict")
    p.set_defaults(func=_doctor)
    p = sub.add_parser("build-assets", help="rebuild the shipped tiny models (GPT-2, Llama), tokenizer and adapters")
    p.add_argument("--dest", help="write here instead of the package's assets folder")
    p.set_defaults(func=_build_assets)
    p = sub.add_parser("execute", help="re-execute notebooks in place and store their outputs")
    p.add_argument("notebooks", nargs="+")
    p.set_defaults(func=_execute)
    p = sub.add_parser("grade", help="grade exercise submissions (notebooks or folders of them)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="one JSON object per submission per line")
    p.add_argument("--csv", metavar="FILE", help="also write a gradebook: one row per submission")
    p.add_argument("--solutions", metavar="DIR", help="solution notebooks to take the checks from")
    p.add_argument("--cell-timeout", type=float, default=60, help="seconds for one learner cell (default 60)")
    p.add_argument("--locked-timeout", type=float, default=120,
                   help="seconds for one given or check cell (default 120)")
    p.add_argument("--total-timeout", type=float, default=600, help="seconds per submission (default 600)")
    p.add_argument("--jobs", type=int, help="submissions graded side by side (default: the cores available)")
    p.add_argument("--shard", metavar="I/N", help="grade only shard I of N (0 <= I < N) of the sorted paths")
    p.add_argument("--memory", type=float, default=4, metavar="GIB",
                   help="memory cap of each submission's kernel in GiB (default 4; 0: none)")
    p.add_argument("--unsafe-no-sandbox", action="store_true",
                   help="run each kernel unsandboxed, with your rights (only for one trusted learner's notebooks)")
    p.set_defaults(func=_grade)
    p = sub.add_parser("merge", help="join the `grade --json` lines of several shards into one gradebook")
    p.add_argument("files", nargs="+", metavar="JSONL")
    p.add_argument("--csv", metavar="FILE", help="write the merged gradebook (one row per submission)")
    p.add_argument("--json-out", metavar="FILE", help="write the merged JSON lines, sorted by notebook")
    p.set_defaults(func=_merge)
    p = sub.add_parser("exercises", help="`exercises build` writes the student copies; `exercises release DIR` "
                                         "writes the learners' handout (no solutions, no outputs)")
    p.add_argument("action", choices=["build", "release"])
    p.add_argument("dest", nargs="?", metavar="DIR", help="release: the new folder to write the handout into")
    p.add_argument("--check", action="store_true", help="only report stale student copies (exit 1 if any)")
    p.set_defaults(func=_exercises)
    p = sub.add_parser("diagnose", help="find what is wrong with a saved adapter folder (one line per problem)")
    p.add_argument("path", help="the adapter folder")
    p.add_argument("--base", metavar="MODEL",
                   help='also check it fits this base model: a local folder, or "course" for the course model')
    p.add_argument("--for", dest="engine", metavar="ENGINE",
                   help="instead, check it against a serving engine's limits: vllm, llama.cpp or tgi")
    p.set_defaults(func=_diagnose)
    p = sub.add_parser("export-gguf", help="write the adapter as a GGUF LoRA for llama.cpp (--lora FILE)")
    p.add_argument("path", help="the adapter folder")
    p.add_argument("--out", metavar="FILE", help="the .gguf file to write (default: FOLDER/adapter_model.gguf)")
    p.set_defaults(func=_export_gguf)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
