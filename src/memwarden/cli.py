"""The ``memwarden`` command.

Each subcommand is a ``Command``: a function that adds its arguments and a
function that runs it and returns the exit code. Adding one (``audit``,
``demo``) is one more entry in ``COMMANDS``; heavy imports stay inside the
run functions so that one subcommand never pays for another's.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from memwarden.find.analysis import Report

__all__ = ["COMMANDS", "Command", "add_analyze_arguments", "build_parser", "main", "run_analyze"]

EXIT_OK = 0
EXIT_LEAK = 1
EXIT_ERROR = 2
HTML_RENDERER = "memwarden.find.report.html"


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def add_analyze_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``memwarden analyze``."""
    parser.add_argument("logs", nargs="+", metavar="LOG",
                        help="log files with memwarden request lines (gzip is fine; - for stdin);"
                             " other lines are ignored")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="write report.json here")
    parser.add_argument("--html", type=Path, default=None, metavar="FILE",
                        help="write the HTML report here")
    parser.add_argument("--fail-on-leak", action="store_true",
                        help="exit 1 when the verdict is leak")


def _html_renderer(stderr: TextIO) -> Callable[[Report], str] | None:
    try:
        # Imported by name: the renderer is a separate, optional part.
        renderer: Callable[[Report], str] = importlib.import_module(HTML_RENDERER).render_html
    except (ImportError, AttributeError) as exc:
        # The renderer ships with memwarden (no extra): missing, the install is broken.
        print(f"memwarden analyze: --html needs the HTML report renderer ({HTML_RENDERER}), "
              f"which is not available here: {exc}. It is part of memwarden itself: reinstall "
              f"memwarden (pip install --force-reinstall memwarden), or leave out --html.",
              file=stderr)
        return None
    return renderer


def run_analyze(args: argparse.Namespace, stdout: TextIO | None = None,
                stderr: TextIO | None = None) -> int:
    """``memwarden analyze``: 0; 1 on a leak with --fail-on-leak; 2 when it cannot run.

    Log content never stops it (the reader counts what it cannot use); a
    file it cannot read or write does, with one line on stderr, as would a
    defect of its own: a script reading the exit code gets 2, never a traceback.
    """
    err = stderr or sys.stderr
    try:
        return _analyze(args, stdout or sys.stdout, err)
    except BrokenPipeError:
        raise
    except Exception as exc:
        print(f"memwarden analyze: internal error, no report: {type(exc).__name__}: {exc}"
              .splitlines()[0][:500], file=err)
        return EXIT_ERROR


def _analyze(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    # Resolve the renderer before reading anything: fail fast, not after a long analysis.
    render_html = _html_renderer(err) if args.html is not None else None
    if args.html is not None and render_html is None:
        return EXIT_ERROR
    from memwarden.find.analysis import analyze_paths, render_text

    try:
        report = analyze_paths(args.logs)
    except OSError as exc:
        print(f"memwarden analyze: cannot read {exc.filename or 'input'}: {exc.strerror or exc}",
              file=err)
        return EXIT_ERROR
    out.write(render_text(report))
    try:
        if args.json is not None:
            text = json.dumps(report.to_json_dict(), indent=2, allow_nan=False)
            args.json.write_text(text + "\n", encoding="utf-8")
            print(f"report.json written to {args.json}", file=out)
        if render_html is not None:
            args.html.write_text(render_html(report), encoding="utf-8")
            print(f"HTML report written to {args.html}", file=out)
    except OSError as exc:
        print(f"memwarden analyze: cannot write {exc.filename or 'output'}: "
              f"{exc.strerror or exc}", file=err)
        return EXIT_ERROR
    except ImportError as exc:  # a missing optional dependency of the renderer
        print(f"memwarden analyze: the HTML report needs {exc.name or exc}, which memwarden "
              f"ships; reinstall memwarden (pip install --force-reinstall memwarden)", file=err)
        return EXIT_ERROR
    if args.fail_on_leak and report.verdict == "leak":
        return EXIT_LEAK
    return EXIT_OK


def _lazy_arguments(module: str) -> Callable[[argparse.ArgumentParser], None]:
    """A command's argument setup, imported only when the parser is built."""
    def add(parser: argparse.ArgumentParser) -> None:
        command = module.rpartition(".")[2].removesuffix("_cli")
        getattr(importlib.import_module(module), f"add_{command}_arguments")(parser)
    return add


def _lazy_run(module: str) -> Callable[[argparse.Namespace], int]:
    """A command's body, imported only when it runs."""
    def run(args: argparse.Namespace) -> int:
        command = module.rpartition(".")[2].removesuffix("_cli")
        result: int = getattr(importlib.import_module(module), f"run_{command}_command")(args)
        return result
    return run


COMMANDS: tuple[Command, ...] = (
    Command("analyze", "read request logs: verdict, worker summaries and ranked leak suspects",
            add_analyze_arguments, run_analyze),
    Command("audit", "run an app under gunicorn on 127.0.0.1, drive traffic, report leaks",
            _lazy_arguments("memwarden.find.audit_cli"), _lazy_run("memwarden.find.audit_cli")),
    Command("check", "before a deploy: every setting, the memory limit and caps, the actions, "
                     "the exporters, and what would make protection ineffective",
            _lazy_arguments("memwarden.check_cli"), _lazy_run("memwarden.check_cli")),
    Command("demo", "audit the reference agent service and show what memwarden finds",
            _lazy_arguments("memwarden.find.demo"), _lazy_run("memwarden.find.demo")),
)


def _version() -> str:
    try:
        return importlib.metadata.version("memwarden")
    except importlib.metadata.PackageNotFoundError:  # a source tree not installed
        return "unknown (not installed)"


def build_parser(commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memwarden",
        description="See, find and hold memory leaks in long-running Python web workers.")
    parser.add_argument("--version", action="version", version=f"memwarden {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except BrokenPipeError:
        # `memwarden analyze ... | head`: the reader left; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
