"""``--jobs N``: the log files split over processes, their partial summaries merged.

Files are split into N runs of consecutive files of about equal size (the
order of the files is the order of the log), each run analysed in its own
process into a partial summary (``partial``), and the partials merged in
order: the answer of one pass, as long as no worker life continues from one
run's files into the next's. One file, or stdin, is one part: read by one
process while N processes judge its worker lives (``judges``), the answer
of one pass whatever the lives.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from memwarden.find.analysis.analyze import feed_paths
from memwarden.find.analysis.config import AnalysisConfig
from memwarden.find.analysis.filters import line_filter
from memwarden.find.analysis.partial import merge, to_partial
from memwarden.find.analysis.stream import StreamAnalysis

__all__ = ["analyze_in_parts", "partial_of_paths", "split_paths"]

Path = str | os.PathLike[str]


def split_paths(paths: Sequence[Path], parts: int) -> list[list[Path]]:
    """Consecutive runs of files of about equal total size, at most ``parts`` of them."""
    if parts <= 1 or len(paths) <= 1 or any(os.fspath(p) == "-" for p in paths):
        return [list(paths)]
    sizes = []
    for path in paths:
        try:
            sizes.append(max(os.path.getsize(path), 1))
        except OSError:
            sizes.append(1)  # opening it will say what is wrong
    total = sum(sizes)
    groups: list[list[Path]] = [[] for _ in range(parts)]
    filled = 0
    for path, size in zip(paths, sizes, strict=True):
        # The part whose share of the bytes holds this file's middle.
        groups[min(parts - 1, int((filled + size / 2) * parts / total))].append(path)
        filled += size
    return [group for group in groups if group]


def partial_of_paths(paths: Sequence[Path], since: str | None = None,
                     until: str | None = None, worker: int | None = None,
                     config: AnalysisConfig | None = None) -> dict[str, Any]:
    """One part: its files analysed in one pass, as a partial summary."""
    stream = StreamAnalysis(config, line_filter(since, until, worker))
    feed_paths(stream, paths)
    return to_partial(stream)


def analyze_in_parts(paths: Sequence[Path], jobs: int, since: str | None = None,
                     until: str | None = None, worker: int | None = None,
                     config: AnalysisConfig | None = None) -> StreamAnalysis:
    """The files over ``jobs`` processes, merged into one analysis ready for its report."""
    groups = split_paths(paths, jobs)
    target = StreamAnalysis(config)
    if len(groups) == 1:
        stream = StreamAnalysis(config, line_filter(since, until, worker),
                                judges=jobs if jobs > 1 else 0)
        feed_paths(stream, groups[0])
        return stream
    with ProcessPoolExecutor(max_workers=len(groups)) as pool:
        futures = [pool.submit(partial_of_paths, group, since, until, worker, config)
                   for group in groups]
        for future in futures:  # in order: each part follows the one before
            merge(target, future.result())
    return target
