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
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from memwarden.find.analyze_cli import add_analyze_arguments, run_analyze

__all__ = ["COMMANDS", "Command", "add_analyze_arguments", "build_parser", "main", "run_analyze"]

EXIT_OK = 0
EXIT_LEAK = 1
EXIT_ERROR = 2


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


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
