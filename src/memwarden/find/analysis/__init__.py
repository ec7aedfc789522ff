"""Find: turn memwarden's request logs into a leak verdict and ranked suspects.

Pure standard library. Start with ``analyze_paths`` (files, gzip or stdin)
or ``analyze_lines``; both return a ``Report`` whose ``to_json_dict()`` is
the report.json contract. The protective actions memwarden logged (done, or
only decided in dry-run) are in ``Report.actions``; see ``analysis.actions``.
"""

from memwarden.find.analysis.analyze import analyze_lines, analyze_paths
from memwarden.find.analysis.config import AnalysisConfig
from memwarden.find.analysis.model import (
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
from memwarden.find.analysis.text import render_text

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
