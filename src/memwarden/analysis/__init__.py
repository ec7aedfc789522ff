"""Find: turn memwarden's request logs into a leak verdict and ranked suspects.

Pure standard library. Start with ``analyze_paths`` (files, gzip or stdin)
or ``analyze_lines``; both return a ``Report`` whose ``to_json_dict()`` is
the report.json contract. The protective actions memwarden logged (done, or
only decided in dry-run) are in ``Report.actions``; see ``analysis.actions``.
"""

from memwarden.analysis.analyze import analyze_lines, analyze_paths
from memwarden.analysis.config import AnalysisConfig
from memwarden.analysis.model import (
    ActionCount,
    ActionMarker,
    ActionSummary,
    InputStats,
    LifeSeries,
    RecycleMarker,
    Report,
    RouteCost,
    SeriesPoint,
    Suspect,
    SuspectKind,
    Verdict,
    WorkerSummary,
)
from memwarden.analysis.text import render_text

__all__ = [
    "ActionCount",
    "ActionMarker",
    "ActionSummary",
    "AnalysisConfig",
    "InputStats",
    "LifeSeries",
    "RecycleMarker",
    "Report",
    "RouteCost",
    "SeriesPoint",
    "Suspect",
    "SuspectKind",
    "Verdict",
    "WorkerSummary",
    "analyze_lines",
    "analyze_paths",
    "render_text",
]
