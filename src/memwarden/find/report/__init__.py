"""The HTML report: a plain view model of a ``Report``, rendered to one offline page.

Three layers, as in memray: ``memwarden.find.analysis`` reads the data,
``view.build_view`` makes the plain model of ``model`` (words, units,
ordering, thinned series; ``compare`` for several reports side by side), and
``html`` renders it through escaping templates. Standard library only.
"""

from memwarden.find.report.compare import build_comparison_view
from memwarden.find.report.html import (
    render_comparison,
    render_comparison_view,
    render_html,
    render_view,
)
from memwarden.find.report.view import build_view
from memwarden.find.report.view_model import ComparisonView, ReportView

__all__ = [
    "ComparisonView",
    "ReportView",
    "build_comparison_view",
    "build_view",
    "render_comparison",
    "render_comparison_view",
    "render_html",
    "render_view",
]
