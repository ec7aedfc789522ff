"""``memwarden analyze``: its arguments and its run.

Heavy imports stay inside the run, so building the command line costs nothing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from memwarden.find.analysis import Report
    from memwarden.find.analysis.stream import StreamAnalysis

__all__ = ["add_analyze_arguments", "run_analyze", "run_analyze_command"]

EXIT_OK = 0
EXIT_LEAK = 1
EXIT_ERROR = 2
HTML_RENDERER = "memwarden.find.report.html"


def _pid(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("a PID is a non-negative integer")
    return value


def _time(text: str) -> str:
    from memwarden.find.analysis.filters import parse_time

    try:
        parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (2026-11-28 or 2026-11-28T02:00:00Z)") from None
    return text


def _jobs(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("--jobs needs at least 1")
    return value


def add_analyze_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``memwarden analyze``."""
    parser.add_argument("logs", nargs="*", metavar="LOG",
                        help="log files with memwarden request lines (gzip is fine; - for stdin);"
                             " other lines are ignored")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="write report.json here")
    parser.add_argument("--html", type=Path, default=None, metavar="FILE",
                        help="write the HTML report here")
    parser.add_argument("--fail-on-leak", action="store_true",
                        help="exit 1 when the verdict is leak")
    parser.add_argument("--jobs", type=_jobs, default=None, metavar="N",
                        help="split the log files over N processes and merge their results "
                             "(a worker life must not continue from one file into a file of "
                             "another part); one file is read by one process while N judge "
                             "its worker lives. Default: one pass over the files in order, "
                             "its lives judged by as many processes as there are CPUs "
                             "available; 1: everything in one process")
    parser.add_argument("--since", type=_time, default=None, metavar="TIME",
                        help="read only lines at or after this ISO 8601 time")
    parser.add_argument("--until", type=_time, default=None, metavar="TIME",
                        help="read only lines before this ISO 8601 time")
    parser.add_argument("--worker", type=_pid, default=None, metavar="PID",
                        help="read only the lines of this worker PID")
    parser.add_argument("--partial", type=Path, default=None, metavar="FILE",
                        help="also write a partial summary (plain JSON) to merge with others "
                             "later: one per host, then --merge")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="PARTIAL",
                        help="merge partial summaries (in order; LOG files, if any, follow "
                             "them as one more part)")


def _html_renderer(stderr: TextIO) -> Callable[[Report], str] | None:
    try:
        # Imported by name; the renderer ships with memwarden (no extra): missing, the
        # install is broken.
        renderer: Callable[[Report], str] = importlib.import_module(HTML_RENDERER).render_html
    except (ImportError, AttributeError) as exc:
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


def run_analyze_command(args: argparse.Namespace) -> int:
    return run_analyze(args)


def _read_partials(paths: list[Path]) -> list[dict[str, Any]]:
    partials = []
    for path in paths:
        with path.open(encoding="utf-8") as f:
            partials.append(json.load(f))
    return partials


def _stream(args: argparse.Namespace, err: TextIO) -> StreamAnalysis:
    from memwarden.find.analysis.analyze import feed_paths
    from memwarden.find.analysis.filters import line_filter
    from memwarden.find.analysis.jobs import analyze_in_parts
    from memwarden.find.analysis.judges import default_judges
    from memwarden.find.analysis.partial import merge
    from memwarden.find.analysis.progress import Progress
    from memwarden.find.analysis.stream import StreamAnalysis

    since, until, worker = args.since, args.until, args.worker
    target = StreamAnalysis()
    for data in _read_partials(args.merge or []):
        merge(target, data)
    if not args.logs:
        return target
    if args.jobs is not None and args.jobs > 1:
        stream = analyze_in_parts(args.logs, args.jobs, since, until, worker)
    else:
        judges = default_judges() if args.jobs is None else 0
        stream = StreamAnalysis(None, line_filter(since, until, worker), judges=judges)
        if Progress.wanted(err):
            progress = Progress(args.logs, err, stream.parser.counters)
            feed_paths(stream, args.logs, progress.opened, progress.tick)
            progress.done()
        else:
            feed_paths(stream, args.logs)
    if not args.merge:
        return stream
    from memwarden.find.analysis.partial import to_partial

    merge(target, to_partial(stream))
    return target


def _analyze(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not args.logs and not args.merge:
        print("memwarden analyze: give LOG files, or --merge with partial summaries", file=err)
        return EXIT_ERROR
    # Resolve the renderer before reading anything: fail fast, not after a long analysis.
    render_html = _html_renderer(err) if args.html is not None else None
    if args.html is not None and render_html is None:
        return EXIT_ERROR
    from memwarden.find.analysis import render_text
    from memwarden.find.analysis.analyze import report_of
    from memwarden.find.analysis.partial import to_partial

    try:
        stream = _stream(args, err)
    except OSError as exc:
        print(f"memwarden analyze: cannot read {exc.filename or 'input'}: {exc.strerror or exc}",
              file=err)
        return EXIT_ERROR
    except (ValueError, KeyError, TypeError) as exc:  # a partial that is not one
        print(f"memwarden analyze: cannot merge: {exc}".splitlines()[0][:500], file=err)
        return EXIT_ERROR
    try:
        if args.partial is not None:
            # Before the report: the report folds the routes it does not list.
            text = json.dumps(to_partial(stream), allow_nan=False, separators=(",", ":"))
            args.partial.write_text(text + "\n", encoding="utf-8")
        report = report_of(stream)
        out.write(render_text(report))
        if args.partial is not None:
            print(f"partial summary written to {args.partial}", file=out)
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
