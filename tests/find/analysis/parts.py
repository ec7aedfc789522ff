"""One pass against partial summaries merged: the same report, up to float summation order."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memwarden.find.analysis.analyze import analyze_paths, feed_paths, report_of
from memwarden.find.analysis.jobs import analyze_in_parts, partial_of_paths
from memwarden.find.analysis.partial import merge
from memwarden.find.analysis.stream import StreamAnalysis


def _same(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, int | float) and isinstance(b, int | float) \
                and (math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
                     # report.json rounds to 3 decimals: sums merged in another order can
                     # land on either side of a rounding boundary (0.3905 -> 0.39 or 0.391).
                     or (round(a, 3) == a and round(b, 3) == b and abs(a - b) <= 0.0011)):
            return []
        return [f"{where}: {a!r} != {b!r}"]
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            return [f"{where}: keys {list(a)} != {list(b)}"]
        return [d for key in a for d in _same(a[key], b[key], f"{where}.{key}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in _same(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def report_dicts(stream_or_report: Any) -> dict[str, Any]:
    report = stream_or_report
    if isinstance(report, StreamAnalysis):
        report = report_of(report)
    return {**report.to_json_dict(), **report.series_json_dict()}


def differences(paths: Sequence[Path], jobs: int = 2) -> dict[str, list[str]]:
    """What one pass over ``paths`` says that the merged partials (one per file) and
    ``--jobs`` do not; empty lists when all agree. ``--jobs`` is both of its ways:
    the files split over processes, and one pass whose lives other processes judge
    (that one exactly the same, floats and all)."""
    one = report_dicts(analyze_paths(paths))
    merged = StreamAnalysis()
    for path in paths:
        # Through JSON text, as --partial writes it and --merge reads it.
        merge(merged, json.loads(json.dumps(partial_of_paths([path]), allow_nan=False)))
    judged = StreamAnalysis(judges=jobs)
    feed_paths(judged, paths)
    exact = report_dicts(judged)
    return {"merge": _same(one, report_dicts(merged)),
            "jobs": _same(one, report_dicts(analyze_in_parts(paths, jobs)))
            + ([] if exact == one else ["lives judged by other processes differ"])}


def shifted_copy(source: Path, target: Path, pid_shift: int) -> None:
    """The same log as another host's: every pid moved by ``pid_shift``."""
    with source.open(encoding="utf-8") as src, target.open("w", encoding="utf-8") as out:
        for line in src:
            try:
                obj = json.loads(line)
            except ValueError:
                out.write(line)
                continue
            if isinstance(obj, dict) and isinstance(obj.get("pid"), int):
                obj["pid"] += pid_shift
            out.write(json.dumps(obj) + "\n")
